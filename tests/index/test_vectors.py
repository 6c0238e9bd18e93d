import numpy as np
import pytest

from brainrank.index.errors import IndexMismatchError
from brainrank.index.params import EncoderInfo, VectorParams
from brainrank.index.vector_search import calibration_queries
from brainrank.index.vectors import VectorIndex

ENC = EncoderInfo("test-encoder", "sha256:0123456789abcdef", 32)


def embedding_like(n, dim=32, seed=0):
    """Unit vectors with low-rank structure plus noise, like real text embeddings."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)) @ rng.normal(size=(8, dim)) + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(x, q, k):
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_recall_against_exact(kind):
    x, q = embedding_like(3000), embedding_like(200, seed=1)
    index = VectorIndex.build(x, ENC, VectorParams(kind=kind))
    _, got = index.search(q, 10, encoder_fingerprint=ENC.fingerprint)
    truth = exact_top(x, q, 10)
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)])
    assert recall >= 0.9, recall


def test_flat_is_exact():
    x, q = embedding_like(500), embedding_like(20, seed=2)
    index = VectorIndex.build(x, ENC, VectorParams(kind="flat"))
    scores, got = index.search(q, 5, encoder_fingerprint=ENC.fingerprint)
    np.testing.assert_array_equal(got, exact_top(x, q, 5))
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, got, axis=1), rtol=1e-5)


def test_auto_kind_switches_at_threshold():
    params = VectorParams(kind="auto", exact_below=100)
    assert VectorIndex.build(embedding_like(99), ENC, params).kind == "flat"
    assert VectorIndex.build(embedding_like(100), ENC, params).kind == "hnsw"
    # Large collections: IVF over 8-bit codes (the 1M comparison in bench/RESULTS.md).
    defaults = VectorParams()
    assert [defaults.resolve_kind(n) for n in (49_999, 499_999, 500_000)] == ["flat", "hnsw", "ivf"]
    assert defaults.resolve_quantizer(10**6) == "sq8"
    assert VectorParams(approximate="hnsw").resolve_kind(10**6) == "hnsw"


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_identical(tmp_path, kind):
    x, q = embedding_like(2000), embedding_like(30, seed=3)
    index = VectorIndex.build(x, ENC, VectorParams(kind=kind))
    index.save(tmp_path / "v")
    loaded = VectorIndex.load(tmp_path / "v")
    a = index.search(q, 10, encoder_fingerprint=ENC.fingerprint)
    b = loaded.search(q, 10, encoder_fingerprint=ENC.fingerprint)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert loaded.encoder == ENC and loaded.kind == kind


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_extend_matches_building_from_scratch(kind):
    x = embedding_like(1200)
    grown = VectorIndex.build(x[:1000], ENC, VectorParams(kind=kind)).extend(x[1000:])
    assert grown.size == 1200
    _, got = grown.search(x[1000:1010], 1, encoder_fingerprint=ENC.fingerprint)
    np.testing.assert_array_equal(got[:, 0], np.arange(1000, 1010))


def test_refuses_vectors_from_another_encoder():
    index = VectorIndex.build(embedding_like(50), ENC)
    with pytest.raises(IndexMismatchError, match="reindex"):
        index.search(embedding_like(1), 5, encoder_fingerprint="sha256:ffffffffffffffff")


def test_refuses_wrong_dimension():
    index = VectorIndex.build(embedding_like(50), ENC)
    with pytest.raises(IndexMismatchError, match="dimension 32"):
        index.search(np.ones((1, 16), np.float32), 5, encoder_fingerprint=ENC.fingerprint)


def test_corrupt_file_is_reported(tmp_path):
    from brainrank.index.errors import BrainrankError

    VectorIndex.build(embedding_like(50), ENC).save(tmp_path / "v")
    (tmp_path / "v" / "vectors.faiss").write_bytes(b"garbage")
    with pytest.raises(BrainrankError, match="reindex"):
        VectorIndex.load(tmp_path / "v")


def test_search_on_tiny_index_returns_what_exists():
    index = VectorIndex.build(embedding_like(3), ENC)
    _, got = index.search(embedding_like(1, seed=5), 10, encoder_fingerprint=ENC.fingerprint)
    assert sorted(got[0].tolist()) == [0, 1, 2]


def passages_fixture(seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, size=300)  # 1 to 4 passages per document
    owner = np.repeat(np.arange(300), counts)
    return embedding_like(len(owner), seed=seed), owner


def brute_force_docs(x, owner, q):
    best = np.full((len(q), owner.max() + 1), -np.inf)
    for row, doc in enumerate(owner):
        best[:, doc] = np.maximum(best[:, doc], q @ x[row])
    return best


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_document_scores_are_their_best_passage(kind):
    x, owner = passages_fixture()
    q = embedding_like(20, seed=9)
    index = VectorIndex.build(x, ENC, VectorParams(kind=kind), owner=owner)
    assert index.size == 300
    truth = brute_force_docs(x, owner, q)
    scores, got = index.search(q, 10, encoder_fingerprint=ENC.fingerprint)
    assert all(len(set(row)) == 10 for row in got)  # each document once
    expected = np.argsort(-truth, axis=1, kind="stable")[:, :10]
    overlap = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, expected, strict=True)])
    assert overlap == 1.0 if kind == "flat" else overlap >= 0.9
    np.testing.assert_allclose(scores, np.take_along_axis(truth, got, axis=1), rtol=1e-5)
    positions = np.array([5, 0, 299, 17])
    np.testing.assert_allclose(index.similarity(q[0], positions), truth[0, positions], rtol=1e-5)


def test_passages_survive_save_load_and_extend(tmp_path):
    x, owner = passages_fixture(seed=4)
    cut = int(np.searchsorted(owner, 200))  # documents 0-199 first, 200-299 added later
    grown = VectorIndex.build(x[:cut], ENC, VectorParams(kind="hnsw"), owner=owner[:cut])
    grown = grown.extend(x[cut:], owner[cut:])
    grown.save(tmp_path / "v")
    loaded = VectorIndex.load(tmp_path / "v")
    assert loaded.size == 300 and loaded.rows(250) == slice(
        int(np.searchsorted(owner, 250)), int(np.searchsorted(owner, 251))
    )
    q = embedding_like(5, seed=11)
    np.testing.assert_array_equal(
        loaded.search(q, 5, encoder_fingerprint=ENC.fingerprint)[1],
        grown.search(q, 5, encoder_fingerprint=ENC.fingerprint)[1],
    )


def test_owners_with_gaps_are_refused():
    with pytest.raises(IndexMismatchError, match="without gaps"):
        VectorIndex.build(embedding_like(3), ENC, owner=np.array([0, 2, 2]))


@pytest.mark.parametrize(
    ("kind", "quantizer", "floor"),
    [("hnsw", "none", 0.9), ("hnsw", "sq8", 0.85), ("ivf", "sq8", 0.85), ("ivf", "pq", 0.5)],
)
def test_build_measures_recall_against_exact(kind, quantizer, floor):
    """The recall the build records is what an exact search says it is, for passages the
    index did not hold while it was measured (tests/index/test_vector_calibration.py)."""
    x = embedding_like(4000)
    params = VectorParams(kind, quantizer=quantizer, pq_m=8, recall_queries=50, recall_target=0)
    index = VectorIndex.build(x, ENC, params)
    assert index.quantizer == quantizer
    measured = index.recall
    assert measured["queries"] == 50 and measured["vectors"] == 4000
    assert measured["steps"] == [[index.effort, measured["R@100"]]]  # the configured effort
    held = np.sort(np.random.default_rng(0).choice(4000, size=50, replace=False))
    if kind == "ivf":  # by hand: an IVF search that skips rows searches an index without them
        queries = calibration_queries(x, held)
        index.delete(held)
        _, rows = index.search(queries, 100, encoder_fingerprint=ENC.fingerprint)
        sims = queries @ x.T
        sims[:, held] = -np.inf
        truth = np.argsort(-sims, axis=1, kind="stable")[:, :100]
        by_hand = np.mean([len(set(r) & set(t)) / 100 for r, t in zip(rows, truth, strict=True)])
        assert measured["R@100"] == pytest.approx(by_hand, abs=0.002)
    assert floor <= measured["R@100"] <= 1.0
    assert VectorIndex.build(x, ENC, VectorParams(kind="flat")).recall is None  # exact


def test_auto_quantizer_switches_at_threshold():
    params = VectorParams(kind="hnsw", quantize_above=1000)
    assert VectorIndex.build(embedding_like(999), ENC, params).quantizer == "none"
    assert VectorIndex.build(embedding_like(1000), ENC, params).quantizer == "sq8"
    assert params.resolve_quantizer(10**6) == "sq8"
    assert VectorParams(exact_below=100).resolve_quantizer(50) == "none"  # flat stays exact
    with pytest.raises(ValueError, match="quantizer 'int4'"):
        VectorParams(quantizer="int4")
    with pytest.raises(IndexMismatchError, match="pq_m 5 must divide"):
        VectorIndex.build(
            embedding_like(500), ENC, VectorParams(kind="ivf", quantizer="pq", pq_m=5)
        )


@pytest.mark.parametrize("quantizer", ["none", "sq8"])
def test_a_loaded_index_is_mapped_and_keeps_its_recall(tmp_path, quantizer):
    x, q = embedding_like(3000), embedding_like(20, seed=4)
    index = VectorIndex.build(x, ENC, VectorParams(kind="hnsw", quantizer=quantizer))
    index.save(tmp_path / "v")
    loaded = VectorIndex.load(tmp_path / "v")
    assert isinstance(loaded.embeddings, np.memmap)  # not read into memory
    assert loaded.quantizer == quantizer and loaded.recall == index.recall
    a = index.search(q, 10, encoder_fingerprint=ENC.fingerprint)
    b = loaded.search(q, 10, encoder_fingerprint=ENC.fingerprint)
    np.testing.assert_array_equal(a[1], b[1])
    grown = loaded.extend(embedding_like(10, seed=5))  # a mapped index still extends
    assert grown.size == 3010 and grown.quantizer == quantizer and grown.recall == index.recall


def test_hnsw_explores_at_least_as_deep_as_a_search_asks():
    # efSearch far below the rows a top-100 search needs: the search must still explore
    # that deep, or the tail of its top 100 is far from the true nearest.
    x, q = embedding_like(4000, seed=3), embedding_like(50, seed=4)
    index = VectorIndex.build(x, ENC, VectorParams(kind="hnsw", hnsw_ef_search=4))
    _, got = index.search(q, 100, encoder_fingerprint=ENC.fingerprint)
    truth = exact_top(x, q, 100)
    recall = np.mean([len(set(g) & set(t)) / 100 for g, t in zip(got, truth, strict=True)])
    assert recall >= 0.95, recall
    assert index.recall["R@100"] >= 0.95  # the build-time check searches the same way


def test_a_few_long_documents_do_not_leave_an_approximate_search_short():
    # 398 one-passage documents and 2 of 4 passages right at the query: the rows a search
    # first asks for (20, the 99th percentile of 1 passage each) hold only 14 documents.
    rng = np.random.default_rng(5)
    x = embedding_like(400, seed=6)
    query = x[0]
    near = query + 0.01 * rng.normal(size=(8, 32))
    near = (near / np.linalg.norm(near, axis=1, keepdims=True)).astype(np.float32)
    emb = np.vstack([near, x[1:399]]).astype(np.float32)  # docs 0 and 1: 4 passages each
    owner = np.concatenate([[0, 0, 0, 0, 1, 1, 1, 1], np.arange(2, 400)])
    index = VectorIndex.build(emb, ENC, VectorParams(kind="hnsw"), owner=owner)
    scores, got = index.search(query[None], 20, encoder_fingerprint=ENC.fingerprint)
    assert (got[0] >= 0).all() and len(set(got[0])) == 20
    assert set(got[0][:2]) == {0, 1}
