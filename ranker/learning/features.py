"""Features of (query, candidate) pairs for the learned ranker, and their schema.

Every feature is per-query normalised or scale-free (cosines, fractions, log ratios), never a
raw BM25 score whose scale depends on the collection and query length: a model trained on one
collection has to make sense on another. ``fused`` is the min-max fusion the ranker learns a
correction on top of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from brainrank.index.errors import IndexMismatchError
from brainrank.ranker.learning.memory import QueryMemory
from brainrank.ranker.retrieval.candidates import Candidates, Generation
from brainrank.ranker.retrieval.fusion import minmax, minmax_normalise, rrf

# 2: judged_doc; 3: judged_similar; 4: a document the click log never showed takes its list
# peers' click popularity (click_columns)
SCHEMA_VERSION = 4
UNSEEN_AS_PEERS = 4  # the first schema version whose click features do
BASE_FEATURES = (
    "fused",  # min-max fusion of BM25 and dense, the base ranking
    "rrf",  # reciprocal rank fusion, scaled so rank 1 in both lists = 1
    "bm25_norm",
    "bm25_z",
    "bm25_rrank",  # 1 / rank in the keyword list, 0 when absent
    "bm25_title_norm",
    "bm25_body_norm",
    "dense",  # best-passage cosine
    "dense_norm",
    "dense_z",
    "dense_rrank",
    "dense_gap",  # cosine minus the list's best cosine
    "coverage",  # share of query terms in the document
    "coverage_idf",  # the same, idf-weighted
    "title_coverage",
    "phrase",  # share of adjacent query term pairs found adjacent in the document
    "doc_length",  # log1p of indexed terms
    "age",  # log1p of days older than the list's newest document
    "has_timestamp",
    "query_terms",  # log1p of query terms (the same for a whole list)
    "click_doc",  # log of the document's debiased click-through ratio
    "click_query_doc",  # log of the (query, document) debiased click-through ratio
    "click_evidence",  # log1p of the pair's effective examinations
    "judged_doc",  # log1p of the labels the document earned in training lists (prior)
    "judged_similar",  # log1p of the labels the most similar judged queries gave it (memory)
)

# Computed from the model's own training labels (ranker.learning.train): out of fold in training.
JUDGED_FEATURES = ("judged_doc", "judged_similar")


@dataclass(frozen=True)
class FeatureSchema:
    """Names and order of the features; saved with every model and checked on load."""

    names: tuple[str, ...]
    version: int = SCHEMA_VERSION
    dense_weight: float = 0.6
    rrf_k: int = 60
    doc_fields: tuple[str, ...] = ()

    @classmethod
    def create(
        cls, *, dense_weight: float, rrf_k: int, doc_fields=(), version: int = SCHEMA_VERSION
    ) -> FeatureSchema:
        """The schema a new model trains with (``version``: an earlier one's feature
        semantics, for comparing recipes)."""
        extra = []
        for name in doc_fields:
            extra += [f"field:{name}", f"field:{name}:missing"]
        return cls(
            tuple(BASE_FEATURES) + tuple(extra),
            version,
            dense_weight,
            rrf_k,
            tuple(doc_fields),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSchema:
        return cls(
            names=tuple(data["names"]),
            version=int(data["version"]),
            dense_weight=float(data["dense_weight"]),
            rrf_k=int(data["rrf_k"]),
            doc_fields=tuple(data.get("doc_fields", ())),
        )

    def check(self, other: FeatureSchema) -> None:
        """Raise unless ``other`` produces exactly the features this schema expects."""
        if other.names != self.names or other.version != self.version:
            missing = [n for n in self.names if n not in other.names]
            extra = [n for n in other.names if n not in self.names]
            raise IndexMismatchError(
                f"feature schema mismatch: the model expects schema v{self.version} with "
                f"{len(self.names)} features, the extractor produces v{other.version} with "
                f"{len(other.names)} (missing: {missing or 'none'}; unexpected: {extra or 'none'})"
            )

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass
class FeatureExtractor:
    """Computes the feature matrix of one query's candidates from a loaded generation."""

    generation: Generation
    schema: FeatureSchema
    clicks: object | None = None  # ranker.feedback.click_stats.ClickStats
    # Judgment prior: document content hash -> summed labels the document earned in training
    # queries' candidate lists (ranker.learning.train). Keyed by content, so a model imported into
    # another collection, or a document rewritten since, gets no prior rather than a wrong one.
    doc_prior: Mapping[str, float] | None = None
    # Query memory (ranker.learning.memory): judged training queries' vectors and list labels.
    memory: QueryMemory | None = None
    _idf_cache: dict = field(default_factory=dict)

    def extract(self, query: str, cand: Candidates) -> np.ndarray:
        """float32 [n_candidates, n_features] in schema order."""
        g, s = self.generation, self.schema
        n = len(cand.positions)
        cols: dict[str, np.ndarray] = {}
        w = s.dense_weight
        cols["fused"] = minmax([cand.bm25, cand.dense], [1 - w, w])
        cols["rrf"] = rrf(cand.bm25_rank, cand.dense_rank, k=s.rrf_k) * (s.rrf_k + 1) / 2
        cols["bm25_norm"] = minmax_normalise(cand.bm25)
        cols["bm25_z"] = _z(cand.bm25)
        cols["bm25_rrank"] = _recip(cand.bm25_rank)
        title, cols["title_coverage"] = self._title_features(query, cand.positions, n)
        cols["bm25_title_norm"] = minmax_normalise(title)
        body_terms = g.bm25_body.term_ids(query)
        cols["bm25_body_norm"] = minmax_normalise(g.bm25_body.scores_at(body_terms, cand.positions))
        dense = cand.dense.astype(np.float64)
        cols["dense"] = dense
        cols["dense_norm"] = minmax_normalise(dense)
        cols["dense_z"] = _z(dense)
        cols["dense_rrank"] = _recip(cand.dense_rank)
        cols["dense_gap"] = dense - dense.max() if n else dense
        terms = g.bm25.term_ids(query)
        unique_terms = list(dict.fromkeys(terms))
        seqs = g.bm25.sequences(cand.positions)
        cols["coverage"], cols["coverage_idf"], cols["phrase"] = self._term_features(
            unique_terms, terms, seqs, n
        )
        cols["doc_length"] = np.log1p(np.array([len(x) for x in seqs], dtype=np.float64))
        ts = _meta(g, "timestamp", cand.positions)
        has_ts = ~np.isnan(ts)
        newest = np.nanmax(ts) if has_ts.any() else 0.0
        cols["age"] = np.where(has_ts, np.log1p(np.maximum(newest - ts, 0) / 86400.0), 0.0)
        cols["has_timestamp"] = has_ts.astype(np.float64)
        cols["query_terms"] = np.full(n, np.log1p(len(unique_terms)))
        cols.update(self._click_features(query, cand.positions, n))
        cols["judged_doc"] = self._judged(cand.positions, n)
        cols["judged_similar"] = (
            self.memory.feature(cand.query_vector, [g.content_hashes[p] for p in cand.positions])
            if self.memory is not None
            else np.zeros(n)
        )
        for name in s.doc_fields:
            values = _meta(g, f"field:{name}", cand.positions)
            missing = np.isnan(values)
            present = np.where(missing, np.nanmin(values) if (~missing).any() else 0.0, values)
            cols[f"field:{name}"] = minmax_normalise(present)
            cols[f"field:{name}:missing"] = missing.astype(np.float64)
        unknown = [name for name in s.names if name not in cols]
        if unknown:
            raise IndexMismatchError(
                f"the model expects features this version of brainrank does not compute: "
                f"{', '.join(unknown)} (feature schema v{s.version}, this version writes "
                f"v{SCHEMA_VERSION}); train a new model or use the brainrank that trained it"
            )
        out = (
            np.stack([cols[name] for name in s.names], axis=1) if n else np.zeros((0, len(s.names)))
        )
        return np.nan_to_num(out.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)

    def _term_features(self, unique_terms, terms, seqs, n):
        if not unique_terms:
            zeros = np.zeros(n)
            return zeros, zeros, zeros
        idf = self.generation.bm25.idf(unique_terms)
        q = np.asarray(unique_terms, dtype=np.int64)
        m = len(q)
        # One pass over all candidates' terms: slot[t] = which query term the t-th term of the
        # concatenated candidates is (-1: none), by a lookup table over the term ids in play.
        lengths = np.fromiter((len(x) for x in seqs), dtype=np.int64, count=n)
        flat = np.concatenate(seqs).astype(np.int64) if n else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(n), lengths)
        table = np.full(int(max(flat.max(initial=0), q.max())) + 1, -1, dtype=np.int64)
        table[q] = np.arange(m)
        slot = table[flat]
        hit = slot >= 0
        present = np.zeros((n, m), dtype=bool)
        present[owner[hit], slot[hit]] = True
        coverage = present.mean(axis=1) if n else np.zeros(0)
        coverage_idf = present @ idf / idf.sum() if idf.sum() > 0 else coverage
        pairs = [(a, b) for a, b in zip(terms, terms[1:], strict=False) if a != b]
        if not pairs:
            return coverage, coverage_idf, np.zeros(n)
        # The query's bigrams as codes over term slots (left * m + right); which[j] = the
        # distinct bigram of the j-th (repeats counted). found[doc, d] = bigram d occurs in doc:
        # adjacent terms of one document, both query terms, whose code is a wanted bigram.
        wanted = np.array([table[a] * m + table[b] for a, b in pairs], dtype=np.int64)
        distinct, which = np.unique(wanted, return_inverse=True)
        bigram = np.full(m * m, -1, dtype=np.int64)
        bigram[distinct] = np.arange(len(distinct))
        found = np.zeros((n, len(distinct)), dtype=bool)
        left, right = slot[:-1], slot[1:]
        inside = (left >= 0) & (right >= 0) & (owner[:-1] == owner[1:])
        d = bigram[left[inside] * m + right[inside]]
        keep = d >= 0
        found[owner[:-1][inside][keep], d[keep]] = True
        # Share of the query's bigrams (repeats counted) found in each document.
        phrase = found[:, which].mean(axis=1)
        return coverage, coverage_idf, phrase

    def _title_features(self, query: str, positions, n) -> tuple[np.ndarray, np.ndarray]:
        """The title's BM25 score of each candidate, and the share of the query's distinct
        terms (as the body index tokenizes it) found in the title, from one lookup of each
        title term's postings."""
        title = self.generation.bm25_title
        terms = title.term_ids(query)
        per_term = {t: title.scores_at([t], positions) for t in dict.fromkeys(terms)}
        # Summed in query order, repeats again, as the title index's own scores are.
        score = np.zeros(n, dtype=np.float32)
        for t in terms:
            score += per_term[t]
        unique = list(dict.fromkeys(self.generation.bm25.tokenize(query)))
        if not unique or n == 0:
            return score, np.zeros(n)
        hits = np.zeros(n)
        for term in unique:
            tid = title.vocab_id(term)
            if tid is not None:
                found = per_term.get(tid)
                hits += (found if found is not None else title.scores_at([tid], positions)) > 0
        return score, hits / len(unique)

    def _judged(self, positions, n):
        if not self.doc_prior or n == 0:
            return np.zeros(n)
        hashes = self.generation.content_hashes
        return np.log1p([self.doc_prior.get(hashes[p], 0.0) for p in positions])

    def _click_features(self, query, positions, n):
        if self.clicks is None or n == 0:
            zeros = np.zeros(n)
            return {"click_doc": zeros, "click_query_doc": zeros, "click_evidence": zeros}
        ids = [self.generation.doc_ids[p] for p in positions]
        return click_columns(self.clicks, query, ids, peers=self.schema.version >= UNSEEN_AS_PEERS)


