"""Is the challenger better? Its holdout metrics beside the champion's and the fixed modes',
and the promotion verdict (``decision``): on the holdout when it has enough queries, else
cross-validated over every judged query (``crossval``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from brainrank.ranker.config import PromotionConfig
from brainrank.ranker.evaluation import METRICS, Qrels, per_query, score_run
from brainrank.ranker.learning.crossval import cross_validate, pool, score_lists, subset
from brainrank.ranker.learning.decision import (
    CROSS_VALIDATION,
    FIXED_MODES,
    HOLDOUT,
    Decision,
    decide,
)
from brainrank.ranker.learning.lists import ListSet, rank_lists
from brainrank.ranker.progress import Progress


def compare(engine, challenger, lists: ListSet, qrels: Qrels, champion):
    """Holdout metrics of challenger, champion and the fixed modes the champion would face,
    and each one's per-query nDCG@10 (for the promotion decision)."""
    runs = {"challenger": rank_lists(score_lists(challenger, lists), lists)}
    for mode in FIXED_MODES:
        runs[mode] = mode_run(engine, lists, mode)
    if champion is not None:
        runs["champion"] = mode_run(engine, lists, "learned")
    metrics = {
        name: {m: round(v, 4) for m, v in score_run(qrels, run).items() if m in METRICS}
        for name, run in runs.items()
    }
    return metrics, {name: per_query(qrels, run) for name, run in runs.items()}


def verdict(
    settings: PromotionConfig,
    engine,
    lists: tuple[ListSet, ListSet, ListSet],
    qrels: Qrels,
    champion,
    per: dict[str, dict[str, float]],
    fit: Callable[[ListSet, ListSet, dict, object], object] | None,
    *,
    seed: int,
    progress: Progress,
    generation=None,
    schema=None,
) -> tuple[Decision, dict | None]:
    """The promotion decision, and the cross-validation summary when it cross-validated.

    ``per`` holds the holdout's per-query nDCG@10 (``compare``); ``fit(train, validation,
    prior, memory)`` refits the recipe for a fold, None when the recipe cannot be refitted
    that way (encoder fine-tuning).
    """
    tr, va, ho = lists
    names = ["champion"] if champion is not None else list(FIXED_MODES)
    if len(ho.keys) >= settings.min_holdout_queries:
        return decide(per["challenger"], {n: per[n] for n in names}, settings, seed=seed), None
    if fit is None:
        why = (
            f"only {len(ho.keys)} held-out queries, and cross-validation does not cover "
            "encoder fine-tuning; promote by hand after checking `brainrank eval`"
        )
        return Decision(False, HOLDOUT, len(ho.keys), settings.margin, (), why), None
    pooled = pool([tr, va, ho])
    judged = {k: qrels[k] for k in pooled.keys if k in qrels}
    # Each fold traces a new ranker's graph; TensorFlow warns about retracing when it is
    # expected, and the warning would only confuse.
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        with progress.task("Cross-validation (folds)", settings.folds) as advance:
            oof = cross_validate(
                generation,
                schema,
                pooled,
                judged,
                fit,
                folds=settings.folds,
                seed=seed,
                on_fold=lambda: advance(1),
            )
    finally:
        tf_log.setLevel(level)
    if champion is not None:
        # Only queries the champion never trained on: its own holdout.
        unseen = set(champion.meta.get("holdout_queries") or ()) & set(judged)
        keep, modes = unseen, ["learned"]
    else:
        keep, modes = set(judged), list(FIXED_MODES)
    rows = subset(pooled, [i for i, k in enumerate(pooled.keys) if k in keep])
    graded = {q: judged[q] for q in keep}
    incumbents = {
        ("champion" if mode == "learned" else mode): (
            per_query(graded, mode_run(engine, rows, mode)) if keep else {}
        )
        for mode in modes
    }
    summary = {
        "folds": settings.folds,
        "queries": len(oof),
        "nDCG@10": {
            name: round(float(np.mean([scores[q] for q in oof if q in scores])), 4)
            for name, scores in {"challenger": oof, **incumbents}.items()
            if any(q in scores for q in oof)
        },
    }
    return decide(oof, incumbents, settings, method=CROSS_VALIDATION, seed=seed), summary


def mode_run(engine, lists: ListSet, mode: str) -> dict[str, list[str]]:
    """The top 100 document ids of each list's query, as ``engine`` ranks it in ``mode``."""
    return {
        key: [h.doc_id for h in engine.search(text, k=100, mode=mode).hits]
        for key, text in zip(lists.keys, lists.texts, strict=True)
    }
