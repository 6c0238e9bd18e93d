"""Keyword index: bm25s over title and body, Snowball-stemmed, English stopwords removed.

Besides scores, an index can keep each document's term-id sequence (arrays, no pickle) so
the ranker can compute query-term coverage and phrase matches without re-tokenising.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import Stemmer

from brainrank.index.errors import BrainrankError
from brainrank.index.params import BM25Params


def _import_bm25s():
    """bm25s without numba. bm25s imports numba whenever it is installed (SHAP brings it), which
    costs 0.3-1 s of every cold start, for a backend brainrank never uses: indexes are built
    and scored with ``backend="numpy"``. Blocking numba while bm25s loads leaves it importable
    for everyone else afterwards."""
    if "bm25s" in sys.modules or "numba" in sys.modules:
        import bm25s

        return bm25s
    sys.modules["numba"] = None  # `import numba` raises ImportError while this is set
    try:
        import bm25s
    finally:
        del sys.modules["numba"]
    return bm25s


bm25s = _import_bm25s()


def tokenize(
    texts: Sequence[str], params: BM25Params, *, stemmer: Stemmer.Stemmer | None = None
) -> list[list[str]]:
    """The terms of each text as a keyword index built with ``params`` sees them: folded
    (``normalize_text``), lowercased, stopwords removed, stemmed. ``stemmer`` reuses a
    ``Stemmer.Stemmer(params.stemmer)``."""
    if len(texts) == 0:
        return []
    return bm25s.tokenize(
        [normalize_text(t, params) for t in texts],
        stopwords=params.stopwords,
        stemmer=stemmer or Stemmer.Stemmer(params.stemmer),
        return_ids=False,
        show_progress=False,
    )


def normalize_text(text: str, params: BM25Params) -> str:
    """``text`` folded as ``params.normalize`` says (NFKC, or as it is)."""
    if params.normalize == "none" or text.isascii():  # ASCII is its own NFKC form
        return text
    return unicodedata.normalize("NFKC", text)


@lru_cache(maxsize=4096)
def _query_terms(query: str, params: BM25Params) -> tuple[str, ...]:
    """A query's terms, remembered: one search tokenises its query for the full-text, title and
    body indexes and for features, all with the same settings."""
    return tuple(tokenize([query], params)[0])


class BM25Index:
    """A bm25s index whose document positions match the generation's ``doc_ids`` list.

    An index over texts without a single indexable term (say, a title field that is empty
    everywhere) has no bm25s retriever and scores every query zero.
    """

    def __init__(
        self,
        retriever: bm25s.BM25 | None,
        params: BM25Params,
        n_docs: int,
        sequences: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self._retriever = retriever
        self.params = params
        self.n_docs = n_docs
        self._stemmer = Stemmer.Stemmer(params.stemmer)
        self._sequences = sequences  # (flat term ids, offsets[n_docs + 1])

    @classmethod
    def build(
        cls, texts: Sequence[str], params: BM25Params = BM25Params(), *, keep_sequences=False
    ) -> BM25Index:
        """Index ``texts``; position i of the index is ``texts[i]``."""
        tokens = tokenize(texts, params)
        retriever = None
        if any(tokens):
            retriever = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
            retriever.index(tokens, show_progress=False)
        sequences = None
        if keep_sequences:
            vocab = retriever.vocab_dict if retriever is not None else {}
            flat = np.array([vocab[t] for doc in tokens for t in doc], dtype=np.int32)
            offsets = np.concatenate([[0], np.cumsum([len(d) for d in tokens])]).astype(np.int64)
            sequences = (flat, offsets)
        return cls(retriever, params, len(texts), sequences)

    def tokenize(self, query: str) -> list[str]:
        """The stemmed, stopword-free terms of ``query`` as the index sees them."""
        return list(_query_terms(query, self.params))

    def term_ids(self, query: str) -> list[int]:
        """Ids of the query's terms that occur in the index, in query order (repeats kept)."""
        if self._retriever is None:
            return []
        return self._retriever.get_tokens_ids(self.tokenize(query))

    def vocab_id(self, term: str) -> int | None:
        """The index's id of one (already tokenised) term, or None when it never occurs."""
        if self._retriever is None:
            return None
        return self._retriever.vocab_dict.get(term)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (float32, zeros when no term matches)."""
        return self.scores_for_terms(self.term_ids(query))

    def scores_at(self, term_ids: Sequence[int], positions: np.ndarray) -> np.ndarray:
        """``scores_for_terms(term_ids)[positions]``."""
        return self.scores_for_terms(term_ids)[np.asarray(positions, dtype=np.int64)]

    def scores_for_terms(self, term_ids: Sequence[int]) -> np.ndarray:
        if not term_ids:
            return np.zeros(self.n_docs, dtype=np.float32)
        return self._retriever.get_scores(list(term_ids)).astype(np.float32, copy=False)

    def idf(self, term_ids: Sequence[int]) -> np.ndarray:
        """Lucene idf of each term: log(1 + (N - df + 0.5) / (df + 0.5))."""
        if not term_ids:
            return np.zeros(0)
        indptr = self._retriever.scores["indptr"]
        ids = np.asarray(term_ids)
        df = indptr[ids + 1] - indptr[ids]
        return np.log1p((self.n_docs - df + 0.5) / (df + 0.5))

    def document_frequency(self, term_ids: Sequence[int]) -> np.ndarray:
        """Documents holding each term (int64), from the score matrix's column lengths."""
        if not term_ids:
            return np.zeros(0, dtype=np.int64)
        indptr = self._retriever.scores["indptr"]
        ids = np.asarray(term_ids, dtype=np.int64)
        return (indptr[ids + 1] - indptr[ids]).astype(np.int64)

    def scoring_idf(self, term_ids: Sequence[int]) -> np.ndarray:
        """The idf bm25s folded into each term's scores, by the index's own idf method."""
        from bm25s.scoring import _select_idf_scorer

        idf = _select_idf_scorer(self._retriever.idf_method)
        return np.array(
            [idf(int(df), N=self.n_docs) for df in self.document_frequency(term_ids)],
            dtype=np.float64,
        )

    def term_weights(self, term_ids: Sequence[int], position: int) -> np.ndarray:
        """Each term's addend to the BM25 score of the document at ``position`` (float32).

        Read from bm25s's score matrix: the term's column entry for the document (0 where it
        does not occur), plus bm25s's non-occurrence score for BM25L and BM25+. Summed over a
        query's term ids (repeats kept) they are ``scores_for_terms(term_ids)[position]``.
        """
        out = np.zeros(len(term_ids), dtype=np.float32)
        if not term_ids:
            return out
        scores = self._retriever.scores
        data, indices, indptr = scores["data"], scores["indices"], scores["indptr"]
        for j, t in enumerate(term_ids):
            lo, hi = int(indptr[t]), int(indptr[t + 1])
            found = np.flatnonzero(indices[lo:hi] == position)
            if len(found):
                out[j] = data[lo + found[0]]
        nonoccurrence = getattr(self._retriever, "nonoccurrence_array", None)
        if nonoccurrence is not None:
            out += nonoccurrence[np.asarray(term_ids, dtype=np.int64)].astype(np.float32)
        return out

    def stem(self, words: Sequence[str]) -> list[str]:
        """The index's terms for single words (folded, lowercased and stemmed as the index
        does)."""
        return self._stemmer.stemWords([normalize_text(w, self.params).lower() for w in words])

    def sequences(self, positions: np.ndarray) -> list[np.ndarray]:
        """Term-id sequences of the documents at ``positions`` (stopwords removed)."""
        if self._sequences is None:
            raise BrainrankError(
                "this keyword index keeps no term sequences; run `brainrank reindex`"
            )
        flat, offsets = self._sequences
        return [flat[offsets[p] : offsets[p + 1]] for p in positions]

    def lengths(self) -> np.ndarray:
        """Indexed terms per document."""
        if self._sequences is None:
            raise BrainrankError(
                "this keyword index keeps no term sequences; run `brainrank reindex`"
            )
        return np.diff(self._sequences[1])

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self._retriever is not None:
            self._retriever.save(str(directory), allow_pickle=False, show_progress=False)
        if self._sequences is not None:
            np.save(directory / "sequences.npy", self._sequences[0], allow_pickle=False)
            np.save(directory / "sequence_offsets.npy", self._sequences[1], allow_pickle=False)
        payload = {
            "params": asdict(self.params),
            "n_docs": self.n_docs,
            "empty": self._retriever is None,
            "sequences": self._sequences is not None,
        }
        (directory / "brainrank_bm25.json").write_text(json.dumps(payload))

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        """Read a saved index; a missing, unreadable or inconsistent file is a BrainrankError
        naming the folder and ``brainrank reindex`` (checksums are the caller's: a generation's
        manifest records them)."""
        try:
            meta = json.loads((directory / "brainrank_bm25.json").read_text())
            n_docs, params = int(meta["n_docs"]), BM25Params.saved(meta["params"])
            retriever = None
            if not meta.get("empty"):
                retriever = bm25s.BM25.load(str(directory), mmap=False, show_progress=False)
                _check_matrix(retriever, n_docs)
            sequences = None
            if meta.get("sequences"):
                sequences = (
                    np.load(directory / "sequences.npy", allow_pickle=False),
                    np.load(directory / "sequence_offsets.npy", allow_pickle=False),
                )
                _check_sequences(*sequences, n_docs)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as exc:
            raise BrainrankError(
                f"keyword index at {directory} is missing or corrupt ({exc}); "
                "run `brainrank reindex` to rebuild it"
            ) from None
        return cls(retriever, params, n_docs, sequences)


