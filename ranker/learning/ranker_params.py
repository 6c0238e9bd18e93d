"""Hyperparameters of a ListwiseRanker, validated on construction; saved beside the model.

Imports no TensorFlow, so reading or checking a model's parameters stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError

# A ranker folder's parameters file, read by the TensorFlow ranker and the portable one.
PARAMS_FILE = "ranker.json"
PARAMS_FORMAT = 1

SCORERS = ("dnn", "gam")
LOSSES = ("softmax", "approx_ndcg")


@dataclass(frozen=True)
class RankerParams:
    """Hyperparameters of a ListwiseRanker; saved beside the model."""

    scorer: str = "dnn"  # "dnn" | "gam"
    loss: str = "softmax"  # "softmax" | "approx_ndcg"
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    learning_rate: float = 1e-3
    batch_size: int = 32  # lists per batch
    max_epochs: int = 60
    # Early stopping on validation NDCG@10. On SciFact, 6 sometimes stopped before the ranker
    # had learned to use judged_doc (validation and holdout both much lower); 15 did not.
    patience: int = 15
    l2: float = 1e-4
    # Index of a "base score" feature; when set, score = base_weight * x[..., i] + a learned
    # correction whose last layer starts at zero, so an untrained model ranks exactly by it.
    residual_feature: int | None = None
    base_weight: float = 1.0
    seed: int = 0
    # A seed ensemble of DNNs trained as one model (``members``); saved in its served form,
    # one DNN of ``members`` times the width, so saved rankers always read 1.
    members: int = 1

    def __post_init__(self):
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))  # as read back from JSON
        for field, ok, allowed in _PARAM_CHECKS:
            value = getattr(self, field)
            try:
                valid = ok(value)
            except TypeError:
                valid = False
            if not valid:
                raise ValueError(f"RankerParams.{field}={value!r}: must be {allowed}")
        if self.members > 1 and self.scorer != "dnn":
            raise ValueError("RankerParams.members > 1 needs scorer='dnn'")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and bool(np.isfinite(v))


_PARAM_CHECKS = [
    ("scorer", lambda v: v in SCORERS, f"one of {SCORERS}"),
    ("loss", lambda v: v in LOSSES, f"one of {LOSSES}"),
    (
        "hidden",
        lambda v: isinstance(v, tuple) and len(v) > 0 and all(_is_int(h) and h > 0 for h in v),
        "a non-empty tuple of positive ints",
    ),
    ("dropout", lambda v: _is_number(v) and 0.0 <= v < 1.0, "a number in [0, 1)"),
    ("learning_rate", lambda v: _is_number(v) and v > 0, "a number > 0"),
    ("batch_size", lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    ("max_epochs", lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    ("patience", lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    ("l2", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    (
        "residual_feature",
        lambda v: v is None or (_is_int(v) and v >= 0),
        "None or an int >= 0",
    ),
    ("base_weight", _is_number, "a finite number"),
    ("seed", _is_int, "an int"),
    ("members", lambda v: _is_int(v) and v >= 1, "an int >= 1"),
]


# The label of a padding slot in a list (TF-Ranking ignores slots labelled below 0).
PAD_LABEL = -1.0


def check_features(x, n_features: int, ranks: tuple[int, ...], name: str = "x") -> np.ndarray:
    """``x`` as float32 feature rows of one of the shapes ``ranks`` allow, all finite.

    Shared by the TF-Ranking ranker and its portable twin, so both refuse input alike.
    """
    x = np.asarray(x, dtype=np.float32)
    f = n_features
    expected = " or ".join(
        {3: f"[n_lists, list_size, {f}]", 2: f"[n_docs, {f}]"}[r] for r in sorted(ranks)[::-1]
    )
    if x.ndim not in ranks or x.shape[-1] != f:
        raise ValueError(f"{name} must have shape {expected}; got {x.shape}")
    if not np.isfinite(x).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(f"{name} of shape {x.shape} has a NaN/inf feature at index {where}")
    return x


def check_lists(x, y, n_features: int, name: str, *, need_positive: bool = True):
    """``(x, y)`` as labelled lists: x [n_lists, list_size, n_features] and graded labels y
    [n_lists, list_size], at least one list, labels >= 0 or PAD_LABEL for a padding slot."""
    x = check_features(x, n_features, ranks=(3,), name=f"x_{name}")
    y = np.asarray(y, dtype=np.float32)
    if y.shape != x.shape[:2]:
        raise ValueError(
            f"y_{name} must have shape {x.shape[:2]} (n_lists, list_size of x_{name}); "
            f"got {y.shape}"
        )
    if len(x) == 0:
        raise ValueError(f"x_{name} has shape {x.shape}: no lists")
    if not np.isfinite(y).all() or ((y < 0) & (y != PAD_LABEL)).any():
        raise ValueError(f"y_{name} labels must be >= 0, or -1 for a padding slot")
    if need_positive and not (y > 0).any():
        raise ValueError(f"y_{name} has no positive label: NDCG@10 would be 0 for any model")
    return x, y


def params_json(n_features: int, params: RankerParams) -> str:
    """The text of a ranker folder's ``ranker.json``."""
    meta = {"format": PARAMS_FORMAT, "n_features": n_features, "params": dataclasses.asdict(params)}
    return json.dumps(meta, indent=2) + "\n"


def read_params(path: Path) -> tuple[int, RankerParams]:
    """n_features and RankerParams from a ranker.json; BrainrankError names the file."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
        if meta.get("format") != PARAMS_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {PARAMS_FORMAT}")
        n_features, params = int(meta["n_features"]), RankerParams(**meta["params"])
        r = params.residual_feature
        if n_features < 1 or (r is not None and r >= n_features):
            raise ValueError(f"n_features {n_features} with residual_feature {r}")
        return n_features, params
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BrainrankError(f"cannot read ranker metadata {path}: {exc}") from exc
