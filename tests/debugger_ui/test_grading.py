"""Judging on the Search page (writable) and what a read-only debugger does instead, through
Streamlit's AppTest on a copy of the sample workspace (BM25: no model to load)."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from brainrank.debugger_ui.access import ReadOnlyError
from brainrank.debugger_ui.judgments import ui_query_id
from brainrank.debugger_ui.views.grading import READ_ONLY_HINT, UNJUDGED, grade_key
from brainrank.ranker.cli.app import app
from brainrank.ranker.cli.ui_settings import Settings
from brainrank.ranker.feedback.judgments import JudgmentStore
from tests.debugger_ui.conftest import QRELS, QUERIES, copy_workspace, frame_with, metric, url

NEW_QUERY = "Speaker  for my TV"  # in no judgments file; normalised "speaker for my tv"
JUDGED = "money back"  # q02 in the train judgments


def top10(engine, query: str) -> list[str]:
    return [h.doc_id for h in engine.search(query, k=10, mode="bm25").hits]


def stored(ws) -> list[tuple]:
    db = sqlite3.connect(JudgmentStore.file(ws))
    try:
        return db.execute(
            "SELECT j.set_name, j.query_id, q.text, j.doc_id, j.grade, j.who FROM judgments j "
            "JOIN queries q USING (set_name, query_id) ORDER BY j.doc_id"
        ).fetchall()
    finally:
        db.close()


@pytest.fixture
def ws_config(sample_config, tmp_path):
    """A writable copy of the sample workspace (documents, no model, no judgments)."""
    return copy_workspace(sample_config, tmp_path / "ws")


def test_grades_go_to_the_store_at_once_and_show_in_the_table(launch, ws_config, engine):
    ws = ws_config.workspace
    docs = top10(engine, NEW_QUERY)
    at = launch(ws_config, judged=False, writable=True, q=NEW_QUERY, mode="bm25")
    table = frame_with(at, "snippet", "judged")
    assert table["judged"].tolist() == [UNJUDGED] * 10  # nothing judged yet: all marked
    assert at.selectbox(key="w_grade_target").value == "new set…"
    assert at.text_input(key="w_grade_new").value == "default"
    assert all(at.radio(key=grade_key(d)).value is None for d in docs)
    assert not JudgmentStore.exists(ws)  # looking writes nothing

    at.radio(key=grade_key(docs[0])).set_value(3).run()
    qid = ui_query_id(NEW_QUERY)
    assert stored(ws) == [("default", qid, "Speaker for my TV", docs[0], 3, "ui")]
    table = frame_with(at, "snippet", "judged")
    assert table["grade"].tolist()[:2] == ["3", ""]
    assert table["judged"].tolist()[:2] == ["✓ relevant", UNJUDGED]
    assert at.radio(key=grade_key(docs[0])).value == 3
    badges = [m for m in at.markdown if m.value == f":orange-badge[{UNJUDGED}]"]
    assert len(badges) == 9  # the other nine are marked unjudged beside their grades
    assert at.selectbox(key="w_grade_target").value == "default"  # the set just made
    assert url(at)["jset"] == "default"  # the page shows the set graded into

    # Changing a grade replaces it; another result gets its own row; a spelling of the same
    # query keeps the query id.
    at.radio(key=grade_key(docs[0])).set_value(1).run()
    at.radio(key=grade_key(docs[4])).set_value(0).run()
    at.text_input(key="w_q").set_value("speaker for my tv").run()
    at.radio(key=grade_key(docs[1])).set_value(2).run()
    got = {(doc, grade) for _, q, _, doc, grade, _ in stored(ws) if q == qid}
    assert got == {(docs[0], 1), (docs[4], 0), (docs[1], 2)}
    assert metric(at, "Judged query") == qid
    res = CliRunner().invoke(app, ["judgments", "export", "-w", str(ws)])
    assert res.exit_code == 0, res.output
    assert set(res.stdout.splitlines()) == {
        f"{qid} 0 {docs[0]} 1",
        f"{qid} 0 {docs[1]} 2",
        f"{qid} 0 {docs[4]} 0",
    }


def test_a_query_judged_elsewhere_keeps_its_id_and_the_view_follows_the_set(
    launch, ws_config, engine
):
    ws = ws_config.workspace
    docs = top10(engine, JUDGED)
    at = launch(ws_config, judged=True, writable=True, q=JUDGED, mode="bm25")
    assert metric(at, "Judged query") == "q02"  # from the files given
    at.selectbox(key="w_grade_target").set_value("new set…").run()
    at.text_input(key="w_grade_new").set_value("mine").run()
    at.radio(key=grade_key(docs[9])).set_value(2).run()
    assert stored(ws) == [("mine", "q02", "money back", docs[9], 2, "ui")]
    # The page now shows set "mine" (what was just graded), not the files.
    assert url(at)["jset"] == "mine"
    assert frame_with(at, "snippet", "judged")["grade"].tolist() == [""] * 9 + ["2"]
    assert not at.error and not at.exception

    assert at.selectbox(key="w_grade_target").value == "mine"  # the set just made

    at.selectbox(key="w_grade_target").set_value("new set…").run()
    at.text_input(key="w_grade_new").set_value("a b").run()  # not a set name: no controls
    assert any("judgment set name 'a b' is not allowed" in c.value for c in at.caption)
    assert not [r for r in at.radio if str(r.key).startswith("w_gr_")]


def test_read_only_shows_grades_but_no_controls_and_refuses_a_forged_grade(
    launch, ws_config, engine
):
    ws = ws_config.workspace
    docs = top10(engine, JUDGED)
    with JudgmentStore.open(ws) as store:
        store.add("default", {"q02": JUDGED}, {"q02": {docs[0]: 2, docs[1]: 0}}, who="file")
    before = stored(ws)
    at = launch(ws_config, judged=False, q=JUDGED, mode="bm25")
    table = frame_with(at, "snippet", "judged")
    assert table["grade"].tolist()[:3] == ["2", "0", ""]  # the store's grades, read-only
    assert table["judged"].tolist()[:3] == ["✓ relevant", "✗", UNJUDGED]
    assert not [r for r in at.radio if str(r.key).startswith("w_gr_")]  # no grade controls
    assert any(c.value == READ_ONLY_HINT for c in at.caption)
    assert "--writable" in READ_ONLY_HINT and len(READ_ONLY_HINT.splitlines()) == 1

    # A grade that reaches the server anyway (a forged session state) is refused.
    at.session_state["grading_pending"] = [("default", JUDGED, docs[1], 3)]
    at.run()
    assert not at.exception
    assert any("cannot grade" in e.value and "--writable" in e.value for e in at.error)
    assert stored(ws) == before


def test_read_only_context_refuses_grades_and_creates_no_store(ws_config):
    from brainrank.debugger_ui.loaders import Context

    ctx = Context(Settings(ws_config.workspace))
    with pytest.raises(ReadOnlyError, match="cannot grade d001"):
        ctx.save_grade("default", "money back", "d001", 2)
    assert ctx.judged is None and ctx.judgment_sources == []
    assert not JudgmentStore.exists(ws_config.workspace)


def test_judgments_picker_offers_files_all_sets_and_each_set(launch, ws_config):
    with JudgmentStore.open(ws_config.workspace) as store:
        store.add("a", {"x1": "refund policy"}, {"x1": {"d001": 1}})
        store.add("b", {"x2": "gift card"}, {"x2": {"d002": 2}})
    at = launch(ws_config, judged=True)
    picker = at.sidebar.selectbox(key="w_jset")
    assert picker.options == ["files qrels-train.txt", "all sets, merged", "set a", "set b"]
    assert picker.value == "_files"
    picker.set_value("b").run()
    assert url(at)["jset"] == "b"
    assert any(c.value == "1 judged query" for c in at.sidebar.caption)
    assert QUERIES.exists() and QRELS.exists()


def test_a_damaged_judgment_store_is_a_warning_and_the_page_still_works(launch, ws_config):
    JudgmentStore.file(ws_config.workspace).write_bytes(b"not a database" * 100)
    at = launch(ws_config, judged=True, writable=True, q=JUDGED, mode="bm25")
    assert not at.exception
    assert any("is damaged" in w.value for w in at.sidebar.warning)
    assert metric(at, "Judged query") == "q02"  # the files still serve
    assert frame_with(at, "snippet", "judged") is not None
