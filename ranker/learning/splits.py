"""Deterministic splits of query ids: train/validation/holdout, held-out clicks, prior folds.

A key's side depends only on a salted hash of the key, so a split agrees across runs, across
processes and between ``train`` and ``retrain``. Each salt is written once, here: changing one
moves queries between splits and makes old holdout comparisons unfair.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

HOLDOUT_SALT = "holdout"
VAL_SALT = "val"
CLICKS_SALT = "clicks"
PRIOR_SALT = "prior"
PRIOR_FOLDS = 5


class QuerySplit(NamedTuple):
    """Judged query ids by role: fitting, early stopping, and the champion comparison."""

    train: list[str]
    val: list[str]
    holdout: list[str]


def _unit(key: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) for ``key`` under ``salt``."""
    return int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:8], 16) / 2**32


def stable_split(keys: list[str], fraction: float, salt: str) -> tuple[list[str], list[str]]:
    """(kept, held out): a key's side depends only on its hash, so splits agree across runs."""
    held = [k for k in keys if _unit(k, salt) < fraction]
    held_set = set(held)
    return [k for k in keys if k not in held_set], held


def kfold(keys: list[str], folds: int, salt: str) -> dict[str, int]:
    """A stable fold in ``range(folds)`` for each key (by its hash, as ``stable_split``)."""
    return {k: min(int(_unit(k, salt) * folds), folds - 1) for k in keys}


def query_split(
    query_ids: list[str], holdout_fraction: float, val_fraction: float, seed: int
) -> QuerySplit:
    """The training split of judged queries: a holdout share, then a validation share of the rest.

    Keeps the order of ``query_ids`` within each part.
    """
    rest, holdout = stable_split(query_ids, holdout_fraction, f"{HOLDOUT_SALT}{seed}")
    train, val = stable_split(rest, val_fraction, f"{VAL_SALT}{seed}")
    return QuerySplit(train, val, holdout)


def click_holdout(texts: list[str], fraction: float, seed: int) -> list[str]:
    """The clicked query texts held out from retraining to evaluate on (order kept)."""
    return stable_split(texts, fraction, f"{CLICKS_SALT}{seed}")[1]


def fold(key: str) -> int:
    """The out-of-fold judgment-prior fold of a training list (stable across runs)."""
    return int(hashlib.sha256(f"{PRIOR_SALT}:{key}".encode()).hexdigest()[:8], 16) % PRIOR_FOLDS
