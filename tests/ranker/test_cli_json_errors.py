"""Failures through the CLI: one line and an exit code, JSON on stdout with --json, and the
input classes that used to end in a traceback (through Typer's CliRunner, on real workspaces)."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from brainrank.ranker.cli.app import app
from tests.conftest import DATA

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"BRAINRANK_CONFIG": ""})


def assert_one_line_failure(res, code: int, message: str) -> None:
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], res.stderr


def json_failure(res) -> dict:
    lines = res.stdout.strip().splitlines()
    assert lines, f"nothing on stdout; stderr: {res.stderr}"
    payload = json.loads(lines[-1])
    assert set(payload) == {"error", "exit_code"} and payload["exit_code"] == res.exit_code
    return payload


@pytest.fixture
def ws(sample_config, tmp_path):
    """A writable copy of the sample workspace."""
    shutil.copytree(sample_config.workspace, tmp_path / "ws")
    return tmp_path / "ws"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["search", "refund", "--json", "-w", "EMPTY"], 1, "has no documents"),
        (["search", "--json", "--no-such-flag"], 2, "No such option: --no-such-flag"),
        (["eval", "--queries", DATA / "queries.jsonl", "--qrels", "MISSING", "--json"], 1, "nope"),
        (["train", "--queries", "MISSING", "--qrels", "MISSING", "--json", "-w", "EMPTY"], 1, ""),
        (["feedback", "MISSING", "--json", "-w", "EMPTY"], 1, "has no documents"),
        (["monitor", "--window", "soon", "--json", "-w", "EMPTY"], 1, ""),
        (["retrain", "--json", "-w", "EMPTY"], 1, "no documents"),
        (["search", "caf\udcff", "--json"], 1, "argument 2 (caf\\xff) is not valid UTF-8"),
    ],
    ids=["search", "usage", "eval", "train", "feedback", "monitor", "retrain", "utf8"],
)
def test_every_json_command_prints_its_failure_as_json(tmp_path, args, code, message):
    args = [
        {"EMPTY": tmp_path / "empty", "MISSING": tmp_path / "nope.jsonl"}.get(a, a)
        if isinstance(a, str)
        else a
        for a in args
    ]
    res = run(*args)
    assert res.exit_code == code, res.output
    payload = json_failure(res)
    assert message in payload["error"] and "Traceback" not in res.output


def test_without_json_the_failure_is_one_line_on_stderr(tmp_path):
    res = run("search", "refund", "-w", tmp_path / "empty")
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ")


def test_invalid_utf8_in_arguments_is_one_line(sample_config):
    res = run("search", "caf\udcff", "-w", sample_config.workspace)
    assert_one_line_failure(res, 1, "is not valid UTF-8")
    res = run("ingest", "docs-\udce9.jsonl", "-w", sample_config.workspace)
    assert_one_line_failure(res, 1, "argument 2 (docs-\\xe9.jsonl) is not valid UTF-8")


def test_qrels_grades_beyond_64_bits_are_an_error(sample_config, tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(f"q01 0 d008 {2**70}\n")
    res = run("eval", "--queries", DATA / "queries.jsonl", "--qrels", qrels, "--mode", "bm25")
    assert_one_line_failure(res, 1, f"qrels.txt line 1: grade {2**70} is out of range")


def test_run_dir_pointing_at_a_file_fails_before_searching(sample_config, tmp_path):
    target = tmp_path / "runs"
    target.write_text("not a folder")
    res = run(
        "eval",
        "--queries",
        DATA / "queries.jsonl",
        "--qrels",
        DATA / "qrels-test.txt",
        "--run-dir",
        target,
        "--json",
        "-w",
        sample_config.workspace,
    )
    assert res.exit_code == 1
    assert "is a file" in json_failure(res)["error"]
    assert target.read_text() == "not a folder"


def test_eval_warns_about_judgments_of_unknown_documents(sample_config, tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q01 0 d008 2\nq01 0 nowhere 1\nq999 0 d008 1\n")
    res = run(
        "eval", "--queries", DATA / "queries.jsonl", "--qrels", qrels, "-m", "bm25",
        "-w", sample_config.workspace,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "1 of 2 judged queries are not in the queries file" in res.stderr
    assert "1 of 2 judgments name documents that are not in the collection" in res.stderr
    qrels.write_text("q01 0 gone1 2\nq02 0 gone2 1\n")
    res = run(
        "eval", "--queries", DATA / "queries.jsonl", "--qrels", qrels, "-m", "bm25",
        "-w", sample_config.workspace, "--json",
    )  # fmt: skip
    assert res.exit_code == 1
    assert "none of the 2 judged documents are in the collection" in json_failure(res)["error"]


def test_training_on_judgments_of_unknown_documents_is_an_error(ws, tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("".join(f"q{i:02d} 0 missing{i} 2\n" for i in range(1, 21)))
    res = run("train", "--queries", DATA / "queries.jsonl", "--qrels", qrels, "-w", ws)
    assert_one_line_failure(res, 1, "no usable judgments: none of the 20 judged documents")
    assert not (ws / "models" / "versions").exists() or not list(
        (ws / "models" / "versions").iterdir()
    )


def test_training_on_clicks_of_unknown_documents_is_an_error(ws, tmp_path):
    clicks = tmp_path / "clicks.jsonl"
    impression = {
        "impression_id": "i1",
        "time": "2026-10-03T14:22:05Z",
        "query": "brake pads",
        "shown": ["elsewhere1", "elsewhere2"],
        "clicks": ["elsewhere2"],
    }
    clicks.write_text(json.dumps(impression) + "\n")
    res = run(
        "train", "--queries", DATA / "queries.jsonl", "--qrels", DATA / "qrels-train.txt",
        "--clicks", clicks, "-w", ws,
    )  # fmt: skip
    assert_one_line_failure(res, 1, "no usable clicks in")


def _feedback(ws, tmp_path, lines):
    path = tmp_path / "fb.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run("feedback", path, "--json", "-w", ws)


def test_a_feedback_position_of_10_to_the_30_is_an_error(ws, tmp_path):
    click = {"query": "brake pads", "doc_id": "d001", "time": 1e9, "position": 10**30}
    res = _feedback(ws, tmp_path, [click])
    assert res.exit_code == 1
    assert "position must be an integer from 1 to 100000" in json_failure(res)["error"]
    click.update(position=None, impression_id=10**30)
    assert "is not a search id" in json_failure(_feedback(ws, tmp_path, [click]))["error"]


def test_feedback_counts_clicks_on_unknown_documents(ws, tmp_path):
    known = {"query": "brake pads", "doc_id": "d001", "time": 1e9}
    unknown = {"query": "brake pads", "doc_id": "nowhere", "time": 1e9}
    res = _feedback(ws, tmp_path, [known, unknown])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["imported"] == 2 and report["unknown_docs"] == 1
    assert "1 of 2 clicks name documents that are not in the collection" in res.stderr
    res = _feedback(ws, tmp_path, [dict(unknown, time=2e9)])
    assert "none of its 1 clicks names a document" in json_failure(res)["error"]
