"""Score decomposition: fusion part (BM25 + dense) + learned correction = the served score, the
correction's SHAP attributions, the gates' decision, BM25's per-term table and the dense passage."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from brainrank.index.records import Document
from brainrank.ranker.learning.decompose import (
    correction_scores,
    correction_subscores,
    decompose,
    decompose_scores,
    fusion_term,
)
from brainrank.ranker.learning.features import FeatureSchema
from brainrank.ranker.learning.gates import SUMMARY, DomainGate, QueryGate
from brainrank.ranker.learning.learned import LearnedModel
from brainrank.ranker.retrieval.matches import (
    document_passages,
    highlight,
    matched_passage,
    matched_terms,
)
from tests.conftest import ingest, make_config

QUERIES = (
    "money back",
    "laptop won't turn on",
    "refund policy",
    "XR-2200 dash cam",
    "how long do I have to return something",
)
FIXED = ("hybrid", "hybrid-minmax", "hybrid-rrf", "bm25", "dense")


@pytest.fixture(scope="module")
def engine(trained_config, encoder):
    from brainrank.ranker.retrieval.search import SearchEngine

    engine = SearchEngine(trained_config, encoder=encoder)
    yield engine
    engine.close()


def _hits(engine, query, mode, k=10):
    result = engine.search(query, k=k, mode=mode)
    return result, decompose(engine, query, mode)


# ----- the three identities on real searches ----------------------------------------------


@pytest.mark.parametrize("query", QUERIES)
def test_learned_score_is_fusion_part_plus_correction(engine, query):
    result, parts = _hits(engine, query, "learned")
    model, _ = engine.model()
    fused, weight = fusion_term(model)
    assert model.ranker.params.residual_feature == fused  # trained as a correction on fusion
    assert parts.gate.in_domain == result.in_domain and parts.model == result.model
    x = result.features
    for row, hit in enumerate(result.hits):
        p = parts[hit.doc_id]
        assert p.score == pytest.approx(hit.score, abs=1e-7)
        # fusion part + correction = learned score
        assert p.fusion_part + p.correction == pytest.approx(hit.score, abs=1e-12)
        # The fusion part is the ranker's residual term: base_weight x the "fused" feature
        # (stored as float32), and the correction what the network adds.
        assert p.fusion_part == pytest.approx(weight * float(x[row, fused]), abs=1e-6)
        assert p.correction == pytest.approx(correction_scores(model, x[[row]])[0], abs=1e-6)
        # BM25 part + dense part = fusion score
        assert p.fusion.bm25 + p.fusion.dense == pytest.approx(p.fusion.score, abs=1e-12)
        assert p.bm25_part + p.dense_part == pytest.approx(p.fusion_part, abs=1e-12)
    assert any(abs(parts[h.doc_id].correction) > 1e-3 for h in result.hits)


def test_fusion_parts_are_the_weighted_normalised_signals(engine):
    query = "refund policy"
    result, parts = _hits(engine, query, "learned")
    model, _ = engine.model()
    w = model.schema.dense_weight
    cand = engine.candidates(query, "learned")
    bm25, dense = cand.bm25.astype(np.float64), cand.dense.astype(np.float64)
    for hit in result.hits:
        p = parts[hit.doc_id]
        i = parts.row(hit.doc_id)
        b = (bm25[i] - bm25.min()) / (bm25.max() - bm25.min())
        d = (dense[i] - dense.min()) / (dense.max() - dense.min())
        assert p.fusion.bm25 == pytest.approx((1 - w) * b, abs=1e-12)
        assert p.fusion.dense == pytest.approx(w * d, abs=1e-12)
        assert p.fusion.bm25_signal == hit.signals["bm25"]
        assert p.fusion.dense_signal == hit.signals["dense"]


@pytest.mark.parametrize("mode", FIXED)
def test_fixed_modes_split_into_bm25_and_dense_without_correction(engine, mode):
    for query in QUERIES[:3]:
        result, parts = _hits(engine, query, mode)
        assert parts.gate is None and parts.features is None
        for hit in result.hits:
            p = parts[hit.doc_id]
            assert p.score == hit.score and p.correction == 0.0
            assert p.fusion.bm25 + p.fusion.dense == pytest.approx(hit.score, abs=1e-12)
            if mode == "hybrid-rrf":
                rank = hit.signals.get("bm25_rank")
                assert p.fusion.bm25 == (1 / (engine.cfg.retrieval.rrf_k + rank) if rank else 0)
            if mode == "bm25":
                assert p.fusion.dense == 0 and p.fusion.bm25 == hit.signals["bm25"]


# ----- SHAP of the correction only ----------------------------------------------------------


def test_correction_attributions_sum_to_the_correction(engine):
    pytest.importorskip("shap", reason="explanations need SHAP: pip install -e .")
    from brainrank.ranker.learning.explain import MAX_BACKGROUND, explain, subsample

    model, _ = engine.model()
    fused, _ = fusion_term(model)
    for query in QUERIES[:2]:
        result, parts = _hits(engine, query, "learned")
        ids = [h.doc_id for h in result.hits[:5]]
        x = parts.features[[parts.row(d) for d in ids]]
        ex = explain(model, x, parts.features, method="auto", target="correction")
        assert ex.target == "correction"
        corrections = np.array([parts[d].correction for d in ids])
        np.testing.assert_allclose(ex.scores, corrections, atol=1e-6)
        np.testing.assert_allclose(ex.values.sum(axis=1) + ex.base_values, corrections, atol=1e-5)
        # The base value is the mean correction over the candidates, not the mean score.
        background = subsample(parts.features, MAX_BACKGROUND)
        mean = correction_scores(model, background).mean()
        np.testing.assert_allclose(ex.base_values, mean, atol=1e-6)
        full = explain(model, x, parts.features, method="auto")
        # What the fusion contributes is no longer attributed: the fused feature's share drops.
        assert np.abs(ex.values[:, fused]).mean() < np.abs(full.values[:, fused]).mean()


def _gam(residual: int | None, seed: int = 5) -> LearnedModel:
    """A GAM over synthetic features whose first is "fused"; random output weights, so a
    residual model's correction is not zero."""
    from brainrank.ranker.learning.ranker_params import RankerParams
    from brainrank.ranker.learning.tfr_model import ListwiseRanker

    params = RankerParams(
        scorer="gam", hidden=(8,), dropout=0.0, max_epochs=0, seed=seed, residual_feature=residual
    )
    ranker = ListwiseRanker.create(4, params)
    rng = np.random.default_rng(seed)
    parts = ranker.model.get_layer("parts")
    parts.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in parts.get_weights()])
    schema = FeatureSchema(names=("fused", "f1", "f2", "f3"))
    return LearnedModel(None, ranker, schema, gate=None, clicks=None)


