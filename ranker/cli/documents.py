"""``brainrank ingest`` and ``reindex``: documents in, indexes up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from brainrank.index.errors import BrainrankError
from brainrank.ranker.cli.console import err, progress
from brainrank.ranker.cli.options import (
    ConfigOpt,
    EncoderOpt,
    WorkspaceOpt,
    resolve_config,
)

app = typer.Typer()

RayOpt = Annotated[
    bool | None,
    typer.Option(
        "--ray/--no-ray",
        help="Embed on a Ray cluster (a local one unless an address is given)",
        show_default="on when [cluster] ray_address is set",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster to embed on (auto, HOST:6379, ray://HOST:10001); implies --ray",
        show_default="[cluster] ray_address",
    ),
]


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
    ray: RayOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Add or update documents (and delete some) and bring the indexes up to date."""
    from brainrank.index.readers import read_documents
    from brainrank.ranker.engine import update_collection

    if path is None and not delete:
        raise BrainrankError("give a PATH to ingest and/or --delete ID")
    cfg = resolve_config(workspace, config, encoder)
    loader = _bulk_loader(cfg, ray, ray_address)
    docs, skipped, truncated = [], [], 0
    if path is not None:
        limit = cfg.ingest.max_text_chars
        report = read_documents(path, skip_bad=skip_bad, max_text_chars=limit)
        docs, skipped, truncated = report.documents, report.skipped, report.truncated
        _notes("skipped", skipped, "skipped records")
        _notes("dropped", report.dropped, "dropped fields")
        _notes("ignored", _ignored(report.ignored), "ignored fields")
        if truncated:
            err.print(
                f"[yellow]truncated[/] {truncated} documents to \\[ingest] max_text_chars = "
                f"{limit}",
                highlight=False,
            )
    rep = update_collection(
        cfg,
        documents=docs,
        delete=delete or [],
        progress=progress(),
        bulk_loader=loader,
    )
    err.print(
        f"ingested {len(docs)} records into {cfg.workspace}: {rep.added} added, {rep.updated} "
        f"updated, {rep.unchanged} unchanged, {rep.deleted} deleted, {len(skipped)} skipped, "
        f"{truncated} truncated; {rep.documents} documents searchable ({rep.embedded} embedded, "
        f"{rep.reused_embeddings} embeddings reused) in {rep.seconds.get('total', 0):.1f}s",
        highlight=False,
        markup=False,
    )
    if rep.vector_recall:
        r = rep.vector_recall
        effort = next((f"{k} {r[k]}" for k in ("nprobe", "efSearch") if k in r), "")
        aim = ""
        if r.get("target"):
            aim = f", target {r['target']:.2f} {'reached' if r.get('reached') else 'NOT reached'}"
        err.print(
            f"approximate vector index: R@100 {r['R@100']:.3f} of exact search on "
            f"{r['queries']} held-out passage pairs ({r['vectors']} vectors; {effort}{aim})",
            highlight=False,
            markup=False,
        )
    if rep.rebuilt:
        err.print(
            f"index: rebuilt in full, not extended by a segment: {rep.rebuilt}",
            highlight=False,
            markup=False,
        )
    if rep.merged or (rep.segments or 0) > 1:
        how = f"segments merged ({rep.merged}); " if rep.merged else ""
        err.print(f"index: {how}{rep.segments} segment(s)", highlight=False, markup=False)


def _ignored(ignored: dict[str, tuple[str, str, int]]) -> list[str]:
    return [
        f'field "{name[:40]}" in {count} document(s), first {where}: {what}, neither a number '
        "nor a tag, so searches cannot filter on it"
        for name, (what, where, count) in ignored.items()
    ]


def _notes(label: str, messages: list[str], what: str, shown: int = 20) -> None:
    """The first ``shown`` messages on stderr, then how many more there were."""
    for message in messages[:shown]:
        err.print(f"[yellow]{label}[/] {escape(str(message))}", highlight=False)
    if len(messages) > shown:
        err.print(f"[yellow]... and {len(messages) - shown} more {what}[/]", highlight=False)


def _bulk_loader(cfg, ray: bool | None, address: str | None):
    """How ingest and reindex load their encoder: a Ray pool when asked, else one process."""
    address = address or cfg.cluster.ray_address or None
    if ray is False or (ray is None and address is None):
        return None
    from brainrank.ranker.encoding.ray_bulk import ray_loader

    loader = ray_loader(cfg.cluster, address)  # stops here when Ray is not installed
    local = address in (None, "local")
    where = "a local Ray cluster" if local else f"the Ray cluster at {address}"
    err.print(f"embedding on {where}", highlight=False, markup=False)
    return loader


@app.command()
def reindex(
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    encoder: EncoderOpt = None,
    ray: RayOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Rebuild every index from the document store, re-embedding all documents.

    Works whatever state the index folder is in (damaged manifests or pointer, half-deleted
    generations); damaged generations are removed.
    """
    from brainrank.ranker.retrieval.reindex import rebuild_indexes

    cfg = resolve_config(workspace, config, encoder)
    rep = rebuild_indexes(cfg, progress=progress(), bulk_loader=_bulk_loader(cfg, ray, ray_address))
    err.print(
        f"rebuilt generation {rep.generation}: {rep.documents} documents in "
        f"{rep.seconds.get('total', 0):.1f}s",
        highlight=False,
        markup=False,
    )


@app.command()
def optimize(workspace: WorkspaceOpt = None, config: ConfigOpt = None) -> None:
    """Merge the index's segments into one (nothing is embedded again).

    Ingests add a small segment per change and merge on their own ([segments] in the config);
    this merges everything now, into a new generation that serves once it is complete.
    """
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.retrieval.indexing import optimize_indexes

    cfg = resolve_config(workspace, config, None)
    rep = optimize_indexes(Workspace(cfg.workspace), cfg, progress=progress())
    if rep.merged is None:
        what = f"generation {rep.generation} is already one segment; nothing to merge"
    else:
        what = f"merged into generation {rep.generation}: {rep.documents} documents, one segment"
    err.print(f"{what} ({rep.seconds.get('total', 0):.1f}s)", highlight=False, markup=False)
