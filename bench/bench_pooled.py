"""Another collection's judged lists beside few judgments of one's own (issue #15): a probe.

    .venv/bin/python bench/bench_pooled.py [--seeds 0,1,2] [--few 150]
        [--pairs nfcorpus-preprocessed:scifact,scifact:nfcorpus-preprocessed]
        [--source-weight 1.0] [--source-lists 0] [--source-judged kept|zeroed]

brainrank's 25 features are normalised per query, so a list from one collection reads as a
list from another: "BM25 and dense agree on this document", "it is the best passage's
neighbour", ... The probe asks whether a collection with only ``--few`` judged queries learns a
better correction when the ranker also fits on the lists of a *source* collection with all of
its train judgments (the "model trained on public data, then adapted" of the mission, for the
ranker rather than the encoder).

For each ``source:target`` pair: ``brainrank train`` runs on the source with all its train
judgments (ranker only) and the lists it fits on are kept (out-of-fold judged features, exactly
what its DNN saw). Then, per seed, ``brainrank train`` runs on the target as
``bench_generalize.py --rows few --early-stopping cv`` does (the same fixed sample of 150
train queries), once as it is and once with the source lists appended to every fit of the
ranker: each cross-validation fold that chooses the epoch count and the final fit alike (the
target's folds still judge the epochs; the gates, judged features and holdout are the
target's own). Printed: test nDCG@10 of BM25, the best fixed fusion, and the learned model as
served (gates on), plain and pooled, with each seed's epoch count and the start of its
cross-validated curve; test judgments only for the figures. Variants: ``--source-lists N`` a
seeded sample of N source lists (as many as the target's, say), ``--source-judged zeroed``
the source lists without their judged features (which are strong where all judgments train
and weak with 150), ``--source-weight`` scales the source's labels.
"""

from __future__ import annotations

import argparse
import statistics
from datetime import date

import numpy as np
from bench_generalize import few_setting, judged, mean, per_query_modes, train_model
from bench_lambdamart import capture_fit_lists
from bench_learned import workspace
from common import machine, print_table


def pad(x: np.ndarray, y: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[1] >= width:
        return x, y
    xp = np.zeros((x.shape[0], width, x.shape[2]), dtype=x.dtype)
    yp = np.full((y.shape[0], width), -1.0, dtype=y.dtype)
    xp[:, : x.shape[1]], yp[:, : y.shape[1]] = x, y
    return xp, yp


class Pooled:
    """While active, every ``ListwiseRanker.fit`` also trains on ``extra`` (x, y) lists."""

    def __init__(self, x: np.ndarray, y: np.ndarray, weight: float):
        self.x, self.y, self.weight = x, y, weight
        self.active = False
        from brainrank.ranker.learning.tfr_model import ListwiseRanker

        original = ListwiseRanker.fit
        pooled = self

        def fit(self, x_train, y_train, *args, **kwargs):
            if pooled.active:
                width = max(x_train.shape[1], pooled.x.shape[1])
                xt, yt = pad(x_train, y_train, width)
                xs, ys = pad(pooled.x, pooled.y, width)
                ys = np.where(ys > 0, ys * pooled.weight, ys)
                x_train, y_train = np.concatenate([xt, xs]), np.concatenate([yt, ys])
            return original(self, x_train, y_train, *args, **kwargs)

        ListwiseRanker.fit = fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None)
    parser.add_argument(
        "--pairs", default="nfcorpus-preprocessed:scifact,scifact:nfcorpus-preprocessed"
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--few", type=int, default=150)
    parser.add_argument("--source-weight", type=float, default=1.0)
    parser.add_argument(
        "--source-judged",
        choices=("kept", "zeroed"),
        default="kept",
        help="the source lists' judged features (judgment prior, query memory)",
    )
    parser.add_argument(
        "--source-lists", type=int, default=0, help="a seeded sample of this many (0: all)"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    kept = capture_fit_lists()
    rows = []
    for pair in args.pairs.split(","):
        source, target = pair.split(":")
        cfg, _ = workspace(source, args.datasets)
        queries, qrels = judged(source, args.datasets, "train")
        train_model(cfg, queries, qrels, seed=0, early_stopping="auto")
        lists, names = kept["fit"], kept["names"]
        if 0 < args.source_lists < len(lists.keys):
            from brainrank.ranker.learning.crossval import subset

            rng = np.random.default_rng(12345)
            lists = subset(lists, sorted(rng.choice(len(lists.keys), args.source_lists, False)))
        if args.source_judged == "zeroed":
            lists.x = lists.x.copy()
            for name in ("judged_doc", "judged_similar"):
                lists.x[..., names.index(name)] = 0.0
        print(f"{source}: {len(lists.keys)} source lists of width {lists.x.shape[1]}", flush=True)
        pooled = Pooled(lists.x, lists.y, args.source_weight)
        cfg, queries, few, test_queries, test_qrels, bm25, fusion = few_setting(args, target)
        got: dict[str, list[float]] = {"plain": [], "pooled": []}
        for seed in seeds:
            for label in ("plain", "pooled"):
                pooled.active = label == "pooled"
                try:
                    result, _ = train_model(cfg, queries, few, seed=seed, early_stopping="cv")
                finally:
                    pooled.active = False
                if kept["names"] != names:
                    raise SystemExit(f"feature schemas differ: {names} vs {kept['names']}")
                learned = per_query_modes(
                    cfg, test_queries, test_qrels, ["learned"], model=result.version
                )["learned"]
                got[label].append(mean(learned))
                ranker = result.summary.get("ranker", {})
                epochs = ranker.get("epochs")
                curve = " ".join(f"{v:.3f}" for v in (ranker.get("curve") or [])[:8])
                print(
                    f"{source}->{target} seed {seed} {label}: {got[label][-1]:.4f} "
                    f"(epochs {epochs}; cross-validated curve {curve} ...)",
                    flush=True,
                )
        rows.append(
            [
                f"{target}, {args.few} train queries (+ {source}'s {len(lists.keys)} lists)",
                f"{bm25:.4f}",
                f"{fusion:.4f}",
                *(
                    f"{statistics.mean(got[k]):.4f} ({statistics.mean(got[k]) - fusion:+.4f}; "
                    + ", ".join(f"{v:.3f}" for v in got[k])
                    + ")"
                    for k in ("plain", "pooled")
                ),
            ]
        )
    print(
        f"\n{machine()}, {date.today()}, seeds {args.seeds}, source weight "
        f"{args.source_weight}, source lists {args.source_lists or 'all'}, their judged "
        f"features {args.source_judged}"
    )
    print_table(
        "Few judgments with another collection's lists (test nDCG@10; over the best fixed fusion)",
        ["setting", "bm25", "best fixed fusion", "learned (served)", "learned, pooled"],
        rows,
    )


if __name__ == "__main__":
    main()
