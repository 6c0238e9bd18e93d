"""Fitting a training run's ranker: the epoch count by cross-validation (``choose_epochs``),
then the ranker, its seed ensemble and its gates (``fit_ranker``), for the model that is kept
and for each cross-validation fold alike."""

from __future__ import annotations

import time

import numpy as np

from brainrank.ranker.learning.epochs import EpochChoice, cv_epochs
from brainrank.ranker.learning.gates import DomainGate, QueryGate, list_summary
from brainrank.ranker.learning.learned import LearnedModel


def choose_epochs(generation, schema, lists, qrels, options, progress, scratch) -> EpochChoice:
    folds = 5
    with progress.task("Choosing epochs (folds)", folds) as advance:
        return cv_epochs(
            generation,
            schema,
            lists,
            set(qrels),
            scratch,
            max_epochs=options.max_epochs,
            folds=folds,
            seed=options.seed,
            on_fold=lambda: advance(1),
        )


AUTO_ENSEMBLE = 5


def ensemble_size(options, choice) -> int:
    """Members of the kept ranker: ``options.ensemble``, or for None ``AUTO_ENSEMBLE`` when the
    epoch count was cross-validated (few judged queries) and 1 otherwise."""
    if options.ensemble is None:
        return AUTO_ENSEMBLE if choice is not None else 1
    if options.ensemble < 1:
        raise ValueError(f"ensemble must be at least 1, got {options.ensemble}")
    return options.ensemble


def fit_ranker(
    schema,
    fit,
    tr,
    va,
    clicks,
    prior,
    memory,
    options,
    progress,
    *,
    quiet=False,
    choice=None,
    make,
):
    """Fit the ranker on ``fit`` (early stopping on ``va``, or ``choice.epochs`` epochs when
    the epoch count was cross-validated) and its gates on ``tr``; the model as it will serve,
    and the training history (with its seconds). ``ensemble_size`` DNNs of different random
    starts are fitted as one seed ensemble (``members``). ``make(epochs, members)`` gives a
    scratch ranker to fit; unless ``quiet`` (a fold's single ranker, dropped after scoring) the
    fitted one is copied out, in its served form."""
    epochs = None if choice is None else choice.epochs
    val = (va.x, va.y) if choice is None else (None, None)
    t = time.perf_counter()
    # GAM subscores are not averaged. A cross-validation fold fits one ranker: the promotion
    # interval then judges a single member, which the members' mean beats in expectation
    # (conservative), at a fraction of the cost.
    k = ensemble_size(options, choice) if options.scorer == "dnn" and not quiet else 1
    ranker = make(epochs, members=k)
    if quiet:
        history = ranker.fit(fit.x, fit.y, *val)
    else:
        total = options.max_epochs if epochs is None else epochs
        label = "Training ranker (epochs)" if k == 1 else f"Training {k} rankers (epochs)"
        with progress.task(label, total) as advance:
            history = ranker.fit(fit.x, fit.y, *val, on_epoch=lambda e, logs: advance(1))
        ranker = ranker.copy()  # the scratch ranker is reset for the next fit
    history = {**history, "members": k, "seconds": round(time.perf_counter() - t, 2)}
    if choice is not None:
        history.update(choice.summary())
        history.pop("best_val_ndcg10", None)
    gate = DomainGate.fit(
        np.array([list_summary(x[y >= 0], schema) for x, y in zip(tr.x, tr.y, strict=True)])
    )
    query_gate = None
    if choice is not None and tr.vectors is not None and len(choice.nearest):
        # The threshold from every judged query's out-of-fold nearest training query.
        query_gate = QueryGate.calibrated(tr.vectors, choice.nearest)
    elif tr.vectors is not None and va.vectors is not None and len(va.vectors):
        query_gate = QueryGate.fit(tr.vectors, va.vectors)
    model = LearnedModel(None, ranker, schema, gate, clicks, query_gate, prior, memory)
    return ranker, gate, query_gate, model, history
