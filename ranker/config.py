"""Configuration: one TOML file read into frozen dataclasses, validated here.

Resolution order for every setting: CLI flag, then environment variable (only the few named
below), then the TOML file, then the default. The TOML file is ``--config PATH``, else
``$BRAINRANK_CONFIG``, else ``<workspace>/brainrank.toml`` when it exists.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.bm25 import BM25Params
from index.errors import BrainrankError
from index.vectors import VectorParams

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
    # CPUs with AMX units (1.5-1.7x faster, vectors at cosine >= 0.99996), else float32.
    # Queries are always embedded in float32.
    bulk_precision: str = "auto"

    def resolved_path(self) -> Path:
        from ranker.encoder_fetch import DEFAULT_ENCODER_NAME

        return self.path if self.path is not None else self.cache_dir / DEFAULT_ENCODER_NAME


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
class Config:
    workspace: Path = DEFAULT_WORKSPACE
    datasets: Path = field(default_factory=_default_datasets_dir)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    bm25: BM25Params = field(default_factory=BM25Params)
    vectors: VectorParams = field(default_factory=VectorParams)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
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
    cfg = _from_dict(data, source=Path(path) if path else None)
    changes: dict[str, Any] = {}
    if ws is not None:
        changes["workspace"] = ws
    if env.get("BRAINRANK_DATASETS"):
        changes["datasets"] = Path(env["BRAINRANK_DATASETS"])
    if encoder is not None:
        changes["encoder"] = dataclasses.replace(cfg.encoder, path=encoder)
    return dataclasses.replace(cfg, **changes) if changes else cfg


def _from_dict(data: dict[str, Any], source: Path | None) -> Config:
    top = dict(data)
    sections = {
        "encoder": EncoderConfig,
        "bm25": BM25Params,
        "vectors": VectorParams,
        "retrieval": RetrievalConfig,
    }
    kwargs: dict[str, Any] = {"source": source}
    for name, cls in sections.items():
        section = top.pop(name, {})
        if not isinstance(section, dict):
            raise BrainrankError(f"config [{name}] must be a table")
        kwargs[name] = _build(cls, section, name)
    for key in ("workspace", "datasets"):
        if key in top:
            kwargs[key] = Path(top.pop(key)).expanduser()
    # [monitor], [retrain] and [schedule] belong to the operations commands, which read and
    # validate them (ranker.schedule.ops_config).
    for key in ("monitor", "retrain", "schedule"):
        top.pop(key, None)
    if top:
        raise BrainrankError(
            f"unknown config key(s): {', '.join(sorted(top))}; allowed top-level keys: "
            f"workspace, datasets, {', '.join(sections)}, monitor, retrain, schedule"
        )
    cfg = Config(**kwargs)
    _validate(cfg)
    return cfg


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BrainrankError(
            f"unknown key(s) in config [{section}]: {', '.join(unknown)}; "
            f"allowed: {', '.join(fields)}"
        )
    kwargs = {}
    for key, value in values.items():
        default = getattr(cls(), key)
        if isinstance(default, Path) or key in ("path", "cache_dir"):
            value = Path(value).expanduser()
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise BrainrankError(f"config [{section}] {key} must be true or false, not {value!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BrainrankError(f"config [{section}] {key} must be a number, not {value!r}")
            if isinstance(default, int) and not isinstance(value, int):
                raise BrainrankError(f"config [{section}] {key} must be an integer, not {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise BrainrankError(f"config [{section}] {key} must be a string, not {value!r}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise BrainrankError(f"config [{section}]: {exc}") from None


def _validate(cfg: Config) -> None:
    r = cfg.retrieval
    modes = ("auto", "bm25", "dense", "hybrid", "hybrid-rrf", "hybrid-minmax", "learned")
    if r.default_mode not in modes:
        raise BrainrankError(
            f"config [retrieval] default_mode {r.default_mode!r} is not one of {', '.join(modes)}"
        )
    if r.fusion not in FUSIONS:
        raise BrainrankError(
            f"config [retrieval] fusion {r.fusion!r} is not one of {', '.join(FUSIONS)}"
        )
    if not 0.0 <= r.dense_weight <= 1.0:
        raise BrainrankError(f"config [retrieval] dense_weight {r.dense_weight} must be in [0, 1]")
    for name in ("candidates", "rrf_k", "max_query_chars"):
        if getattr(r, name) < 1:
            raise BrainrankError(f"config [retrieval] {name} must be at least 1")
    e = cfg.encoder
    if e.max_length < 8 or e.batch_size < 1 or e.max_passages < 1:
        raise BrainrankError(
            "config [encoder] max_length must be >= 8, batch_size and max_passages >= 1"
        )
    if e.bulk_precision not in ("auto", "float32", "bfloat16"):
        raise BrainrankError(
            f"config [encoder] bulk_precision must be auto, float32 or bfloat16, "
            f"got {e.bulk_precision!r}"
        )
    if not 0 <= e.passage_overlap < e.max_length // 2:
        raise BrainrankError("config [encoder] passage_overlap must be in [0, max_length / 2)")
