"""Scheduled monitoring and retraining (APScheduler, in the foreground).

``brainrank schedule`` runs the monitor and ``retrain --if-needed`` on cron expressions. Every
run is logged (stderr and one JSON line in ``logs/schedule.jsonl``); a job that raises is
logged with its traceback and the scheduler carries on. Each job runs at most once at a time,
and runs missed while the machine slept are coalesced into one. The jobs and their cron
expressions come from the config (``Config.ops``, read and checked by ``ranker.config``).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brainrank.ranker.config import Config
from brainrank.ranker.durations import parse_schedule

log = logging.getLogger("brainrank.schedule")

RUNS_FILE = "schedule.jsonl"


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
            parse_schedule(expr, timezone, f"[schedule] {name}"),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=misfire_grace_seconds,
        )
    return scheduler


def default_jobs(cfg: Config) -> list[Job]:
    """The monitor and ``retrain --if-needed`` jobs on the config's [schedule]."""
    ops = cfg.ops

    def monitor_job():
        from brainrank.ranker.monitoring.drift import monitor

        report = monitor(cfg, ops.monitor)
        return {"verdict": report.verdict, "reasons": report.reasons}

    def retrain_job():
        from brainrank.ranker.monitoring.retrain import retrain

        report = retrain(cfg, ops.retrain, ops.monitor, if_needed=True)
        return {"status": report.status, "reason": report.reason, "champion": report.champion_after}

    return [
        ("monitor", ops.schedule.monitor, monitor_job),
        ("retrain", ops.schedule.retrain, retrain_job),
    ]


def run_schedule(cfg: Config) -> None:
    """Run the jobs in the foreground until interrupted (Ctrl-C or SIGTERM)."""
    from brainrank.index.workspace import Workspace

    ws = Workspace(cfg.workspace)
    scheduler = build_scheduler(
        default_jobs(cfg),
        timezone=cfg.ops.schedule.timezone,
        runs_file=ws.logs_dir / RUNS_FILE,
        misfire_grace_seconds=cfg.ops.schedule.misfire_grace_seconds,
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
