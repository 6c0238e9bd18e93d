"""The ``brainrank`` command line: one Typer app, its commands in one module per group.

Command bodies are thin; heavy imports happen inside them, so ``--help`` is instant.
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from brainrank.ranker.cli import (
    check,
    documents,
    encoder,
    explain,
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


def reflow(text: str) -> str:
    """A docstring as help text: each paragraph, and each ``- `` item, one line, so the
    terminal wraps it at its own width (Typer keeps the source's line breaks); config
    tables such as ``[segments]`` escaped, since Typer reads help as Rich markup."""
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.lstrip().startswith("- "):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line.rstrip())
        paragraphs.append("\n".join(lines))
    return escape("\n\n".join(paragraphs))


for _commands in (
    documents,
    search,
    explain,
    training,
    ops,
    ui,
    serve,
    check,
    models,
    encoder,
    judgments,
):
    for _info in _commands.app.registered_commands:
        _doc = _info.help or inspect.getdoc(_info.callback)
        _info.help = reflow(_doc) if _doc else _doc
for _commands in (documents, search, explain, training, ops, ui, serve, check):
    app.add_typer(_commands.app)
app.add_typer(models.app, name="models")
app.add_typer(encoder.app, name="encoder")
app.add_typer(judgments.app, name="judgments")


def main() -> None:
    """Console-script entry point."""
    app()
