"""``brainrank train``: fit a challenger on judgments (and clicks), compare, maybe promote."""

from __future__ import annotations

import dataclasses
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
    existing_workspace,
    resolve_config,
)

app = typer.Typer()


@app.command()
def train(
    queries: Annotated[
        Path | None,
        typer.Option(
            "--queries",
            help="Queries: JSONL or TSV (with --qrels; imported into the workspace's judgments)",
            show_default="the workspace's judgments",
        ),
    ] = None,
    qrels: Annotated[
        Path | None,
        typer.Option(
            "--qrels",
            help="Judgments: TREC qrels or BEIR TSV (with --queries)",
            show_default="the workspace's judgments",
        ),
    ] = None,
    set_name: Annotated[
        str | None,
        typer.Option(
            "--set",
            help="Judgment set: where --qrels is imported, or the one to train on",
            show_default="default for an import; all sets, merged, to train on",
        ),
    ] = None,
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
    early_stopping: Annotated[
        str,
        typer.Option(
            "--early-stopping",
            help="When to stop training: cv (epochs chosen by 5-fold cross-validation), split "
            "(a validation split), or auto (cv up to 300 judged training queries)",
        ),
    ] = "auto",
    ensemble: Annotated[
        int | None,
        typer.Option(
            "--ensemble",
            help="DNN rankers of different random starts averaged into the one served (1: a "
            "single ranker; GAM rankers are never averaged)",
            show_default="5 when the epochs are cross-validated (few judged queries), else 1",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line")] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Train a challenger ranker, compare it with the champion on held-out queries.

    Learns from --queries/--qrels (then imported into the workspace's judgments, set
    "default" unless --set), else from the workspace's judgments."""
    from brainrank.ranker.learning.train import TrainOptions
    from brainrank.ranker.learning.train import train as run_training

    if scorer not in ("dnn", "gam"):
        raise BrainrankError(f"unknown scorer {scorer!r}; choose dnn or gam")
    if loss not in ("softmax", "approx_ndcg"):
        raise BrainrankError(f"unknown loss {loss!r}; choose softmax or approx_ndcg")
    if early_stopping not in ("auto", "cv", "split"):
        raise BrainrankError(f"unknown early stopping {early_stopping!r}; choose auto, cv or split")
    if ensemble is not None and not 1 <= ensemble <= 20:
        raise BrainrankError(f"--ensemble must be between 1 and 20, got {ensemble}")
    if scorer == "gam" and ensemble not in (None, 1):
        raise BrainrankError(
            "--ensemble averages DNN rankers, and a GAM ranker is never averaged; drop --ensemble "
            "or train --scorer dnn"
        )
    cfg = resolve_config(workspace, config)
    judged, from_files = _judgments(cfg, queries, qrels, set_name)
    options = TrainOptions(
        finetune_encoder=finetune,
        promote=promote,
        seed=seed,
        scorer=scorer,
        loss=loss,
        early_stopping=early_stopping,
        ensemble=ensemble if scorer == "dnn" else 1,
    )
    result = run_training(
        cfg,
        judged.queries,
        judged.qrels,
        clicks_path=clicks,
        options=options,
        progress=progress(),
        judgment_sets=judged.sets,
    )
    if from_files:
        # Only after training: a failed run leaves the workspace's judgments as they were.
        from brainrank.ranker.feedback.judgments import JudgmentStore

        with JudgmentStore.open(cfg.workspace) as store:
            store.add(judged.sets[0], judged.queries, judged.qrels, who=qrels.name)
    from brainrank.ranker.cli.render import comparison_table

    for warning in result.summary.get("warnings", []):
        err.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)
    fusion = result.summary.get("fusion")
    if fusion and fusion["dense_weight"] != fusion["configured_dense_weight"]:
        err.print(
            f"base fusion: dense share {fusion['dense_weight']:g} (configured "
            f"{fusion['configured_dense_weight']:g}), the best on the {fusion['chosen_on']}",
            highlight=False,
        )
    (err if as_json else out).print(comparison_table(result))
    verdict = "promoted to champion" if result.promoted else "kept as challenger"
    _report(
        result,
        f"model {result.version} {verdict}",
        as_json,
        metrics=result.metrics,
        training=result.summary,
    )


def _report(result, headline: str, as_json: bool, **payload) -> None:
    """The promotion's comparisons, ``headline: reason`` on stderr, and with ``--json`` one
    JSON line of the version, the decision and ``payload``."""
    from brainrank.ranker.cli.render import decision_table

    if result.decision is not None and result.decision.comparisons:
        (err if as_json else out).print(decision_table(result.decision))
    err.print(f"{headline}: {result.reason}", highlight=False, markup=False)
    if as_json:
        promotion = result.decision.to_dict() if result.decision else None
        line = {"version": result.version, "promoted": result.promoted, "reason": result.reason}
        print(json.dumps({**line, **payload, "promotion": promotion}, default=str))


def _judgments(cfg, queries: Path | None, qrels: Path | None, set_name: str | None):
    """(judgments to train on, whether they came from files): the files given (``train``
    imports them into the workspace's store once it has trained), else the store's (one set,
    or all merged)."""
    from brainrank.ranker.feedback.judgments import (
        DEFAULT_SET,
        Judgments,
        check_set_name,
        workspace_judgments,
    )

    if set_name is not None:
        check_set_name(set_name)
    if (queries is None) != (qrels is None):
        raise BrainrankError(
            "give --queries and --qrels together, or neither to train on the workspace's judgments"
        )
    if queries is None or qrels is None:
        existing_workspace(cfg)  # "no documents" says more than "no judgments" there
        return workspace_judgments(cfg.workspace, set_name), False
    from brainrank.ranker.evaluation import read_qrels, read_queries

    texts, grades = read_queries(queries), read_qrels(qrels)
    return Judgments((set_name or DEFAULT_SET,), texts, grades), True


@app.command()
def adapt(
    pairs: Annotated[
        int, typer.Option("--pairs", help="Documents to mine one training pair from each")
    ] = 2000,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote/--no-promote",
            help="Serve the adapted encoder (when judgments exist: only if it beats what serves)",
        ),
    ] = True,
    interpolation: Annotated[
        float | None,
        typer.Option(
            "--interpolation",
            help="The adapted weights' share in the served encoder, in (0, 1]; the rest are the "
            "starting weights (default 0.5; 1: the adapted weights alone)",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line")] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Adapt the text encoder to the collection with no judgments, and re-embed.

    Fine-tunes it on pairs mined from the documents (title -> body, sentence -> rest of its
    document, salient terms -> document). Writes a model version (the adapted encoder, with
    the champion's ranker if there is one). Where the workspace has judgments it serves only
    if it beats what serves now."""
    from brainrank.ranker.learning.adapt import AdaptOptions
    from brainrank.ranker.learning.adapt import adapt as run_adapt

    if pairs < 2:
        raise BrainrankError(f"--pairs must be at least 2, not {pairs}")
    cfg = resolve_config(workspace, config)
    existing_workspace(cfg)
    mix = dataclasses.replace(AdaptOptions().pairs, max_pairs=pairs, seed=seed)
    extra = {} if interpolation is None else {"interpolation": interpolation}
    options = AdaptOptions(pairs=mix, promote=promote, **extra)
    result = run_adapt(cfg, options, progress=progress())
    verdict = "serves now" if result.promoted else "kept as a challenger"
    headline = (
        f"model {result.version} (adapted encoder, {result.summary['pairs']} pairs) {verdict}"
    )
    _report(result, headline, as_json, adaptation=result.summary)
