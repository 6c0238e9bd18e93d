"""Fault matrix: kills, artifact damage and hostile input against copies of the sample workspace.

    .venv/bin/python bench/bench_faults.py [--points 5] [--only kills,damage,input]

Builds bench/.work/faults/base once (the bundled sample, a champion v0001, then v0002 trained
with a fine-tuned encoder and promoted, so v0002 serves over another index generation), then
every case runs on a fresh copy of it, through the real `brainrank` CLI in subprocesses:

- kills: ingest (40 new and 20 changed documents), train, models promote v0001, models rollback
  and models import --promote (on copies holding only the serving index generation, so promote
  and rollback re-embed the collection with v0001's encoder), each SIGKILLed at --points
  moments spread over its own uninterrupted run time. After each kill a learned search must
  answer (no outage) from the old or the new champion, no document may be lost, and the
  command must be finished by then or by rerunning it ("recovered").
- damage: the files of the serving index generation, the champion's model version, the
  pointers, the document store and the query log (the three largest of each kind), truncated,
  zeroed, byte-flipped and (numpy arrays) permuted. A search must answer exactly as before or
  fail with one clear line; then `brainrank check` must flag the damage, and an ingest must not
  shrink the collection.
- input: each hostile input class of issue 12 item 7, with and without --skip-bad where the
  command has it. Exit code 0-3, no traceback, nothing stored changed when the command failed.

Prints one table: case class, cases, clear errors, served as before, tracebacks, silent wrong
answers, data lost, outages after a kill, damage `check` missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
from common import REPO, machine, print_table

DATA = REPO / "data"
WORK = REPO / "bench" / ".work" / "faults"
BRAINRANK = [sys.executable, "-c", "from brainrank.ranker.cli.app import main; main()"]
QUERY = "laptop won't turn on"
TRACEBACK = "Traceback (most recent call last)"
PER_KIND = 3  # damaged files per artifact kind


def cli(*args, ws: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    cmd = [*BRAINRANK, *args] + (["-w", str(ws)] if ws is not None else [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAINRANK_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run(cmd, capture_output=True, timeout=timeout, env=env, cwd=REPO)


def text(res: subprocess.CompletedProcess) -> str:
    return (res.stdout + res.stderr).decode("utf-8", "replace")


def search(ws: Path) -> tuple[int, dict | None, str]:
    """(exit code, the --json result or None, output) of a default-mode search."""
    res = cli("search", QUERY, "--json", ws=ws)
    try:
        payload = json.loads(res.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        payload = None
    return res.returncode, payload, text(res)


def ranking(payload: dict | None) -> list | None:
    if not payload or "hits" not in payload:
        return None
    return [(h["id"], round(h["score"], 5)) for h in payload["hits"]]


def documents(ws: Path) -> set[str] | None:
    """Ids in the document store, read directly; None when it cannot be read."""
    try:
        con = sqlite3.connect(f"file:{ws / 'documents.sqlite'}?mode=ro", uri=True)
        try:
            return {r[0] for r in con.execute("SELECT doc_id FROM documents")}
        finally:
            con.close()
    except sqlite3.Error:
        return None


def fresh(base: Path, name: str) -> Path:
    ws = WORK / "cases" / name
    if ws.exists():
        shutil.rmtree(ws)
    shutil.copytree(base, ws)
    return ws


def extra_docs(path: Path) -> Path:
    """40 new documents and 20 changed ones, for ingests."""
    docs = [json.loads(line) for line in (DATA / "docs.jsonl").read_text().splitlines() if line]
    out = [{**d, "id": f"new-{d['id']}", "text": d["text"] + " (new)"} for d in docs[:40]]
    out += [{**d, "text": d["text"] + " Updated."} for d in docs[40:60]]
    path.write_text("".join(json.dumps(d) + "\n" for d in out))
    return path


def build_base() -> Path:
    base = WORK / "base"
    if (base / ".complete").exists():
        return base
    shutil.rmtree(base, ignore_errors=True)
    q, tr = DATA / "queries.jsonl", DATA / "qrels-train.txt"
    steps = [
        ("ingest", str(DATA / "docs.jsonl")),
        ("train", "--queries", str(q), "--qrels", str(tr), "--clicks", str(DATA / "clicks.jsonl")),
        (
            "train",
            "--queries",
            str(q),
            "--qrels",
            str(tr),
            "--encoder",
            "--seed",
            "1",
            "--no-promote",
        ),
        ("models", "promote", "v0002"),
    ]
    for step in steps:
        res = cli(*step, ws=base)
        if res.returncode != 0:
            sys.exit(f"building the base workspace failed at {step}:\n{text(res)[-3000:]}")
    res = cli("models", "export", "v0002", str(WORK / "v0002.tar.gz"), ws=base)
    if res.returncode != 0:
        sys.exit(f"export failed:\n{text(res)[-2000:]}")
    (base / ".complete").write_text("")
    return base


# ----- kills -----------------------------------------------------------------------------------


def kill_commands() -> dict[str, tuple]:
    q, tr = DATA / "queries.jsonl", DATA / "qrels-train.txt"
    return {
        "ingest": ("ingest", str(extra_docs(WORK / "extra.jsonl"))),
        "train": ("train", "--queries", str(q), "--qrels", str(tr), "--seed", "2"),
        "promote": ("models", "promote", "v0001"),
        "rollback": ("models", "rollback"),
        "import": ("models", "import", str(WORK / "v0002.tar.gz"), "--promote"),
    }


def only_serving_generation(ws: Path) -> Path:
    """Delete the generations that do not serve, so promote and rollback must re-embed the
    collection (seconds of work to kill, instead of a pointer write)."""
    serving = _serving_generation(ws)
    for gen in (ws / "indexes").glob("gen-*"):
        if gen != serving:
            shutil.rmtree(gen)
    return ws


def run_killed(args: tuple, ws: Path, after: float) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAINRANK_")}
    proc = subprocess.Popen(
        [*BRAINRANK, *args, "-w", str(ws)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=REPO,
    )
    time.sleep(after)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def kills(base: Path, points: int, stats: Counter) -> None:
    before_docs = documents(base)
    _, before, _ = search(base)
    for name, args in kill_commands().items():
        ws = only_serving_generation(fresh(base, f"kill-{name}-full"))
        t = time.perf_counter()
        res = cli(*args, ws=ws)
        full = time.perf_counter() - t
        if res.returncode != 0:
            print(f"{name}: the uninterrupted run failed:\n{text(res)[-1500:]}")
            stats[f"kill {name}", "tracebacks"] += TRACEBACK in text(res)
            continue
        _, after, _ = search(ws)
        allowed = {before["model"], after["model"]} if before and after else set()
        for i in range(points):
            at = full * (i + 0.5) / points
            ws = only_serving_generation(fresh(base, f"kill-{name}-{i}"))
            run_killed(args, ws, at)
            key = f"kill {name}"
            stats[key, "cases"] += 1
            rc, payload, out = search(ws)
            stats[key, "tracebacks"] += TRACEBACK in out
            if rc != 0 or not payload or not payload.get("hits"):
                stats[key, "outages"] += 1
                print(f"  outage after killing {name} at {at:.1f}s: {out.strip()[-300:]}")
            elif payload["model"] not in allowed:
                stats[key, "silent wrong"] += 1
            docs = documents(ws)
            if docs is None or not before_docs <= docs:
                stats[key, "data lost"] += 1
            rerun = cli(*args, ws=ws)
            finished = payload and after and payload.get("model") == after["model"]
            if rerun.returncode == 0 or (finished and TRACEBACK not in text(rerun)):
                # Rerunning finished the command, or the killed run had already finished it
                # (a second rollback then says there is nothing earlier: a clear refusal).
                stats[key, "recovered"] += 1
            else:
                print(f"  rerun of {name} after a kill at {at:.1f}s: {text(rerun).strip()[-300:]}")
                stats[key, "tracebacks"] += TRACEBACK in text(rerun)
        print(f"kills of {name} done (uninterrupted run {full:.1f}s)", flush=True)


# ----- damage ----------------------------------------------------------------------------------


def artifacts(ws: Path) -> dict[str, list[Path]]:
    """Files by kind: the serving generation, the champion's version, pointers, logs, store."""
    kinds: dict[str, list[Path]] = {"store": [ws / "documents.sqlite"]}
    pointers = (ws / "SERVING", ws / "indexes" / "CURRENT", ws / "models" / "CHAMPION")
    kinds["pointer"] = [p for p in pointers if p.is_file()]
    _, payload, _ = search(ws)
    serving = _serving_generation(ws) or sorted((ws / "indexes").glob("gen-*"))[-1]
    for f in sorted(p for p in serving.rglob("*") if p.is_file()):
        parts = f.relative_to(serving).parts
        parts = parts[2:] if parts[0] == "segments" and len(parts) > 2 else parts  # by segment part
        kind = "manifest" if f.name == "manifest.json" else parts[0]
        kinds.setdefault(f"index {kind.split('.')[0]}", []).append(f)
    version = ws / "models" / "versions" / (payload or {}).get("model", "v0002")
    for f in sorted(p for p in version.rglob("*") if p.is_file()):
        if "encoder" not in f.relative_to(version).parts[:1]:
            kinds.setdefault("model", []).append(f)
    kinds["query log"] = sorted((ws / "logs").glob("*.sqlite")) + sorted(ws.glob("querylog*"))
    return {k: v for k, v in kinds.items() if v}


