"""``brainrank search`` and ``eval``: rankings for people and scripts, metrics on judgments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from brainrank.index.errors import BrainrankError
from brainrank.ranker.cli.console import err, out, progress
from brainrank.ranker.cli.options import (
    ConfigOpt,
    EncoderOpt,
    WorkspaceOpt,
    resolve_config,
)

app = typer.Typer()


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to search for")],
    k: Annotated[int, typer.Option("-k", "--top-k", help="Number of results")] = 10,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            "-m",
            help="bm25, dense, hybrid, hybrid-rrf, hybrid-minmax or learned",
            show_default="learned once a model is promoted, else hybrid",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model version for learned mode",
            show_default="the champion",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    encoder: EncoderOpt = None,
) -> None:
    """Search the collection and show the ranking with the signals behind each score."""
    from brainrank.ranker.retrieval.search import SearchEngine, check_mode

    cfg = resolve_config(workspace, config, encoder)
    if mode is not None:
        check_mode(mode)
    engine = SearchEngine(cfg)
    engine.validate_query(query)
    from brainrank.ranker.feedback.querylog import QueryLog

    result = engine.search(query, k=k, mode=mode, model=model)
    with QueryLog.open(cfg.workspace, source="cli") as log:
        log.record(result)
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    from brainrank.ranker.cli.render import results_table

    out.print(results_table(result))


@app.command("eval")
def eval_(
    queries: Annotated[Path, typer.Option("--queries", help="Queries: JSONL or TSV")],
    qrels: Annotated[Path, typer.Option("--qrels", help="Judgments: TREC qrels or BEIR TSV")],
    mode: Annotated[
        str, typer.Option("--mode", "-m", help="Comma-separated modes")
    ] = "bm25,dense,hybrid",
    as_json: Annotated[
        bool, typer.Option("--json", help="End with one JSON line of metrics")
    ] = False,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Write TREC run files here")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model version for learned mode: vN, champion or latest",
            show_default="champion",
        ),
    ] = None,
    log: Annotated[
        bool, typer.Option("--log", help="Also append these searches to the query log")
    ] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    encoder: EncoderOpt = None,
) -> None:
    """Evaluate modes on judged queries: nDCG@10, RR@10, R@100, AP and latency."""
    from brainrank.ranker.evaluation import evaluate, read_qrels, read_queries
    from brainrank.ranker.retrieval.search import SearchEngine, check_mode

    modes = [m.strip() for m in mode.split(",") if m.strip()]
    if not modes:
        raise BrainrankError("--mode is empty; give one or more comma-separated modes")
    for m in modes:
        check_mode(m)
    cfg = resolve_config(workspace, config, encoder)
    q, j = read_queries(queries), read_qrels(qrels)
    engine = SearchEngine(cfg)
    query_log = None
    if log:
        from brainrank.ranker.feedback.querylog import QueryLog

        query_log = QueryLog.open(cfg.workspace, source="eval")
    judged = sum(1 for qid in j if qid in q)
    with progress().task("Evaluating", judged * len(modes)) as advance:
        results = evaluate(
            engine, q, j, modes, run_dir=run_dir, on_query=advance, model=model, log=query_log
        )
    from brainrank.ranker.cli.render import metrics_table

    err.print(metrics_table(results)) if as_json else out.print(metrics_table(results))
    if as_json:
        print(
            json.dumps(
                {m: {k: v for k, v in r.items() if k != "queries"} for m, r in results.items()}
            )
        )
