"""Build-time calibration of the approximate search effort to a recall target, measured with
held-out passages against exact search (seeded data; real FAISS)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainrank.index.params import EncoderInfo, VectorParams
from brainrank.index.vector_search import calibration_queries, exact_top, held_out_rows
from brainrank.index.vectors import VectorIndex

ENC = EncoderInfo("test-encoder", "sha256:0123456789abcdef", 32)
FP = ENC.fingerprint


def clustered(n, dim=32, seed=0):
    """Unit vectors around 64 centres: an IVF probing one list misses most neighbours."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, dim))
    x = centres[rng.integers(0, 64, size=n)] + 0.8 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def ivf():
    """IVF over 10k clustered vectors, calibrated from nprobe 1."""
    x = clustered(10_000)
    return x, VectorIndex.build(x, ENC, VectorParams(kind="ivf", ivf_nprobe=1))


def test_calibration_raises_the_effort_until_the_target_is_met(ivf):
    _, index = ivf
    r = index.recall
    efforts = [effort for effort, _ in r["steps"]]
    assert efforts[:3] == [1, 2, 4]  # doubling from the setting
    assert r["steps"][0][1] < 0.95 and r["reached"] and r["target"] == 0.95
    assert r["nprobe"] == index.effort > 1 and r["R@100"] == dict(r["steps"])[index.effort]
    assert r["R@100"] >= 0.95
    # The least effort measured to reach the target: every smaller one missed it.
    assert all(recall < 0.95 for effort, recall in r["steps"] if effort < index.effort)


def test_the_recorded_recall_is_exact_search_of_passages_the_index_did_not_hold(ivf):
    x, index = ivf
    held = held_out_rows(len(x), 200)
    assert len(held) == index.recall["queries"] == 200
    queries = calibration_queries(x, held)
    # An IVF search that skips rows is the search of an index without them.
    index.delete(held)  # one passage per document: positions are rows
    _, got = index.search(queries, 100, encoder_fingerprint=FP)
    index.delete(np.zeros(0, dtype=np.int64))
    sims = queries @ x.T
    sims[:, held] = -np.inf
    truth = np.argsort(-sims, axis=1, kind="stable")[:, :100]
    by_hand = np.mean([len(set(g) & set(t)) / 100 for g, t in zip(got, truth, strict=True)])
    assert index.recall["R@100"] == pytest.approx(by_hand, abs=0.002)
    assert index.recall["vectors"] == len(x) == index._index.ntotal  # held rows added back
    _, top = index.search(x[held[:20]], 1, encoder_fingerprint=FP)
    np.testing.assert_array_equal(top[:, 0], held[:20])  # and found


def test_calibration_queries_are_midpoints_of_two_held_out_passages():
    x = np.eye(6, dtype=np.float32)[:, :6]
    held = np.array([1, 3, 4])
    queries = calibration_queries(x, held)
    # Each query is (e_a + e_b) / sqrt 2 for two different held rows, each row in two queries.
    pairs = [tuple(np.flatnonzero(q > 0)) for q in queries]
    assert all(len(p) == 2 and set(p) <= {1, 3, 4} for p in pairs)
    assert sorted(pairs) == [(1, 3), (1, 4), (3, 4)]
    np.testing.assert_allclose(queries[queries > 0], 1 / np.sqrt(2), rtol=1e-6)


def test_exact_top_leaves_out_the_held_rows():
    # Points on a circle, one degree apart: row i's nearest others are i - 1 and i + 1.
    angles = np.radians(np.arange(90, dtype=np.float32))
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    top = exact_top(x, x[[10, 50]], 3, exclude=np.array([10, 50, 51]))
    assert [sorted(row) for row in top] == [[8, 9, 11], [48, 49, 52]]
    assert [sorted(row) for row in exact_top(x, x[[10]], 3)] == [[9, 10, 11]]
    # Blocks of 65,536 rows: the best of every block compete.
    big = np.repeat(x[:1], 70_000, axis=0) * 0.5
    big[69_999] = x[0]
    assert exact_top(big, x[:1], 1).tolist() == [[69_999]]
    assert exact_top(big, x[:1], 1, exclude=np.array([69_999]))[0, 0] != 69_999


def test_hnsw_calibration_raises_efsearch():
    # A sparse graph (M 4): efSearch 64, which explores 100 for a top 100, finds about 0.8.
    x = clustered(5_000, seed=1)
    params = VectorParams(kind="hnsw", hnsw_m=4, hnsw_ef_construction=16)
    index = VectorIndex.build(x, ENC, params)
    r = index.recall
    assert r["steps"][0][0] == 64 and r["steps"][0][1] < 0.95
    assert r["reached"] and r["efSearch"] == index.effort > 64 and r["R@100"] >= 0.95


def test_an_unreachable_target_keeps_the_cap_and_says_so():
    x = clustered(3_000, seed=2)
    params = VectorParams(kind="ivf", quantizer="sq8", ivf_nprobe=32, recall_target=1.0)
    index = VectorIndex.build(x, ENC, params)
    nlist = index._base.nlist
    assert index.recall["reached"] is False and index.effort == nlist
    assert index.recall["steps"][-1][0] == nlist and index.recall["R@100"] < 1.0


def test_recall_target_zero_measures_without_calibrating():
    x = clustered(3_000, seed=3)
    index = VectorIndex.build(x, ENC, VectorParams(kind="ivf", ivf_nprobe=1, recall_target=0))
    assert index.effort == 1 and len(index.recall["steps"]) == 1
    assert index.recall["R@100"] < 0.95 and index.recall["target"] == 0
    with pytest.raises(ValueError, match="recall_target"):
        VectorParams(recall_target=1.5)


def test_the_calibrated_effort_survives_save_load_and_extend(tmp_path, ivf):
    x, index = ivf
    index.save(tmp_path / "v")
    assert json.loads((tmp_path / "v" / "vectors.json").read_text())["effort"] == index.effort
    loaded = VectorIndex.load(tmp_path / "v")
    assert loaded.effort == index.effort and loaded.recall == index.recall
    assert loaded._base.nprobe == index.effort  # the file's own setting, for a GPU copy
    q = clustered(20, seed=9)
    np.testing.assert_array_equal(
        loaded.search(q, 50, encoder_fingerprint=FP)[1],
        index.search(q, 50, encoder_fingerprint=FP)[1],
    )
    grown = loaded.extend(clustered(100, seed=10))
    assert grown.effort == index.effort and grown.recall == index.recall
    # An index written before calibration existed serves at the configured effort.
    meta = json.loads((tmp_path / "v" / "vectors.json").read_text())
    del meta["effort"]
    (tmp_path / "v" / "vectors.json").write_text(json.dumps(meta))
    assert VectorIndex.load(tmp_path / "v").effort == 1


def test_a_rebuild_calibrates_again():
    x = clustered(2_400, seed=4)
    params = VectorParams(kind="ivf", ivf_nprobe=1, quantize_above=2_200)
    index = VectorIndex.build(x[:2_000], ENC, params)
    grown = index.extend(x[2_000:])  # crosses quantize_above: rebuilt over 8-bit codes
    assert grown.quantizer == "sq8" and grown.recall["vectors"] == 2_400
    assert grown.recall["steps"][0][0] == 1 and grown.recall["reached"]
