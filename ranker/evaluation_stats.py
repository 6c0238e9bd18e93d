"""Is B better than A on these queries? A paired t-test of per-query metric values.

Two rankings scored on the same judged queries give paired numbers; their per-query
differences ``b - a`` carry the comparison. The test is ``scipy.stats.ttest_rel(b, a)``
(two-sided), the interval the t-based one around the mean difference,
``mean ± t(1 - α/2, n - 1) · sd / √n``. With fewer than two queries, or when every query
differs by the same amount (no spread, so t is undefined), neither is reported and ``note``
says why, instead of a NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Differences closer than this to each other count as equal (float noise of b - a).
SPREAD_TOLERANCE = 1e-12


@dataclass(frozen=True)
class PairedTest:
    """Mean difference B - A with its confidence interval and the paired t-test."""

    n: int  # queries
    mean_a: float
    mean_b: float
    mean_delta: float  # mean of b - a
    confidence: float  # of the interval, e.g. 0.95
    ci_low: float | None  # None with note set
    ci_high: float | None
    t: float | None
    df: int | None
    p: float | None  # two-sided
    note: str = ""  # why there is no interval or p-value

    def to_dict(self) -> dict:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, d: dict) -> PairedTest:
        """The inverse of ``to_dict``; a missing or mistyped field raises KeyError/ValueError."""

        def opt(value, kind=float):
            return None if value is None else kind(value)

        return cls(
            int(d["n"]),
            float(d["mean_a"]),
            float(d["mean_b"]),
            float(d["mean_delta"]),
            float(d["confidence"]),
            opt(d["ci_low"]),
            opt(d["ci_high"]),
            opt(d["t"]),
            opt(d["df"], int),
            opt(d["p"]),
            str(d["note"]),
        )


def paired_t_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedTest:
    """Compare per-query values ``b`` against ``a`` (same queries, same order)."""
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.ndim != 1 or xa.shape != xb.shape:
        raise ValueError(f"a and b must be two lists of equal length; got {xa.shape}, {xb.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r}: must be in (0, 1)")
    if not (np.isfinite(xa).all() and np.isfinite(xb).all()):
        raise ValueError("a and b must hold finite numbers")
    n = len(xa)
    diffs = xb - xa
    means = (
        float(xa.mean()) if n else 0.0,
        float(xb.mean()) if n else 0.0,
        float(diffs.mean()) if n else 0.0,
    )

    def undefined(note: str) -> PairedTest:
        return PairedTest(n, *means, confidence, None, None, None, None, None, note)

    if n < 2:
        return undefined(f"a t-test needs at least 2 queries; there {_queries(n)}")
    if np.abs(diffs - diffs[0]).max() <= SPREAD_TOLERANCE:
        if abs(diffs[0]) <= SPREAD_TOLERANCE:
            return undefined(f"A and B score the same on all {n} queries: nothing to test")
        return undefined(
            f"B - A is {diffs[0]:+.4f} on every one of the {n} queries: with no spread, the "
            "t-test and its interval are undefined"
        )
    from scipy import stats  # ~1 s to import: only when a comparison is asked for

    result = stats.ttest_rel(xb, xa)
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * float(diffs.std(ddof=1)) / math.sqrt(n)
    return PairedTest(
        n,
        *means,
        confidence,
        means[2] - half,
        means[2] + half,
        float(result.statistic),
        n - 1,
        float(result.pvalue),
    )


def _queries(n: int) -> str:
    return "is 1 query" if n == 1 else f"are {n} queries"
