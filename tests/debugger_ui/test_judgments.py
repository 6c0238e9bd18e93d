"""Recognising judged queries and their nDCG@10 (through ranker.evaluation)."""

from __future__ import annotations

import math

import pytest

from brainrank.debugger_ui.judgments import JudgedSet
from brainrank.ranker.feedback.fields import normalise_query


def test_a_typed_query_is_found_whatever_its_case_and_spacing():
    judged = JudgedSet(
        {"q1": "Refund policy", "q2": "gift card", "q3": "unjudged"}, {"q1": {}, "q2": {}}
    )
    assert normalise_query("  REFUND   policy ") == "refund policy"
    assert judged.find("refund  POLICY") == "q1"
    assert judged.find("unjudged") is None  # has a text but no judgments
    assert len(judged) == 2


def test_relevant_and_ndcg10():
    judged = JudgedSet({"q": "x"}, {"q": {"d1": 2, "d2": 0, "d3": 1}})
    assert list(judged.relevant("q")) == ["d1", "d3"]
    # trec_eval's nDCG (ir-measures' default): gain = grade. Ranked d3, d2, d1; ideal d1, d3.
    dcg = 1 / math.log2(2) + 0 / math.log2(3) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert judged.ndcg10("q", ["d3", "d2", "d1"]) == pytest.approx(dcg / ideal)
