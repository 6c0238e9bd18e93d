"""Filters on the timestamp and numeric fields: parsing, matching, and filtered retrieval that
searches only the documents a filter lets through (real BM25, real FAISS, the sample)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from brainrank.index.errors import InputError
from brainrank.index.params import EncoderInfo, VectorParams
from brainrank.index.records import Document
from brainrank.index.vectors import VectorIndex
from brainrank.ranker.retrieval import candidates
from brainrank.ranker.retrieval.filters import matching, parse_filters

from ..conftest import ingest, make_config

NOW = datetime(2026, 6, 1, tzinfo=UTC).timestamp()


def test_conditions_are_read_as_typed():
    got = parse_filters(
        ["price<30", " rating >= 4.5 ", "timestamp >= 2025-01-31", "timestamp > now-30d"], now=NOW
    )
    assert [(c.field, c.op, c.numbers[0]) for c in got] == [
        ("price", "<", 30.0),
        ("rating", ">=", 4.5),
        ("timestamp", ">=", datetime(2025, 1, 31, tzinfo=UTC).timestamp()),
        ("timestamp", ">", NOW - 30 * 86400),
    ]
    assert [c.text for c in got] == [
        "price < 30",
        "rating >= 4.5",
        "timestamp >= 2025-01-31",
        "timestamp > now-30d",
    ]
    one = parse_filters("timestamp <= 2025-01-31T09:00:00+02:00", now=NOW)[0]
    assert one.numbers == (datetime(2025, 1, 31, 7, tzinfo=UTC).timestamp(),)
    # Epoch seconds, as ingest reads them (ten digits are not a date without its dashes).
    epoch = parse_filters("timestamp = 1700000000", now=NOW)[0]
    assert epoch.numbers == (1_700_000_000.0,)
    for ambiguous in ("2025", "20250131"):  # a year, a compact date: never seconds from 1970
        with pytest.raises(InputError, match="epoch seconds"):
            parse_filters(f"timestamp >= {ambiguous}", now=NOW)
    assert parse_filters(None) == parse_filters([]) == ()
    tags = parse_filters(
        ["category = 'help desk'", 'brand in (Voltra, "Roadsight", 7)', "m in ('a, b', c)"],
        now=NOW,
    )
    assert [(c.field, c.op, c.values, c.numbers) for c in tags] == [
        ("category", "=", ("help desk",), (None,)),
        ("brand", "in", ("Voltra", "Roadsight", "7"), (None, None, 7.0)),
        ("m", "in", ("a, b", "c"), (None, None)),
    ]
    assert [c.text for c in tags] == [
        "category = 'help desk'",
        "brand in (Voltra, Roadsight, 7)",
        "m in ('a, b', c)",
    ]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["price"], "write FIELD OP VALUE"),
        (["price <"], "write FIELD OP VALUE"),
        (["< 3"], "write FIELD OP VALUE"),
        (["price < cheap"], "'cheap' is not a number \\(price is numeric\\)"),
        (["price < inf"], "'inf' is not a number"),
        (["price in (1, x)"], "'x' is not a number"),
        (["category < help"], "category is a tag, compared with =, != or in"),
        (["brand in ()"], "write FIELD OP VALUE"),
        (["brand in (a, )"], "write FIELD OP VALUE"),
        (["brand in ('a, b)"], "write FIELD OP VALUE"),
        (["timestamp in (2025-01-01)"], "compare the timestamp with"),
        (["timestamp > 2025-02-30"], "a timestamp is compared with a date"),
        (["timestamp > 2025-01-31T09:00"], "has no time zone"),
        (["timestamp > yesterday"], "now-30d"),
        ([3], "must be a string"),
        (["price < 1"] * 17, "the limit is 16"),
        (["price < " + "9" * 300], "over 200 characters"),
    ],
)
def test_a_bad_filter_is_an_error_naming_it(given, message):
    meta = {
        "timestamp": np.array([NOW]),
        "field:price": np.array([10.0]),
        "tag:category": np.array(["help"]),
    }
    with pytest.raises(InputError, match=message):
        matching(parse_filters(given, now=NOW), meta, 1)


def test_a_document_without_the_field_matches_no_condition_on_it():
    meta = {
        "timestamp": np.array([NOW, np.nan, NOW - 86400 * 90]),
        "field:price": np.array([10.0, 40.0, np.nan]),
    }
    allowed = lambda *f: matching(parse_filters(list(f), now=NOW), meta, 3).tolist()  # noqa: E731
    assert allowed("price != 40") == [True, False, False]  # no price: not "different"
    assert allowed("price <= 40") == [True, True, False]
    assert allowed("timestamp > now-30d") == [True, False, False]
    assert allowed("price < 50", "timestamp < now-1d") == [False, False, False]
    assert matching((), meta, 3) is None
    with pytest.raises(InputError, match="no document has that field; the fields here are "):
        matching(parse_filters("weight < 3"), meta, 3)


def test_a_generation_factorises_a_tag_column_once_with_the_same_answers():
    from brainrank.ranker.retrieval.filters import FilterColumns, TagColumn

    rng = np.random.default_rng(0)
    raw = {
        "timestamp": np.full(500, np.nan),
        "tag:colour": np.array(["", "red", "blue", "green"])[rng.integers(0, 4, 500)],
    }
    cols = FilterColumns(raw)
    assert isinstance(cols["tag:colour"], TagColumn) and cols["tag:colour"] is cols["tag:colour"]
    assert list(cols) == list(raw) and cols["timestamp"] is raw["timestamp"]
    tests = {
        "colour = red": lambda c: c == "red",
        "colour != red": lambda c: c not in ("red", ""),
        "colour in (red, blue, pink)": lambda c: c in ("red", "blue", "pink"),
    }
    for where, test in tests.items():
        conditions = parse_filters(where)
        want = [test(c) for c in raw["tag:colour"]]
        assert matching(conditions, cols, 500).tolist() == want, where
        assert matching(conditions, raw, 500).tolist() == want, where


def test_tags_match_by_equality_and_a_document_without_the_tag_never():
    meta = {
        "timestamp": np.full(4, np.nan),
        "field:price": np.array([10.0, 40.0, np.nan, 5.0]),
        "tag:category": np.array(["help", "catalog", "", "Help"]),
    }
    allowed = lambda *f: matching(parse_filters(list(f), now=NOW), meta, 4).tolist()  # noqa: E731
    assert allowed("category = help") == [True, False, False, False]  # exact, case included
    assert allowed("category != help") == [False, True, False, True]  # no tag: not "different"
    assert allowed("category in (help, Help)") == [True, False, False, True]
    assert allowed("price in (5, 40)") == [False, True, False, True]
    assert allowed("category = catalog", "price > 20") == [False, True, False, False]
    with pytest.raises(InputError, match="the fields here are timestamp, category, price"):
        matching(parse_filters("colour = red"), meta, 4)


def sample_truth(engine, where):
    """Each sample document's fields, and which of them meet ``where``, computed here."""
    docs = engine.store.get(engine.generation.doc_ids)
    return docs, {d for d, doc in docs.items() if where(doc)}


