"""Configuration tables from TOML: each ``[section]`` checked key by key against its dataclass
in ``config`` (unknown keys, wrong types and out-of-range values name the setting), then the
settings that depend on each other."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from brainrank.index.errors import BrainrankError
from brainrank.index.params import BM25Params, SegmentParams, VectorParams
from brainrank.ranker.config import (
    BULK_RUNTIMES,
    FUSIONS,
    PRECISIONS,
    ClusterConfig,
    Config,
    EncoderConfig,
    IngestConfig,
    MonitorConfig,
    OpsConfig,
    PromotionConfig,
    RetrainConfig,
    RetrievalConfig,
    ScheduleConfig,
    ServiceConfig,
)
from brainrank.ranker.durations import parse_schedule

_SECTIONS = {
    "encoder": EncoderConfig,
    "ingest": IngestConfig,
    "bm25": BM25Params,
    "vectors": VectorParams,
    "segments": SegmentParams,
    "retrieval": RetrievalConfig,
    "service": ServiceConfig,
    "promotion": PromotionConfig,
    "cluster": ClusterConfig,
}
_OPS_SECTIONS = {"monitor": MonitorConfig, "retrain": RetrainConfig, "schedule": ScheduleConfig}
_PATH_KEYS = ("path", "queries", "qrels", "log_path")  # values that are paths but default to None


def from_dict(data: dict[str, Any], source: Path | None) -> Config:
    """The Config of a parsed TOML document (``source`` its file), checked."""
    top = dict(data)
    tables: dict[str, Any] = {}
    for name, cls in {**_SECTIONS, **_OPS_SECTIONS}.items():
        section = top.pop(name, {})
        if not isinstance(section, dict):
            raise BrainrankError(f"config [{name}] must be a table")
        if name == "retrain" and "margin" in section:
            raise BrainrankError(
                "config [retrain] margin has moved: automatic promotion now needs the lower "
                "bound of a bootstrap interval above [promotion] margin (README: Promotion)"
            )
        # Judgment files sit beside the config file; the encoder's paths keep the working dir.
        base_dir = source.parent if name == "retrain" and source is not None else None
        tables[name] = _build(cls, section, name, base_dir)
    kwargs: dict[str, Any] = {name: tables[name] for name in _SECTIONS}
    kwargs["ops"] = OpsConfig(**{name: tables[name] for name in _OPS_SECTIONS})
    kwargs["source"] = source
    for key in ("workspace", "datasets"):
        if key in top:
            value = top.pop(key)
            if not isinstance(value, str):
                raise BrainrankError(f"config {key} must be a path string, not {value!r}")
            kwargs[key] = Path(value).expanduser()
    if top:
        raise BrainrankError(
            f"unknown config key(s): {', '.join(sorted(top))}; allowed top-level keys: "
            f"workspace, datasets, {', '.join([*_SECTIONS, *_OPS_SECTIONS])}"
        )
    cfg = Config(**kwargs)
    validate(cfg)
    return cfg


def _build(cls: type, values: dict[str, Any], section: str, base_dir: Path | None = None) -> Any:
    """``cls`` from one table; relative paths are joined to ``base_dir`` when given."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BrainrankError(
            f"unknown key(s) in config [{section}]: {', '.join(unknown)}; "
            f"allowed: {', '.join(fields)}"
        )
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        where = f"config [{section}] {key}"
        if isinstance(default, Path) or key in _PATH_KEYS:
            if not isinstance(value, str):
                raise BrainrankError(f"{where} must be a path string, not {value!r}")
            value = Path(value).expanduser()
            if base_dir is not None and not value.is_absolute():
                value = base_dir / value
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise BrainrankError(f"{where} must be true or false, not {value!r}")
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BrainrankError(f"{where} must be a number, not {value!r}")
            if isinstance(default, int) and not isinstance(value, int):
                raise BrainrankError(f"{where} must be an integer, not {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise BrainrankError(f"{where} must be a string, not {value!r}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise BrainrankError(f"config [{section}]: {exc}") from None


def validate(cfg: Config) -> None:
    """Raise BrainrankError naming the first setting that is out of range."""
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
    if e.bulk_precision not in PRECISIONS:
        raise BrainrankError(
            f"config [encoder] bulk_precision must be auto, float32 or bfloat16, "
            f"got {e.bulk_precision!r}"
        )
    if e.bulk_runtime not in BULK_RUNTIMES:
        raise BrainrankError(
            f"config [encoder] bulk_runtime must be one of {', '.join(BULK_RUNTIMES)}, "
            f"got {e.bulk_runtime!r}"
        )
    if not 0 <= e.passage_overlap < e.max_length // 2:
        raise BrainrankError("config [encoder] passage_overlap must be in [0, max_length / 2)")
    schedule = cfg.ops.schedule
    if schedule != ScheduleConfig():  # the defaults are valid; spare every command the import
        try:
            for job in ("monitor", "retrain"):
                parse_schedule(getattr(schedule, job), schedule.timezone, f"[schedule] {job}")
        except ImportError:  # APScheduler missing: `brainrank schedule` reports it when it starts
            pass
