"""``brainrank ui``: serve the Streamlit ranking debugger (loopback only unless told otherwise)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from brainrank.index.errors import BrainrankError
from brainrank.ranker.cli.console import err
from brainrank.ranker.cli.options import ConfigOpt, WorkspaceOpt

# brainrank/ranker/cli/ui.py -> brainrank/debugger_ui/app.py (installed or editable alike)
APP = Path(__file__).resolve().parents[2] / "debugger_ui" / "app.py"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ALL_INTERFACES = ("0.0.0.0", "::")


def streamlit_command(
    python: str,
    *,
    host: str,
    port: int,
    workspace: Path | None = None,
    config: Path | None = None,
    queries: Path | None = None,
    qrels: Path | None = None,
    writable: bool = False,
    allow_hosts: tuple[str, ...] = (),
) -> list[str]:
    """The ``python -m streamlit run`` command line that serves the debugger."""
    from brainrank.ranker.cli.ui_settings import Settings

    settings = Settings(workspace, config, queries, qrels, writable, tuple(allow_hosts))
    return [
        python,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--",
        *settings.to_args(),
    ]


app = typer.Typer()


@app.command()
def ui(
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    queries: Annotated[
        Path | None,
        typer.Option("--queries", help="Judged queries (JSONL or TSV) for nDCG and Compare"),
    ] = None,
    qrels: Annotated[
        Path | None,
        typer.Option("--qrels", help="Judgments for --queries (TREC qrels or BEIR TSV)"),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on; keep loopback and use SSH port forwarding to reach "
            "it from another machine",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on")] = 8501,
    writable: Annotated[
        bool,
        typer.Option(
            "--writable",
            help="Allow the Models page to promote and roll back, and log the searches shown "
            "(read-only without it)",
        ),
    ] = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Another host name browsers may use to reach the debugger (repeatable); "
            "requests naming any other host are refused",
            show_default="the --host address, and localhost on loopback",
        ),
    ] = None,
) -> None:
    """Open the ranking debugger in Streamlit (http://HOST:PORT), read-only by default."""
    import importlib.util
    import sys

    if importlib.util.find_spec("streamlit") is None:
        raise BrainrankError(
            "the debugger needs Streamlit, one of brainrank's dependencies: pip install -e ."
        )
    if (queries is None) != (qrels is None):
        raise BrainrankError("give --queries and --qrels together (or neither)")
    for name, path in (("--queries", queries), ("--qrels", qrels), ("--config", config)):
        if path is not None and not path.is_file():
            raise BrainrankError(f"{name} {path} does not exist or is not a file")
    if not 1 <= port <= 65535:
        raise BrainrankError(f"--port {port} is not a port number (1-65535)")
    allow_hosts = tuple(_host_name(h) for h in allow_host or ())
    _require_documents(workspace, config)
    if host not in LOOPBACK:
        can = "read the workspace's documents" + (
            ", promote and roll back models" if writable else ""
        )
        err.print(
            f"[yellow]warning:[/] listening on {escape(host)}: anyone who can reach this "
            f"address can {can}. Prefer the default 127.0.0.1 with "
            f"`ssh -L {port}:127.0.0.1:{port} HOST`. Browsers naming this machine by a DNS "
            "name are refused unless it is given with --allow-host NAME.",
            highlight=False,
        )
    cmd = streamlit_command(
        sys.executable,
        host=host,
        port=port,
        workspace=workspace,
        config=config,
        queries=queries,
        qrels=qrels,
        writable=writable,
        allow_hosts=allow_hosts,
    )
    shown = "localhost" if host in LOOPBACK + ALL_INTERFACES else host
    mode = "writable" if writable else "read-only; --writable to promote, roll back, log searches"
    err.print(
        f"brainrank debugger on http://{shown}:{port} ({mode}; Ctrl+C to stop)",
        highlight=False,
        markup=False,
    )
    code = run_until_stopped(cmd)
    raise typer.Exit(0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code)


def _host_name(value: str) -> str:
    """An ``--allow-host`` value: a bare host name or IP address."""
    name = value.strip().lower()
    if not name or any(c in name for c in "/@ \t") or name.count(":") == 1:
        raise BrainrankError(
            f"--allow-host {value!r} is not a host name; give a bare name or address such as "
            "search.example.com or 10.0.0.5 (no scheme, port or path)"
        )
    return name


def _require_documents(workspace: Path | None, config: Path | None) -> None:
    """Refuse a workspace that does not exist or holds no documents, before Streamlit starts."""
    from brainrank.ranker.cli.options import existing_workspace, resolve_config

    cfg = resolve_config(workspace, config)
    root = Path(cfg.workspace)
    if not root.is_dir():
        raise BrainrankError(
            f"workspace {root} does not exist; give --workspace the folder "
            "`brainrank ingest PATH --workspace DIR` wrote"
        )
    existing_workspace(cfg)


def run_until_stopped(cmd: list[str]) -> int:
    """Run the server; SIGTERM or Ctrl+C stop it too (so stopping `brainrank ui` stops it)."""
    import subprocess

    proc = subprocess.Popen(cmd)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # the terminal sent SIGINT to the server as well
                proc.send_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