def _serving_generation(ws: Path) -> Path | None:
    for pointer in (ws / "SERVING", ws / "indexes" / "CURRENT"):
        if pointer.is_file():
            raw = pointer.read_text().strip()
            try:
                number = json.loads(raw)["generation"]
                return ws / "indexes" / f"gen-{int(number):06d}"
            except (ValueError, KeyError, TypeError):
                return ws / "indexes" / raw
    return None


def damage(path: Path, how: str) -> bool:
    """Damage ``path`` in place; False when ``how`` does not apply to it."""
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero":
        path.write_bytes(bytes(len(data)))
    elif how == "flip":
        mid = len(data) // 2
        chunk = bytes(b ^ 0xFF for b in data[mid : mid + 16])
        path.write_bytes(data[:mid] + chunk + data[mid + 16 :])
    elif how == "permute":
        if path.suffix != ".npy":
            return False
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError:
            return False
        if arr.ndim == 0 or len(arr) < 2:
            return False
        permuted = arr[np.random.default_rng(0).permutation(len(arr))]
        if np.array_equal(permuted, arr):
            return False
        np.save(path, permuted, allow_pickle=False)
    return True


def damages(base: Path, stats: Counter) -> None:
    _, before, _ = search(base)
    base_docs = documents(base)
    extra = extra_docs(WORK / "extra.jsonl")
    for kind, files in artifacts(base).items():
        # The largest few of each kind: every kind is covered, the run stays minutes long.
        for f in sorted(files, key=lambda f: -f.stat().st_size)[:PER_KIND]:
            rel = f.relative_to(base)
            for how in ("truncate", "zero", "flip", "permute"):
                ws = fresh(base, "damage")
                if not damage(ws / rel, how):
                    continue
                key = f"damage {kind}"
                stats[key, "cases"] += 1
                rc, payload, out = search(ws)
                stats[key, "tracebacks"] += TRACEBACK in out
                if rc == 0 and ranking(payload) == ranking(before):
                    stats[key, "served as before"] += 1
                elif rc == 0:
                    stats[key, "silent wrong"] += 1
                    print(f"  {how} {rel}: served a different ranking with exit 0")
                elif TRACEBACK not in out:
                    stats[key, "clear errors"] += 1
                check = cli("check", ws=ws)
                stats[key, "tracebacks"] += TRACEBACK in text(check)
                if TRACEBACK in text(check):
                    print(f"  {how} {rel}: `brainrank check` traceback:\n{text(check)[-800:]}")
                if check.returncode == 0 and kind != "query log":
                    stats[key, "check missed"] += 1
                    print(f"  {how} {rel}: `brainrank check` found nothing wrong")
                res = cli("ingest", str(extra), ws=ws)
                stats[key, "tracebacks"] += TRACEBACK in text(res)
                if TRACEBACK in text(res):
                    print(f"  {how} {rel}: ingest traceback:\n{text(res)[-800:]}")
                docs = documents(ws)
                if docs is not None and base_docs is not None and not base_docs <= docs:
                    stats[key, "data lost"] += 1
                    print(f"  {how} {rel}: the collection shrank to {len(docs)} documents")
        print(f"damage to {kind} done", flush=True)


