"""``brainrank judgments ...``: the workspace's judgment store (``feedback.judgments``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from brainrank.ranker.cli.console import err, out
from brainrank.ranker.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt, resolve_config

app = typer.Typer(
    help="Judgments kept in the workspace: import, export, list.", no_args_is_help=True
)

SetOpt = Annotated[
    str | None,
    typer.Option("--set", help="Judgment set name", show_default="all sets, merged"),
]


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


@app.command("import")
def judgments_import(
    qrels: Annotated[Path, typer.Argument(help="Judgments: TREC qrels or BEIR TSV")],
    queries: Annotated[Path, typer.Option("--queries", help="Their queries: JSONL or TSV")],
    set_name: Annotated[str, typer.Option("--set", help="Judgment set name")] = "default",
    who: Annotated[
        str | None, typer.Option("--who", help="Who judged", show_default="the file's name")
    ] = None,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Add judgments and their queries to a set of the workspace's judgments.

    A different grade replaces the one already there; importing a file twice changes nothing.
    Grades keep the file's scale."""
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.feedback.judgments import JudgmentStore, check_set_name

    check_set_name(set_name)
    cfg = resolve_config(workspace, config)
    grades, texts = read_qrels(qrels), read_queries(queries)
    with JudgmentStore.open(cfg.workspace) as store:
        report = store.add(set_name, texts, grades, who=who or qrels.name)
    if report.without_text:
        err.print(
            f"warning: {report.without_text} judged queries have no text in {queries}; "
            "training ignores them until one is imported",
            highlight=False,
            markup=False,
        )
    unknown = _unknown_documents(cfg.workspace, grades)
    if unknown:
        total = sum(len(g) for g in grades.values())
        err.print(
            f"warning: {unknown} of {total} judgments name documents that are not in the "
            "collection (yet); training and evaluation skip them",
            highlight=False,
            markup=False,
        )
    if as_json:
        print(json.dumps(report.to_dict()))
        return
    err.print(
        f"set {set_name}: {report.added} judgments added, {report.changed} changed, "
        f"{report.unchanged} already there",
        highlight=False,
        markup=False,
    )


def _unknown_documents(workspace: Path, grades: dict[str, dict[str, int]]) -> int:
    """Judgments naming a document the workspace does not hold (0 before any ingest)."""
    from brainrank.index.workspace import Workspace

    ws = Workspace(workspace)
    if not ws.exists():
        return 0
    judged = sorted({d for g in grades.values() for d in g})
    store = ws.open_store()
    try:
        known = set(store.get(judged))  # the judged documents, not the whole collection
    finally:
        store.close()
    return sum(d not in known for g in grades.values() for d in g)


@app.command("export")
def judgments_export(
    set_name: SetOpt = None,
    queries_out: Annotated[
        Path | None,
        typer.Option("--queries-out", help="Also write the judged queries (JSONL, or TSV)"),
    ] = None,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print judgments as TREC qrels (qid 0 docid grade) on stdout.

    Without --set, all sets merged: for a (query, document) judged in several sets the latest
    judgment wins."""
    from brainrank.index.atomic import atomic_file
    from brainrank.ranker.feedback.judgments import workspace_judgments

    cfg = resolve_config(workspace, config)
    found = workspace_judgments(cfg.workspace, set_name)
    if queries_out is not None:
        judged = [q for q in sorted(found.queries) if q in found.qrels]
        jsonl = queries_out.suffix in (".jsonl", ".json")
        with atomic_file(queries_out) as fh:
            for qid in judged:
                text = found.queries[qid]
                line = json.dumps({"_id": qid, "text": text}) if jsonl else f"{qid}\t{text}"
                fh.write(line + "\n")
    lines = [
        f"{qid} 0 {doc} {grade}\n"
        for qid in sorted(found.qrels)
        for doc, grade in sorted(found.qrels[qid].items())
    ]
    typer.echo("".join(lines), nl=False)


@app.command("list")
def judgments_list(
    as_json: JsonOpt = False, workspace: WorkspaceOpt = None, config: ConfigOpt = None
) -> None:
    """The workspace's judgment sets: judged queries, judgments, last update."""
    from rich.table import Table

    from brainrank.ranker.feedback.judgments import JudgmentStore

    cfg = resolve_config(workspace, config)
    sets = []
    if JudgmentStore.exists(cfg.workspace):
        with JudgmentStore.open(cfg.workspace) as store:
            sets = store.summaries()
    if as_json:
        print(json.dumps([s.to_dict() for s in sets]))
        return
    if not sets:
        err.print(
            f"no judgments in {cfg.workspace}; import some with "
            "`brainrank judgments import QRELS --queries FILE`",
            highlight=False,
            markup=False,
        )
        return
    table = Table("set", "queries", "judgments", "updated")
    for s in sets:
        table.add_row(s.name, str(s.queries), str(s.judgments), _when(s.updated))
    out.print(table)
