"""`brainrank ui`: options, validation and the Streamlit command it runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brainrank.ranker.cli import ui as ui_module
from brainrank.ranker.cli.ui import APP, streamlit_command
from brainrank.ranker.cli.ui_settings import Settings, parse_args
from tests.debugger_ui.conftest import QRELS, QUERIES

runner = CliRunner()


def cli():
    """The ``brainrank`` app."""
    from brainrank.ranker.cli.app import app

    return app


def test_help_shows_loopback_defaults():
    res = runner.invoke(cli(), ["ui", "--help"])
    assert res.exit_code == 0, res.output
    for text in ("--workspace", "--config", "--host", "--port", "127.0.0.1", "8501") + (
        "--writable",
        "--allow-host",
    ):
        assert text in res.output


def test_bad_options_are_one_line_errors(tmp_path):
    cases = [
        (["--queries", str(QUERIES)], "give --queries and --qrels together"),
        (["--queries", str(tmp_path / "no.jsonl"), "--qrels", str(QRELS)], "does not exist"),
        (["--port", "70000"], "is not a port number"),
    ]
    for args, message in cases:
        res = runner.invoke(cli(), ["ui", "-w", str(tmp_path), *args])
        assert res.exit_code == 1, res.output
        assert message in res.output.replace("\n", " ")
        assert "Traceback" not in res.output


def test_streamlit_command_serves_the_app_headless_on_loopback(tmp_path):
    cmd = streamlit_command(
        sys.executable,
        host="127.0.0.1",
        port=8502,
        workspace=tmp_path,
        queries=QUERIES,
        qrels=QRELS,
    )
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)]
    assert Path(cmd[4]).is_file()
    options = dict(zip(cmd[5:-7:2], cmd[6:-7:2], strict=True))
    assert options == {
        "--server.headless": "true",
        "--server.address": "127.0.0.1",
        "--server.port": "8502",
        "--browser.gatherUsageStats": "false",
    }
    app_args = cmd[cmd.index("--") + 1 :]
    assert parse_args(app_args) == Settings(tmp_path, None, QUERIES, QRELS)


def test_app_settings_ignore_arguments_they_do_not_know():
    settings = parse_args(["-q", "--workspace", "ws", "--junk", "1", "--config=c.toml"])
    assert settings == Settings(Path("ws"), Path("c.toml"), None, None)
    assert parse_args(settings.to_args()) == settings
    assert parse_args([]) == Settings()


@pytest.fixture
def no_server(monkeypatch):
    """The Streamlit command lines `brainrank ui` would run; none is started."""
    started: list[list[str]] = []

    def record(cmd: list[str]) -> int:
        started.append(cmd)
        return 0

    monkeypatch.setattr(ui_module, "run_until_stopped", record)
    return started


def test_a_missing_or_empty_workspace_is_refused_before_streamlit_starts(tmp_path, no_server):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "file.txt", "does not exist"),
        (empty, "has no documents"),
    ]
    (tmp_path / "file.txt").write_text("not a workspace")
    for workspace, message in cases:
        res = runner.invoke(cli(), ["ui", "--workspace", str(workspace)])
        assert res.exit_code == 1, res.output
        assert message in res.output and str(workspace) in res.output.replace("\n", "")
        assert "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) <= 2  # one line (wrapped at most once)
    assert no_server == []
    assert not (tmp_path / "missing").exists()  # refusing creates nothing


def test_writable_and_allowed_hosts_reach_the_app(sample_config, no_server):
    ws = str(sample_config.workspace)
    res = runner.invoke(cli(), ["ui", "-w", ws])
    assert res.exit_code == 0, res.output
    assert "read-only" in res.output
    assert parse_args(no_server[-1][no_server[-1].index("--") + 1 :]).writable is False

    args = ["ui", "-w", ws, "--writable", "--allow-host", "Search.Example.com"]
    res = runner.invoke(cli(), [*args, "--allow-host", "10.0.0.5"])
    assert res.exit_code == 0, res.output
    assert "read-only" not in res.output
    settings = parse_args(no_server[-1][no_server[-1].index("--") + 1 :])
    assert settings.writable is True
    assert settings.allow_hosts == ("search.example.com", "10.0.0.5")


def test_a_public_address_warns_and_a_bad_allowed_host_is_refused(sample_config, no_server):
    ws = str(sample_config.workspace)
    res = runner.invoke(cli(), ["ui", "-w", ws, "--host", "0.0.0.0", "--writable"])
    assert res.exit_code == 0, res.output
    assert "warning" in res.output and "promote and roll back" in res.output
    assert no_server[-1][no_server[-1].index("--server.address") + 1] == "0.0.0.0"
    for bad in ("http://x.example", "x.example:8501", "", "a b"):
        res = runner.invoke(cli(), ["ui", "-w", ws, "--allow-host", bad])
        assert res.exit_code == 1, res.output
        assert "is not a host name" in res.output and "Traceback" not in res.output
    assert len(no_server) == 1


def test_writable_and_allowed_hosts_round_trip_through_the_app_arguments(tmp_path):
    settings = Settings(tmp_path, writable=True, allow_hosts=("a.example", "10.0.0.5"))
    assert settings.to_args()[-5:] == ["--writable", "--allow-host", "a.example"] + [
        "--allow-host",
        "10.0.0.5",
    ]
    assert parse_args(settings.to_args()) == settings
    assert parse_args(["--workspace", "ws"]).writable is False
