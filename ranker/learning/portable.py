"""The learned ranker without TensorFlow: its weights as plain arrays, scored in numpy.

``portable_export.write_portable`` reads every weight the inference pass of a
``ListwiseRanker`` uses into ``weights.npz`` (plain arrays, no pickle) and ``portable.json``
(the steps in order, their activations, and how closely numpy reproduced TensorFlow), and
writes nothing when numpy and TensorFlow disagree by more than ``TOLERANCE`` on seeded batches.
``PortableRanker`` scores from those files with numpy alone, so the query path never imports
TensorFlow; ``load_for_serving`` exports, on first use, a ranker saved before these files existed.

The pass mirrored here is ``tfr_model._build_model`` at inference (dropout is the identity):

    h = (x - mean) / scale                                   Standardize
    dnn: h = act(h @ kernel + bias) per Dense, the last one [H, 1] -> parts [n, 1]
    gam: the same per feature j on h[:, j:j+1], one tower each     -> parts [n, F]
    score = parts.sum(-1) + base_weight * x[:, base_feature]  ListScore (base term optional)
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError
from brainrank.ranker.learning.ranker_params import (
    PARAMS_FILE,
    RankerParams,
    check_features,
    read_params,
)

WEIGHTS_FILE = "weights.npz"
PORTABLE_FILE = "portable.json"
FORMAT_VERSION = 1
# Largest |numpy - TensorFlow| allowed, relative to max(1, largest |score|) in the batch: float32
# sums over many features and hidden units drift with the scores' magnitude, and a standard-normal
# input to a feature with a narrow training range gives scores in the hundreds.
TOLERANCE = 1e-5
CHECK_SEED = 20261202
CHECK_SHAPE = (3, 50)  # lists x documents per check batch
# Documents per numpy pass: bounds memory (a GAM holds one [docs, hidden] block per feature).
_CHUNK_DOCS = 16384
ACTIVATIONS = {"linear": lambda a: a, "relu": lambda a: np.maximum(a, np.float32(0))}

log = logging.getLogger(__name__)


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the arrays' names, dtypes, shapes and bytes (not of the zip, which has dates)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ----- scoring ---------------------------------------------------------------------------------


class PortableRanker:
    """A ListwiseRanker's scores from its exported weights, in numpy (float32, like TF)."""

    def __init__(self, n_features: int, params: RankerParams, spec: dict, arrays: dict):
        self.n_features = n_features
        self.params = params
        self.spec = spec
        self._gam = spec["scorer"] == "gam"
        self._mean = _array(arrays, "standardize.mean", (n_features,))
        self._scale = _array(arrays, "standardize.scale", (n_features,))
        self._layers = []  # (kernel or None, bias or None, activation)
        width = 1 if self._gam else n_features
        for step in spec["steps"]:
            if step["op"] == "dense":
                units, key = int(step["units"]), step["weights"]
                lead = (n_features,) if self._gam else ()
                kernel = _array(arrays, f"{key}.kernel", (*lead, width, units))
                bias = _array(arrays, f"{key}.bias", (*lead, units))
                self._layers.append((kernel, bias[..., None, :], ACTIVATIONS[step["activation"]]))
                width = units
            else:
                self._layers.append((None, None, ACTIVATIONS[step["activation"]]))
        if width != 1:
            raise ValueError(f"the last dense step has {width} units; a score needs 1")
        self._base = spec.get("base_feature")
        self._base_weight = np.float32(spec.get("base_weight", 1.0))
        if self._base is not None and not 0 <= int(self._base) < n_features:
            raise ValueError(f"base_feature {self._base} is out of range for {n_features}")

    @property
    def gam_bias(self) -> float:
        """Constant to add to the summed subscores: always 0.0, as for ListwiseRanker."""
        return 0.0

    def score(self, x: np.ndarray) -> np.ndarray:
        """Scores [n_lists, list_size] for x [n_lists, list_size, F]; one list gives [list_size]."""
        x = self._check_x(x, ranks=(2, 3))
        return self._chunked(self._scores, x.reshape(-1, self.n_features)).reshape(x.shape[:-1])

    def score_docs(self, x: np.ndarray) -> np.ndarray:
        """Scores [n_docs] of the documents x [n_docs, F], a pure per-document function."""
        return self._chunked(self._scores, self._check_x(x, ranks=(2,)))

    def subscores(self, x: np.ndarray) -> np.ndarray:
        """GAM per-feature contributions [n_docs, F]; row sums equal ``score_docs(x)``.

        In residual mode the base term is part of that feature's subscore.
        """
        if not self._gam:
            raise ValueError(
                f"subscores need scorer='gam', this ranker's scorer is {self.params.scorer!r}"
            )
        return self._chunked(self._subscores, self._check_x(x, ranks=(2,)))

    def _parts(self, x: np.ndarray) -> np.ndarray:
        h = (x - self._mean) / self._scale
        if self._gam:
            h = h.T[:, :, None]  # [F, n, 1]: tower j reads column j
        for kernel, bias, act in self._layers:
            if kernel is not None:
                h = np.matmul(h, kernel) + bias
            h = act(h)
        return h[:, :, 0].T if self._gam else h  # [n, F] or [n, 1]

    def _scores(self, x: np.ndarray) -> np.ndarray:
        scores = self._parts(x).sum(axis=-1, dtype=np.float32)
        if self._base is not None:
            scores = scores + self._base_weight * x[:, self._base]
        return scores

    def _subscores(self, x: np.ndarray) -> np.ndarray:
        parts = self._parts(x)
        if self._base is not None:
            parts[:, self._base] += self._base_weight * x[:, self._base]
        return parts

    def _chunked(self, fn, x: np.ndarray) -> np.ndarray:
        if len(x) <= _CHUNK_DOCS:
            return fn(x).astype(np.float32, copy=False)
        out = [fn(x[i : i + _CHUNK_DOCS]) for i in range(0, len(x), _CHUNK_DOCS)]
        return np.concatenate(out).astype(np.float32, copy=False)

    def _check_x(self, x, ranks: tuple[int, ...], name: str = "x") -> np.ndarray:
        return check_features(x, self.n_features, ranks, name)

    # ----- loading ------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> PortableRanker:
        """Read ranker.json, portable.json and weights.npz; BrainrankError names a bad file."""
        directory = Path(directory)
        if not directory.is_dir():
            raise BrainrankError(f"ranker folder {directory} does not exist")
        for name in (PARAMS_FILE, PORTABLE_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise BrainrankError(f"ranker folder {directory} has no {name}")
        n_features, params = read_params(directory / PARAMS_FILE)
        spec_path, weights_path = directory / PORTABLE_FILE, directory / WEIGHTS_FILE
        try:
            spec = json.loads(spec_path.read_text(encoding="utf-8"))
            if spec["format"] != FORMAT_VERSION:
                raise ValueError(f"format {spec['format']!r}, expected {FORMAT_VERSION}")
            found = (spec["scorer"], spec["n_features"], spec["base_feature"])
            wanted = (params.scorer, n_features, params.residual_feature)
            if found != wanted:
                raise ValueError(
                    f"(scorer, n_features, base_feature) {found} disagree with {PARAMS_FILE}'s "
                    f"{wanted}"
                )
            steps = spec["steps"]
            if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
                raise ValueError("steps must be a list of objects")
            for s in steps:
                if s["op"] not in ("dense", "activation") or s["activation"] not in ACTIVATIONS:
                    raise ValueError(f"unknown step {s}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BrainrankError(f"cannot read portable ranker {spec_path}: {exc}") from exc
        arrays = _read_arrays(weights_path)
        if _digest(arrays) != spec.get("weights_sha256"):
            raise BrainrankError(
                f"{weights_path} does not belong with {spec_path} (checksum differs); delete "
                "both and load the model once with TensorFlow installed to export them again"
            )
        try:
            return cls(n_features, params, spec, arrays)
        except (ValueError, KeyError, TypeError) as exc:
            raise BrainrankError(f"bad portable ranker weights {weights_path}: {exc}") from exc


def _array(arrays: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in arrays:
        raise KeyError(f"missing array {key!r}")
    a = arrays[key]
    if a.shape != shape or not np.isfinite(a).all():
        raise ValueError(f"array {key!r} has shape {a.shape}, expected finite {shape}")
    return a.astype(np.float32, copy=False)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise BrainrankError(f"cannot read portable ranker weights {path}: {exc}") from exc


# ----- serving ---------------------------------------------------------------------------------


def load_for_serving(directory: Path, label: str = "model"):
    """The ranker the query path scores with: a PortableRanker, never importing TensorFlow.

    A ranker folder saved before the portable files existed is exported once (two new files,
    each renamed into place). When that fails, the TensorFlow ranker serves this process and a
    warning says how to fix it. ``label`` names the model in that warning.
    """
    directory = Path(directory)
    if (directory / PORTABLE_FILE).is_file():
        return PortableRanker.load(directory)
    from brainrank.ranker.learning.portable_export import write_portable
    from brainrank.ranker.learning.tfr_model import ListwiseRanker  # only for old versions

    ranker = ListwiseRanker.load(directory)
    try:
        write_portable(ranker, directory)
    except OSError as exc:
        fix = f"python -m brainrank.ranker.learning.portable {directory}"
        log.warning(
            f"{label}: cannot write its portable ranker into {directory} ({exc}); serving it "
            f"with TensorFlow in this process. Fix: run `{fix}` as a user who may write there"
        )
        return ranker
    except BrainrankError as exc:
        log.warning(f"{label}: serving its ranker with TensorFlow: {exc}")
        return ranker
    log.info("%s: exported its ranker to %s and %s", label, WEIGHTS_FILE, PORTABLE_FILE)
    return PortableRanker.load(directory)


def main(argv: list[str] | None = None) -> int:
    """``python -m brainrank.ranker.learning.portable RANKER_DIR...``: export old rankers."""
    from brainrank.ranker.learning.portable_export import export_main

    return export_main(argv)


if __name__ == "__main__":
    sys.exit(main())
