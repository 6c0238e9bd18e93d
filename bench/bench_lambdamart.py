"""LambdaMART on the learned ranker's own lists, with few judgments (issue #15, item 3): a probe.

    .venv/bin/pip install lightgbm   # not a dependency of brainrank
    .venv/bin/python bench/bench_lambdamart.py [--collections scifact,nfcorpus-preprocessed]
        [--seeds 0,1,2] [--few 150]

Gradient-boosted trees with the LambdaRank objective (LightGBM) are the usual strong learner
for learning to rank from tabular features and few queries. This asks whether they would do
better than the TF-Ranking DNN on brainrank's 25 features. For each seed, ``brainrank train``
runs as ``bench_generalize.py --rows few --early-stopping cv`` does (150 judged training
queries, the same fixed sample); the lists it fits on (out-of-fold judged features, exactly
what the DNN sees) are captured, and LightGBM fits on them. Its number of trees is chosen by
5-fold cross-validation over those training queries (nDCG@10), nothing else is tuned. Test
features come from the trained model's own extractor, prior and memory (``candidate_features``),
so both rankers score the same candidates with the same features. Printed per collection:
BM25, the best fixed fusion, the DNN as served (its gates on), LambdaMART, LambdaMART boosted
from the fusion score (``init_score``: the trees learn a correction on top of the fusion, as
the DNN does), and the mean of the DNN's and plain LambdaMART's per-list z-scored scores;
test judgments only for the figures.
"""

from __future__ import annotations

import argparse
import statistics
from datetime import date

import numpy as np
from bench_generalize import few_setting, mean, train_model
from common import machine, print_table

TREES = (50, 100, 200, 400)
VARIANTS = ("dnn", "trees", "trees-residual", "mean")
PARAMS = {
    "objective": "lambdarank",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 20,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "verbose": -1,
    "n_jobs": 2,
}


def capture_fit_lists():
    """Patch ``train.fit_ranker`` to keep the lists it fits on and their feature names (the
    last call's)."""
    import brainrank.ranker.learning.train as train_module

    original = train_module.fit_ranker
    kept: dict = {}

    def fit_ranker(schema, fit, *args, **kwargs):
        if not kwargs.get("quiet"):
            kept["fit"], kept["fused"] = fit, schema.index("fused")
            kept["names"] = tuple(schema.names)
        return original(schema, fit, *args, **kwargs)

    train_module.fit_ranker = fit_ranker
    return kept


def flat(lists) -> tuple[np.ndarray, np.ndarray, list[int]]:
    xs, ys, groups = [], [], []
    for i, docs in enumerate(lists.doc_ids):
        n = len(docs)
        xs.append(lists.x[i, :n])
        ys.append(np.clip(np.rint(lists.y[i, :n]), 0, None).astype(np.int32))
        groups.append(n)
    return np.concatenate(xs), np.concatenate(ys), groups


