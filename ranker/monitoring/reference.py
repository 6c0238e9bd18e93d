"""The monitoring reference: what the champion served for the queries it was trained on.

The drift monitors (``ranker.monitoring.drift``) compare the live window of the query log with
this profile: the top-k feature rows and the query texts of the champion's training queries,
saved by ``retrain`` (or built on demand from the configured judgments) under
``models/monitor/<version>/``. The model's ``baseline.json`` describes all ~150 candidates per
training list, while the log holds only the hits returned, a different population (the fusion
score alone is near 1 for every hit), so a comparison of the two would always alarm. Without a
saved profile the reference falls back to the searches the champion served in its first
``reference_period`` (``reference_from_log``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from brainrank.index.atomic import atomic_directory
from brainrank.index.errors import BrainrankError
from brainrank.ranker.config import MonitorConfig

MONITOR_DIR = "monitor"


@dataclass
class Reference:
    """What the champion served for its training queries: top-k feature rows and query texts."""

    version: str
    feature_names: tuple[str, ...]
    features: np.ndarray  # float32 [rows, features]
    row_search: np.ndarray  # which reference search each row belongs to
    queries: list[str]  # normalised query texts, one per reference search
    out_of_domain: float | None
    source: str
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def searches(self) -> int:
        return len(self.queries)

    def save(self, models_dir: Path) -> Path:
        target = Path(models_dir) / MONITOR_DIR / self.version
        with atomic_directory(target) as tmp:
            with open(tmp / "reference.npz", "wb") as fh:
                np.savez(fh, features=self.features, row_search=self.row_search)
            meta = {k: v for k, v in asdict(self).items() if k not in ("features", "row_search")}
            (tmp / "reference.json").write_text(json.dumps(meta, indent=1))
        return target

    @classmethod
    def load(cls, models_dir: Path, version: str) -> Reference | None:
        folder = Path(models_dir) / MONITOR_DIR / version
        if not (folder / "reference.json").is_file():
            return None
        meta = json.loads((folder / "reference.json").read_text())
        with np.load(folder / "reference.npz", allow_pickle=False) as z:
            arrays = {"features": z["features"], "row_search": z["row_search"]}
        meta["feature_names"] = tuple(meta["feature_names"])
        return cls(**meta, **arrays)


def build_reference(engine, version: str, texts: list[str], k: int = 10) -> Reference:
    """Serve each training query with model ``version`` and keep its hits' feature rows."""
    from brainrank.ranker.feedback.fields import normalise_query

    distinct = list(dict.fromkeys(normalise_query(t) for t in texts if t.strip()))
    if not distinct:
        raise BrainrankError("no training queries to build a monitoring reference from")
    rows, kept, in_domain = [], [], []
    names: tuple[str, ...] = ()
    for text in distinct:
        result = engine.search(text, k=k, mode="learned", model=version)
        if result.in_domain is not None:
            in_domain.append(float(result.in_domain))
        if result.features is not None:
            rows.append(np.asarray(result.features, np.float32))
            names = tuple(result.feature_names)
            kept.append(text)
    return Reference(
        version=version,
        feature_names=names,
        features=np.vstack(rows) if rows else np.zeros((0, len(names)), np.float32),
        row_search=np.repeat(np.arange(len(rows)), [len(r) for r in rows]),
        queries=kept,
        out_of_domain=1.0 - float(np.mean(in_domain)) if in_domain else None,
        source=f"{len(kept)} training queries served by {version}",
    )


def training_texts(version, queries: dict[str, str] | None, qrels: dict | None) -> list[str]:
    """Texts a version trained on: judged queries outside its holdout, plus its click queries."""
    texts = []
    if queries and qrels:
        held = set(version.meta.get("holdout_queries") or [])
        texts += [queries[q] for q in qrels if q in queries and q not in held]
    clicks = version.path / "clicks.jsonl"
    if clicks.is_file():
        from brainrank.ranker.feedback.clicklog import read_click_log

        texts += [imp.query for imp in read_click_log(clicks, skip_bad=True)]
    return texts


def reference_from_log(log, version: str, start: float, end: float, cfg: MonitorConfig):
    """Fallback reference: the searches ``version`` served in [start, end)."""
    sample = log.sample(start, end, max_searches=cfg.max_searches, seed=cfg.seed)
    own = np.flatnonzero(sample.model == version)
    if len(own) < cfg.min_searches:
        return None
    rows = np.isin(sample.row_search, own)
    remap = np.full(len(sample), -1)
    remap[own] = np.arange(len(own))
    dom = sample.in_domain[own]
    return Reference(
        version=version,
        feature_names=sample.feature_names,
        features=sample.features[rows],
        row_search=remap[sample.row_search[rows]],
        queries=sample.queries[own].tolist(),
        out_of_domain=float(1 - np.nanmean(dom)) if np.isfinite(dom).any() else None,
        source=f"{len(own)} searches served by {version} in its first days",
    )
