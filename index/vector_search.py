"""How hard an approximate vector search looks, and how a build picks that effort.

The effort is HNSW's efSearch (candidates explored) or IVF's nprobe (lists scanned): more
effort finds more of the true nearest and costs time. A fixed default suits no collection
size: at a million noisy 384-dimensional vectors HNSW needed efSearch >1,200 and IVF with 4,096
lists nprobe 256 for R@100 0.95, where 100k vectors need far less (bench/RESULTS.md). So a
build measures recall and raises the effort until it meets ``VectorParams.recall_target``.

The calibration queries come from held-out passages: a seeded sample of the collection's
passages is left out of the index while it is measured and added afterwards. A passage
searching an index that holds it is an easy query (HNSW's greedy walk ends on the passage
itself and reads off the neighbours its insertion already found; the top hit is always right).
Held out, a passage is still easier than a real query: its neighbours crowd around one point
of the collection, while a query sits further from every passage (mean top-1 cosine 0.57 for
the bench's test queries at 1M, 0.82 for held-out passages) and its neighbours spread wider.
Calibrated on held-out passages, IVF's nprobe 40 gave them R@100 0.95 and the test queries
0.89. So each calibration query is the midpoint of two held-out passages: far from both (top-1
cosine 0.69), its neighbours in two regions, with no knob fitted to test queries. At 1M (IVF
over 8-bit codes) it is a little harder than the test queries at every nprobe (R@100 0.86,
0.91, 0.94, 0.97 at 32, 64, 128, 256 against 0.89, 0.93, 0.96, 0.97), so the calibration
errs towards effort.
"""

from __future__ import annotations

import faiss
import numpy as np

# The most effort a calibration tries: HNSW explores at most this many candidates (a search
# at 4,096 takes tens of milliseconds at a million vectors); IVF at most scans every list.
EF_SEARCH_CAP = 4096


def effort_name(base: faiss.Index | None) -> str | None:
    """The FAISS setting that holds the search effort of ``base`` (None: exact search)."""
    if isinstance(base, faiss.IndexHNSW):
        return "efSearch"
    if isinstance(base, faiss.IndexIVF):
        return "nprobe"
    return None


def effort_cap(base: faiss.Index) -> int:
    return base.nlist if isinstance(base, faiss.IndexIVF) else EF_SEARCH_CAP


def set_default_effort(base: faiss.Index | None, effort: int | None) -> None:
    """Make ``effort`` the index's own setting: FAISS writes it into the file, and a GPU copy
    of the index (which takes no per-search parameters here) searches with it."""
    if isinstance(base, faiss.IndexHNSW):
        base.hnsw.efSearch = effort
    elif isinstance(base, faiss.IndexIVF):
        base.nprobe = effort


def search_params(base: faiss.Index | None, effort: int, depth: int, selector=None):
    """FAISS search parameters for ``depth`` rows at ``effort``, keeping ``selector``'s rows.

    HNSW explores ``max(effort, depth)`` candidates: asked for more rows than it explores,
    HNSW returns a tail far from the true nearest (measured: dense R@100 of 0.84 against exact
    search on 10k SciFact-derived documents with efSearch 64, 0.99 with 400).
    """
    extra = {} if selector is None else {"sel": selector}
    if isinstance(base, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(efSearch=max(effort, depth), **extra)
    if isinstance(base, faiss.IndexIVF):
        return faiss.SearchParametersIVF(nprobe=min(effort, base.nlist), **extra)
    return faiss.SearchParameters(**extra) if extra else None


def held_out_rows(n: int, wanted: int) -> np.ndarray:
    """The seeded sample of rows a build leaves out of the index to measure it with: at most
    ``wanted`` and a tenth of the rows, so the index measured is nearly the one served."""
    size = min(wanted, n // 10)
    return np.sort(np.random.default_rng(0).choice(n, size=size, replace=False))


def calibration_queries(embeddings: np.ndarray, held: np.ndarray) -> np.ndarray:
    """One unit query per held-out row: the midpoint of it and the next held-out row in a
    seeded shuffle (so every held-out row is in two queries and never paired with itself)."""
    vectors = np.asarray(embeddings[held], dtype=np.float32)
    if len(held) < 2:
        return vectors
    order = np.random.default_rng(0).permutation(len(held))
    mid = vectors[order] + vectors[np.roll(order, -1)]
    norms = np.linalg.norm(mid, axis=1, keepdims=True)
    return np.ascontiguousarray(mid / np.maximum(norms, 1e-12), dtype=np.float32)


def exact_top(
    embeddings: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Rows of the exact top ``k`` by inner product per query (unordered), never a row of
    ``exclude``. One pass over ``embeddings`` in blocks, so a mapped array is read once."""
    skip = np.zeros(len(embeddings), dtype=bool)
    if exclude is not None:
        skip[exclude] = True
    k = min(k, len(embeddings) - int(skip.sum()))
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_r = np.zeros((len(queries), 0), dtype=np.int64)
    for lo in range(0, len(embeddings), 65_536):
        sims = queries @ np.asarray(embeddings[lo : lo + 65_536]).T
        sims[:, skip[lo : lo + sims.shape[1]]] = -np.inf
        rows = _top(sims, k)
        s = np.hstack([best_s, np.take_along_axis(sims, rows, 1)])
        r = np.hstack([best_r, rows + lo])
        keep = _top(s, k)
        best_s, best_r = np.take_along_axis(s, keep, 1), np.take_along_axis(r, keep, 1)
    return best_r


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``k`` highest scores per row, unordered (all of them if there are fewer)."""
    if scores.shape[1] <= k:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of ``truth``'s rows among ``found``'s (-1 padding never matches)."""
    hits = sum(len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size if truth.size else 1.0


def calibrate(measure, start: int, cap: int, target: float) -> tuple[int, list[list]]:
    """The least effort whose ``measure(effort)`` reaches ``target``, and every measurement.

    Doubles from ``start`` until the target is met or ``cap`` is reached, then halves the
    interval between the last effort that missed and the first that met it until they are
    within a quarter of each other, since a search costs about its effort. Below the target
    at the cap, the cap it is. ``target`` 0 measures ``start`` only.
    """
    effort = min(start, cap)
    steps = [[effort, measure(effort)]]
    while target > 0 and steps[-1][1] < target and effort < cap:
        effort = min(effort * 2, cap)
        steps.append([effort, measure(effort)])
    met = [e for e, r in steps if r >= target]
    if not met:
        return effort, steps
    missed = [e for e, r in steps if r < target]
    lo, hi = max(missed, default=min(met)), min(met)
    while lo < hi and hi > lo * 1.25 + 1:
        mid = (lo + hi) // 2
        steps.append([mid, measure(mid)])
        lo, hi = (lo, mid) if steps[-1][1] >= target else (mid, hi)
    return hi, steps
