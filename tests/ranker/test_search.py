"""The query path on the sample workspace: modes, fusion, validation, encoder checks."""

from __future__ import annotations

import numpy as np
import pytest

from brainrank.index.errors import BrainrankError, IndexMismatchError, InputError
from brainrank.ranker.retrieval.fusion import minmax
from brainrank.ranker.retrieval.search import MODES, SearchEngine
from tests.conftest import make_config

FIXED_MODES = [m for m in MODES if m != "learned"]


def test_learned_mode_without_a_model_says_how_to_train(engine):
    with pytest.raises(BrainrankError, match="brainrank train"):
        engine.search("refund", mode="learned")
    assert engine.default_mode() == "hybrid"


def test_every_mode_returns_k_distinct_hits(engine):
    for mode in FIXED_MODES:
        res = engine.search("refund for a broken item", k=7, mode=mode)
        got = [h.doc_id for h in res.hits]
        assert len(got) == 7 and len(set(got)) == 7
        assert [h.rank for h in res.hits] == list(range(1, 8))
        assert all(a.score >= b.score for a, b in zip(res.hits, res.hits[1:], strict=False))
        assert set(got) <= set(res.documents)


def test_bm25_mode_is_the_keyword_ranking(engine):
    query = "return policy days"
    scores = engine.generation.bm25.scores(query)
    expected = np.lexsort((np.arange(len(scores)), -scores))[:10]
    got = engine.search(query, k=10, mode="bm25").hits
    assert [h.doc_id for h in got] == [engine.generation.doc_ids[i] for i in expected]


def test_dense_mode_is_exact_cosine_ranking(engine, encoder):
    query = "laptop will not switch on"
    q = encoder.encode([query])[0]
    emb = engine.generation.vectors.embeddings
    expected = np.argsort(-(emb @ q), kind="stable")[:10]
    got = engine.search(query, k=10, mode="dense").hits
    assert [h.doc_id for h in got] == [engine.generation.doc_ids[i] for i in expected]
    np.testing.assert_allclose([h.score for h in got], (emb @ q)[expected], rtol=1e-4, atol=1e-5)


def test_hybrid_minmax_is_weighted_normalised_sum(engine):
    query = "car parts for sale"
    cand = engine.candidates(query, "hybrid")
    w = engine.cfg.retrieval.dense_weight
    fused = minmax([cand.bm25, cand.dense], [1 - w, w])
    best = engine.generation.doc_ids[cand.positions[int(np.argmax(fused))]]
    res = engine.search(query, k=5, mode="hybrid-minmax")
    assert res.hits[0].doc_id == best
    assert res.hits[0].score == pytest.approx(float(fused.max()))


def test_hybrid_candidates_are_the_union(engine):
    query = "waterproof hiking jacket"
    bm25 = {h.doc_id for h in engine.search(query, k=100, mode="bm25").hits}
    dense = {h.doc_id for h in engine.search(query, k=100, mode="dense").hits}
    hybrid = {h.doc_id for h in engine.search(query, k=1000, mode="hybrid-rrf").hits}
    assert hybrid == bm25 | dense


def test_signals_explain_the_hit(engine):
    hit = engine.search("gift card balance", k=1, mode="hybrid").hits[0]
    assert {"bm25", "dense"} <= set(hit.signals)
    assert hit.signals.get("bm25_rank", 0) >= 1 or hit.signals.get("dense_rank", 0) >= 1


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_empty_query_is_refused(engine, query):
    with pytest.raises(InputError, match="empty"):
        engine.search(query)


def test_huge_query_is_refused_with_the_limit(engine):
    with pytest.raises(InputError, match="limit is 2000"):
        engine.search("word " * 1000)


def test_unknown_mode_lists_choices(engine):
    with pytest.raises(InputError, match="bm25, dense, hybrid"):
        engine.search("refund", mode="semantic")


def test_query_with_no_known_words_still_gets_dense_results(engine):
    res = engine.search("zxqv wplk", k=5, mode="hybrid")
    assert len(res.hits) == 5
    assert not engine.search("zxqv wplk", k=5, mode="bm25").hits


def test_empty_workspace_is_a_clear_error(tmp_path):
    with pytest.raises(BrainrankError, match="no documents yet"):
        SearchEngine(make_config(tmp_path / "nothing"))


def test_encoder_that_does_not_match_the_index_is_refused(sample_config, encoder, tmp_path):
    import tensorflow as tf

    from brainrank.ranker.encoding.encoder import TextEncoder

    other = TextEncoder.load(encoder.save(tmp_path / "tuned"))
    var = other.keras_model.trainable_variables[0]
    var.assign(var + tf.ones_like(var) * 1e-3)
    tuned = TextEncoder.load(other.save(tmp_path / "tuned2"))
    assert tuned.fingerprint != encoder.fingerprint
    with pytest.raises(IndexMismatchError, match="reindex"):
        SearchEngine(sample_config, encoder=tuned)
