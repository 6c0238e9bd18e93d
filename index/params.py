"""Index parameters and what built an index: plain dataclasses (standard library only).

The config reads into these without importing bm25s or FAISS, so loading it stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BM25Params:
    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"
    stemmer: str = "english"
    stopwords: str = "en"


KINDS = ("auto", "flat", "hnsw", "ivf")


@dataclass(frozen=True)
class VectorParams:
    kind: str = "auto"  # auto: exact below ``exact_below`` vectors, ``approximate`` above
    exact_below: int = 50_000
    approximate: str = "hnsw"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 100
    hnsw_ef_search: int = 64
    ivf_nprobe: int = 16
    use_gpu: bool = True  # only when faiss-gpu is installed and a GPU is visible

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"vector index kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.approximate not in ("hnsw", "ivf"):
            raise ValueError(f"approximate index {self.approximate!r} must be 'hnsw' or 'ivf'")

    def resolve_kind(self, n: int) -> str:
        if self.kind != "auto":
            return self.kind
        return "flat" if n < self.exact_below else self.approximate


@dataclass(frozen=True)
class EncoderInfo:
    """What produced the vectors: the encoder's name, weight fingerprint and dimension."""

    name: str
    fingerprint: str
    dim: int
