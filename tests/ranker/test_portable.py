"""The ranker scored in numpy from its exported weights, held to TensorFlow's own scores."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from brainrank.index.errors import BrainrankError
from brainrank.ranker.learning.portable import (
    PORTABLE_FILE,
    TOLERANCE,
    WEIGHTS_FILE,
    PortableRanker,
    load_for_serving,
    main,
)
from brainrank.ranker.learning.portable_export import write_portable
from brainrank.ranker.learning.ranker_params import (
    PARAMS_FILE,
    RankerParams,
    read_params,
)

tfr_model = pytest.importorskip("brainrank.ranker.learning.tfr_model")
ListwiseRanker = tfr_model.ListwiseRanker

N_FEATURES = 5
BASE = 3  # the residual variants' base feature: a noisy copy of the relevance signal
FAST = dict(learning_rate=1e-2, batch_size=16, max_epochs=4, patience=4, dropout=0.1)
VARIANTS = {
    "dnn": dict(scorer="dnn", hidden=(16, 8)),
    "gam": dict(scorer="gam", hidden=(8, 4)),
    "dnn_residual": dict(scorer="dnn", hidden=(16,), residual_feature=BASE, base_weight=1.5),
    "gam_residual": dict(scorer="gam", hidden=(8,), residual_feature=BASE, base_weight=1.5),
}
SAVED_FILES = [PORTABLE_FILE, "ranker.json", "ranker.weights.h5", WEIGHTS_FILE]


def make_lists(n_lists: int, seed: int, list_size: int = 16):
    """Labels 0-2 from a nonlinear signal of x0..x2; x3 is the signal plus heavy noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_lists, list_size, N_FEATURES)).astype(np.float32)
    signal = np.sin(3 * x[..., 0]) + x[..., 1] ** 2 - np.abs(x[..., 2])
    x[..., BASE] = signal + 2.0 * rng.normal(size=signal.shape)
    cuts = np.quantile(signal, [0.7, 0.9], axis=1)[..., None]
    y = (signal > cuts[0]).astype(np.float32) + (signal > cuts[1])
    return x, y


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each variant trained briefly and saved: name -> (TF ranker, its folder)."""
    data = (*make_lists(64, seed=0), *make_lists(24, seed=1))
    root = tmp_path_factory.mktemp("portable")
    out = {}
    for name, params in VARIANTS.items():
        ranker = ListwiseRanker.create(N_FEATURES, RankerParams(**FAST, **params))
        ranker.fit(*data)
        ranker.save(root / name)
        out[name] = (ranker, root / name)
    return out


def fresh_inputs(seed: int = 11) -> np.ndarray:
    """Lists the check at export never saw, over a wider range than training's."""
    rng = np.random.default_rng(seed)
    return (0.5 + 2.0 * rng.normal(size=(4, 30, N_FEATURES))).astype(np.float32)


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def copy_ranker(saved, name: str, dest, *, old_style: bool = False):
    shutil.copytree(saved[name][1], dest)
    if old_style:  # as saved before the portable files existed
        (dest / WEIGHTS_FILE).unlink()
        (dest / PORTABLE_FILE).unlink()
    return dest


def test_save_writes_the_portable_files_beside_the_model(saved):
    ranker, folder = saved["gam_residual"]
    assert sorted(p.name for p in folder.iterdir()) == SAVED_FILES
    # portable reads ranker.json without importing tfr_model, through the same reader.
    assert read_params(folder / PARAMS_FILE) == (ranker.n_features, ranker.params)
    spec = json.loads((folder / PORTABLE_FILE).read_text())
    assert spec["scorer"] == "gam" and spec["n_features"] == N_FEATURES
    assert (spec["base_feature"], spec["base_weight"]) == (BASE, 1.5)
    assert 0 <= spec["check"]["max_diff"] <= spec["check"]["tolerance"] == TOLERANCE
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(
        arrays["standardize.mean"], ranker.model.get_layer("standardize").get_weights()[0]
    )
    # One stacked tower per feature: [F, in, out] kernels, hidden (8,) then the output unit.
    assert arrays["tower0.kernel"].shape == (N_FEATURES, 1, 8)
    assert arrays["tower1.kernel"].shape == (N_FEATURES, 8, 1)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_numpy_scores_match_tensorflow(name, saved):
    ranker, folder = saved[name]
    portable = PortableRanker.load(folder)
    assert portable.params == ranker.params and portable.n_features == N_FEATURES
    x = fresh_inputs()
    tf_scores, np_scores = ranker.score(x), portable.score(x)
    assert np_scores.shape == tf_scores.shape and np_scores.dtype == tf_scores.dtype
    assert max_diff(np_scores, tf_scores) <= TOLERANCE
    docs = x.reshape(-1, N_FEATURES)
    assert max_diff(portable.score_docs(docs), ranker.score_docs(docs)) <= TOLERANCE
    assert max_diff(portable.score(x[0]), ranker.score(x[0])) <= TOLERANCE
    assert portable.score_docs(docs[:0]).shape == ranker.score_docs(docs[:0]).shape == (0,)
    if "residual" in name:  # the learned correction moved off zero, so it is tested too
        assert max_diff(tf_scores, 1.5 * x[..., BASE]) > 1e-3
    if ranker.params.scorer == "gam":
        sub = portable.subscores(docs)
        assert sub.shape == docs.shape and sub.dtype == np.float32
        assert max_diff(sub, ranker.subscores(docs)) <= TOLERANCE
        np.testing.assert_allclose(sub.sum(axis=1), portable.score_docs(docs), atol=1e-5)


