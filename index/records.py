"""Record types shared by every layer. Standard library only, so importing them is free."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Document:
    """One document of a collection.

    ``timestamp`` is timezone-aware UTC when known (freshness features use it); ``fields`` holds
    any extra numeric attributes (price, rating, ...) a collection declares, ``tags`` its short
    string attributes (category, brand, ...), which searches can filter on.
    """

    doc_id: str
    title: str
    text: str
    timestamp: datetime | None = None
    fields: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def full_text(self) -> str:
        """Title and body as one string, the unit both indexes see."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True, slots=True)
class Hit:
    """One ranked result: a document id, its final score and the signals behind that score."""

    doc_id: str
    rank: int
    score: float
    signals: dict[str, float] = field(default_factory=dict)
