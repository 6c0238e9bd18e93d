"""Options shared by every command module of the CLI, and the one way each command resolves
its config and workspace from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brainrank.index.errors import BrainrankError

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar="BRAINRANK_WORKSPACE",
        help="Workspace directory",
        show_default="./brainrank-data",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="BRAINRANK_CONFIG",
        help="TOML config file",
        show_default="WORKSPACE/brainrank.toml",
    ),
]
PRETRAINED = "pretrained"  # --encoder pretrained: the fetched all-MiniLM-L6-v2, whatever serves
EncoderOpt = Annotated[
    Path | None,
    typer.Option(
        "--encoder",
        help="Encoder folder in Hugging Face layout (model.safetensors, tokenizer.json), or "
        "'pretrained' for the fetched all-MiniLM-L6-v2 (reindex --encoder pretrained undoes an "
        "adapt)",
        show_default="the fetched all-MiniLM-L6-v2",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def resolve_config(workspace: Path | None, config: Path | None, encoder: Path | None = None):
    """The resolved ``Config`` of a command: flags over environment over the TOML file."""
    from brainrank.ranker.config import load_config

    if encoder is not None and str(encoder) == PRETRAINED and not encoder.exists():
        import dataclasses

        cfg = load_config(config, workspace=workspace)
        stock = dataclasses.replace(cfg.encoder, path=None).resolved_path()
        return dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, path=stock))
    return load_config(config, workspace=workspace, encoder=encoder)


def existing_workspace(cfg):
    """The config's ``Workspace``, which must hold documents already."""
    from brainrank.index.workspace import Workspace

    ws = Workspace(cfg.workspace)
    if not ws.exists():
        raise BrainrankError(f"workspace {ws.root} has no documents; run `brainrank ingest` first")
    return ws
