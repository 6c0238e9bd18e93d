"""``brainrank explain``: why the learned ranking is what it is, in the terminal."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from brainrank.ranker.cli.console import err, out
from brainrank.ranker.cli.options import (
    ConfigOpt,
    EncoderOpt,
    JsonOpt,
    WorkspaceOpt,
    existing_workspace,
    resolve_config,
)

app = typer.Typer()


@app.command()
def explain(
    query: Annotated[str, typer.Argument(help="The query whose learned ranking to explain")],
    doc: Annotated[
        str | None,
        typer.Option(
            "--doc", help="Also explain this document: where it stands and what holds it below"
        ),
    ] = None,
    against: Annotated[
        int,
        typer.Option("--against", help="With --doc: the rank of the result to compare it with"),
    ] = 1,
    k: Annotated[int, typer.Option("-k", "--top-k", help="Results to explain")] = 5,
    features: Annotated[
        int, typer.Option("--features", help="Contributions shown per document")
    ] = 5,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model version to explain", show_default="the champion"),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where", help="The filters of the search explained, as `search --where` takes them"
        ),
    ] = None,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    encoder: EncoderOpt = None,
) -> None:
    """Explain the learned ranking of QUERY: the features that made each top result's score
    (SHAP values over the query's own candidates, which add up to the score).

    With --doc ID: that document's ranks in the BM25 and dense lists and in the ranking, the
    filters it fails, and the features that hold it below the result at rank --against (the
    differences of the two documents' SHAP values, which add up to the score gap). Nothing is
    written to the query log.
    """
    from brainrank.ranker.learning.explain_report import report
    from brainrank.ranker.retrieval.search import SearchEngine

    cfg = resolve_config(workspace, config, encoder)
    existing_workspace(cfg)
    engine = SearchEngine(cfg)
    try:
        payload = report(
            engine,
            query,
            k=k,
            doc=doc,
            against=against,
            model=model,
            where=where,
            features=features,
        )
    finally:
        engine.close()
    if as_json:
        print(json.dumps(payload))
        return
    if payload["in_domain"] is False:
        err.print(
            "[yellow]warning:[/] the model's gate sent this query back to the fusion, so the "
            "scores served are the fusion's; the attributions explain the model's own scores",
            highlight=False,
        )
    out.print(_results(payload))
    if "document" in payload:
        for line in _document(payload["document"], bool(payload["filters"])):
            out.print(line, highlight=False)


def _features(items: list[dict], key: str = "contribution") -> str:
    return ", ".join(f"{escape(c['feature'])} {c[key]:+.3f}" for c in items)


def _results(payload: dict) -> Table:
    table = Table(
        title=f"Why the learned ranking of {escape(repr(payload['query']))} is what it is "
        f"(model {escape(str(payload['model']))})"
    )
    table.add_column("rank", justify="right")
    table.add_column("id")
    table.add_column("title", max_width=40)
    table.add_column("score", justify="right")
    table.add_column("largest contributions (SHAP)")
    for r in payload["results"]:
        table.add_row(
            str(r["rank"]),
            escape(r["id"]),
            escape(r["title"] or "(no title)"),
            f"{r['score']:.4f}",
            _features(r["contributions"]),
        )
    notes = []
    if payload["base_value"] is not None:
        notes.append(
            f"score = {payload['base_value']:.4f} (the mean over the query's "
            f"{payload['candidates']} candidates) + every feature's contribution"
        )
    if payload["filters"]:
        notes.append("where " + escape(" and ".join(payload["filters"])))
    table.caption = "; ".join(notes) or None
    return table


def _document(d: dict, filtered: bool = False) -> list[str]:
    head = f"[bold]{escape(d['id'])}[/bold] {escape(d['title'])}"
    # Under filters the collection ranks count the documents that meet them (and this one).
    scope = "among the documents meeting the filters" if filtered else "over the collection"
    if d["failed_filters"]:
        scope += ", were it one"
    lines = [head]
    if d["failed_filters"]:
        lines.append(
            "  does not meet "
            + escape(" and ".join(d["failed_filters"]))
            + ", so this filtered search cannot return it"
        )
    depth = d["list_depth"]
    bm25 = _over(d["bm25_collection_rank"], scope, "no query term matches it")
    dense = _over(d["dense_collection_rank"], scope, "no query vector")
    lines.append(
        f"  BM25: {_rank(d['bm25_list_rank'], depth)} ({bm25}); "
        f"dense: {_rank(d['dense_list_rank'], depth)} ({dense})"
    )
    if not d["candidate"]:
        if not d["failed_filters"]:
            lines.append(
                f"  not a candidate: in neither top-{depth} list, so no ranking of this query "
                "can place it"
            )
        return lines
    lines.append(f"  rank {d['final_rank']}, score {d['score']:.4f}")
    lines.append("  largest contributions: " + _features(d["contributions"]))
    above = d.get("against")
    if above is None:
        if d["final_rank"] == 1:
            lines.append("  ranked first: nothing is above it")
        return lines
    lines.append(
        f"  against rank {above['rank']}, [bold]{escape(above['id'])}[/bold] "
        f"{escape(above['title'])} ({above['score']:.4f}): gap {above['gap']:+.4f}"
    )
    lines.append("  holding it below: " + _features(above["differences"], "difference"))
    return lines


def _rank(rank: int | None, depth: int) -> str:
    return f"#{rank} of the top {depth}" if rank else f"not in the top {depth}"


def _over(rank: int | None, scope: str, unranked: str) -> str:
    return f"rank {rank} {scope}" if rank else unranked
