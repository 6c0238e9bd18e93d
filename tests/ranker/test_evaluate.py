import math

import pytest

from brainrank.index.errors import InputError
from brainrank.ranker.evaluation import evaluate, per_query, read_qrels, read_queries, score_run
from tests.conftest import DATA


def test_metrics_arithmetic():
    qrels = {"q1": {"a": 3, "b": 1, "z": 2}, "q2": {"c": 1}}
    run = {"q1": ["b", "x", "a"], "q2": ["y", "w"]}
    m = score_run(qrels, run)
    # trec_eval's nDCG (what ir-measures and BEIR report) uses the grade itself as gain.
    dcg = 1 / math.log2(2) + 3 / math.log2(4)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert m["nDCG@10"] == pytest.approx((dcg / idcg + 0) / 2, abs=1e-4)
    assert m["RR@10"] == pytest.approx((1 / 1 + 0) / 2)
    assert m["R@100"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["AP"] == pytest.approx(((1 / 1 + 2 / 3) / 3 + 0) / 2)


def test_order_not_score_decides_ties():
    qrels = {"q": {"b": 1}}
    assert per_query(qrels, {"q": ["b", "a"]})["q"] == pytest.approx(1.0)
    assert per_query(qrels, {"q": ["a", "b"]})["q"] == pytest.approx(1 / math.log2(3))


def test_read_trec_and_beir_qrels(tmp_path):
    trec = tmp_path / "q.txt"
    trec.write_text("q1 0 d1 2\nq1 0 d2 0\nq2 0 d3 1\n")
    beir = tmp_path / "q.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td3\t1\n")
    assert read_qrels(trec) == read_qrels(beir) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}
    # Tab-separated fields keep their spaces (ids such as "q 1" or "doc 9"); TREC with tabs.
    beir.write_text("query-id\tcorpus-id\tscore\nq 1\td1\t2\nq2\tdoc 9\t1\n")
    assert read_qrels(beir) == {"q 1": {"d1": 2}, "q2": {"doc 9": 1}}
    trec.write_text("q1\t0\td1\t2\nq2 0\td3 1\n")  # mixed: read as white space
    assert read_qrels(trec) == {"q1": {"d1": 2}, "q2": {"d3": 1}}


def test_malformed_qrels_name_the_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("q1 0 d1 2\nq1 d2\n")
    with pytest.raises(InputError, match="bad.txt line 2"):
        read_qrels(bad)
    bad.write_text("q1 0 d1 high\n")
    with pytest.raises(InputError, match="not an integer"):
        read_qrels(bad)


def test_read_queries_formats_and_errors(tmp_path):
    j = tmp_path / "q.jsonl"
    j.write_text('{"_id": "1", "text": "a"}\n{"id": "2", "text": "b"}\n')
    assert read_queries(j) == {"1": "a", "2": "b"}
    t = tmp_path / "q.tsv"
    t.write_text("1\ta\n2\tb\n")
    assert read_queries(t) == {"1": "a", "2": "b"}
    j.write_text('{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n')
    with pytest.raises(InputError, match="line 2: duplicate query id"):
        read_queries(j)
    j.write_text('{"_id": "1", "text": "a"}\n{"_id": "q29", "text": "  "}\n')
    with pytest.raises(InputError, match="q.jsonl line 2: query 'q29' has no text"):
        read_queries(j)
    with pytest.raises(InputError, match="does not exist"):
        read_queries(tmp_path / "missing.jsonl")


def test_evaluate_sample_matches_its_run_files(engine, tmp_path):
    import ir_measures

    queries = read_queries(DATA / "queries.jsonl")
    qrels = read_qrels(DATA / "qrels-test.txt")
    results = evaluate(engine, queries, qrels, ["bm25", "hybrid"], run_dir=tmp_path)
    for mode, r in results.items():
        assert r["queries"] == len(qrels)
        assert all(0.0 <= r[m] <= 1.0 for m in ("nDCG@10", "RR@10", "R@100", "AP"))
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
        run = list(ir_measures.read_trec_run(str(tmp_path / f"run.{mode}.trec")))
        assert {s.query_id for s in run} == set(qrels)
        ranked = {}
        for s in run:
            ranked.setdefault(s.query_id, []).append(s.doc_id)
        assert score_run(qrels, ranked)["nDCG@10"] == pytest.approx(r["nDCG@10"])
    assert results["hybrid"]["R@100"] >= results["bm25"]["R@100"]
