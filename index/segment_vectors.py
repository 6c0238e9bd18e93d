"""The vector indexes of a segmented generation, searched as one index over its live documents.

Each segment has its own FAISS index (``index.vectors``; a small segment's is exact). Deleted
documents are left out inside each segment's search (``VectorIndex.delete``), so every
segment returns its own best ``k`` live documents and the merge by score is the best ``k`` of
the generation. Positions are the generation's (``index.livemap``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainrank.index.errors import IndexMismatchError
from brainrank.index.livemap import LiveMap
from brainrank.index.vectors import VectorIndex


class SegmentedVectors:
    def __init__(self, parts: Sequence[VectorIndex], live: LiveMap):
        if len({(p.encoder.fingerprint, p.encoder.dim) for p in parts}) > 1:
            raise IndexMismatchError(
                "the segments of this generation hold vectors of different encoders; "
                "run `brainrank reindex` to re-embed the collection with one"
            )
        self._parts = list(parts)
        self._live = live
        for s, part in enumerate(self._parts):
            if live.to_global[s] is not None:
                part.delete(np.flatnonzero(live.to_global[s] < 0))
        main = self._parts[0]
        self.encoder, self.params = main.encoder, main.params
        self.kind, self.quantizer, self.recall = main.kind, main.quantizer, main.recall
        self.effort = main.effort
        counts = live.gather([p.passage_counts() for p in self._parts])
        self._ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._embeddings: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Number of live documents."""
        return len(self._live)

    def check_encoder(self, fingerprint: str | None) -> None:
        self._parts[0].check_encoder(fingerprint)

    def passage_counts(self) -> np.ndarray:
        return np.diff(self._ptr)

    def rows(self, position: int) -> slice:
        """The rows of the document at ``position`` in ``embeddings``."""
        return slice(int(self._ptr[position]), int(self._ptr[position + 1]))

    @property
    def embeddings(self) -> np.ndarray:
        """Every live passage vector in position order: a copy, made on first use (tests and
        tools; searches read the segments' own mapped arrays)."""
        if self._embeddings is None:
            blocks = []
            for s, part in enumerate(self._parts):
                live = self._live.live[s]
                if live is None:
                    blocks.append(np.asarray(part.embeddings))
                else:
                    keep = np.isin(part.owner, live)
                    blocks.append(np.asarray(part.embeddings[keep]))
            self._embeddings = np.vstack(blocks)
        return self._embeddings

    def passage_vectors(self, position: int) -> np.ndarray:
        segment, local = self._live.locate(np.array([position]))
        return self._parts[int(segment[0])].passage_vectors(int(local[0]))

    def similarity(self, query: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Exact cosine of one query vector with each document's best passage."""
        positions = np.asarray(positions, dtype=np.int64)
        out = np.zeros(len(positions), dtype=np.float32)
        if len(positions) == 0:
            return out
        segment, local = self._live.locate(positions)
        for s in np.unique(segment):
            at = segment == s
            out[at] = self._parts[s].similarity(query, local[at])
        return out

    def search(
        self, queries: np.ndarray, k: int, *, encoder_fingerprint: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` live documents per query row as (best-passage scores, positions), the
        best of each segment's own top ``k``; padded with -inf / -1 like ``VectorIndex``."""
        self.check_encoder(encoder_fingerprint)
        k = min(k, self.size)
        found_s, found_p = [], []
        for s, part in enumerate(self._parts):
            scores, local = part.search(queries, k, encoder_fingerprint=encoder_fingerprint)
            where = np.where(local >= 0, self._live.globals_of(s, np.maximum(local, 0)), -1)
            found_s.append(scores)
            found_p.append(where)
        scores, positions = np.hstack(found_s), np.hstack(found_p)
        # Best score first; among equal scores the lower position, as one index would order.
        order = np.lexsort((np.where(positions < 0, np.iinfo(np.int64).max, positions), -scores))
        order = order[:, :k]
        rows = np.arange(len(scores))[:, None]
        return scores[rows, order], positions[rows, order]
