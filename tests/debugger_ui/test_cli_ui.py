"""`brainrank ui`: options, validation and the Streamlit command it runs."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

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
    for text in ("--workspace", "--config", "--host", "--port", "127.0.0.1", "8501"):
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
