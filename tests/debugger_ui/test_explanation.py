"""The Search page's score breakdown: waterfall, fusion split, correction, gate, BM25 terms and
the dense passage, checked against ``ranker``'s decomposition."""

from __future__ import annotations

import numpy as np
import pytest

from brainrank.debugger_ui.views.explanation import (
    escape_markdown,
    highlighted_markdown,
    waterfall_steps,
)
from brainrank.ranker.learning.decompose import decompose
from tests.debugger_ui.conftest import frame_with, metric

QUERY = "money back"
OUT_OF_DOMAIN = "the of and"  # no indexable term: the gates send it back to the fusion


def waterfall(at):
    """The waterfall's data as drawn (the chart whose bars are coloured by ``colour``)."""
    import pyarrow as pa

    charts = [c for c in at.get("vega_lite_chart") if '"colour"' in c.proto.spec]
    assert len(charts) == 1, "one waterfall chart"
    data = charts[0].proto.datasets[0].data.data
    return pa.ipc.open_stream(data).read_all().to_pandas()


def test_learned_result_shows_fusion_correction_terms_and_passage(launch, ui_config, ui_engine):
    at = launch(ui_config, q=QUERY)
    hit = ui_engine.search(QUERY, k=10).hits[0]
    parts = decompose(ui_engine, QUERY, "learned")[hit.doc_id]
    assert any(s.value.startswith(f"How {hit.doc_id}'s score") for s in at.subheader)
    assert metric(at, "BM25 part") == f"{parts.bm25_part:.4f}"
    assert metric(at, "Dense part") == f"{parts.dense_part:.4f}"
    assert metric(at, "min-max fusion") == f"{parts.fusion_part:.4f}"
    assert metric(at, "Learned correction") == f"{parts.correction:+.4f}"
    assert metric(at, "Learned score") == f"{hit.score:.4f}"

    steps = waterfall(at)
    by_step = dict(zip(steps["step"], steps["end"], strict=True))
    assert by_step["BM25 (fusion)"] == pytest.approx(parts.bm25_part)
    assert by_step["dense (fusion)"] == pytest.approx(parts.fusion_part)
    assert by_step["min-max fusion"] == pytest.approx(parts.fusion_part)
    assert steps["step"].iloc[-1] == "learned score"
    assert steps["end"].iloc[-1] == pytest.approx(hit.score)
    corrections = steps[steps["kind"] == "correction"]
    assert len(corrections) > 2  # base value, the largest attributions, the rest
    # The correction's steps run from the fusion part to the learned score.
    assert corrections["start"].iloc[0] == pytest.approx(parts.fusion_part)
    assert corrections["end"].iloc[-1] == pytest.approx(hit.score, abs=1e-5)

    shap = frame_with(at, "attribution to the correction")
    assert len(shap) == len(ui_engine.model("v0001")[0].schema.names)

    terms = frame_with(at, "term", "tf", "idf", "contribution")
    assert terms["contribution"].sum() == pytest.approx(hit.signals["bm25"], rel=1e-5)
    assert set(terms["term"]) == {"money", "back"}
    marked = [m.value for m in at.markdown if ":orange-background[" in m.value]
    assert marked and ":orange-background[back]" in marked[0]
    assert metric(at, "Passage 1 of 1: cosine") == f"{hit.signals['dense']:.4f}"
    assert {"BM25 terms", "Dense passage"} <= {t.label for t in at.tabs}


def test_a_query_the_gate_sent_back_shows_the_decision(launch, ui_config, ui_engine):
    result = ui_engine.search(OUT_OF_DOMAIN, k=10)
    assert result.in_domain is False
    gate = decompose(ui_engine, OUT_OF_DOMAIN, "learned").gate
    at = launch(ui_config, q=OUT_OF_DOMAIN)
    assert any(
        f"The {gate.gate} gate sent this query back to the fusion" in w.value
        and gate.reason in w.value
        for w in at.warning
    )
    assert metric(at, "Served score (fusion)") == f"{result.hits[0].score:.4f}"
    assert metric(at, "Learned correction") == "not applied"
    steps = waterfall(at)
    assert not (steps["kind"] == "correction").any()  # no correction was served
    assert steps["end"].iloc[-1] == pytest.approx(result.hits[0].score)
    assert any("None of the query's terms" in i.value for i in at.info)


@pytest.mark.parametrize("mode", ["hybrid", "hybrid-rrf", "bm25"])
def test_fixed_modes_show_the_fusion_split_only(launch, ui_config, ui_engine, mode):
    query = "refund policy"
    at = launch(ui_config, q=query, mode=mode)
    hit = ui_engine.search(query, k=10, mode=mode).hits[0]
    bm25, dense = float(metric(at, "BM25 part")), float(metric(at, "Dense part"))
    assert bm25 + dense == pytest.approx(hit.score, abs=2e-4)  # as shown, to 4 decimals
    assert not any(m.label == "Learned correction" for m in at.metric)
    steps = waterfall(at)
    assert list(steps["kind"]) == ["fusion", "fusion", "total"]
    assert steps["end"].iloc[-1] == pytest.approx(hit.score)
    assert frame_with(at, "term", "contribution")["contribution"].sum() == pytest.approx(
        hit.signals["bm25"], rel=1e-5
    )
    if mode == "bm25":
        assert any("no passage matched" in i.value for i in at.info)


def test_waterfall_steps_end_at_the_score(ui_engine):
    pytest.importorskip("shap")
    from brainrank.ranker.learning.explain import explain

    model, _ = ui_engine.model("v0001")
    parts_of_query = decompose(ui_engine, QUERY, "learned")
    for doc in parts_of_query.doc_ids[:5]:
        parts = parts_of_query[doc]
        x = parts_of_query.features[[parts_of_query.row(doc)]]
        ex = explain(model, x, parts_of_query.features, method="auto", target="correction")
        steps = waterfall_steps(parts, ex, learned=True)
        moves = steps[steps["kind"] != "total"]
        # Each step starts where the last ended; together they reach the learned score.
        np.testing.assert_allclose(moves["start"].iloc[1:], moves["end"].iloc[:-1])
        assert moves["end"].iloc[-1] == pytest.approx(parts.score, abs=1e-5)


def test_document_text_is_escaped_before_markdown():
    hostile = "**bold** [link](http://x) $x^2$ :red[red] <b>b</b> `code` _i_ # h"
    escaped = escape_markdown(hostile)
    for special in "*[]()$:<>`_#":
        assert f"\\{special}" in escaped
    text = highlighted_markdown([("a :smile: ", None), ("refund", "refund"), ("\n\n# x", None)])
    assert text == "a \\:smile\\: :orange-background[refund] \\# x"
