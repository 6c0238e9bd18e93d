"""Training pairs mined from a collection itself, for adapting the encoder without judgments.

Two kinds of (pseudo-query, positive) pair, one per sampled document:

- **title -> body**: the title asks for the text under it. Titles are short statements of
  what a document is about, as many queries are.
- **inverse cloze** (Lee et al., 2019): one sentence of the body is the query and the rest of
  the document (title included) the positive; the sentence is left in the positive only
  ``keep_sentence`` of the time, so the encoder learns what a sentence's context says, not
  to match its words. Text without sentence punctuation (a preprocessed corpus: lowercased,
  no punctuation) gives a span of ``span_words`` consecutive words instead of a sentence.

- **salient terms -> document**: the few words of a document that its own frequency and
  their rarity in the collection (tf-idf) single out, in the order they first occur, as a
  keyword query would name the document.

A document gives a salient-terms pair with probability ``terms_share``; otherwise one with a
usable title gives a title pair with probability ``title_share`` and an inverse-cloze pair
otherwise; one without gives an inverse-cloze pair when it has at least two sentences.
Sampling is seeded. Plain Python: no TensorFlow here.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainrank.index.records import Document

# A sentence ends at . ! or ? followed by white space and a capital letter, digit or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_WORD = re.compile(r"[^\W_][\w-]*[^\W_]", re.UNICODE)  # two characters or more
# Function words, never salient however rare a collection makes them.
_STOPWORDS = frozenset(
    "a about after all also an and any are as at be been but by can could did do does for "
    "from had has have he her his how if in into is it its may might more most no not of on "
    "or our out over she should so some such than that the their them then there these they "
    "this those through to under up was we were what when where which while who why will "
    "with would you your".split()
)


@dataclass(frozen=True)
class PairParams:
    """How many pairs and of which kinds (``mine_pairs``)."""

    max_pairs: int = 2000  # documents sampled, one pair each
    title_share: float = 0.5
    keep_sentence: float = 0.1
    min_words: int = 4  # a shorter title or sentence asks for too little to be a query
    max_words: int = 48  # a longer sentence is cut here (queries are short)
    span_words: tuple[int, int] = (8, 20)  # the span's length range, where there are no sentences
    terms_share: float = 0.0  # salient-terms pairs (their share of all pairs)
    terms_words: tuple[int, int] = (3, 6)  # how many salient words such a query has
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_pairs < 1:
            raise ValueError(f"max_pairs must be at least 1, not {self.max_pairs}")
        for name in ("title_share", "keep_sentence", "terms_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError("need 1 <= min_words <= max_words")
        for name in ("span_words", "terms_words"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 1 <= low <= high")


@dataclass(frozen=True)
class Pair:
    query: str
    positive: str
    source: int  # position of the document it came from
    kind: str  # "title", "cloze" or "terms"


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (a simple rule: end punctuation, space, capital or digit)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def mine_pairs(documents: Sequence[Document], params: PairParams = PairParams()) -> list[Pair]:
    """One pair for each of up to ``params.max_pairs`` documents drawn without replacement."""
    rng = np.random.default_rng(params.seed)
    order = rng.permutation(len(documents))
    idf = _idf(documents) if params.terms_share > 0 else {}
    pairs: list[Pair] = []
    for position in order.tolist():
        if len(pairs) == params.max_pairs:
            break
        doc = documents[position]
        pair = None
        if params.terms_share > 0 and rng.random() < params.terms_share:
            pair = _terms_pair(doc, position, params, rng, idf)
        if pair is None:
            pair = _pair(doc, position, params, rng)
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


def _tokens(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and not w.isdigit()]


def _idf(documents: Sequence[Document]) -> dict[str, float]:
    """Each word's inverse document frequency over the whole collection; words of one document
    only (codes, typos, one paper's abbreviations) are left out: no query would use them."""
    df: Counter[str] = Counter()
    for doc in documents:
        df.update(set(_tokens(doc.full_text)))
    n = len(documents)
    return {w: math.log((n + 1) / (c + 0.5)) for w, c in df.items() if c > 1}


def _terms_pair(doc: Document, position: int, params: PairParams, rng, idf) -> Pair | None:
    words = [w for w in _tokens(doc.full_text) if w in idf]
    counts = Counter(words)
    low, high = params.terms_words
    if len(counts) < 2 * low:  # too few distinct words to single the document out
        return None
    k = int(rng.integers(low, high + 1))
    # Ties broken by first occurrence, so the choice is repeatable.
    first = {w: i for i, w in reversed(list(enumerate(words)))}
    ranked = sorted(counts, key=lambda w: (-(1 + math.log(counts[w])) * idf[w], first[w]))
    chosen = sorted(ranked[:k], key=first.__getitem__)
    return Pair(" ".join(chosen), doc.full_text.strip(), position, "terms")
