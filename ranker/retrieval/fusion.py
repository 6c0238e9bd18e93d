"""Score fusion over a union of candidates. Arrays in, arrays out; no raw score sums."""

from __future__ import annotations

import numpy as np


def rrf(*ranks: np.ndarray, k: int = 60) -> np.ndarray:
    """Reciprocal rank fusion: sum over lists of 1/(k + rank); rank 0 means absent from a list."""
    total = np.zeros(len(ranks[0]) if ranks else 0, dtype=np.float64)
    for r in ranks:
        r = np.asarray(r)
        total += np.where(r > 0, 1.0 / (k + np.maximum(r, 1)), 0.0)
    return total


def minmax_normalise(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] within one query's candidates; a constant signal carries no order → 0."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    lo, hi = scores.min(), scores.max()
    if hi - lo <= 1e-12:
        return np.zeros_like(scores)
    return (scores - lo) / (hi - lo)


def minmax(signals: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Weighted sum of per-query min-max normalised signals."""
    if len(signals) != len(weights):
        raise ValueError(f"{len(signals)} signals but {len(weights)} weights")
    total = np.zeros(len(signals[0]) if signals else 0, dtype=np.float64)
    for s, w in zip(signals, weights, strict=True):
        total += w * minmax_normalise(s)
    return total


def order(scores: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Indices sorting by score descending, ties by ``tiebreak`` ascending (deterministic)."""
    return np.lexsort((tiebreak, -np.asarray(scores, dtype=np.float64)))
