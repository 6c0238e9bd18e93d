"""The ``brainrank`` command line: one Typer app, its commands in one module per group.

Command bodies are thin; heavy imports happen inside them, so ``--help`` is instant.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from brainrank.ranker.cli import (
    check,
    documents,
    encoder,
    judgments,
    models,
    ops,
    search,
    serve,
    training,
    ui,
)
from brainrank.ranker.cli.console import out
from brainrank.ranker.cli.failures import guarded

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) is noise for CLI users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _Commands(typer.core.TyperGroup):
    """Reports every failure as one line and an exit code, never a traceback (``failures``)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        parent = super().main

        def run() -> int | None:
            return parent(args, prog_name, complete_var, standalone_mode=False, **extra)

        code = guarded(run, args)
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=_Commands,
    help="brainrank: hybrid search with a learned ranker. Start with `brainrank ingest PATH`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"brainrank {version('brainrank')}", highlight=False, markup=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version"),
    ] = False,
) -> None:
    """brainrank: hybrid search with a learned ranker. Start with `brainrank ingest PATH`."""


for _commands in (documents, search, training, ops, ui, serve, check):
    app.add_typer(_commands.app)
app.add_typer(models.app, name="models")
app.add_typer(encoder.app, name="encoder")
app.add_typer(judgments.app, name="judgments")


def main() -> None:
    """Console-script entry point."""
    app()
