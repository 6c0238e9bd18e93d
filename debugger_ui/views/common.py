"""Pieces shared by the pages: the ranking picker, error hints, document snippets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import streamlit as st

from brainrank.debugger_ui import state
from brainrank.debugger_ui.loaders import Context, Ranking
from brainrank.index.errors import BrainrankError

NO_MODEL_HINT = (
    "No learned model yet, so only the fixed modes are offered. Train one with "
    "`brainrank train --queries FILE --qrels FILE --workspace DIR` to see attributions."
)
SNIPPET_CHARS = 160


@contextmanager
def hint_on_error() -> Iterator[None]:
    """Show a user error (no documents, bad query, model/index mismatch) as a hint."""
    try:
        yield
    except BrainrankError as exc:
        st.warning(str(exc))


def pick_filters(ctx: Context, *, where=st) -> tuple[str, ...]:
    """The filters text area bound to view["where"], one condition per line (as ``brainrank
    search --where``); the rankings ``ctx`` computes keep to the documents that meet them."""
    text = state.text(
        "where",
        "Filters, one per line",
        where=where,
        multiline=True,
        height=98,
        placeholder="e.g. price < 50\ncategory in (help, catalog)",
        help="Conditions every result meets: numeric fields and the timestamp take <, <=, >, "
        ">=, =, != and in (..); tags take =, != and in (..). timestamp > now-30d works.",
    )
    ctx.where = tuple(line.strip() for line in text.splitlines() if line.strip())
    return ctx.where


def filters_text(where) -> str:
    """The conditions as inline code joined by "and", for a caption or a warning."""
    return " and ".join(f"`{w.replace('`', chr(39))}`" for w in where)


def pick_ranking(ctx: Context, key: str, label: str, default: Ranking, *, where=st) -> Ranking:
    """A ranking picker bound to view[key] as a spec ("learned:v0002", "bm25")."""
    specs = [r.spec for r in ctx.rankings]
    spec = state.choice(
        key,
        label,
        specs,
        default.spec,
        format_func=lambda s: Ranking.parse(s).label(ctx.champion),
        where=where,
    )
    return Ranking.parse(spec)


def pick_judgments(ctx: Context, *, where=st.sidebar):
    """The judgments picker, bound to view["jset"]: the files the debugger was started with,
    the workspace's judgment sets merged, or one set. ``ctx.judged`` follows it; returns it."""
    sources = ctx.judgment_sources
    if ctx.judgment_problem:
        where.warning(ctx.judgment_problem)
    if not sources:
        return None
    source = state.choice(
        "jset", "Judgments", sources, sources[0], format_func=ctx.source_label, where=where
    )
    ctx.use_judgments(source)
    if source == sources[0]:
        state.put("jset", None)  # the default: links stay short
    return ctx.judged


def pick_mode_and_model(ctx: Context, *, where=st) -> Ranking:
    """Mode and model pickers bound to view["mode"] and view["model"]."""
    default = ctx.default_ranking()
    modes = (["learned"] if ctx.versions else []) + [
        r.mode for r in ctx.rankings if r.mode != "learned"
    ]
    cols = where.columns(2)
    mode = state.choice("mode", "Mode", modes, default.mode, where=cols[0])
    if mode != "learned":
        state.put("model", None)
        with cols[1]:
            if not ctx.versions:
                st.caption("Learned mode appears once a model is trained.")
        return Ranking(mode)
    versions = [v.version for v in sorted(ctx.versions, key=lambda v: -v.number)]
    model = state.choice(
        "model",
        "Model",
        versions,
        ctx.champion or versions[0],
        format_func=lambda v: f"{v} (champion)" if v == ctx.champion else v,
        where=cols[1],
    )
    return Ranking("learned", model)


def snippet(text: str, n: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rsplit(" ", 1)[0] + "…"


def title_of(result, doc_id: str) -> str:
    doc = result.documents.get(doc_id)
    if doc is None:
        return ""
    return doc.title or snippet(doc.text, 60)


def features_frame(names, rows: np.ndarray, doc_ids: list[str]) -> pd.DataFrame:
    """Per-document rows (documents down, features across)."""
    frame = pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=list(names))
    frame.insert(0, "doc_id", doc_ids)
    return frame


def contribution_chart(names, values: np.ndarray, title: str, n: int = 12):
    """A horizontal bar chart of the largest contributions (positive green, negative red)."""
    import altair as alt

    order = np.argsort(-np.abs(values), kind="stable")[:n]
    data = pd.DataFrame(
        {"feature": [names[j] for j in order], "contribution": [float(values[j]) for j in order]}
    )
    return (
        alt.Chart(data, title=title)
        .mark_bar()
        .encode(
            x=alt.X("contribution:Q", title="contribution to the score"),
            y=alt.Y("feature:N", sort=None, title=None),
            color=alt.condition(
                alt.datum.contribution > 0, alt.value("#2e7d32"), alt.value("#c62828")
            ),
            tooltip=["feature", alt.Tooltip("contribution:Q", format="+.4f")],
        )
        .properties(height=28 * len(order) + 40)
    )
