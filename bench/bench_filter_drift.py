"""Would filtered searches read as feature drift? The question behind logging them without
feature rows.

    make demo   # the trained sample workspace, brainrank-data/sample
    .venv/bin/python bench/bench_filter_drift.py [--workspace brainrank-data/sample]

The sample's queries are split in two halves by their order in data/queries.jsonl. The first
half's learned top 10 feature rows stand for the reference; the second half is served
unfiltered, then under each filter, and compared with it as the feature monitor compares a
window (``monitoring.stats.feature_drift``, the default ``[monitor]`` settings). A feature
"drifts" as it would in `brainrank monitor` when PSI and its test are both past their
thresholds (the share of values outside the training range, which the monitor also checks,
is left out here).
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
from common import REPO, machine, print_table

FILTERS = (
    (),
    ("category = catalog",),
    ("category = help",),
    ("price < 50",),
    ("timestamp >= 2025-01-01",),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=REPO / "brainrank-data" / "sample")
    args = parser.parse_args()
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.config import load_config
    from brainrank.ranker.monitoring.stats import feature_drift
    from brainrank.ranker.retrieval.search import SearchEngine

    if not Workspace(args.workspace).models_dir.exists():
        raise SystemExit(f"{args.workspace} has no trained model: run `make demo` first")
    cfg = load_config(None, workspace=args.workspace)
    engine = SearchEngine(cfg)
    lines = (REPO / "data" / "queries.jsonl").read_text().splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    half = len(texts) // 2

    def rows(queries, where):
        found = [engine.search(q, k=10, mode="learned", where=where) for q in queries]
        return np.concatenate([r.features for r in found if r.features is not None and len(r.hits)])

    reference = rows(texts[:half], ())
    names = engine.search(texts[0], k=1, mode="learned").feature_names
    table = []
    for where in FILTERS:
        live = rows(texts[half:], where)
        drift = feature_drift(reference, half, live, len(texts) - half, names, cfg.ops.monitor)
        fired = [f"{r['feature']} (PSI {r['psi']:.2f})" for r in drift if r["drifted"]]
        table.append(
            [" and ".join(where) or "none (unfiltered)", str(len(live)), ", ".join(fired) or "-"]
        )
    print(f"\n{machine()}, {date.today()}, {args.workspace}")
    print_table(
        f"Feature drift of the sample's second {len(texts) - half} queries against its first "
        f"{half} (learned top 10 rows)",
        ["filter on the second half", "rows", "features that drift"],
        table,
    )


if __name__ == "__main__":
    main()
