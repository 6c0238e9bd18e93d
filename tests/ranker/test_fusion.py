import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from brainrank.ranker.retrieval.fusion import minmax, minmax_normalise, order, rrf


def test_rrf_arithmetic():
    # doc 0: rank 1 in list A, rank 3 in B; doc 1: only in B at rank 1; doc 2: only A at rank 2
    scores = rrf(np.array([1, 0, 2]), np.array([3, 1, 0]), k=60)
    np.testing.assert_allclose(scores, [1 / 61 + 1 / 63, 1 / 61, 1 / 62])


def test_minmax_arithmetic():
    bm25 = np.array([10.0, 5.0, 0.0])
    dense = np.array([0.2, 0.8, 0.5])
    got = minmax([bm25, dense], [0.5, 0.5])
    np.testing.assert_allclose(got, [0.5 * 1 + 0.5 * 0, 0.5 * 0.5 + 0.5 * 1, 0.5 * 0 + 0.5 * 0.5])


def test_constant_signal_contributes_nothing():
    assert not minmax_normalise(np.array([3.0, 3.0, 3.0])).any()


def test_order_breaks_ties_by_position():
    assert order(np.array([1.0, 2.0, 1.0, 2.0]), np.array([9, 7, 3, 8])).tolist() == [1, 3, 2, 0]


scores = arrays(np.float64, st.integers(1, 30), elements=st.floats(-5, 50))


@settings(max_examples=60, deadline=None)
@given(scores, st.data())
def test_fusion_ignores_input_order(bm25, data):
    n = len(bm25)
    dense = data.draw(arrays(np.float64, n, elements=st.floats(-1, 1)))
    ranks_a = data.draw(arrays(np.int64, n, elements=st.integers(0, 100)))
    ranks_b = data.draw(arrays(np.int64, n, elements=st.integers(0, 100)))
    perm = data.draw(st.permutations(range(n)))
    perm = np.array(perm)
    mm = minmax([bm25, dense], [0.4, 0.6])
    np.testing.assert_allclose(minmax([bm25[perm], dense[perm]], [0.4, 0.6]), mm[perm])
    rr = rrf(ranks_a, ranks_b)
    np.testing.assert_allclose(rrf(ranks_a[perm], ranks_b[perm]), rr[perm])
    assert np.all((mm >= -1e-12) & (mm <= 1 + 1e-12))


@settings(max_examples=60, deadline=None)
@given(scores)
def test_order_is_a_permutation(s):
    idx = order(s, np.arange(len(s)))
    assert sorted(idx.tolist()) == list(range(len(s)))
    assert np.all(np.diff(s[idx]) <= 0)
