"""The same evaluation by two revisions of the code, in one run: quality and speed side by side.

    .venv/bin/python bench/bench_compare.py --old REV [--collection scifact] [--workspace DIR]
        [--modes bm25,dense,hybrid,learned] [--model champion] [--rounds 2]

Both sides run `brainrank eval --json` on the same workspace (built by bench_retrieval.py,
with a model trained by `brainrank train` for the learned mode) in fresh processes, rounds
interleaved (old, new, old, new) so load hits both alike. REV is any git revision; its tree is
exported with `git archive` into bench/.work/rev-REV and imported from there (the pre-package
layout with top-level `ranker/` and the `brainrank` layout both work). Prints nDCG@10 per mode
for each side (they must agree to 4 decimals for a refactor), warm p50/p99 search latency (the
median over rounds) and the wall time of one cold `search` in each mode.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from datetime import date
from io import BytesIO
from pathlib import Path

from common import REPO, dataset_dir, machine, print_table

NEW_LAUNCHER = "from brainrank.ranker.cli.app import main; main()"
OLD_LAUNCHER = "from ranker.cli import main; main()"


def export(rev: str) -> Path:
    """The tree of ``rev`` under bench/.work, importable with PYTHONPATH pointing at it."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    target = REPO / "bench" / ".work" / f"rev-{sha}"
    if not target.is_dir():
        tar = subprocess.run(["git", "archive", sha], cwd=REPO, check=True, capture_output=True)
        tmp = target.with_name(target.name + ".tmp")
        with tarfile.open(fileobj=BytesIO(tar.stdout)) as tf:
            tf.extractall(tmp, filter="data")
        package = tmp / "brainrank"
        if package.is_dir():  # the brainrank layout: make the folders importable from source
            for name in ("index", "ranker", "debugger_ui"):
                (package / name).symlink_to(Path("..") / name)
        tmp.rename(target)
    return target


def legacy_copy(ws: Path) -> Path:
    """A copy of ``ws`` with the two pointer files older code reads (``indexes/CURRENT`` and
    ``models/CHAMPION``) written from its one ``SERVING`` pointer."""
    copy = ws.with_name(ws.name + "-legacy")
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(ws, copy, ignore=shutil.ignore_patterns("querylog.sqlite*"))
    serving = copy / "SERVING"
    if serving.is_file():
        state = json.loads(serving.read_text())
        (copy / "indexes" / "CURRENT").write_text(f"gen-{int(state['generation']):06d}\n")
        if state.get("champion"):
            (copy / "models" / "CHAMPION").write_text(state["champion"] + "\n")
    return copy


def side(tree: Path | None) -> tuple[list[str], dict]:
    """(command prefix, environment) running the CLI of ``tree`` (None: this checkout).

    ``python -c`` puts the working folder first on sys.path, so the commands run in
    ``tree`` (see ``run``): this checkout's folders must not shadow the old ones."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", BRAINRANK_CONFIG="", BENCH_CWD=str(REPO))
    if tree is None:
        return [sys.executable, "-c", NEW_LAUNCHER], env
    env.update(PYTHONPATH=str(tree), BENCH_CWD=str(tree))
    legacy = not (tree / "brainrank").is_dir()
    return [sys.executable, "-c", OLD_LAUNCHER if legacy else NEW_LAUNCHER], env


def run(cmd: list[str], env: dict, **kwargs) -> subprocess.CompletedProcess:
    """Run a command of one side in that side's tree."""
    return subprocess.run(cmd, env=env, cwd=env["BENCH_CWD"], check=True, **kwargs)


def evaluate(prefix, env, ws, queries, qrels, modes, model) -> dict:
    cmd = [*prefix, "eval", "--queries", str(queries), "--qrels", str(qrels), "--mode", modes]
    cmd += ["--json", "-w", str(ws)] + (["--model", model] if "learned" in modes else [])
    out = run(cmd, env, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cold_search(prefix, env, ws, query: str, mode: str) -> float:
    t0 = time.perf_counter()
    run(
        [*prefix, "search", query, "--mode", mode, "-k", "10", "-w", str(ws)],
        env,
        capture_output=True,
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--old", required=True, help="git revision to compare with")
    ap.add_argument("--collection", default="scifact")
    ap.add_argument("--split", default="test")
    ap.add_argument("--datasets", type=Path, default=None)
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--modes", default="bm25,dense,hybrid,learned")
    ap.add_argument("--model", default="champion")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    data = dataset_dir(args.datasets, args.collection)
    ws = args.workspace or REPO / "bench" / ".work" / args.collection
    queries, qrels = data / "queries.jsonl", data / "qrels" / f"{args.split}.tsv"
    query = json.loads(queries.open().readline())["text"]
    sides = {"old": side(export(args.old)), "new": side(None)}
    # Older code reads the two pointer files the one SERVING pointer replaced: it gets a copy.
    where = {"old": legacy_copy(ws), "new": ws}
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    cold: dict[tuple[str, str], list[float]] = {}
    modes = args.modes.split(",")
    for _ in range(args.rounds):
        for name, (prefix, env) in sides.items():
            at = where[name]
            runs[name].append(evaluate(prefix, env, at, queries, qrels, args.modes, args.model))
            for mode in modes:
                cold.setdefault((name, mode), []).append(cold_search(prefix, env, at, query, mode))

    def median(name, mode, key):
        return statistics.median(r[mode]["latency_ms"][key] for r in runs[name])

    print(f"machine: {machine()}; date: {date.today()}; old: {args.old}; rounds: {args.rounds}")
    rows = []
    for mode in modes:
        old, new = runs["old"][0][mode]["nDCG@10"], runs["new"][0][mode]["nDCG@10"]
        cold_old = statistics.median(cold[("old", mode)])
        cold_new = statistics.median(cold[("new", mode)])
        rows.append(
            [
                mode,
                f"{old:.4f}",
                f"{new:.4f}",
                "yes" if f"{old:.4f}" == f"{new:.4f}" else "NO",
                f"{median('old', mode, 'p50'):.1f}",
                f"{median('new', mode, 'p50'):.1f}",
                f"{median('old', mode, 'p99'):.1f}",
                f"{median('new', mode, 'p99'):.1f}",
                f"{cold_old:.2f}",
                f"{cold_new:.2f}",
            ]
        )
    print_table(
        f"Old ({args.old}) and new code on {args.collection} {args.split}",
        [
            "mode",
            "nDCG@10 old",
            "nDCG@10 new",
            "same",
            "p50 ms old",
            "p50 ms new",
            "p99 ms old",
            "p99 ms new",
            "cold s old",
            "cold s new",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
