"""Click statistics for ranking features and training labels, and merging labels with judgments.

``click_stats`` fits the position-based model of ``click_model`` to a log once (stage 2 there:
debiased relevance per (query, document) pair) and adds clicks-over-expected-clicks (COEC)
rates; ``merge_labels`` combines its labels with human judgments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from brainrank.index.errors import InputError
from brainrank.ranker.feedback.click_model import fit_propensities, observe
from brainrank.ranker.feedback.clicklog import Impression
from brainrank.ranker.feedback.fields import normalise_query

DEFAULT_PRIOR_STRENGTH = 2.0


@dataclass
class ClickStats:
    """Position-debiased click statistics of one log, for ranking features and training labels.

    Build with ``click_stats``. Queries passed to the methods are normalised here, so raw query
    text works. ``relevance_prior`` is the prior mean of the debiased relevance (the average
    relevance of an examined result) and ``prior_strength`` its weight in pseudo-examinations.
    """

    propensities: np.ndarray
    queries: set[str]
    relevance_prior: float
    prior_strength: float
    _query_code: dict[str, int] = field(repr=False)
    _doc_code: dict[str, int] = field(repr=False)
    _query_names: np.ndarray = field(repr=False)  # per query code
    _doc_names: np.ndarray = field(repr=False)  # per doc code
    _ndocs: int = field(repr=False)
    _pair_key: np.ndarray = field(repr=False)  # sorted query_code * _ndocs + doc_code
    _gamma: np.ndarray = field(repr=False)  # per pair, aligned with _pair_key
    _weight: np.ndarray = field(repr=False)
    _pair_clicks: np.ndarray = field(repr=False)
    _pair_expected: np.ndarray = field(repr=False)
    _doc_ctr: np.ndarray = field(repr=False)  # per doc code
    _doc_expected: np.ndarray = field(repr=False)  # per doc code
    _ctr_prior: float = field(repr=False)  # pseudo expected clicks in every COEC

    def _pair(self, query: str, doc_id: str) -> int | None:
        q = self._query_code.get(normalise_query(query))
        d = self._doc_code.get(doc_id)
        if q is None or d is None:
            return None
        key = q * self._ndocs + d
        i = int(np.searchsorted(self._pair_key, key))
        return i if i < len(self._pair_key) and self._pair_key[i] == key else None

    def query_doc_relevance(self, query: str, doc_id: str) -> tuple[float, float]:
        """(debiased relevance in [0, 1], evidence weight) of a pair.

        Relevance is the PBM's P(click | examined), shrunk towards ``relevance_prior``; the
        weight is the effective number of examinations (the sum of the propensities of the
        positions where the pair was shown). Unseen pairs get ``(relevance_prior, 0.0)``.
        """
        i = self._pair(query, doc_id)
        if i is None:
            return self.relevance_prior, 0.0
        return float(self._gamma[i]), float(self._weight[i])

    def doc_ctr(self, doc_id: str) -> float:
        """Clicks over expected clicks (COEC) of a document over all queries, shrunk to 1.0.

        Expected clicks add up the log's average click rate of each position the document was
        shown at, so 1.0 means "clicked as often as an average result in the same slots".
        Unseen documents get 1.0.
        """
        d = self._doc_code.get(doc_id)
        return 1.0 if d is None else float(self._doc_ctr[d])

    def doc_expected(self, doc_id: str) -> float:
        """The document's expected clicks in the log (0.0: never shown, or shown only where
        nobody ever clicks)."""
        d = self._doc_code.get(doc_id)
        return 0.0 if d is None else float(self._doc_expected[d])

    def query_doc_ctr(self, query: str, doc_id: str, prior: float | None = None) -> float:
        """COEC of a (query, document) pair, shrunk towards ``prior`` (default: the
        document's ``doc_ctr``)."""
        if prior is None:
            prior = self.doc_ctr(doc_id)
        i = self._pair(query, doc_id)
        if i is None:
            return prior
        a = self._ctr_prior
        denominator = self._pair_expected[i] + a
        if denominator <= 0:  # shown only where nothing is ever clicked, and no prior
            return prior
        return float((self._pair_clicks[i] + a * prior) / denominator)

    def labels(self, *, min_weight: float = 1.0) -> dict[str, dict[str, float]]:
        """Normalised query -> {doc_id: label in [0, 3]} for pairs with evidence >= min_weight.

        The label is ``3 * relevance``: linear in the debiased click relevance, so 3 would be
        a document every user who examines it clicks and 0 one nobody clicks. It is graded
        (real-valued), not rounded, so nDCG gains keep the estimate's resolution.
        """
        out: dict[str, dict[str, float]] = {}
        keep = np.flatnonzero(self._weight >= min_weight)
        queries = self._query_names[self._pair_key[keep] // self._ndocs].tolist()
        docs = self._doc_names[self._pair_key[keep] % self._ndocs].tolist()
        for q, d, g in zip(queries, docs, (3.0 * self._gamma[keep]).tolist(), strict=True):
            out.setdefault(q, {})[d] = g
        return out


def click_stats(
    impressions: Iterable[Impression],
    *,
    max_position: int = 10,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
    iterations: int = 50,
    monotone: bool = True,
) -> ClickStats:
    """Fit the PBM to a log once and keep what features and labels need.

    ``prior_strength`` counts pseudo-observations: examinations at the log's mean relevance
    for the debiased relevance, and impressions at the log's mean click rate for the COEC
    features. ``iterations`` and ``monotone`` are passed to the propensity fit.
    """
    if not prior_strength >= 0:
        raise ValueError(f"prior_strength must be >= 0, got {prior_strength!r}")
    cells = observe(impressions, max_position)
    theta = fit_propensities(cells, max_position, iterations, monotone)
    npairs, ndocs = len(cells.pair_doc), len(cells.docs)
    clicks = np.bincount(cells.pair, weights=cells.c, minlength=npairs)
    examinations = np.bincount(cells.pair, weights=cells.n * theta[cells.pos], minlength=npairs)
    mean = float(min(clicks.sum() / examinations.sum(), 1.0)) if npairs else 0.0
    gamma = np.minimum((clicks + prior_strength * mean) / (examinations + prior_strength), 1.0)

    # COEC: expected clicks from the log's click rate per position, whatever the document.
    slot_clicks = np.bincount(cells.pos, weights=cells.c, minlength=max_position)
    slot_shown = np.bincount(cells.pos, weights=cells.n, minlength=max_position)
    slot_ctr = slot_clicks / np.maximum(slot_shown, 1.0)
    expected = np.bincount(cells.pair, weights=cells.n * slot_ctr[cells.pos], minlength=npairs)
    ctr_prior = prior_strength * slot_clicks.sum() / max(slot_shown.sum(), 1.0)
    doc_clicks = np.bincount(cells.pair_doc, weights=clicks, minlength=ndocs)
    doc_expected = np.bincount(cells.pair_doc, weights=expected, minlength=ndocs)
    denominator = doc_expected + ctr_prior
    doc_ctr = np.ones(ndocs)
    np.divide(doc_clicks + ctr_prior, denominator, out=doc_ctr, where=denominator > 0)

    key = cells.pair_query * max(ndocs, 1) + cells.pair_doc
    order = np.argsort(key)
    queries = cells.queries.tolist()
    return ClickStats(
        propensities=theta,
        queries=set(queries),
        relevance_prior=mean,
        prior_strength=float(prior_strength),
        _query_code=dict(zip(queries, range(len(queries)), strict=True)),
        _doc_code=dict(zip(cells.docs.tolist(), range(ndocs), strict=True)),
        _query_names=cells.queries,
        _doc_names=cells.docs,
        _ndocs=max(ndocs, 1),
        _pair_key=key[order],
        _gamma=gamma[order],
        _weight=examinations[order],
        _pair_clicks=clicks[order],
        _pair_expected=expected[order],
        _doc_ctr=doc_ctr,
        _doc_expected=doc_expected,
        _ctr_prior=float(ctr_prior),
    )


# ---------------------------------------------------------------------------------------------
# Combining click labels with human judgments


def key_by_query_text(
    judgments: Mapping[str, Mapping[str, int]], queries: Mapping[str, str]
) -> dict[str, dict[str, int]]:
    """Re-key judgments from query id to ``normalise_query(text)``, to meet click labels.

    Judged query ids missing from ``queries`` are dropped. Two ids whose texts normalise alike
    are merged; a document they grade differently raises ``InputError``.
    """
    out: dict[str, dict[str, int]] = {}
    source: dict[str, str] = {}
    for qid, grades in judgments.items():
        if qid not in queries:
            continue
        key = normalise_query(queries[qid])
        merged = out.setdefault(key, {})
        for doc, grade in grades.items():
            if doc in merged and merged[doc] != grade:
                raise InputError(
                    f"queries {source[key]!r} and {qid!r} have the same text {key!r} but grade "
                    f"{doc!r} differently ({merged[doc]} vs {grade})"
                )
            merged[doc] = grade
        source.setdefault(key, qid)
    return out


def merge_labels(
    judgments: Mapping[str, Mapping[str, int]],
    click_labels: Mapping[str, Mapping[str, float]],
    *,
    click_weight: float = 0.5,
    nudge: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Training labels from human judgments plus click labels, both keyed by the same query key.

    Judgments are usually keyed by query id and click labels by normalised text: re-key one
    side first (``key_by_query_text`` maps judgments to text). A judged pair keeps its grade,
    moved ``nudge`` of the way (0 = not at all, the default) towards its click label when it
    has one. A pair only clicks know about gets ``click_weight * click label``, so click-only
    evidence counts for less than a judge's grade.
    """
    if not 0.0 <= click_weight <= 1.0:
        raise ValueError(f"click_weight must be in [0, 1], got {click_weight}")
    if not 0.0 <= nudge <= 1.0:
        raise ValueError(f"nudge must be in [0, 1], got {nudge}")
    out: dict[str, dict[str, float]] = {}
    for q, grades in judgments.items():
        clicked = click_labels.get(q, {})
        out[q] = {
            d: float(g) + (nudge * (clicked[d] - g) if d in clicked else 0.0)
            for d, g in grades.items()
        }
    for q, labels in click_labels.items():
        judged = judgments.get(q, {})
        row = out.setdefault(q, {})
        for d, label in labels.items():
            if d not in judged:
                row[d] = click_weight * float(label)
    return out