def test_bm25_search_under_a_filter_is_the_full_ranking_of_the_documents_it_keeps(engine):
    docs, keep = sample_truth(
        engine, lambda d: d.fields.get("price", np.inf) < 30 and d.fields.get("rating", 0) >= 4
    )
    assert 0 < len(keep) < len(docs)
    query = "charger cable for the car"
    got = engine.search(query, k=10, mode="bm25", where=["price < 30", "rating >= 4"])
    assert got.filters == ("price < 30", "rating >= 4")
    # Every matching document by its exact BM25 score, ties by position, as unfiltered does.
    scores = engine.generation.bm25.scores(query)
    ids = engine.generation.doc_ids
    want = sorted(
        (p for p in range(len(ids)) if ids[p] in keep and scores[p] > 0),
        key=lambda p: (-scores[p], p),
    )[:10]
    assert [h.doc_id for h in got.hits] == [ids[p] for p in want]
    assert len(got.hits) == 10
    # The unfiltered top 10 holds fewer of them: the filter searched past what it removed.
    plain = engine.search(query, k=10, mode="bm25")
    assert sum(h.doc_id in keep for h in plain.hits) < 10


def test_dense_and_fused_searches_return_only_documents_that_match(engine):
    since = datetime(2025, 6, 1, tzinfo=UTC)
    docs, keep = sample_truth(engine, lambda d: d.timestamp is not None and d.timestamp >= since)
    assert 10 < len(keep) < len(docs) - 10
    where = "timestamp >= 2025-06-01"
    dense = engine.search("laptop will not turn on", k=10, mode="dense", where=where)
    # The exact cosine ranking of the matching documents.
    vector = engine.encoder.encode(["laptop will not turn on"])[0]
    ids = engine.generation.doc_ids
    positions = np.array([p for p in range(len(ids)) if ids[p] in keep])
    sims = engine.generation.vectors.similarity(vector, positions)
    want = positions[np.lexsort((positions, -sims))][:10]
    assert [h.doc_id for h in dense.hits] == [ids[p] for p in want]
    for mode in ("hybrid", "hybrid-rrf"):
        hits = engine.search("laptop will not turn on", k=10, mode=mode, where=where).hits
        assert len(hits) == 10 and {h.doc_id for h in hits} <= keep


