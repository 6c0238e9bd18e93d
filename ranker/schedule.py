"""Scheduled monitoring and retraining (APScheduler, in the foreground), and the settings of
the freshness-and-drift commands: the [monitor], [retrain] and [schedule] tables of the config.

``brainrank schedule`` runs the monitor and ``retrain --if-needed`` on cron expressions. Every
run is logged (stderr and one JSON line in ``logs/schedule.jsonl``); a job that raises is
logged with its traceback and the scheduler carries on. Each job runs at most once at a time,
and runs missed while the machine slept are coalesced into one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from index.errors import BrainrankError
from ranker.drift import MonitorConfig, parse_duration
from ranker.retrain import RetrainConfig

log = logging.getLogger("brainrank.schedule")

OPS_TABLES = ("monitor", "retrain", "schedule")
RUNS_FILE = "schedule.jsonl"


@dataclass(frozen=True)
class ScheduleConfig:
    """The [schedule] table: 5-field crontab expressions, or "every 10m" intervals."""

    monitor: str = "0 * * * *"  # hourly
    retrain: str = "30 3 * * *"  # daily at 03:30, retraining only when the monitor says stale
    timezone: str = "UTC"
    misfire_grace_seconds: int = 3600


@dataclass(frozen=True)
class OpsConfig:
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


def ops_config(data: dict[str, Any], base_dir: Path | None = None) -> OpsConfig:
    """Build the settings from a parsed TOML document (other tables are ignored).

    Relative ``[retrain]`` paths are taken relative to ``base_dir`` (the config file's
    folder), so cron jobs find them whatever their working directory.
    """
    kinds = {"monitor": MonitorConfig, "retrain": RetrainConfig, "schedule": ScheduleConfig}
    parts = {}
    for name, cls in kinds.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise BrainrankError(f"config [{name}] must be a table")
        parts[name] = _build(cls, table, name, base_dir)
    try:
        for name in ("monitor", "retrain"):
            expr = getattr(parts["schedule"], name)
            trigger(expr, parts["schedule"].timezone, f"[schedule] {name}")
    except ImportError:  # checked again when `brainrank schedule` starts
        pass
    return OpsConfig(**parts)


def _build(cls, values: dict, section: str, base_dir: Path | None):
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
        if key in ("queries", "qrels"):
            if not isinstance(value, str):
                raise BrainrankError(f"{where} must be a path string, not {value!r}")
            path = Path(value).expanduser()
            value = base_dir / path if base_dir is not None and not path.is_absolute() else path
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


def trigger(expr: str, timezone: str = "UTC", where: str = "schedule"):
    """An APScheduler trigger from a crontab line ("30 3 * * *") or "every 90s"/"every 10m"."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    text = expr.strip()
    try:
        if text.lower().startswith("every "):
            seconds = parse_duration(text[6:], where)
            if seconds <= 0:
                raise ValueError("the interval must be positive")
            return IntervalTrigger(seconds=seconds, timezone=timezone)
        return CronTrigger.from_crontab(text, timezone=timezone)
    except (ValueError, LookupError) as exc:
        raise BrainrankError(
            f"config {where} {expr!r} is not a crontab expression (minute hour day month "
            f"weekday, e.g. '30 3 * * *') or an interval like 'every 10m': {exc}"
        ) from None


Job = tuple[str, str, Callable[[], Any]]  # (name, cron or interval expression, function)


def guarded(name: str, func: Callable[[], Any], runs_file: Path | None = None):
    """``func`` wrapped to log each run (start, end, outcome) and never raise."""

    def run() -> None:
        start = time.time()
        log.info("%s: started", name)
        entry: dict[str, Any] = {"job": name, "start": _iso(start)}
        try:
            result = func()
        except Exception as exc:  # noqa: BLE001 (one failing run must not stop the schedule)
            log.error("%s: failed: %s\n%s", name, exc, traceback.format_exc())
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        else:
            summary = result if isinstance(result, (str, int, float, dict, type(None))) else None
            log.info("%s: finished in %.1fs%s", name, time.time() - start, _brief(summary))
            entry.update(status="ok", result=summary)
        entry["seconds"] = round(time.time() - start, 3)
        if runs_file is not None:
            try:
                runs_file.parent.mkdir(parents=True, exist_ok=True)
                with open(runs_file, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry, default=str) + "\n")
            except OSError as exc:
                log.warning("could not append to %s: %s", runs_file, exc)

    run.__name__ = f"brainrank_{name}"
    return run


def build_scheduler(
    jobs: list[Job],
    *,
    timezone: str = "UTC",
    blocking: bool = True,
    runs_file: Path | None = None,
    misfire_grace_seconds: int = 3600,
):
    """A BlockingScheduler (or BackgroundScheduler) with each job guarded and logged."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    cls = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = cls(timezone=timezone)
    for name, expr, func in jobs:
        scheduler.add_job(
            guarded(name, func, runs_file),
            trigger(expr, timezone, f"[schedule] {name}"),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=misfire_grace_seconds,
        )
    return scheduler


def default_jobs(cfg, ops: OpsConfig) -> list[Job]:
    """The monitor and ``retrain --if-needed`` jobs of the config."""

    def monitor_job():
        from ranker.drift import monitor

        report = monitor(cfg, ops.monitor)
        return {"verdict": report.verdict, "reasons": report.reasons}

    def retrain_job():
        from ranker.retrain import retrain

        report = retrain(cfg, ops.retrain, ops.monitor, if_needed=True)
        return {"status": report.status, "reason": report.reason, "champion": report.champion_after}

    return [
        ("monitor", ops.schedule.monitor, monitor_job),
        ("retrain", ops.schedule.retrain, retrain_job),
    ]


def run_schedule(cfg, ops: OpsConfig) -> None:
    """Run the jobs in the foreground until interrupted (Ctrl-C or SIGTERM)."""
    from index.workspace import Workspace

    ws = Workspace(cfg.workspace)
    scheduler = build_scheduler(
        default_jobs(cfg, ops),
        timezone=ops.schedule.timezone,
        runs_file=ws.logs_dir / RUNS_FILE,
        misfire_grace_seconds=ops.schedule.misfire_grace_seconds,
    )
    for job in scheduler.get_jobs():
        log.info("scheduled %s: %s", job.name, job.trigger)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("schedule stopped")


def _brief(summary) -> str:
    if isinstance(summary, dict):
        return ": " + ", ".join(f"{k}={v}" for k, v in summary.items())
    return f": {summary}" if summary is not None else ""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
