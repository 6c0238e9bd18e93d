"""The Compare page over a judged set: scipy's paired t-test on the page's numbers, grades in
the per-query view, and snapshots saved, reopened without ranking, and damaged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from brainrank.debugger_ui.access import ReadOnlyError
from brainrank.ranker.evaluation import per_query, read_qrels, read_queries
from brainrank.ranker.snapshots import snapshot_names, snapshot_path
from tests.debugger_ui.conftest import QRELS, QUERIES, copy_workspace, frame_with, metric, url

A, B = "bm25", "hybrid"


@pytest.fixture(scope="module")
def oracle(engine):
    """Per-query nDCG@10 of A and B over the train judgments, ranked by ranker itself."""
    queries, qrels = read_queries(QUERIES), read_qrels(QRELS)
    judged = {q: qrels[q] for q in qrels if q in queries}
    runs = {
        mode: {
            q: [h.doc_id for h in engine.search(queries[q], k=100, mode=mode).hits] for q in judged
        }
        for mode in (A, B)
    }
    return judged, runs, {mode: per_query(judged, runs[mode]) for mode in (A, B)}


@pytest.fixture
def ws_config(sample_config, tmp_path):
    return copy_workspace(sample_config, tmp_path / "ws")


def test_the_pages_p_value_is_scipys_on_the_same_numbers(launch, ws_config, oracle):
    judged, runs, nd = oracle
    at = launch(ws_config, page="compare", a=A, b=B, set="1")
    table = frame_with(at, "ΔnDCG@10")
    qids = table["query_id"].tolist()
    assert sorted(qids) == sorted(judged)
    # The page's own per-query numbers are ranker's ...
    np.testing.assert_allclose(table["nDCG@10 A"], [nd[A][q] for q in qids])
    np.testing.assert_allclose(table["nDCG@10 B"], [nd[B][q] for q in qids])
    # ... and its p-value is scipy's paired t-test on them.
    expected = stats.ttest_rel(table["nDCG@10 B"], table["nDCG@10 A"])
    assert metric(at, "p-value (paired t-test)") == f"{expected.pvalue:.4g}"
    assert metric(at, "t") == f"{expected.statistic:.3f}"
    ci = expected.confidence_interval(0.95)
    assert metric(at, "95% CI of mean Δ") == f"{ci.low:+.4f} to {ci.high:+.4f}"
    assert metric(at, "Queries") == str(len(judged))
    assert any("scipy.stats.ttest_rel" in c.value for c in at.caption)

    # The per-query view: the picked query's two top 10s with their grades.
    qid = qids[-1]
    at.selectbox(key="w_open_query").set_value(qid).run()
    tops = [
        df.value for df in at.dataframe if list(df.value.columns) == ["rank", "doc_id", "grade"]
    ]
    assert [t["doc_id"].tolist() for t in tops] == [runs[A][qid][:10], runs[B][qid][:10]]
    for top in tops:
        for doc, grade in zip(top["doc_id"], top["grade"], strict=True):
            assert grade == (str(judged[qid][doc]) if doc in judged[qid] else "unjudged")


def test_the_same_ranking_twice_says_why_there_is_no_test(launch, ws_config):
    at = launch(ws_config, page="compare", a=A, b=A, set="1")
    assert metric(at, "p-value (paired t-test)") == "-"
    assert any("score the same on all" in i.value for i in at.info)
    assert not at.exception


def test_a_snapshot_saves_and_reopens_without_ranking(launch, ws_config, oracle):
    at = launch(ws_config, writable=True, page="compare", a=A, b=B, set="1")
    live = frame_with(at, "ΔnDCG@10")
    p_value = metric(at, "p-value (paired t-test)")
    at.text_input(key="w_save_name").set_value("bm25-vs-hybrid")
    at.button(key="w_save_snapshot").click().run()
    assert snapshot_names(ws_config.workspace) == ["bm25-vs-hybrid"]
    assert url(at)["snap"] == "bm25-vs-hybrid"
    assert any("Saved snapshot bm25-vs-hybrid" in s.value for s in at.success)
    saved = json.loads(snapshot_path(ws_config.workspace, "bm25-vs-hybrid").read_text())
    assert saved["a"]["spec"] == A and saved["b"]["spec"] == B
    _, runs, _ = oracle
    first = saved["queries"][0]
    assert first["top_b"] == runs[B][first["query_id"]][:10]

    # Reopened by a debugger that has no judgments at all: nothing can be computed, yet the
    # snapshot shows the saved numbers.
    at = launch(ws_config, judged=False, page="compare", snap="bm25-vs-hybrid")
    assert not at.exception and not at.error
    reopened = frame_with(at, "ΔnDCG@10")
    assert reopened.equals(live)
    assert metric(at, "p-value (paired t-test)") == p_value
    assert any("nothing was ranked again" in c.value for c in at.caption)
    # The same name is not overwritten.
    at = launch(ws_config, writable=True, page="compare", a=A, b=B, set="1")
    at.text_input(key="w_save_name").set_value("bm25-vs-hybrid")
    at.button(key="w_save_snapshot").click().run()
    assert any("already exists" in e.value for e in at.error)


def test_a_damaged_snapshot_is_an_error_line_not_a_traceback(launch, ws_config):
    folder = ws_config.workspace / "snapshots"
    folder.mkdir()
    (folder / "broken.json").write_text('{"format": "brainrank.compare-snapshot", "version": 1}')
    at = launch(ws_config, judged=False, page="compare", snap="broken")
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "is damaged" in errors[0] and "missing field" in errors[0]


def test_a_link_to_a_snapshot_where_there_is_none_says_so(launch, ws_config):
    at = launch(ws_config, judged=False, page="compare", snap="from-elsewhere")
    assert any("No snapshot `from-elsewhere` here" in w.value for w in at.warning)
    assert "snap" not in url(at)  # the rewritten link no longer names it


def test_read_only_cannot_save_a_snapshot(launch, ws_config):
    from brainrank.debugger_ui.loaders import Context, Ranking
    from brainrank.debugger_ui.views.compare import live_comparison, save_comparison
    from brainrank.ranker.cli.ui_settings import Settings

    at = launch(ws_config, page="compare", a=A, b=B, set="1")
    button = at.button(key="w_save_snapshot")
    assert button.disabled and at.text_input(key="w_save_name").disabled
    button.click().run()  # a click that reaches the server anyway
    assert any("cannot save snapshot" in e.value for e in at.error)
    assert snapshot_names(ws_config.workspace) == []

    ctx = Context(Settings(ws_config.workspace, queries=QUERIES, qrels=QRELS))
    with pytest.raises(ReadOnlyError):
        save_comparison(ctx, live_comparison(ctx, Ranking(A), Ranking(A)), "x")
    assert not (ws_config.workspace / "snapshots").exists()