def test_a_filter_nothing_meets_returns_no_hits(engine):
    assert engine.search("charger", mode="hybrid", where="price < 0").hits == []


def test_the_approximate_path_finds_the_filtered_neighbours(monkeypatch):
    """Above the exact limit the approximate index is searched deep enough for the filter;
    against exact search over the same documents, on seeded vectors (a real HNSW index)."""
    rng = np.random.default_rng(0)
    n, dim = 4000, 32
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    info = EncoderInfo("seeded", "f" * 16, dim)
    index = VectorIndex.build(emb, info, VectorParams(kind="hnsw", recall_queries=50))
    assert index.kind == "hnsw"
    monkeypatch.setattr(candidates, "EXACT_FILTERED_DOCS", 100)
    queries = rng.standard_normal((20, dim)).astype(np.float32)
    for share in (0.5, 0.1, 0.03):
        allowed = rng.random(n) < share
        found = 0
        for q in queries:
            q = q / np.linalg.norm(q)
            got = candidates.filtered_dense_top(index, q, 50, info.fingerprint, allowed)
            assert len(got) == 50 and allowed[got].all()
            live = np.flatnonzero(allowed)
            truth = live[np.argsort(-(emb[live] @ q), kind="stable")][:50]
            found += len(set(got.tolist()) & set(truth.tolist()))
        assert found / (50 * len(queries)) >= 0.9, share
    # A filter keeping fewer documents than asked for: every one of them, best first.
    few = np.zeros(n, dtype=bool)
    few[[5, 900, 3999]] = True
    q = emb[900]
    assert candidates.filtered_dense_top(index, q, 50, info.fingerprint, few)[0] == 900
    assert sorted(candidates.filtered_dense_top(index, q, 50, info.fingerprint, few)) == [
        5,
        900,
        3999,
    ]


def test_filters_see_documents_of_a_new_segment_and_not_deleted_ones(tmp_path, encoder):
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.retrieval.indexing import optimize_indexes
    from brainrank.ranker.retrieval.search import SearchEngine

    cfg = make_config(tmp_path / "ws")
    t = datetime(2025, 1, 1, tzinfo=UTC)
    base = [
        Document(f"b{i}", f"garden hose {i}", "a hose for the garden", t, {"price": 20.0 + i})
        for i in range(30)
    ]
    ingest(cfg, encoder, base)
    reel = Document("new", "garden hose reel", "a reel", t, {"price": 5.0}, {"kind": "reel"})
    ingest(cfg, encoder, [reel])
    ingest(cfg, encoder, delete=["b0"])
    # A tag changed alone: the document's new tag is what filters see.
    ingest(cfg, encoder, [Document("b2", "garden hose 2", "a hose for the garden", t,
                                   {"price": 22.0}, {"kind": "hose"})])  # fmt: skip

    def found(where, mode):
        hits = engine.search("garden hose", k=5, mode=mode, where=where).hits
        return sorted(h.doc_id for h in hits)

    engine = SearchEngine(cfg, encoder=encoder)
    try:
        assert len(engine.generation.segments) > 1  # the new documents are in delta segments
        for mode in ("bm25", "dense", "hybrid"):
            assert found("price < 22", mode) == ["b1", "new"], mode
            assert found("kind = reel", mode) == ["new"], mode
            assert found("kind != reel", mode) == ["b2"], mode  # no tag: never "different"
    finally:
        engine.close()
    optimize_indexes(Workspace(cfg.workspace), cfg)  # one merged segment, the same answers
    engine = SearchEngine(cfg, encoder=encoder)
    try:
        assert len(engine.generation.segments) == 1
        for mode in ("bm25", "hybrid"):
            assert found("price < 22", mode) == ["b1", "new"], mode
            assert found("kind in (reel, hose)", mode) == ["b2", "new"], mode
    finally:
        engine.close()


