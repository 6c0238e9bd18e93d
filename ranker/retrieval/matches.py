"""What matched a query in one document: BM25's terms and the dense retriever's passage.

The term table reads the index's own numbers: each query term's addend is what the index adds
to the document's score for it (bm25s's score-matrix entry, or for a segmented generation the
same entry computed from raw counts and collection-wide statistics), its idf comes from
bm25s's idf function for the index's method, and its frequency from the document's stored
term sequence. So the table's contributions sum to the document's BM25 score as the index
computes it, whatever the BM25 variant. Matched terms are stems; ``highlight`` finds the words
of a text that stem to them.

A document's dense score is the cosine of its best passage (MaxP, ``index.vectors``). The index
keeps passage vectors, not texts, so ``best_passage`` splits the document again with the
settings its generation was built with and checks the split gives as many passages as vectors.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from brainrank.index.errors import BrainrankError, InputError
from brainrank.index.records import Document

# bm25s.tokenize's default token_pattern: the words BM25 sees (before stopwords and stemming).
WORD = re.compile(r"(?u)\b\w\w+\b")


@dataclass(frozen=True)
class TermRow:
    """One distinct query term (as indexed: lowercased, stemmed) in one document."""

    term: str
    query_count: int  # times the query holds it; bm25s adds its column that many times
    tf: int | None  # occurrences in the document (None when the index keeps no sequences)
    df: int  # documents holding it
    idf: float
    contribution: float  # query_count x the term's score-matrix entry for the document


@dataclass(frozen=True)
class TermTable:
    """Per-term BM25 of one document; ``sum(contribution) == score`` (float32 sums)."""

    doc_id: str
    score: float  # the document's BM25 score as the index computes it
    rows: tuple[TermRow, ...]
    unknown: tuple[str, ...]  # query terms the index has never seen (they add nothing)

    @property
    def matched(self) -> frozenset[str]:
        """Query terms that occur in the document."""
        return frozenset(r.term for r in self.rows if r.contribution > 0 or (r.tf or 0) > 0)

    @property
    def total(self) -> float:
        return float(sum(r.contribution for r in self.rows))


def term_table(bm25, query: str, position: int, doc_id: str = "") -> TermTable:
    """The BM25 term table of the document at ``position`` for ``query`` (``bm25``: the
    generation's keyword index, ``BM25Index`` or ``KeywordIndex``)."""
    terms = bm25.tokenize(query)
    known = [t for t in terms if bm25.vocab_id(t) is not None]
    unknown = tuple(dict.fromkeys(t for t in terms if bm25.vocab_id(t) is None))
    ids = bm25.term_ids(query)
    score = float(bm25.scores_for_terms(ids)[position]) if ids else 0.0
    if not known:
        return TermTable(doc_id, score, (), unknown)
    counts = Counter(known)
    distinct = list(counts)
    distinct_ids = [bm25.vocab_id(t) for t in distinct]
    weights = bm25.term_weights(distinct_ids, position)
    try:
        sequence = bm25.sequences([position])[0]
        in_doc = Counter(sequence.tolist())
        tfs = [in_doc.get(i, 0) for i in distinct_ids]
    except BrainrankError:  # an index without sequences (the title and body field indexes)
        tfs = [None] * len(distinct)
    rows = tuple(
        TermRow(
            term=t,
            query_count=counts[t],
            tf=tf,
            df=int(df),
            idf=float(idf),
            contribution=float(counts[t] * weights[j]),
        )
        for j, (t, tf, df, idf) in enumerate(
            zip(
                distinct,
                tfs,
                bm25.document_frequency(distinct_ids),
                bm25.scoring_idf(distinct_ids),
                strict=True,
            )
        )
    )
    return TermTable(doc_id, score, rows, unknown)


def highlight(bm25, text: str, terms) -> list[tuple[str, str | None]]:
    """``text`` cut into pieces, each with the query term it stems to (None: not a match).

    Words are found as bm25s finds them and stemmed by ``bm25.stem``; joining the pieces gives
    ``text`` back.
    """
    terms = frozenset(terms)
    spans = [(m.start(), m.end()) for m in WORD.finditer(text)]
    stems = bm25.stem([text[a:b] for a, b in spans]) if spans else []
    pieces: list[tuple[str, str | None]] = []
    at = 0
    for (a, b), stem in zip(spans, stems, strict=True):
        if stem not in terms:
            continue
        if a > at:
            pieces.append((text[at:a], None))
        pieces.append((text[a:b], stem))
        at = b
    if at < len(text):
        pieces.append((text[at:], None))
    return pieces


# ----- dense: the passage that matched -----------------------------------------------------


@dataclass(frozen=True)
class PassageMatch:
    """The passage behind a document's dense score (its best passage's cosine)."""

    doc_id: str
    index: int  # 0-based, in the document's passage order
    n_passages: int
    similarity: float  # cosine of the query with this passage: the document's dense signal
    similarities: tuple[float, ...]  # every passage's cosine, in passage order
    text: str | None  # None when the passages cannot be rebuilt (``note`` says why)
    note: str = ""


def best_passage(
    vectors, query_vector: np.ndarray, position: int, passages: list[str] | None, doc_id: str = ""
) -> PassageMatch:
    """The best passage of the document at ``position`` (``vectors``: the generation's).

    ``passages`` are the document's passage texts as indexing split them; when their number
    differs from the stored vectors (the index was built with other settings) the passage is
    named by number only.
    """
    passages_of = np.asarray(vectors.passage_vectors(position), dtype=np.float32)
    sims = passages_of @ np.asarray(query_vector, dtype=np.float32).reshape(-1)
    if len(sims) == 0:
        raise InputError(f"the document at position {position} has no passage vectors")
    best = int(np.argmax(sims))
    text, note = None, ""
    if passages is None:
        note = "the passage texts are not available (no tokenizer to split the document)"
    elif len(passages) != len(sims):
        note = (
            f"the document splits into {len(passages)} passages now but the index holds "
            f"{len(sims)} vectors for it; run `brainrank reindex`"
        )
    else:
        text = passages[best]
    return PassageMatch(
        doc_id, best, len(sims), float(sims[best]), tuple(map(float, sims)), text, note
    )


def document_passages(engine, document: Document) -> list[str] | None:
    """``document``'s passage texts, split as the serving generation's index was built."""
    from brainrank.ranker.retrieval.passages import PassageSplitter

    position = engine.generation.doc_ids.index(document.doc_id)
    count = len(engine.generation.vectors.passage_vectors(position))
    tokenizer = getattr(engine.encoder, "tokenizer", None)  # two-tower encoders have none
    if count == 1:
        passages = [document.full_text]  # the first passage is always the whole text
    elif tokenizer is None:
        return None
    else:
        settings = engine.generation.manifest.get("passages") or {}
        e = engine.cfg.encoder
        splitter = PassageSplitter(
            tokenizer,
            int(settings.get("max_length", e.max_length)),
            overlap=int(settings.get("overlap", e.passage_overlap)),
            max_passages=int(settings.get("max_passages", e.max_passages)),
        )
        passages = splitter.split([document])[0]
    if tokenizer is not None:
        passages[0] = _window(tokenizer, passages[0])
    return passages


def _window(tokenizer, text: str) -> str:
    """The start of ``text`` the encoder reads (its tokenizer truncates at its window)."""
    ends = [end for _, end in tokenizer.encode(text).offsets]
    return text[: max(ends)] if ends and max(ends) > 0 else text


def matched_passage(engine, query_vector: np.ndarray, doc_id: str) -> PassageMatch:
    """The passage of ``doc_id`` that gave its dense score for ``query_vector``."""
    gen = engine.generation
    try:
        position = gen.doc_ids.index(doc_id)
    except ValueError:
        raise InputError(f"{doc_id!r} is not a document of the serving index") from None
    docs = engine.store.get([doc_id])
    passages = document_passages(engine, docs[doc_id]) if doc_id in docs else None
    return best_passage(gen.vectors, query_vector, position, passages, doc_id)


def matched_terms(engine, query: str, doc_id: str) -> TermTable:
    """The BM25 term table of ``doc_id`` for ``query`` in the serving index."""
    gen = engine.generation
    try:
        position = gen.doc_ids.index(doc_id)
    except ValueError:
        raise InputError(f"{doc_id!r} is not a document of the serving index") from None
    return term_table(gen.bm25, engine.validate_query(query), position, doc_id)
