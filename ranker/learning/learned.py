"""A registry model version loaded for serving: ranker, feature schema, gates, clicks, prior and
query memory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError, IndexMismatchError
from brainrank.ranker.learning.features import FeatureExtractor, FeatureSchema
from brainrank.ranker.learning.gates import DomainGate, QueryGate, list_summary
from brainrank.ranker.learning.memory import MEMORY_FILE, QueryMemory
from brainrank.ranker.retrieval.candidates import Candidates, Generation

RANKER_DIR = "ranker"
GATE_FILE = "gate.json"
CLICKS_FILE = "clicks.jsonl"
PRIOR_FILE = "judgment_prior.json"
ENCODER_DIR = "encoder"


@dataclass
class Scored:
    scores: np.ndarray
    features: np.ndarray
    in_domain: bool
    outside: list[str]


class LearnedModel:
    def __init__(
        self,
        version,
        ranker,
        schema: FeatureSchema,
        gate: DomainGate | None,
        clicks,
        query_gate: QueryGate | None = None,
        doc_prior: dict[str, float] | None = None,
        memory: QueryMemory | None = None,
    ):
        self.version = version  # ranker.registry.version.ModelVersion
        self.ranker = ranker
        self.schema = schema
        self.gate = gate
        self.clicks = clicks
        self.query_gate = query_gate
        self.doc_prior = doc_prior
        self.memory = memory

    @classmethod
    def load(cls, version) -> LearnedModel:
        from brainrank.ranker.learning.portable import load_for_serving

        path: Path = version.path
        schema = FeatureSchema.from_dict(version.meta["feature_schema"])
        # The numpy ranker: no TensorFlow (versions saved before it are exported on first use).
        ranker = load_for_serving(path / RANKER_DIR, f"model {version.version}")
        if ranker.n_features != len(schema.names):
            raise IndexMismatchError(
                f"model {version.version}: its ranker takes {ranker.n_features} features but its "
                f"schema lists {len(schema.names)}"
            )
        gate = DomainGate.load(path / GATE_FILE) if (path / GATE_FILE).exists() else None
        clicks = None
        if (path / CLICKS_FILE).exists():
            from brainrank.ranker.feedback.click_stats import click_stats
            from brainrank.ranker.feedback.clicklog import read_click_log

            clicks = click_stats(read_click_log(path / CLICKS_FILE))
        prior = None
        if (path / PRIOR_FILE).exists():
            try:
                prior = json.loads((path / PRIOR_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise BrainrankError(
                    f"model {version.version}: {PRIOR_FILE} is unreadable ({exc})"
                ) from exc
        memory = QueryMemory.load(path / MEMORY_FILE) if (path / MEMORY_FILE).exists() else None
        return cls(version, ranker, schema, gate, clicks, QueryGate.load(path), prior, memory)

    @property
    def encoder_fingerprint(self) -> str:
        return self.version.meta["encoder"]["fingerprint"]

    def bundled_encoder(self) -> Path | None:
        path = self.version.path / ENCODER_DIR
        return path if path.is_dir() else None

    def check_generation(self, generation: Generation) -> None:
        """Refuse an index whose vectors come from another encoder than the model's."""
        built_with = generation.vectors.encoder.fingerprint
        if built_with != self.encoder_fingerprint:
            raise IndexMismatchError(
                f"model {self.version.version} was trained with encoder "
                f"{self.encoder_fingerprint} but the index was built with {built_with}; "
                f"run `brainrank models promote {self.version.version}` to re-embed the "
                "collection for it"
            )

    def extractor(self, generation: Generation) -> FeatureExtractor:
        return FeatureExtractor(generation, self.schema, self.clicks, self.doc_prior, self.memory)

    def score(self, extractor: FeatureExtractor, query: str, cand: Candidates) -> Scored:
        """Learned scores, or the fusion's scores when the query is out of domain."""
        return self.score_features(extractor.extract(query, cand), cand.query_vector)

    def score_features(self, x: np.ndarray, query_vector: np.ndarray | None = None) -> Scored:
        """The same from one list's feature matrix [n_candidates, n_features]."""
        fused = x[:, self.schema.index("fused")].astype(np.float64)
        outside: list[str] = []
        if self.query_gate is not None and query_vector is not None:
            if not self.query_gate.in_domain(query_vector):
                return Scored(fused, x, False, ["query_similarity"])
        if self.gate is not None and len(x):
            outside = self.gate.outside(list_summary(x, self.schema))
            if len(outside) > self.gate.max_outside:
                return Scored(fused, x, False, outside)
        scores = self.ranker.score_docs(x).astype(np.float64) if len(x) else fused
        return Scored(scores, x, True, outside)
