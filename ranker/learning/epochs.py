"""How long the ranker trains: early stopping by cross-validation when judged queries are few.

With a 15% validation split of 100-200 judged queries, early stopping watches 15-30 queries,
and the epoch it keeps is mostly noise: on the bundled sample it ranged from 0 (no learning at
all) to 15 across seeds. ``cv_epochs`` instead splits the judged training queries (train and
validation together) into stable folds, trains on all but one fold while recording the held
fold's nDCG@10 after every epoch, and picks the epoch count with the best mean curve. The
final ranker then trains on all of those queries for exactly that many epochs, so every judged
query both trains the model and, in its turn, judges when to stop.

The same folds give every judged query a similarity to its nearest training query from a model
that did not train on it; their low quantile is the query gate's threshold (``gates``), taken
over all judged queries rather than over the validation split's handful.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from brainrank.ranker.learning.crossval import subset
from brainrank.ranker.learning.judged import set_judged_features
from brainrank.ranker.learning.lists import ListSet
from brainrank.ranker.learning.splits import kfold

EPOCHS_SALT = "epochs"
SPLIT = "split"
CROSS_VALIDATION = "cross-validation"
MODES = ("auto", "cv", "split")
# ``auto`` cross-validates up to this many judged train + validation queries; above it the
# validation split is large enough (SciFact's 15% is ~100 queries) and k fits cost more.
CV_MAX_QUERIES = 300


@dataclass(frozen=True)
class EpochChoice:
    """The chosen epoch count, the mean held-out nDCG@10 curve it was read from (index 0 is the
    untrained model), and every judged query's out-of-fold nearest-training-query cosine."""

    epochs: int
    curve: tuple[float, ...]
    folds: int
    nearest: np.ndarray

    def summary(self) -> dict:
        return {
            "early_stopping": CROSS_VALIDATION,
            "folds": self.folds,
            "epochs": self.epochs,
            "curve": [round(v, 4) for v in self.curve],
        }


def early_stopping_mode(setting: str, judged_queries: int, *, can_cross_validate: bool) -> str:
    """``split`` or ``cross-validation`` for ``[training] early_stopping``-style settings."""
    if setting not in MODES:
        raise ValueError(f"early_stopping must be one of {MODES}, not {setting!r}")
    if not can_cross_validate or setting == "split":
        return SPLIT
    if setting == "cv" or judged_queries <= CV_MAX_QUERIES:
        return CROSS_VALIDATION
    return SPLIT


def cv_epochs(
    generation,
    schema,
    lists: ListSet,
    judged: set[str],
    make_ranker: Callable[[], object],
    *,
    max_epochs: int,
    folds: int = 5,
    seed: int = 0,
    on_fold: Callable[[], None] = lambda: None,
) -> EpochChoice:
    """Pick the epoch count by ``folds``-fold cross-validation over the judged lists.

    ``lists`` holds every training list (judged queries and click-only ones, which always
    train); ``judged`` names the judged keys. ``make_ranker()`` returns a fresh ranker with the
    recipe's parameters (its patience ends a fold early; the curve then stays at its last
    value). The judged features are refilled per fold from that fold's training lists.
    """
    keys = [k for k in lists.keys if k in judged]
    fold_of = kfold(keys, folds, f"{EPOCHS_SALT}{seed}")
    curves: list[list[float]] = []
    nearest: list[np.ndarray] = []
    for f in range(folds):
        held = [i for i, k in enumerate(lists.keys) if fold_of.get(k) == f]
        rest = [i for i, k in enumerate(lists.keys) if fold_of.get(k) != f]
        if not held or not rest:
            on_fold()
            continue
        train, val = subset(lists, rest), subset(lists, held)
        set_judged_features(generation, schema, train, val, subset(lists, []))
        if not (val.y > 0).any() or not (train.y > 0).any():
            on_fold()
            continue
        ranker = make_ranker()
        curve = [ranker.evaluate(val.x, val.y)["ndcg10"]]
        ranker.fit(train.x, train.y, val.x, val.y, on_epoch=_recorder(curve))
        curves.append(curve + [curve[-1]] * (max_epochs + 1 - len(curve)))
        if train.vectors is not None:
            nearest.append((val.vectors @ train.vectors.T).max(axis=1))
        on_fold()
    if not curves:
        raise ValueError("no fold had judged queries on both sides: too few to cross-validate")
    mean = np.mean(curves, axis=0)
    return EpochChoice(
        epochs=int(np.argmax(mean)),  # the first best: fewer epochs on a tie
        curve=tuple(float(v) for v in mean),
        folds=len(curves),
        nearest=np.concatenate(nearest) if nearest else np.zeros(0),
    )


def _recorder(curve: list[float]):
    def record(epoch: int, logs: dict) -> None:
        curve.append(logs["val_ndcg10"])

    return record