def test_tag_filters_on_the_sample(engine, sample_docs):
    help_ids = {d.doc_id for d in sample_docs if d.tags.get("category") == "help"}
    assert 0 < len(help_ids) < len(sample_docs)
    for mode in ("bm25", "hybrid"):
        got = engine.search("charger for a laptop", k=10, mode=mode, where="category = help")
        assert len(got.hits) == 10 and {h.doc_id for h in got.hits} <= help_ids, mode
    both = engine.search("charger", k=10, mode="hybrid", where="category in (help, catalog)")
    assert [h.doc_id for h in both.hits] == [
        h.doc_id for h in engine.search("charger", k=10, mode="hybrid").hits
    ]


def test_search_json_lists_the_filters(engine):
    got = engine.search("charger", k=3, mode="bm25", where=["price<30"]).to_dict()
    assert got["filters"] == ["price < 30"]
    assert "filters" not in engine.search("charger", k=3, mode="bm25").to_dict()
    json.dumps(got)


def test_the_learned_mode_ranks_only_matching_documents(trained_config, encoder):
    from brainrank.ranker.retrieval.search import SearchEngine

    engine = SearchEngine(trained_config, encoder=encoder)
    try:
        got = engine.search("phone charger", k=10, where=["price < 30"])
        assert got.mode == "learned" and len(got.hits) == 10
        assert all(got.documents[h.doc_id].fields["price"] < 30 for h in got.hits)
        assert got.features.shape[0] == 10
    finally:
        engine.close()


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
def test_facets_count_the_tags_of_the_documents_the_search_ranked(engine, sample_docs, mode):
    tags = {d.doc_id: d.tags.get("category") for d in sample_docs}
    got = engine.search("charger", k=3, mode=mode, facets=["category"], where="rating >= 4")
    # The documents a search ranks: its candidates (BM25's matches alone in the BM25 mode),
    # of those the filter keeps.
    g = engine.generation
    allowed = matching(parse_filters("rating >= 4"), g.filter_columns, len(g))
    cand = engine.candidates("charger", mode, allowed)
    ranked = cand.positions if mode != "bm25" else cand.positions[cand.bm25_rank > 0]
    ids = [engine.generation.doc_ids[p] for p in ranked]
    want: dict[str, int] = {}
    for i in ids:
        want[tags[i]] = want.get(tags[i], 0) + 1
    assert got.facets == {"category": dict(sorted(want.items(), key=lambda kv: (-kv[1], kv[0])))}
    assert list(got.facets["category"].values()) == sorted(want.values(), reverse=True)
    assert got.to_dict()["facets"] == got.facets and len(got.hits) == 3
    assert "facets" not in engine.search("charger", k=3, mode=mode).to_dict()


def test_facet_errors_name_the_problem(engine):
    with pytest.raises(InputError, match="cannot count 'colour': .* the tags here are category"):
        engine.search("charger", facets=["colour"])
    with pytest.raises(InputError, match="the limit is 8"):
        engine.search("charger", facets=["category"] * 9)


@pytest.mark.parametrize(
    "value", ["help", " padded ", '"quoted"', "'single'", "a, b", "x = y", "<3"]
)
def test_equals_writes_a_condition_that_reads_back_its_value(value):
    from brainrank.ranker.retrieval.filters import equals

    (c,) = parse_filters(equals("category", value))
    assert (c.field, c.op, c.values) == ("category", "=", (value,))
