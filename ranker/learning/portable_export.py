"""Writing the portable ranker: a ``ListwiseRanker``'s inference weights read out of Keras into
``weights.npz`` and ``portable.json`` (see ``portable``), checked against TensorFlow first."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainrank.index.atomic import atomic_file
from brainrank.index.errors import BrainrankError
from brainrank.ranker.learning.portable import (
    ACTIVATIONS,
    CHECK_SEED,
    CHECK_SHAPE,
    FORMAT_VERSION,
    PORTABLE_FILE,
    TOLERANCE,
    WEIGHTS_FILE,
    PortableRanker,
    _digest,
)

if TYPE_CHECKING:
    from brainrank.ranker.learning.tfr_model import ListwiseRanker


def write_portable(ranker: ListwiseRanker, directory: Path) -> dict:
    """Write ``weights.npz`` and ``portable.json`` for ``ranker`` into ``directory``.

    Each file goes in under a temporary name and is renamed into place, weights first, so a
    ``portable.json`` always has its weights beside it. Raises BrainrankError, writing
    nothing, for a layer it cannot port or when numpy's scores (or GAM subscores) differ from
    TensorFlow's by more than ``TOLERANCE``. Returns the description written to portable.json.
    """
    directory = Path(directory)
    spec, arrays = _extract(ranker)
    portable = PortableRanker(ranker.n_features, ranker.params, spec, arrays)
    spec["check"] = _check(ranker, portable, arrays, directory)
    spec["weights_sha256"] = _digest(arrays)
    with atomic_file(directory / WEIGHTS_FILE, "wb") as fh:
        np.savez(fh, **arrays)
    with atomic_file(directory / PORTABLE_FILE) as fh:
        fh.write(json.dumps(spec, indent=2) + "\n")
    return spec


def _extract(ranker) -> tuple[dict, dict[str, np.ndarray]]:
    """The description and arrays of the model's inference pass, read from its layers."""
    layers = list(ranker.model.layers)
    kinds = [type(layer).__name__ for layer in layers]
    if kinds[:2] != ["InputLayer", "Standardize"] or kinds[-1] != "ListScore":
        raise BrainrankError(
            f"cannot port ranker layers {kinds}: expected InputLayer, Standardize, ..., ListScore"
        )
    mean, scale = (np.asarray(w, np.float32) for w in layers[1].get_weights())
    arrays = {"standardize.mean": mean, "standardize.scale": scale}
    body = layers[2:-1]
    if ranker.params.scorer == "gam":
        if len(body) != 1 or type(body[0]).__name__ != "GAMSubscores":
            raise BrainrankError(f"cannot port GAM ranker layers {kinds}: expected GAMSubscores")
        steps = _tower_steps(body[0], arrays)
    else:
        steps = _steps(body, "dense", arrays)
    base = layers[-1].get_config()
    spec = {
        "format": FORMAT_VERSION,
        "scorer": ranker.params.scorer,
        "n_features": ranker.n_features,
        "steps": steps,
        "base_feature": base.get("base_feature"),
        "base_weight": float(base.get("base_weight", 1.0)),
    }
    return spec, arrays


def _steps(layers, prefix: str, arrays: dict) -> list[dict]:
    """Inference steps of a chain of Keras layers; Dropout is the identity and is dropped."""
    steps = []
    for layer in layers:
        kind, cfg = type(layer).__name__, layer.get_config()
        if kind == "Dropout":
            continue
        if kind not in ("Dense", "Activation"):
            raise BrainrankError(
                f"cannot port layer {layer.name!r} ({kind}): only Dense, Activation and Dropout"
            )
        act = cfg.get("activation", "linear")
        if act not in ACTIVATIONS:
            raise BrainrankError(
                f"cannot port layer {layer.name!r}: activation {act!r} is not one of "
                f"{sorted(ACTIVATIONS)}"
            )
        if kind == "Activation":
            steps.append({"op": "activation", "activation": act})
            continue
        weights = layer.get_weights()
        kernel = np.asarray(weights[0], np.float32)
        bias = weights[1] if cfg.get("use_bias", True) else np.zeros(kernel.shape[1])
        key = f"{prefix}{sum(s['op'] == 'dense' for s in steps)}"
        arrays[f"{key}.kernel"], arrays[f"{key}.bias"] = kernel, np.asarray(bias, np.float32)
        steps.append({"op": "dense", "weights": key, "units": kernel.shape[1], "activation": act})
    return steps


