"""Benchmark ListwiseRanker on synthetic lists: seconds per epoch, NDCG@10, scoring latency.

Usage: python bench/bench_ranker_synthetic.py [--lists 1000] [--docs 100] [--features 20]
       [--epochs 60] [--patience 6] [--configs dnn:softmax gam:approx_ndcg ...]

Relevance is graded 0-4 from within-list quantiles of
sin(2 x0) + x1 x2 + 0.5 x3^2 - |x4| + 0.3 x5 plus noise; the remaining features are pure noise.
Test NDCG@10 is compared with random scores, least squares on the features and the true
function (oracle). Latency is one ``score`` call on a single list, after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import machine, print_table  # also puts the repo root on sys.path

CONFIGS = ["dnn:softmax", "dnn:approx_ndcg", "gam:softmax", "gam:approx_ndcg"]


def signal(x: np.ndarray) -> np.ndarray:
    return (
        np.sin(2 * x[..., 0])
        + x[..., 1] * x[..., 2]
        + 0.5 * x[..., 3] ** 2
        - np.abs(x[..., 4])
        + 0.3 * x[..., 5]
    )


def make_lists(n_lists: int, n_docs: int, n_features: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_lists, n_docs, n_features)).astype(np.float32)
    g = signal(x) + 0.3 * rng.normal(size=(n_lists, n_docs))
    cuts = np.quantile(g, [0.5, 0.75, 0.9, 0.97], axis=1)  # [4, n_lists]
    y = (g[None] > cuts[..., None]).sum(axis=0).astype(np.float32)
    return x, y


def ndcg10(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean NDCG@10, gain 2^y - 1 and log2 discount (every list here has a relevant doc)."""
    k = min(10, labels.shape[1])
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    top = np.take_along_axis(labels, np.argsort(-scores, axis=1, kind="stable")[:, :k], axis=1)
    ideal = -np.sort(-labels, axis=1)[:, :k]
    return float(np.mean(((2.0**top - 1) @ discounts) / ((2.0**ideal - 1) @ discounts)))


def latency_ms(ranker, one_list: np.ndarray, repeats: int) -> tuple[float, float]:
    """p50 and p99 milliseconds of score() on one list, numpy in and out."""
    for _ in range(10):
        ranker.score(one_list)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ranker.score(one_list)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def main() -> None:
    """Train every configuration and print Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=1000, help="training lists")
    parser.add_argument("--eval-lists", type=int, default=200, help="validation and test lists")
    parser.add_argument("--docs", type=int, default=100, help="documents per list")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=60, help="max epochs")
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=300, help="latency samples")
    parser.add_argument("--configs", nargs="+", default=CONFIGS, help="scorer:loss pairs")
    args = parser.parse_args()
    from brainrank.ranker.learning.ranker_params import RankerParams
    from brainrank.ranker.learning.tfr_model import ListwiseRanker

    if args.features < 6:
        parser.error("--features must be at least 6 (the signal uses x0..x5)")

    x_train, y_train = make_lists(args.lists, args.docs, args.features, seed=0)
    x_val, y_val = make_lists(args.eval_lists, args.docs, args.features, seed=1)
    x_test, y_test = make_lists(args.eval_lists, args.docs, args.features, seed=2)
    print(f"machine: {machine()}")
    print(
        f"data: {args.lists} train / {args.eval_lists} val / {args.eval_lists} test lists x "
        f"{args.docs} docs x {args.features} features"
    )

    rng = np.random.default_rng(3)
    design = np.c_[x_train.reshape(-1, args.features), np.ones(y_train.size)]
    w, *_ = np.linalg.lstsq(design, y_train.ravel(), rcond=None)
    refs = [
        ["random", ndcg10(rng.normal(size=y_test.shape), y_test)],
        ["linear (least squares)", ndcg10(x_test @ w[:-1], y_test)],
        ["oracle (true function)", ndcg10(signal(x_test), y_test)],
        [
            "additive part only (GAM ceiling)",
            ndcg10(signal(x_test) - x_test[..., 1] * x_test[..., 2], y_test),
        ],
    ]
    print_table("Reference test NDCG@10", ["scorer", "NDCG@10"], refs)

    rows = []
    for config in args.configs:
        scorer, loss = config.split(":")
        params = RankerParams(
            scorer=scorer, loss=loss, max_epochs=args.epochs, patience=args.patience
        )
        ranker = ListwiseRanker.create(args.features, params)
        stamps = [time.perf_counter()]
        history = ranker.fit(
            x_train,
            y_train,
            x_val,
            y_val,
            on_epoch=lambda e, logs, stamps=stamps: stamps.append(time.perf_counter()),
        )
        epoch_s = np.diff(stamps)
        p50, p99 = latency_ms(ranker, x_test[0], args.repeats)
        docs_p50, _ = latency_ms(ranker, x_test[0, :20], args.repeats)
        rows.append(
            [
                scorer,
                loss,
                f"{history['epochs']} ({history['best_epoch']})",
                float(epoch_s[0]),
                float(np.median(epoch_s[1:])) if len(epoch_s) > 1 else float("nan"),
                history["seconds"],
                history["best_val_ndcg10"],
                ndcg10(ranker.score(x_test), y_test),
                p50,
                p99,
                docs_p50,
            ]
        )
        print(f"done {config}: {rows[-1]}", flush=True)

    print_table(
        "ListwiseRanker (defaults: hidden 64-32, dropout 0.1, Adam 1e-3, batch 32 lists)",
        [
            "scorer",
            "loss",
            "epochs (best)",
            "1st epoch s",
            "s/epoch",
            "fit s",
            "val NDCG@10",
            "test NDCG@10",
            f"score 1x{args.docs} p50 ms",
            "p99 ms",
            "score 1x20 p50 ms",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
