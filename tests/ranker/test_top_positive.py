"""Keyword top-n selection: exact, ties by position, positive scores only."""

from __future__ import annotations

import numpy as np
import pytest

from brainrank.ranker.retrieval.candidates import top_positive


def brute_force(scores: np.ndarray, n: int) -> list[int]:
    return [i for _, i in sorted((-s, i) for i, s in enumerate(scores.tolist()) if s > 0)][:n]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [1, 5, 100])
def test_matches_a_full_sort_with_ties_and_zeros(seed, n):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 5000))
    # Few distinct values: many ties, also at the n-th place; most documents match nothing.
    scores = rng.choice([0, 0, 0, 0.5, 1.25, 2.0, 7.5], size=size).astype(np.float32)
    scores[rng.random(size) < 0.1] = rng.random()  # one more tied value
    assert top_positive(scores, n).tolist() == brute_force(scores, n)


def test_continuous_scores_and_the_sampled_floor():
    rng = np.random.default_rng(0)
    scores = np.maximum(rng.normal(size=200_000), 0).astype(np.float32)
    scores[::16] = 0  # the sample the floor is taken from holds nothing: no floor
    assert top_positive(scores, 100).tolist() == brute_force(scores, 100)
    scores = rng.gamma(2.0, size=100_000).astype(np.float32)
    assert top_positive(scores, 100).tolist() == brute_force(scores, 100)


def test_fewer_matches_than_asked_and_none():
    scores = np.zeros(1000, dtype=np.float32)
    assert top_positive(scores, 10).tolist() == []
    scores[[7, 3, 900]] = [1.0, 2.0, 1.0]
    assert top_positive(scores, 10).tolist() == [3, 7, 900]
