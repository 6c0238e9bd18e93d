"""Bulk embedding on a local Ray cluster against the single-process path, on the same CPUs.

    .venv/bin/python bench/bench_ray.py [--docs 512] [--actors 2] [--cpus-per-actor 1]

Embeds the first --docs SciFact documents (title + abstract) with the single-process bulk
encoder (``brainrank ingest``) and with ``RayBulkEncoder`` (``brainrank ingest --ray``) on a
local cluster of actors x cpus-per-actor CPUs, each actor one encoder of the same folder and
settings. The Ray rate is end to end, as a user waits for it: every ``encode`` call starts
its actor pool (spawning workers, loading one encoder each), the cluster itself is started
once before (printed apart). The time of a one-batch call, mostly that start, and the rate
beyond it are printed too, with the smallest cosine of a Ray vector to its single-process
vector. Rates are the best of --repeats runs after a warm-up, the two paths alternating so
that on a shared machine both meet the same neighbours. Ray spreads work over machines: on
one machine it can at best match the single process, which already uses every core. Run on
a quiet machine: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date

import numpy as np
from common import dataset_dir, machine, print_table


def texts_of(collection, limit: int) -> list[str]:
    out = []
    with (collection / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            out.append(f"{doc.get('title', '')}\n{doc.get('text', '')}")
            if len(out) == limit:
                break
    return out


def best_rate(encode, texts: list[str], repeats: int) -> tuple[float, np.ndarray]:
    best, vectors = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        vectors = encode(texts)
        best = min(best, time.perf_counter() - t)
    return len(texts) / best, vectors


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None)
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--cpus-per-actor", type=int, default=1)
    parser.add_argument("--batch-rows", type=int, default=64, help="passages per Ray batch")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from brainrank.ranker.config import ClusterConfig, load_config
    from brainrank.ranker.encoding.bulk import load_bulk_encoder
    from brainrank.ranker.encoding.ray_bulk import RayBulkEncoder, ray_session

    texts = texts_of(dataset_dir(args.datasets, "scifact"), args.docs)
    cfg = load_config().encoder
    path = cfg.resolved_path()
    cluster = ClusterConfig(
        actors=args.actors, cpus_per_actor=args.cpus_per_actor, batch_rows=args.batch_rows
    )
    before = load()

    single = load_bulk_encoder(path, cfg)
    single.encode(texts[: cfg.batch_size], batch_size=cfg.batch_size)  # warm-up
    cpus = args.actors * args.cpus_per_actor
    t = time.perf_counter()
    with ray_session(None, cpus=cpus):
        cluster_start = time.perf_counter() - t
        spread = RayBulkEncoder(path, cfg, cluster)
        spread.encode(texts[: cfg.batch_size])  # warm-up: first worker imports, file caches
        few = texts[: args.batch_rows]  # one batch: mostly the cost of starting the pool
        # Alternating runs: on a shared machine both paths see the same neighbours.
        runs: dict[str, list] = {"single": [], "few": [], "ray": []}
        for _ in range(args.repeats):
            runs["single"].append(
                best_rate(lambda t: single.encode(t, batch_size=cfg.batch_size), texts, 1)
            )
            runs["few"].append(best_rate(spread.encode, few, 1))
            runs["ray"].append(best_rate(spread.encode, texts, 1))
    single_rate, want = max(runs["single"], key=lambda r: r[0])
    few_rate = max(r[0] for r in runs["few"])
    ray_rate, got = max(runs["ray"], key=lambda r: r[0])
    print(f"single process: {single_rate:.1f} docs/s, ray: {ray_rate:.1f} docs/s", flush=True)
    # Documents per second once the pool runs: the time beyond one batch's call, per document.
    marginal = (len(texts) - len(few)) / (len(texts) / ray_rate - len(few) / few_rate)
    cos = float(np.min(np.sum(got * want, axis=1)))

    print(f"\nMachine: {machine()}; {date.today().isoformat()}")
    print(
        f"{len(texts)} SciFact documents, encoder batch {cfg.batch_size}, precision "
        f"{spread.precision}, best of {args.repeats}; load average (1/5/15 min) before "
        f"{before}, after {load()}; local Ray cluster started in {cluster_start:.1f}s"
    )
    print_table(
        "Bulk embedding on Ray vs one process, documents/s",
        ["path", "workers", "docs/s", "one-batch call (s)", "docs/s after it", "min cosine"],
        [
            ["single process", "1 process, all cores", round(single_rate, 1), "", "", "1"],
            [
                f"Ray Data, batches of {args.batch_rows}",
                f"{args.actors} actors x {args.cpus_per_actor} CPU",
                round(ray_rate, 1),
                f"{len(few) / few_rate:.1f}",
                round(marginal, 1),
                f"{cos:.6f}",
            ],
        ],
    )
    print(
        "\ndocs/s: end to end, each Ray call starting its actor pool; one-batch call: the time "
        "to embed one batch, mostly starting the pool; docs/s after it: the rate beyond that; "
        "min cosine: of any document's vector to its single-process vector."
    )


if __name__ == "__main__":
    main()
