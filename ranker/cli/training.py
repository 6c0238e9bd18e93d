"""``brainrank train``: fit a challenger on judgments (and clicks), compare, maybe promote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from brainrank.index.errors import BrainrankError
from brainrank.ranker.cli.console import err, out, progress
from brainrank.ranker.cli.options import (
    ConfigOpt,
    WorkspaceOpt,
    resolve_config,
)

app = typer.Typer()


@app.command()
def train(
    queries: Annotated[Path, typer.Option("--queries", help="Queries: JSONL or TSV")],
    qrels: Annotated[Path, typer.Option("--qrels", help="Judgments: TREC qrels or BEIR TSV")],
    clicks: Annotated[
        Path | None,
        typer.Option(
            "--clicks",
            help="Click log (JSONL impressions) to learn from, with position-bias correction",
        ),
    ] = None,
    finetune: Annotated[
        bool,
        typer.Option(
            "--encoder/--no-encoder",
            help="Also fine-tune the text encoder on the judgments and re-embed the collection",
        ),
    ] = False,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote/--no-promote", help="Promote the challenger when it beats the champion"
        ),
    ] = True,
    scorer: Annotated[str, typer.Option("--scorer", help="dnn or gam")] = "dnn",
    loss: Annotated[str, typer.Option("--loss", help="softmax or approx_ndcg")] = "softmax",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line")] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Train a challenger ranker, compare it with the champion on held-out queries."""
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.learning.train import TrainOptions
    from brainrank.ranker.learning.train import train as run_training

    if scorer not in ("dnn", "gam"):
        raise BrainrankError(f"unknown scorer {scorer!r}; choose dnn or gam")
    if loss not in ("softmax", "approx_ndcg"):
        raise BrainrankError(f"unknown loss {loss!r}; choose softmax or approx_ndcg")
    cfg = resolve_config(workspace, config)
    options = TrainOptions(
        finetune_encoder=finetune, promote=promote, seed=seed, scorer=scorer, loss=loss
    )
    result = run_training(
        cfg,
        read_queries(queries),
        read_qrels(qrels),
        clicks_path=clicks,
        options=options,
        progress=progress(),
    )
    from brainrank.ranker.cli.render import comparison_table

    for warning in result.summary.get("warnings", []):
        err.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)
    (err if as_json else out).print(comparison_table(result))
    verdict = "promoted to champion" if result.promoted else "kept as challenger"
    err.print(f"model {result.version} {verdict}: {result.reason}", highlight=False, markup=False)
    if as_json:
        print(
            json.dumps(
                {
                    "version": result.version,
                    "promoted": result.promoted,
                    "reason": result.reason,
                    "metrics": result.metrics,
                    "training": result.summary,
                },
                default=str,
            )
        )
