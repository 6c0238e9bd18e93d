"""Whether a challenger may replace the incumbent: a paired bootstrap of per-query nDCG@10.

A challenger is promoted automatically only when, for every incumbent it must beat (the
champion, or before there is one every fixed mode), the lower bound of the confidence interval
of the mean per-query nDCG@10 difference is above ``[promotion] margin``, on at least
``min_holdout_queries`` queries it never trained on. The interval is a percentile bootstrap
(``scipy.stats.bootstrap``) over queries: resampling the per-query differences keeps each
query's pair together. Anything less leaves the version a challenger, with the reason and the
interval, and a manual ``brainrank models promote`` remains the user's call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from brainrank.ranker.config import PromotionConfig

# The modes a first model must beat (``hybrid`` is the configured fusion).
FIXED_MODES = ("bm25", "dense", "hybrid", "hybrid-rrf", "hybrid-minmax")
HOLDOUT, CROSS_VALIDATION = "holdout", "cross-validation"


@dataclass(frozen=True)
class Comparison:
    """Challenger minus one incumbent: mean per-query nDCG@10 difference and its interval."""

    against: str
    mean: float
    low: float
    high: float
    queries: int

    def describe(self) -> str:
        return f"{self.mean:+.4f} (95% CI {self.low:+.4f} to {self.high:+.4f}) vs {self.against}"


@dataclass(frozen=True)
class Decision:
    """The verdict on one challenger, with everything needed to say why."""

    promote: bool
    method: str  # HOLDOUT or CROSS_VALIDATION
    queries: int
    margin: float
    comparisons: tuple[Comparison, ...]
    reason: str

    def to_dict(self) -> dict:
        return {**asdict(self), "comparisons": [asdict(c) for c in self.comparisons]}

    @classmethod
    def from_dict(cls, data: Mapping) -> Decision:
        return cls(
            promote=bool(data["promote"]),
            method=str(data["method"]),
            queries=int(data["queries"]),
            margin=float(data["margin"]),
            comparisons=tuple(Comparison(**c) for c in data["comparisons"]),
            reason=str(data["reason"]),
        )


def paired_interval(
    challenger: np.ndarray,
    incumbent: np.ndarray,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``challenger - incumbent`` and its percentile-bootstrap interval over queries."""
    diff = np.asarray(challenger, dtype=np.float64) - np.asarray(incumbent, dtype=np.float64)
    if diff.size == 0:
        raise ValueError("no queries to compare on")
    mean = float(diff.mean())
    if diff.size == 1 or np.ptp(diff) == 0:
        return mean, mean, mean  # every resample has the same mean
    from scipy.stats import bootstrap

    ci = bootstrap(
        (diff,),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return mean, float(ci.low), float(ci.high)


def decide(
    challenger: Mapping[str, float],
    incumbents: Mapping[str, Mapping[str, float]],
    settings: PromotionConfig,
    *,
    method: str = HOLDOUT,
    seed: int = 0,
) -> Decision:
    """Promote only when every incumbent is beaten at the interval's lower bound.

    ``challenger`` and each incumbent map query ids to nDCG@10; they are compared on the
    queries all of them scored. An empty ``incumbents`` is a refusal: there is nothing the
    challenger was shown to beat.
    """
    queries = sorted(set(challenger).intersection(*incumbents.values())) if incumbents else []
    n, margin = len(queries), settings.margin
    where = "held-out" if method == HOLDOUT else "cross-validated"
    if not incumbents:
        return Decision(False, method, 0, margin, (), "nothing to compare the challenger with")
    if n < settings.min_holdout_queries:
        return Decision(
            False,
            method,
            n,
            margin,
            (),
            f"only {n} {where} queries; automatic promotion needs at least "
            f"{settings.min_holdout_queries} ([promotion] min_holdout_queries)",
        )
    mine = np.array([challenger[q] for q in queries])
    comparisons = tuple(
        Comparison(
            name,
            *paired_interval(
                mine,
                np.array([scores[q] for q in queries]),
                resamples=settings.resamples,
                confidence=settings.confidence,
                seed=seed,
            ),
            n,
        )
        for name, scores in incumbents.items()
    )
    short = [c for c in comparisons if not c.low > margin]
    if short:
        worst = min(short, key=lambda c: c.low)
        reason = (
            f"not clearly better on {n} {where} queries: nDCG@10 {worst.describe()}; "
            f"the lower bound is not above the margin {margin:+.4f}"
        )
    else:
        closest = min(comparisons, key=lambda c: c.low)
        reason = f"better on {n} {where} queries: nDCG@10 {closest.describe()}"
        if len(comparisons) > 1:
            reason += f" (the closest of {len(comparisons)})"
    return Decision(not short, method, n, margin, comparisons, reason)


def recorded_ndcg(meta: Mapping) -> dict[str, float]:
    """nDCG@10 of the challenger and what it faced, from a version's ``model.json``: the
    cross-validated means when training cross-validated, else the held-out ones."""
    cv = ((meta.get("training") or {}).get("cross_validation") or {}).get("nDCG@10")
    if cv:
        return {name: float(v) for name, v in cv.items()}
    metrics = meta.get("metrics") or {}
    return {name: float(m["nDCG@10"]) for name, m in metrics.items() if "nDCG@10" in m}


def beaten_by_fixed_mode(meta: Mapping) -> tuple[str, float, float] | None:
    """(mode, its nDCG@10, the model's) for the best fixed mode that scored above the model in
    its recorded evaluation, or None."""
    scores = recorded_ndcg(meta)
    mine = scores.get("challenger")
    if mine is None:
        return None
    better = [(v, mode) for mode, v in scores.items() if mode in FIXED_MODES and v > mine]
    if not better:
        return None
    value, mode = max(better)
    return mode, value, mine


def model_warnings(meta: Mapping) -> list[str]:
    """What a user should know before trusting a model version (its ``model.json``): a fixed
    mode that beat it in its recorded evaluation, and a promotion check it did not pass."""
    out = []
    beaten = beaten_by_fixed_mode(meta)
    if beaten is not None:
        mode, theirs, mine = beaten
        out.append(
            f"in its evaluation the fixed mode {mode} scored nDCG@10 {theirs:.4f} against "
            f"this model's {mine:.4f}"
        )
    recorded = meta.get("promotion")
    if recorded and not recorded.get("promote"):
        out.append(f"it did not pass the promotion check: {recorded.get('reason')}")
    return out
