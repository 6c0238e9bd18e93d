"""Why a document scores and ranks as it does: SHAP attributions of the learned ranker's score.

This is the only module that imports ``shap``. The ranker scores each document on its own (see
``learning.tfr_model``), so the function explained is ``model.ranker.score_docs`` on feature rows
[n_docs, F], and the features of other documents never enter a document's score. Masked
features are integrated over a background sample with ``shap.maskers.Independent``: by default
the query's own candidates, so an attribution reads "compared with a typical candidate of this
query".

For an additive (GAM) ranker ``f(x) = sum_j f_j(x_j)`` the SHAP value under an Independent
masker has a closed form: every coalition adds the same marginal contribution of feature j,
``f_j(x_j) - mean_b f_j(b_j)``, so that is the SHAP value exactly, whatever the permutations
sampled. ``gam_subscores`` gives the ``f_j(x_j)`` and the tests hold SHAP to that identity.

``target="correction"`` explains the learned correction alone, ``score - base_weight * fused``
(``learning.decompose``): the fusion part is exact and needs no attribution, so the values then
say what the model changed on top of the fusion, and sum (with the base value) to that change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brainrank.index.errors import InputError
from brainrank.ranker.learning.decompose import correction_scores, correction_subscores

METHODS = ("permutation", "exact", "additive", "auto")
TARGETS = ("score", "correction")
# Exact SHAP evaluates 2^F coalitions per document; beyond this it is the slow choice.
EXACT_MAX_FEATURES = 10
MAX_BACKGROUND = 100
# Forward + backward passes over all features per permutation; 10 permutations by default.
PERMUTATIONS = 10


@dataclass(frozen=True)
class Explanation:
    """Attributions of scores to features: ``values.sum(1) + base_values == scores``."""

    values: np.ndarray  # [n_docs, F]
    base_values: np.ndarray  # [n_docs], the mean score over the background
    feature_names: tuple[str, ...]
    scores: np.ndarray  # [n_docs], the model's score of each explained row
    method: str = "permutation"
    background_size: int = 0
    doc_ids: tuple[str, ...] = ()  # the explained documents, when known (row order)
    target: str = "score"  # or "correction": the score less its fusion part


@dataclass(frozen=True)
class WhyNot:
    """Attribution difference of a target document against the document(s) it should beat.

    ``difference[j] < 0``: feature j holds the target below. The differences sum to
    ``target_score - above_score`` (both attributions share one base value).
    """

    difference: np.ndarray  # [F]
    target_values: np.ndarray  # [F] SHAP values of the target
    above_values: np.ndarray  # [F] SHAP values of the document above (mean when several)
    target_score: float
    above_score: float
    feature_names: tuple[str, ...]

    def holding_back(self) -> list[tuple[str, float]]:
        """Features with a negative difference, most harmful first."""
        order = np.argsort(self.difference, kind="stable")
        return [
            (self.feature_names[j], float(self.difference[j]))
            for j in order
            if self.difference[j] < 0
        ]


def score_function(model, target: str = "score"):
    """The per-document function SHAP explains: float64 [n] from rows [n, F].

    ``target``: the model's score, or its learned ``correction`` (score less the fusion part).
    """
    if target not in TARGETS:
        raise InputError(f"unknown explanation target {target!r}; choose one of {TARGETS}")
    if target == "correction":
        return lambda x: correction_scores(model, x)

    def f(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.ranker.score_docs(np.asarray(x, dtype=np.float32)), np.float64)

    return f


def explain(
    model,
    x: np.ndarray,
    background: np.ndarray | None = None,
    *,
    method: str = "permutation",
    permutations: int = PERMUTATIONS,
    max_background: int = MAX_BACKGROUND,
    seed: int = 0,
    target: str = "score",
) -> Explanation:
    """SHAP values of ``model``'s score (or ``target="correction"``) for each row of ``x``.

    ``background`` defaults to ``x`` itself; pass all of a query's candidates (the debugger
    does) or a training sample. More than ``max_background`` rows are subsampled with ``seed``.
    ``method``: ``permutation`` (sampled, antithetic; exact for additive models), ``exact``
    (all 2^F coalitions, for few features), ``additive`` (a GAM's closed form, see the module
    docstring: the values the other two converge to, from two sub-score evaluations) or
    ``auto`` (additive for a GAM, else exact up to 10 features, else permutation).
    """
    if method not in METHODS:
        raise InputError(
            f"unknown explanation method {method!r}; choose one of {', '.join(METHODS)}"
        )
    gam = getattr(model.ranker.params, "scorer", None) == "gam"
    if method == "additive" and not gam:
        raise InputError(
            f"the additive explanation needs a GAM ranker; this model's scorer is "
            f"{model.ranker.params.scorer!r} (use permutation or exact)"
        )
    if method == "auto" and gam:
        method = "additive"
    shap = _shap() if method != "additive" else None
    names = tuple(model.schema.names)
    x = _rows(x, len(names), "x")
    bg = _rows(x if background is None else background, len(names), "background")
    if len(bg) == 0:
        raise InputError("the background sample is empty; SHAP needs at least one row")
    bg = subsample(bg, max_background, seed)
    f = score_function(model, target)
    scores = f(x) if len(x) else np.zeros(0)
    if len(x) == 0:
        return Explanation(
            np.zeros((0, len(names))), np.zeros(0), names, scores, method, len(bg), target=target
        )
    if method == "additive":
        base = np.full(len(x), f(bg).mean())
        values = gam_shap(model, x, bg, target)
        return Explanation(values, base, names, scores, method, len(bg), target=target)
    if method == "auto":
        method = "exact" if len(names) <= EXACT_MAX_FEATURES else "permutation"
    masker = shap.maskers.Independent(bg, max_samples=len(bg))
    if method == "exact":
        explainer = shap.explainers.ExactExplainer(f, masker)
        out = explainer(x)
    else:
        explainer = shap.explainers.PermutationExplainer(f, masker, seed=seed)
        out = explainer(x, max_evals=permutations * (2 * len(names) + 1), silent=True)
    values = np.asarray(out.values, dtype=np.float64).reshape(len(x), len(names))
    base = np.broadcast_to(np.asarray(out.base_values, dtype=np.float64), (len(x),)).copy()
    return Explanation(values, base, names, scores, method, len(bg), target=target)


def _shap():
    try:
        import shap
    except ImportError as exc:
        raise ImportError(
            "explanations need SHAP, one of brainrank's dependencies: pip install -e ."
        ) from exc
    return shap


def gam_subscores(model, x: np.ndarray, target: str = "score") -> np.ndarray:
    """Exact per-feature contributions [n_docs, F] of a GAM ranker; rows sum to its score
    (``target="correction"``: to its correction, the residual term left out)."""
    if getattr(model.ranker.params, "scorer", None) != "gam":
        raise InputError(
            f"exact sub-scores need a GAM ranker (train with --scorer gam); this model's scorer "
            f"is {model.ranker.params.scorer!r}"
        )
    x = _rows(x, len(model.schema.names), "x")
    if target == "correction":
        return correction_subscores(model, x)
    return np.asarray(model.ranker.subscores(x), dtype=np.float64)


def gam_shap(model, x: np.ndarray, background: np.ndarray, target: str = "score") -> np.ndarray:
    """SHAP values of a GAM in closed form: ``f_j(x_j) - mean over background of f_j(b_j)``."""
    sub_bg = gam_subscores(model, background, target)
    return gam_subscores(model, x, target) - sub_bg.mean(axis=0)


def why_not(
    model,
    x_target: np.ndarray,
    x_above: np.ndarray,
    background: np.ndarray,
    *,
    method: str = "permutation",
    seed: int = 0,
) -> WhyNot:
    """Which features hold ``x_target`` [F] below ``x_above`` ([F], or [m, F] averaged)."""
    target = np.atleast_2d(np.asarray(x_target))
    above = np.atleast_2d(np.asarray(x_above))
    if len(target) != 1:
        raise InputError(f"x_target must be one feature row, got shape {np.shape(x_target)}")
    if len(above) == 0:
        raise InputError("x_above is empty: there is no document above the target to compare")
    ex = explain(model, np.vstack([target, above]), background, method=method, seed=seed)
    above_values = ex.values[1:].mean(axis=0)
    return WhyNot(
        difference=ex.values[0] - above_values,
        target_values=ex.values[0],
        above_values=above_values,
        target_score=float(ex.scores[0]),
        above_score=float(ex.scores[1:].mean()),
        feature_names=ex.feature_names,
    )


def subsample(rows: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """At most ``n`` rows drawn without replacement (in their original order)."""
    if len(rows) <= n:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=n, replace=False))
    return rows[keep]


def _rows(x, n_features: int, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != n_features:
        raise InputError(f"{name} must have shape [n_docs, {n_features}]; got {x.shape}")
    return x


# ----- the query's candidates, as the learned ranker sees them ---------------------------------


@dataclass
class CandidateFeatures:
    """Feature rows of one query's candidates for one model, in candidate order."""

    query: str
    model_version: str
    doc_ids: list[str]
    features: np.ndarray  # [n_candidates, F]
    scores: np.ndarray  # what search served: model scores, or fusion when out of domain
    in_domain: bool
    outside: list[str]
    feature_names: tuple[str, ...]
    _row: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._row = {d: i for i, d in enumerate(self.doc_ids)}

    def row(self, doc_id: str) -> int | None:
        return self._row.get(doc_id)

    def rows(self, doc_ids: list[str]) -> np.ndarray:
        """Feature rows of ``doc_ids`` (each must be a candidate)."""
        missing = [d for d in doc_ids if d not in self._row]
        if missing:
            raise InputError(f"not candidates of {self.query!r}: {', '.join(missing[:5])}")
        return self.features[[self._row[d] for d in doc_ids]]


