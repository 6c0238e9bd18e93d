"""Deleted documents of a loaded vector index, and how its searches leave them out.

A segmented generation deletes by tombstones: the FAISS files are never changed. Searches
filter deleted passages inside FAISS (an ``IDSelectorBitmap``) where the index allows, else
search past them and drop them; ``exact`` is the fallback when an approximate index finds too
few live documents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:
    from brainrank.index.vectors import VectorIndex


class Tombstones:
    """The deleted documents of one loaded index, and how its searches leave them out."""

    def __init__(self, positions: np.ndarray, alive: np.ndarray, index: faiss.Index):
        self.positions = positions
        self.alive = alive
        self.live_rows = np.flatnonzero(alive)
        self._bits = np.packbits(alive, bitorder="little")  # the selector reads this buffer
        self._selector = None  # kept alive with the bits it reads
        base = faiss.downcast_index(index.index) if hasattr(index, "index") else index
        if hasattr(faiss, "IDSelectorBitmap") and not (on_gpu(index) or on_gpu(base)):
            self._selector = faiss.IDSelectorBitmap(len(alive), faiss.swig_ptr(self._bits))

    def search(self, vectors: VectorIndex, q: np.ndarray, depth: int):
        """FAISS search for the best ``depth`` live passages (-1 rows where there are fewer)."""
        index = vectors._index
        if self._selector is not None:
            return index.search(q, depth, params=vectors._search_params(depth, self._selector))
        # No selector (a GPU index): search past every deleted passage, then drop them.
        extra = min(depth + int((~self.alive).sum()), index.ntotal)
        raw, rows = index.search(q, extra, params=vectors._search_params(extra))
        keep = (rows >= 0) & self.alive[np.maximum(rows, 0)]
        out_s = np.full((len(q), depth), -np.inf, dtype=np.float32)
        out_r = np.full((len(q), depth), -1, dtype=np.int64)
        for i in range(len(q)):
            found = np.flatnonzero(keep[i])[:depth]
            out_s[i, : len(found)], out_r[i, : len(found)] = raw[i, found], rows[i, found]
        return out_s, out_r

    def exact(self, vectors: VectorIndex, q: np.ndarray, k: int, scores, positions):
        """Exact top-``k`` live documents by best passage, for every query row."""
        sims = np.asarray(q @ np.asarray(vectors.embeddings[self.live_rows]).T)
        docs = vectors.owner[self.live_rows]
        for i in range(len(q)):
            best = np.full(vectors.size, -np.inf, dtype=np.float32)
            np.maximum.at(best, docs, sims[i])
            top = np.argsort(-best, kind="stable")[:k]
            positions[i], scores[i] = top, best[top]
        return scores, positions


def on_gpu(index: faiss.Index) -> bool:
    return "Gpu" in type(index).__name__
