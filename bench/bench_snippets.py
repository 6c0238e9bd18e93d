"""What snippets cost a search: warm latency with and without them, per mode.

    .venv/bin/python bench/bench_snippets.py --workspace /tmp/sf-ingest [--collection scifact]
        [--modes bm25,hybrid-minmax] [--k 10] [--repeats 3]

The workspace must hold the collection already (``bench_retrieval.py --workspace W`` ingests
it). Each of the collection's test queries is searched ``--repeats`` times per setting, the two
settings interleaved query by query so both see the same machine; p50 and p99 are over every
search, and the characters per snippet and highlighted words per snippet are averaged.
"""

from __future__ import annotations

import argparse
import statistics
from datetime import date
from pathlib import Path

import numpy as np
from common import dataset_dir, machine, print_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--collection", default="scifact")
    ap.add_argument("--datasets", type=Path, default=None)
    ap.add_argument("--modes", default="bm25,hybrid-minmax")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import brainrank
    from brainrank.ranker.evaluation import read_qrels, read_queries

    root = dataset_dir(args.datasets, args.collection)
    queries = read_queries(root / "queries.jsonl")
    judged = read_qrels(root / "qrels" / "test.tsv")
    texts = [queries[q] for q in sorted(judged) if q in queries]
    rows = []
    with brainrank.open(args.workspace) as engine:
        for mode in args.modes.split(","):
            for text in texts[:5]:  # warm-up: indexes paged in, encoder loaded
                engine.search(text, k=args.k, mode=mode, snippets=True)
            times: dict[bool, list[float]] = {False: [], True: []}
            chars, marks = [], []
            for text in texts:
                for _ in range(args.repeats):
                    for snippets in (False, True):
                        result = engine.search(text, k=args.k, mode=mode, snippets=snippets)
                        times[snippets].append(result.latency_ms)
                for s in result.snippets.values():
                    chars.append(len(s.text))
                    marks.append(len(s.highlights))
            p = {s: np.percentile(times[s], [50, 99]) for s in times}
            rows.append(
                [
                    mode,
                    f"{p[False][0]:.2f} / {p[False][1]:.2f}",
                    f"{p[True][0]:.2f} / {p[True][1]:.2f}",
                    f"{p[True][0] - p[False][0]:+.2f}",
                    f"{statistics.mean(chars):.0f}",
                    f"{statistics.mean(marks):.1f}",
                ]
            )
    print(f"Machine: {machine()}; {date.today()}")
    print(f"{args.collection} test: {len(texts)} queries x {args.repeats}, k={args.k}, warm")
    print_table(
        "Search latency with and without snippets (ms)",
        [
            "mode",
            "p50 / p99 without",
            "p50 / p99 with snippets",
            "p50 difference",
            "characters per snippet",
            "highlights per snippet",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
