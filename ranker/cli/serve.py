"""``brainrank serve``: the HTTP JSON service (FastAPI on uvicorn), on loopback unless told."""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

import typer

from brainrank.index.errors import BrainrankError
from brainrank.ranker.cli.console import err
from brainrank.ranker.cli.options import (
    ConfigOpt,
    WorkspaceOpt,
    existing_workspace,
    resolve_config,
)

APP = "brainrank.ranker.serve.app:factory"
TOKEN_ENV = "BRAINRANK_TOKEN"  # read again by ranker.serve.app.factory in each worker

app = typer.Typer()


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on; any other than loopback needs --token",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on")] = 8080,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Worker processes", show_default="one per CPU core"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            help="Bearer token that POST /feedback requires (searches stay open)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve search, documents and feedback over HTTP, following ingests and promotions.

    JSON API; its docs at /docs, metrics at /metrics. A new index generation or champion
    serves without a restart."""
    import shutil
    import tempfile

    cfg = resolve_config(workspace, config)
    existing_workspace(cfg)
    if not 1 <= port <= 65535:
        raise BrainrankError(f"--port {port} is not a port number (1-65535)")
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise BrainrankError(f"--workers must be at least 1, not {workers}")
    if not is_loopback(host) and not token:
        raise BrainrankError(
            f"refusing to listen on {host} without a token: anyone who can reach it could "
            f"post feedback. Give --token (or set {TOKEN_ENV}), or keep the default 127.0.0.1"
        )
    import uvicorn

    # Workers are separate processes: they read the workspace, config and token from here.
    os.environ["BRAINRANK_WORKSPACE"] = str(cfg.workspace.expanduser().resolve())
    if cfg.source is not None:
        os.environ["BRAINRANK_CONFIG"] = str(cfg.source.expanduser().resolve())
    if token:
        os.environ[TOKEN_ENV] = token
    else:
        os.environ.pop(TOKEN_ENV, None)
    # One worker per core, each computing on one thread: the numeric libraries' own pools
    # would only fight the other workers for the cores (and tiny matrix products run slower
    # spread over threads). Read by OpenBLAS and OpenMP when a worker loads them.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # A fresh folder per run, set before any worker imports prometheus_client.
    metrics_dir = tempfile.mkdtemp(prefix="brainrank-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    err.print(
        f"brainrank service on http://{host}:{port} with {workers} worker(s) over "
        f"{cfg.workspace} (docs at /docs; Ctrl+C stops)",
        highlight=False,
        markup=False,
    )
    try:
        from brainrank.ranker.serve.protocol import NoDelayHTTPProtocol

        uvicorn.run(
            APP,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            http=NoDelayHTTPProtocol,
        )
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise BrainrankError(
                f"the service could not start on {host}:{port} (the log above says why)"
            ) from None
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