@pytest.mark.parametrize("scorer", ["dnn", "gam"])
def test_untrained_residual_model_ranks_by_base_feature(scorer, tmp_path):
    params = RankerParams(scorer=scorer, hidden=(8,), residual_feature=2, base_weight=2.0)
    ListwiseRanker.create(N_FEATURES, params).save(tmp_path / "r")
    portable = PortableRanker.load(tmp_path / "r")
    x = fresh_inputs()
    np.testing.assert_array_equal(portable.score(x), 2.0 * x[..., 2])


def test_bad_inputs_get_tensorflows_messages(saved):
    ranker = saved["dnn"][0]
    portable = PortableRanker.load(saved["dnn"][1])
    x = fresh_inputs()
    nan = x[0].copy()
    nan[3, 1] = np.nan
    calls = [("score", x[..., :4]), ("score_docs", x[0, :, 0]), ("score_docs", nan)]
    calls += [("score", x[None]), ("subscores", x[0])]
    for method, bad in calls:
        with pytest.raises(ValueError) as expected:
            getattr(ranker, method)(bad)
        with pytest.raises(ValueError) as got:
            getattr(portable, method)(bad)
        assert str(got.value) == str(expected.value)


def test_serving_imports_no_tensorflow(saved):
    folder = saved["gam_residual"][1]
    code = (
        "import sys, numpy as np\n"
        "from brainrank.ranker.learning.portable import PortableRanker, load_for_serving\n"
        f"x = np.ones((7, {N_FEATURES}), np.float32)\n"
        f"assert PortableRanker.load({str(folder)!r}).score_docs(x).shape == (7,)\n"
        f"assert load_for_serving({str(folder)!r}).subscores(x).shape == x.shape\n"
        "heavy = ('tensorflow', 'tensorflow_ranking', 'keras')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_old_model_version_is_exported_on_first_load(saved, tmp_path):
    from brainrank.ranker.learning.learned import RANKER_DIR, LearnedModel
    from brainrank.ranker.registry.version import load_version

    folder = tmp_path / "v0001"
    folder.mkdir()
    ranker_dir = copy_ranker(saved, "dnn_residual", folder / RANKER_DIR, old_style=True)
    meta = {
        "version": "v0001",
        "created": "2026-12-01T10:00:00+00:00",
        "feature_schema": {
            "version": 1,
            "names": [f"f{j}" for j in range(N_FEATURES)],
            "dense_weight": 0.6,
            "rrf_k": 60,
        },
    }
    (folder / "model.json").write_text(json.dumps(meta))
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    model = LearnedModel.load(load_version(folder))
    assert isinstance(model.ranker, PortableRanker)
    after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    added = sorted(p.name for p in set(after) - set(before))
    assert added == [PORTABLE_FILE, WEIGHTS_FILE]  # and no temporary file left behind
    assert all(after[p] == data for p, data in before.items())
    x = fresh_inputs()[0]
    assert max_diff(model.ranker.score_docs(x), saved["dnn_residual"][0].score_docs(x)) <= 1e-5
    # Later loads read the exported files as they are.
    stamp = (ranker_dir / PORTABLE_FILE).stat().st_mtime_ns
    assert isinstance(LearnedModel.load(load_version(folder)).ranker, PortableRanker)
    assert (ranker_dir / PORTABLE_FILE).stat().st_mtime_ns == stamp


def test_unwritable_folder_serves_tensorflow_and_says_how_to_fix(saved, tmp_path, caplog):
    folder = copy_ranker(saved, "gam", tmp_path / "ranker", old_style=True)
    # A folder in the way of weights.npz: the rename fails as it would in a read-only folder
    # (which this test cannot rely on: root writes anywhere).
    (folder / WEIGHTS_FILE).mkdir()
    (folder / WEIGHTS_FILE / "keep").write_text("")
    names = sorted(p.name for p in folder.iterdir())
    with caplog.at_level(logging.WARNING, logger="brainrank.ranker.learning.portable"):
        ranker = load_for_serving(folder, "model v0007")
    assert isinstance(ranker, ListwiseRanker)
    assert sorted(p.name for p in folder.iterdir()) == names
    assert "model v0007" in caplog.text
    assert f"python -m brainrank.ranker.learning.portable {folder}" in caplog.text
    # The command the warning names exports once the folder can be written.
    shutil.rmtree(folder / WEIGHTS_FILE)
    assert main([str(folder)]) == 0
    assert isinstance(load_for_serving(folder), PortableRanker)


@pytest.mark.parametrize("scorer", ["dnn", "gam"])
def test_a_feature_with_a_narrow_range_still_exports(scorer, tmp_path):
    """Standard-normal check inputs to a feature trained on a 1e-3 range give scores in the
    hundreds, where float32 rounding exceeds any absolute 1e-5: the check scales by them."""
    x, y = make_lists(32, seed=3)
    x[..., 4] = 1e-3 * x[..., 0]  # a copy of the signal on a tiny scale
    ranker = ListwiseRanker.create(N_FEATURES, RankerParams(**FAST, scorer=scorer, hidden=(16,)))
    ranker.fit(x, y, *make_lists(8, seed=4))
    ranker.save(tmp_path)  # raised "differs from TensorFlow" with an absolute tolerance
    spec = json.loads((tmp_path / PORTABLE_FILE).read_text())
    assert spec["check"]["max_diff"] <= TOLERANCE
    wide = np.random.default_rng(5).standard_normal((2, 20, N_FEATURES)).astype(np.float32)
    tf_scores = ranker.score(wide)
    assert np.abs(tf_scores).max() > 10  # the regime the scaled tolerance is for
    np_scores = PortableRanker.load(tmp_path).score(wide)
    assert max_diff(np_scores, tf_scores) <= TOLERANCE * np.abs(tf_scores).max()


def test_a_failed_check_writes_nothing(saved, tmp_path):
    class Drifted:
        """A ranker whose TensorFlow scores no longer follow its weights, as a bug would do."""

        def __init__(self, ranker):
            self._ranker = ranker

        def __getattr__(self, name):
            return getattr(self._ranker, name)

        def score(self, x):
            return self._ranker.score(x) + 1e-3

    drifted = r"differs from TensorFlow by 0\.\d+ \(> 1e-05, relative"
    with pytest.raises(BrainrankError, match=drifted):
        write_portable(Drifted(saved["dnn"][0]), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_broken_files_raise_errors_naming_the_file(saved, tmp_path):
    folder = copy_ranker(saved, "gam", tmp_path / "ranker")
    weights, spec = folder / WEIGHTS_FILE, folder / PORTABLE_FILE
    good_weights, good_spec = weights.read_bytes(), spec.read_text()

    for broken in (b"not a zip", good_weights[: len(good_weights) // 2]):
        weights.write_bytes(broken)
        with pytest.raises(BrainrankError, match=re.escape(f"weights {weights}")):
            PortableRanker.load(folder)
    shutil.copyfile(saved["gam_residual"][1] / WEIGHTS_FILE, weights)  # another model's
    with pytest.raises(BrainrankError, match=re.escape(f"{weights} does not belong with")):
        PortableRanker.load(folder)
    weights.write_bytes(good_weights)

    spec.write_text(good_spec[:40])
    with pytest.raises(BrainrankError, match=re.escape(f"portable ranker {spec}")):
        load_for_serving(folder)
    spec.write_text(good_spec.replace('"scorer": "gam"', '"scorer": "dnn"'))
    with pytest.raises(BrainrankError, match=f"{PORTABLE_FILE}.*scorer.*disagree"):
        PortableRanker.load(folder)
    spec.unlink()
    with pytest.raises(BrainrankError, match=f"has no {PORTABLE_FILE}"):
        PortableRanker.load(folder)
