"""Feature values on a tiny collection, where each can be worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from brainrank.index.errors import IndexMismatchError
from brainrank.index.records import Document
from brainrank.ranker.learning.features import BASE_FEATURES, FeatureExtractor, FeatureSchema
from brainrank.ranker.retrieval.search import SearchEngine
from tests.conftest import ingest, make_config

DOCS = [
    Document(
        "a",
        "Car parts",
        "Brake pads and car parts for every model.",
        datetime(2026, 1, 10, tzinfo=UTC),
        {"price": 20.0},
    ),
    Document(
        "b",
        "Garden hose",
        "A long hose for the garden and the car wash.",
        datetime(2026, 1, 1, tzinfo=UTC),
        {"price": 10.0},
    ),
    Document("c", "Refund policy", "Money back within sixty days.", None, {}),
    Document(
        "d",
        "Parts catalogue",
        "Sale on parts: car mats, parts for car seats.",
        datetime(2025, 1, 10, tzinfo=UTC),
        {"price": 40.0},
    ),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, encoder):
    cfg = make_config(tmp_path_factory.mktemp("tiny") / "ws")
    ingest(cfg, encoder, DOCS)
    engine = SearchEngine(cfg, encoder=encoder)
    schema = FeatureSchema.create(dense_weight=0.6, rrf_k=60, doc_fields=("price",))
    return engine, FeatureExtractor(engine.generation, schema)


def features(tiny, query):
    engine, fx = tiny
    cand = engine.candidates(query, "hybrid")
    x = fx.extract(query, cand)
    ids = [engine.generation.doc_ids[p] for p in cand.positions]
    return {d: dict(zip(fx.schema.names, row, strict=True)) for d, row in zip(ids, x, strict=True)}


def test_coverage_and_phrase_by_hand(tiny):
    f = features(tiny, "car parts sale")  # terms: car, part, sale; pairs: (car part), (part sale)
    assert f["a"]["coverage"] == pytest.approx(2 / 3)
    assert f["a"]["phrase"] == pytest.approx(1 / 2)  # "car parts" adjacent, "parts sale" not
    assert f["d"]["coverage"] == pytest.approx(3 / 3)
    assert f["b"]["coverage"] == pytest.approx(1 / 3)
    assert f["c"]["coverage"] == 0.0
    assert f["a"]["title_coverage"] == pytest.approx(2 / 3)  # title "Car parts"
    assert f["b"]["title_coverage"] == 0.0


def test_idf_weighted_coverage_favours_rare_terms(tiny):
    f = features(tiny, "car sale")
    # "sale" occurs in one document, "car" in three: covering "sale" is worth more.
    assert f["d"]["coverage_idf"] == pytest.approx(1.0)
    assert f["b"]["coverage_idf"] < 0.5 < f["d"]["coverage_idf"]


def test_per_query_normalised_features_span_zero_to_one(tiny):
    f = features(tiny, "car parts")
    for name in ("bm25_norm", "dense_norm"):
        values = [row[name] for row in f.values()]
        assert min(values) == pytest.approx(0.0) and max(values) == pytest.approx(1.0)
    for row in f.values():  # a 0.4/0.6 mix of the two normalised signals
        assert row["fused"] == pytest.approx(0.4 * row["bm25_norm"] + 0.6 * row["dense_norm"])
    assert max(row["dense_gap"] for row in f.values()) == pytest.approx(0.0)


def test_freshness_is_relative_to_the_newest_candidate(tiny):
    f = features(tiny, "car parts")
    assert f["a"]["age"] == pytest.approx(0.0)  # the newest
    assert f["b"]["age"] == pytest.approx(np.log1p(9.0), rel=1e-5)  # nine days older
    assert f["c"]["has_timestamp"] == 0.0 and f["c"]["age"] == 0.0


def test_declared_numeric_fields(tiny):
    f = features(tiny, "car parts")
    assert f["d"]["field:price"] == pytest.approx(1.0) and f["b"]["field:price"] == 0.0
    assert f["c"]["field:price:missing"] == 1.0


def test_no_clicks_means_neutral_click_features(tiny):
    f = features(tiny, "refund")
    assert all(row["click_doc"] == 0.0 and row["click_evidence"] == 0.0 for row in f.values())


def test_features_are_finite_for_queries_without_known_words(tiny):
    engine, fx = tiny
    cand = engine.candidates("zxqv", "hybrid")
    x = fx.extract("zxqv", cand)
    assert x.shape == (len(cand.positions), len(fx.schema.names)) and np.isfinite(x).all()


def test_a_model_asking_for_an_unknown_feature_gets_a_clear_error(tiny):
    engine, fx = tiny
    s = fx.schema
    future = FeatureSchema(
        (*s.names, "from_a_newer_version"), s.version + 1, doc_fields=s.doc_fields
    )
    cand = engine.candidates("car parts", "hybrid")
    with pytest.raises(IndexMismatchError, match="does not compute: from_a_newer_version"):
        FeatureExtractor(engine.generation, future).extract("car parts", cand)


def test_schema_mismatch_names_the_features():
    mine = FeatureSchema.create(dense_weight=0.6, rrf_k=60)
    other = FeatureSchema.create(dense_weight=0.6, rrf_k=60, doc_fields=("rating",))
    assert mine.names == BASE_FEATURES
    with pytest.raises(IndexMismatchError, match="field:rating"):
        mine.check(other)
    assert FeatureSchema.from_dict(other.to_dict()) == other


def test_judged_doc_feature_follows_the_prior_and_ignores_foreign_content(tiny):
    engine, fx = tiny
    gen = engine.generation
    by_id = dict(zip(gen.doc_ids, gen.content_hashes, strict=True))
    prior = {by_id["a"]: 2.0, by_id["d"]: 1.0, "hash of a document elsewhere": 5.0}
    with_prior = FeatureExtractor(gen, fx.schema, doc_prior=prior)
    cand = engine.candidates("car parts", "hybrid")
    col = with_prior.extract("car parts", cand)[:, fx.schema.index("judged_doc")]
    ids = [gen.doc_ids[p] for p in cand.positions]
    expected = {"a": np.log1p(2.0), "d": np.log1p(1.0)}
    np.testing.assert_allclose(col, [expected.get(d, 0.0) for d in ids], rtol=1e-6)
    assert set(ids) - {"a", "d"}  # some candidates carry no prior
    plain = fx.extract("car parts", cand)[:, fx.schema.index("judged_doc")]
    assert not plain.any()


def test_judged_similar_feature_follows_the_nearest_remembered_query(tiny):
    from brainrank.ranker.learning.memory import QueryMemory

    engine, fx = tiny
    gen = engine.generation
    by_id = dict(zip(gen.doc_ids, gen.content_hashes, strict=True))
    cand = engine.candidates("car parts", "hybrid")
    ids = [gen.doc_ids[p] for p in cand.positions]
    near = engine.encoder.encode(["parts for my car"])[0]
    far = engine.encoder.encode(["money back guarantee"])[0]
    memory = QueryMemory(
        np.stack([near, far]),
        [{by_id["d"]: 2.0, "hash of a document elsewhere": 5.0}, {by_id["a"]: 2.0}],
    )
    col = FeatureExtractor(gen, fx.schema, memory=memory).extract("car parts", cand)
    col = col[:, fx.schema.index("judged_similar")]
    value = dict(zip(ids, col, strict=True))
    # The query is far closer to the first remembered query: its label dominates.
    assert value["d"] > value["a"] > 0 and value["d"] > np.log1p(1.9)
    assert all(value[d] == 0.0 for d in ids if d not in ("a", "d"))
    assert not fx.extract("car parts", cand)[:, fx.schema.index("judged_similar")].any()


def test_title_features_equal_the_title_index_scores(tiny):
    # The title score and coverage come from one lookup per distinct term; the score must be
    # the title index's own sum (query order, the repeated term added twice), bit for bit.
    engine, fx = tiny
    query = "parts car parts refund"
    cand = engine.candidates(query, "hybrid")
    title = engine.generation.bm25_title
    score, coverage = fx._title_features(query, cand.positions, len(cand.positions))
    expected = title.scores_at(title.term_ids(query), cand.positions)
    assert np.array_equal(score, expected) and expected.max() > 0
    ids = [engine.generation.doc_ids[p] for p in cand.positions]
    by_id = dict(zip(ids, coverage, strict=True))
    assert by_id["a"] == pytest.approx(2 / 3)  # "Car parts": car, part of car, part, refund
    assert by_id["c"] == pytest.approx(1 / 3)  # "Refund policy"
    assert by_id["b"] == 0.0


def test_never_shown_documents_by_schema_version(tiny):
    # Schema v4 gives a document the click log never showed its shown peers' mean popularity;
    # a v3 model keeps the neutral 0 (COEC 1.0) it was trained with.
    from brainrank.ranker.feedback.click_stats import click_stats
    from brainrank.ranker.feedback.clicklog import Impression

    engine, _ = tiny
    t = datetime(2026, 10, 1, tzinfo=UTC)
    log = [
        Impression("i1", t, "brake pads", None, ("a", "b"), frozenset({"a"})),
        Impression("i2", t, "hose", None, ("b", "a"), frozenset({"b"})),
    ]
    stats = click_stats(log, max_position=2)
    query = "car parts"
    cand = engine.candidates(query, "hybrid")
    ids = [engine.generation.doc_ids[p] for p in cand.positions]
    assert {"a", "b", "c", "d"} <= set(ids)
    by_version = {}
    for version in (3, 4):
        schema = FeatureSchema.create(dense_weight=0.6, rrf_k=60, version=version)
        x = FeatureExtractor(engine.generation, schema, stats).extract(query, cand)
        by_version[version] = dict(zip(ids, x[:, schema.index("click_doc")], strict=True))
    shown = np.log([stats.doc_ctr("a"), stats.doc_ctr("b")])
    for version in (3, 4):
        assert by_version[version]["a"] == pytest.approx(shown[0], abs=1e-6)
    assert by_version[3]["c"] == by_version[3]["d"] == 0.0
    assert by_version[4]["c"] == pytest.approx(shown.mean(), abs=1e-6)
    assert by_version[4]["d"] == pytest.approx(shown.mean(), abs=1e-6)
