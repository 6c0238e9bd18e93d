"""Configuration: one TOML file read into frozen dataclasses, validated by ``config_parse``.

Resolution order for every setting: CLI flag, then environment variable (only the few named
below), then the TOML file, then the default. The TOML file is ``--config PATH``, else
``$BRAINRANK_CONFIG``, else ``<workspace>/brainrank.toml`` when it exists.

The freshness-and-drift tables ([monitor], [retrain], [schedule]) are read and validated
with the rest, into ``Config.ops``; relative paths in [retrain] are taken relative to the TOML
file's folder, so a cron job finds them whatever its working directory.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainrank.index.errors import BrainrankError
from brainrank.index.params import BM25Params, SegmentParams, VectorParams
from brainrank.ranker.durations import parse_duration

# [encoder] bulk_precision values (ranker.encoding.precision.bulk_precision).
PRECISIONS = ("auto", "float32", "bfloat16")
# [encoder] bulk_runtime values (ranker.encoding.bulk).
BULK_RUNTIMES = ("auto", "openvino", "tensorflow")
DEFAULT_WORKSPACE = Path("brainrank-data")
_REPO_ROOT = Path(__file__).resolve().parents[1]
FUSIONS = ("rrf", "minmax")


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "brainrank" / "encoders"


def _default_datasets_dir() -> Path:
    # The shared collections sit beside the checkout; fall back to the working directory.
    beside_repo = _REPO_ROOT.parent / "shared" / "datasets"
    return beside_repo if beside_repo.exists() else Path("../shared/datasets")


@dataclass(frozen=True)
class EncoderConfig:
    path: Path | None = None  # None: the fetched all-MiniLM-L6-v2 in cache_dir
    cache_dir: Path = field(default_factory=_default_cache_dir)
    max_length: int = 256
    batch_size: int = 64
    # Long documents get up to this many overlapping passages, scored by the best one.
    max_passages: int = 4
    passage_overlap: int = 64
    # Embedding a collection and fine-tuning: "auto" computes matrix products in bfloat16 on
    # CPUs with AMX or AVX-512 BF16 units (faster, vectors at cosine >= 0.9999 to float32),
    # else float32. Queries are always embedded in float32.
    bulk_precision: str = "auto"
    # Embedding a collection: "auto" runs the exported encoder on OpenVINO (two-tower encoders,
    # which have no export, on TensorFlow); "tensorflow" forces the reference path.
    bulk_runtime: str = "auto"

    def resolved_path(self) -> Path:
        from brainrank.ranker.encoding.fetch import DEFAULT_ENCODER_NAME

        return self.path if self.path is not None else self.cache_dir / DEFAULT_ENCODER_NAME


@dataclass(frozen=True)
class IngestConfig:
    """The [ingest] table: how much of each document is kept."""

    # Characters kept of a document's title and of its body; longer ones are cut there and
    # counted in the ingest report. The encoder reads the first few hundred words only
    # (max_passages windows) and BM25 gains little past this, while a 50 MB record would
    # otherwise cost minutes and gigabytes to tokenize.
    max_text_chars: int = 200_000

    def __post_init__(self):
        if self.max_text_chars < 1:
            raise ValueError(f"max_text_chars must be at least 1, not {self.max_text_chars}")


@dataclass(frozen=True)
class RetrievalConfig:
    candidates: int = 100  # taken from each retriever before fusion
    fusion: str = "minmax"
    rrf_k: int = 60
    # Min-max fusion: dense share, keyword gets the rest. 0.6 was best on SciFact *train*
    # (nDCG@10 0.734, R@100 0.961 vs 0.735, 0.955 at 0.5); test was not used to choose it.
    dense_weight: float = 0.6
    max_query_chars: int = 2000
    default_mode: str = "auto"  # auto: learned once a champion model exists, else hybrid


@dataclass(frozen=True)
class MonitorConfig:
    """The [monitor] table: the live window and each drift alarm (``monitoring.drift``)."""

    window: str = "7d"  # live window ending now
    k: int = 10  # hits per search in the reference; CTR@k
    max_searches: int = 5_000  # sample of the window read for features and queries
    min_searches: int = 30  # below this many searches the traffic monitors abstain
    psi_threshold: float = 0.25
    alpha: float = 0.01  # family-wise level of the two-sample tests
    out_of_range: float = 0.05  # share of live values outside the training range
    unseen_terms_margin: float = 0.15
    js_margin: float = 0.1
    centroid_min: float = 0.02  # cosine distance; below this a centroid shift is ignored
    ood_margin: float = 0.2  # rise of the out-of-domain share
    max_changed_docs: float = 0.1  # share of documents added or changed since training
    max_index_lag: str = "1d"
    ctr_drop: float = 0.25  # relative drop of CTR@k or click MRR
    min_clicked: int = 20  # searches with a click needed in both periods
    reference_period: str = "7d"  # "just after training"
    max_model_age: str = "30d"
    seed: int = 0

    def __post_init__(self):
        for name in ("window", "max_index_lag", "reference_period", "max_model_age"):
            parse_duration(getattr(self, name), name)
        if self.k < 1 or self.max_searches < 1 or self.min_searches < 1:
            raise ValueError("k, max_searches and min_searches must be at least 1")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), not {self.alpha}")


@dataclass(frozen=True)
class RetrainConfig:
    """The [retrain] table: judgments, clicks and promotion margins (``monitoring.retrain``)."""

    queries: Path | None = None  # judged queries (JSONL or TSV)
    qrels: Path | None = None  # their judgments (TREC or BEIR TSV)
    # Without queries and qrels: the workspace's judgment store, this set or all sets merged.
    judgment_set: str | None = None
    clicks_window: str = "90d"  # logged clicks of this period feed the challenger
    max_impressions: int = 100_000  # newest logged searches exported as impressions
    click_holdout: float = 0.2  # share of clicked queries kept out of training to compare
    min_click_eval: int = 20  # held-out clicked searches needed for the click comparison
    max_click_eval: int = 300  # at most this many of them are replayed
    click_margin: float = 0.05  # challenger IPS click DCG@10 may be this share below the champion's
    max_epochs: int = 100
    seed: int = 0
    finetune_encoder: bool = False

    def __post_init__(self):
        parse_duration(self.clicks_window, "clicks_window")
        if not 0 <= self.click_holdout < 1:
            raise ValueError(f"click_holdout must be in [0, 1), not {self.click_holdout}")
        if not 0 <= self.click_margin < 1:
            raise ValueError("click_margin must be in [0, 1)")


@dataclass(frozen=True)
class PromotionConfig:
    """The [promotion] table: when ``train`` and ``retrain`` promote on their own
    (``learning.decision``). A negative margin lets a challenger through unless it is worse
    by more than that at the interval's lower bound."""

    margin: float = 0.0  # the nDCG@10 difference's lower bound must be above this
    min_holdout_queries: int = 20  # fewer held-out queries: cross-validate over all judged
    confidence: float = 0.95
    resamples: int = 1000  # bootstrap resamples of the held-out queries
    folds: int = 5  # cross-validation folds

    def __post_init__(self):
        if not -1.0 <= self.margin < 1.0:
            raise ValueError(f"margin must be in [-1, 1), not {self.margin}")
        if self.min_holdout_queries < 1 or self.resamples < 100 or self.folds < 2:
            raise ValueError("min_holdout_queries >= 1, resamples >= 100 and folds >= 2")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), not {self.confidence}")


