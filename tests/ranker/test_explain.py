"""SHAP attributions of the learned ranker: additivity, the GAM identity, exact vs sampled."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("shap", reason="explanations need SHAP: pip install -e .")

from brainrank.index.errors import InputError
from brainrank.ranker.learning.explain import (
    candidate_features,
    explain,
    gam_shap,
    gam_subscores,
    standing,
    subsample,
    why_not,
)
from brainrank.ranker.learning.features import FeatureSchema
from brainrank.ranker.learning.learned import LearnedModel


def tiny_model(n_features: int, scorer: str, seed: int = 0) -> LearnedModel:
    """An untrained ranker over synthetic features: random but fixed weights are enough here."""
    from brainrank.ranker.learning.ranker_params import RankerParams
    from brainrank.ranker.learning.tfr_model import ListwiseRanker

    params = RankerParams(scorer=scorer, hidden=(16, 8), dropout=0.0, max_epochs=0, seed=seed)
    ranker = ListwiseRanker.create(n_features, params)
    schema = FeatureSchema(names=tuple(f"f{j}" for j in range(n_features)))
    return LearnedModel(None, ranker, schema, gate=None, clicks=None)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return rng.normal(size=(12, 6)).astype(np.float32), rng.normal(size=(40, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def dnn():
    return tiny_model(6, "dnn", seed=1)


@pytest.fixture(scope="module")
def gam():
    return tiny_model(6, "gam", seed=2)


def test_values_plus_base_value_add_up_to_the_score(dnn, data):
    x, bg = data
    ex = explain(dnn, x, bg)
    scores = dnn.ranker.score_docs(x)
    np.testing.assert_allclose(ex.values.sum(axis=1) + ex.base_values, scores, atol=1e-5)
    np.testing.assert_allclose(ex.scores, scores, atol=1e-6)
    # The base value is the mean score over the background: nothing known about the document.
    np.testing.assert_allclose(ex.base_values, dnn.ranker.score_docs(bg).mean(), atol=1e-5)
    assert ex.values.shape == (12, 6) and ex.feature_names == tuple(f"f{j}" for j in range(6))


def test_gam_subscores_sum_to_the_score(gam, data):
    x, _ = data
    sub = gam_subscores(gam, x)
    assert sub.shape == x.shape
    np.testing.assert_allclose(sub.sum(axis=1), gam.ranker.score_docs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["permutation", "exact", "additive", "auto"])
def test_gam_shap_is_the_subscore_minus_its_background_mean(gam, data, method):
    # f(x) = sum_j f_j(x_j). With an Independent masker the value of a coalition S is
    # sum_{j in S} f_j(x_j) + sum_{j not in S} mean_b f_j(b_j), so adding feature j to any
    # coalition adds f_j(x_j) - mean_b f_j(b_j): every permutation gives exactly that.
    # "additive" (what "auto" picks for a GAM) computes that closed form directly.
    x, bg = data
    ex = explain(gam, x, bg, method=method)
    assert ex.method == ("additive" if method == "auto" else method)
    np.testing.assert_allclose(ex.values.sum(axis=1) + ex.base_values, ex.scores, atol=2e-5)
    sub_x, sub_bg = gam_subscores(gam, x), gam_subscores(gam, bg)
    expected = sub_x - sub_bg.mean(axis=0)
    np.testing.assert_allclose(ex.values, expected, atol=2e-5)
    np.testing.assert_allclose(ex.base_values, sub_bg.sum(axis=1).mean(), atol=2e-5)
    np.testing.assert_allclose(gam_shap(gam, x, bg), expected)
    # So per feature, SHAP values and sub-scores differ by one constant (the centring).
    for j in range(x.shape[1]):
        assert np.corrcoef(ex.values[:, j], sub_x[:, j])[0, 1] > 0.9999
        shift = sub_x[:, j] - ex.values[:, j]
        np.testing.assert_allclose(shift, shift.mean(), atol=2e-5)


def test_permutation_agrees_with_exact_on_a_small_network(dnn, data):
    x, bg = data
    exact = explain(dnn, x, bg, method="exact")
    sampled = explain(dnn, x, bg, method="permutation", permutations=40)
    assert exact.method == "exact" and sampled.method == "permutation"
    assert np.corrcoef(exact.values.ravel(), sampled.values.ravel())[0, 1] > 0.99
    scale = np.abs(exact.values).max()
    assert np.abs(exact.values - sampled.values).max() < 0.1 * scale
    np.testing.assert_allclose(exact.base_values, sampled.base_values, atol=1e-6)
    assert explain(dnn, x[:2], bg, method="auto").method == "exact"  # 6 features: exact


def test_background_defaults_to_the_rows_and_is_subsampled(dnn, data):
    x, bg = data
    own = explain(dnn, x)
    np.testing.assert_allclose(own.base_values, dnn.ranker.score_docs(x).mean(), atol=1e-5)
    assert own.background_size == len(x)
    small = explain(dnn, x[:3], bg, max_background=10)
    picked = subsample(bg, 10, seed=0)
    assert small.background_size == 10 and len(picked) == 10
    np.testing.assert_allclose(small.base_values, dnn.ranker.score_docs(picked).mean(), atol=1e-5)
    np.testing.assert_array_equal(subsample(bg, 10, seed=0), picked)  # deterministic


def test_why_not_differences_sum_to_the_score_gap(dnn, data):
    x, bg = data
    scores = dnn.ranker.score_docs(x)
    low, high = int(np.argmin(scores)), int(np.argmax(scores))
    wn = why_not(dnn, x[low], x[high], bg)
    assert wn.difference.sum() == pytest.approx(scores[low] - scores[high], abs=1e-5)
    np.testing.assert_allclose(wn.difference, wn.target_values - wn.above_values)
    holding = wn.holding_back()
    assert all(v < 0 for _, v in holding)
    assert [v for _, v in holding] == sorted(v for _, v in holding)


def test_bad_inputs_name_the_problem(dnn, gam, data):
    x, bg = data
    with pytest.raises(InputError, match="shape"):
        explain(dnn, x[:, :3], bg)
    with pytest.raises(InputError, match="unknown explanation method"):
        explain(dnn, x, bg, method="kernel")
    with pytest.raises(InputError, match="GAM"):
        gam_subscores(dnn, x)
    with pytest.raises(InputError, match="additive explanation needs a GAM ranker"):
        explain(dnn, x, bg, method="additive")
    with pytest.raises(InputError, match="empty"):
        why_not(dnn, x[0], x[:0], bg)
    empty = explain(gam, x[:0], bg)
    assert empty.values.shape == (0, 6)


# ----- on the trained sample model ---------------------------------------------------------


def test_twenty_results_explain_quickly_and_match_the_served_scores(trained_config, encoder):
    from brainrank.ranker.retrieval.search import SearchEngine

    engine = SearchEngine(trained_config, encoder=encoder)
    query = "money back if I change my mind"
    result = engine.search(query, k=20, mode="learned")
    features = candidate_features(engine, query)
    assert features.in_domain and features.model_version == result.model
    model, _ = engine.model()
    x = features.rows([h.doc_id for h in result.hits])
    explain(model, x[:2], features.features)  # trace the scorer once
    started = time.perf_counter()
    ex = explain(model, x, features.features)
    seconds = time.perf_counter() - started
    served = np.array([h.score for h in result.hits])
    np.testing.assert_allclose(ex.scores, served, rtol=1e-6)
    np.testing.assert_allclose(ex.values.sum(axis=1) + ex.base_values, served, atol=1e-5)
    assert ex.values.shape == (20, len(model.schema.names))
    # The budget is 2 s; allow for a loaded shared machine, report the real figure.
    print(f"SHAP for 20 results x {x.shape[1]} features: {seconds:.2f}s")
    assert seconds < 10


def test_standing_agrees_with_the_search_engine(trained_config, encoder):
    from brainrank.ranker.retrieval.search import SearchEngine

    engine = SearchEngine(trained_config, encoder=encoder)
    query = "money back"
    full = engine.search(query, k=1000, mode="hybrid")
    doc = full.hits[4].doc_id
    s = standing(engine, query, doc, full)
    assert s.exists and s.candidate and s.final_rank == 5
    assert s.bm25_list_rank == full.hits[4].signals.get("bm25_rank")
    assert s.dense_list_rank == full.hits[4].signals.get("dense_rank")
    assert s.bm25_score == pytest.approx(full.hits[4].signals["bm25"], rel=1e-6)

    cand = engine.candidates(query, "hybrid")
    inside = {engine.generation.doc_ids[p] for p in cand.positions}
    outside = next(d for d in engine.generation.doc_ids if d not in inside)
    far = standing(engine, query, outside, full)
    assert far.exists and not far.candidate and far.final_rank is None
    assert far.dense_collection_rank > engine.cfg.retrieval.candidates
    assert not standing(engine, query, "nope", full).exists


def test_standing_and_decomposition_under_filters(trained_config, encoder):
    from brainrank.ranker.learning.decompose import decompose
    from brainrank.ranker.retrieval.search import SearchEngine

    engine = SearchEngine(trained_config, encoder=encoder)
    query, where = "money back", ["category = catalog"]
    filtered = engine.search(query, k=1000, mode="hybrid", where=where)
    _, allowed = engine.filter_mask(where)
    ids = engine.generation.doc_ids
    unfiltered = engine.search(query, k=10, mode="hybrid").hits
    # The best help article, which the filter removes.
    everything = next(h.doc_id for h in unfiltered if not allowed[ids.index(h.doc_id)])

    s = standing(engine, query, everything, filtered)
    assert s.exists and not s.candidate and s.final_rank is None
    assert s.filters == ("category = catalog",) and s.failed == ("category = catalog",)
    bm25 = engine.generation.bm25.scores(query)
    pos = ids.index(everything)
    assert s.bm25_collection_rank == int(((bm25 > bm25[pos]) & allowed).sum()) + 1

    hit = filtered.hits[3]
    inside = standing(engine, query, hit.doc_id, filtered)
    assert inside.candidate and inside.final_rank == 4 and inside.failed == ()
    assert inside.bm25_list_rank == hit.signals.get("bm25_rank")
    assert inside.dense_list_rank == hit.signals.get("dense_rank")

    # The score parts are those of the filtered search: same candidates, same scores.
    parts = decompose(engine, query, "hybrid", where=where)
    assert {p.doc_id for p in parts.parts} == {h.doc_id for h in filtered.hits}
    for h in filtered.hits[:10]:
        assert parts[h.doc_id].score == pytest.approx(h.score, rel=1e-6)