def click_columns(clicks, query: str, doc_ids, *, peers: bool = True) -> dict[str, np.ndarray]:
    """The click features of ``query``'s candidates ``doc_ids`` from ``clicks`` (a ClickStats).

    With ``peers``, a document the log never showed gets the mean popularity of the
    candidates it did show, rather than the neutral 1.0 COEC: having never been shown is not
    evidence about a document (new documents, answers to new queries), and a ranker that can
    tell it apart learns whatever the log's exposure happened to favour.
    """
    ctr = np.array([clicks.doc_ctr(d) for d in doc_ids], dtype=np.float64)
    doc = np.log(np.maximum(ctr, 1e-3))
    if peers and len(doc_ids):
        seen = np.array([clicks.doc_expected(d) > 0 for d in doc_ids])
        doc[~seen] = doc[seen].mean() if seen.any() else 0.0
        ctr[~seen] = np.exp(doc[~seen])
    pair = np.array(
        [clicks.query_doc_ctr(query, d, prior) for d, prior in zip(doc_ids, ctr, strict=True)]
    )
    weight = np.array([clicks.query_doc_relevance(query, d)[1] for d in doc_ids])
    return {
        "click_doc": doc,
        "click_query_doc": np.log(np.maximum(pair, 1e-3)),
        "click_evidence": np.log1p(weight),
    }


def _meta(generation: Generation, name: str, positions: np.ndarray) -> np.ndarray:
    """A document field's values at ``positions`` (NaN where the generation has none)."""
    values = generation.doc_meta.get(name)
    if values is None:
        return np.full(len(positions), np.nan)
    return values[positions]


def _z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std() if len(x) else 0.0
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def _recip(ranks: np.ndarray) -> np.ndarray:
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r > 0, 1.0 / np.maximum(r, 1), 0.0)


def check_extractor(generation: Generation, schema: FeatureSchema) -> None:
    """Fail early when a generation cannot produce a schema's features (e.g. an old index)."""
    if generation.bm25_title is None or not generation.doc_meta:
        raise IndexMismatchError(
            "this index generation lacks the field indexes the learned ranker needs; "
            "run `brainrank reindex`"
        )
