"""ListwiseRanker on synthetic lists whose relevance is a known nonlinear function of features."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from brainrank.index.errors import BrainrankError
from brainrank.ranker.learning.ranker_params import RankerParams

tfr_model = pytest.importorskip("brainrank.ranker.learning.tfr_model")
from brainrank.ranker.learning.ranker_files import LEGACY_MODEL_FILE, WEIGHTS_FILE  # noqa: E402
from brainrank.ranker.learning.ranker_params import PARAMS_FILE  # noqa: E402

ListwiseRanker = tfr_model.ListwiseRanker

N_FEATURES = 6  # x0..x2 carry the signal, x3..x5 are pure noise
NOISE = [3, 4, 5]
FAST = dict(learning_rate=3e-3, batch_size=16, max_epochs=15, patience=4)


def relevance_signal(x: np.ndarray) -> np.ndarray:
    """Additive but nonlinear: a linear model sees almost nothing of x1**2 or |x2|."""
    return np.sin(3 * x[..., 0]) + 1.5 * x[..., 1] ** 2 - 1.5 * np.abs(x[..., 2])


def make_lists(n_lists: int, list_size: int, seed: int, min_size: int | None = None):
    """Graded labels 0-4 from within-list quantiles of the signal plus noise; lists shorter than
    ``list_size`` (when ``min_size`` is given) are padded with label -1 and random features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_lists, list_size, N_FEATURES)).astype(np.float32)
    g = relevance_signal(x) + 0.2 * rng.normal(size=(n_lists, list_size))
    y = np.zeros((n_lists, list_size), dtype=np.float32)
    sizes = rng.integers(min_size or list_size, list_size + 1, size=n_lists)
    for i, n in enumerate(sizes):
        cuts = np.quantile(g[i, :n], [0.6, 0.8, 0.9, 0.95])
        y[i, :n] = (g[i, :n, None] > cuts).sum(axis=1)
        y[i, n:] = -1.0
    return x, y


