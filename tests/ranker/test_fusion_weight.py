"""The base fusion's dense share, chosen on training lists (ranker.learning.fusion_weight)."""

from __future__ import annotations

import ir_measures
import numpy as np
import pytest
from ir_measures import nDCG

from brainrank.ranker.learning.features import FeatureSchema
from brainrank.ranker.learning.fusion_weight import (
    MIN_GAIN,
    choose_dense_weight,
    list_ndcg,
    set_fused,
)
from brainrank.ranker.learning.lists import ListSet

SCHEMA = FeatureSchema.create(dense_weight=0.6, rrf_k=60)
F = len(SCHEMA.names)


def lists(bm25: np.ndarray, dense: np.ndarray, y: np.ndarray) -> ListSet:
    n, length = y.shape
    x = np.zeros((n, length, F), dtype=np.float32)
    x[..., SCHEMA.index("bm25_norm")] = bm25
    x[..., SCHEMA.index("dense_norm")] = dense
    x[..., SCHEMA.index("fused")] = np.where(y >= 0, 0.4 * bm25 + 0.6 * dense, 0.0)
    ids = [[f"d{j}" for j in range(length) if y[i, j] >= 0] for i in range(n)]
    return ListSet([f"q{i}" for i in range(n)], [""] * n, x, y.astype(np.float32), ids)


def test_list_ndcg_matches_ir_measures():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=(6, 15)).astype(np.float32)
    y[:, 12:] = -1  # padding
    y[5] = np.where(y[5] >= 0, 0, -1)  # a list with nothing relevant: 0
    scores = rng.normal(size=y.shape)
    got = list_ndcg(scores, y)
    qrels = [
        ir_measures.Qrel(f"q{i}", f"d{j}", int(y[i, j]))
        for i in range(6)
        for j in range(15)
        if y[i, j] >= 0
    ]
    run = [
        ir_measures.ScoredDoc(f"q{i}", f"d{j}", float(scores[i, j]))
        for i in range(6)
        for j in range(15)
        if y[i, j] >= 0
    ]
    want = {m.query_id: m.value for m in ir_measures.iter_calc([nDCG @ 10], qrels, run)}
    np.testing.assert_allclose(got[:5], [want[f"q{i}"] for i in range(5)], atol=1e-9)
    assert got[5] == 0.0


def test_a_collection_where_dense_is_right_gets_a_dense_base():
    rng = np.random.default_rng(1)
    y = np.zeros((40, 20), dtype=np.float32)
    y[:, 0] = 3  # the relevant candidate is first in every list
    dense = rng.uniform(0, 0.9, size=y.shape)
    dense[:, 0] = 1.0  # dense always puts it on top, BM25 never does
    bm25 = rng.uniform(0.1, 1.0, size=y.shape)
    bm25[:, 0] = 0.0
    ls = lists(bm25, dense, y)
    weight, tried = choose_dense_weight(ls, SCHEMA)
    # Every share that ranks perfectly ties; the one nearest the configured 0.6 wins.
    assert weight > 0.6 and tried[str(weight)] == pytest.approx(1.0) == tried["1.0"]
    assert all(v < 1.0 for w, v in tried.items() if float(w) < weight)
    assert tried["0.0"] < tried["0.6"]
    schema = set_fused(SCHEMA, weight, ls)
    assert schema.dense_weight == weight and schema.names == SCHEMA.names
    np.testing.assert_allclose(
        ls.x[..., SCHEMA.index("fused")], (1 - weight) * bm25 + weight * dense, atol=1e-6
    )


def test_no_clear_gain_keeps_the_configured_share():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, size=(30, 12)).astype(np.float32)
    same = rng.uniform(size=y.shape)  # both retrievers agree: every share ranks alike
    ls = lists(same, same, y)
    weight, tried = choose_dense_weight(ls, SCHEMA)
    assert weight == 0.6
    assert max(tried.values()) - tried["0.6"] <= MIN_GAIN
    before = ls.x.copy()
    assert set_fused(SCHEMA, weight, ls) == SCHEMA
    np.testing.assert_allclose(ls.x, before, atol=1e-6)


def test_padding_stays_zero_and_empty_lists_keep_the_share():
    y = np.array([[2, 0, -1, -1]], dtype=np.float32)
    ls = lists(np.array([[0.0, 1.0, 0.5, 0.5]]), np.array([[1.0, 0.0, 0.5, 0.5]]), y)
    set_fused(SCHEMA, 1.0, ls)
    np.testing.assert_allclose(ls.x[0, :, SCHEMA.index("fused")], [1.0, 0.0, 0.0, 0.0])
    empty = lists(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 4)))
    assert choose_dense_weight(empty, SCHEMA) == (0.6, {})