@dataclass(frozen=True)
class ScheduleConfig:
    """The [schedule] table: 5-field crontab expressions, or "every 10m" intervals."""

    monitor: str = "0 * * * *"  # hourly
    retrain: str = "30 3 * * *"  # daily at 03:30, retraining only when the monitor says stale
    timezone: str = "UTC"
    misfire_grace_seconds: int = 3600


@dataclass(frozen=True)
class OpsConfig:
    """The settings of the freshness-and-drift commands: monitor, retrain, schedule."""

    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass(frozen=True)
class ServiceConfig:
    """The [service] table of ``brainrank serve`` (docs/serving.md)."""

    # The query log the service appends to, relative to the workspace (default
    # logs/querylog.sqlite): replicas that share no disk each keep their own file.
    log_path: Path | None = None
    # Read the index files into the page cache when a worker opens an index, before it serves
    # from it (index.preload): no slow searches while a large index's pages fault in.
    preload: bool = True


@dataclass(frozen=True)
class ClusterConfig:
    """The [cluster] table: bulk embedding on a Ray cluster (``ingest`` and ``reindex --ray``)."""

    # Set, ingest and reindex embed on the Ray cluster there ("auto", "HOST:6379",
    # "ray://HOST:10001"; "local" starts one on this machine). Empty: only with --ray.
    ray_address: str = ""
    actors: int = 0  # encoders in the pool; 0: one per cpus_per_actor CPUs of the cluster
    cpus_per_actor: int = 1  # CPUs each encoder reserves, and the threads it computes on
    batch_rows: int = 256  # passages per Ray Data batch: the unit retried when a worker dies

    def __post_init__(self):
        if self.actors < 0 or self.cpus_per_actor < 1 or self.batch_rows < 1:
            raise ValueError("actors must be >= 0, cpus_per_actor and batch_rows >= 1")


@dataclass(frozen=True)
class Config:
    workspace: Path = DEFAULT_WORKSPACE
    datasets: Path = field(default_factory=_default_datasets_dir)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    bm25: BM25Params = field(default_factory=BM25Params)
    vectors: VectorParams = field(default_factory=VectorParams)
    segments: SegmentParams = field(default_factory=SegmentParams)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)  # [monitor], [retrain], [schedule]
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    source: Path | None = None  # the TOML file this came from, if any

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, saved beside every index and model."""

        def conv(v: Any) -> Any:
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            return v

        return conv(dataclasses.asdict(self))


def load_config(
    config_path: Path | None = None,
    *,
    workspace: Path | None = None,
    encoder: Path | None = None,
    env: dict[str, str] | None = None,
) -> Config:
    """Resolve the configuration from flags, environment and TOML file."""
    env = os.environ if env is None else env
    ws = (
        Path(workspace)
        if workspace
        else (Path(env["BRAINRANK_WORKSPACE"]) if env.get("BRAINRANK_WORKSPACE") else None)
    )
    path = config_path or (Path(env["BRAINRANK_CONFIG"]) if env.get("BRAINRANK_CONFIG") else None)
    if path is None:
        candidate = (ws or DEFAULT_WORKSPACE) / "brainrank.toml"
        path = candidate if candidate.exists() else None
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise BrainrankError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise BrainrankError(f"config file {path} is not valid TOML: {exc}") from None
    from brainrank.ranker.config_parse import from_dict

    cfg = from_dict(data, source=Path(path) if path else None)
    changes: dict[str, Any] = {}
    if ws is not None:
        changes["workspace"] = ws
    if env.get("BRAINRANK_DATASETS"):
        changes["datasets"] = Path(env["BRAINRANK_DATASETS"])
    if encoder is not None:
        changes["encoder"] = dataclasses.replace(cfg.encoder, path=encoder)
    return dataclasses.replace(cfg, **changes) if changes else cfg
