"""Out-of-domain detection: does a query's candidate list look like the lists a model saw?

A learned correction only helps where the training data says something about the situation;
elsewhere the safest ranking is the fixed fusion it corrects. Each list is summarised by a few
statistics (how well the best documents match, by meaning and by words). The gate stores their
training range and sends a query back to the fusion when its summary falls outside.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ranker.features import FeatureSchema

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
