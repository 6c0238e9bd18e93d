"""Retrieval benchmark on a BEIR collection: ingest/index time, embedding rate, metrics, latency.

    .venv/bin/python bench/bench_retrieval.py [--collection scifact] [--split test]
        [--datasets DIR] [--workspace DIR] [--modes bm25,dense,hybrid-rrf,hybrid-minmax]

The workspace defaults to bench/.work/<collection> (ignored by git); an existing workspace is
reused unless --fresh, so metrics can be rerun without re-embedding.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import date
from pathlib import Path

from common import REPO, dataset_dir, machine, print_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--collection", default="scifact")
    ap.add_argument("--split", default="test")
    ap.add_argument("--datasets", type=Path, default=None)
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--modes", default="bm25,dense,hybrid-rrf,hybrid-minmax")
    ap.add_argument("--fresh", action="store_true", help="delete the workspace first")
    ap.add_argument("--json", type=Path, default=None, help="also write results here")
    args = ap.parse_args()

    from brainrank.index.readers import read_documents
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.config import load_config
    from brainrank.ranker.evaluation import evaluate, read_qrels, read_queries
    from brainrank.ranker.retrieval.indexing import update_indexes
    from brainrank.ranker.retrieval.search import SearchEngine

    data = dataset_dir(args.datasets, args.collection)
    ws_dir = args.workspace or REPO / "bench" / ".work" / args.collection
    if args.fresh and ws_dir.exists():
        shutil.rmtree(ws_dir)
    cfg = load_config(workspace=ws_dir, env={})
    ws = Workspace(ws_dir)

    t = time.perf_counter()
    docs = read_documents(data).documents
    read_s = time.perf_counter() - t

    def encoder():  # what ingest embeds with ([encoder] bulk_runtime and bulk_precision)
        from brainrank.ranker.encoding.bulk import load_bulk_encoder

        return load_bulk_encoder(cfg.encoder.resolved_path(), cfg.encoder)

    rep = update_indexes(ws, cfg, documents=docs, encoder_factory=encoder)
    s = rep.seconds
    emb_rate = rep.embedded / s["embedding"] if rep.embedded and s.get("embedding") else None
    print(f"machine: {machine()}; date: {date.today()}")
    print_table(
        f"Ingest: {args.collection}, {len(docs)} documents",
        [
            "read s",
            "total ingest s",
            "keyword index s",
            "embedding s",
            "docs embedded",
            "docs/s embedded",
            "vector index s",
        ],
        [
            [
                read_s,
                s.get("total", 0.0),
                s.get("keyword_index", "reused"),
                s.get("embedding", "reused"),
                rep.embedded,
                f"{emb_rate:.1f}" if emb_rate else "n/a (reused)",
                s.get("vector_index", "reused"),
            ]
        ],
    )

    queries = read_queries(data / "queries.jsonl")
    qrels = read_qrels(data / "qrels" / f"{args.split}.tsv")
    engine = SearchEngine(cfg)
    modes = args.modes.split(",")
    results = evaluate(engine, queries, qrels, modes)
    print_table(
        f"Retrieval quality and warm latency: {args.collection} {args.split} "
        f"({results[modes[0]]['queries']} queries)",
        ["mode", "nDCG@10", "RR@10", "R@100", "AP", "p50 ms", "p99 ms"],
        [
            [
                m,
                r["nDCG@10"],
                r["RR@10"],
                r["R@100"],
                r["AP"],
                r["latency_ms"]["p50"],
                r["latency_ms"]["p99"],
            ]
            for m, r in results.items()
        ],
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"ingest": rep.seconds, "embedded": rep.embedded, "results": results}, indent=2
            )
        )


if __name__ == "__main__":
    main()