# ----- hostile input ---------------------------------------------------------------------------


def hostile_inputs(tmp: Path) -> list[tuple[str, tuple, bool]]:
    """(class, CLI args, whether --skip-bad applies) per hostile input of issue 12 item 7."""
    tmp.mkdir(parents=True, exist_ok=True)

    def jsonl(name: str, *lines: str) -> str:
        path = tmp / name
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return str(path)

    good = '{"id": "ok-1", "title": "A good document", "text": "It has some text."}'
    nested = '{"id": "deep", "text": "x", "fields": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    qrels_big = tmp / "big.qrels"
    qrels_big.write_text("q01 0 d008 99999999999999999999999999\n")
    unknown = tmp / "unknown.qrels"
    unknown.write_text("q01 0 no-such-doc 2\nq02 0 nor-this 1\n")
    a_file = tmp / "a-file"
    a_file.write_text("not a folder")
    q = str(DATA / "queries.jsonl")
    clicks = {"query": "gift card", "doc_id": "d001", "time": "2026-10-01T00:00:00Z"}
    return [
        (
            "lone surrogate",
            ("ingest", jsonl("s.jsonl", good, '{"id": "s", "text": "\\ud800"}')),
            True,
        ),
        (
            "huge integer id",
            ("ingest", jsonl("i.jsonl", good, '{"id": ' + "7" * 5000 + ', "text": "t"}')),
            True,
        ),
        ("deeply nested JSON", ("ingest", jsonl("n.jsonl", good, nested)), True),
        (
            "NaN and infinite fields",
            (
                "ingest",
                jsonl(
                    "f.jsonl",
                    good,
                    '{"id": "nan", "text": "t", "timestamp": NaN}',
                    '{"id": "inf", "text": "t", "timestamp": Infinity}',
                ),
            ),
            True,
        ),
        (
            "title-only document",
            ("ingest", jsonl("t.jsonl", '{"id": "title-only", "title": "Only a title"}')),
            False,
        ),
        (
            "invalid UTF-8 argument",
            ("search", b"caf\xe9 \xff".decode("utf-8", "surrogateescape")),
            False,
        ),
        (
            "qrels grade beyond 64 bits",
            ("eval", "--queries", q, "--qrels", str(qrels_big), "--mode", "bm25"),
            False,
        ),
        (
            "--run-dir is a file",
            (
                "eval",
                "--queries",
                q,
                "--qrels",
                str(DATA / "qrels-test.txt"),
                "--mode",
                "bm25",
                "--run-dir",
                str(a_file),
            ),
            False,
        ),
        (
            "judgments of unknown documents",
            ("train", "--queries", q, "--qrels", str(unknown)),
            False,
        ),
        (
            "feedback position 10^30",
            ("feedback", jsonl("c.jsonl", json.dumps({**clicks, "position": 10**30}))),
            False,
        ),
    ]


