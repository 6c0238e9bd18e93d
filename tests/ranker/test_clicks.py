"""Click log reading, PBM propensities, debiased relevance, COEC features and click labels."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from brainrank.index.errors import InputError
from brainrank.ranker.feedback.click_model import estimate_propensities
from brainrank.ranker.feedback.click_stats import (
    DEFAULT_PRIOR_STRENGTH,
    click_stats,
    key_by_query_text,
    merge_labels,
)
from brainrank.ranker.feedback.clicklog import Impression, read_click_log
from brainrank.ranker.feedback.fields import normalise_query

DATA = Path(__file__).resolve().parents[2] / "data"
T0 = datetime(2026, 10, 3, 14, 22, 5, tzinfo=UTC)


def _line(**fields) -> str:
    record = {
        "impression_id": "i1",
        "time": "2026-10-03T14:22:05Z",
        "query_id": "q05",
        "query": "where is my package",
        "shown": ["d1", "d2", "d3"],
        "clicks": ["d2"],
    }
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v is not ...})


def _imp(iid: str, query: str, shown: list[str], clicks: list[str]) -> Impression:
    return Impression(iid, T0, query, None, tuple(shown), frozenset(clicks))


# ------------------------------------------------------------------------------- reading


def test_normalise_query():
    assert normalise_query("  Where IS\tmy \n package ") == "where is my package"


def test_reads_fields(tmp_path):
    path = tmp_path / "clicks.jsonl"
    lines = [
        _line(),
        "",
        _line(impression_id="i2", time="2026-10-03T16:22:05+02:00", query_id=None, clicks=[]),
    ]
    path.write_text("\n".join(lines) + "\n")
    log = read_click_log(path)
    assert [imp.impression_id for imp in log] == ["i1", "i2"]
    assert log.skipped == []
    first, second = log
    assert first.time == T0 and first.time.tzinfo is not None
    assert second.time == T0  # +02:00 converted to UTC
    assert first.query_id == "q05" and second.query_id is None
    assert first.shown == ("d1", "d2", "d3") and first.clicks == frozenset({"d2"})
    assert second.clicks == frozenset()


BAD_LINES = [
    ('{"impression_id": "i2", ', "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (_line(impression_id="i2", shown=...), "missing field(s) shown"),
    (_line(impression_id="i2", time=None), "missing field(s) time"),
    (_line(impression_id="i2", clicks=["d9"]), "clicked id 'd9' is not in shown"),
    (_line(impression_id="i2", shown=[], clicks=[]), "shown is empty"),
    (
        _line(impression_id="i2", shown=["d1", "d2", "d1"]),
        "'d1' is shown twice (positions 1 and 3)",
    ),
    (_line(impression_id="i2", time="yesterday"), "bad time 'yesterday'"),
    (_line(impression_id="i2", time="2026-10-03T14:22:05"), "has no time zone"),
    (_line(), "duplicate impression id 'i1' (first on line 1)"),
    (_line(impression_id="i2", shown="d1 d2"), "shown must be a list"),
    (_line(impression_id="i2", query="  "), "query must be a non-empty string"),
    (_line(impression_id="i2", query_id=5), "query_id must be a string or null"),
    (_line(impression_id=7), "impression_id must be a non-empty string"),
    (_line(impression_id="i2", first_position=0), "first_position must be an integer from 1"),
    (_line(impression_id="i2", first_position="11"), "first_position must be an integer"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_LINES)
def test_bad_line_names_file_and_line(tmp_path, bad, message):
    path = tmp_path / "clicks.jsonl"
    path.write_text(_line() + "\n" + bad + "\n")
    with pytest.raises(InputError) as err:
        read_click_log(path)
    assert str(err.value).startswith("clicks.jsonl line 2: ")
    assert message in str(err.value)


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "clicks.jsonl"
    bad = _line(impression_id="iXX").encode().replace(b"XX", b"\xff")
    path.write_bytes(_line().encode() + b"\n" + bad + b"\n")
    with pytest.raises(InputError, match="clicks.jsonl line 2: not valid UTF-8"):
        read_click_log(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_click_log(tmp_path / "nope.jsonl")


def test_skip_bad_counts_and_keeps_good(tmp_path):
    path = tmp_path / "clicks.jsonl"
    lines = [
        _line(impression_id="i1"),
        "not json",
        _line(impression_id="i2"),
        "",
        _line(impression_id="i1"),  # duplicate id: skipped, the first one stays
        _line(impression_id="i3", clicks=["d7"]),
        _line(impression_id="i4"),
    ]
    path.write_text("\n".join(lines) + "\n")
    log = read_click_log(path, skip_bad=True)
    assert [imp.impression_id for imp in log] == ["i1", "i2", "i4"]
    assert len(log.skipped) == 3
    assert [m.split(":")[0] for m in log.skipped] == [
        "clicks.jsonl line 2",
        "clicks.jsonl line 5",
        "clicks.jsonl line 6",
    ]


def test_sample_log_reads_and_propensities_fall():
    log = read_click_log(DATA / "clicks.jsonl")
    assert len(log) == 1300 and not log.skipped
    assert sum(len(imp.clicks) for imp in log) == 1313
    p = estimate_propensities(log)
    assert p.shape == (10,) and p[0] == 1.0
    assert np.all(np.diff(p) <= 0) and p[1] < 0.8 and p[-1] < 0.5 * p[1]
    # Without the monotone constraint the estimates still fall with position on the whole.
    free = estimate_propensities(log, monotone=False)
    assert spearmanr(np.arange(10), free)[0] < -0.8
    assert free[5:].mean() < free[1:5].mean() < 1.0


def test_sample_log_relevance_rises_with_judged_grade():
    """The log was simulated from the train judgments: debiased relevance follows the grade."""
    log = read_click_log(DATA / "clicks.jsonl")
    texts = {}
    for line in (DATA / "queries.jsonl").read_text().splitlines():
        q = json.loads(line)
        texts[q["id"]] = q["text"]
    qrels: dict[str, dict[str, int]] = {}
    for line in (DATA / "qrels-train.txt").read_text().splitlines():
        qid, _, doc, grade = line.split()
        qrels.setdefault(qid, {})[doc] = int(grade)
    judged = key_by_query_text(qrels, texts)
    stats = click_stats(log)
    by_grade: dict[int, list[float]] = {g: [] for g in range(4)}
    for query, grades in judged.items():
        for doc, grade in grades.items():
            relevance, weight = stats.query_doc_relevance(query, doc)
            if weight >= 1.0:
                by_grade[grade].append(relevance)
    means = [np.mean(by_grade[g]) for g in range(4)]
    assert means == sorted(means) and means[3] - means[0] > 0.3


# ------------------------------------------------------------------------------- simulation

TRUE_THETA = 1.0 / np.arange(1, 11) ** 0.8


def _simulate(n: int, seed: int, n_queries: int = 40, n_candidates: int = 20):
    """A log with known truth; the logging ranker misorders documents by a per-document bias."""
    rng = np.random.default_rng(seed)
    relevance = rng.beta(0.7, 1.5, size=(n_queries, n_candidates))
    bias = rng.normal(0.0, 1.0, size=(n_queries, n_candidates))
    q = rng.integers(0, n_queries, size=n)
    score = relevance[q] + bias[q] + rng.normal(0.0, 0.8, size=(n, n_candidates))
    order = np.argsort(-score, axis=1)[:, :10]
    clicked = rng.random((n, 10)) < TRUE_THETA * np.take_along_axis(relevance[q], order, axis=1)
    imps = []
    for i, (qi, row, hit) in enumerate(zip(q.tolist(), order.tolist(), clicked, strict=True)):
        shown = [f"d{qi}-{j}" for j in row]
        clicks = [d for d, h in zip(shown, hit, strict=True) if h]
        imps.append(_imp(f"i{i}", f"Query {qi}", shown, clicks))
    truth = {
        (f"query {qi}", f"d{qi}-{j}"): relevance[qi, j]
        for qi in range(n_queries)
        for j in range(n_candidates)
    }
    return imps, truth


@pytest.fixture(scope="module")
def simulated():
    imps, truth = _simulate(20_000, seed=7)
    return imps, truth, click_stats(imps)


def test_simulated_propensities_recovered(simulated):
    imps, _, stats = simulated
    np.testing.assert_allclose(stats.propensities, TRUE_THETA, atol=0.03)
    np.testing.assert_allclose(estimate_propensities(imps, monotone=False), TRUE_THETA, atol=0.03)


def test_debiased_relevance_ranks_pairs_better_than_raw_ctr(simulated):
    imps, truth, stats = simulated
    shown: dict[tuple[str, str], list[int]] = {}
    for imp in imps:
        for doc in imp.shown:
            counts = shown.setdefault((normalise_query(imp.query), doc), [0, 0])
            counts[0] += 1
            counts[1] += doc in imp.clicks
    pairs = sorted(shown)
    true = [truth[p] for p in pairs]
    raw = [shown[p][1] / shown[p][0] for p in pairs]
    debiased = [stats.query_doc_relevance(*p)[0] for p in pairs]
    rho_raw, rho_debiased = spearmanr(true, raw)[0], spearmanr(true, debiased)[0]
    assert rho_debiased > rho_raw + 0.03
    assert rho_debiased > 0.85


def test_labels_are_three_times_relevance_and_filtered_by_evidence(simulated):
    _, _, stats = simulated
    labels = stats.labels(min_weight=5.0)
    values = [v for docs in labels.values() for v in docs.values()]
    assert values and all(0.0 <= v <= 3.0 for v in values)
    for query, docs in labels.items():
        for doc, label in docs.items():
            relevance, weight = stats.query_doc_relevance(query, doc)
            assert weight >= 5.0 and label == pytest.approx(3.0 * relevance)
    assert sum(map(len, stats.labels(min_weight=0.0).values())) > len(values)


# ------------------------------------------------------------------------------- exact arithmetic


def test_tiny_log_by_hand():
    # a clicked at 1, not clicked at 2: only pair (q, a) is informative, so theta2/theta1 =
    # (0 + 1/2 prior) / (1 + 1 prior) at every step: theta = [1, 0.25].
    log = [_imp("i1", "q", ["a", "b"], ["a"]), _imp("i2", "Q ", ["b", "a"], [])]
    s = 2.0
    stats = click_stats(log, max_position=2, prior_strength=s)
    np.testing.assert_allclose(stats.propensities, [1.0, 0.25])
    mean = 1 / (1.25 + 1.25)  # clicks per effective examination
    assert stats.relevance_prior == pytest.approx(mean)
    assert stats.query_doc_relevance("q", "a") == pytest.approx(((1 + s * mean) / (1.25 + s), 1.25))
    assert stats.query_doc_relevance("Q", "b") == pytest.approx(((0 + s * mean) / (1.25 + s), 1.25))
    # COEC: position CTRs 1/2 and 0, prior = s impressions at the mean CTR 1/4.
    prior = s * 1 / 4
    assert stats.doc_ctr("a") == pytest.approx((1 + prior) / (0.5 + prior))
    assert stats.doc_ctr("b") == pytest.approx((0 + prior) / (0.5 + prior))
    assert stats.query_doc_ctr("q", "a") == pytest.approx(
        (1 + prior * stats.doc_ctr("a")) / (0.5 + prior)
    )
    assert stats.queries == {"q"}


def _two_query_log():
    # Position CTRs 1/3 and 0 (max_position 2); COEC prior = 2 * 1/5 impressions' clicks.
    # "a" is clicked under "q"; "b" sits at position 2 for "q", where nobody ever clicks.
    return [
        _imp("i1", "q", ["a", "b"], ["a"]),
        _imp("i2", "r", ["b", "a"], []),
        _imp("i3", "r", ["c"], []),
    ]


def test_expected_clicks_and_a_pair_shrunk_to_a_given_prior_by_hand():
    stats = click_stats(_two_query_log(), max_position=2, prior_strength=2.0)
    prior = 2.0 * 1 / 5
    assert stats.doc_expected("a") == pytest.approx(1 / 3)  # once at position 1
    assert stats.doc_expected("c") == pytest.approx(1 / 3)
    assert stats.doc_expected("unseen") == 0.0
    assert stats.doc_ctr("a") == pytest.approx((1 + prior) / (1 / 3 + prior))
    assert stats.query_doc_ctr("q", "a", prior=0.5) == pytest.approx(
        (1 + prior * 0.5) / (1 / 3 + prior)
    )
    assert stats.query_doc_ctr("q", "a") == pytest.approx(
        (1 + prior * stats.doc_ctr("a")) / (1 / 3 + prior)
    )
    assert stats.query_doc_ctr("new", "a", prior=0.5) == 0.5


def test_never_shown_documents_take_their_peers_popularity():
    from brainrank.ranker.learning.features import click_columns

    stats = click_stats(_two_query_log(), max_position=2, prior_strength=2.0)
    peers = click_columns(stats, "new query", ["a", "c", "unseen"])
    seen = np.log([stats.doc_ctr("a"), stats.doc_ctr("c")])
    np.testing.assert_allclose(peers["click_doc"], [*seen, seen.mean()])
    # An unseen pair shrinks to the document's (imputed) popularity; no evidence.
    np.testing.assert_allclose(peers["click_query_doc"], peers["click_doc"])
    np.testing.assert_allclose(peers["click_evidence"], 0.0)
    # Schema v3's treatment: the neutral COEC 1.0.
    neutral = click_columns(stats, "new query", ["a", "c", "unseen"], peers=False)
    np.testing.assert_allclose(neutral["click_doc"], [*seen, 0.0])
    # A pair the log holds keeps its own evidence.
    own = click_columns(stats, "q", ["a", "unseen"])
    assert own["click_evidence"][0] > 0
    assert own["click_query_doc"][0] == pytest.approx(np.log(stats.query_doc_ctr("q", "a")))


def test_one_impression_is_pulled_to_the_prior():
    log = [_imp("i1", "rare query", ["a", "b", "c"], ["a"])]
    rotations = [["x", "y", "z"], ["y", "z", "x"], ["z", "x", "y"]]
    log += [_imp(f"j{i}", "common", rotations[i % 3], ["x"] if i < 3 else []) for i in range(9)]
    stats = click_stats(log, max_position=3)
    s, mean = DEFAULT_PRIOR_STRENGTH, stats.relevance_prior
    relevance, weight = stats.query_doc_relevance("rare query", "a")
    assert weight == 1.0  # one impression at position 1
    assert relevance == pytest.approx((1 + s * mean) / (1 + s))
    assert mean < relevance < 1.0  # raw CTR is 1.0
    # More of the same evidence moves it towards the raw rate.
    many = click_stats(log + [_imp(f"k{i}", "rare query", ["a"], ["a"]) for i in range(20)])
    assert many.query_doc_relevance("rare query", "a")[0] > relevance


def test_unseen_pairs_and_docs_get_priors(simulated):
    _, _, stats = simulated
    assert stats.query_doc_relevance("never asked", "d0-1") == (stats.relevance_prior, 0.0)
    assert stats.query_doc_relevance("query 0", "no such doc") == (stats.relevance_prior, 0.0)
    assert stats.doc_ctr("no such doc") == 1.0
    assert stats.query_doc_ctr("never asked", "d0-1") == stats.doc_ctr("d0-1")


def test_empty_log_and_bad_arguments():
    stats = click_stats([])
    np.testing.assert_allclose(stats.propensities, 1 / np.arange(1, 11))
    assert stats.labels() == {} and stats.queries == set()
    assert stats.query_doc_relevance("q", "d") == (0.0, 0.0)
    with pytest.raises(ValueError, match="max_position"):
        estimate_propensities([], max_position=0)
    with pytest.raises(ValueError, match="prior_strength"):
        click_stats([], prior_strength=-1)
    with pytest.raises(ValueError, match="iterations"):
        estimate_propensities([], iterations=-1)


def test_a_later_page_counts_at_its_own_positions(tmp_path):
    """A page starting at rank 3 (``first_position`` 3) shows its documents at positions 3
    and 4: the same cells as a first page of four with those two at the bottom."""
    path = tmp_path / "clicks.jsonl"
    path.write_text(_line(shown=["c", "d"], clicks=["d"], first_position=3) + "\n")
    (paged,) = read_click_log(path)
    assert paged.first_position == 3 and paged.shown == ("c", "d")
    first = _imp("i0", "q", ["a", "b"], ["a"])
    whole = _imp("i9", "q", ["a", "b", "c", "d"], ["a", "d"])
    split = [first, replace(paged, query="q", impression_id="i1")]
    from brainrank.ranker.feedback.click_model import observe

    def cells(log):
        c = observe(log, max_position=4)
        pairs = [(c.docs[c.pair_doc[p]], int(pos)) for p, pos in zip(c.pair, c.pos, strict=True)]
        return sorted(zip(pairs, c.n.tolist(), c.c.tolist(), strict=True))

    assert cells(split) == cells([whole])
    assert [pos for (_, pos), _, _ in cells(split)] == [0, 1, 2, 3]
    # Positions after max_position drop out, a page that starts after it entirely.
    assert [d for (d, _), _, _ in cells([replace(paged, first_position=4)])] == ["c"]
    assert cells([replace(paged, first_position=9)]) == []


def test_positions_after_max_position_are_ignored():
    log = [_imp(f"i{i}", "q", ["a", "b", "c"], ["c"]) for i in range(3)]
    stats = click_stats(log, max_position=2)
    assert stats.propensities.shape == (2,)
    assert stats.query_doc_relevance("q", "c") == (stats.relevance_prior, 0.0)


# ------------------------------------------------------------------------------- merging labels


def test_merge_labels_keeps_judged_grades():
    judged = {"money back": {"d1": 3, "d2": 0}}
    clicks = {"money back": {"d2": 2.4, "d3": 1.2}, "laptop": {"d9": 3.0}}
    merged = merge_labels(judged, clicks)
    assert merged == {
        "money back": {"d1": 3.0, "d2": 0.0, "d3": 0.5 * 1.2},
        "laptop": {"d9": 0.5 * 3.0},
    }
    nudged = merge_labels(judged, clicks, click_weight=1.0, nudge=0.25)
    assert nudged["money back"]["d2"] == pytest.approx(0 + 0.25 * (2.4 - 0))
    assert nudged["money back"]["d1"] == 3.0  # no click label: untouched
    with pytest.raises(ValueError, match="click_weight"):
        merge_labels(judged, clicks, click_weight=2.0)


def test_key_by_query_text():
    texts = {"q1": "Money  Back", "q2": "money back", "q3": "laptop"}
    assert key_by_query_text({"q1": {"d1": 3}, "q2": {"d2": 1}, "q9": {"d3": 2}}, texts) == {
        "money back": {"d1": 3, "d2": 1}
    }
    with pytest.raises(InputError, match="grade 'd1' differently"):
        key_by_query_text({"q1": {"d1": 3}, "q2": {"d1": 1}}, texts)


# ------------------------------------------------------------------------------- properties

_DOCS = [f"d{i}" for i in range(6)]
_impressions = st.lists(
    st.tuples(
        st.sampled_from(["red shoes", "Red  Shoes", "tent", "kettle"]),
        st.permutations(_DOCS).map(lambda p: p[:4]),
        st.lists(st.booleans(), min_size=4, max_size=4),
    ),
    min_size=1,
    max_size=25,
)


def _build(rows) -> list[Impression]:
    return [
        _imp(f"i{i}", q, shown, [d for d, c in zip(shown, hits, strict=True) if c])
        for i, (q, shown, hits) in enumerate(rows)
    ]


@settings(max_examples=60, deadline=None)
@given(rows=_impressions, data=st.data())
def test_impression_order_does_not_change_stats(rows, data):
    log = _build(rows)
    shuffled = data.draw(st.permutations(log))
    a = click_stats(log, max_position=4)
    b = click_stats(shuffled, max_position=4)
    np.testing.assert_allclose(a.propensities, b.propensities, atol=1e-9)
    assert a.queries == b.queries
    assert a.relevance_prior == pytest.approx(b.relevance_prior)
    for query in a.queries:
        for doc in _DOCS:
            assert a.query_doc_relevance(query, doc) == pytest.approx(
                b.query_doc_relevance(query, doc)
            )
            assert a.query_doc_ctr(query, doc) == pytest.approx(b.query_doc_ctr(query, doc))
    la, lb = a.labels(min_weight=0.5), b.labels(min_weight=0.5)
    assert la.keys() == lb.keys()
    for query in la:
        assert la[query] == pytest.approx(lb[query])


@settings(max_examples=60, deadline=None)
@given(rows=_impressions)
def test_stats_stay_in_range(rows):
    stats = click_stats(_build(rows), max_position=4)
    p = stats.propensities
    assert p[0] == 1.0 and np.all(np.diff(p) <= 1e-12) and np.all(p > 0)
    for query in stats.queries:
        for doc in _DOCS:
            relevance, weight = stats.query_doc_relevance(query, doc)
            assert 0.0 <= relevance <= 1.0 and weight >= 0.0
            assert stats.query_doc_ctr(query, doc) >= 0.0
    assert all(
        0.0 <= v <= 3.0 for docs in stats.labels(min_weight=0.0).values() for v in docs.values()
    )
