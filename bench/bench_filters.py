"""Filtered dense retrieval at scale: R@100 against exact search over the documents a filter
keeps, and single-query latency, by the share of the collection the filter keeps.

    .venv/bin/python bench/bench_filters.py [--workspace bench/.work/scifact] [--docs 200000]
        [--shares 1,0.5,0.2,0.1,0.05,0.01] [--queries 300]

Documents: ``--docs`` vectors *derived* from the real passage vectors of the workspace's
SciFact index (``bench_retrieval.py`` ingests it to bench/.work/scifact), as
``scale_collection.derived_vectors`` derives them for ``bench_scale.py``: each is the mix of
three real passages drawn uniformly, weighted by uniform draws, plus noise of relative size
0.55 (seed 0). They are indexed as ingest indexes them (``VectorIndex.build`` with the default
``[vectors]`` settings: HNSW from 50,000 vectors, efSearch calibrated to R@100 0.95). Queries:
the first ``--queries`` SciFact test queries, embedded by the workspace's query encoder.

Each document gets one numeric field drawn uniformly from [0, 1) (seed 1); the filter
``value < share`` keeps that share of the collection. The last row filters on a tag instead:
each document has one of 20 values ``g00`` ... ``g19`` (seed 2), and ``group in (g00, g01)``
keeps a tenth. Per filter, three ways to find the 100
nearest documents that pass the filter:
- *served*: ``candidates.filtered_dense_top``, what a filtered search runs (exact below
  ``EXACT_FILTERED_DOCS`` kept documents, else the approximate index searched deeper);
- *post-filter*: the unfiltered top 100, then the filter (what a search would return if it
  filtered the unfiltered candidate list): how many of the 100 it finds;
- *exact*: cosine with every kept document (the truth).
R@100 is the share of the exact top 100 found; latency is one query at a time on one thread,
p50 / p99 over the queries. The mask itself (``filters.matching`` on a column of ``--docs``
values) is timed alone.
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

import numpy as np
from common import REPO, dataset_dir, machine, print_table
from scale_collection import derived_vectors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workspace", type=Path, default=REPO / "bench" / ".work" / "scifact")
    ap.add_argument("--datasets", type=Path, default=None)
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--shares", default="1,0.5,0.2,0.1,0.05,0.01")
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()

    import faiss

    from brainrank.index.params import VectorParams
    from brainrank.index.vectors import VectorIndex
    from brainrank.ranker.config import load_config
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.retrieval import candidates
    from brainrank.ranker.retrieval.filters import FilterColumns, matching, parse_filters
    from brainrank.ranker.retrieval.search import SearchEngine

    faiss.omp_set_num_threads(1)
    engine = SearchEngine(load_config(workspace=args.workspace, env={}))
    real = np.asarray(engine.generation.vectors.embeddings, dtype=np.float32)
    info = engine.generation.vectors.encoder
    root = dataset_dir(args.datasets, "scifact")
    queries = read_queries(root / "queries.jsonl")
    judged = sorted(read_qrels(root / "qrels" / "test.tsv"))
    texts = [queries[q] for q in judged if q in queries][: args.queries]
    q = np.asarray(engine.encoder.encode(texts), dtype=np.float32)

    rng = np.random.default_rng(0)
    sources = rng.integers(0, len(real), size=(args.docs, 3))
    weights = rng.random((args.docs, 3))
    emb = derived_vectors(real, sources, weights, 0.55, rng)
    t0 = time.perf_counter()
    index = VectorIndex.build(emb, info, VectorParams())
    build_s = time.perf_counter() - t0
    field = np.random.default_rng(1).random(args.docs)
    groups = np.array([f"g{i:02d}" for i in np.random.default_rng(2).integers(0, 20, args.docs)])
    raw = {"timestamp": np.full(args.docs, np.nan), "field:value": field, "tag:group": groups}
    meta = FilterColumns(raw)  # as a Generation keeps them
    t0 = time.perf_counter()
    meta["tag:group"]  # noqa: B018 (factorised on first use, as a first tag filter does)
    factorise_ms = (time.perf_counter() - t0) * 1000

    rows = []
    filters = [(f"{float(s):g}", f"value < {float(s)}") for s in args.shares.split(",")]
    filters.append(("tag, 0.1", "group in (g00, g01)"))
    for label, condition in filters:
        conditions = parse_filters(condition)
        t0 = time.perf_counter()
        allowed = matching(conditions, meta, args.docs)
        mask_ms = (time.perf_counter() - t0) * 1000
        live = np.flatnonzero(allowed)
        served_ms, recall, post = [], [], []
        for v in q:
            truth = live[np.argsort(-(emb[live] @ v), kind="stable")[:100]]
            t0 = time.perf_counter()
            if allowed.all():  # as a search does: a filter every document meets is no filter
                got = index.search(v, 100, encoder_fingerprint=info.fingerprint)[1][0]
            else:
                got = candidates.filtered_dense_top(index, v, 100, info.fingerprint, allowed)
            served_ms.append((time.perf_counter() - t0) * 1000)
            recall.append(len(np.intersect1d(got, truth)) / len(truth))
            _, plain = index.search(v, 100, encoder_fingerprint=info.fingerprint)
            plain = plain[0][plain[0] >= 0]
            post.append(len(np.intersect1d(plain[allowed[plain]], truth)) / len(truth))
        path = "exact" if len(live) <= candidates.EXACT_FILTERED_DOCS else "approximate"
        path = "unfiltered" if allowed.all() else path
        p50, p99 = np.percentile(served_ms, [50, 99])
        rows.append(
            [
                label,
                f"{len(live):,}",
                path,
                float(np.mean(recall)),
                f"{p50:.2f} / {p99:.2f}",
                float(np.mean(post)),
                f"{mask_ms:.2f}",
            ]
        )
    print(f"# bench_filters, {date.today()}: {machine()}")
    print(
        f"{args.docs:,} derived vectors ({index.kind}, {index.quantizer}, efSearch "
        f"{index.effort}, build {build_s:.0f} s), {len(q)} SciFact test queries, top 100; "
        f"the tag column factorised once in {factorise_ms:.0f} ms"
    )
    print_table(
        "Filtered dense retrieval by the share of documents the filter keeps",
        [
            "share kept",
            "documents kept",
            "served path",
            "served R@100",
            "served p50 / p99 ms",
            "post-filter R@100",
            "mask ms",
        ],
        rows,
    )
    engine.close()


if __name__ == "__main__":
    main()