def inputs(base: Path, stats: Counter) -> None:
    for name, args, skip_bad in hostile_inputs(WORK / "inputs"):
        for extra in ([], ["--skip-bad"]) if skip_bad else ([],):
            ws = fresh(base, "input")
            before = documents(ws)
            key = "input " + name + (" --skip-bad" if extra else "")
            stats[key, "cases"] += 1
            res = cli(*args, *extra, ws=ws)
            out = text(res)
            stats[key, "tracebacks"] += TRACEBACK in out or res.returncode not in (0, 1, 2, 3)
            if res.returncode == 0:
                stats[key, "served as before"] += 1  # accepted (what could be was stored)
            elif TRACEBACK not in out:
                stats[key, "clear errors"] += 1
                if documents(ws) != before:
                    stats[key, "data lost"] += 1
            if TRACEBACK in out:
                print(f"  {key}: traceback:\n{out[-800:]}")
        print(f"input {name} done", flush=True)


COLUMNS = [
    "cases",
    "clear errors",
    "served as before",
    "recovered",
    "tracebacks",
    "silent wrong",
    "data lost",
    "outages",
    "check missed",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=5, help="kill moments per command")
    parser.add_argument("--only", default="kills,damage,input")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    start = time.perf_counter()
    base = build_base()
    stats: Counter = Counter()
    if "kills" in parts:
        kills(base, args.points, stats)
    if "damage" in parts:
        damages(base, stats)
    if "input" in parts:
        inputs(base, stats)
    classes = sorted({k for k, _ in stats}, key=lambda k: (k.split()[0], k))
    rows = [[c] + [stats[c, col] for col in COLUMNS] for c in classes]
    rows.append(["total"] + [sum(stats[c, col] for c in classes) for col in COLUMNS])
    print(
        f"\nMachine: {machine()}; {date.today().isoformat()}; {time.perf_counter() - start:.0f} s"
    )
    print_table("Fault matrix on the sample workspace", ["case class", *COLUMNS], rows)
    shutil.rmtree(WORK / "cases", ignore_errors=True)


if __name__ == "__main__":
    main()
