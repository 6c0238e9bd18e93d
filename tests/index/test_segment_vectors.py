"""Vector search over several segments with deleted documents, against exact search of the
live passages (seeded data; real FAISS)."""

from __future__ import annotations

import numpy as np
import pytest

from brainrank.index.livemap import LiveMap
from brainrank.index.params import EncoderInfo, VectorParams
from brainrank.index.segment_vectors import SegmentedVectors
from brainrank.index.vectors import VectorIndex
from tests.index.test_vectors import embedding_like

ENC = EncoderInfo("test-encoder", "sha256:0123456789abcdef", 32)
FP = ENC.fingerprint


def passages(n_docs: int, seed: int):
    """Documents of one to three passages: (vectors, owner)."""
    counts = np.random.default_rng(seed).integers(1, 4, size=n_docs)
    owner = np.repeat(np.arange(n_docs), counts)
    return embedding_like(len(owner), seed=seed), owner


def exact(blocks, deleted, q, k):
    """Best-passage cosine of every live document, top k as (scores, positions)."""
    best = []
    for (x, owner), dead in zip(blocks, deleted, strict=True):
        sims = q @ x.T
        per_doc = np.full((len(q), owner.max() + 1), -np.inf, dtype=np.float32)
        for d in range(owner.max() + 1):
            per_doc[:, d] = sims[:, owner == d].max(axis=1)
        best.append(np.delete(per_doc, dead, axis=1))
    best = np.hstack(best)
    top = np.argsort(-best, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(best, top, axis=1), top


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_search_is_exact_search_of_the_live_documents(kind):
    blocks = [passages(1500, 0), passages(200, 1), passages(40, 2)]
    rng = np.random.default_rng(3)
    deleted = [np.sort(rng.choice(owner.max() + 1, size=m, replace=False))
               for (_, owner), m in zip(blocks, [300, 20, 39], strict=True)]  # fmt: skip
    params = [VectorParams(kind=kind), VectorParams(kind="flat"), VectorParams(kind="flat")]
    parts = [VectorIndex.build(x, ENC, p, o) for (x, o), p in zip(blocks, params, strict=True)]
    live = LiveMap([o.max() + 1 for _, o in blocks], deleted)
    vectors = SegmentedVectors(parts, live)
    q = embedding_like(30, seed=9)
    scores, got = vectors.search(q, 20, encoder_fingerprint=FP)
    want_scores, want = exact(blocks, deleted, q, 20)
    assert (got >= 0).all() and got.max() < len(live)
    if kind == "flat":
        np.testing.assert_array_equal(got, want)
    else:
        recall = np.mean([len(set(g) & set(w)) / 20 for g, w in zip(got, want, strict=True)])
        assert recall >= 0.9, recall
        np.testing.assert_allclose(scores[:, 0], want_scores[:, 0], atol=1e-5)
    for i in range(3):  # the scores are the exact best-passage cosines of what was found
        np.testing.assert_allclose(vectors.similarity(q[i], got[i]), scores[i], atol=1e-5)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_k_results_come_back_when_most_documents_are_deleted(kind):
    x, owner = passages(2000, 4)
    index = VectorIndex.build(x, ENC, VectorParams(kind=kind), owner)
    survivors = np.array([5, 77, 400, 1234, 1999, 1500, 3, 1000, 250, 1750, 600, 42])
    index.delete(np.setdiff1d(np.arange(2000), survivors))
    assert index.live == 12
    scores, got = index.search(embedding_like(5, seed=5), 10, encoder_fingerprint=FP)
    assert got.shape == (5, 10) and set(got.ravel()) <= set(survivors.tolist())
    assert np.isfinite(scores).all()
    scores, got = index.search(embedding_like(2, seed=6), 50, encoder_fingerprint=FP)
    assert got.shape == (2, 12) and all(sorted(row) == sorted(survivors) for row in got)


def test_rows_and_embeddings_follow_the_live_positions():
    blocks = [passages(30, 7), passages(10, 8)]
    parts = [VectorIndex.build(x, ENC, VectorParams(kind="flat"), o) for x, o in blocks]
    vectors = SegmentedVectors(parts, LiveMap([30, 10], [np.array([0, 29]), np.array([4])]))
    assert vectors.size == 37
    for position, (segment, local) in [(0, (0, 1)), (27, (0, 28)), (28, (1, 0)), (32, (1, 5))]:
        want = parts[segment].passage_vectors(local)
        np.testing.assert_array_equal(vectors.passage_vectors(position), want)
        np.testing.assert_array_equal(vectors.embeddings[vectors.rows(position)], want)
