"""Training pairs mined from a collection itself, for adapting the encoder without judgments.

Two kinds of (pseudo-query, positive) pair, one per sampled document:

- **title -> body**: the title asks for the text under it. Titles are short statements of
  what a document is about, as many queries are.
- **inverse cloze** (Lee et al., 2019): one sentence of the body is the query and the rest of
  the document (title included) the positive; the sentence is left in the positive only
  ``keep_sentence`` of the time, so the encoder learns what a sentence's context says, not
  to match its words. Text without sentence punctuation (a preprocessed corpus: lowercased,
  no punctuation) gives a span of ``span_words`` consecutive words instead of a sentence.

A document with a usable title gives a title pair with probability ``title_share`` and an
inverse-cloze pair otherwise; one without gives an inverse-cloze pair when it has at least two
sentences. Sampling is seeded. Plain Python: no TensorFlow here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainrank.index.records import Document

# A sentence ends at . ! or ? followed by white space and a capital letter, digit or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


@dataclass(frozen=True)
class PairParams:
    """How many pairs and of which kinds (``mine_pairs``)."""

    max_pairs: int = 2000  # documents sampled, one pair each
    title_share: float = 0.5
    keep_sentence: float = 0.1
    min_words: int = 4  # a shorter title or sentence asks for too little to be a query
    max_words: int = 48  # a longer sentence is cut here (queries are short)
    span_words: tuple[int, int] = (8, 20)  # the span's length range, where there are no sentences
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_pairs < 1:
            raise ValueError(f"max_pairs must be at least 1, not {self.max_pairs}")
        for name in ("title_share", "keep_sentence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError("need 1 <= min_words <= max_words")
        if not 1 <= self.span_words[0] <= self.span_words[1]:
            raise ValueError("span_words must be (low, high) with 1 <= low <= high")


@dataclass(frozen=True)
class Pair:
    query: str
    positive: str
    source: int  # position of the document it came from
    kind: str  # "title" or "cloze"


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (a simple rule: end punctuation, space, capital or digit)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def mine_pairs(documents: Sequence[Document], params: PairParams = PairParams()) -> list[Pair]:
    """One pair for each of up to ``params.max_pairs`` documents drawn without replacement."""
    rng = np.random.default_rng(params.seed)
    order = rng.permutation(len(documents))
    pairs: list[Pair] = []
    for position in order.tolist():
        if len(pairs) == params.max_pairs:
            break
        pair = _pair(documents[position], position, params, rng)
        if pair is not None:
            pairs.append(pair)
    return pairs


def _words(text: str) -> int:
    return len(text.split())


def _pair(doc: Document, position: int, params: PairParams, rng) -> Pair | None:
    body = sentences(doc.text)
    title_ok = bool(doc.title) and _words(doc.title) >= params.min_words and bool(body)
    if title_ok and rng.random() < params.title_share:
        return Pair(doc.title.strip(), doc.text.strip(), position, "title")
    usable = [i for i, s in enumerate(body) if _words(s) >= params.min_words]
    if len(body) >= 2 and usable:
        chosen = usable[int(rng.integers(len(usable)))]
        query = " ".join(body[chosen].split()[: params.max_words])
        keep = rng.random() < params.keep_sentence
        context = " ".join(s for i, s in enumerate(body) if keep or i != chosen)
    else:
        words = doc.text.split()
        low, high = params.span_words
        if len(words) < 3 * low:  # too short to leave a context beside the span
            return (
                Pair(doc.title.strip(), doc.text.strip(), position, "title") if title_ok else None
            )
        length = int(rng.integers(low, min(high, len(words) // 3) + 1))
        start = int(rng.integers(len(words) - length + 1))
        query = " ".join(words[start : start + length])
        keep = rng.random() < params.keep_sentence
        context = " ".join(words if keep else words[:start] + words[start + length :])
    positive = f"{doc.title}\n{context}" if doc.title else context
    return Pair(query, positive, position, "cloze")
