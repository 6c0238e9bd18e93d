"""Commands for freshness and drift: feedback, monitor, retrain, schedule.

``ranker.cli.app`` adds them to the ``brainrank`` app. Bodies are thin; everything heavy is imported
inside them so ``brainrank --help`` stays instant.
"""

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
    JsonOpt,
    WorkspaceOpt,
    existing_workspace,
    resolve_config,
)

EXIT_STALE = 3

app = typer.Typer()


@app.command()
def feedback(
    file: Annotated[
        Path, typer.Argument(help="JSONL clicks: impression_id or query, doc_id, time")
    ],
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Import clicks into the query log (a file imported twice adds nothing)."""
    from brainrank.ranker.feedback.feedback import clicked_documents
    from brainrank.ranker.feedback.querylog import QueryLog

    ws = existing_workspace(resolve_config(workspace, config))
    clicked = clicked_documents(file) or []
    store = ws.open_store()
    try:
        known = store.hashes()
    finally:
        store.close()
    unknown = sum(doc not in known for doc in clicked)
    if clicked and unknown == len(clicked):
        raise BrainrankError(
            f"no usable clicks in {file}: none of its {len(clicked)} clicks names a document of "
            f"the collection in {ws.root} (were they logged over another one?)"
        )
    with QueryLog.open(ws.root) as qlog:
        rep = qlog.import_feedback(file)
    rep.unknown_docs = unknown
    if unknown:
        err.print(
            f"[yellow]warning:[/] {unknown} of {len(clicked)} clicks name documents that are not "
            "in the collection",
            highlight=False,
        )
    if as_json:
        print(json.dumps(dataclasses.asdict(rep)))
        return
    err.print(
        f"{rep.imported} clicks imported from {file} ({rep.duplicates} already there, "
        f"{rep.unmatched} not matched to a logged search)",
        highlight=False,
        markup=False,
    )


@app.command()
def monitor(
    window: Annotated[
        str | None,
        typer.Option(
            "--window", help="Live window ending now, e.g. 24h, 7d", show_default="[monitor] window"
        ),
    ] = None,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Compare recent traffic and the corpus with the champion's training; exit 3 when stale."""
    from brainrank.ranker.durations import parse_duration
    from brainrank.ranker.monitoring.drift import monitor as run_monitor

    cfg = resolve_config(workspace, config)
    existing_workspace(cfg)
    if window is not None:
        try:
            parse_duration(window, "--window")
        except ValueError as exc:
            raise BrainrankError(str(exc)) from None
    report = run_monitor(cfg, cfg.ops.monitor, window=window)
    if as_json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        colour = "red" if report.stale else "green"
        out.print(f"[{colour}]{escape(report.headline())}[/]", highlight=False)
        from brainrank.ranker.cli.render import monitor_table

        out.print(monitor_table(report))
        for reason in report.reasons:
            err.print(f"[yellow]stale:[/] {escape(str(reason))}", highlight=False)
    if report.stale:
        raise typer.Exit(EXIT_STALE)


@app.command()
def retrain(
    if_needed: Annotated[
        bool, typer.Option("--if-needed", help="Only when the monitor calls the champion stale")
    ] = False,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Train a challenger on judgments plus logged clicks; promote it unless it is worse."""
    from brainrank.ranker.monitoring.retrain import retrain as run_retrain

    cfg = resolve_config(workspace, config)
    existing_workspace(cfg)
    report = run_retrain(
        cfg, cfg.ops.retrain, cfg.ops.monitor, if_needed=if_needed, progress=progress()
    )
    if as_json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        err.print(f"retrain {report.status}: {report.reason}", highlight=False, markup=False)
        for warning in report.warnings:
            err.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)


@app.command()
def schedule(workspace: WorkspaceOpt = None, config: ConfigOpt = None) -> None:
    """Run the monitor and `retrain --if-needed` on the config's schedule (foreground)."""
    import logging

    from brainrank.ranker.monitoring.schedule import run_schedule

    cfg = resolve_config(workspace, config)
    existing_workspace(cfg)
    plan = cfg.ops.schedule
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for chatty in ("apscheduler", "faiss"):  # their INFO lines hide the runs' own
        logging.getLogger(chatty).setLevel(logging.WARNING)
    err.print(
        f"scheduling monitor '{plan.monitor}' and retrain '{plan.retrain}' "
        f"({plan.timezone}) on {cfg.workspace}; Ctrl-C stops",
        highlight=False,
        markup=False,
    )
    run_schedule(cfg)