def ndcg10(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean NDCG@10 (gain 2^y - 1, log2 discount) over lists, ignoring slots labelled < 0."""
    values = []
    for s, y in zip(scores, labels, strict=True):
        real = y >= 0
        s, y = s[real], y[real]
        discounts = 1.0 / np.log2(np.arange(2, min(10, len(y)) + 2))
        dcg = ((2.0 ** y[np.argsort(-s, kind="stable")][:10] - 1) * discounts).sum()
        ideal = ((2.0 ** np.sort(y)[::-1][:10] - 1) * discounts).sum()
        values.append(dcg / ideal)
    return float(np.mean(values))


@pytest.fixture(scope="module")
def data():
    x_train, y_train = make_lists(200, 24, seed=0, min_size=16)
    x_val, y_val = make_lists(80, 24, seed=1, min_size=16)
    return x_train, y_train, x_val, y_val


@pytest.fixture(scope="module")
def baselines(data):
    """NDCG@10 on validation of random scores and of least squares on the features."""
    x_train, y_train, x_val, y_val = data
    rng = np.random.default_rng(7)
    random = ndcg10(rng.normal(size=y_val.shape), y_val)
    real = y_train >= 0
    design = np.c_[x_train[real], np.ones(real.sum())]
    w, *_ = np.linalg.lstsq(design, y_train[real], rcond=None)
    linear = ndcg10(x_val @ w[:-1], y_val)
    return {"random": random, "linear": linear}


def _trained(data, **params):
    ranker = ListwiseRanker.create(N_FEATURES, RankerParams(**{**FAST, **params}))
    history = ranker.fit(*data)
    return ranker, history


@pytest.fixture(scope="module")
def dnn(data):
    return _trained(data, scorer="dnn", hidden=(32, 16))


@pytest.fixture(scope="module")
def gam(data):
    return _trained(data, scorer="gam", hidden=(16,))


@pytest.mark.parametrize("name", ["dnn", "gam"])
def test_beats_random_and_linear_baselines(name, request, data, baselines):
    ranker, history = request.getfixturevalue(name)
    _, _, x_val, y_val = data
    value = ndcg10(ranker.score(x_val), y_val)
    assert value > baselines["linear"] + 0.2
    assert value > baselines["random"] + 0.3
    assert value > 0.85
    # Best weights are restored, and Keras' metric agrees with the numpy NDCG above.
    assert value == pytest.approx(history["best_val_ndcg10"], abs=1e-4)
    assert 1 <= history["best_epoch"] <= history["epochs"] <= FAST["max_epochs"]
    assert history["seconds"] > 0


def test_gam_subscores_sum_to_score_and_ignore_noise(gam, data):
    ranker, _ = gam
    x = data[2][:10].reshape(-1, N_FEATURES)
    sub = ranker.subscores(x)
    assert sub.shape == x.shape
    assert ranker.gam_bias == 0.0
    np.testing.assert_allclose(
        sub.astype(np.float64).sum(axis=1) + ranker.gam_bias, ranker.score_docs(x), atol=1e-5
    )
    spread = sub.std(axis=0)
    assert spread[NOISE].max() < 0.1 * spread[1]
    # Each subscore is a function of its own feature alone: changing x1 moves only column 1.
    moved = x.copy()
    moved[:, 1] += 1.0
    delta = ranker.subscores(moved) - sub
    np.testing.assert_array_equal(np.delete(delta, 1, axis=1), 0.0)


def test_subscores_need_gam(dnn):
    with pytest.raises(ValueError, match="scorer='gam'"):
        dnn[0].subscores(np.zeros((3, N_FEATURES), np.float32))


@pytest.mark.parametrize("name", ["dnn", "gam"])
def test_padding_slots_change_neither_scores_nor_loss(name, request, data):
    ranker, _ = request.getfixturevalue(name)
    x, y = data[2][:1, :16], data[3][:1, :16]
    rng = np.random.default_rng(3)
    x_pad = np.concatenate([x, 5 * rng.normal(size=(1, 9, N_FEATURES))], axis=1)
    y_pad = np.concatenate([y, np.full((1, 9), -1.0)], axis=1)
    np.testing.assert_allclose(ranker.score(x_pad)[:, :16], ranker.score(x), atol=1e-6)
    plain, padded = ranker.evaluate(x, y), ranker.evaluate(x_pad, y_pad)
    assert padded["loss"] == pytest.approx(plain["loss"], rel=1e-6)
    assert padded["ndcg10"] == pytest.approx(plain["ndcg10"], abs=1e-6)


def test_scoring_is_per_document(dnn, data):
    ranker, _ = dnn
    x = data[2][0]
    scores = ranker.score_docs(x)
    perm = np.random.default_rng(0).permutation(len(x))
    np.testing.assert_allclose(ranker.score_docs(x[perm]), scores[perm], atol=1e-6)
    np.testing.assert_allclose(ranker.score_docs(x[:3]), scores[:3], atol=1e-6)
    np.testing.assert_array_equal(ranker.score(x), scores)
    assert ranker.score(data[2][:4]).shape == (4, 24)


@pytest.mark.parametrize("name", ["dnn", "gam"])
def test_save_load_gives_identical_scores(name, request, data, tmp_path):
    ranker, _ = request.getfixturevalue(name)
    x = data[2][:8]
    target = tmp_path / "ranker"
    ranker.save(target)
    ranker.save(target)  # replacing an existing folder works too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranker"]
    loaded = ListwiseRanker.load(target)
    assert loaded.params == ranker.params and loaded.n_features == N_FEATURES
    np.testing.assert_array_equal(loaded.score(x), ranker.score(x))
    if name == "gam":
        docs = x.reshape(-1, N_FEATURES)
        np.testing.assert_array_equal(loaded.subscores(docs), ranker.subscores(docs))


def test_load_errors_name_the_path(dnn, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(BrainrankError, match=str(missing)):
        ListwiseRanker.load(missing)
    target = tmp_path / "ranker"
    dnn[0].save(target)
    (target / WEIGHTS_FILE).write_bytes(b"not hdf5")
    with pytest.raises(BrainrankError, match="ranker.weights.h5"):
        ListwiseRanker.load(target)
    meta = target / PARAMS_FILE
    good_meta = meta.read_text()
    meta.write_text(json.dumps({"format": 1, "n_features": 6, "params": {"scorer": "tree"}}))
    with pytest.raises(BrainrankError, match="ranker.json.*scorer"):
        ListwiseRanker.load(target)
    (target / WEIGHTS_FILE).unlink()
    with pytest.raises(BrainrankError, match="has no ranker.weights.h5"):
        ListwiseRanker.load(target)
    meta.write_text(good_meta)
    (target / LEGACY_MODEL_FILE).write_bytes(b"not a zip")
    with pytest.raises(BrainrankError, match="model.keras: not a .keras archive"):
        ListwiseRanker.load(target)


def test_same_seed_same_scores(data):
    small = tuple(a[:48] for a in data)
    params = RankerParams(hidden=(16,), dropout=0.2, batch_size=8, max_epochs=2, seed=5)
    first = ListwiseRanker.create(N_FEATURES, params)
    # Creating another model in between re-seeds the process; fit must not depend on that.
    other = ListwiseRanker.create(N_FEATURES, dataclasses.replace(params, seed=6))
    first.fit(*small)
    second = ListwiseRanker.create(N_FEATURES, params)
    second.fit(*small)
    other.fit(*small)
    np.testing.assert_array_equal(first.score(small[2]), second.score(small[2]))
    assert not np.array_equal(first.score(small[2]), other.score(small[2]))


def test_reset_restores_the_created_model_and_copy_keeps_the_trained_one(data):
    small = tuple(a[:48] for a in data)
    params = RankerParams(scorer="gam", hidden=(8,), batch_size=8, max_epochs=2, patience=2)
    ranker = ListwiseRanker.create(N_FEATURES, params)
    created = [w.copy() for w in ranker.model.get_weights()]
    untrained = ranker.score(small[2])
    ranker.fit(*small)
    trained = ranker.score(small[2])
    assert not np.allclose(trained, untrained)
    kept = ranker.copy()
    np.testing.assert_array_equal(kept.score(small[2]), trained)

    # Back to the created weights (input statistics included) and a fresh Adam, with new
    # training lengths; the copy is untouched.
    assert ranker.reset(dataclasses.replace(params, max_epochs=3, patience=3)) is ranker
    for now, then in zip(ranker.model.get_weights(), created, strict=True):
        np.testing.assert_array_equal(now, then)
    assert all(not v.numpy().any() for v in ranker.model.optimizer.variables)
    np.testing.assert_array_equal(ranker.score(small[2]), untrained)
    np.testing.assert_array_equal(kept.score(small[2]), trained)
    history = ranker.fit(*small)
    assert history["epochs"] == 3 and ranker.params.max_epochs == 3
    assert ndcg10(ranker.score(small[2]), small[3]) > ndcg10(untrained, small[3])

    with pytest.raises(ValueError, match=r"not \['hidden'\]$"):  # only what may not change
        ranker.reset(dataclasses.replace(params, hidden=(4,), max_epochs=7))
    with pytest.raises(ValueError, match="create"):
        kept.reset()


@pytest.mark.parametrize("scorer", ["dnn", "gam"])
def test_untrained_residual_model_ranks_by_base_feature(scorer, data):
    params = RankerParams(scorer=scorer, hidden=(8,), residual_feature=2, base_weight=2.0)
    ranker = ListwiseRanker.create(N_FEATURES, params)
    x = data[2][:5]
    np.testing.assert_array_equal(ranker.score(x), 2.0 * x[..., 2])
    small = tuple(a[:16] for a in data)
    zero = ListwiseRanker.create(N_FEATURES, dataclasses.replace(params, max_epochs=0))
    history = zero.fit(*small)
    assert history["epochs"] == 0 and history["best_epoch"] == 0
    np.testing.assert_array_equal(zero.score(x), 2.0 * x[..., 2])
    if scorer == "gam":
        docs = x[0]
        sub = zero.subscores(docs)
        np.testing.assert_array_equal(np.delete(sub, 2, axis=1), 0.0)
        np.testing.assert_array_equal(sub[:, 2], 2.0 * docs[:, 2])


def test_residual_training_never_ends_below_base(data):
    x_train, y_train, x_val, y_val = data
    rng = np.random.default_rng(4)

    def with_base(x):  # feature 3 becomes a noisy, per-list normalised copy of the signal
        base = relevance_signal(x) + 2.5 * rng.normal(size=x.shape[:2])
        x = x.copy()
        x[..., 3] = (base - base.mean(axis=1, keepdims=True)) / base.std(axis=1, keepdims=True)
        return x

    x_train, x_val = with_base(x_train), with_base(x_val)
    params = RankerParams(hidden=(16,), residual_feature=3, **{**FAST, "max_epochs": 6})
    ranker = ListwiseRanker.create(N_FEATURES, params)
    base = ndcg10(x_val[..., 3], y_val)
    seen = []
    history = ranker.fit(x_train, y_train, x_val, y_val, on_epoch=lambda e, logs: seen.append(e))
    assert seen == list(range(1, history["epochs"] + 1))
    assert history["best_val_ndcg10"] >= base - 1e-4
    assert ndcg10(ranker.score(x_val), y_val) > base + 0.03


def test_approx_ndcg_loss_trains(data, baselines):
    ranker, history = _trained(data, scorer="dnn", hidden=(32, 16), loss="approx_ndcg")
    assert history["best_val_ndcg10"] > baselines["linear"] + 0.15


def test_bad_inputs_raise_value_errors(dnn, data):
    ranker, _ = dnn
    x_train, y_train, x_val, y_val = data
    with pytest.raises(ValueError, match=r"\[n_lists, list_size, 6\].*\(2, 24, 5\)"):
        ranker.score(x_val[:2, :, :5])
    with pytest.raises(ValueError, match=r"\[n_docs, 6\].*\(24,\)"):
        ranker.score_docs(x_val[0, :, 0])
    bad = x_val[:2].copy()
    bad[1, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf.*\(1, 3, 4\)"):
        ranker.score(bad)
    bad[1, 3, 4] = np.inf
    with pytest.raises(ValueError, match="NaN/inf"):
        ranker.fit(bad, y_val[:2], x_val, y_val)
    with pytest.raises(ValueError, match=r"y_train must have shape \(200, 24\)"):
        ranker.fit(x_train, y_train[:, :5], x_val, y_val)
    with pytest.raises(ValueError, match=">= 0, or -1"):
        ranker.fit(x_train, y_train - 0.5, x_val, y_val)
    with pytest.raises(ValueError, match="no positive label"):
        ranker.fit(x_train, y_train, x_val, np.zeros_like(y_val))


def test_bad_params_raise_value_errors():
    with pytest.raises(ValueError, match=r"RankerParams\.scorer='tree'.*dnn"):
        RankerParams(scorer="tree")
    with pytest.raises(ValueError, match=r"RankerParams\.hidden"):
        RankerParams(hidden=())
    with pytest.raises(ValueError, match=r"RankerParams\.dropout='high'.*\[0, 1\)"):
        RankerParams(dropout="high")
    with pytest.raises(ValueError, match=r"RankerParams\.residual_feature=9 is out of range"):
        ListwiseRanker.create(N_FEATURES, RankerParams(residual_feature=9))


def test_params_load_without_tensorflow():
    code = (
        "import sys; from brainrank.ranker.learning.ranker_params import RankerParams; "
        "RankerParams(); print(sorted(m for m in sys.modules if m.startswith('tensorflow')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_layers_keep_the_registered_names_saved_models_refer_to():
    from brainrank.ranker.learning.keras_layers import ListScore, Standardize

    layers = (Standardize, tfr_model.GAMSubscores, ListScore)
    names = [tfr_model.tf.keras.utils.get_registered_name(c) for c in layers]
    assert names == ["brainrank>Standardize", "brainrank>GAMSubscores", "brainrank>ListScore"]
