"""Why a learned ranking is what it is, as one JSON-ready report (``brainrank explain``).

The report is the debugger's Search & explain and "why not" pages without a browser: the top
results of the learned ranking with the features that made each score (SHAP, as
``explain.explain`` computes it over the query's own candidates), and, for one named document,
where it stands (its ranks in the BM25 and dense lists, the conditions of the filters it
fails), what made its score, and which features hold it below a result above it (the
difference of the two documents' SHAP values, which sums to the score gap).
"""

from __future__ import annotations

import numpy as np

from brainrank.index.errors import InputError
from brainrank.ranker.learning.explain import (
    candidate_features,
    explain,
    standing,
    why_not,
)

FULL_DEPTH = 1000  # rank every candidate, so a named document's final rank is known
TOP_FEATURES = 5


def report(
    engine,
    query: str,
    *,
    k: int = 5,
    doc: str | None = None,
    against: int = 1,
    model: str | None = None,
    where=None,
    features: int = TOP_FEATURES,
) -> dict:
    """The explanation of ``query``'s learned ranking (``engine``: a ``SearchEngine``).

    ``k`` top results are explained, each with its ``features`` largest contributions.
    ``doc`` adds that document's standing and attribution and, when it ranks below
    ``against``, the features holding it below the result at that rank.
    """
    if k < 1:
        raise InputError(f"k must be at least 1, not {k}")
    if features < 1:
        raise InputError(f"features must be at least 1, not {features}")
    ranked = engine.search(query, k=FULL_DEPTH, mode="learned", model=model, where=where)
    cands = candidate_features(engine, query, model, where)
    learned, _ = engine.model(model)
    top = ranked.hits[:k]
    ids = [h.doc_id for h in top]
    place = None
    if doc is not None:
        place = standing(engine, query, doc, ranked)
        if not place.exists:
            raise InputError(f"no document {doc!r} in this collection (ids are case-sensitive)")
        if place.candidate and doc not in ids:
            ids.append(doc)
    ex = (
        explain(learned, cands.rows(ids), background=cands.features, method="auto") if ids else None
    )
    row = {d: i for i, d in enumerate(ids)}
    docs = engine.store.get(ids)

    def contributions(doc_id: str) -> list[dict]:
        return _largest(ex, row[doc_id], cands.rows([doc_id])[0], features)

    out = {
        "query": ranked.query,
        "model": ranked.model,
        "filters": list(ranked.filters),
        "in_domain": ranked.in_domain,
        "method": ex.method if ex is not None else None,
        "base_value": float(ex.base_values[0]) if ex is not None else None,
        "candidates": ranked.candidates,
        "results": [
            {
                "rank": h.rank,
                "id": h.doc_id,
                "title": docs[h.doc_id].title if h.doc_id in docs else "",
                "score": h.score,
                "contributions": contributions(h.doc_id),
            }
            for h in top
        ],
    }
    if place is not None:
        out["document"] = _document(
            engine, place, ranked, contributions, against, cands, learned, features
        )
    return out


def _largest(ex, i: int, values: np.ndarray, n: int) -> list[dict]:
    """The ``n`` largest contributions (by size) to row ``i``'s score, with feature values."""
    order = np.argsort(-np.abs(ex.values[i]), kind="stable")[:n]
    return [
        {
            "feature": ex.feature_names[j],
            "value": float(values[j]),
            "contribution": float(ex.values[i, j]),
        }
        for j in order
    ]


def _title(engine, doc_id: str) -> str:
    docs = engine.store.get([doc_id])
    return docs[doc_id].title if doc_id in docs else ""


def _document(engine, place, ranked, contributions, against, cands, learned, n) -> dict:
    doc = place.doc_id
    found = next((h for h in ranked.hits if h.doc_id == doc), None)
    out = {
        "id": doc,
        "title": _title(engine, doc),
        "final_rank": place.final_rank,
        "candidate": place.candidate,
        "failed_filters": list(place.failed),
        "bm25_list_rank": place.bm25_list_rank,
        "dense_list_rank": place.dense_list_rank,
        "bm25_collection_rank": place.bm25_collection_rank,
        "dense_collection_rank": place.dense_collection_rank,
        "list_depth": place.list_depth,
        "score": found.score if found is not None else None,
        "contributions": contributions(doc) if place.candidate else [],
    }
    if found is None or found.rank == 1:
        return out
    if not 1 <= against < found.rank:
        raise InputError(
            f"{doc} ranks {found.rank}: compare it with a rank from 1 to {found.rank - 1}, "
            f"not {against}"
        )
    above = ranked.hits[against - 1]
    rows = cands.rows([doc, above.doc_id])
    wn = why_not(learned, rows[0], rows[1], cands.features)
    order = np.argsort(wn.difference, kind="stable")[:n]
    out["against"] = {
        "rank": above.rank,
        "id": above.doc_id,
        "title": _title(engine, above.doc_id),
        "score": above.score,
        "gap": wn.target_score - wn.above_score,
        "differences": [
            {
                "feature": wn.feature_names[j],
                "difference": float(wn.difference[j]),
                "value": float(rows[0][j]),
                "value_above": float(rows[1][j]),
            }
            for j in order
        ],
    }
    return out
