"""The freshness-and-drift commands through Typer's CliRunner, on real workspaces."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from brainrank.ranker.cli.app import app
from brainrank.ranker.feedback.querylog import QueryLog
from tests.conftest import DATA

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"BRAINRANK_CONFIG": ""})


@pytest.fixture
def ws(trained_config, tmp_path):
    shutil.copytree(trained_config.workspace, tmp_path / "ws")
    return tmp_path / "ws"


def test_help_lists_the_commands():
    res = run("--help")
    assert res.exit_code == 0
    for cmd in ("feedback", "monitor", "retrain", "schedule"):
        assert cmd in res.output


def test_monitor_fresh_json_exits_0(ws):
    res = run("monitor", "--json", "-w", ws)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["verdict"] == "fresh" and payload["model"] == "v0001"
    assert set(payload["monitors"]) == {"features", "queries", "outcomes", "corpus", "staleness"}


def test_monitor_stale_exits_3(ws):
    (ws / "brainrank.toml").write_text('[monitor]\nmax_model_age = "0s"\n')
    res = run("monitor", "--window", "24h", "-w", ws)
    assert res.exit_code == 3, res.output
    assert "stale" in res.output and "days old" in res.output


def test_feedback_imports_and_reports(ws):
    with QueryLog.open(ws) as log:
        from tests.ranker.test_querylog import result

        sid = log.record(result("brake pads", ["d001", "d002"]))
    path = ws / "fb.jsonl"
    path.write_text(json.dumps({"impression_id": sid, "doc_id": "d002", "time": 1e9}) + "\n")
    res = run("feedback", path, "--json", "-w", ws)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["imported"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["feedback", "missing.jsonl"], "feedback file missing.jsonl does not exist"),
        (["feedback", "BAD"], "bad.jsonl line 1: not valid JSON"),
        (["monitor", "--window", "soon"], "--window 'soon' is not a duration"),
        (["retrain"], "retraining needs judgments"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(ws, args, message):
    (ws / "bad.jsonl").write_text("{oops\n")
    args = [str(ws / "bad.jsonl") if a == "BAD" else a for a in args]
    res = run(*args, "-w", ws)
    assert res.exit_code == 1, res.output
    assert message in res.output.replace("\n", "") and "Traceback" not in res.output


def test_bad_ops_config_is_exit_1(ws):
    (ws / "brainrank.toml").write_text('[schedule]\nretrain = "nightly"\n')
    res = run("schedule", "-w", ws)
    # (ranker.cli.app prints errors as Rich markup, which swallows "[schedule]" for now)
    assert res.exit_code == 1 and "retrain 'nightly' is not a crontab" in res.output


def test_retrain_if_needed_on_a_fresh_model_does_nothing(ws):
    (ws / "brainrank.toml").write_text(
        f'[retrain]\nqueries = "{DATA / "queries.jsonl"}"\nqrels = "{DATA / "qrels-train.txt"}"\n'
    )
    res = run("retrain", "--if-needed", "--json", "-w", ws)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["status"] == "not needed"


def test_monitor_without_a_promoted_model_reports_no_change_share(sample_config, tmp_path):
    shutil.copytree(sample_config.workspace, tmp_path / "ws")
    res = run("monitor", "--json", "-w", tmp_path / "ws")
    assert res.exit_code == 0, res.output
    corpus = json.loads(res.stdout.strip().splitlines()[-1])["monitors"]["corpus"]
    assert corpus["documents"] > 0 and corpus["changed_share"] is None
    # A wide terminal, so the table keeps the details on one line.
    env = {"BRAINRANK_CONFIG": "", "COLUMNS": "200"}
    res = runner.invoke(app, ["monitor", "-w", str(tmp_path / "ws")], env=env)
    assert "604 documents; no promoted model to compare them with" in res.output, res.output
    assert "since training" not in res.output
