"""Options shared by every command module of the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace directory [env BRAINRANK_WORKSPACE; default ./brainrank-data]",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML config file [env BRAINRANK_CONFIG; default WORKSPACE/brainrank.toml]",
        show_default=False,
    ),
]
EncoderOpt = Annotated[
    Path | None,
    typer.Option(
        "--encoder",
        help="Encoder folder in Hugging Face layout (model.safetensors, "
        "tokenizer.json); default: the fetched all-MiniLM-L6-v2",
        show_default=False,
    ),
]
