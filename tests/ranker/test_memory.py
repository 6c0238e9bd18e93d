"""The query memory behind the judged_similar feature: neighbours, weights, storage."""

from __future__ import annotations

import numpy as np
import pytest

from brainrank.index.errors import BrainrankError, IndexMismatchError
from brainrank.ranker.learning.memory import QueryMemory


def unit(*v):
    a = np.array(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def memory(**kw):
    vectors = np.stack([unit(1, 0, 0), unit(0.9, 0.1, 0), unit(0, 1, 0), unit(0, 0, 1)])
    labels = [{"x": 1.0}, {"x": 1.0, "y": 2.0}, {"z": 3.0}, {}]
    return QueryMemory(vectors, labels, **kw)


def test_neighbours_are_weighted_by_similarity_and_limited_to_k():
    m = memory(k=2, temperature=0.1)
    got = m.neighbour_labels(unit(1, 0, 0))
    assert set(got) == {"x", "y"}  # only the 2 nearest: "z" is the third
    assert got["x"] == pytest.approx(1.0)  # both neighbours gave x a 1: weights sum to 1
    w = np.exp((float(unit(0.9, 0.1, 0) @ unit(1, 0, 0)) - 1.0) / 0.1)
    assert got["y"] == pytest.approx(2.0 * w / (1 + w), rel=1e-5)


def test_a_lower_temperature_trusts_the_nearest_query_more():
    q = unit(1, 0.2, 0)
    sharp = memory(k=3, temperature=0.01).neighbour_labels(q)
    soft = memory(k=3, temperature=1.0).neighbour_labels(q)
    assert soft["z"] > sharp.get("z", 0.0)


def test_allowed_rows_exclude_queries():
    m = memory(k=4)
    got = m.neighbour_labels(unit(1, 0, 0), allowed=np.array([False, False, True, True]))
    assert set(got) == {"z"}
    assert m.neighbour_labels(unit(1, 0, 0), allowed=np.zeros(4, bool)) == {}


def test_feature_is_log1p_in_hash_order_and_zero_without_a_vector():
    m = memory(k=1)
    np.testing.assert_allclose(m.feature(unit(0, 1, 0), ["z", "x", "other"]), np.log1p([3, 0, 0]))
    assert not m.feature(None, ["z", "x"]).any()


def test_a_query_vector_of_another_encoder_is_refused():
    with pytest.raises(IndexMismatchError, match="different encoders"):
        memory().neighbour_labels(np.ones(384, dtype=np.float32))


def test_save_and_load_round_trip(tmp_path):
    m = memory(k=3, temperature=0.2)
    m.save(tmp_path / "m.npz")
    back = QueryMemory.load(tmp_path / "m.npz")
    assert back.labels == m.labels and (back.k, back.temperature) == (3, 0.2)
    np.testing.assert_array_equal(back.vectors, m.vectors)
    q = unit(0.5, 0.5, 0.1)
    assert back.neighbour_labels(q) == m.neighbour_labels(q)


def test_a_corrupt_file_is_named(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(BrainrankError, match="m.npz"):
        QueryMemory.load(path)


def test_mismatched_vectors_and_labels_are_refused():
    with pytest.raises(ValueError, match="label sets"):
        QueryMemory(np.zeros((2, 3), np.float32), [{}])
