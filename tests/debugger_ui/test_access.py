"""Who may use the debugger: the Host header check, the read-only default, loopback config."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from brainrank.debugger_ui.access import (
    ReadOnlyError,
    allowed_hosts,
    host_name,
    host_refusal,
    require_writable,
)
from brainrank.ranker.cli.ui_settings import Settings
from tests.debugger_ui.conftest import copy_workspace, metric

REPO = Path(__file__).resolve().parents[2]

# ----- The Host header ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8501", "localhost"),
        ("LOCALHOST.", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:8501", "::1"),
        ("[::1]", "::1"),
        ("evil.example:8501", "evil.example"),
    ],
)
def test_host_name_drops_the_port_brackets_case_and_final_dot(header, name):
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("host", "bound", "extra", "served"),
    [
        # Bound to loopback: the loopback names, nothing else.
        ("localhost:8501", "127.0.0.1", (), True),
        ("127.0.0.1:8501", "127.0.0.1", (), True),
        ("[::1]:8501", "localhost", (), True),
        ("127.0.0.2:8501", "127.0.0.1", (), True),  # a loopback literal is no DNS name
        ("rebind.example:8501", "127.0.0.1", (), False),  # DNS rebinding
        ("localhost.rebind.example", "127.0.0.1", (), False),
        ("search.example.com", "127.0.0.1", ("search.example.com",), True),
        # Bound to one other address: that address (and names allowed for it).
        ("10.0.0.5:8501", "10.0.0.5", (), True),
        ("localhost:8501", "10.0.0.5", (), False),  # loopback does not reach it
        ("search.example.com", "10.0.0.5", (), False),
        ("Search.Example.com:8501", "10.0.0.5", ("search.example.com",), True),
        # Bound to every interface: loopback, IP literals, and only the names allowed.
        ("localhost:8501", "0.0.0.0", (), True),
        ("10.0.0.5:8501", "0.0.0.0", (), True),
        ("[fe80::1]:8501", "::", (), True),
        ("search.example.com", "0.0.0.0", (), False),
        ("search.example.com", None, ("search.example.com",), True),
        ("rebind.example", None, (), False),  # Streamlit's unset address is every interface
    ],
)
def test_host_header_is_checked_against_the_bound_address(host, bound, extra, served):
    refusal = host_refusal({"Host": host}, bound, extra)
    assert (refusal == "") is served, refusal
    if not served:
        assert f"--allow-host {host_name(host)}" in refusal  # the message says how to allow it


def test_no_host_header_in_a_request_is_refused_but_no_request_at_all_is_not():
    assert "no Host header" in host_refusal({"Accept": "*/*"}, "127.0.0.1")
    assert host_refusal({}, "127.0.0.1") == ""  # AppTest runs the script with no request
    assert host_refusal({"host": "LOCALHOST:1"}, "127.0.0.1") == ""  # header names any case


def test_allowed_hosts_names_what_a_refusal_lists():
    assert allowed_hosts("127.0.0.1") == {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts("10.0.0.5", ["a.example"]) == {"10.0.0.5", "a.example"}
    assert allowed_hosts("0.0.0.0") == {"localhost", "127.0.0.1", "::1"}


# ----- Loopback for `streamlit run` ---------------------------------------------------------


def test_the_repository_streamlit_config_binds_loopback():
    with open(REPO / ".streamlit" / "config.toml", "rb") as f:
        config = tomllib.load(f)
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["headless"] is True
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"].get("enableXsrfProtection", True) is True


def test_streamlit_run_from_the_repository_root_reads_that_config():
    """What the README's `streamlit run debugger_ui/app.py` resolves, in a fresh process."""
    pytest.importorskip("streamlit", reason="the debugger needs Streamlit: pip install -e .")
    code = (
        "from streamlit import config\n"
        "config.get_config_options(force_reparse=True)\n"
        "print(config.get_option('server.address'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-1] == "127.0.0.1"


# ----- Read-only unless started with --writable ---------------------------------------------


def test_require_writable_refuses_naming_the_action_and_the_flag():
    require_writable(True, "promote v0002")
    with pytest.raises(ReadOnlyError, match=r"cannot promote v0002: .*brainrank ui --writable"):
        require_writable(False, "promote v0002")


def test_read_only_models_page_offers_no_promote_or_roll_back(launch, ui_config, tmp_path):
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.registry.registry import Registry

    cfg = copy_workspace(ui_config, tmp_path / "ws")
    registry = Registry(Workspace(cfg.workspace).models_dir)
    at = launch(cfg, page="models", model="v0002")
    assert metric(at, "Champion") == "v0001"
    assert any("read-only" in i.value and "--writable" in i.value for i in at.info)
    assert any("read-only" in c.value for c in at.sidebar.caption)
    promote, rollback = at.button(key="w_promote"), at.button(key="w_rollback")
    assert promote.disabled and rollback.disabled
    # A click that reaches the server anyway opens no confirmation.
    promote.click().run()
    assert not any("Promote **" in w.value for w in at.warning)
    assert at.button(key="w_promote").disabled
    assert registry.champion().version == "v0001"

    # The server refuses a confirmed promotion it never offered (a forged session state).
    at.session_state["models_confirmed_action"] = ("promote", "v0002")
    at.run()
    assert not at.exception
    assert any("cannot promote v0002" in e.value for e in at.error)
    at.session_state["models_confirmed_action"] = ("rollback", "v0001")
    at.run()
    assert any("cannot roll back from v0001" in e.value for e in at.error)
    assert registry.champion().version == "v0001"


def test_read_only_writers_refuse_outside_streamlit_too(ui_config, tmp_path):
    from brainrank.debugger_ui.loaders import Context, Ranking
    from brainrank.debugger_ui.views import models
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.registry.registry import Registry

    cfg = copy_workspace(ui_config, tmp_path / "ws")
    ctx = Context(Settings(cfg.workspace))
    assert ctx.writable is False
    with pytest.raises(ReadOnlyError):
        models._run(ctx, "promote", "v0002")
    with pytest.raises(ReadOnlyError):
        models._run(ctx, "rollback", "v0001")
    with pytest.raises(ReadOnlyError):
        ctx.log_search("money back", Ranking("bm25"), 10)
    assert Registry(Workspace(cfg.workspace).models_dir).champion().version == "v0001"
    assert not (cfg.workspace / "logs" / "querylog.sqlite").exists()


def test_read_only_search_shows_results_and_logs_nothing(launch, ui_config, tmp_path):
    import shutil

    cfg = copy_workspace(ui_config, tmp_path / "ws")
    shutil.rmtree(cfg.workspace / "logs", ignore_errors=True)
    at = launch(cfg, q="money back", mode="bm25")
    assert at.dataframe and not at.error
    assert not any("logged as impression" in c.value for c in at.caption)
    assert not (cfg.workspace / "logs" / "querylog.sqlite").exists()
