"""Rich tables for people; scripts use ``--json`` instead."""

from __future__ import annotations

from rich.table import Table

from ranker.search import SearchResult


def results_table(result: SearchResult) -> Table:
    table = Table(
        title=f"{result.mode} results for {result.query!r} "
        f"({result.latency_ms:.1f} ms, {result.candidates} candidates)"
    )
    table.add_column("rank", justify="right")
    table.add_column("id")
    table.add_column("title", max_width=60)
    table.add_column("score", justify="right")
    table.add_column("bm25 (rank)", justify="right")
    table.add_column("dense (rank)", justify="right")
    for h in result.hits:
        doc = result.documents[h.doc_id]
        table.add_row(
            str(h.rank),
            h.doc_id,
            doc.title or doc.text[:60],
            f"{h.score:.4f}",
            _signal(h.signals, "bm25"),
            _signal(h.signals, "dense"),
        )
    if not result.hits:
        table.caption = "no documents matched"
    return table


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
