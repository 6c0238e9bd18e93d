"""Honest promotion: the paired bootstrap, the decision rule, cross-validation in training."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from brainrank.ranker.config import PromotionConfig
from brainrank.ranker.learning.decision import (
    CROSS_VALIDATION,
    HOLDOUT,
    Decision,
    beaten_by_fixed_mode,
    decide,
    model_warnings,
    paired_interval,
)
from tests.conftest import DATA, make_config

SETTINGS = PromotionConfig()


def few_holdout_queries(cfg):
    """cfg with min_holdout_queries above the sample's holdout (about a sixth of its train
    queries), so that holdout counts as too small to decide on."""
    return dataclasses.replace(
        cfg, promotion=dataclasses.replace(cfg.promotion, min_holdout_queries=50)
    )


def scores(values) -> dict[str, float]:
    return {f"q{i}": float(v) for i, v in enumerate(values)}


def test_interval_brackets_the_mean_and_is_reproducible():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.3, 1.0, 40), rng.uniform(0.3, 1.0, 40)
    mean, low, high = paired_interval(a, b, seed=3)
    assert mean == pytest.approx(float(np.mean(a - b)))
    assert low < mean < high
    assert paired_interval(a, b, seed=3) == (mean, low, high)
    # A percentile bootstrap of the mean difference, by hand, lands in the same place.
    d = a - b
    means = d[np.random.default_rng(0).integers(0, len(d), (4000, len(d)))].mean(axis=1)
    assert low == pytest.approx(np.quantile(means, 0.025), abs=0.02)
    assert high == pytest.approx(np.quantile(means, 0.975), abs=0.02)


def test_identical_rankings_have_a_zero_width_interval():
    a = np.linspace(0.1, 0.9, 25)
    assert paired_interval(a, a) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="no queries"):
        paired_interval(np.zeros(0), np.zeros(0))


def test_clear_win_over_every_incumbent_promotes():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 30)
    mine = scores(base + 0.1 + rng.normal(0, 0.02, 30))
    decision = decide(mine, {"bm25": scores(base), "dense": scores(base - 0.05)}, SETTINGS)
    assert decision.promote and decision.queries == 30 and decision.method == HOLDOUT
    assert [c.against for c in decision.comparisons] == ["bm25", "dense"]
    assert all(c.low > 0 for c in decision.comparisons)
    assert "better on 30 held-out queries" in decision.reason and "vs bm25" in decision.reason


def test_losing_to_one_incumbent_refuses_and_names_it():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 30)
    mine = scores(base + 0.1)
    decision = decide(
        mine,
        {"bm25": scores(base), "dense": scores(base + 0.1 + rng.normal(0, 0.05, 30))},
        SETTINGS,
    )
    assert not decision.promote
    assert "vs dense" in decision.reason and "not above the margin +0.0000" in decision.reason
    # A negative margin tolerates a challenger that is at worst slightly below.
    tolerant = PromotionConfig(margin=-0.2)
    assert decide(mine, {"bm25": scores(base), "dense": scores(base + 0.1)}, tolerant).promote


def test_too_few_queries_is_never_automatic():
    mine, other = scores(np.full(10, 0.9)), scores(np.full(10, 0.1))
    decision = decide(mine, {"hybrid": other}, SETTINGS, method=CROSS_VALIDATION)
    assert not decision.promote and decision.queries == 10 and decision.comparisons == ()
    assert "only 10 cross-validated queries" in decision.reason
    assert "min_holdout_queries" in decision.reason
    assert decide(mine, {"hybrid": other}, PromotionConfig(min_holdout_queries=10)).promote
    assert not decide(mine, {}, SETTINGS).promote  # nothing shown beaten


def test_decision_round_trips_through_json():
    rng = np.random.default_rng(2)
    d = decide(scores(rng.uniform(size=25)), {"bm25": scores(rng.uniform(size=25))}, SETTINGS)
    assert Decision.from_dict(json.loads(json.dumps(d.to_dict()))) == d


def test_warnings_name_a_fixed_mode_that_beat_the_model():
    meta = {
        "metrics": {"challenger": {"nDCG@10": 0.80}, "dense": {"nDCG@10": 0.85}},
        "promotion": {"promote": False, "reason": "not clearly better"},
    }
    assert beaten_by_fixed_mode(meta) == ("dense", 0.85, 0.80)
    text = " ".join(model_warnings(meta))
    assert "dense scored nDCG@10 0.8500" in text and "not clearly better" in text
    # Cross-validated means, when recorded, take precedence over a tiny holdout.
    meta["training"] = {"cross_validation": {"nDCG@10": {"challenger": 0.9, "dense": 0.85}}}
    assert beaten_by_fixed_mode(meta) is None
    assert model_warnings({"metrics": {"challenger": {"nDCG@10": 0.9}}}) == []


def test_first_model_is_cross_validated_against_every_fixed_mode(sample_config, tmp_path):
    """The sample holds out a handful of queries: training cross-validates over all judged
    ones, compares with every fixed mode on the same queries, records the verdict, and
    promotes exactly when the verdict says so."""
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.learning.decision import FIXED_MODES
    from brainrank.ranker.learning.train import TrainOptions, train
    from brainrank.ranker.registry.registry import Registry

    shutil.copytree(sample_config.workspace, tmp_path / "ws")
    cfg = few_holdout_queries(make_config(tmp_path / "ws"))
    queries, qrels = read_queries(DATA / "queries.jsonl"), read_qrels(DATA / "qrels-train.txt")
    result = train(cfg, queries, qrels, options=TrainOptions(max_epochs=8))
    decision, cv = result.decision, result.summary["cross_validation"]
    assert result.summary["holdout_queries"] < cfg.promotion.min_holdout_queries
    assert decision.method == CROSS_VALIDATION
    assert decision.queries == cv["queries"] == len(qrels)
    assert [c.against for c in decision.comparisons] == list(FIXED_MODES)
    for c in decision.comparisons:  # each difference is the gap between the recorded means
        gap = cv["nDCG@10"]["challenger"] - cv["nDCG@10"][c.against]
        assert c.mean == pytest.approx(gap, abs=1e-4)  # the means are recorded to 4 places
        assert c.low <= c.mean <= c.high
    assert decision.promote == all(c.low > SETTINGS.margin for c in decision.comparisons)
    registry = Registry(cfg.workspace / "models")
    assert result.promoted == decision.promote
    assert (registry.champion() is not None) == decision.promote
    assert Decision.from_dict(registry.get(result.version).meta["promotion"]) == decision


def test_against_a_champion_only_its_unseen_queries_count(trained_config, tmp_path):
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.learning.train import TrainOptions, train
    from brainrank.ranker.registry.registry import Registry

    shutil.copytree(trained_config.workspace, tmp_path / "ws")
    cfg = few_holdout_queries(make_config(tmp_path / "ws"))
    registry = Registry(cfg.workspace / "models")
    before = registry.champion()
    queries, qrels = read_queries(DATA / "queries.jsonl"), read_qrels(DATA / "qrels-train.txt")
    result = train(cfg, queries, qrels, options=TrainOptions(max_epochs=8))
    unseen = set(before.meta["holdout_queries"])
    assert 0 < len(unseen) < cfg.promotion.min_holdout_queries
    assert result.decision.queries == len(unseen) and not result.decision.promote
    assert "min_holdout_queries" in result.decision.reason
    assert not result.promoted and registry.champion().version == before.version