@pytest.mark.parametrize("residual", [0, None])
def test_gam_correction_in_closed_form(residual):
    pytest.importorskip("shap", reason="explanations need SHAP: pip install -e .")
    from brainrank.ranker.learning.explain import explain

    gam = _gam(residual)
    rng = np.random.default_rng(1)
    x, bg = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(30, 4)).astype(np.float32)
    scores = np.asarray(gam.ranker.score_docs(x), np.float64)
    # Residual or not, the fusion part is 1 x fused: the term the gates fall back to.
    np.testing.assert_allclose(correction_scores(gam, x), scores - x[:, 0], atol=1e-6)
    np.testing.assert_allclose(
        correction_subscores(gam, x).sum(axis=1), scores - x[:, 0], atol=1e-5
    )
    closed = explain(gam, x, bg, method="additive", target="correction")
    exact = explain(gam, x, bg, method="exact", target="correction")
    np.testing.assert_allclose(closed.values, exact.values, atol=2e-5)
    np.testing.assert_allclose(
        closed.values.sum(axis=1) + closed.base_values, scores - x[:, 0], atol=2e-5
    )
    assert np.abs(closed.values).max() > 1e-3


# ----- the gates ---------------------------------------------------------------------------


def _gated(model, *, query_gate=None, gate=None) -> LearnedModel:
    """``model`` with other gates (None: no gate of that kind)."""
    m = model
    return LearnedModel(
        m.version, m.ranker, m.schema, gate, m.clicks, query_gate, m.doc_prior, m.memory
    )


def test_a_query_sent_back_to_the_fusion_has_no_correction(engine):
    model, extractor = engine.model()
    query = "money back"
    cand = engine.candidates(query, "learned")
    ids = [engine.generation.doc_ids[p] for p in cand.positions]
    x = extractor.extract(query, cand)
    fused, _ = fusion_term(model)
    # A query gate no query passes (cosines are at most 1), and a list gate no list passes.
    never = QueryGate(model.query_gate.vectors, threshold=1.5)
    closed = DomainGate(low=(np.inf,) * len(SUMMARY), high=(np.inf,) * len(SUMMARY))
    for gated, which in (
        (_gated(model, query_gate=never), "query"),
        (_gated(model, gate=closed), "list"),
    ):
        scored = gated.score_features(x, cand.query_vector)
        assert not scored.in_domain
        parts = decompose_scores(query, ids, cand, model=gated, x=x, scored=scored)
        gate = parts.gate
        assert not gate.in_domain and gate.gate == which and not parts.correction_served
        if which == "query":
            similarity = model.query_gate.similarity(cand.query_vector)
            assert gate.query_similarity == pytest.approx(similarity)
            assert gate.query_threshold == 1.5 and "similarity" in gate.reason
        else:
            assert gate.outside == SUMMARY and "more than the 1 tolerated" in gate.reason
        for i, p in enumerate(parts.parts):
            assert p.score == float(x[i, fused])  # the served score is the fusion feature
            assert p.fusion_part + p.correction == pytest.approx(p.score, abs=1e-12)
            assert abs(p.correction) < 1e-6  # float32 rounding of the feature, nothing learned
            assert p.fusion.bm25 + p.fusion.dense == pytest.approx(p.fusion.score, abs=1e-12)


