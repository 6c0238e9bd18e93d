"""What a search returns. Standard library only, so importing it is free.

A result carries everything that was computed for it: the hits and their documents, and in the
learned mode the feature rows the model scored and the query vector. The query log, the drift
reference, the debugger and the tests read them here; nothing intercepts the search path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from brainrank.index.records import Document, Hit

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Snippet:
    """The stretch of a hit's text that matched its query (``retrieval.snippets``)."""

    text: str
    highlights: tuple[tuple[int, int], ...]  # [start, end) of each matched word in ``text``

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "highlights": [list(span) for span in self.highlights]}


@dataclass
class SearchResult:
    """The top hits for one query, with the signals and features behind each score.

    ``features`` holds one float32 row per hit (in hit order) with ``feature_names`` as
    columns; both are None outside the learned mode. ``query_vector`` is the query's embedding
    by the encoder with fingerprint ``encoder`` (None in the BM25 mode). ``impression_id`` is
    set once the search is written to the query log, for feedback on it.
    """

    query: str
    mode: str
    hits: list[Hit]
    documents: dict[str, Document] = field(default_factory=dict)
    latency_ms: float = 0.0
    candidates: int = 0
    model: str | None = None  # the registry version that ranked (learned mode)
    in_domain: bool | None = None  # learned mode: False when the gates sent it to the fusion
    features: np.ndarray | None = None
    feature_names: tuple[str, ...] | None = None
    query_vector: np.ndarray | None = None
    encoder: str | None = None
    impression_id: str | None = None
    snippets: dict[str, Snippet] | None = None  # by doc id, when the search asked for them
    filters: tuple[str, ...] = ()  # the conditions every hit met (``retrieval.filters``)
    offset: int = 0  # hits skipped before the first one here (its rank is offset + 1)
    # Tag name -> value -> documents ranked with it, when the search asked (``count_tags``).
    facets: dict[str, dict[str, int]] | None = None

    def top(self, k: int) -> SearchResult:
        """The same result cut to its first ``k`` hits (feature rows cut alike)."""
        rows = self.features[:k] if self.features is not None else None
        return replace(self, hits=self.hits[:k], features=rows)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form shared by ``search --json``, the HTTP service and the Python API."""
        return {
            "query": self.query,
            "mode": self.mode,
            "model": self.model,
            "took_ms": round(self.latency_ms, 3),
            "impression_id": self.impression_id,
            **({"filters": list(self.filters)} if self.filters else {}),
            **({"offset": self.offset} if self.offset else {}),
            **({"facets": self.facets} if self.facets is not None else {}),
            "hits": [self._hit_dict(h) for h in self.hits],
        }

    def _hit_dict(self, h: Hit) -> dict[str, Any]:
        d = self.documents.get(h.doc_id)
        out = {
            "rank": h.rank,
            "id": h.doc_id,
            "title": d.title if d else None,
            "score": h.score,
            "signals": h.signals,
        }
        if self.snippets is not None:
            found = self.snippets.get(h.doc_id)
            out["snippet"] = found.to_dict() if found is not None else None
        return out
