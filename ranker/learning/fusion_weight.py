"""The learned ranker's base fusion, weighted on the training judgments.

The ranker learns a correction on top of ``fused``, the min-max fusion of BM25 and dense
retrieval (``features``). Its dense share comes from ``[retrieval] dense_weight``, a default
chosen once on SciFact's training judgments; a collection where one retriever is much the
better (a help centre whose questions rarely use the answers' words, product codes that only
BM25 matches) starts the correction from a worse base than it could. ``choose_dense_weight``
picks the share on the training lists themselves (never the holdout), and ``set_fused``
rewrites the ``fused`` column for it: the candidates do not change, only the base order.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from brainrank.ranker.learning.crossval import pool
from brainrank.ranker.learning.features import FeatureSchema
from brainrank.ranker.learning.lists import ListSet

# Dense shares tried: 0, 0.1, ..., 1.
GRID = tuple(round(0.1 * i, 1) for i in range(11))
# Another share replaces the configured one only when it is better by more than this mean
# nDCG@10 over the training lists: a difference the size of one query's tie-break is noise.
MIN_GAIN = 0.005
CUTOFF = 10


def list_ndcg(scores: np.ndarray, labels: np.ndarray, k: int = CUTOFF) -> np.ndarray:
    """nDCG@k of each padded list (labels -1 = padding; linear gains, as trec_eval's),
    against the ideal order of the list's own labels; lists with no positive label give 0."""
    scores = np.where(labels >= 0, scores, -np.inf)
    gains = np.clip(labels, 0, None).astype(np.float64)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    width = min(k, labels.shape[1])
    # Ties by list position, as a stable sort of the candidates would break them.
    top = np.argsort(-scores, axis=1, kind="stable")[:, :width]
    dcg = (np.take_along_axis(gains, top, axis=1) * discount[:width]).sum(axis=1)
    ideal = (-np.sort(-gains, axis=1)[:, :width] * discount[:width]).sum(axis=1)
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def fused_at(lists: ListSet, schema: FeatureSchema, dense_weight: float) -> np.ndarray:
    """The ``fused`` column the lists would hold with another dense share [n, L]."""
    bm25 = lists.x[..., schema.index("bm25_norm")].astype(np.float64)
    dense = lists.x[..., schema.index("dense_norm")].astype(np.float64)
    return (1.0 - dense_weight) * bm25 + dense_weight * dense


def choose_dense_weight(lists: ListSet, schema: FeatureSchema) -> tuple[float, dict]:
    """The dense share whose fusion ranks ``lists`` best by mean nDCG@10, and the mean per
    share tried. The configured share is kept unless another beats it by ``MIN_GAIN``."""
    configured = schema.dense_weight
    shares = sorted({*GRID, configured})
    if not len(lists.keys):
        return configured, {}
    means = {w: float(list_ndcg(fused_at(lists, schema, w), lists.y).mean()) for w in shares}
    best = max(shares, key=lambda w: (means[w], -abs(w - configured)))
    chosen = best if means[best] > means[configured] + MIN_GAIN else configured
    return chosen, {str(w): round(m, 4) for w, m in means.items()}


def set_fused(schema: FeatureSchema, dense_weight: float, *lists: ListSet) -> FeatureSchema:
    """Rewrite each list's ``fused`` column for ``dense_weight`` (padding stays 0) and return
    the schema that extracts it so at serving time."""
    column = schema.index("fused")
    for ls in lists:
        if ls is None:
            continue
        pad = ls.y < 0
        ls.x[..., column] = np.where(pad, ls.x[..., column], fused_at(ls, schema, dense_weight))
    return replace(schema, dense_weight=float(dense_weight))


def tune(schema: FeatureSchema, tr: ListSet, va: ListSet, ho: ListSet, fit: ListSet):
    """Choose the share for a training run and set it in every list: (schema, summary).

    ``fit`` is the lists the ranker fits on; when it is not ``tr``, those came from the index
    before encoder fine-tuning, and the fine-tuned encoder has seen the train queries, whose
    lists then flatter dense (SciFact: share 0.9 chosen there, test learned 0.8428; 0.6 chosen
    on validation, 0.8475), so only the validation queries, new to it, choose.
    """
    on_validation = fit is not tr
    weight, tried = choose_dense_weight(va if on_validation else pool([tr, va]), schema)
    summary = {
        "configured_dense_weight": schema.dense_weight,
        "dense_weight": weight,
        "chosen_on": "validation queries" if on_validation else "training queries",
        "ndcg10_by_share": tried,
    }
    return set_fused(schema, weight, tr, va, ho, fit if on_validation else None), summary
