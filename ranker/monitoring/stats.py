"""Drift statistics for ``ranker.monitoring.drift``'s monitors: arrays in, numbers out.

Population stability index over the reference's decile bins, two-sample tests that count
searches rather than rows (Kolmogorov-Smirnov, chi-squared), Jensen-Shannon divergence of term
distributions with the Good-Turing unseen share, the query-embedding centroid shift against its
bootstrap null, and live values over a model's ``baseline.json`` bins. No I/O.
"""

from __future__ import annotations

import numpy as np

from brainrank.ranker.config import MonitorConfig

_EPS = 1e-4


def psi(ref_counts: np.ndarray, live_counts: np.ndarray) -> float:
    """Population stability index of two histograms over the same bins (0 = identical)."""
    p = np.asarray(ref_counts, np.float64)
    q = np.asarray(live_counts, np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    p = np.maximum(p / p.sum(), _EPS)
    q = np.maximum(q / q.sum(), _EPS)
    return float(max(np.sum((q - p) * np.log(q / p)), 0.0))


def quantile_bins(ref: np.ndarray, bins: int = 10) -> np.ndarray:
    """Inner edges at the reference's quantiles (duplicates merged); open-ended outer bins."""
    return np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))


def binned(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    return np.bincount(
        np.searchsorted(inner_edges, values, side="right"), minlength=len(inner_edges) + 1
    )


def ks_test(ref: np.ndarray, live: np.ndarray, n_ref: int, n_live: int) -> tuple[float, float]:
    """KS statistic of two samples and its asymptotic p-value for effective sizes n_ref, n_live.

    The statistic is ``scipy.stats.ks_2samp``'s; the p-value is Kolmogorov's limit
    distribution at ``d * sqrt(n_ref * n_live / (n_ref + n_live))``, which ``ks_2samp`` cannot
    be given because it takes the sizes from the samples (rows, not searches).
    """
    from scipy.special import kolmogorov  # scipy.stats would cost seconds of imports

    a, b = np.sort(ref), np.sort(live)
    grid = np.concatenate([a, b])
    d = float(
        np.max(
            np.abs(
                np.searchsorted(a, grid, side="right") / len(a)
                - np.searchsorted(b, grid, side="right") / len(b)
            )
        )
    )
    en = np.sqrt(n_ref * n_live / (n_ref + n_live))
    return d, float(kolmogorov(d * en)) if d > 0 else 1.0


def chi2_test(
    ref_counts: np.ndarray, live_counts: np.ndarray, n_ref: int, n_live: int
) -> tuple[float, float]:
    """Chi-squared test of homogeneity on category counts rescaled to effective sizes.

    ``scipy.stats.chi2_contingency(table, correction=False)`` on the rescaled 2 x k table
    (categories empty on both sides dropped), without the seconds scipy.stats takes to import.
    """
    from scipy.special import chdtrc

    r = np.asarray(ref_counts, np.float64)
    q = np.asarray(live_counts, np.float64)
    keep = (r + q) > 0
    r, q = r[keep], q[keep]
    if len(r) < 2 or r.sum() == 0 or q.sum() == 0:
        return 0.0, 1.0
    table = np.stack([r / r.sum() * n_ref, q / q.sum() * n_live])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / np.maximum(expected, 1e-12)))
    return stat, float(chdtrc(len(r) - 1, stat))


