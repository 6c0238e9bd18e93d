"""How a result's score splits into the fixed fusion and what the learned ranker added.

The learned ranker is residual: training sets ``RankerParams.residual_feature`` to ``fused``
(``ranker.learning.train``), so its score is

    score = base_weight * fused + correction(x)

where ``fused`` is the min-max fusion of BM25 and dense (``learning.features``), computed with
the model's own dense weight, and the correction is the network's output over all features
(``fused`` among them), whose last layer starts at zero. So for one result:

- the **fusion part** is ``base_weight * fused``, and it splits into a BM25 part
  ``base_weight * (1 - w) * minmax(bm25)`` and a dense part ``base_weight * w * minmax(dense)``,
  computed as ``retrieval.fusion.minmax`` computes them (float64, the same order of sums);
- the **correction** is ``score - fusion part``, so ``fusion part + correction == score``;
  ``correction_scores`` is that function of a feature row, for SHAP (``explain``, target
  ``correction``) to attribute to the features;
- the **gate** decides whether the correction is served at all: when the query gate or the
  list gate sends a query back to the fusion, the served score is ``fused`` itself (float32,
  as features are stored) and the correction is that rounding, below 1e-6.

A model without a residual term (or one on another feature) has the same structure by
definition: its fusion part is ``fused``, the score its gates fall back to, and its correction
is the rest. Fixed modes split the same way with no correction: ``hybrid``/``hybrid-minmax``
by the config's dense weight, ``hybrid-rrf`` into each list's ``1 / (k + rank)``, and ``bm25``
and ``dense`` are one signal each. Standard library and numpy only: the query path's imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainrank.index.errors import InputError
from brainrank.ranker.learning.gates import SUMMARY, list_summary
from brainrank.ranker.retrieval.fusion import minmax, minmax_normalise, rrf

FUSED = "fused"


@dataclass(frozen=True)
class FusionSplit:
    """A fixed fusion's score of one document and each signal's part of it."""

    kind: str  # "minmax", "rrf", "bm25" or "dense"
    score: float  # as the fusion computes it
    bm25: float  # BM25's part: weight x normalised BM25 (rrf: 1 / (k + BM25 rank))
    dense: float  # the dense part, alike
    bm25_signal: float  # the raw BM25 score
    dense_signal: float  # the best passage's cosine
    bm25_weight: float
    dense_weight: float


@dataclass(frozen=True)
class GateDecision:
    """Whether the learned correction was served for a query, and why not when it was not."""

    in_domain: bool
    gate: str | None  # "query" or "list" when the query went back to the fusion
    query_similarity: float | None = None  # to the nearest training query
    query_threshold: float | None = None
    outside: tuple[str, ...] = ()  # list statistics outside their training range
    max_outside: int | None = None
    summary: tuple[tuple[str, float, float, float], ...] = ()  # (name, value, low, high)

    @property
    def reason(self) -> str:
        if self.gate == "query":
            return (
                f"the query is unlike the training queries: similarity "
                f"{self.query_similarity:.3f} to the nearest one, below the gate's "
                f"{self.query_threshold:.3f}"
            )
        stats = ", ".join(
            f"{name} {v:.3f} not in [{lo:.3f}, {hi:.3f}]"
            for name, v, lo, hi in self.summary
            if name in self.outside
        )
        if self.gate == "list":
            return (
                f"the candidate list is unlike the training lists: {len(self.outside)} "
                f"statistics outside their training range ({stats}), more than the "
                f"{self.max_outside} tolerated"
            )
        if self.outside:
            return f"in domain; tolerated outside its training range: {stats}"
        return "in domain"


@dataclass(frozen=True)
class ScoreParts:
    """One candidate's score: fusion part (BM25 + dense) + correction == score."""

    doc_id: str
    score: float  # what search serves for it
    fusion: FusionSplit
    fusion_weight: float  # the residual term's base_weight (1.0 for fixed modes)
    correction: float

    @property
    def fusion_part(self) -> float:
        return self.fusion_weight * self.fusion.score

    @property
    def bm25_part(self) -> float:
        return self.fusion_weight * self.fusion.bm25

    @property
    def dense_part(self) -> float:
        return self.fusion_weight * self.fusion.dense


@dataclass(frozen=True)
class Decomposition:
    """The score parts of every candidate of one query in one mode (candidate order)."""

    query: str
    mode: str
    model: str | None
    parts: tuple[ScoreParts, ...]
    gate: GateDecision | None = None  # learned mode only
    features: np.ndarray | None = None  # [n_candidates, F], learned mode only
    feature_names: tuple[str, ...] = ()

    @property
    def doc_ids(self) -> list[str]:
        return [p.doc_id for p in self.parts]

    @property
    def correction_served(self) -> bool:
        return self.gate is not None and self.gate.in_domain

    def row(self, doc_id: str) -> int:
        for i, p in enumerate(self.parts):
            if p.doc_id == doc_id:
                return i
        raise InputError(f"{doc_id!r} is not a candidate of {self.query!r}")

    def __getitem__(self, doc_id: str) -> ScoreParts:
        return self.parts[self.row(doc_id)]


# ----- the learned model's residual term ----------------------------------------------------


def fusion_term(model) -> tuple[int, float]:
    """(feature index, weight) of the fusion part of ``model``'s score (a LearnedModel)."""
    fused = model.schema.index(FUSED)
    params = model.ranker.params
    if params.residual_feature == fused:
        return fused, float(params.base_weight)
    return fused, 1.0  # no residual term on the fusion: the gates' fallback is the fusion part


