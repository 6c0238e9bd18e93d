"""The drift statistics against scipy on seeded data, and the tokenizer query drift shares with
BM25. (``ranker.monitoring.stats`` avoids importing scipy.stats, which takes seconds; the
tests may.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from brainrank.index.bm25 import BM25Index, tokenize
from brainrank.index.params import BM25Params
from brainrank.ranker.monitoring.stats import chi2_test, js_divergence, ks_test


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 1])  # continuous, and with many ties
def test_ks_statistic_is_scipys(seed, decimals):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=300), rng.normal(0.2 * seed / 4, 1.2, size=170)
    if decimals is not None:
        a, b = np.round(a, decimals), np.round(b, decimals)
    d, _ = ks_test(a, b, len(a), len(b))
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_ks_p_value_is_the_asymptotic_one_for_the_effective_sizes(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=1200), rng.normal(0.03 * seed, size=800)
    d, p = ks_test(a, b, len(a), len(b))
    # Kolmogorov's limit at d * sqrt(n m / (n + m)) ...
    en = 1200 * 800 / (1200 + 800)
    assert p == pytest.approx(stats.kstwobign.sf(d * math.sqrt(en)), rel=1e-9)
    # ... which, at these sizes, is close to scipy's own asymptotic p-value.
    assert p == pytest.approx(stats.ks_2samp(a, b, method="asymp").pvalue, rel=0.15)
    # With fewer independent units (searches, not rows) the same d is weaker evidence.
    _, p_searches = ks_test(a, b, 40, 30)
    assert p_searches == pytest.approx(stats.kstwobign.sf(d * math.sqrt(40 * 30 / 70)), rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_chi2_is_scipys_contingency_test(seed):
    rng = np.random.default_rng(seed)
    k = 2 + seed  # k = 2 is the one-degree-of-freedom case scipy would Yates-correct
    ref, live = rng.integers(1, 60, k), rng.integers(1, 60, k)
    # Sizes equal to the counts' sums: the table is the raw counts.
    expected = stats.chi2_contingency(np.stack([ref, live]), correction=False)
    stat, p = chi2_test(ref, live, ref.sum(), live.sum())
    assert (stat, p) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-9)
    # Effective sizes: the counts rescaled to 25 and 40 searches.
    table = np.stack([ref / ref.sum() * 25, live / live.sum() * 40])
    expected = stats.chi2_contingency(table, correction=False)
    assert chi2_test(ref, live, 25, 40) == pytest.approx(
        (expected.statistic, expected.pvalue), rel=1e-9
    )


def test_chi2_drops_categories_empty_on_both_sides():
    ref, live = np.array([10, 0, 30, 5]), np.array([20, 0, 10, 15])
    expected = stats.chi2_contingency(np.stack([ref[[0, 2, 3]], live[[0, 2, 3]]]), correction=False)
    assert chi2_test(ref, live, ref.sum(), live.sum()) == pytest.approx(
        (expected.statistic, expected.pvalue), rel=1e-9
    )


@pytest.mark.parametrize("seed", range(5))
def test_js_divergence_is_the_textbook_sum_and_scipys_square(seed):
    rng = np.random.default_rng(seed)
    p_counts = rng.integers(0, 20, 12).astype(float)
    q_counts = rng.integers(0, 20, 12).astype(float)
    p, q = p_counts / p_counts.sum(), q_counts / q_counts.sum()
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return np.sum(a[nz] * np.log2(a[nz] / m[nz]))

    js = js_divergence(p_counts, q_counts)
    assert js == pytest.approx((kl(p) + kl(q)) / 2, abs=1e-12)
    assert js == pytest.approx(jensenshannon(p_counts, q_counts, base=2) ** 2, abs=1e-12)
    assert js_divergence(p_counts, np.zeros(12)) == 0.0  # nothing to compare


def test_query_drift_and_bm25_see_the_same_terms():
    texts = [
        "The refunds of brakes",
        "RUNNING shoes, running!",
        "the of and",  # stopwords only: no terms
        "café crème brûlée",
    ]
    params = BM25Params()
    index = BM25Index.build(texts, params, keep_sequences=True)
    tokens = tokenize(texts, params)
    assert tokens == [index.tokenize(t) for t in texts]
    assert tokens[0] == ["refund", "brake"] and tokens[2] == []
    # The index was built from exactly these terms.
    assert index.lengths().tolist() == [len(t) for t in tokens]
    assert tokenize([], params) == []


def test_a_drift_verdict_names_only_what_fired():
    """Out of range with an unchanged shape fires on the range alone; the reason must not
    lean on a PSI or a test that said "no change"."""
    from brainrank.ranker.config import MonitorConfig
    from brainrank.ranker.monitoring.stats import feature_drift

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(400, 2))
    live = rng.normal(size=(400, 2))
    live[:, 1] = rng.normal(size=400) * 3  # the second feature spreads past the training range
    cfg = MonitorConfig()
    rows = feature_drift(
        ref, 400, live, 400, ("same", "wide"), cfg, {"same": (-9, 9), "wide": (-2, 2)}
    )
    same, wide = rows
    assert not same["drifted"] and same["fired"] == []
    assert wide["drifted"]
    assert any("outside the training range (more than 5%)" in f for f in wide["fired"])
    for fired in wide["fired"]:
        if fired.startswith("PSI"):  # a distribution alarm says both numbers that fired
            assert wide["psi"] >= cfg.psi_threshold and wide["p"] < cfg.alpha / 2
    shifted = feature_drift(ref, 400, ref + 3.0, 400, ("same", "wide"), cfg)
    assert all(r["fired"] and r["fired"][0].startswith("PSI") for r in shifted)
