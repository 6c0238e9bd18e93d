"""BM25 over the live documents of a segmented generation, scored as one fresh index would be.

Each segment keeps raw term counts (``index.postings``). Here the collection statistics are
taken over the live documents of all segments together: N, the average document length and
each term's document frequency leave deleted documents out. Scores then use bm25s's own
term-frequency and idf functions for the configured ``method`` (``bm25s.scoring``) with those
statistics, and are stored in float32 as bm25s stores them, so a generation of several segments
scores every document as a fresh ``BM25Index.build`` over its live documents would (to float32
rounding). The interface is ``BM25Index``'s: term ids are the generation's (segment 0's ids,
then terms first seen in later segments), and a term no live document holds is unknown, as it
would be in a fresh index.

The score-matrix entry of every posting (its weight) depends on the generation's statistics
alone, so it is computed once per generation, when the generation is written, and saved beside
its segments (``save_weights``, loaded mapped by ``load``): a search then costs a slice and an
addition per term, as bm25s's precomputed matrix does. Weighing each query term's postings at
search time cost most of a learned search's time at a million documents, and its tail.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import Stemmer

from brainrank.index.bm25 import (  # noqa: F401 (bm25s loaded without numba)
    _query_terms,
    bm25s,
    normalize_text,
)
from brainrank.index.errors import BrainrankError, IndexMismatchError
from brainrank.index.livemap import LiveMap
from brainrank.index.postings import TermCounts

# bm25s.BM25's default delta for BM25L and BM25+, which BM25Index.build keeps.
DELTA = 0.5
_NONOCCURRENCE = ("bm25l", "bm25+")
# Postings weighed at once: bounds the temporary arrays (about 40 bytes a posting) of weighing
# a million documents.
WEIGH_BLOCK = 1 << 22
# Each term's document frequency among the live documents, beside one file of weights per
# segment (named after it).
DF = "df.npy"


class KeywordIndex:
    """BM25 of a generation's live documents over its segments' term counts."""

    def __init__(
        self,
        parts: Sequence[TermCounts],
        live: LiveMap,
        weights: tuple[np.ndarray, Sequence[np.ndarray]] | None = None,
    ):
        """``weights``: (document frequencies, each segment's posting weights) as
        ``save_weights`` wrote them for this generation; None weighs the postings now."""
        from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer

        if len({p.params for p in parts}) > 1:
            raise IndexMismatchError(
                "the segments of this generation were tokenized with different BM25 settings; "
                "run `brainrank reindex`"
            )
        self.params = parts[0].params
        self._parts = list(parts)
        self._live = live
        self.n_docs = len(live)
        self._stemmer = Stemmer.Stemmer(self.params.stemmer)
        self._tfc = _select_tfc_scorer(self.params.method)
        self._idf_fn = _select_idf_scorer(self.params.method)
        # Term ids: segment 0's own, then each later segment's new terms in its order.
        self._vocab = {t: i for i, t in enumerate(parts[0].vocab)}
        self._first_terms = len(parts[0].vocab)
        self._to_local: list[dict[int, int] | None] = [None]
        self._to_global: list[np.ndarray] = [np.arange(self._first_terms)]
        for part in parts[1:]:
            ids = np.fromiter(
                (self._vocab.setdefault(t, len(self._vocab)) for t in part.vocab),
                dtype=np.int64,
                count=len(part.vocab),
            )
            self._to_global.append(ids)
            self._to_local.append({int(g): local for local, g in enumerate(ids)})
        self._lengths = live.gather([p.lengths for p in parts])
        self.avgdl = float(self._lengths.mean()) if len(self._lengths) else 0.0
        # Scores are summed over every document the segments hold, deleted ones too (a
        # segment's postings are then a slice of its own range, nothing to filter), and the
        # live ones gathered at the end.
        self._held = np.cumsum([0, *live.sizes])
        self._live_held = None
        if any(alive is not None for alive in live.live):
            self._live_held = np.concatenate(
                [
                    start + (np.arange(size) if alive is None else alive)
                    for start, size, alive in zip(
                        self._held[:-1], live.sizes, live.live, strict=True
                    )
                ]
            )
        if weights is None:
            self._df = self._live_frequencies()
            self._weights = [self._weigh(s) for s in range(len(parts))]
        else:
            self._df, self._weights = weights[0], list(weights[1])
            if self._df.shape != (len(self._vocab),) or self._df.dtype != np.int64:
                raise ValueError(
                    f"{self._df.shape} {self._df.dtype} document frequencies for "
                    f"{len(self._vocab)} terms"
                )
            for part, w in zip(self._parts, self._weights, strict=True):
                if w.shape != part.docs.shape or w.dtype != np.float32:
                    raise ValueError(f"{w.shape} {w.dtype} weights for {len(part.docs)} postings")

    @classmethod
    def load(
        cls, parts: Sequence[TermCounts], live: LiveMap, directory: Path, names: Sequence[str]
    ) -> KeywordIndex:
        """The index over ``parts`` with the weights ``save_weights`` wrote to ``directory``
        (``names``: the segments', in order), mapped, not read. A missing file, or one that
        does not fit the segments, is a BrainrankError naming the folder and the repair."""
        try:
            df = np.load(directory / DF, allow_pickle=False)
            weights = [
                # A plain view of the mapping: slicing an np.memmap costs microseconds more.
                np.asarray(np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False))
                for name in names
            ]
            return cls(parts, live, (df, weights))
        except (OSError, ValueError) as exc:
            raise BrainrankError(
                f"BM25 weights at {directory} are missing or corrupt ({exc}); "
                "run `brainrank reindex` to rebuild them"
            ) from None

    def save_weights(self, directory: Path, names: Sequence[str]) -> None:
        """Write the document frequencies and each segment's weights (``names``: the
        segments', in order) to ``directory``, for ``load``."""
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / DF, self._df, allow_pickle=False)
        for name, weights in zip(names, self._weights, strict=True):
            np.save(directory / f"{name}.npy", weights, allow_pickle=False)

    # ----- terms ---------------------------------------------------------------------------
    def tokenize(self, query: str) -> list[str]:
        """The stemmed, stopword-free terms of ``query`` as the index sees them."""
        return list(_query_terms(query, self.params))

    def stem(self, words: Sequence[str]) -> list[str]:
        """The index's terms for single words (folded, lowercased and stemmed as the index
        does)."""
        return self._stemmer.stemWords([normalize_text(w, self.params).lower() for w in words])

    def vocab_id(self, term: str) -> int | None:
        """The id of one (already tokenised) term, or None when no live document holds it."""
        found = self._vocab.get(term)
        return found if found is not None and self._df[found] > 0 else None

    def term_ids(self, query: str) -> list[int]:
        """Ids of the query's terms that live documents hold, in query order (repeats kept)."""
        out = []
        for term in self.tokenize(query):
            found = self._vocab.get(term)
            if found is not None and self._df[found] > 0:
                out.append(found)
        return out

    def _local(self, segment: int, term: int) -> int | None:
        if segment == 0:
            return term if term < self._first_terms else None
        return self._to_local[segment].get(term)

    def _live_frequencies(self) -> np.ndarray:
        """Live documents holding each term (int64, by generation term id)."""
        df = np.zeros(len(self._vocab), dtype=np.int64)
        for s, part in enumerate(self._parts):
            mapping = self._live.to_global[s]
            if mapping is None:
                counts = np.diff(part.indptr)
            else:
                counts = np.zeros(len(part.vocab), dtype=np.int64)
                for t0, t1 in _blocks(part.indptr):
                    lo, hi = part.indptr[t0], part.indptr[t1]
                    alive = mapping[part.docs[lo:hi]] >= 0
                    counts[t0:t1] = np.add.reduceat(alive, part.indptr[t0:t1] - lo, dtype=np.int64)
            df[self._to_global[s]] += counts
        return df

    def document_frequency(self, term_ids: Sequence[int]) -> np.ndarray:
        """Live documents holding each term (int64)."""
        return self._df[np.asarray(term_ids, dtype=np.int64)]

    def idf(self, term_ids: Sequence[int]) -> np.ndarray:
        """Lucene idf of each term: log(1 + (N - df + 0.5) / (df + 0.5))."""
        df = self.document_frequency(term_ids)
        return np.log1p((self.n_docs - df + 0.5) / (df + 0.5))

    def scoring_idf(self, term_ids: Sequence[int]) -> np.ndarray:
        """The idf in each term's scores, by the index's own idf method."""
        return np.array(
            [self._idf_fn(int(df), N=self.n_docs) for df in self.document_frequency(term_ids)],
            dtype=np.float64,
        )

    # ----- scores --------------------------------------------------------------------------
    def _term_constants(self, term: int) -> tuple[np.float32, np.float32]:
        """The term's idf as bm25s stores it (float32) and its non-occurrence score."""
        df = int(self._df[term])
        if df == 0:
            return np.float32(0.0), np.float32(0.0)
        idf = self._idf_fn(df, N=self.n_docs)
        nonoccurrence = 0.0
        if self.params.method in _NONOCCURRENCE:
            zero = self._tfc(
                tf_array=0, l_d=self.avgdl, l_avg=self.avgdl, k1=self.params.k1,
                b=self.params.b, delta=DELTA,
            )  # fmt: skip
            nonoccurrence = idf * zero
        return np.float32(idf), np.float32(nonoccurrence)

    def _weigh(self, segment: int) -> np.ndarray:
        """The score-matrix entries bm25s would store for a segment's postings (float32), a
        block of terms at a time; a deleted document's are computed too, and never read."""
        part, p = self._parts[segment], self.params
        constants = [self._term_constants(int(t)) for t in self._to_global[segment]]
        idf = np.array([c[0] for c in constants], dtype=np.float32)
        nonoccurrence = np.array([c[1] for c in constants], dtype=np.float32)
        out = np.empty(len(part.docs), dtype=np.float32)
        for t0, t1 in _blocks(part.indptr):
            lo, hi = part.indptr[t0], part.indptr[t1]
            counts = np.diff(part.indptr[t0 : t1 + 1])
            tfc = self._tfc(
                tf_array=part.freqs[lo:hi].astype(np.float32), l_d=part.lengths[part.docs[lo:hi]],
                l_avg=self.avgdl, k1=p.k1, b=p.b, delta=DELTA,
            )  # fmt: skip
            # Each entry as bm25s computes it: float32 idf times float32 tfc, in float32.
            np.multiply(np.repeat(idf[t0:t1], counts), tfc.astype(np.float32), out=out[lo:hi])
            if p.method in _NONOCCURRENCE:
                out[lo:hi] -= np.repeat(nonoccurrence[t0:t1], counts)
        return out

    def _columns(self, term: int):
        """(segment, local positions, weights) of the term's postings in each segment that
        has it, deleted documents' included."""
        for s, part in enumerate(self._parts):
            local = self._local(s, term)
            if local is not None:
                lo, hi = part.indptr[local], part.indptr[local + 1]
                yield s, part.docs[lo:hi], self._weights[s][lo:hi]

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every live document for ``query`` (float32, zeros when none match)."""
        return self.scores_for_terms(self.term_ids(query))

    def scores_for_terms(self, term_ids: Sequence[int]) -> np.ndarray:
        held = np.zeros(self._held[-1], dtype=np.float32)
        extra = np.float32(0.0)
        for term in term_ids:  # in query order, repeats added again, as bm25s adds them
            for s, docs, weights in self._columns(int(term)):
                # np.add.at over a term's (distinct) documents: the same float32 sums as an
                # indexed ``+=``, at 2.5x its speed on the long postings of a million
                # documents (numpy 1.26; bench/RESULTS.md).
                np.add.at(held[self._held[s] : self._held[s + 1]], docs, weights)
            extra += self._term_constants(int(term))[1]
        out = held if self._live_held is None else held[self._live_held]
        if extra:
            out += extra
        return out

    def scores_at(self, term_ids: Sequence[int], positions: np.ndarray) -> np.ndarray:
        """``scores_for_terms(term_ids)[positions]``, without scoring every live document:
        each term's postings (ascending) are searched for the documents asked for. What
        feature extraction needs for a query's candidates."""
        positions = np.asarray(positions, dtype=np.int64)
        out = np.zeros(len(positions), dtype=np.float32)
        if not len(positions):
            return out
        segments, locals_ = self._live.locate(positions)
        rows = {int(s): np.flatnonzero(segments == s) for s in np.unique(segments)}
        extra = np.float32(0.0)
        for term in term_ids:  # in query order, repeats added again, as scores_for_terms does
            for s, docs, weights in self._columns(int(term)):
                if s in rows:
                    wanted = locals_[rows[s]]
                    at = np.minimum(np.searchsorted(docs, wanted), len(docs) - 1)
                    hit = docs[at] == wanted
                    out[rows[s][hit]] += weights[at[hit]]
            extra += self._term_constants(int(term))[1]
        if extra:
            out += extra
        return out

    def term_weights(self, term_ids: Sequence[int], position: int) -> np.ndarray:
        """Each term's addend to the BM25 score of the document at ``position`` (float32);
        summed over a query's term ids they are ``scores_for_terms(term_ids)[position]``."""
        return np.array(
            [self.scores_at([term], [position])[0] for term in term_ids], dtype=np.float32
        )

    # ----- documents -----------------------------------------------------------------------
    def sequences(self, positions: np.ndarray) -> list[np.ndarray]:
        """Term-id sequences of the documents at ``positions`` (stopwords removed)."""
        segments, locals_ = self._live.locate(np.asarray(positions, dtype=np.int64))
        out = []
        for s, local in zip(segments.tolist(), locals_.tolist(), strict=True):
            seq = self._parts[s].sequence(local)
            out.append(seq if s == 0 else self._to_global[s][seq])
        return out

    def lengths(self) -> np.ndarray:
        """Indexed terms per live document."""
        return self._lengths


def _blocks(indptr: np.ndarray):
    """(first, end) term ranges of about ``WEIGH_BLOCK`` postings each (a longer term alone)."""
    firsts = np.arange(0, indptr[-1], WEIGH_BLOCK)
    starts = np.unique(np.searchsorted(indptr, firsts, "right") - 1).tolist()
    return zip(starts, [*starts[1:], len(indptr) - 1][: len(starts)], strict=True)