def _check_matrix(retriever, n_docs: int) -> None:
    """The score matrix's arrays fit together and index only the ``n_docs`` documents."""
    scores = retriever.scores
    data, indices, indptr = scores["data"], scores["indices"], scores["indptr"]
    if int(scores.get("num_docs", n_docs)) != n_docs:
        raise ValueError(f"it scores {scores['num_docs']} documents, not {n_docs}")
    if not (indptr.ndim == data.ndim == indices.ndim == 1 and len(data) == len(indices)):
        raise ValueError("its score arrays do not fit together")
    if len(indptr) not in (len(retriever.vocab_dict), len(retriever.vocab_dict) + 1):
        raise ValueError(f"{len(indptr)} term offsets for {len(retriever.vocab_dict)} terms")
    if len(indptr) and (indptr[0] != 0 or indptr[-1] != len(data) or np.any(np.diff(indptr) < 0)):
        raise ValueError("its term offsets are out of order")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_docs):
        raise ValueError("it names documents beyond the collection")


def _check_sequences(flat: np.ndarray, offsets: np.ndarray, n_docs: int) -> None:
    if flat.ndim != 1 or offsets.shape != (n_docs + 1,):
        raise ValueError(f"term sequences of shape {flat.shape} / {offsets.shape}")
    if offsets[0] != 0 or offsets[-1] != len(flat) or np.any(np.diff(offsets) < 0):
        raise ValueError("its term-sequence offsets are out of order")