def test_the_gate_decision_matches_the_search(engine):
    for query in (*QUERIES, "the of and"):
        result, parts = _hits(engine, query, "learned", k=3)
        assert parts.gate.in_domain == result.in_domain
        assert parts.correction_served == result.in_domain
    assert not parts.gate.in_domain and parts.gate.gate in ("query", "list")  # no terms at all


# ----- BM25's per-term table ---------------------------------------------------------------


def test_term_contributions_sum_to_the_bm25_score_and_match_a_naive_scorer(engine):
    bm25 = engine.generation.bm25
    p = bm25.params
    docs = engine.store.get(engine.generation.doc_ids)
    tokens = {d: bm25.tokenize(docs[d].full_text) for d in engine.generation.doc_ids}
    n = len(tokens)
    avgdl = sum(len(t) for t in tokens.values()) / n
    checked = 0
    for query in QUERIES:
        for mode in ("bm25", "learned"):
            for hit in engine.search(query, k=8, mode=mode).hits:
                table = matched_terms(engine, query, hit.doc_id)
                # per-term contributions sum to the BM25 score (as the index computes it)
                assert table.total == pytest.approx(hit.signals["bm25"], rel=1e-5, abs=1e-6)
                assert table.score == pytest.approx(hit.signals["bm25"], rel=1e-6)
                counts = Counter(tokens[hit.doc_id])
                dl = len(tokens[hit.doc_id])
                for row in table.rows:
                    df = sum(row.term in set(t) for t in tokens.values())
                    tf = counts[row.term]
                    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))  # Lucene, the default
                    # Lucene's BM25 (bm25s's "lucene"): no (k1 + 1) factor in the numerator.
                    naive = idf * tf / (tf + p.k1 * (1 - p.b + p.b * dl / avgdl))
                    assert (row.tf, row.df) == (tf, df)
                    assert row.idf == pytest.approx(idf, rel=1e-6)
                    assert row.contribution == pytest.approx(row.query_count * naive, rel=1e-4)
                checked += len(table.rows)
    assert checked > 20


def test_repeated_and_unknown_query_terms_count_as_bm25s_counts_them(engine):
    query = "refund refund policy xyzzyq"
    hit = next(h for h in engine.search(query, k=5, mode="bm25").hits if h.signals["bm25"] > 0)
    table = matched_terms(engine, query, hit.doc_id)
    assert table.unknown == ("xyzzyq",)
    rows = {r.term: r for r in table.rows}
    assert rows["refund"].query_count == 2 and rows["polici"].query_count == 1
    once = matched_terms(engine, "refund policy", hit.doc_id)
    single = {r.term: r.contribution for r in once.rows}
    assert rows["refund"].contribution == pytest.approx(2 * single["refund"])
    assert table.total == pytest.approx(hit.signals["bm25"], rel=1e-5)


def test_matched_terms_are_highlighted_in_the_text(engine):
    bm25 = engine.generation.bm25
    for query in QUERIES:
        for hit in engine.search(query, k=5, mode="bm25").hits:
            table = matched_terms(engine, query, hit.doc_id)
            text = engine.store.get([hit.doc_id])[hit.doc_id].full_text
            pieces = highlight(bm25, text, table.matched)
            assert "".join(t for t, _ in pieces) == text
            marked = {term for _, term in pieces if term is not None}
            assert marked == set(table.matched) and marked
            for word, term in pieces:
                if term is not None:
                    assert bm25.tokenize(word) == [term]


# ----- dense: the passage that matched -----------------------------------------------------


def test_the_best_passage_gives_the_dense_signal(tmp_path, encoder, sample_docs):
    from brainrank.ranker.retrieval.search import SearchEngine

    filler = " ".join(f"Sentence {i} talks about shipping boxes and parcels." for i in range(30))
    tail = "Our warehouse cat, Biscuit, sleeps on the returns counter every afternoon."
    long_doc = Document("long", "Warehouse notes", f"{filler} {tail}")
    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, [long_doc, *sample_docs[:30]])
    engine = SearchEngine(cfg, encoder=encoder)
    try:
        gen = engine.generation
        for query in ("cat sleeping on the returns desk", "money back", "parcel boxes"):
            result = engine.search(query, k=5, mode="hybrid")
            for hit in result.hits:
                doc = result.documents[hit.doc_id]
                match = matched_passage(engine, result.query_vector, hit.doc_id)
                passages = document_passages(engine, doc)
                rows = gen.vectors.rows(gen.doc_ids.index(hit.doc_id))
                assert match.n_passages == len(passages) == rows.stop - rows.start
                assert match.text == passages[match.index]  # one of the document's passages
                assert match.similarity == pytest.approx(hit.signals["dense"], abs=1e-5)
                assert match.similarity == pytest.approx(max(match.similarities))
        query = "cat sleeping on the returns desk"
        best = matched_passage(engine, engine.encoder.encode([query])[0], "long")
        passages = document_passages(engine, long_doc)
        assert best.n_passages > 1 and best.index > 0  # the tail matched, not the head
        assert "Biscuit" in best.text and best.text.startswith("Warehouse notes\n")
        # The first passage is what the encoder read of the whole text: its window only.
        assert long_doc.full_text.startswith(passages[0]) and "Biscuit" not in passages[0]
    finally:
        engine.close()