def candidate_features(
    engine, query: str, model: str | None = None, where=None
) -> CandidateFeatures:
    """Features and served scores of ``query``'s candidates under a model (default champion).

    The same candidates, features and gate decision as ``engine.search(query, mode="learned",
    where=where)``.
    """
    learned, extractor = engine.model(model)
    _, allowed = engine.filter_mask(where)
    cand = engine.candidates(query, "learned", allowed)
    scored = learned.score(extractor, engine.validate_query(query), cand)
    ids = engine.generation.doc_ids
    return CandidateFeatures(
        query=query,
        model_version=learned.version.version,
        doc_ids=[ids[p] for p in cand.positions],
        features=scored.features,
        scores=np.asarray(scored.scores, dtype=np.float64),
        in_domain=bool(scored.in_domain),
        outside=list(scored.outside),
        feature_names=tuple(learned.schema.names),
    )


# ----- where a document stands for a query -----------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """A document's place for one query: in each retrieval list, among candidates, finally.

    List ranks (``*_list_rank``) are the document's rank in the retriever's top
    ``retrieval.candidates`` list, None when it is not in that list; collection ranks rank
    it against every document, so a document that missed the candidate set shows by how much.
    Under filters, ``failed`` names the conditions the document does not meet (a filtered
    search cannot return it) and collection ranks count only the documents that meet them all.
    """

    doc_id: str
    exists: bool
    candidate: bool = False
    bm25_score: float | None = None
    bm25_list_rank: int | None = None
    bm25_collection_rank: int | None = None  # None when no query term matches
    dense_score: float | None = None
    dense_list_rank: int | None = None
    dense_collection_rank: int | None = None  # None in bm25 mode (no query vector)
    final_rank: int | None = None  # in the given ranking; None when not in it
    n_ranked: int = 0
    list_depth: int = 0
    filters: tuple[str, ...] = ()  # the search's conditions
    failed: tuple[str, ...] = ()  # those the document does not meet


def standing(engine, query: str, doc_id: str, ranking) -> Standing:
    """Where ``doc_id`` stands for ``query``; ``ranking`` is the engine's SearchResult for it
    (its mode and filters are those of the standing).

    Pass a ranking of every candidate (a large ``k``) so ``final_rank`` is always known for
    a candidate.
    """
    from brainrank.ranker.retrieval.filters import matching

    gen = engine.generation
    depth = engine.cfg.retrieval.candidates
    final = next((h.rank for h in ranking.hits if h.doc_id == doc_id), None)
    conditions, allowed = engine.filter_mask(ranking.filters)
    filters = tuple(c.text for c in conditions)
    try:
        position = gen.doc_ids.index(doc_id)
    except ValueError:
        return Standing(
            doc_id, exists=False, n_ranked=len(ranking.hits), list_depth=depth, filters=filters
        )
    columns = gen.filter_columns
    failed = tuple(c.text for c in conditions if not matching((c,), columns, len(gen))[position])
    cand = engine.candidates(query, ranking.mode, allowed)
    where = np.flatnonzero(cand.positions == position)
    # Ranks over the collection count the documents the filters let through (and this one).
    counted = np.ones(len(gen), dtype=bool) if allowed is None else allowed.copy()
    counted[position] = True
    bm25_all = gen.bm25.scores(engine.validate_query(query))
    bm25 = float(bm25_all[position])
    dense = dense_rank = None
    if cand.query_vector is not None:
        dense_all = gen.vectors.similarity(cand.query_vector, np.arange(len(gen)))
        dense = float(dense_all[position])
        dense_rank = int(((dense_all > dense) & counted).sum()) + 1
    i = int(where[0]) if len(where) else None
    return Standing(
        doc_id=doc_id,
        exists=True,
        candidate=i is not None,
        bm25_score=bm25,
        bm25_list_rank=int(cand.bm25_rank[i]) or None if i is not None else None,
        bm25_collection_rank=int(((bm25_all > bm25) & counted).sum()) + 1 if bm25 > 0 else None,
        dense_score=dense,
        dense_list_rank=int(cand.dense_rank[i]) or None if i is not None else None,
        dense_collection_rank=dense_rank,
        final_rank=final,
        n_ranked=len(ranking.hits),
        list_depth=depth,
        filters=filters,
        failed=failed,
    )