def js_divergence(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = identical, 1 = disjoint)."""
    from scipy.spatial.distance import jensenshannon

    p = np.asarray(p_counts, np.float64)
    q = np.asarray(q_counts, np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    # scipy returns the distance, the divergence's square root.
    return float(min(jensenshannon(p, q, base=2) ** 2, 1.0))


def feature_drift(
    ref: np.ndarray,
    ref_groups: int,
    live: np.ndarray,
    live_groups: int,
    names: tuple[str, ...],
    cfg: MonitorConfig,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> list[dict]:
    """Per-feature PSI, test and verdict; ``*_groups`` are the effective (search) counts."""
    level = cfg.alpha / max(len(names), 1)
    out = []
    for j, name in enumerate(names):
        r = ref[:, j].astype(np.float64)
        q = live[:, j].astype(np.float64)
        values = np.unique(r)
        discrete = len(values) <= 20 and np.isin(q, values).mean() >= 0.95
        if discrete:
            cats = np.searchsorted(values, q)
            cats = np.where(np.isin(q, values), cats, len(values))  # unseen values: "other"
            rc = np.bincount(np.searchsorted(values, r), minlength=len(values) + 1)
            qc = np.bincount(cats, minlength=len(values) + 1)
            stat, p = chi2_test(rc, qc, ref_groups, live_groups)
            test = "chi2"
        else:
            edges = quantile_bins(r)
            rc, qc = binned(r, edges), binned(q, edges)
            stat, p = ks_test(r, q, ref_groups, live_groups)
            test = "ks"
        row = {"feature": name, "test": test, "psi": psi(rc, qc), "statistic": stat, "p": p}
        # The histograms PSI compared: counts per decile bin (open-ended outer bins) or per
        # discrete value (the last slot counts values the reference never took).
        row["histogram"] = {
            ("values" if discrete else "edges"): (values if discrete else edges).tolist(),
            "reference": np.asarray(rc).tolist(),
            "live": np.asarray(qc).tolist(),
        }
        row["out_of_range"] = None
        if ranges and name in ranges:
            lo, hi = ranges[name]
            row["out_of_range"] = float(np.mean((q < lo - 1e-6) | (q > hi + 1e-6)))
        # What fired, with its threshold: an alarm names only the statistics that raised it.
        row["fired"] = []
        if row["psi"] >= cfg.psi_threshold and p < level:
            row["fired"].append(
                f"PSI {row['psi']:.2f} >= {cfg.psi_threshold:g} and {test} p={p:.1e} < {level:.1e}"
            )
        if (row["out_of_range"] or 0.0) > cfg.out_of_range:
            row["fired"].append(
                f"{row['out_of_range']:.0%} of live values outside the training range "
                f"(more than {cfg.out_of_range:.0%})"
            )
        row["drifted"] = bool(row["fired"])
        out.append(row)
    return out


def term_counts(docs: list[list[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for terms in docs:
        for t in terms:
            counts[t] = counts.get(t, 0) + 1
    return counts


def query_term_drift(ref: list[list[str]], live: list[list[str]], seed: int = 0) -> dict:
    """Unseen-term share and JS divergence of distinct live queries against training queries.

    ``expected_unseen`` is the Good-Turing estimate of the unseen share for new queries from
    the training distribution; ``js_null`` the mean divergence between random halves of the
    training queries (as many as there are live queries, at most half), i.e. what sampling
    alone produces.
    """
    vocab = term_counts(ref)
    tokens = sum(vocab.values())
    live_tokens = [t for terms in live for t in terms]
    unseen = float(np.mean([t not in vocab for t in live_tokens])) if live_tokens else 0.0
    singletons = sum(1 for c in vocab.values() if c == 1)
    expected = singletons / tokens if tokens else 1.0
    js = _js_terms(vocab, term_counts(live))
    rng = np.random.default_rng(seed)
    m = min(len(live), len(ref) // 2)
    nulls = []
    for _ in range(5 if m else 0):
        order = rng.permutation(len(ref))
        pseudo = [ref[i] for i in order[:m]]
        rest = [ref[i] for i in order[m:]]
        nulls.append(_js_terms(term_counts(rest), term_counts(pseudo)))
    return {
        "unseen_share": unseen,
        "expected_unseen": expected,
        "js": js,
        "js_null": float(np.mean(nulls)) if nulls else 1.0,
        "live_queries": len(live),
        "reference_queries": len(ref),
    }


def _js_terms(a: dict[str, int], b: dict[str, int]) -> float:
    keys = list(a.keys() | b.keys())
    return js_divergence(
        np.array([a.get(k, 0) for k in keys], float), np.array([b.get(k, 0) for k in keys], float)
    )


def centroid_shift(
    train: np.ndarray, live: np.ndarray, weights: np.ndarray | None = None, seed: int = 0
) -> dict:
    """Cosine distance of the live and training query centroids, with its bootstrap null
    (the 99th percentile of the distance of as many training queries drawn at random)."""
    weights = np.ones(len(live)) if weights is None else np.asarray(weights, np.float64)
    mu_t = train.mean(axis=0)
    mu_l = (live * weights[:, None]).sum(axis=0) / weights.sum()
    rng = np.random.default_rng(seed)
    n = len(live)
    null = [
        _cos_distance(mu_t, train[rng.integers(0, len(train), n)].mean(axis=0)) for _ in range(200)
    ]
    return {
        "shift": _cos_distance(mu_t, mu_l),
        "null_q99": float(np.quantile(null, 0.99)),
        "queries": n,
    }


def _cos_distance(a: np.ndarray, b: np.ndarray) -> float:
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(1.0 - a @ b / denom) if denom > 0 else 0.0


def baseline_histogram(entry: dict, live: np.ndarray) -> dict:
    """Live values over the bins of a ``baseline.json`` feature entry (all training candidates).

    ``training`` holds the entry's own counts; ``below`` and ``above`` count live values
    outside the training range. A different population from the served hits the monitor
    compares (see ``ranker.monitoring.drift``), so this is context for a chart, not an alarm.
    """
    edges = np.asarray(entry.get("edges") or [], np.float64)
    live = np.asarray(live, np.float64)
    if len(edges) < 2:
        return {
            "edges": edges.tolist(),
            "training": entry.get("counts", []),
            "live": [],
            "below": 0,
            "above": 0,
        }
    inside = (live >= edges[0] - 1e-6) & (live <= edges[-1] + 1e-6)
    counts = np.histogram(np.clip(live[inside], edges[0], edges[-1]), bins=edges)[0]
    return {
        "edges": edges.tolist(),
        "training": [int(c) for c in entry.get("counts", [])],
        "live": counts.astype(int).tolist(),
        "below": int(np.sum(live < edges[0] - 1e-6)),
        "above": int(np.sum(live > edges[-1] + 1e-6)),
    }