def _tower_steps(layer, arrays: dict) -> list[dict]:
    """GAMSubscores' per-feature towers, stacked: kernels [F, in, out], biases [F, out]."""
    gam = layer.gam  # TF-Ranking's GAMLayer keeps its towers in _example_towers
    if getattr(gam, "_context_towers", None):
        raise BrainrankError("cannot port a GAM with context towers")
    per_tower = []
    for tower in gam._example_towers:
        own: dict[str, np.ndarray] = {}
        per_tower.append((_steps(tower.layers, "tower", own), own))
    steps = per_tower[0][0]
    if any(s != steps for s, _ in per_tower):
        raise BrainrankError("cannot port a GAM whose towers differ in structure")
    for key in per_tower[0][1]:
        arrays[key] = np.stack([own[key] for _, own in per_tower])
    return steps


def _check(ranker, portable: PortableRanker, arrays: dict, directory: Path) -> dict:
    """Max scaled |numpy - TensorFlow| on seeded batches; raises BrainrankError above TOLERANCE."""
    rng = np.random.default_rng(CHECK_SEED)
    mean, scale = arrays["standardize.mean"], arrays["standardize.scale"]
    shape = (*CHECK_SHAPE, ranker.n_features)
    batches = {
        "standard_normal": rng.standard_normal(shape),
        "training_range": mean + scale * rng.standard_normal(shape),  # standardised ~ N(0, 1)
    }
    diffs = {}
    for name, x in batches.items():
        x = x.astype(np.float32)
        diffs[name] = _max_diff(portable.score(x), ranker.score(x))
        if ranker.params.scorer == "gam":
            docs = x.reshape(-1, ranker.n_features)
            diffs[f"{name}_subscores"] = _max_diff(portable.subscores(docs), ranker.subscores(docs))
    worst = max(diffs.values())
    if not worst <= TOLERANCE:  # also catches NaN
        which = max(diffs, key=lambda k: diffs[k] if np.isfinite(diffs[k]) else np.inf)
        raise BrainrankError(
            f"the numpy ranker differs from TensorFlow by {worst:.3g} (> {TOLERANCE:g}, relative "
            f"to the scores' scale) on the {which} check batch; not writing {WEIGHTS_FILE} or "
            f"{PORTABLE_FILE} to {directory}"
        )
    return {
        "max_diff": worst,
        "diff": "max |numpy - TensorFlow| / max(1, max |TensorFlow|)",
        "per_batch": diffs,
        "tolerance": TOLERANCE,
        "seed": CHECK_SEED,
        "shape": list(shape),
        "tensorflow": _version("tensorflow"),
        "tensorflow_ranking": _version("tensorflow-ranking"),
    }


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a - b| over max(1, max |b|): absolute for scores near 1, relative for large ones."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    if not a.size:
        return 0.0
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def export_main(argv: list[str] | None = None) -> int:
    """``python -m brainrank.ranker.learning.portable RANKER_DIR...``: export old rankers."""
    dirs = sys.argv[1:] if argv is None else argv
    if not dirs:
        print("usage: python -m brainrank.ranker.learning.portable RANKER_DIR...", file=sys.stderr)
        return 1
    from brainrank.ranker.learning.tfr_model import ListwiseRanker

    for d in dirs:
        try:
            spec = write_portable(ListwiseRanker.load(Path(d)), Path(d))
        except (BrainrankError, OSError) as exc:
            print(f"{d}: {exc}", file=sys.stderr)
            return 1
        diff = spec["check"]["max_diff"]
        print(f"{d}: exported; numpy vs TensorFlow, scaled max difference {diff:.3g}")
    return 0
