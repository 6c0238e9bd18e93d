"""Cross-validated nDCG@10 of a training recipe, for when a fixed holdout would be too small.

With few judged queries a 20% holdout is a handful of queries, and a promotion decided on them
is a coin toss. ``cross_validate`` pools every judged query's candidate list, splits the judged
queries into stable folds, and for each fold fits the same recipe (``fit``) on the other folds,
with the judged features (judgment prior, query memory) refilled from those folds only, then
scores the fold's queries. Every judged query thus gets an nDCG@10 from a model that never saw
its labels, and the paired comparison with the fixed modes runs over all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from brainrank.ranker.evaluation import Qrels, per_query
from brainrank.ranker.learning.judged import set_judged_features
from brainrank.ranker.learning.lists import ListSet, rank_lists
from brainrank.ranker.learning.splits import kfold, stable_split

CV_SALT = "crossval"
CV_VAL_FRACTION = 0.15


def pool(sets: Sequence[ListSet]) -> ListSet:
    """One ListSet of all lists (padded to the widest)."""
    width = max(s.x.shape[1] for s in sets)
    n_features = sets[0].x.shape[2]
    count = sum(len(s.keys) for s in sets)
    x = np.zeros((count, width, n_features), dtype=np.float32)
    y = np.full((count, width), -1.0, dtype=np.float32)
    row = 0
    for s in sets:
        x[row : row + len(s.keys), : s.x.shape[1]] = s.x
        y[row : row + len(s.keys), : s.y.shape[1]] = s.y
        row += len(s.keys)
    has_vectors = all(s.vectors is not None for s in sets)
    return ListSet(
        [k for s in sets for k in s.keys],
        [t for s in sets for t in s.texts],
        x,
        y,
        [d for s in sets for d in s.doc_ids],
        np.concatenate([s.vectors for s in sets]) if has_vectors else None,
    )


def subset(lists: ListSet, rows: Sequence[int]) -> ListSet:
    """The lists at ``rows``, with their own copies of features (the judged features are
    refilled per fold)."""
    idx = np.asarray(rows, dtype=np.int64)
    return ListSet(
        [lists.keys[i] for i in idx],
        [lists.texts[i] for i in idx],
        lists.x[idx].copy(),
        lists.y[idx].copy(),
        [lists.doc_ids[i] for i in idx],
        lists.vectors[idx] if lists.vectors is not None else None,
    )


def score_lists(model, lists: ListSet) -> np.ndarray:
    """The model's score of every candidate slot (-inf for padding)."""
    scores = np.full(lists.y.shape, -np.inf)
    for i in range(len(lists.keys)):
        n = len(lists.doc_ids[i])
        vector = lists.vectors[i] if lists.vectors is not None else None
        scores[i, :n] = model.score_features(lists.x[i, :n], vector).scores
    return scores


def cross_validate(
    generation,
    schema,
    lists: ListSet,
    qrels: Qrels,
    fit: Callable[[ListSet, ListSet, dict, object], object],
    *,
    folds: int = 5,
    seed: int = 0,
    on_fold: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Out-of-fold nDCG@10 of every judged query (a key of ``qrels``) in ``lists``.

    ``fit(train, validation, prior, memory)`` returns a model with ``score_features``. Lists
    whose key is not judged (click-only training lists) only ever train.
    """
    judged = [k for k in lists.keys if k in qrels]
    fold_of = kfold(judged, folds, f"{CV_SALT}{seed}")
    out: dict[str, float] = {}
    for f in range(folds):
        held = {k for k in judged if fold_of[k] == f}
        if not held:
            on_fold()
            continue
        rest = [k for k in judged if k not in held]
        _, val = stable_split(rest, CV_VAL_FRACTION, f"{CV_SALT}-val{seed}:{f}")
        val_set = set(val)
        rows = {"train": [], "val": [], "test": []}
        for i, key in enumerate(lists.keys):
            part = "test" if key in held else "val" if key in val_set else "train"
            rows[part].append(i)
        if not rows["train"] or not rows["val"]:
            on_fold()
            continue
        tr, va, te = (subset(lists, rows[p]) for p in ("train", "val", "test"))
        prior, memory = set_judged_features(generation, schema, tr, va, te)
        model = fit(tr, va, prior, memory)
        run = rank_lists(score_lists(model, te), te)
        out.update(per_query({k: qrels[k] for k in te.keys}, run))
        on_fold()
    return out
