"""Set and rank-biased overlap, rank moves and per-query deltas, with arithmetic oracles."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainrank.debugger_ui.overlap import deltas, jaccard, rank_moves, rbo


def test_jaccard():
    assert jaccard(["a", "b", "c"], ["b", "c", "d"]) == 2 / 4
    assert jaccard([], []) == 1.0
    assert jaccard(["a"], []) == 0.0


def test_rbo_by_hand():
    p = 0.5
    # a=[x, y], b=[y, x]: overlaps X1 = 0, X2 = 2.
    expected = (2 / 2) * p**2 + (1 - p) / p * (0 / 1 * p + 2 / 2 * p**2)
    assert rbo(["x", "y"], ["y", "x"], p) == pytest.approx(expected) == pytest.approx(0.5)
    assert rbo(list("abcde"), list("abcde"), 0.9) == pytest.approx(1.0)
    assert rbo(list("abc"), list("xyz"), 0.9) == 0.0
    # Cut to the shorter list: the tail of the longer one does not count.
    assert rbo(list("abc"), list("ab"), 0.9) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="p=1"):
        rbo(["a"], ["a"], 1)


@given(
    st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=8),
    st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=8),
)
def test_rbo_is_symmetric_and_in_unit_interval(a, b):
    value = rbo(a, b, 0.9)
    assert 0.0 <= value <= 1.0 + 1e-12
    assert value == pytest.approx(rbo(b, a, 0.9))


def test_rank_moves_have_arrows():
    moves = rank_moves(["a", "b", "c", "d"], ["c", "a", "e", "d"])
    assert [(m.doc_id, m.rank_a, m.rank_b, m.arrow) for m in moves] == [
        ("c", 3, 1, "↑2"),
        ("a", 1, 2, "↓1"),
        ("e", None, 3, "new"),
        ("d", 4, 4, "="),
        ("b", 2, None, "out"),
    ]


def test_deltas_sorted_with_wins_losses_and_ties():
    a = {"q1": 0.5, "q2": 0.8, "q3": 0.3, "q4": 0.6}
    b = {"q1": 0.7, "q2": 0.4, "q3": 0.3, "q5": 1.0}
    d = deltas(a, b)
    assert [r[0] for r in d.rows] == ["q2", "q3", "q1"]  # worst first; q4, q5 not in both
    assert d.rows[0][3] == pytest.approx(0.4 - 0.8)
    assert (d.wins, d.losses, d.ties) == (1, 1, 1)
    assert d.mean_delta == pytest.approx(((0.4 - 0.8) + 0 + (0.7 - 0.5)) / 3)
