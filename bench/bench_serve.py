"""The search service under load, a hot swap under load, and cold CLI searches.

    .venv/bin/python bench/bench_serve.py [--collection scifact] [--workspace DIR]
        [--requests 2000] [--clients 1,4,8,16] [--workers 2] [--old REV] [--skip-swap]

Needs a workspace with a champion: bench_retrieval.py builds bench/.work/scifact, and
`brainrank train --queries ... --qrels .../train.tsv -w bench/.work/scifact` trains one.
Everything runs on loopback on this machine (clients share its cores with the server).

1. Load: `brainrank serve` on a free loopback port; for each client count, that many threads
   (one keep-alive httpx client each) send test queries round-robin in the learned mode until
   --requests are done (10,000 at 8 clients, the acceptance run); throughput, p50/p99
   latency, errors and the server's RSS (all its processes). Query-log rows must equal
   requests served.
2. Swap: 4 clients keep searching while another process ingests 100 documents and then
   promotes a second model version (a copy of the champion's training run with another
   seed); failed requests, and the seconds from `models promote` returning until the service
   answers with the new champion.
3. Cold start: wall time and peak RSS of `brainrank search` in a fresh process, per mode,
   median of 5, this checkout against --old REV (the previous query path) in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

from bench_compare import export, legacy_copy, side
from common import REPO, dataset_dir, machine, print_table

BRAINRANK = [sys.executable, "-c", "from brainrank.ranker.cli.app import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total / 1024


class Server:
    """`brainrank serve` in a child process, stopped on exit."""

    def __init__(self, ws: Path, workers: int):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [*BRAINRANK, "serve", "-w", str(ws), "--port", str(self.port)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", BRAINRANK_CONFIG="")
        self.proc = subprocess.Popen(
            [*cmd, "--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit("the service did not become ready within 120 s")

    def ready(self) -> dict:
        import httpx

        return httpx.get(self.url + "/readyz", timeout=5).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def drive(
    url: str, texts: list[str], clients: int, total: int, stop: threading.Event | None = None
):
    """``clients`` threads send ``total`` searches (or until ``stop``); latencies and errors."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(total))
    lock = threading.Lock()

    def work():
        with httpx.Client(base_url=url, timeout=30) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None or (stop is not None and stop.is_set()):
                    return
                body = {"query": texts[i % len(texts)], "k": 10, "mode": "learned"}
                t0 = time.perf_counter()
                try:
                    r = client.post("/search", json=body)
                    ok = r.status_code == 200
                    why = f"{r.status_code} {r.text[:80]}"
                except httpx.HTTPError as exc:
                    ok, why = False, repr(exc)
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    (latencies.append(ms) if ok else errors.append(why))

    threads = [threading.Thread(target=work) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def logged_searches(ws: Path) -> int:
    from brainrank.ranker.feedback.querylog import SOURCES, QueryLog

    with QueryLog.open(ws) as log:
        return log.count(0, 2**40, sources=SOURCES)


def load(ws: Path, texts: list[str], args) -> None:
    server = Server(ws, args.workers)
    rows = []
    try:
        drive(server.url, texts, 2, 50)  # warm every worker
        for clients in [int(c) for c in args.clients.split(",")]:
            total = 10_000 if clients == 8 and args.requests >= 2000 else args.requests
            before = logged_searches(ws)
            lat, errs, secs = drive(server.url, texts, clients, total)
            time.sleep(1.0)  # the last rows are committed before the response returns
            rows.append(
                [
                    clients,
                    total,
                    f"{len(lat) / secs:.1f}",
                    f"{pct(lat, 50):.1f}",
                    f"{pct(lat, 99):.1f}",
                    len(errs),
                    f"{rss_mb(server.proc.pid):.0f}",
                    "yes" if logged_searches(ws) - before == len(lat) else "NO",
                ]
            )
            if errs:
                print(f"errors at {clients} clients, first: {errs[0]}", file=sys.stderr)
    finally:
        server.stop()
    print_table(
        f"Service, learned mode, {args.workers} workers (client threads on the same cores)",
        ["clients", "requests", "req/s", "p50 ms", "p99 ms", "errors", "server RSS MB", "logged"],
        rows,
    )


def swap(ws: Path, texts: list[str], data: Path, args) -> None:
    """Ingest 100 documents and promote a new champion while 4 clients search."""
    from brainrank.ranker.registry.registry import Registry

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", BRAINRANK_CONFIG="")
    registry = Registry(ws / "models")
    champion = registry.champion().version
    challengers = [v.version for v in registry.versions() if v.version != champion]
    if not challengers:
        raise SystemExit("swap: the workspace needs a second model version (train another)")
    target = challengers[-1]
    extra = ws.parent / "bench-serve-extra.jsonl"
    with (data / "corpus.jsonl").open() as f:
        docs = [json.loads(line) for _, line in zip(range(100), f, strict=False)]
    extra.write_text(
        "".join(json.dumps({**d, "_id": f"bench-serve-{d['_id']}"}) + "\n" for d in docs)
    )
    server = Server(ws, args.workers)
    stop = threading.Event()
    result = {}

    def clients():
        result["load"] = drive(server.url, texts, 4, 10**9, stop)

    runner = threading.Thread(target=clients)
    runner.start()
    try:
        time.sleep(2)
        t0 = time.perf_counter()
        subprocess.run(
            [*BRAINRANK, "ingest", str(extra), "-w", str(ws)],
            env=env,
            check=True,
            capture_output=True,
        )
        ingest_s = time.perf_counter() - t0
        subprocess.run(
            [*BRAINRANK, "models", "promote", target, "-w", str(ws)],
            env=env,
            check=True,
            capture_output=True,
        )
        promoted = time.perf_counter()
        while server.ready().get("model") != target and time.perf_counter() - promoted < 30:
            time.sleep(0.05)
        serving_s = time.perf_counter() - promoted
        time.sleep(2)
    finally:
        stop.set()
        runner.join()
        server.stop()
        subprocess.run(
            [*BRAINRANK, "models", "promote", champion, "-w", str(ws)], env=env, capture_output=True
        )
        subprocess.run(
            [*BRAINRANK, "ingest", "-w", str(ws)]
            + [a for d in docs for a in ("--delete", f"bench-serve-{d['_id']}")],
            env=env,
            capture_output=True,
        )
        extra.unlink(missing_ok=True)
    lat, errs, _ = result["load"]
    print_table(
        "Hot swap under load (4 clients): ingest 100 documents, then promote",
        ["requests", "failed", "p99 ms", "ingest s", "new champion serving after s"],
        [
            [
                len(lat) + len(errs),
                len(errs),
                f"{pct(lat, 99):.1f}",
                f"{ingest_s:.1f}",
                f"{serving_s:.2f}",
            ]
        ],
    )


def cold(ws: Path, query: str, args) -> None:
    sides = {"new": (*side(None), ws)}
    if args.old:  # older code reads the old pointer files, from a copy
        sides = {"old": (*side(export(args.old)), legacy_copy(ws)), **sides}
    rows = []
    for mode in ("bm25", "hybrid", "learned"):
        times: dict[str, list[float]] = {name: [] for name in sides}
        peaks: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(5):
            for name, (prefix, env, where) in sides.items():
                code = (
                    "import resource, subprocess, sys, time; t = time.perf_counter(); "
                    "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                    "print(time.perf_counter() - t, "
                    "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
                )
                cmd = [*prefix, "search", query, "--mode", mode, "-w", str(where)]
                out = subprocess.run(
                    [sys.executable, "-c", code, *cmd],
                    env=env,
                    cwd=env["BENCH_CWD"],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                times[name].append(float(out[0]))
                peaks[name].append(int(out[1]) / 1024)
        for name in sides:
            rows.append(
                [
                    mode,
                    name,
                    f"{statistics.median(times[name]):.2f}",
                    f"{statistics.median(peaks[name]):.0f}",
                ]
            )
    print_table(
        "Cold `brainrank search` (fresh process, no service), median of 5",
        ["mode", "code", "wall s", "peak RSS MB"],
        rows,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--collection", default="scifact")
    ap.add_argument("--datasets", type=Path, default=None)
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", default="1,4,8,16")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--old", default=None, help="git revision for the cold-start comparison")
    ap.add_argument("--skip-swap", action="store_true")
    ap.add_argument("--only", choices=("load", "swap", "cold"), default=None)
    args = ap.parse_args()

    from brainrank.ranker.evaluation import read_qrels, read_queries

    data = dataset_dir(args.datasets, args.collection)
    source = args.workspace or REPO / "bench" / ".work" / args.collection
    queries = read_queries(data / "queries.jsonl")
    texts = [queries[q] for q in read_qrels(data / "qrels" / "test.tsv") if q in queries]
    print(f"machine: {machine()}; date: {date.today()}; {len(texts)} test queries")
    # Work on a copy: the service logs every search, the swap ingests and promotes.
    ws = REPO / "bench" / ".work" / f"{args.collection}-serve"
    if ws.exists():
        shutil.rmtree(ws)
    shutil.copytree(source, ws, ignore=shutil.ignore_patterns("querylog.sqlite*"))
    if args.only in (None, "load"):
        load(ws, texts, args)
    if args.only in (None, "swap") and not args.skip_swap:
        swap(ws, texts, data, args)
    if args.only in (None, "cold"):
        cold(ws, texts[0], args)


if __name__ == "__main__":
    main()
