"""``brainrank models ...``: the model registry from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from brainrank.ranker.cli.console import err, out, progress
from brainrank.ranker.cli.options import (
    ConfigOpt,
    WorkspaceOpt,
    existing_workspace,
    resolve_config,
)

app = typer.Typer(
    help="The model registry: list, inspect, promote, roll back, move.", no_args_is_help=True
)


VersionArg = Annotated[str, typer.Argument(help="Version: v7, 7, v0007 or champion")]


@app.command("list")
def models_list(workspace: WorkspaceOpt = None, config: ConfigOpt = None) -> None:
    """All model versions with their held-out metrics and age."""
    from brainrank.ranker.cli.render import models_table
    from brainrank.ranker.registry.registry import Registry

    cfg = resolve_config(workspace, config)
    registry = Registry(existing_workspace(cfg).models_dir)
    champion = registry.champion()
    out.print(models_table(registry.versions(), champion.version if champion else None))
    if champion is not None:
        from brainrank.ranker.learning.decision import model_warnings

        for warning in model_warnings(champion.meta):
            err.print(
                f"[yellow]warning:[/] the champion {champion.version}: {escape(warning)}",
                highlight=False,
            )
    for problem in registry.problems:
        err.print(f"[yellow]warning:[/] {escape(str(problem))}", highlight=False)


@app.command("show")
def models_show(
    version: VersionArg = "champion", workspace: WorkspaceOpt = None, config: ConfigOpt = None
) -> None:
    """Everything recorded about one version (JSON)."""
    from brainrank.ranker.registry.registry import Registry

    cfg = resolve_config(workspace, config)
    mv = Registry(existing_workspace(cfg).models_dir).get(version)
    print(json.dumps(mv.meta, indent=2, default=str))


@app.command("promote")
def models_promote(
    version: VersionArg, workspace: WorkspaceOpt = None, config: ConfigOpt = None
) -> None:
    """Make a version the champion (re-embedding the collection if its encoder differs)."""
    from brainrank.ranker.learning.decision import model_warnings
    from brainrank.ranker.registry.promotion import promote

    cfg = resolve_config(workspace, config)
    mv = promote(cfg, version, progress=progress())
    if not mv.has_ranker:
        err.print(
            f"{mv.version}'s adapted encoder now serves (fixed modes: it has no ranker)",
            highlight=False,
            markup=False,
        )
        return
    err.print(f"{mv.version} is now the champion", highlight=False, markup=False)
    for warning in model_warnings(mv.meta):  # the user's call, but an informed one
        err.print(f"[yellow]warning:[/] {mv.version}: {escape(warning)}", highlight=False)


@app.command("rollback")
def models_rollback(workspace: WorkspaceOpt = None, config: ConfigOpt = None) -> None:
    """Return to the previous champion."""
    from brainrank.ranker.registry.promotion import rollback

    cfg = resolve_config(workspace, config)
    mv = rollback(cfg, progress=progress())
    err.print(f"rolled back: {mv.version} is the champion again", highlight=False, markup=False)


@app.command("export")
def models_export(
    version: VersionArg,
    archive: Annotated[Path, typer.Argument(help="Archive file (.tar.gz) or folder")],
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write a version (ranker, schema, encoder if fine-tuned) to a .tar.gz archive."""
    from brainrank.ranker.registry.registry import Registry

    cfg = resolve_config(workspace, config)
    path = Registry(existing_workspace(cfg).models_dir).export(version, archive)
    err.print(f"exported to {path}", highlight=False, markup=False)


@app.command("import")
def models_import(
    archive: Annotated[Path, typer.Argument(help="Archive from `models export`")],
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Make it the champion")
    ] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Add an exported model; its encoder's index is built now so it can serve at once."""
    from brainrank.ranker.registry.promotion import ensure_generation, switch_to
    from brainrank.ranker.registry.registry import Registry

    cfg = resolve_config(workspace, config)
    ws = existing_workspace(cfg)
    registry = Registry(ws.models_dir)
    mv = registry.import_archive(archive)
    try:
        ensure_generation(cfg, mv, progress=progress())
    except BaseException:  # a version whose index cannot be built would be unusable: no trace
        registry.withdraw(mv.version)
        raise
    err.print(f"imported {archive} as {mv.version}", highlight=False, markup=False)
    if promote:  # one switch of model and index; a kill before it leaves the old pair serving
        switch_to(cfg, mv, "promote", progress=progress())
        err.print(f"{mv.version} is now the champion", highlight=False, markup=False)