def ndcg10(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.lexsort((np.arange(len(scores)), -scores))[:10]
    gains = (2.0 ** labels[order] - 1) / np.log2(np.arange(2, len(order) + 2))
    ideal = np.sort(labels)[::-1][:10]
    best = ((2.0**ideal - 1) / np.log2(np.arange(2, len(ideal) + 2))).sum()
    return float(gains.sum() / best) if best > 0 else 0.0


class Trees:
    """LightGBM LambdaRank scores; with ``base``, boosted from the fusion (feature ``base``)
    as the DNN learns a correction on top of it."""

    def __init__(self, model, base: int | None, trees: int | None = None):
        self.model, self.base, self.trees = model, base, trees

    def predict(self, x: np.ndarray, trees: int | None = None) -> np.ndarray:
        s = self.model.predict(x, num_iteration=trees or self.trees)
        return s + x[:, self.base] if self.base is not None else s

    @classmethod
    def fit(cls, x, y, groups, base: int | None, n: int, seed: int):
        import lightgbm as lgb

        model = lgb.LGBMRanker(n_estimators=n, random_state=seed, **PARAMS)
        init = x[:, base].astype(np.float64) if base is not None else None
        model.fit(x, y, group=groups, init_score=init)
        return cls(model, base)


def fit_trees(lists, seed: int, base: int | None = None):
    """LightGBM LambdaRank on ``lists`` (from the fusion column ``base`` when given); the tree
    count chosen by 5-fold CV over its queries."""

    n = len(lists.doc_ids)
    folds = np.random.default_rng(seed).permutation(n) % 5
    cv = {t: [] for t in TREES}
    for f in range(5):
        train_rows = [i for i in range(n) if folds[i] != f]
        test_rows = [i for i in range(n) if folds[i] == f]
        x, y, groups = flat(_rows(lists, train_rows))
        model = Trees.fit(x, y, groups, base, max(TREES), seed)
        for i in test_rows:
            k = len(lists.doc_ids[i])
            labels = np.clip(np.rint(lists.y[i, :k]), 0, None)
            if labels.max() <= 0:
                continue
            for t in TREES:
                cv[t].append(ndcg10(model.predict(lists.x[i, :k], t), labels))
    best = max(TREES, key=lambda t: statistics.mean(cv[t]))
    x, y, groups = flat(lists)
    return Trees.fit(x, y, groups, base, best, seed), best, statistics.mean(cv[best])


def _rows(lists, rows):
    from brainrank.ranker.learning.crossval import subset

    return subset(lists, rows)


def zscore(s: np.ndarray) -> np.ndarray:
    sd = s.std()
    return (s - s.mean()) / sd if sd > 0 else s - s.mean()


def evaluate(cfg, version, forests: dict, test_queries, test_qrels) -> dict[str, float]:
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.evaluation import per_query
    from brainrank.ranker.learning.explain import candidate_features
    from brainrank.ranker.registry.promotion import ensure_generation
    from brainrank.ranker.registry.registry import Registry
    from brainrank.ranker.retrieval.search import SearchEngine

    mv = Registry(Workspace(cfg.workspace).models_dir).get(version)
    engine = SearchEngine(cfg, generation=ensure_generation(cfg, mv))
    runs: dict[str, dict[str, list[str]]] = {k: {} for k in ("dnn", *forests, "mean")}
    for q in test_qrels:
        f = candidate_features(engine, test_queries[q], version)
        ids = np.array(f.doc_ids)
        scored = {name: trees.predict(f.features) for name, trees in forests.items()}
        scored["dnn"] = np.asarray(f.scores, dtype=np.float64)
        scored["mean"] = zscore(scored["dnn"]) + zscore(scored["trees"])
        for name, s in scored.items():
            order = np.lexsort((np.arange(len(s)), -s))[:100]
            runs[name][q] = ids[order].tolist()
    return {name: mean(per_query(test_qrels, run)) for name, run in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None)
    parser.add_argument("--collections", default="scifact,nfcorpus-preprocessed")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--few", type=int, default=150)
    args = parser.parse_args()
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        raise SystemExit("this probe needs LightGBM: .venv/bin/pip install lightgbm") from None
    seeds = [int(s) for s in args.seeds.split(",")]
    kept = capture_fit_lists()
    rows = []
    for name in args.collections.split(","):
        cfg, queries, few, test_queries, test_qrels, bm25, fusion = few_setting(args, name)
        got = {k: [] for k in VARIANTS}
        chosen = []
        for seed in seeds:
            result, _ = train_model(cfg, queries, few, seed=seed, early_stopping="cv")
            forests, picks = {}, []
            for label, base in (("trees", None), ("trees-residual", kept["fused"])):
                forests[label], n_trees, cv = fit_trees(kept["fit"], seed, base)
                picks.append(f"{n_trees} (cv {cv:.4f})")
            chosen.append(" / ".join(picks))
            scores = evaluate(cfg, result.version, forests, test_queries, test_qrels)
            for k, v in scores.items():
                got[k].append(v)
            dnn_cv = max(result.summary["ranker"].get("curve") or [float("nan")])
            print(
                f"{name} seed {seed}: "
                + " ".join(f"{k} {v:.4f}" for k, v in scores.items())
                + f"; trees chosen {chosen[-1]}; dnn cv {dnn_cv:.4f}",
                flush=True,
            )
        rows.append(
            [
                f"{name}, {args.few} train queries",
                f"{bm25:.4f}",
                f"{fusion:.4f}",
                *(
                    f"{statistics.mean(got[k]):.4f} ({statistics.mean(got[k]) - fusion:+.4f})"
                    for k in VARIANTS
                ),
                "; ".join(chosen),
            ]
        )
    print(f"\n{machine()}, {date.today()}, seeds {args.seeds}")
    print_table(
        "LambdaMART beside the DNN, few judgments (test nDCG@10; over the best fixed fusion)",
        [
            "setting",
            "bm25",
            "best fixed fusion",
            "DNN (served)",
            "LambdaMART",
            "LambdaMART from the fusion",
            "mean of DNN and LambdaMART",
            "trees (cv): plain / from the fusion",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
