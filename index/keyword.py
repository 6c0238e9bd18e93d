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
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import Stemmer

from brainrank.index.bm25 import _query_terms, bm25s  # noqa: F401 (bm25s loaded without numba)
from brainrank.index.errors import IndexMismatchError
from brainrank.index.livemap import LiveMap
from brainrank.index.postings import TermCounts

# bm25s.BM25's default delta for BM25L and BM25+, which BM25Index.build keeps.
DELTA = 0.5
_NONOCCURRENCE = ("bm25l", "bm25+")
# Score-matrix entries an index keeps computed for the terms searched most recently (about
# 8 bytes each): all of SciFact's fit, a million documents' most frequent terms do.
CACHE_POSTINGS = 4_000_000


class KeywordIndex:
    """BM25 of a generation's live documents over its segments' term counts."""

    def __init__(self, parts: Sequence[TermCounts], live: LiveMap):
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
        self._to_global: list[np.ndarray | None] = [None]
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
        self._df: dict[int, int] = {}
        self._cache: OrderedDict[int, tuple] = OrderedDict()
        self._cached = 0  # postings held by the cache
        self._lock = threading.Lock()  # searches run on several threads

    # ----- terms ---------------------------------------------------------------------------
    def tokenize(self, query: str) -> list[str]:
        """The stemmed, stopword-free terms of ``query`` as the index sees them."""
        return list(_query_terms(query, self.params))

    def stem(self, words: Sequence[str]) -> list[str]:
        """The index's terms for single words (lowercased and stemmed as the index does)."""
        return self._stemmer.stemWords([w.lower() for w in words])

    def vocab_id(self, term: str) -> int | None:
        """The id of one (already tokenised) term, or None when no live document holds it."""
        found = self._vocab.get(term)
        return found if found is not None and self._document_frequency(found) > 0 else None

    def term_ids(self, query: str) -> list[int]:
        """Ids of the query's terms that live documents hold, in query order (repeats kept)."""
        out = []
        for term in self.tokenize(query):
            found = self._vocab.get(term)
            if found is not None and (self._df.get(found) or self._document_frequency(found)):
                out.append(found)
        return out

    def _local(self, segment: int, term: int) -> int | None:
        if segment == 0:
            return term if term < self._first_terms else None
        return self._to_local[segment].get(term)

    def _postings(self, term: int):
        """(segment, local positions, frequencies, generation positions) of live postings."""
        for s, part in enumerate(self._parts):
            local = self._local(s, term)
            if local is None:
                continue
            docs, freqs = part.postings(local)
            where = self._live.globals_of(s, docs)
            if self._live.live[s] is not None:
                alive = where >= 0
                docs, freqs, where = docs[alive], freqs[alive], where[alive]
            yield s, docs, freqs, where

    def _document_frequency(self, term: int) -> int:
        df = self._df.get(term)
        if df is None:
            df = sum(len(where) for _, _, _, where in self._postings(term))
            self._df[term] = df
        return df

    def document_frequency(self, term_ids: Sequence[int]) -> np.ndarray:
        """Live documents holding each term (int64)."""
        return np.array([self._document_frequency(int(t)) for t in term_ids], dtype=np.int64)

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
        df = self._document_frequency(term)
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

    def _weights(self, segment: int, docs, freqs, idf, nonoccurrence) -> np.ndarray:
        """The score-matrix entries bm25s would store for these postings (float32)."""
        p = self.params
        tfc = self._tfc(
            tf_array=freqs.astype(np.float32), l_d=self._parts[segment].lengths[docs],
            l_avg=self.avgdl, k1=p.k1, b=p.b, delta=DELTA,
        )  # fmt: skip
        weights = idf * tfc.astype(np.float32, copy=False)
        if p.method in _NONOCCURRENCE:
            weights -= nonoccurrence
        return weights

    def _column(self, term: int) -> tuple[list, np.float32]:
        """A term's score-matrix entries over the live documents, as (positions, entries)
        blocks, and its non-occurrence score. Kept for later queries while they fit in
        ``CACHE_POSTINGS`` (least recently used dropped first): the generation never changes,
        and a kept column costs a search one addition, as bm25s's precomputed matrix does."""
        found = self._cache.get(term)
        if found is not None:
            try:
                self._cache.move_to_end(term)
            except KeyError:  # dropped by another thread's search meanwhile: still valid
                pass
            return found
        idf, nonoccurrence = self._term_constants(term)
        blocks = []
        for s, docs, freqs, where in self._postings(term):
            blocks.append(
                (where.astype(np.int32), self._weights(s, docs, freqs, idf, nonoccurrence))
            )
        found = (blocks, nonoccurrence)
        size = sum(len(w) for w, _ in blocks)
        with self._lock:
            if size <= CACHE_POSTINGS and term not in self._cache:
                self._cache[term] = found
                self._cached += size
                while self._cached > CACHE_POSTINGS:
                    _, (old, _) = self._cache.popitem(last=False)
                    self._cached -= sum(len(w) for w, _ in old)
        return found

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every live document for ``query`` (float32, zeros when none match)."""
        return self.scores_for_terms(self.term_ids(query))

    def scores_for_terms(self, term_ids: Sequence[int]) -> np.ndarray:
        out = np.zeros(self.n_docs, dtype=np.float32)
        extra = np.float32(0.0)
        for term in term_ids:  # in query order, repeats added again, as bm25s adds them
            blocks, nonoccurrence = self._column(int(term))
            for where, weights in blocks:
                np.add.at(out, where, weights)  # as bm25s adds a column (fast for int32)
            extra += nonoccurrence
        if extra:
            out += extra
        return out

    def scores_at(self, term_ids: Sequence[int], positions: np.ndarray) -> np.ndarray:
        """``scores_for_terms(term_ids)[positions]``, without scoring every live document:
        each term's column (positions ascending) is searched for the positions asked for. What
        feature extraction needs for a query's candidates; at a million documents scoring them
        all cost milliseconds per term."""
        positions = np.asarray(positions, dtype=np.int64)
        out = np.zeros(len(positions), dtype=np.float32)
        if not len(positions):
            return out
        order = np.argsort(positions, kind="stable")
        wanted = positions[order]
        extra = np.float32(0.0)
        for term in term_ids:  # in query order, repeats added again, as scores_for_terms does
            kept = self._cache.get(int(term))
            if kept is not None:  # the column is at hand: look the positions up in it
                blocks, nonoccurrence = kept
                for where, weights in blocks:
                    if len(where):
                        at = np.minimum(np.searchsorted(where, wanted), len(where) - 1)
                        hit = where[at] == wanted
                        out[order[hit]] += weights[at[hit]]
            else:  # weigh only the postings of the positions asked for
                idf, nonoccurrence = self._term_constants(int(term))
                for seg, docs, freqs, where in self._postings(int(term)):
                    if len(where):
                        at = np.minimum(np.searchsorted(where, wanted), len(where) - 1)
                        hit = where[at] == wanted
                        at = at[hit]
                        weights = self._weights(seg, docs[at], freqs[at], idf, nonoccurrence)
                        out[order[hit]] += weights
            extra += nonoccurrence
        if extra:
            out += extra
        return out

    def term_weights(self, term_ids: Sequence[int], position: int) -> np.ndarray:
        """Each term's addend to the BM25 score of the document at ``position`` (float32);
        summed over a query's term ids they are ``scores_for_terms(term_ids)[position]``."""
        out = np.zeros(len(term_ids), dtype=np.float32)
        segments, locals_ = self._live.locate(np.array([position]))
        s, local = int(segments[0]), int(locals_[0])
        for j, term in enumerate(term_ids):
            idf, nonoccurrence = self._term_constants(int(term))
            lid = self._local(s, int(term))
            tf = self._parts[s].frequency(lid, local) if lid is not None else 0
            if tf:
                docs, freqs = np.array([local]), np.array([tf])
                out[j] = self._weights(s, docs, freqs, idf, nonoccurrence)[0]
            out[j] += nonoccurrence
        return out

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
