"""The judged features: the judgment prior (``judged_doc``), the query memory (``judged_similar``).

Both are computed from the model's own training labels after the candidate lists are built,
out of fold for the train lists (``splits.fold``), so the ranker learns how far labels earned on
other queries carry; the holdout's labels never feed them.
"""

from __future__ import annotations

import numpy as np

from brainrank.ranker.learning.lists import ListSet
from brainrank.ranker.learning.memory import DEFAULT_K, DEFAULT_TEMPERATURE, QueryMemory
from brainrank.ranker.learning.splits import PRIOR_FOLDS, fold


def fill_judgment_prior(generation, schema, lists: ListSet, prior_of_row) -> None:
    """Set the lists' ``judged_doc`` column from ``prior_of_row(i)`` (content hash -> labels)."""
    hash_of = dict(zip(generation.doc_ids, generation.content_hashes, strict=True))
    column = schema.index("judged_doc")
    for i, docs in enumerate(lists.doc_ids):
        prior = prior_of_row(i)
        values = [prior.get(hash_of.get(d, ""), 0.0) for d in docs]
        lists.x[i, : len(docs), column] = np.log1p(values)


def fill_judged_similar(generation, schema, lists: ListSet, memory_of_row) -> None:
    """Set the lists' ``judged_similar`` column: ``memory_of_row(i)`` is (QueryMemory, allowed
    rows or None) for list i, queried with the list's own query vector."""
    column = schema.index("judged_similar")
    lists.x[..., column] = 0.0
    if lists.vectors is None:
        return
    hash_of = dict(zip(generation.doc_ids, generation.content_hashes, strict=True))
    for i, docs in enumerate(lists.doc_ids):
        memory, allowed = memory_of_row(i)
        hashes = [hash_of.get(d, "") for d in docs]
        lists.x[i, : len(docs), column] = memory.feature(lists.vectors[i], hashes, allowed)


def _earned(generation, lists: ListSet) -> list[dict[str, float]]:
    """Per list, the labels its judged candidates earned, by document content hash."""
    hash_of = dict(zip(generation.doc_ids, generation.content_hashes, strict=True))
    return [
        {hash_of[doc]: float(lists.y[i, j]) for j, doc in enumerate(docs) if lists.y[i, j] > 0}
        for i, docs in enumerate(lists.doc_ids)
    ]


def set_judged_features(
    generation,
    schema,
    tr: ListSet,
    va: ListSet,
    ho: ListSet,
    also: ListSet | None = None,
    *,
    memory_k: int = DEFAULT_K,
    memory_temperature: float = DEFAULT_TEMPERATURE,
) -> tuple[dict, QueryMemory | None]:
    """Fill the ``judged_doc`` and ``judged_similar`` columns of the lists; return the judgment
    prior and the query memory the model serves with.

    A document's prior is the sum of the labels (judgments, merged click labels) it earned in
    training queries' candidate lists, i.e. where users would have seen it: documents relevant
    to query after query are likely relevant to the next. The query memory keeps each training
    query's vector and list labels, so a new query gets the labels its most similar training
    queries gave (learning.memory). Train lists get both out of fold (a query's own labels never
    feed its features, so the ranker learns how far labels earned on *other* queries carry);
    validation lists those of the train lists; the served prior and memory add the validation
    lists but never the holdout's, so this model and the next challenger compare fairly on the
    holdout. Keyed by document content hash. ``also`` (the same train queries' lists from
    another index) gets the train lists' out-of-fold features too, its similarities measured
    with its own query vectors (the encoder that retrieved it). ``memory_k`` and
    ``memory_temperature`` set the memory's neighbours and softmax temperature.
    """
    folds = np.array([fold(k) for k in tr.keys], dtype=np.int64)
    tr_labels, va_labels = _earned(generation, tr), _earned(generation, va)

    def summed(label_sets) -> dict[str, float]:
        out: dict[str, float] = {}
        for labels in label_sets:
            for doc, value in labels.items():
                out[doc] = out.get(doc, 0.0) + value
        return out

    fold_priors = [
        summed(tr_labels[i] for i in np.flatnonzero(folds != f)) for f in range(PRIOR_FOLDS)
    ]
    train_prior = summed(tr_labels)
    served = summed(tr_labels + va_labels)
    fill_judgment_prior(generation, schema, tr, lambda i: fold_priors[folds[i]])
    fill_judgment_prior(generation, schema, va, lambda i: train_prior)
    fill_judgment_prior(generation, schema, ho, lambda i: served)
    if also is not None:
        if list(also.keys) != list(tr.keys):
            raise ValueError("the extra train lists must hold the same queries as the train lists")
        fill_judgment_prior(generation, schema, also, lambda i: fold_priors[folds[i]])

    if tr.vectors is None or va.vectors is None:  # an index without vectors: no memory
        for lists in (tr, va, ho, also):
            if lists is not None:
                lists.x[..., schema.index("judged_similar")] = 0.0
        return served, None

    def remember(vectors, labels) -> QueryMemory:
        return QueryMemory(vectors, labels, memory_k, memory_temperature)

    train_memory = remember(tr.vectors, tr_labels)
    fill_judged_similar(generation, schema, tr, lambda i: (train_memory, folds != folds[i]))
    fill_judged_similar(generation, schema, va, lambda i: (train_memory, None))
    memory = remember(np.concatenate([tr.vectors, va.vectors]), tr_labels + va_labels)
    fill_judged_similar(generation, schema, ho, lambda i: (memory, None))
    if also is not None and also.vectors is not None:
        also_memory = remember(also.vectors, tr_labels)
        fill_judged_similar(generation, schema, also, lambda i: (also_memory, folds != folds[i]))
    return served, memory
