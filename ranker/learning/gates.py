"""Out-of-domain detection: is a query like the ones a model was trained on?

A learned correction only helps where the training data says something about the situation;
elsewhere the safest ranking is the fixed fusion it corrects. Two gates send a query back to
the fusion:

- the query gate: the query's embedding is less similar to its nearest training query than
  nearly all in-domain queries are (the threshold is a low quantile of the validation
  queries' nearest-training-query similarity, so it is calibrated on in-domain data only);
- the list gate: statistics of the candidate list (how well the best documents match, by
  meaning and by words) fall outside the range seen in training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from brainrank.ranker.learning.features import FeatureSchema

SUMMARY = (
    "top_dense",  # best cosine in the list
    "top10_dense",  # mean cosine of the fusion's top 10
    "top10_coverage",  # mean query-term coverage of the fusion's top 10
    "top_bm25_z",  # how far the best keyword match stands out
    "query_terms",
)


def list_summary(x: np.ndarray, schema: FeatureSchema) -> np.ndarray:
    """Summary statistics of one list's feature matrix [n_docs, n_features]."""
    if len(x) == 0:
        return np.zeros(len(SUMMARY))
    col = {name: x[:, schema.index(name)] for name in ("fused", "dense", "coverage", "bm25_z")}
    top = np.argsort(-col["fused"], kind="stable")[:10]
    return np.array(
        [
            col["dense"].max(),
            col["dense"][top].mean(),
            col["coverage"][top].mean(),
            col["bm25_z"].max(),
            x[0, schema.index("query_terms")],
        ]
    )


@dataclass(frozen=True)
class DomainGate:
    low: tuple[float, ...]
    high: tuple[float, ...]
    max_outside: int = 1  # summaries outside the range tolerated before falling back

    @classmethod
    def fit(
        cls,
        summaries: np.ndarray,
        *,
        quantile: float = 0.01,
        margin: float = 0.25,
        max_outside: int = 1,
    ) -> DomainGate:
        """Range = [q, 1-q] training quantiles widened by ``margin`` times their spread."""
        lo = np.quantile(summaries, quantile, axis=0)
        hi = np.quantile(summaries, 1 - quantile, axis=0)
        spread = hi - lo
        return cls(tuple(lo - margin * spread), tuple(hi + margin * spread), max_outside)

    def outside(self, summary: np.ndarray) -> list[str]:
        """Names of the summary statistics outside the training range."""
        return [
            name
            for name, v, lo, hi in zip(SUMMARY, summary, self.low, self.high, strict=True)
            if v < lo or v > hi
        ]

    def in_domain(self, summary: np.ndarray) -> bool:
        return len(self.outside(summary)) <= self.max_outside

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"summary": SUMMARY, **asdict(self)}, indent=2))

    @classmethod
    def load(cls, path: Path) -> DomainGate:
        data = json.loads(path.read_text())
        return cls(tuple(data["low"]), tuple(data["high"]), int(data["max_outside"]))


@dataclass(frozen=True)
class QueryGate:
    """Training-query embeddings and the similarity below which a query is out of domain."""

    vectors: np.ndarray  # unit vectors of the training queries
    threshold: float

    @classmethod
    def fit(cls, train: np.ndarray, validation: np.ndarray, *, quantile: float = 0.05) -> QueryGate:
        return cls.calibrated(train, (validation @ train.T).max(axis=1), quantile=quantile)

    @classmethod
    def calibrated(
        cls, train: np.ndarray, nearest: np.ndarray, *, quantile: float = 0.05
    ) -> QueryGate:
        """The gate over ``train``'s vectors whose threshold is the ``quantile`` of in-domain
        queries' similarities to their nearest training query (``nearest``)."""
        return cls(train.astype(np.float32), float(np.quantile(nearest, quantile)))

    def similarity(self, query_vector: np.ndarray) -> float:
        return float((self.vectors @ query_vector.astype(np.float32)).max())

    def in_domain(self, query_vector: np.ndarray) -> bool:
        return self.similarity(query_vector) >= self.threshold

    def save(self, directory: Path) -> None:
        np.save(directory / "gate_queries.npy", self.vectors, allow_pickle=False)
        (directory / "gate_queries.json").write_text(json.dumps({"threshold": self.threshold}))

    @classmethod
    def load(cls, directory: Path) -> QueryGate | None:
        if not (directory / "gate_queries.npy").exists():
            return None
        threshold = json.loads((directory / "gate_queries.json").read_text())["threshold"]
        return cls(np.load(directory / "gate_queries.npy", allow_pickle=False), threshold)
