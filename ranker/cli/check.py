"""``brainrank check``: verify a whole workspace and say how to repair what is damaged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from brainrank.ranker.cli.console import err, out
from brainrank.ranker.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt, resolve_config

app = typer.Typer()

_STYLE = {
    "ok": "green",
    "unverified": "yellow",
    "note": "dim",
    "damaged": "red",
    "repaired": "cyan",
}


@app.command()
def check(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="Move a damaged query log aside (NAME.corrupt-TIME), start a new one"
        ),
    ] = False,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Verify documents, index generations, models and query log; exit 1 if any is damaged.

    Every artifact file is hashed against the checksum recorded when it was written, and the
    SQLite files get a full integrity check. Each problem comes with the command that repairs it.
    """
    from rich.markup import escape
    from rich.table import Table

    from brainrank.ranker.workspace_check import check_workspace, healthy

    cfg = resolve_config(workspace, config)
    logs = ()
    if cfg.service.log_path is not None:
        path = cfg.service.log_path
        logs = (path if path.is_absolute() else cfg.workspace / path,)
    findings = check_workspace(cfg.workspace, log_paths=logs, repair=repair)
    ok = healthy(findings)
    if as_json:
        payload = {
            "workspace": str(cfg.workspace),
            "healthy": ok,
            "findings": [f.to_dict() for f in findings],
        }
        print(json.dumps(payload))
    else:
        table = Table("status", "part", "path", "detail")
        for f in findings:
            detail = escape(f.detail)
            if f.repair and f.status != "ok":
                detail += f"\n[bold]repair:[/] {escape(f.repair)}"
            style = _STYLE.get(f.status, "")
            where = Path(f.path)
            if where.is_relative_to(cfg.workspace):  # the table is narrow: paths inside W
                where = where.relative_to(cfg.workspace)
            table.add_row(f"[{style}]{f.status}[/]", f.part, escape(str(where)), detail)
        out.print(table)
        damaged = sum(f.status == "damaged" for f in findings)
        summary = (
            f"workspace {cfg.workspace} is healthy"
            if ok
            else f"workspace {cfg.workspace}: {damaged} damaged; repair as shown above"
        )
        err.print(summary, highlight=False, markup=False)
    if not ok:
        raise typer.Exit(1)