def correction_scores(model, x: np.ndarray) -> np.ndarray:
    """The learned correction of feature rows ``x`` [n, F]: score minus the fusion part."""
    x = np.asarray(x, dtype=np.float32)
    index, weight = fusion_term(model)
    scores = np.asarray(model.ranker.score_docs(x), dtype=np.float64)
    return scores - weight * x[:, index].astype(np.float64)


def correction_subscores(model, x: np.ndarray) -> np.ndarray:
    """A GAM's correction per feature [n, F]: its sub-scores less the residual term."""
    x = np.asarray(x, dtype=np.float32)
    index, weight = fusion_term(model)
    sub = np.asarray(model.ranker.subscores(x), dtype=np.float64)
    sub[:, index] -= weight * x[:, index].astype(np.float64)
    return sub


# ----- fusion splits ------------------------------------------------------------------------


def fusion_splits(cand, kind: str, *, dense_weight: float = 0.5, rrf_k: int = 60) -> list:
    """The FusionSplit of every candidate (``cand``: Candidates) under one fixed fusion."""
    bm25 = np.asarray(cand.bm25, dtype=np.float64)
    dense = np.asarray(cand.dense, dtype=np.float64)
    zeros = np.zeros(len(bm25))
    if kind == "minmax":
        wb, wd = 1 - dense_weight, dense_weight
        pb, pd = wb * minmax_normalise(bm25), wd * minmax_normalise(dense)
        score = minmax([cand.bm25, cand.dense], [wb, wd])
    elif kind == "rrf":
        wb = wd = 1.0
        pb, pd = rrf(cand.bm25_rank, k=rrf_k), rrf(cand.dense_rank, k=rrf_k)
        score = rrf(cand.bm25_rank, cand.dense_rank, k=rrf_k)
    elif kind == "bm25":
        (wb, wd), pb, pd, score = (1.0, 0.0), bm25, zeros, bm25
    elif kind == "dense":
        (wb, wd), pb, pd, score = (0.0, 1.0), zeros, dense, dense
    else:
        raise InputError(f"unknown fusion {kind!r}; choose one of minmax, rrf, bm25, dense")
    columns = zip(score, pb, pd, bm25, dense, strict=True)
    return [FusionSplit(kind, *map(float, c), wb, wd) for c in columns]


def gate_decision(model, x: np.ndarray, query_vector, in_domain: bool) -> GateDecision:
    """The gates' view of one list, given whether scoring found it ``in_domain``."""
    sim = threshold = None
    if model.query_gate is not None and query_vector is not None:
        sim = model.query_gate.similarity(query_vector)
        threshold = float(model.query_gate.threshold)
    summary: tuple = ()
    outside: tuple[str, ...] = ()
    max_outside = None
    if model.gate is not None and len(x):
        values = list_summary(x, model.schema)
        outside = tuple(model.gate.outside(values))
        max_outside = model.gate.max_outside
        summary = tuple(
            (name, float(v), float(lo), float(hi))
            for name, v, lo, hi in zip(
                SUMMARY, values, model.gate.low, model.gate.high, strict=True
            )
        )
    gate = None
    if not in_domain:
        gate = "query" if sim is not None and sim < threshold else "list"
    return GateDecision(in_domain, gate, sim, threshold, outside, max_outside, summary)


def decompose_scores(
    query: str, doc_ids: list[str], cand, *, model=None, x=None, scored=None, fusion=None
) -> Decomposition:
    """Parts of each candidate's score: learned (``model``, its features ``x`` and ``scored``,
    its Scored) or a fixed ``fusion`` (mode name, kind, dense weight, rrf k)."""
    if model is not None:
        _, weight = fusion_term(model)
        splits = fusion_splits(cand, "minmax", dense_weight=model.schema.dense_weight)
        scores = np.asarray(scored.scores, dtype=np.float64)
        gate = gate_decision(model, x, cand.query_vector, bool(scored.in_domain))
        version = model.version.version if model.version is not None else None
        mode, names = "learned", tuple(model.schema.names)
    else:
        mode, kind, dense_weight, rrf_k = fusion
        weight, gate, version, names = 1.0, None, None, ()
        splits = fusion_splits(cand, kind, dense_weight=dense_weight, rrf_k=rrf_k)
        scores = np.array([s.score for s in splits], dtype=np.float64)
    parts = tuple(
        ScoreParts(d, float(scores[i]), s, weight, float(scores[i]) - weight * s.score)
        for i, (d, s) in enumerate(zip(doc_ids, splits, strict=True))
    )
    return Decomposition(query, mode, version, parts, gate, x, names)


def decompose(engine, query: str, mode: str, model: str | None = None, where=None) -> Decomposition:
    """The parts of every candidate's score for ``query`` as ``engine.search`` ranks it.

    The same candidates, features, model and gate decision as the search in ``mode``
    (``model``: a registry version for the learned mode, default the champion) with the
    filters ``where``.
    """
    from brainrank.ranker.retrieval.search import check_mode

    check_mode(mode)
    query = engine.validate_query(query)
    _, allowed = engine.filter_mask(where)
    cand = engine.candidates(query, mode, allowed)
    ids = engine.generation.doc_ids
    doc_ids = [ids[p] for p in cand.positions]
    if mode == "learned":
        learned, extractor = engine.model(model)
        x = extractor.extract(query, cand)
        scored = learned.score_features(x, cand.query_vector)
        return decompose_scores(query, doc_ids, cand, model=learned, x=x, scored=scored)
    r = engine.cfg.retrieval
    kind = {"hybrid": r.fusion, "hybrid-rrf": "rrf", "hybrid-minmax": "minmax"}.get(mode, mode)
    return decompose_scores(query, doc_ids, cand, fusion=(mode, kind, r.dense_weight, r.rrf_k))
