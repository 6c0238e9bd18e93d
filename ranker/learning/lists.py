"""Padded candidate lists of labelled queries: what the ranker fits on and is evaluated on.

A query's list holds its hybrid candidates' feature rows and graded labels (judgments, merged
with click labels); lists are padded to one width with label -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainrank.ranker.learning.features import FeatureExtractor
from brainrank.ranker.progress import Progress
from brainrank.ranker.retrieval.search import SearchEngine


@dataclass
class ListSet:
    """Padded candidate lists: features [n, L, F], labels [n, L] (-1 = padding)."""

    keys: list[str]
    texts: list[str]
    x: np.ndarray
    y: np.ndarray
    doc_ids: list[list[str]]
    vectors: np.ndarray | None = None  # query vectors [n, dim] of the encoder that retrieved


def label_items(ids, queries, qrels, click_labels, click_weight, *, with_click_only=False):
    """(key, text, labels) per training query: judgments, merged with click labels.

    ``click_labels`` maps normalised query texts to click labels; with ``with_click_only``,
    clicked texts of no query in ``ids`` become items too (key ``clicks:<text>``), their labels
    scaled by ``click_weight``.
    """
    from_clicks = dict(click_labels)
    items = []
    if from_clicks:
        from brainrank.ranker.feedback.click_stats import merge_labels
        from brainrank.ranker.feedback.fields import normalise_query
    for q in ids:
        labels = {d: float(g) for d, g in qrels[q].items()}
        if from_clicks:
            key = normalise_query(queries[q])
            merged = merge_labels(
                {key: qrels[q]}, {key: from_clicks.pop(key, {})}, click_weight=click_weight
            )
            labels = merged.get(key, labels)
        items.append((q, queries[q], labels))
    if with_click_only and from_clicks:
        for text, labels in sorted(from_clicks.items()):
            scaled = {d: v * click_weight for d, v in labels.items()}
            items.append((f"clicks:{text}", text, scaled))
    return items


def candidate_lists(
    engine: SearchEngine,
    extractor: FeatureExtractor,
    items: list[tuple[str, str, dict[str, float]]],
    progress: Progress,
    description: str,
) -> ListSet:
    """Features and labels of each query's hybrid candidates (unjudged candidates label 0, and
    so do negative grades)."""
    xs, ys, ids, vectors = [], [], [], []
    with progress.task(description, len(items)) as advance:
        for _key, text, labels in items:
            cand = engine.candidates(text, "hybrid")
            xs.append(extractor.extract(text, cand))
            docs = [engine.generation.doc_ids[p] for p in cand.positions]
            # A negative grade (TREC's -2 for junk) is as not relevant as 0 to the ranker, and
            # below 0 the lists' padding (-1) begins.
            ys.append(np.array([max(labels.get(d, 0.0), 0.0) for d in docs], dtype=np.float32))
            ids.append(docs)
            vectors.append(cand.query_vector)
            advance(1)
    width = max((len(x) for x in xs), default=1)
    n_features = len(extractor.schema.names)
    x = np.zeros((len(xs), width, n_features), dtype=np.float32)
    y = np.full((len(xs), width), -1.0, dtype=np.float32)
    for i, (xi, yi) in enumerate(zip(xs, ys, strict=True)):
        x[i, : len(xi)] = xi
        y[i, : len(yi)] = yi
    has_vectors = bool(vectors) and all(v is not None for v in vectors)
    return ListSet(
        [k for k, _, _ in items],
        [t for _, t, _ in items],
        x,
        y,
        ids,
        np.stack(vectors).astype(np.float32) if has_vectors else None,
    )


def rank_lists(scores: np.ndarray, lists: ListSet, depth: int = 100) -> dict[str, list[str]]:
    """Top ``depth`` doc ids per list from per-slot scores (padding ignored)."""
    run = {}
    for i, key in enumerate(lists.keys):
        n = len(lists.doc_ids[i])
        s = scores[i, :n]
        order = np.lexsort((np.arange(n), -s))[:depth]
        run[key] = [lists.doc_ids[i][j] for j in order]
    return run


def feature_baseline(x: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> dict:
    """Per-feature quantiles and histograms of the training candidates, for drift monitoring."""
    mask = y >= 0
    flat = x[mask]
    out = {"candidates": int(mask.sum()), "lists": int(len(x)), "features": {}}
    for j, name in enumerate(names):
        col = flat[:, j].astype(np.float64)
        edges = np.unique(np.quantile(col, np.linspace(0, 1, 11)))
        counts = np.histogram(col, bins=edges)[0] if len(edges) > 1 else np.array([len(col)])
        out["features"][name] = {
            "mean": float(col.mean()),
            "std": float(col.std()),
            "quantiles": [float(q) for q in np.quantile(col, [0.01, 0.25, 0.5, 0.75, 0.99])],
            "edges": [float(e) for e in edges],
            "counts": [int(c) for c in counts],
        }
    return out
