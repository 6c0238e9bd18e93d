"""Rich tables for people; scripts use ``--json`` instead."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table


def results_table(result: dict) -> Table:
    """A ranking as people read it, from the JSON form (``SearchResult.to_dict()``)."""
    table = Table(
        title=f"{result['mode']} results for {escape(repr(result['query']))} "
        f"({result['took_ms']:.1f} ms"
        + (f", model {escape(result['model'])})" if result.get("model") else ")")
    )
    table.add_column("rank", justify="right")
    table.add_column("id")
    table.add_column("title", max_width=60)
    table.add_column("score", justify="right")
    table.add_column("bm25 (rank)", justify="right")
    table.add_column("dense (rank)", justify="right")
    for h in result["hits"]:
        table.add_row(
            str(h["rank"]),
            escape(h["id"]),
            _title(h),
            f"{h['score']:.4f}",
            _signal(h["signals"], "bm25"),
            _signal(h["signals"], "dense"),
        )
    filters, offset = result.get("filters"), result.get("offset") or 0
    notes = ["where " + escape(" and ".join(filters))] if filters else []
    if offset:
        notes.append(f"after the first {offset}")
    if not result["hits"]:
        found = "no documents matched" if not offset else "no more results"
        table.caption = found + (f" ({'; '.join(notes)})" if notes else "")
    elif notes:
        table.caption = "; ".join(notes)
    return table


def facet_lines(result: dict) -> list[str]:
    """One line per counted tag: ``category: help 12 · catalog 40`` (escaped for rich)."""
    return [
        f"[bold]{escape(name)}[/bold]: "
        + (" · ".join(f"{escape(v)} {n}" for v, n in counts.items()) or "none")
        for name, counts in (result.get("facets") or {}).items()
    ]


def _title(hit: dict) -> str:
    """The title, and under it the snippet (when asked for) with its matches in bold."""
    title = escape(hit["title"] or "(no title)")
    snippet = hit.get("snippet")
    if not snippet or not snippet["text"]:
        return title
    text, pieces, at = snippet["text"], [], 0
    for start, end in snippet["highlights"]:
        pieces += [escape(text[at:start]), f"[bold]{escape(text[start:end])}[/bold]"]
        at = end
    pieces.append(escape(text[at:]))
    return f"{title}\n[dim]{''.join(pieces)}[/dim]"


def _signal(signals: dict, name: str) -> str:
    rank = signals.get(f"{name}_rank")
    return f"{signals.get(name, 0.0):.3f} ({rank if rank else '-'})"


def metrics_table(results: dict[str, dict]) -> Table:
    table = Table(title="Evaluation")
    table.add_column("mode")
    for m in ("nDCG@10", "RR@10", "R@100", "AP"):
        table.add_column(m, justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("queries", justify="right")
    for mode, r in results.items():
        table.add_row(
            mode,
            *(f"{r[m]:.4f}" for m in ("nDCG@10", "RR@10", "R@100", "AP")),
            f"{r['latency_ms']['p50']:.1f}",
            f"{r['latency_ms']['p99']:.1f}",
            str(r.get("queries", "")),
        )
    return table


def comparison_table(result) -> Table:
    """Held-out metrics of the challenger next to the champion and the fixed modes."""
    held = result.summary.get("holdout_queries", "")
    table = Table(title=f"Model {result.version} on {held} held-out queries".replace("  ", " "))
    table.add_column("ranking")
    for m in ("nDCG@10", "RR@10", "R@100", "AP"):
        table.add_column(m, justify="right")
    cv = result.summary.get("cross_validation")
    if cv:  # with a small holdout the decision rests on these
        table.add_column(f"nDCG@10 cross-validated ({cv['queries']} queries)", justify="right")
    for name, ms in result.metrics.items():
        label = f"{name} ({result.version})" if name == "challenger" else name
        row = [f"{ms[m]:.4f}" for m in ("nDCG@10", "RR@10", "R@100", "AP")]
        if cv:
            value = cv["nDCG@10"].get(name)
            row.append(f"{value:.4f}" if value is not None else "-")
        table.add_row(label, *row)
    return table


def decision_table(decision) -> Table:
    """The promotion check: challenger minus each incumbent, with the bootstrap interval."""
    where = "held-out" if decision.method == "holdout" else "cross-validated"
    table = Table(
        title=f"Promotion check: nDCG@10 difference on {decision.queries} {where} queries"
    )
    for col in ("vs", "mean", "95% CI", f"lower bound > {decision.margin:+.4f}"):
        table.add_column(col, justify="left" if col == "vs" else "right")
    for c in decision.comparisons:
        table.add_row(
            c.against,
            f"{c.mean:+.4f}",
            f"{c.low:+.4f} to {c.high:+.4f}",
            "yes" if c.low > decision.margin else "no",
        )
    return table


def models_table(versions, champion: str | None) -> Table:
    from datetime import UTC, datetime

    table = Table(title="Models")
    for col in ("version", "", "created", "age", "nDCG@10", "vs", "encoder", "train queries"):
        table.add_column(col)
    now = datetime.now(UTC)
    for mv in versions:
        metrics = mv.metrics or {}
        mine = metrics.get("challenger", {}).get("nDCG@10")
        other = metrics.get("champion") or metrics.get("hybrid") or {}
        age = now - mv.created
        table.add_row(
            mv.version,
            "champion" if mv.version == champion else "",
            mv.created.strftime("%Y-%m-%d %H:%M"),
            f"{age.days}d {age.seconds // 3600}h",
            f"{mine:.4f}" if mine is not None else "-",
            f"{other.get('nDCG@10', float('nan')):.4f}" if other else "-",
            _encoder_label(mv),
            str((mv.meta.get("training") or {}).get("train_queries", "-")),
        )
    if not versions:
        table.caption = "no models yet: brainrank train --queries FILE --qrels FILE"
    return table


def _encoder_label(mv) -> str:
    name = str((mv.meta.get("encoder") or {}).get("name", "?"))
    if "adaptation" in mv.meta:
        name = f"adapted {name}" + ("" if mv.has_ranker else " (no ranker)")
    elif (mv.meta.get("encoder") or {}).get("bundled"):
        name = f"fine-tuned {name}"
    return name


def monitor_table(report) -> Table:
    """The report's per-monitor summary, as the Health page shows it."""
    table = Table()
    for column in ("monitor", "status", "details"):
        table.add_column(column)
    for row in report.summary():
        style = {"alarm": "red", "ok": "green"}.get(row["status"], "dim")
        table.add_row(row["monitor"], f"[{style}]{row['status']}[/]", escape(row["details"]))
    return table
