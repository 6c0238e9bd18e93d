"""Judged-set comparisons and their snapshots: build, save, reopen, and damage said plainly."""

from __future__ import annotations

import json

import pytest
from scipy import stats

from brainrank.index.errors import InputError
from brainrank.ranker.snapshots import (
    SetComparison,
    SnapshotError,
    load_snapshot,
    save_snapshot,
    snapshot_names,
    snapshot_path,
)

TEXTS = {"q1": "brake pads", "q2": "refund", "q3": "gift card", "q4": "no judgments"}
QRELS = {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}, "q3": {"d9": 3}}


def comparison() -> SetComparison:
    a = {"q1": 0.5, "q2": 0.25, "q3": 1.0}
    b = {"q1": 0.75, "q2": 0.25, "q3": 0.5, "q4": 0.1}  # q4 is not in A: left out
    top_a = {"q1": ["d2", "d1", "d5"], "q2": ["d3"], "q3": ["d9", "d8"]}
    top_b = {"q1": ["d1", "d2"], "q2": ["d4", "d3"], "q3": ["d8", "d9"]}
    return SetComparison.build(
        "hybrid", "learned:v0002", a, b, top_a, top_b, TEXTS, QRELS,
        labels=("hybrid", "learned v0002 (champion)"), judgments="set default",
    )  # fmt: skip


def test_build_pairs_the_queries_sorts_by_delta_and_tests_b_against_a():
    c = comparison()
    assert [o.query_id for o in c.queries] == ["q3", "q2", "q1"]  # -0.5, 0, +0.25
    assert [o.delta for o in c.queries] == [-0.5, 0.0, 0.25]
    q1 = c.queries[2]
    assert q1.text == "brake pads" and q1.top_a == ("d2", "d1", "d5")
    assert q1.grades == {"d2": 0, "d1": 2}  # judged documents of either top 10 only
    assert c.stats.p == stats.ttest_rel([0.75, 0.25, 0.5], [0.5, 0.25, 1.0]).pvalue
    assert c.stats.n == 3


def test_save_and_reopen_give_the_same_comparison(tmp_path):
    c = comparison()
    path = save_snapshot(tmp_path, c, "hybrid-vs-v2", time=1_800_000_000.0)
    assert path == tmp_path / "snapshots" / "hybrid-vs-v2.json"
    assert not list(path.parent.glob(".*.tmp"))  # written to a temporary name, renamed
    reopened = load_snapshot(tmp_path, "hybrid-vs-v2")
    assert reopened.name == "hybrid-vs-v2" and reopened.created == 1_800_000_000.0
    assert reopened.queries == c.queries
    assert reopened.stats == c.stats
    assert (reopened.a, reopened.b, reopened.a_label, reopened.b_label, reopened.judgments) == (
        c.a, c.b, c.a_label, c.b_label, c.judgments,
    )  # fmt: skip
    save_snapshot(tmp_path, c, "second")
    assert snapshot_names(tmp_path)[0] == "second"  # newest first
    assert sorted(snapshot_names(tmp_path)) == ["hybrid-vs-v2", "second"]


def test_names_are_checked_and_never_overwritten(tmp_path):
    c = comparison()
    save_snapshot(tmp_path, c, "one")
    before = snapshot_path(tmp_path, "one").read_text()
    with pytest.raises(InputError, match="a snapshot named 'one' already exists"):
        save_snapshot(tmp_path, c, "one")
    assert snapshot_path(tmp_path, "one").read_text() == before
    for bad in ("", "../escape", "a b", ".hidden"):
        with pytest.raises(InputError, match="snapshot name .* is not allowed"):
            save_snapshot(tmp_path, c, bad)
    assert snapshot_names(tmp_path) == ["one"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": "brainrank.compare-snapshot", "vers', "Unterminated string"),
        ("[1, 2]", "not a brainrank.compare-snapshot file"),
        ('{"format": "brainrank.compare-snapshot", "version": 9}', "format version 9"),
        ("drop:queries", "missing field 'queries'"),
        ("stats.p=oops", "could not convert string to float"),
        (b"\xff\xfe", "cannot be read"),
    ],
)
def test_a_damaged_snapshot_is_one_clear_error(tmp_path, content, message):
    path = save_snapshot(tmp_path, comparison(), "broken")
    data = json.loads(path.read_text())
    if content == "drop:queries":
        del data["queries"]
        content = json.dumps(data)
    elif content == "stats.p=oops":
        data["stats"]["p"] = "oops"
        content = json.dumps(data)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(SnapshotError, match=message) as err:
        load_snapshot(tmp_path, "broken")
    if "cannot be read" not in message:
        assert "is damaged" in str(err.value) and "save the comparison again" in str(err.value)
    assert snapshot_names(tmp_path) == ["broken"]  # still listed, so it can be opened and seen


def test_a_missing_snapshot_says_so(tmp_path):
    with pytest.raises(SnapshotError, match="no snapshot named 'gone'"):
        load_snapshot(tmp_path, "gone")
    assert snapshot_names(tmp_path) == []
