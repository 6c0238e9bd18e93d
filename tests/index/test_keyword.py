"""Raw term counts per segment and BM25 over several segments with deletions.

The oracle is bm25s itself: ``BM25Index.build`` over the live texts alone, a fresh index whose
collection statistics know nothing of the deleted documents.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainrank.index.bm25 import BM25Index
from brainrank.index.errors import BrainrankError
from brainrank.index.keyword import KeywordIndex
from brainrank.index.livemap import LiveMap
from brainrank.index.params import BM25Params
from brainrank.index.postings import TermCounts

TEXTS = [
    "Automotive components store: brake pads and spark plugs",
    "Refund policy: money back within thirty days",
    "Garden hoses and watering cans for lawns",
    "Brake discs, brake pads and brake fluid for cars",
    "Shipping times for international orders",
    "The the the of and",  # stopwords only
    "Zeppelin tours over the lake",  # its terms live in this document alone
    "Money back guarantee on brake pads, refund in thirty days",
    "Watering cans, garden gloves and hoses",
    "International shipping of spark plugs and brake fluid",
]
QUERIES = ["brake pads", "refund money back", "garden hoses", "zeppelin lake", "brake brake"]
METHODS = ["lucene", "robertson", "atire", "bm25l", "bm25+"]
# Three segments: 0-3, 4-6, 7-9; deleted: 1 and 6 (zeppelin's only document), 8.
SPLITS = [(0, 4), (4, 7), (7, 10)]
DELETED = {1, 6, 8}


def segmented(params: BM25Params, keep_sequences=True) -> KeywordIndex:
    parts = [TermCounts.build(TEXTS[a:b], params, keep_sequences=keep_sequences) for a, b in SPLITS]
    dead = [np.array([i - a for i in sorted(DELETED) if a <= i < b]) for a, b in SPLITS]
    return KeywordIndex(parts, LiveMap([b - a for a, b in SPLITS], dead))


def live_texts() -> list[str]:
    return [t for i, t in enumerate(TEXTS) if i not in DELETED]


@pytest.mark.parametrize("method", METHODS)
def test_scores_equal_a_fresh_index_of_the_live_documents(method):
    params = BM25Params(method=method)
    ours, fresh = segmented(params), BM25Index.build(live_texts(), params)
    assert ours.n_docs == fresh.n_docs == 7
    for query in QUERIES:
        np.testing.assert_allclose(ours.scores(query), fresh.scores(query), rtol=1e-6, atol=1e-6)
        ids = ours.term_ids(query)
        np.testing.assert_array_equal(
            ours.document_frequency(ids), fresh.document_frequency(fresh.term_ids(query))
        )
        np.testing.assert_allclose(ours.scoring_idf(ids), fresh.scoring_idf(fresh.term_ids(query)))
        np.testing.assert_allclose(ours.idf(ids), fresh.idf(fresh.term_ids(query)))
        for position in range(ours.n_docs):  # each term's addend sums to the score
            weights = ours.term_weights(ids, position)
            assert weights.sum() == pytest.approx(ours.scores(query)[position], abs=1e-5)
            reference = fresh.term_weights(fresh.term_ids(query), position)
            np.testing.assert_allclose(weights, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["lucene", "bm25l"])
def test_scores_at_some_positions_are_those_of_every_document(method):
    ours = segmented(BM25Params(method=method))
    fresh = BM25Index.build(live_texts(), BM25Params(method=method))
    rng = np.random.default_rng(0)
    for query in QUERIES:
        every = ours.scores(query)
        for positions in (np.arange(ours.n_docs), rng.permutation(ours.n_docs)[:4], [2, 2, 0]):
            ids = ours.term_ids(query)
            # From the kept columns (``scores`` kept them) and from the postings alone.
            np.testing.assert_array_equal(ours.scores_at(ids, positions), every[positions])
            cold = segmented(BM25Params(method=method))
            np.testing.assert_array_equal(cold.scores_at(ids, positions), every[positions])
            fresh_ids = fresh.term_ids(query)
            np.testing.assert_array_equal(
                fresh.scores_at(fresh_ids, positions), fresh.scores(query)[positions]
            )
    assert ours.scores_at(ours.term_ids("brake pads"), []).shape == (0,)


def test_a_term_held_only_by_deleted_documents_is_unknown():
    ours = segmented(BM25Params())
    assert ours.vocab_id("zeppelin") is None and ours.term_ids("zeppelin lake") == []
    assert not ours.scores("zeppelin").any()
    assert ours.vocab_id("brake") is not None


def test_sequences_and_lengths_name_the_same_terms_as_a_fresh_index():
    ours, fresh = segmented(BM25Params()), BM25Index.build(live_texts(), keep_sequences=True)
    term = {i: t for t, i in ours._vocab.items()}
    fresh_term = {i: t for t, i in fresh._retriever.vocab_dict.items()}
    positions = np.arange(ours.n_docs)
    for mine, theirs in zip(ours.sequences(positions), fresh.sequences(positions), strict=True):
        assert [term[int(t)] for t in mine] == [fresh_term[int(t)] for t in theirs]
    np.testing.assert_array_equal(ours.lengths(), fresh.lengths())


def test_one_segment_without_deletions_is_the_index_itself():
    params = BM25Params()
    one = KeywordIndex([TermCounts.build(TEXTS, params)], LiveMap([len(TEXTS)], [None]))
    fresh = BM25Index.build(TEXTS, params)
    for query in QUERIES:
        np.testing.assert_allclose(one.scores(query), fresh.scores(query), rtol=1e-6, atol=1e-6)


def test_merge_equals_a_build_of_the_kept_texts():
    params = BM25Params()
    parts = [TermCounts.build(TEXTS[a:b], params, keep_sequences=True) for a, b in SPLITS]
    keeps = [np.array([i - a for i in range(a, b) if i not in DELETED]) for a, b in SPLITS]
    merged = TermCounts.merge(list(zip(parts, keeps, strict=True)))
    built = TermCounts.build(live_texts(), params, keep_sequences=True)
    assert sorted(merged.vocab) == sorted(built.vocab) and "zeppelin" not in merged.vocab
    np.testing.assert_array_equal(merged.lengths, built.lengths)
    index = {t: i for i, t in enumerate(built.vocab)}
    for t, term in enumerate(merged.vocab):  # the same postings, whatever the term numbering
        docs, freqs = merged.postings(t)
        want = built.postings(index[term])
        np.testing.assert_array_equal(docs, want[0])
        np.testing.assert_array_equal(freqs, want[1])
    for p in range(built.n_docs):
        assert [merged.vocab[t] for t in merged.sequence(p)] == [
            built.vocab[t] for t in built.sequence(p)
        ]


def test_save_load_roundtrip_and_damage(tmp_path):
    counts = TermCounts.build(TEXTS, BM25Params(k1=1.2), keep_sequences=True)
    counts.save(tmp_path / "bm25")
    loaded = TermCounts.load(tmp_path / "bm25")
    assert loaded.vocab == counts.vocab and loaded.params == counts.params
    # Postings and sequences are mapped, not read (a cold process reads only its terms' pages).
    # (Plain arrays over the mapping: their base is the np.memmap.)
    for array in (loaded.docs, loaded.freqs, loaded.sequences[0]):
        assert isinstance(array.base, np.memmap) and not array.flags.owndata
    one = KeywordIndex([loaded], LiveMap([len(TEXTS)], [None]))
    fresh = BM25Index.build(TEXTS, BM25Params(k1=1.2))
    np.testing.assert_allclose(one.scores("brake pads"), fresh.scores("brake pads"), rtol=1e-6)
    np.save(tmp_path / "bm25" / "docs.npy", np.full_like(counts.docs, len(TEXTS)))
    with pytest.raises(BrainrankError, match="beyond the segment.*brainrank reindex"):
        TermCounts.load(tmp_path / "bm25")


def test_empty_texts_score_zero():
    counts = TermCounts.build(["", "the of"], BM25Params())
    index = KeywordIndex([counts], LiveMap([2], [None]))
    assert index.term_ids("anything") == [] and not index.scores("anything").any()


def test_live_map_positions():
    live = LiveMap([4, 3, 3], [np.array([1]), None, np.array([0, 2])])
    assert len(live) == 7 and not live.trivial
    segment, local = live.locate(np.arange(7))
    assert segment.tolist() == [0, 0, 0, 1, 1, 1, 2] and local.tolist() == [0, 2, 3, 0, 1, 2, 1]
    assert live.globals_of(0, np.arange(4)).tolist() == [0, -1, 1, 2]
    assert live.gather_list([list("abcd"), list("efg"), list("hij")]) == list("acdefgi")
    with pytest.raises(IndexError):
        live.locate(np.array([7]))


NAMES = ["seg-a", "seg-b", "seg-c"]  # the three segments' weight files


@pytest.mark.parametrize("method", METHODS)
def test_saved_weights_are_the_weighed_ones(tmp_path, monkeypatch, method):
    """Weights saved for a generation of three segments with deletions and mapped back, or
    weighed a few postings at a time: the same scores, bit for bit, as weighed in memory."""
    import brainrank.index.keyword as keyword

    params = BM25Params(method=method)
    ours = segmented(params)
    ours.save_weights(tmp_path / "w", NAMES)
    loaded = KeywordIndex.load(ours._parts, ours._live, tmp_path / "w", NAMES)
    assert all(not w.flags.writeable for w in loaded._weights)  # mapped, not read
    monkeypatch.setattr(keyword, "WEIGH_BLOCK", 2)
    blocked = segmented(params)
    positions = np.array([4, 0, 2, 6])
    for query in QUERIES:
        ids, every = ours.term_ids(query), ours.scores(query)
        for other in (loaded, blocked):
            assert other.term_ids(query) == ids
            np.testing.assert_array_equal(
                other.document_frequency(ids), ours.document_frequency(ids)
            )
            np.testing.assert_array_equal(other.scores(query), every)
            np.testing.assert_array_equal(other.scores_at(ids, positions), every[positions])
            np.testing.assert_array_equal(other.term_weights(ids, 3), ours.term_weights(ids, 3))


def test_weights_are_idf_times_the_term_frequency_component():
    """Lucene BM25 written out for each live (document, term): idf * tf / (tf + k1 * (1 - b +
    b * length / average length)), over the live documents only."""
    ours, live = segmented(BM25Params()), live_texts()
    tokens = [ours.tokenize(text) for text in live]
    avgdl = np.mean([len(t) for t in tokens])
    for position, doc in enumerate(tokens):
        terms = sorted(set(doc))
        ids = [ours._vocab[t] for t in terms]
        expected = []
        for term in terms:
            df = sum(term in d for d in tokens)
            idf = np.log(1 + (len(live) - df + 0.5) / (df + 0.5))
            tf = doc.count(term)
            expected.append(idf * tf / (tf + 1.5 * (1 - 0.75 + 0.75 * len(doc) / avgdl)))
        np.testing.assert_allclose(ours.term_weights(ids, position), expected, rtol=1e-6)


def _shorter(path):
    np.save(path, np.load(path)[:-1])


def _float64(path):
    np.save(path, np.load(path).astype(np.float64))


@pytest.mark.parametrize(
    "file, damage",
    [
        ("seg-b.npy", lambda p: p.unlink()),
        ("df.npy", lambda p: p.unlink()),
        ("seg-a.npy", _shorter),
        ("seg-c.npy", _float64),
        ("df.npy", _shorter),
        ("seg-a.npy", lambda p: p.write_bytes(p.read_bytes()[:-3])),
        ("seg-b.npy", lambda p: p.write_bytes(b"not an array")),
    ],
    ids=["missing", "df-missing", "short", "float64", "df-short", "truncated", "garbage"],
)
def test_missing_or_damaged_weights_name_the_folder_and_the_repair(tmp_path, file, damage):
    ours = segmented(BM25Params())
    ours.save_weights(tmp_path / "w", NAMES)
    damage(tmp_path / "w" / file)
    with pytest.raises(BrainrankError, match=r"BM25 weights at .*w are .*brainrank reindex"):
        KeywordIndex.load(ours._parts, ours._live, tmp_path / "w", NAMES)


def test_big_postings_are_not_scanned_on_load(tmp_path, monkeypatch):
    from brainrank.index import postings

    counts = TermCounts.build(TEXTS, BM25Params())
    counts.save(tmp_path / "bm25")
    np.save(tmp_path / "bm25" / "docs.npy", np.full_like(counts.docs, len(TEXTS)))
    monkeypatch.setattr(postings, "SCAN_LIMIT", len(counts.docs) - 1)
    TermCounts.load(tmp_path / "bm25")  # shapes and offsets only: the checksums cover the rest
    monkeypatch.setattr(postings, "SCAN_LIMIT", len(counts.docs))
    with pytest.raises(BrainrankError, match="beyond the segment"):
        TermCounts.load(tmp_path / "bm25")


FOLDED = ["Roadsight XR-2200 dash camera", "Water ﬁlter cartridges, pack of three", "Garden hoses"]


@pytest.mark.parametrize("kind", ["fresh", "segmented"])
def test_full_width_and_ligature_text_matches_its_plain_form(kind):
    """Text folds to NFKC before it is split: a full-width query (as CJK input methods type
    it) finds the ASCII part number, a plain query the ligature a PDF left in a document."""

    def build(params):
        if kind == "fresh":
            return BM25Index.build(FOLDED, params)
        return KeywordIndex([TermCounts.build(FOLDED, params)], LiveMap([3], [None]))

    index = build(BM25Params())
    np.testing.assert_array_equal(index.scores("ＸＲ-２２００"), index.scores("XR-2200"))
    assert index.scores("ＸＲ-２２００")[0] > 0
    assert index.scores("filter")[1] > 0 and index.scores("ﬁlters")[1] > 0
    assert index.stem(["ＸＲ", "ﬁlters"]) == ["xr", "filter"]
    plain = build(BM25Params(normalize="none"))  # the analysis before the setting existed
    assert not plain.scores("ＸＲ-２２００").any() and not plain.scores("filter").any()


@pytest.mark.parametrize("kind", ["fresh", "segmented"])
def test_an_index_saved_before_the_setting_keeps_its_analysis(tmp_path, kind):
    """An index written before ``normalize`` existed was not folded; loaded, it reads as
    ``normalize = "none"``, so queries are tokenized as its documents were."""
    params = BM25Params(normalize="none")
    if kind == "fresh":
        BM25Index.build(FOLDED, params).save(tmp_path)
        meta_file = tmp_path / "brainrank_bm25.json"
    else:
        TermCounts.build(FOLDED, params).save(tmp_path)
        meta_file = next(p for p in tmp_path.glob("*.json") if p.name != "vocab.json")
    meta = json.loads(meta_file.read_text())
    del meta["params"]["normalize"]
    meta_file.write_text(json.dumps(meta))
    loaded = BM25Index.load(tmp_path) if kind == "fresh" else TermCounts.load(tmp_path)
    assert loaded.params == params
    with pytest.raises(ValueError, match="normalize 'nfd' is not one of nfkc, none"):
        BM25Params(normalize="nfd")
