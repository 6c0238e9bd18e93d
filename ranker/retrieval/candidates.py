"""Candidate generation: keyword and dense lists, their union, and the signals of each candidate."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrank.index.bm25 import BM25Index
from brainrank.index.errors import BrainrankError
from brainrank.index.vectors import VectorIndex
from brainrank.ranker.retrieval.filters import FilterColumns
from brainrank.ranker.retrieval.layout import Loaded, is_segmented, load_segmented


@dataclass(frozen=True)
class Candidates:
    """Columnar signals for one query's candidates (positions into the generation's doc ids).

    A rank of 0 means the document was not in that retriever's list; its score is still the
    exact one (BM25 over the whole index, cosine against the stored embedding), so fusion and
    learned features never have to impute a missing value.
    """

    positions: np.ndarray
    bm25: np.ndarray
    bm25_rank: np.ndarray
    dense: np.ndarray
    dense_rank: np.ndarray
    query_vector: np.ndarray | None = None


class Generation:
    """One index generation loaded for serving: doc ids, keyword indexes, vector index.

    Positions number the generation's live documents (``index.livemap``): for a generation of
    several segments the indexes are views over all of them (``layout``), for one written
    before segments the indexes as they were saved.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        try:
            self.manifest = json.loads((directory / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise BrainrankError(
                f"index generation {directory} is unreadable ({exc}); run `brainrank reindex`"
            ) from exc
        loaded = (
            load_segmented(directory, self.manifest)
            if is_segmented(self.manifest)
            else _load_flat(directory)
        )
        self.doc_ids: list[str] = loaded.doc_ids
        self.content_hashes: list[str] = loaded.content_hashes
        self.bm25, self.bm25_title, self.bm25_body = (
            loaded.bm25,
            loaded.bm25_title,
            loaded.bm25_body,
        )
        self.vectors = loaded.vectors
        self.doc_meta: dict[str, np.ndarray] = loaded.doc_meta
        self.filter_columns = FilterColumns(self.doc_meta)  # what search filters read
        self.segments = loaded.segments  # [] for a generation written before segments
        for name, part in (("keyword", self.bm25), ("vector", self.vectors)):
            size = None if part is None else (part.n_docs if name == "keyword" else part.size)
            if part is not None and size != len(self.doc_ids):
                raise BrainrankError(
                    f"{name} index in {directory} holds {size} documents but the generation "
                    f"lists {len(self.doc_ids)}; run `brainrank reindex`"
                )

    def __len__(self) -> int:
        return len(self.doc_ids)

    def keyword_top(
        self, query: str, n: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """All BM25 scores and the positions of the top ``n`` documents with a positive score
        (among the ``allowed`` ones, a bool per position, when given)."""
        scores = self.bm25.scores(query)
        if allowed is None:
            return scores, top_positive(scores, n)
        return scores, top_positive(np.where(allowed, scores, 0), n)

    def dense_top(
        self,
        query_vector: np.ndarray,
        n: int,
        encoder_fingerprint: str | None,
        allowed: np.ndarray | None = None,
    ) -> np.ndarray:
        """Positions of the ``n`` documents nearest ``query_vector`` (among the ``allowed``)."""
        if allowed is None:
            _, ids = self.vectors.search(query_vector, n, encoder_fingerprint=encoder_fingerprint)
            return ids[0][ids[0] >= 0]
        return filtered_dense_top(self.vectors, query_vector, n, encoder_fingerprint, allowed)

    def candidates(
        self,
        query: str,
        query_vector: np.ndarray | None,
        n: int,
        encoder_fingerprint: str | None,
        allowed: np.ndarray | None = None,
    ) -> Candidates:
        """Union of the top ``n`` keyword and top ``n`` dense documents with both signals;
        with ``allowed`` (a bool per position, ``filters.matching``), of those documents only."""
        if allowed is not None and allowed.all():
            allowed = None  # a filter every document meets: the unfiltered search
        bm25_all, bm25_top = self.keyword_top(query, n, allowed)
        if query_vector is None:
            dense_top = np.zeros(0, dtype=np.int64)
        else:
            dense_top = self.dense_top(query_vector, n, encoder_fingerprint, allowed)
        positions = np.unique(np.concatenate([bm25_top, dense_top]).astype(np.int64))
        dense = (
            self.vectors.similarity(query_vector, positions)
            if query_vector is not None
            else np.zeros(len(positions), np.float32)
        )
        return Candidates(
            positions=positions,
            bm25=bm25_all[positions],
            bm25_rank=_ranks(positions, bm25_top),
            dense=dense,
            dense_rank=_ranks(positions, dense_top),
            query_vector=query_vector,
        )


def top_positive(scores: np.ndarray, n: int, stride: int = 16) -> np.ndarray:
    """Positions of the ``n`` highest positive ``scores``, best first, ties by position.

    Exact, without partitioning every matched document (at a million documents that was most
    of a long query's keyword time): the ``n``-th highest score among every ``stride``-th
    document is a floor no document of the true top ``n`` is below, so only documents at or
    above it are partitioned. Every document tied with the ``n``-th score is kept until the
    final sort, so which of them make the cut does not depend on the partition.
    """
    sample = scores[::stride]
    floor = 0.0
    if len(sample) > n:
        floor = float(np.partition(sample, len(sample) - n)[len(sample) - n])
    matched = np.flatnonzero(scores >= floor) if floor > 0 else np.flatnonzero(scores > 0)
    if len(matched) > n:
        values = scores[matched]
        matched = matched[values >= np.partition(values, len(values) - n)[len(values) - n]]
    return matched[np.lexsort((matched, -scores[matched]))][:n]


# A filter that leaves at most this many documents is searched exactly: a few milliseconds,
# and an approximate index would have to walk past every document the filter removed.
EXACT_FILTERED_DOCS = 20_000


def filtered_dense_top(
    vectors, query_vector: np.ndarray, n: int, fingerprint: str | None, allowed: np.ndarray
) -> np.ndarray:
    """The ``n`` nearest documents among the ``allowed`` positions, best first.

    Few documents left: exact cosine with each one's best passage. Many: the approximate
    index searched deep enough that ``n`` allowed documents are expected among its hits (the
    depth scaled by the share allowed, doubled while too few turn up), exact as the last resort.
    An HNSW graph explores at least as many nodes as the effort it was calibrated to, divided
    by the share allowed, so the allowed documents it finds are as near as an unfiltered
    search's.
    """
    live = np.flatnonzero(allowed)
    n = min(n, len(live))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if len(live) > EXACT_FILTERED_DOCS:
        scale = vectors.size / len(live)
        depth = math.ceil(n * scale * 1.5)
        if vectors.kind == "hnsw" and vectors.effort:
            depth = max(depth, math.ceil(vectors.effort * scale))
        depth = min(vectors.size, depth)
        while True:
            _, ids = vectors.search(query_vector, depth, encoder_fingerprint=fingerprint)
            found = ids[0][ids[0] >= 0]
            found = found[allowed[found]]
            if len(found) >= n:
                return found[:n]
            if depth >= vectors.size:
                break
            depth = min(vectors.size, depth * 2)
    vectors.check_encoder(fingerprint)
    sims = vectors.similarity(query_vector, live)
    return live[np.lexsort((live, -sims))][:n]


def _load_flat(directory: Path) -> Loaded:
    """A generation written before segments (format 2): one set of indexes at the top."""
    try:
        docs = json.loads((directory / "docs.json").read_text())
    except (OSError, ValueError) as exc:
        raise BrainrankError(
            f"index generation {directory} is unreadable ({exc}); run `brainrank reindex`"
        ) from exc
    out = Loaded(docs["ids"], docs["hashes"])
    if not out.doc_ids:
        return out
    out.bm25 = BM25Index.load(directory / "bm25")
    out.vectors = VectorIndex.load(directory / "vectors")
    out.bm25_title = BM25Index.load(directory / "bm25_title")
    out.bm25_body = BM25Index.load(directory / "bm25_body")
    try:
        with np.load(directory / "doc_meta.npz", allow_pickle=False) as meta:
            out.doc_meta = {name: meta[name] for name in meta.files}
    except (OSError, ValueError) as exc:
        raise BrainrankError(
            f"document metadata in {directory} is unreadable ({exc}); run `brainrank reindex`"
        ) from exc
    return out


def _ranks(positions: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """1-based rank of each position in ``ranked``, 0 where absent."""
    lookup = {int(p): r for r, p in enumerate(ranked, start=1)}
    return np.array([lookup.get(int(p), 0) for p in positions], dtype=np.int64)
