"""Query-log benchmark: concurrent writers, and the monitor on a log of a million searches.

    .venv/bin/python bench/bench_querylog.py [--searches 1000000] [--writes 5000]

1. Two writer processes each log ``--writes`` searches (10 hits, 23 float32 features each)
   through ``QueryLog.record`` into one file at the same time; every row must be there.
2. A copy of the SciFact workspace (bench/.work/scifact, built by bench_retrieval.py and
   bench_learned.py) gets a log of ``--searches`` searches over 30 days (SciFact queries with
   Zipf popularity, feature rows drawn from the champion's training baseline, a click on 30%
   of them, query vectors cached as the search path would), filled with bulk inserts; then
   ``brainrank monitor`` is timed in a fresh process, as cron would run it.

The workspace copy lives in bench/.work/querylog-1m and is reused when its log is complete.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
from common import REPO, machine, print_table

WORK = REPO / "bench" / ".work"
DAY = 86400.0


def _writer(path: str, worker: int, n: int, names: tuple[str, ...]) -> None:
    from brainrank.index.records import Hit
    from brainrank.ranker.feedback.querylog import QueryLog
    from brainrank.ranker.retrieval.result import SearchResult

    rng = np.random.default_rng(worker)
    with QueryLog(path) as log:
        for i in range(n):
            hits = [Hit(f"d{rng.integers(5000)}-{j}", j + 1, 1.0) for j in range(10)]
            res = SearchResult(
                f"writer {worker} query {i}",
                "learned",
                hits,
                latency_ms=20.0,
                model="v0001",
                in_domain=True,
                features=rng.random((10, len(names)), dtype=np.float32),
                feature_names=names,
            )
            log.record(res)


def concurrent_writers(n: int) -> list:
    from brainrank.ranker.feedback.querylog import QueryLog
    from brainrank.ranker.learning.features import BASE_FEATURES

    folder = WORK / "querylog-writers"
    shutil.rmtree(folder, ignore_errors=True)
    path = folder / "querylog.sqlite"
    QueryLog(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, n, BASE_FEATURES)) for w in range(2)]
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - t
    with QueryLog(path) as log:
        rows = log.count()
    with closing(sqlite3.connect(path)) as db:
        distinct = db.execute("SELECT COUNT(DISTINCT query) FROM searches").fetchone()[0]
    return [2, 2 * n, rows, 2 * n - distinct, seconds, 2 * n / seconds]


def build_workspace(searches: int, seed: int = 0):
    """A copy of the SciFact workspace and its champion, with a log of ``searches`` rows."""
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.config import load_config
    from brainrank.ranker.feedback.fields import normalise_query
    from brainrank.ranker.feedback.querylog import QueryLog
    from brainrank.ranker.monitoring.reference import Reference
    from brainrank.ranker.registry.registry import Registry

    src = WORK / "scifact"
    if not src.is_dir() or Workspace(src).serving_state().champion is None:
        sys.exit(f"skipped: {src} has no champion model (run bench_learned.py first)")
    target = WORK / "querylog-1m"
    done = target / "logs" / ".complete"
    if done.exists() and json.loads(done.read_text()) == {
        "searches": searches,
        "seed": seed,
        "schema": 3,
    }:
        return load_config(workspace=target, env={})
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("logs", "retrain", "monitor"))
    cfg = load_config(workspace=target, env={})
    ws = Workspace(target)
    registry = Registry(ws.models_dir)
    champion = registry.champion()
    names = tuple(champion.feature_names)
    baseline = json.loads((champion.path / "baseline.json").read_text())["features"]
    rng = np.random.default_rng(seed)

    def draw(n):  # feature rows from the baseline's decile histograms
        cols = []
        for name in names:
            f = baseline[name]
            edges, counts = np.array(f["edges"]), np.array(f["counts"], float)
            if len(edges) < 2:
                cols.append(np.full(n, edges[0] if len(edges) else 0.0))
                continue
            b = rng.choice(len(counts), n, p=counts / counts.sum())
            cols.append(rng.uniform(edges[b], edges[b + 1]))
        return np.stack(cols, axis=1).astype(np.float32)

    texts = [json.loads(line)["text"] for line in open(dataset("scifact") / "queries.jsonl")]
    texts = list(dict.fromkeys(texts))
    popularity = 1.0 / np.arange(1, len(texts) + 1) ** 0.7
    popularity /= popularity.sum()
    ref_rows = draw(10 * 600)
    Reference(
        version=champion.version,
        feature_names=names,
        features=ref_rows,
        row_search=np.repeat(np.arange(600), 10),
        queries=[normalise_query(t) for t in texts[:600]],
        out_of_domain=0.05,
        source="synthetic: 600 SciFact queries, rows from baseline.json",
    ).save(ws.models_dir)

    t_fill = time.perf_counter()
    now = time.time()
    start = now - 30 * DAY
    # The copy's champion "was trained" when the log begins, so the outcome monitor has its
    # reference period (the days just after training) inside the log, as in a real deployment.
    meta_file = champion.path / "model.json"
    meta = json.loads(meta_file.read_text())
    meta["created"] = datetime.fromtimestamp(start - 60, UTC).isoformat()
    meta_file.write_text(json.dumps(meta, indent=2))
    # The synthetic rows go straight into the log's tables (ranker/feedback/store.py) in bulk,
    # through a connection of the bench's own; QueryLog.record writes one search at a time.
    with QueryLog.open(target) as log, closing(sqlite3.connect(log.path)) as db:
        key = json.dumps(list(names))  # a feature schema as QueryLog.record stores it
        with db:
            db.execute("INSERT OR IGNORE INTO feature_schemas(names) VALUES (?)", (key,))
        (schema,) = db.execute("SELECT id FROM feature_schemas WHERE names=?", (key,)).fetchone()
        chunk = 50_000
        for lo in range(0, searches, chunk):
            n = min(chunk, searches - lo)
            q = rng.choice(len(texts), n, p=popularity)
            # Appended as they happen: ids follow time.
            span = (now - start) / searches
            times = np.sort(rng.uniform(start + lo * span, start + (lo + n) * span, n))
            x = draw(10 * n).reshape(n, 10, len(names))
            docs = rng.integers(0, 5183, (n, 10))
            rows = [
                (
                    float(times[i]),
                    texts[q[i]],
                    normalise_query(texts[q[i]]),
                    "learned",
                    champion.version,
                    int(rng.random() > 0.05),
                    20.0,
                    "cli",
                )
                for i in range(n)
            ]
            with db:  # one transaction per chunk
                cur = db.execute("SELECT COALESCE(MAX(id), 0) FROM searches")
                first = cur.fetchone()[0] + 1
                db.executemany(
                    "INSERT INTO searches(id, time, query, norm_query, mode, model, in_domain, "
                    "latency_ms, source) VALUES (?,?,?,?,?,?,?,?,?)",
                    [(first + i, *row) for i, row in enumerate(rows)],
                )
                db.executemany(
                    "INSERT INTO results(search_id, doc_ids, features, schema_id) VALUES (?,?,?,?)",
                    [
                        (
                            first + i,
                            json.dumps([f"doc{d}" for d in docs[i]]),
                            x[i].tobytes(),
                            schema,
                        )
                        for i in range(n)
                    ],
                )
                clicked = np.flatnonzero(rng.random(n) < 0.3)
                pos = np.minimum(rng.geometric(0.5, len(clicked)), 10)
                db.executemany(
                    "INSERT INTO clicks(search_id, norm_query, doc_id, position, time, key) "
                    "VALUES (?,?,?,?,?,?)",
                    [
                        (
                            first + int(i),
                            rows[i][2],
                            f"doc{docs[i][p - 1]}",
                            int(p),
                            rows[i][0] + 5,
                            f"{first + int(i)}|{p}",
                        )
                        for i, p in zip(clicked, pos, strict=True)
                    ],
                )
            print(f"  logged {lo + n:,} searches", file=sys.stderr)
        fill = time.perf_counter() - t_fill
        from brainrank.ranker.encoding.loading import (
            encoder_path_for,
            load_encoder,
            serving_manifest,
        )

        encoder = load_encoder(encoder_path_for(cfg, serving_manifest(ws)), cfg.encoder.max_length)
        norm = [normalise_query(t) for t in texts]
        log.store_vectors(norm, encoder.encode(texts), champion.encoder_fingerprint)
    done.write_text(json.dumps({"searches": searches, "seed": seed, "schema": 3}))
    size = (ws.logs_dir / "querylog.sqlite").stat().st_size
    print(f"  filled in {fill:.0f}s, log file {size / 2**30:.2f} GiB", file=sys.stderr)
    return cfg


def dataset(name: str) -> Path:
    from common import dataset_dir

    return dataset_dir(None, name)


MONITOR_CLI = """
import sys
from brainrank.ranker.cli.app import app
app(sys.argv[1:])
"""


def time_monitor(cfg, runs: int = 3) -> list[list]:
    """Wall time of `brainrank monitor --json` in a fresh process (imports included)."""
    rows = []
    script = MONITOR_CLI
    for window in ("1d", "7d", "30d"):
        times, payload = [], None
        for _ in range(runs):
            t = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    script,
                    "monitor",
                    "--json",
                    "--window",
                    window,
                    "-w",
                    str(cfg.workspace),
                ],
                capture_output=True,
                text=True,
                env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""},
            )
            times.append(time.perf_counter() - t)
            if proc.returncode not in (0, 3):
                sys.exit(f"monitor failed: {proc.stderr[-2000:]}")
            payload = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(
            [
                window,
                payload["window"]["searches"],
                min(times),
                max(times),
                payload["seconds"],
                payload["verdict"],
                "; ".join(payload["reasons"])[:80] or "-",
            ]
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--searches", type=int, default=1_000_000)
    ap.add_argument("--writes", type=int, default=5000, help="searches per writer process")
    args = ap.parse_args()
    print(f"machine: {machine()}; date: {date.today()}")
    print_table(
        "Concurrent writers (one SQLite file, WAL)",
        ["processes", "searches logged", "rows found", "rows lost", "seconds", "searches/s"],
        [concurrent_writers(args.writes)],
    )
    cfg = build_workspace(args.searches)
    print_table(
        f"`brainrank monitor` on {args.searches:,} logged searches (fresh process)",
        ["window", "searches in window", "best s", "worst s", "monitor() s", "verdict", "reasons"],
        time_monitor(cfg),
    )


if __name__ == "__main__":
    main()
