"""The scheduler runs its jobs, logs each run and survives a failing one."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from brainrank.index.errors import BrainrankError
from brainrank.ranker.monitoring.schedule import build_scheduler, guarded


def test_scheduler_runs_jobs_and_survives_a_failing_one(tmp_path):
    runs = tmp_path / "logs" / "schedule.jsonl"
    calls = {"ok": 0, "bad": 0}
    done = threading.Event()

    def ok():
        calls["ok"] += 1
        if calls["ok"] >= 3 and calls["bad"] >= 2:
            done.set()
        return {"verdict": "fresh"}

    def bad():
        calls["bad"] += 1
        raise RuntimeError("monitor exploded")

    scheduler = build_scheduler(
        [("good", "every 0.2s", ok), ("broken", "every 0.2s", bad)], runs_file=runs
    )
    thread = threading.Thread(target=scheduler.start, daemon=True)  # blocking, as in the CLI
    thread.start()
    try:
        assert done.wait(20), calls
    finally:
        scheduler.shutdown(wait=True)  # lets running jobs write their log line
        thread.join(5)
    entries = [json.loads(line) for line in runs.read_text().splitlines()]
    failed = [e for e in entries if e["status"] == "failed"]
    good = [e for e in entries if e["job"] == "good"]
    assert failed and all(e["error"] == "RuntimeError: monitor exploded" for e in failed)
    assert len(good) >= 2 and all(e["result"] == {"verdict": "fresh"} for e in good)


def test_guarded_never_raises(tmp_path, caplog):
    def boom():
        raise ValueError("bad")

    guarded("boom", boom, tmp_path / "runs.jsonl")()
    assert "boom: failed: bad" in caplog.text
    assert json.loads((tmp_path / "runs.jsonl").read_text())["status"] == "failed"


def test_a_bad_expression_names_the_job():
    with pytest.raises(BrainrankError, match=r"config \[schedule\] retrain 'nightly' is not a"):
        build_scheduler([("retrain", "nightly", lambda: None)], blocking=False)


def test_interval_jobs_do_not_overlap(tmp_path):
    running, overlaps = [0], [0]

    def slow():
        running[0] += 1
        overlaps[0] = max(overlaps[0], running[0])
        time.sleep(0.5)
        running[0] -= 1

    scheduler = build_scheduler([("slow", "every 0.1s", slow)], blocking=False)
    scheduler.start()
    time.sleep(1.2)
    scheduler.shutdown(wait=True)
    assert overlaps[0] == 1


def test_default_jobs_run_monitor_and_retrain(trained_config, tmp_path):
    import shutil

    from brainrank.ranker.config import RetrainConfig
    from brainrank.ranker.monitoring.schedule import default_jobs
    from tests.conftest import DATA, make_config

    shutil.copytree(trained_config.workspace, tmp_path / "ws")
    cfg = make_config(tmp_path / "ws")
    judgments = RetrainConfig(queries=DATA / "queries.jsonl", qrels=DATA / "qrels-train.txt")
    cfg = dataclasses.replace(cfg, ops=dataclasses.replace(cfg.ops, retrain=judgments))
    jobs = {name: func for name, _, func in default_jobs(cfg)}
    assert jobs["monitor"]() == {"verdict": "fresh", "reasons": []}
    assert jobs["retrain"]()["status"] == "not needed"
