"""The ``brainrank`` command line: one Typer app, its commands in one module per group.

Command bodies are thin; heavy imports happen inside them, so ``--help`` is instant.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape

from brainrank.index.errors import BrainrankError
from brainrank.ranker.cli import documents, encoder, models, ops, search, serve, training, ui
from brainrank.ranker.cli.console import err, out

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) is noise for CLI users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _Commands(typer.core.TyperGroup):
    """Reports user errors as one line on stderr with exit code 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrainrankError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None


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


for _commands in (documents, search, training, ops, ui, serve):
    app.add_typer(_commands.app)
app.add_typer(models.app, name="models")
app.add_typer(encoder.app, name="encoder")


def main() -> None:
    """Console-script entry point."""
    app()
