"""Every page through Streamlit's AppTest, checked against what ranker computes."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

from brainrank.ranker.evaluation import per_query, read_qrels
from tests.debugger_ui.conftest import QRELS, copy_workspace, frame_with, metric, url

QUERY = "money back"  # judged as q02 in the train judgments
QID = "q02"


def ranked_ids(engine, query, mode="learned", model=None, k=1000):
    return [h.doc_id for h in engine.search(query, k=k, mode=mode, model=model).hits]


# ----- Search & explain --------------------------------------------------------------------


def test_search_link_shows_the_engines_ranking_and_ndcg(launch, ui_config, ui_engine):
    at = launch(ui_config, q=QUERY)
    expected = ui_engine.search(QUERY, k=10)  # the champion, as `brainrank search` ranks
    table = frame_with(at, "snippet")
    assert table["doc_id"].tolist() == [h.doc_id for h in expected.hits]
    assert table["rank"].tolist() == list(range(1, 11))
    np.testing.assert_allclose(table["score"], [h.score for h in expected.hits], rtol=1e-6)
    assert table["title"].tolist() == [expected.documents[h.doc_id].title for h in expected.hits]
    # Each snippet is the stretch of the hit's text the query matched (ranker's snippets).
    with_snippets = ui_engine.search(QUERY, k=10, snippets=True).snippets
    assert table["snippet"].tolist() == [with_snippets[d].text for d in table["doc_id"]]

    qrels = read_qrels(QRELS)
    ndcg = per_query({QID: qrels[QID]}, {QID: ranked_ids(ui_engine, QUERY)})[QID]
    assert float(metric(at, "nDCG@10")) == pytest.approx(ndcg, abs=5e-5)
    relevant = {d for d, g in qrels[QID].items() if g > 0}
    marked = set(table.loc[table["judged"] == "✓ relevant", "doc_id"])
    assert marked == relevant & set(table["doc_id"])
    # The URL now names the whole view, so the link reopens it.
    shown = url(at)
    assert shown.pop("doc") == expected.hits[0].doc_id  # the result explained
    assert shown == {"page": "search", "q": QUERY, "mode": "learned", "model": "v0001", "k": "10"}


def test_a_link_to_a_model_the_registry_lacks_says_what_is_shown_instead(
    launch, ui_config, ui_engine
):
    at = launch(ui_config, q=QUERY, model="v9999")
    warned = [w.value for w in at.warning if "`v9999` from the link" in w.value]
    assert warned and "showing v0001 (champion) instead" in warned[0]
    table = frame_with(at, "snippet")  # the champion's ranking, as the warning says
    assert table["doc_id"].tolist() == [h.doc_id for h in ui_engine.search(QUERY, k=10).hits]
    assert url(at)["model"] == "v0001"
    at = launch(ui_config, q=QUERY, model="v0001")
    assert not any("from the link" in w.value for w in at.warning)


def test_search_attributions_add_up_to_the_scores(launch, ui_config, ui_engine):
    at = launch(ui_config, q=QUERY)
    hits = ui_engine.search(QUERY, k=10).hits
    shap = frame_with(at, "base")
    assert shap["doc_id"].tolist() == [h.doc_id for h in hits]
    features = [c for c in shap.columns if c not in ("doc_id", "score", "base")]
    assert features == list(ui_engine.model("v0001")[0].schema.names)
    np.testing.assert_allclose(shap[features].sum(axis=1) + shap["base"], shap["score"], atol=1e-6)
    np.testing.assert_allclose(shap["score"], [h.score for h in hits], rtol=1e-6)


def test_missed_relevant_documents_show_the_rank_they_got(launch, ui_config, ui_engine):
    at = launch(ui_config, q=QUERY)
    full = ranked_ids(ui_engine, QUERY)
    missed = frame_with(at, "grade", "rank", without=("snippet",))
    qrels = read_qrels(QRELS)[QID]
    expected = [d for d, g in sorted(qrels.items(), key=lambda x: (-x[1], x[0])) if g > 0]
    expected = [d for d in expected if d not in full[:10]]
    assert missed["doc_id"].tolist() == expected
    shown = dict(zip(missed["doc_id"], missed["rank"], strict=True))
    for d in expected:
        assert shown[d] == (str(full.index(d) + 1) if d in full else "not ranked")


def test_search_in_a_fixed_mode_and_with_the_gam_model(launch, ui_config, ui_engine):
    at = launch(ui_config, q="refund policy", mode="bm25")
    table = frame_with(at, "snippet")
    assert table["doc_id"].tolist() == ranked_ids(ui_engine, "refund policy", "bm25", k=10)
    assert any("attributions need a learned model" in i.value for i in at.info)

    at = launch(ui_config, q=QUERY, mode="learned", model="v0002")
    table = frame_with(at, "snippet")
    assert table["doc_id"].tolist() == ranked_ids(ui_engine, QUERY, model="v0002", k=10)
    gam = [t for t in at.tabs if t.label == "GAM sub-scores (exact)"]
    assert gam, "a GAM model shows its exact sub-scores"
    sub = [df.value for df in gam[0].dataframe][0]
    features = [c for c in sub.columns if c != "doc_id"]
    np.testing.assert_allclose(sub[features].sum(axis=1), table["score"], rtol=1e-5, atol=1e-6)


def test_selecting_a_result_puts_it_in_the_url(launch, ui_config, ui_engine):
    at = launch(ui_config, q=QUERY)
    third = ui_engine.search(QUERY, k=10).hits[2].doc_id
    at.selectbox(key="w_doc_select").set_value(third).run()
    assert url(at)["doc"] == third
    assert any(h.value.startswith(f"Why {third} scores") for h in at.subheader)


# ----- Why not this document --------------------------------------------------------------


def test_why_not_reports_the_engines_rank_and_the_attribution_gap(launch, ui_config, ui_engine):
    full = ui_engine.search(QUERY, k=1000)
    target = full.hits[6]
    at = launch(ui_config, page="why-not", q=QUERY, doc=target.doc_id, rank="2")
    assert metric(at, "Final rank") == "7"
    assert metric(at, "Candidate") == "yes"
    cand = ui_engine.candidates(QUERY, "learned")
    pos = ui_engine.generation.doc_ids.index(target.doc_id)
    i = int(np.flatnonzero(cand.positions == pos)[0])
    bm25_rank = int(cand.bm25_rank[i])
    assert metric(at, "BM25 list rank (top 100)") == (str(bm25_rank) if bm25_rank else "-")
    above = full.hits[1]
    assert metric(at, f"{above.doc_id} score") == f"{above.score:.4f}"
    assert metric(at, f"{target.doc_id} score") == f"{target.score:.4f}"
    gap = frame_with(at, "difference")
    assert gap["difference"].sum() == pytest.approx(target.score - above.score, abs=1e-5)
    assert gap["difference"].is_monotonic_increasing  # what holds it back most comes first


def test_why_not_a_document_that_was_no_candidate(launch, ui_config, ui_engine):
    cand = ui_engine.candidates(QUERY, "learned")
    inside = {ui_engine.generation.doc_ids[p] for p in cand.positions}
    outside = next(d for d in ui_engine.generation.doc_ids if d not in inside)
    at = launch(ui_config, page="why-not", q=QUERY, doc=outside)
    assert metric(at, "Final rank") == "not ranked"
    assert metric(at, "Candidate") == "no"
    assert any("was not a candidate" in w.value for w in at.warning)

    at = launch(ui_config, page="why-not", q=QUERY, doc="no-such-doc")
    assert any("is not a document of this collection" in w.value for w in at.warning)


# ----- Filters ----------------------------------------------------------------------------

FILTER = "category = catalog"  # the sample's help articles answer "money back"


def test_a_filtered_search_shows_and_explains_the_filtered_ranking(launch, ui_config, ui_engine):
    expected = ui_engine.search(QUERY, k=10, where=[FILTER, "price < 50"])
    unfiltered = ui_engine.search(QUERY, k=10)
    assert [h.doc_id for h in expected.hits] != [h.doc_id for h in unfiltered.hits]
    at = launch(ui_config, q=QUERY, where=f"{FILTER}\nprice < 50")
    table = frame_with(at, "snippet")
    assert table["doc_id"].tolist() == [h.doc_id for h in expected.hits]
    np.testing.assert_allclose(table["score"], [h.score for h in expected.hits], rtol=1e-5)
    assert any("filtered by `category = catalog` and `price < 50`" in c.value for c in at.caption)
    # SHAP is computed over the filtered candidates, so it adds up to the scores served.
    shap = frame_with(at, "base")
    assert shap["doc_id"].tolist() == table["doc_id"].tolist()
    np.testing.assert_allclose(shap["score"], [h.score for h in expected.hits], rtol=1e-5)
    # The score breakdown is the filtered search's too.
    assert metric(at, "Learned score") == f"{expected.hits[0].score:.4f}"
    assert url(at)["where"] == f"{FILTER}\nprice < 50"
    # A relevant help article the filter removed is reported as such, not as "not ranked".
    missed = frame_with(at, "grade", without=("snippet",))
    allowed = ui_engine.filter_mask([FILTER, "price < 50"])[1]
    ids = ui_engine.generation.doc_ids
    removed = [not allowed[ids.index(d)] for d in missed["doc_id"]]
    assert any(removed)
    assert (missed["rank"] == "filtered out").tolist() == removed


def test_why_not_a_document_the_filters_remove(launch, ui_config, ui_engine):
    top = ui_engine.search(QUERY, k=1).hits[0].doc_id
    assert ui_engine.store.get([top])[top].tags["category"] == "help"
    at = launch(ui_config, page="why-not", q=QUERY, doc=top, where=FILTER)
    assert metric(at, "Final rank") == "not ranked"
    assert metric(at, "Candidate") == "no"
    assert any(f"does not meet the filter `{FILTER}`" in w.value for w in at.warning)
    ranks = frame_with(at, "rank among matching documents")
    # Over the documents that meet the filter (and it), it still ranks first by BM25.
    allowed = ui_engine.filter_mask([FILTER])[1]
    bm25 = ui_engine.generation.bm25.scores(QUERY)
    pos = ui_engine.generation.doc_ids.index(top)
    expected = int(((bm25 > bm25[pos]) & allowed).sum()) + 1
    assert ranks["rank among matching documents"].iloc[0] == str(expected)

    # A catalog document ranked 3rd under the filter is explained against the filtered 1st.
    filtered = ui_engine.search(QUERY, k=1000, where=FILTER)
    third = filtered.hits[2]
    at = launch(ui_config, page="why-not", q=QUERY, doc=third.doc_id, rank="1", where=FILTER)
    assert metric(at, "Final rank") == "3"
    gap = frame_with(at, "difference")
    assert gap["difference"].sum() == pytest.approx(third.score - filtered.hits[0].score, abs=1e-5)


def test_a_tag_value_picked_narrows_the_ranking_to_it(launch, ui_config, ui_engine):
    counts = ui_engine.search(QUERY, k=1000, facets=["category"]).facets["category"]
    assert set(counts) == {"catalog", "help"}
    since = "timestamp >= 2024-01-01"
    at = launch(ui_config, q=QUERY, where=since)
    # Counted among the ranked documents that meet the filter already given.
    filtered = ui_engine.search(QUERY, k=1000, where=since, facets=["category"])
    assert filtered.facets["category"] != counts
    labels = {b.label for b in at.button if b.key.startswith("w_facet_")}
    assert labels == {f"{v} ({n})" for v, n in filtered.facets["category"].items()}
    at.button(key="w_facet_category=catalog").click().run()
    assert url(at)["where"] == f"{since}\ncategory = catalog"
    expected = ui_engine.search(QUERY, k=10, where=[since, "category = catalog"])
    assert frame_with(at, "snippet")["doc_id"].tolist() == [h.doc_id for h in expected.hits]
    # One value left: nothing more to narrow by (a fresh run: AppTest keeps the clicked run's
    # elements beside the rerun's).
    at.run()
    assert not [b for b in at.button if b.key.startswith("w_facet_")]


def test_a_filter_that_cannot_be_read_is_named(launch, ui_config):
    at = launch(ui_config, q=QUERY, where="colour = red")
    assert any("cannot filter on 'colour'" in w.value for w in at.warning)
    assert not [df for df in at.dataframe if "snippet" in df.value.columns]
    at = launch(ui_config, page="compare", q=QUERY, where="price <")
    assert any("cannot read the filter 'price <'" in w.value for w in at.warning)


# ----- Compare ----------------------------------------------------------------------------


def test_compare_one_query_and_the_judged_set(launch, ui_config, ui_engine):
    from brainrank.debugger_ui.overlap import jaccard, rbo
    from brainrank.ranker.evaluation import read_queries
    from tests.debugger_ui.conftest import QUERIES

    at = launch(ui_config, page="compare", q=QUERY, a="hybrid", b="learned:v0001")
    a = ranked_ids(ui_engine, QUERY, "hybrid", k=10)
    b = ranked_ids(ui_engine, QUERY, "learned", "v0001", k=10)
    assert metric(at, "Jaccard@10") == f"{jaccard(a, b):.3f}"
    assert metric(at, "RBO@10 (p=0.9)") == f"{rbo(a, b, 0.9):.3f}"
    moves = frame_with(at, "move")
    assert moves["doc_id"].tolist() == b
    for doc, arrow in zip(moves["doc_id"], moves["move"], strict=True):
        delta = a.index(doc) - b.index(doc) if doc in a else None
        assert arrow == (
            "new"
            if delta is None
            else "="
            if delta == 0
            else f"{'↑' if delta > 0 else '↓'}{abs(delta)}"
        )

    at.button(key="w_run_set").click().run()
    assert url(at)["set"] == "1"
    queries, qrels = read_queries(QUERIES), read_qrels(QRELS)
    judged = [q for q in qrels if q in queries]
    runs = {
        spec: {q: ranked_ids(ui_engine, queries[q], mode, model, k=100) for q in judged}
        for spec, mode, model in (("a", "hybrid", None), ("b", "learned", "v0001"))
    }
    nd_a, nd_b = (per_query({q: qrels[q] for q in judged}, runs[s]) for s in ("a", "b"))
    table = frame_with(at, "ΔnDCG@10")
    assert sorted(table["query_id"]) == sorted(judged)
    for _, row in table.iterrows():
        assert row["ΔnDCG@10"] == pytest.approx(nd_b[row["query_id"]] - nd_a[row["query_id"]])
    assert table["ΔnDCG@10"].is_monotonic_increasing
    wins = sum(nd_b[q] - nd_a[q] > 1e-9 for q in judged)
    losses = sum(nd_b[q] - nd_a[q] < -1e-9 for q in judged)
    assert metric(at, "Wins (B better)") == str(wins)
    assert metric(at, "Losses (B worse)") == str(losses)
    assert metric(at, "Ties") == str(len(judged) - wins - losses)

    # Opening a query from the list shows it in Search & explain, ranked by B.
    qid = table["query_id"].iloc[0]
    at.selectbox(key="w_open_query").set_value(qid)
    at.button(key="w_open").click().run()
    assert url(at)["page"] == "search" and url(at)["q"] == queries[qid]
    assert frame_with(at, "snippet")["doc_id"].tolist() == runs["b"][qid][:10]


# ----- Models and Health ------------------------------------------------------------------


def test_models_promote_and_roll_back_need_confirmation(launch, ui_config, tmp_path):
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.registry.registry import Registry

    cfg = copy_workspace(ui_config, tmp_path / "ws")
    registry = Registry(Workspace(cfg.workspace).models_dir)
    at = launch(cfg, writable=True, page="models")
    assert not any("read-only" in i.value for i in at.info)
    versions = frame_with(at, "champion")
    assert versions["version"].tolist() == ["v0002", "v0001"]
    assert versions["champion"].tolist() == ["", "★"]
    assert versions["scorer"].tolist() == ["gam", "dnn"]
    v1 = registry.get("v0001")
    assert versions["nDCG@10"].iloc[1] == v1.metrics["challenger"]["nDCG@10"]
    assert metric(at, "Champion") == "v0001"

    at.selectbox(key="w_model_models").set_value("v0002").run()
    at.button(key="w_promote").click().run()
    assert any("Promote **v0002** to champion" in w.value for w in at.warning)
    assert registry.champion().version == "v0001"  # nothing happens before confirming
    at.button(key="w_cancel").click().run()
    assert not any("Promote **" in w.value for w in at.warning)
    assert registry.champion().version == "v0001"
    # What the registry knows against the chosen version is on the page, word for word.
    from brainrank.ranker.learning.decision import model_warnings

    for warning in model_warnings(registry.get("v0002").meta):
        assert any(warning in w.value for w in at.warning)

    at.button(key="w_promote").click().run()
    at.button(key="w_confirm").click().run()
    assert registry.champion().version == "v0002"
    assert any("v0002 is now the champion" in s.value for s in at.success)
    assert metric(at, "Champion") == "v0002"

    at.button(key="w_rollback").click().run()
    assert registry.champion().version == "v0002"
    at.button(key="w_confirm").click().run()
    assert registry.champion().version == "v0001"
    assert any("v0001 is the champion again" in s.value for s in at.success)


def test_health_shows_model_age_and_training_date(launch, ui_config):
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.registry.registry import Registry

    at = launch(ui_config, page="health")
    champion = Registry(Workspace(ui_config.workspace).models_dir).champion()
    assert metric(at, "Champion") == champion.version
    assert metric(at, "Trained") == champion.created.strftime("%Y-%m-%d")
    assert any(champion.created.strftime("%Y-%m-%d %H:%M UTC") in c.value for c in at.caption)
    assert metric(at, "Model age").startswith("0d ")
    assert metric(at, "Documents") == "604"


def test_health_shows_the_verdict_feature_drift_and_retrain_history(launch, health_config):
    from brainrank.ranker.monitoring.drift import MonitorConfig, monitor
    from brainrank.ranker.monitoring.retrain import history

    at = launch(health_config, page="health", window="1d")
    expected = monitor(health_config, MonitorConfig(), window="1d")  # the CLI's numbers
    assert expected.stale and expected.reasons  # the fixture shifted `dense` by 0.3
    assert metric(at, "Verdict") == "stale"
    assert metric(at, "Searches in window") == "120"
    shown = " ".join(e.value for e in at.error)
    assert all(reason in shown for reason in expected.reasons)
    assert url(at)["window"] == "1d"

    oracle = {r["feature"]: r for r in expected.monitors["features"]["features"]}
    features = frame_with(at, "PSI", "p-value")
    assert sorted(features["feature"]) == sorted(oracle)
    assert features["PSI"].is_monotonic_decreasing
    dense = features.set_index("feature").loc["dense"]
    assert dense["PSI"] == pytest.approx(oracle["dense"]["psi"])
    assert dense["p-value"] == pytest.approx(oracle["dense"]["p"])
    assert dense["test"] == oracle["dense"]["test"] and dense["drifted"] == "⚠ drifted"
    assert (features["drifted"] == "⚠ drifted").sum() == sum(r["drifted"] for r in oracle.values())
    assert at.selectbox(key="w_feature").value == features["feature"][0]  # worst first

    terms = expected.monitors["queries"]["terms"]
    queries = frame_with(at, "measure", "without drift").set_index("measure")
    assert queries.loc["unseen query terms (share)", "live"] == pytest.approx(terms["unseen_share"])
    assert queries.loc["JS divergence of terms (bits)", "live"] == pytest.approx(terms["js"])
    assert metric(at, "Changed since training") == "0 (0.0%)"
    assert metric(at, "Index behind store") == "no"

    reports = history(health_config.workspace / "models")
    table = frame_with(at, "decision", "challenger")
    assert table["time"].tolist() == [r["started"] for r in reversed(reports)]
    assert table["decision"].tolist() == ["promoted"]
    assert table["challenger"].tolist() == [reports[0]["challenger"]]
    holdout = reports[0]["metrics"]["holdout"]
    assert table["challenger nDCG@10"][0] == holdout["challenger"]["nDCG@10"]
    assert table["incumbent nDCG@10"][0] == holdout["champion"]["nDCG@10"]

    at.radio(key="w_window").set_value("30d").run()  # another window, its own report
    assert url(at)["window"] == "30d" and metric(at, "Searches in window") == "120"


def test_the_cli_and_the_health_page_print_the_same_headline(launch, health_config):
    from typer.testing import CliRunner

    from brainrank.ranker.cli.app import app
    from brainrank.ranker.monitoring.drift import monitor

    report = monitor(health_config, health_config.ops.monitor, window="1d")
    headline = report.headline()
    assert headline.startswith(f"stale: model {report.model}, 120 searches in the last 1d;")
    assert "features" in report.alarms  # the fixture shifted `dense`
    args = ["monitor", "--window", "1d", "-w", str(health_config.workspace)]
    res = CliRunner().invoke(app, args, env={"BRAINRANK_CONFIG": ""})
    assert res.exit_code == 3, res.output
    assert res.stdout.splitlines()[0] == headline
    at = launch(health_config, page="health", window="1d")
    assert [e.value.splitlines()[0] for e in at.error] == [f"**{headline}**"]
    # The rows under it are the report's summary, as the CLI's table (test_drift_report).
    summary = frame_with(at, "monitor", "details")
    assert summary["details"].tolist() == [r["details"] for r in report.summary()]


def test_health_without_a_query_log_hints(launch, trained_config, tmp_path):
    cfg = copy_workspace(trained_config, tmp_path / "ws")
    shutil.rmtree(cfg.workspace / "logs", ignore_errors=True)
    at = launch(cfg, page="health")
    assert not at.error
    assert metric(at, "Verdict") == "fresh"
    assert any("No query log yet" in i.value for i in at.info)
    assert any("No retrain reports yet" in i.value for i in at.info)
    assert not (cfg.workspace / "logs" / "querylog.sqlite").exists()  # looking creates nothing


# ----- The query log ------------------------------------------------------------------------


def logged(cfg) -> list[tuple]:
    db = sqlite3.connect(cfg.workspace / "logs" / "querylog.sqlite")
    try:
        return db.execute(
            "SELECT s.query, s.mode, s.model, s.source, r.doc_ids, length(r.features) "
            "FROM searches s JOIN results r ON r.search_id = s.id ORDER BY s.id"
        ).fetchall()
    finally:
        db.close()


def test_a_search_view_is_logged_once_with_source_ui(launch, ui_config, ui_engine, tmp_path):
    cfg = copy_workspace(ui_config, tmp_path / "ws")
    shutil.rmtree(cfg.workspace / "logs", ignore_errors=True)
    top = [h.doc_id for h in ui_engine.search(QUERY, k=10).hits]
    n_features = len(ui_engine.model("v0001")[0].schema.names)

    at = launch(cfg, writable=True, q=QUERY)
    assert logged(cfg) == [(QUERY, "learned", "v0001", "ui", json.dumps(top), 10 * n_features * 4)]
    assert any("logged as impression 1" in c.value for c in at.caption)
    # Reruns of the same view (a plain rerun, picking another result) log nothing more.
    at.run()
    at.selectbox(key="w_doc_select").set_value(top[2]).run()
    assert len(logged(cfg)) == 1
    # Showing 5 results is a new view.
    at.number_input(key="w_k").set_value(5).run()
    assert len(logged(cfg)) == 2 and logged(cfg)[1][4] == json.dumps(top[:5])

    # Compare (one query and the judged set) and Why not rank without logging.
    at.sidebar.radio[0].set_value("compare").run()
    at.button(key="w_run_set").click().run()
    assert frame_with(at, "ΔnDCG@10") is not None
    at.sidebar.radio[0].set_value("why-not").run()
    assert not at.exception
    assert len(logged(cfg)) == 2


# ----- A workspace without a model ----------------------------------------------------------


def test_without_a_model_every_page_hints_and_fixed_modes_work(launch, sample_config, engine):
    at = launch(sample_config, judged=False, q="refund policy")
    modes = at.selectbox(key="w_mode").options
    assert "learned" not in modes and "hybrid" in modes
    assert any("No learned model yet" in i.value for i in at.info)
    table = frame_with(at, "snippet")
    assert table["doc_id"].tolist() == ranked_ids(engine, "refund policy", "hybrid", k=10)
    for page in ("why-not", "compare", "models", "health"):
        at.sidebar.radio[0].set_value(page).run()
        assert not at.exception, page
        assert not at.error, page
        assert at.info, f"{page} shows a hint"
    # Nothing was trained on these documents, so the corpus monitor has no share to show.
    assert metric(at, "Changed since training") == "-"
    assert metric(at, "Documents in the store") == "604"


def test_a_broken_config_or_judgments_file_is_reported_not_raised(
    monkeypatch, sample_config, tmp_path
):
    import sys

    from streamlit.testing.v1 import AppTest

    from tests.debugger_ui.conftest import APP

    bad = tmp_path / "bad.toml"
    bad.write_text("retrieval = 3\n")
    cases = [
        (["--config", str(bad)], "config [retrieval] must be a table"),
        (["--queries", str(tmp_path / "no.jsonl"), "--qrels", str(QRELS)], "does not exist"),
    ]
    for extra, message in cases:
        monkeypatch.setattr(
            sys, "argv", [str(APP), "--workspace", str(sample_config.workspace), *extra]
        )
        at = AppTest.from_file(str(APP), default_timeout=60).run()
        assert not at.exception
        assert any(message in e.value for e in at.error)
