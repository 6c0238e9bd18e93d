"""Index parameters and what built an index: plain dataclasses (standard library only).

The config reads into these without importing bm25s or FAISS, so loading it stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

# How text is folded before the keyword analyzer splits it: "nfkc" (Unicode compatibility
# composition: full-width "ＸＲ-２２００" reads as "XR-2200", the ligature "ﬁ" as "fi", as
# Lucene's ICU normalizer folds them) or "none", the analysis of indexes written before it.
NORMALIZATIONS = ("nfkc", "none")
# What a saved index without the setting was tokenized with.
LEGACY_NORMALIZE = "none"


@dataclass(frozen=True)
class BM25Params:
    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"
    stemmer: str = "english"
    stopwords: str = "en"
    normalize: str = "nfkc"

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(
                f"normalize {self.normalize!r} is not one of {', '.join(NORMALIZATIONS)}"
            )

    @classmethod
    def saved(cls, values: dict) -> BM25Params:
        """The parameters a saved index records; one written before ``normalize`` existed was
        tokenized without it, and its queries must be too."""
        return cls(**{"normalize": LEGACY_NORMALIZE, **values})


KINDS = ("auto", "flat", "hnsw", "ivf")
QUANTIZERS = ("auto", "none", "sq8", "pq")


@dataclass(frozen=True)
class VectorParams:
    kind: str = "auto"  # auto: exact below ``exact_below`` vectors, ``approximate`` above
    exact_below: int = 50_000
    # hnsw, ivf, or auto: HNSW below ``ivf_above`` vectors, IVF from there. At 1M noisy
    # 384-dim vectors (bench_scale_vectors.py, 2 cores): IVF over 8-bit codes calibrated to
    # 0.95 (nprobe 192) searched the test queries in 7.6 ms p99 at R@100 0.94, from a 390 MB
    # file built in 4 minutes; HNSW reached 0.91 (8-bit codes, efSearch 1,200, 34 ms p99) and
    # 0.92 (floats, efSearch 4,096, 44 ms p99, a 1.7 GB file built in 12 minutes); IVF over
    # floats scanned 3x slower than over 8-bit codes at equal nprobe and recall.
    approximate: str = "auto"
    ivf_above: int = 500_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 100
    hnsw_ef_search: int = 64
    ivf_nprobe: int = 16
    # How an approximate index stores vectors: none (float32), sq8 (8-bit scalar, a quarter
    # of the memory) or pq (product codes of pq_m bytes); auto: sq8 from quantize_above vectors.
    quantizer: str = "auto"
    quantize_above: int = 500_000
    pq_m: int = 48  # sub-quantizers (bytes per vector); must divide the dimension
    recall_queries: int = 200  # held-out passages the build-time recall check searches for
    # The R@100 against exact search an approximate index's build calibrates its efSearch or
    # nprobe to (index.vector_search); 0: search at hnsw_ef_search / ivf_nprobe as set.
    recall_target: float = 0.95
    use_gpu: bool = True  # only when faiss-gpu is installed and a GPU is visible

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"vector index kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.approximate not in ("auto", "hnsw", "ivf"):
            raise ValueError(
                f"approximate index {self.approximate!r} must be 'auto', 'hnsw' or 'ivf'"
            )
        if self.quantizer not in QUANTIZERS:
            raise ValueError(
                f"vector quantizer {self.quantizer!r} is not one of {', '.join(QUANTIZERS)}"
            )
        if min(self.pq_m, self.recall_queries, self.quantize_above, self.ivf_above) < 1:
            raise ValueError(
                "pq_m, recall_queries, quantize_above and ivf_above must be at least 1"
            )
        if not 0.0 <= self.recall_target <= 1.0:
            raise ValueError(f"recall_target must be in [0, 1], not {self.recall_target}")

    def resolve_kind(self, n: int) -> str:
        if self.kind != "auto":
            return self.kind
        if n < self.exact_below:
            return "flat"
        if self.approximate != "auto":
            return self.approximate
        return "hnsw" if n < self.ivf_above else "ivf"

    def resolve_quantizer(self, n: int) -> str:
        """How the approximate index for ``n`` vectors stores them (flat indexes: none)."""
        if self.resolve_kind(n) == "flat":
            return "none"
        if self.quantizer != "auto":
            return self.quantizer
        return "sq8" if n >= self.quantize_above else "none"


@dataclass(frozen=True)
class EncoderInfo:
    """What produced the vectors: the encoder's name, weight fingerprint and dimension."""

    name: str
    fingerprint: str
    dim: int


@dataclass(frozen=True)
class SegmentParams:
    """When an ingest merges index segments (the [segments] table).

    An ingest adds one small segment of the documents it added or changed and marks the old
    copies deleted; these limits bound how many segments and deleted documents a search
    carries. Past ``max_segments`` the small segments are merged into one (the main segment
    is left alone); past ``merge_fraction`` (live documents of the small segments over the
    main segment's) or ``max_deleted`` (deleted share of all documents the segments hold)
    everything is merged into one segment, as ``brainrank optimize`` does.
    """

    max_segments: int = 8
    merge_fraction: float = 0.1
    max_deleted: float = 0.2

    def __post_init__(self) -> None:
        if self.max_segments < 2:
            raise ValueError(f"max_segments must be at least 2, not {self.max_segments}")
        for name in ("merge_fraction", "max_deleted"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {value}")
