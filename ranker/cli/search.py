"""``brainrank search`` and ``eval``: rankings for people and scripts, metrics on judgments."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

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
    query: Annotated[str | None, typer.Argument(help="What to search for")] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "-k", "--top-k", help="Number of results", show_default="10; 1000 with --queries"
        ),
    ] = None,
    facet: Annotated[
        list[str] | None,
        typer.Option(
            "--facet",
            help="Count this tag's values among the documents the search ranked (repeat for more)",
        ),
    ] = None,
    offset: Annotated[
        int,
        typer.Option("--offset", help="Skip this many hits: --offset 10 shows the second page"),
    ] = 0,
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
        typer.Option("--model", help="Model version for learned mode", show_default="the champion"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    snippets: Annotated[
        bool,
        typer.Option(
            "--snippets", help="Show each hit's best-matching stretch of text, matches in bold"
        ),
    ] = False,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="Only documents meeting this condition on the timestamp, a numeric field or a "
            "tag, such as 'price < 30', 'timestamp > now-30d' or 'category = help' (repeat: "
            "all must hold)",
        ),
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option("--queries", help="Search every query of a topics file (JSONL or TSV)"),
    ] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="With --queries: the TREC run file to write")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="BRAINRANK_SERVER",
            help="Ask the `brainrank serve` service at this URL instead of loading the index",
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    encoder: EncoderOpt = None,
) -> None:
    """Search the collection and show the ranking with the signals behind each score.

    With --queries FILE --run OUT, search a whole topics file and write a TREC run (not logged).
    """
    if (query is None) == (queries is None):
        raise BrainrankError("give a QUERY to search for, or --queries FILE with --run OUT")
    k = k if k is not None else (1000 if queries is not None else 10)
    if not 1 <= k <= 1000:
        raise BrainrankError(f"-k {k} is out of range; give 1 to 1000")
    if queries is not None:
        if run is None:
            raise BrainrankError("--queries needs --run OUT, the TREC run file to write")
        if offset or facet:
            raise BrainrankError(
                "--offset and --facet go with one QUERY; a batch run writes ranks from 1"
            )
        cfg = resolve_config(workspace, config, encoder)
        return _batch(cfg, queries, run, k, mode, model, where)
    if run is not None:
        raise BrainrankError("--run goes with --queries FILE (a batch run)")
    if offset < 0 or offset + k > 1000:
        raise BrainrankError(f"--offset {offset} with -k {k} is out of range: 0 to {1000 - k}")
    # The request as POST /search takes it: the options beyond k, mode and model only when
    # given, since a service of an older brainrank knows no such field.
    extra = {"snippets": snippets, "where": where, "offset": offset, "facets": facet}
    request = {"k": k, "mode": mode, "model": model, **{o: v for o, v in extra.items() if v}}
    if server:
        payload = _ask_server(server, query, request)
    else:
        payload = _search_here(resolve_config(workspace, config, encoder), query, request)
    if as_json:
        print(json.dumps(payload))
        return
    from brainrank.ranker.cli.render import facet_lines, results_table

    out.print(results_table(payload))
    for line in facet_lines(payload):
        out.print(line, highlight=False)


def _search_here(cfg, query: str, request: dict) -> dict:
    """Search in this process (``request``: ``SearchEngine.search``'s options) and log it
    (source cli), as the service would."""
    from brainrank.ranker.feedback.querylog import QueryLog
    from brainrank.ranker.retrieval.search import SearchEngine, check_mode

    if request["mode"] is not None:
        check_mode(request["mode"])
    engine = SearchEngine(cfg)
    try:
        result = engine.search(query, **request)
        champion = engine.champion() if result.mode == "learned" else None
    finally:
        engine.close()
    if champion is not None and result.model == champion.version:
        from brainrank.ranker.learning.decision import beaten_by_fixed_mode

        beaten = beaten_by_fixed_mode(champion.meta)
        if beaten is not None:
            err.print(
                f"[yellow]warning:[/] the champion {champion.version} scored below the fixed "
                f"mode {beaten[0]} in its evaluation (nDCG@10 {beaten[2]:.4f} vs "
                f"{beaten[1]:.4f}; `brainrank models list`)",
                highlight=False,
            )
    try:
        with QueryLog.open(cfg.workspace, source="cli") as log:
            log.record(result)
    except (BrainrankError, sqlite3.Error, OSError) as exc:  # the answer still counts
        err.print(f"[yellow]warning:[/] search not logged: {escape(str(exc))}", highlight=False)
    return result.to_dict()


def _ask_server(url: str, query: str, request: dict) -> dict:
    """POST /search to a running service; its errors come back as one line."""
    import httpx

    body = {"query": query, **request}
    try:
        response = httpx.post(url.rstrip("/") + "/search", json=body, timeout=30.0)
    except httpx.HTTPError as exc:
        raise BrainrankError(f"cannot reach the brainrank service at {url}: {exc}") from None
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if response.status_code != 200:
        why = payload.get("error") if isinstance(payload, dict) else None
        raise BrainrankError(f"{url} answered {response.status_code}: {why or response.text[:200]}")
    return payload


def _batch(
    cfg,
    queries: Path,
    run: Path,
    k: int,
    mode: str | None,
    model: str | None,
    where: list[str] | None = None,
) -> None:
    """Search every query of ``queries`` and write the TREC run ``run`` (atomically)."""
    from brainrank.index.atomic import write_text_atomic
    from brainrank.ranker.evaluation import read_queries
    from brainrank.ranker.retrieval.search import SearchEngine, check_mode

    if mode is not None:
        check_mode(mode)
    if run.is_dir():
        raise BrainrankError(f"--run {run} is a folder; give the run file's path")
    if not run.absolute().parent.is_dir():
        raise BrainrankError(f"--run {run}: the folder {run.absolute().parent} does not exist")
    topics = read_queries(queries)
    engine = SearchEngine(cfg)
    lines: list[str] = []
    try:
        with progress().task("Searching", len(topics)) as advance:
            for qid, text in topics.items():
                result = engine.search(text, k=k, mode=mode, model=model, where=where)
                tag = f"brainrank-{result.mode}"
                lines += [f"{qid} Q0 {h.doc_id} {h.rank} {h.score:.6f} {tag}" for h in result.hits]
                advance(1)
    finally:
        engine.close()
    write_text_atomic(run, "\n".join(lines) + "\n" if lines else "")
    err.print(
        f"wrote {len(lines)} lines for {len(topics)} queries to {run}",
        highlight=False,
        markup=False,
    )


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
    from brainrank.ranker.evaluation import (
        check_judgments,
        evaluate,
        prepare_run_dir,
        read_qrels,
        read_queries,
    )
    from brainrank.ranker.retrieval.search import SearchEngine, check_mode

    modes = [m.strip() for m in mode.split(",") if m.strip()]
    if not modes:
        raise BrainrankError("--mode is empty; give one or more comma-separated modes")
    for m in modes:
        check_mode(m)
    cfg = resolve_config(workspace, config, encoder)
    if run_dir is not None:  # before any search: a bad folder fails at once
        prepare_run_dir(run_dir)
    q, j = read_queries(queries), read_qrels(qrels)
    engine = SearchEngine(cfg)
    try:
        for warning in check_judgments(q, j, set(engine.generation.doc_ids)).warnings():
            err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
        query_log = None
        if log:
            from brainrank.ranker.feedback.querylog import QueryLog

            query_log = QueryLog.open(cfg.workspace, source="eval")
        judged = sum(1 for qid in j if qid in q)
        with progress().task("Evaluating", judged * len(modes)) as advance:
            results = evaluate(
                engine, q, j, modes, run_dir=run_dir, on_query=advance, model=model, log=query_log
            )
    finally:
        engine.close()
    from brainrank.ranker.cli.render import metrics_table

    err.print(metrics_table(results)) if as_json else out.print(metrics_table(results))
    if as_json:
        print(
            json.dumps(
                {m: {k: v for k, v in r.items() if k != "queries"} for m, r in results.items()}
            )
        )
