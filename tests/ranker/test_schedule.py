"""The scheduler runs its jobs, logs each run and survives a failing one; ops settings."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from index.errors import BrainrankError
from ranker.schedule import OpsConfig, build_scheduler, guarded, ops_config, trigger


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


@pytest.mark.parametrize("expr", ["30 3 * * *", "*/5 * * * 1-5", "every 10m", "every 2h"])
def test_triggers(expr):
    assert trigger(expr) is not None


@pytest.mark.parametrize("expr", ["30 3 * *", "61 * * * *", "every soon", "hourly"])
def test_bad_trigger_names_the_setting(expr):
    with pytest.raises(BrainrankError, match=r"config \[schedule\] retrain .* crontab"):
        trigger(expr, where="[schedule] retrain")


def test_ops_config_defaults_and_relative_paths(tmp_path):
    assert ops_config({}) == OpsConfig()
    ops = ops_config(
        {
            "monitor": {"window": "24h", "psi_threshold": 0.3},
            "retrain": {"queries": "q.jsonl", "qrels": "/abs/qrels.txt", "margin": 0.02},
            "schedule": {"monitor": "every 15m"},
            "encoder": {"path": "ignored: not ours"},
        },
        tmp_path,
    )
    assert ops.monitor.window == "24h" and ops.monitor.psi_threshold == 0.3
    assert ops.retrain.queries == tmp_path / "q.jsonl"
    assert ops.retrain.qrels == Path("/abs/qrels.txt")
    assert ops.schedule.monitor == "every 15m"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"monitor": {"windw": "7d"}}, r"unknown key\(s\) in config \[monitor\]: windw"),
        ({"monitor": {"window": "a week"}}, r"config \[monitor\]: window 'a week'"),
        ({"monitor": {"k": 2.5}}, r"\[monitor\] k must be an integer"),
        ({"retrain": {"margin": "small"}}, r"\[retrain\] margin must be a number"),
        ({"retrain": {"queries": 3}}, r"\[retrain\] queries must be a path"),
        ({"schedule": {"retrain": "nightly"}}, r"config \[schedule\] retrain 'nightly'"),
        ({"schedule": "hourly"}, r"config \[schedule\] must be a table"),
    ],
)
def test_bad_ops_config_names_the_field(data, message):
    with pytest.raises(BrainrankError, match=message):
        ops_config(data)


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

    from ranker.schedule import default_jobs
    from tests.conftest import DATA, make_config

    shutil.copytree(trained_config.workspace, tmp_path / "ws")
    cfg = make_config(tmp_path / "ws")
    ops = ops_config(
        {
            "retrain": {
                "queries": str(DATA / "queries.jsonl"),
                "qrels": str(DATA / "qrels-train.txt"),
            }
        }
    )
    jobs = {name: func for name, _, func in default_jobs(cfg, ops)}
    assert jobs["monitor"]() == {"verdict": "fresh", "reasons": []}
    assert jobs["retrain"]()["status"] == "not needed"
