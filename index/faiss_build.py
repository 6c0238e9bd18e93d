"""Building FAISS indexes for ``vectors.VectorIndex``: the base index for a kind and quantizer
(flat, HNSW or IVF over full, 8-bit scalar or product-quantized codes), the training sample of
quantizers and IVF centroids, and the moves to and from a GPU when faiss-gpu has one."""

from __future__ import annotations

import math

import faiss
import numpy as np

from brainrank.index.errors import IndexMismatchError
from brainrank.index.params import VectorParams

# Quantizers and IVF centroids train on at most this many vectors (a uniform sample).
TRAIN_SAMPLE = 100_000


def make_base(kind: str, quantizer: str, dim: int, n: int, params: VectorParams) -> faiss.Index:
    """An empty, untrained index of ``kind`` (flat, hnsw, ivf) over ``quantizer`` codes."""
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if quantizer == "pq" and dim % params.pq_m:
        raise IndexMismatchError(
            f"[vectors] pq_m {params.pq_m} must divide the vector dimension {dim}"
        )
    codes = {"none": "Flat", "sq8": "SQ8", "pq": f"PQ{params.pq_m}"}[quantizer]
    if kind == "hnsw":
        spec = f"HNSW{params.hnsw_m}" + ("" if quantizer == "none" else f"_{codes}")
    else:
        # About 4*sqrt(n) lists is the usual starting point; FAISS wants >= 39 points per list.
        nlist = max(1, min(int(4 * math.sqrt(max(n, 1))), max(1, n // 39)))
        spec = f"IVF{nlist},{codes}"
    base = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        faiss.downcast_index(base).hnsw.efConstruction = params.hnsw_ef_construction
    return base


def training_sample(emb: np.ndarray) -> np.ndarray:
    """At most ``TRAIN_SAMPLE`` rows of ``emb``, a seeded uniform sample in row order."""
    if len(emb) <= TRAIN_SAMPLE:
        return emb
    rows = np.sort(np.random.default_rng(0).choice(len(emb), TRAIN_SAMPLE, replace=False))
    return np.ascontiguousarray(emb[rows])


def to_gpu(index: faiss.Index) -> faiss.Index:
    """``index`` on GPU 0 when faiss-gpu sees one (HNSW has no GPU implementation)."""
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return index
    base = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if isinstance(base, faiss.IndexHNSW):
        return index
    return faiss.index_cputo_gpu(faiss.StandardGpuResources(), 0, index)


def to_cpu(index: faiss.Index) -> faiss.Index:
    """A CPU copy of a GPU index (to save it); a CPU index as it is."""
    if hasattr(faiss, "index_gpu_to_cpu") and faiss.get_num_gpus() > 0:
        try:
            return faiss.index_gputo_cpu(index)
        except RuntimeError:
            return index
    return index
