"""Seed ensembles: K DNNs trained as one model on their own losses, served as one wide DNN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from brainrank.ranker.learning.ranker_params import RankerParams

tfr_model = pytest.importorskip("brainrank.ranker.learning.tfr_model")
from brainrank.ranker.learning.portable import PortableRanker  # noqa: E402

ListwiseRanker = tfr_model.ListwiseRanker
N_FEATURES = 5
BASE = 2
K = 3
PARAMS = RankerParams(
    hidden=(8, 4), max_epochs=8, patience=8, learning_rate=1e-2, residual_feature=BASE,
    base_weight=0.5, seed=3, members=K,
)  # fmt: skip


def lists(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12, N_FEATURES)).astype(np.float32)
    signal = np.sin(2 * x[..., 0]) + x[..., 1] ** 2 + 0.3 * x[..., BASE]
    y = (signal > np.quantile(signal, 0.7, axis=1, keepdims=True)).astype(np.float32)
    y += signal > np.quantile(signal, 0.9, axis=1, keepdims=True)
    return x, y


@pytest.fixture(scope="module")
def trained():
    x, y = lists(120, 0)
    ranker = ListwiseRanker.create(N_FEATURES, PARAMS)
    history = ranker.fit(x, y, *lists(40, 2))
    return ranker, history


def member_scores(ranker, docs: np.ndarray) -> np.ndarray:
    """Each member's scores [n, K], computed in numpy from its own weights alone."""
    w = {layer.name: layer.get_weights() for layer in ranker.model.layers if layer.weights}
    mean, scale = w["standardize"]
    h = (docs - mean) / scale
    out = []
    for k in range(K):
        kernel, bias = w["dense_0"]  # the members' first layers side by side
        cols = slice(k * PARAMS.hidden[0], (k + 1) * PARAMS.hidden[0])
        a = np.maximum(h @ kernel[:, cols] + bias[cols], 0)
        kernel, bias = w["dense_1"]  # [K, 8, 4]
        a = np.maximum(a @ kernel[k] + bias[k], 0)
        kernel, bias = w["parts"]  # [K, 4, 1]
        out.append((a @ kernel[k] + bias[k])[:, 0] + PARAMS.base_weight * docs[:, BASE])
    return np.stack(out, axis=1)


def test_each_member_has_its_own_weights_and_start(trained):
    ranker, history = trained
    assert history["epochs"] >= 1 and 0 < history["best_val_ndcg10"] <= 1
    w = {layer.name: layer.get_weights()[0] for layer in ranker.model.layers if layer.weights}
    assert w["dense_0"].shape == (N_FEATURES, 8 * K)
    assert w["dense_1"].shape == (K, 8, 4) and w["parts"].shape == (K, 4, 1)
    first = w["dense_0"]
    assert not np.allclose(first[:, :8], first[:, 8:16])
    assert not np.allclose(w["dense_1"][0], w["dense_1"][1])
    # Started from zero (residual), each member's last layer learned its own correction.
    assert w["parts"].any() and not np.allclose(w["parts"][0], w["parts"][1])


def test_the_score_is_the_members_mean_and_the_members_differ(trained):
    ranker, _ = trained
    docs = lists(20, 1)[0].reshape(-1, N_FEATURES)
    each = member_scores(ranker, docs)
    np.testing.assert_allclose(ranker.score_docs(docs), each.mean(axis=1), rtol=1e-4, atol=1e-4)
    assert np.abs(each[:, 0] - each[:, 1]).max() > 1e-2


def test_the_served_form_is_one_wide_dnn_with_the_same_scores(trained, tmp_path):
    ranker, _ = trained
    docs = lists(20, 1)[0].reshape(-1, N_FEATURES)
    served = ranker.copy()
    assert served.params == dataclasses.replace(PARAMS, hidden=(24, 12), members=1)
    np.testing.assert_allclose(served.score_docs(docs), ranker.score_docs(docs), atol=1e-5)
    ranker.save(tmp_path / "ranker")  # saved in its served form
    loaded = ListwiseRanker.load(tmp_path / "ranker")
    assert loaded.params.members == 1 and loaded.params.hidden == (24, 12)
    np.testing.assert_allclose(loaded.score_docs(docs), ranker.score_docs(docs), atol=1e-5)
    portable = PortableRanker.load(tmp_path / "ranker")
    np.testing.assert_allclose(portable.score_docs(docs), ranker.score_docs(docs), atol=1e-5)


def test_an_ensemble_is_of_dnns_only():
    with pytest.raises(ValueError, match="members > 1 needs scorer='dnn'"):
        RankerParams(scorer="gam", members=2)
    with pytest.raises(ValueError, match="members"):
        RankerParams(members=0)
