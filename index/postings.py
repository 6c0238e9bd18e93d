"""One segment's keyword index as raw counts: which documents hold each term, how often.

bm25s folds idf and the average document length into the scores it stores, so the matrices of
two segments built apart cannot be added up. A segment therefore keeps what BM25 is computed
from: per term the documents holding it and the term's frequency in each (a CSC matrix), each
document's length in indexed terms, and optionally each document's term sequence. Statistics
over several segments (``index.keyword``) are then exact. Terms are produced by bm25s's
tokenizer with the index's settings (``index.bm25.tokenize``), so they are bm25s's terms.
Saved as plain arrays plus JSON, never pickle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from brainrank.index.bm25 import tokenize
from brainrank.index.errors import BrainrankError
from brainrank.index.params import BM25Params

META = "postings.json"


class TermCounts:
    """Term -> (documents, frequencies) of one segment's texts; position i is ``texts[i]``.

    ``indptr[t]:indptr[t + 1]`` slices ``docs`` (ascending positions) and ``freqs`` for the
    term with local id ``t`` (``vocab[t]``). ``sequences`` holds each document's term ids
    (stopwords removed) as one flat array and ``n_docs + 1`` offsets, when kept.
    """

    def __init__(
        self,
        vocab: list[str],
        indptr: np.ndarray,
        docs: np.ndarray,
        freqs: np.ndarray,
        lengths: np.ndarray,
        params: BM25Params,
        sequences: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.vocab = vocab
        self.indptr = indptr
        self.docs = docs
        self.freqs = freqs
        self.lengths = lengths
        self.params = params
        self.sequences = sequences

    @property
    def n_docs(self) -> int:
        return len(self.lengths)

    @classmethod
    def build(
        cls, texts: Sequence[str], params: BM25Params = BM25Params(), *, keep_sequences=False
    ) -> TermCounts:
        """Count the terms of ``texts`` as bm25s tokenizes them with ``params``."""
        return cls.from_tokens(tokenize(texts, params), params, keep_sequences=keep_sequences)

    @classmethod
    def from_tokens(
        cls, tokens: Sequence[Sequence[str]], params: BM25Params, *, keep_sequences=False
    ) -> TermCounts:
        ids: dict[str, int] = {}
        flat = np.fromiter(
            (ids.setdefault(t, len(ids)) for doc in tokens for t in doc), dtype=np.int32
        )
        lengths = np.fromiter((len(doc) for doc in tokens), dtype=np.int32, count=len(tokens))
        owner = np.repeat(np.arange(len(tokens), dtype=np.int64), lengths)
        indptr, docs, freqs = _columns(flat, owner, len(tokens), len(ids))
        sequences = None
        if keep_sequences:
            offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            sequences = (flat, offsets)
        return cls(list(ids), indptr, docs, freqs, lengths, params, sequences)

    def postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, frequencies) of the documents holding local term ``term``."""
        lo, hi = self.indptr[term], self.indptr[term + 1]
        return self.docs[lo:hi], self.freqs[lo:hi]

    def sequence(self, position: int) -> np.ndarray:
        """Local term ids of one document, in text order."""
        if self.sequences is None:
            raise BrainrankError(
                "this keyword index keeps no term sequences; run `brainrank reindex`"
            )
        flat, offsets = self.sequences
        return flat[offsets[position] : offsets[position + 1]]

    @classmethod
    def merge(cls, parts: Sequence[tuple[TermCounts, np.ndarray | None]]) -> TermCounts:
        """One index of the documents each part keeps (``keep``: ascending positions, None for
        all), in part order. Terms left without documents are dropped, so the result equals an
        index built from the kept texts, up to the numbering of terms."""
        params = parts[0][0].params
        ids: dict[str, int] = {}
        rows_t, rows_d, rows_f, lengths, seqs = [], [], [], [], []
        keep_seq = all(p.sequences is not None for p, _ in parts)
        start = 0
        for part, keep in parts:
            keep = np.arange(part.n_docs) if keep is None else np.asarray(keep, dtype=np.int64)
            new_pos = np.full(part.n_docs, -1, dtype=np.int64)
            new_pos[keep] = np.arange(start, start + len(keep))
            to_new = np.fromiter(
                (ids.setdefault(t, len(ids)) for t in part.vocab), np.int64, len(part.vocab)
            )
            term = np.repeat(np.arange(len(part.vocab)), np.diff(part.indptr))
            alive = new_pos[part.docs] >= 0
            rows_t.append(to_new[term[alive]])
            rows_d.append(new_pos[part.docs[alive]])
            rows_f.append(part.freqs[alive])
            lengths.append(part.lengths[keep])
            if keep_seq:
                flat, _ = part.sequences
                kept = (new_pos >= 0)[np.repeat(np.arange(part.n_docs), part.lengths)]
                seqs.append(to_new[flat[kept]])
            start += len(keep)
        term = np.concatenate(rows_t) if rows_t else np.zeros(0, np.int64)
        # Renumber the terms that still occur, in order of first appearance.
        used = np.zeros(len(ids), dtype=bool)
        used[term] = True
        renumber = np.cumsum(used) - 1
        vocab = [t for t, u in zip(ids, used, strict=True) if u]
        term = renumber[term]
        docs = np.concatenate(rows_d)
        freqs = np.concatenate(rows_f)
        order = np.lexsort((docs, term))
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term, minlength=len(vocab)), out=indptr[1:])
        all_lengths = np.concatenate(lengths).astype(np.int32)
        sequences = None
        if keep_seq:
            flat = (
                renumber[np.concatenate(seqs)].astype(np.int32) if seqs else np.zeros(0, np.int32)
            )
            offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
            np.cumsum(all_lengths, out=offsets[1:])
            sequences = (flat, offsets)
        return cls(
            vocab,
            indptr,
            docs[order].astype(np.int32),
            freqs[order].astype(np.int32),
            all_lengths,
            params,
            sequences,
        )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {
            "indptr": self.indptr,
            "docs": self.docs,
            "freqs": self.freqs,
            "lengths": self.lengths,
        }
        if self.sequences is not None:
            arrays["sequences"], arrays["sequence_offsets"] = self.sequences
        for name, array in arrays.items():
            np.save(directory / f"{name}.npy", array, allow_pickle=False)
        (directory / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False))
        meta = {
            "params": asdict(self.params),
            "documents": self.n_docs,
            "terms": len(self.vocab),
            "sequences": self.sequences is not None,
        }
        (directory / META).write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> TermCounts:
        """Read a saved index; a missing, unreadable or inconsistent file is a BrainrankError
        naming the folder and ``brainrank reindex``."""
        try:
            meta = json.loads((directory / META).read_text())
            params = BM25Params.saved(meta["params"])
            vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))

            def array(name, mapped=False):
                # The postings and term sequences are mapped, not read: a query touches only
                # its terms' slices, and a cold process need not read a million documents'.
                # A plain view of the mapping: slicing an np.memmap costs microseconds more,
                # and feature extraction slices a sequence per candidate.
                mode = "r" if mapped else None
                found = np.load(directory / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
                return np.asarray(found)

            sequences = None
            if meta.get("sequences"):
                sequences = (array("sequences", True), array("sequence_offsets"))
            counts = cls(
                vocab,
                array("indptr"),
                array("docs", True),
                array("freqs", True),
                array("lengths"),
                params,
                sequences,
            )
            _check(counts, int(meta["documents"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BrainrankError(
                f"keyword index at {directory} is missing or corrupt ({exc}); "
                "run `brainrank reindex` to rebuild it"
            ) from None
        return counts


def _columns(term: np.ndarray, owner: np.ndarray, n_docs: int, n_terms: int):
    """CSC arrays (indptr, docs, freqs) of (term, document) occurrences."""
    if len(term) == 0:
        return np.zeros(n_terms + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)
    pairs, freqs = np.unique(term.astype(np.int64) * max(n_docs, 1) + owner, return_counts=True)
    terms = pairs // max(n_docs, 1)
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(np.bincount(terms, minlength=n_terms), out=indptr[1:])
    return indptr, (pairs % max(n_docs, 1)).astype(np.int32), freqs.astype(np.int32)


# Posting arrays longer than this are not scanned on load (their shapes and offsets are):
# scanning would read every mapped page. Their files' checksums cover them (``brainrank check``).
SCAN_LIMIT = 1 << 24


def _check(c: TermCounts, n_docs: int) -> None:
    """The arrays fit together and name only the segment's documents and terms."""
    if not isinstance(c.vocab, list) or not all(isinstance(t, str) for t in c.vocab):
        raise ValueError("its vocabulary is not a list of terms")
    if c.lengths.shape != (n_docs,) or c.indptr.shape != (len(c.vocab) + 1,):
        raise ValueError(
            f"{c.lengths.shape} lengths and {c.indptr.shape} term offsets for "
            f"{n_docs} documents and {len(c.vocab)} terms"
        )
    if c.docs.ndim != 1 or c.docs.shape != c.freqs.shape:
        raise ValueError("its posting arrays do not fit together")
    if c.indptr[0] != 0 or c.indptr[-1] != len(c.docs) or np.any(np.diff(c.indptr) <= 0):
        raise ValueError("its term offsets are out of order")
    scan = len(c.docs) <= SCAN_LIMIT
    if scan and len(c.docs) and (c.docs.min() < 0 or c.docs.max() >= n_docs or c.freqs.min() < 1):
        raise ValueError("it names documents beyond the segment")
    if c.sequences is not None:
        flat, offsets = c.sequences
        if offsets.shape != (n_docs + 1,) or offsets[0] != 0 or offsets[-1] != len(flat):
            raise ValueError("its term-sequence offsets do not fit its documents")
        if np.any(np.diff(offsets) != c.lengths):
            raise ValueError("its term sequences disagree with its document lengths")
        if len(flat) <= SCAN_LIMIT and len(flat) and (flat.min() < 0 or flat.max() >= len(c.vocab)):
            raise ValueError("its term sequences name terms beyond its vocabulary")
