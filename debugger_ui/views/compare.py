"""Compare two rankings: one query side by side, and per-query ΔnDCG@10 over the judged set."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from brainrank.debugger_ui import state
from brainrank.debugger_ui.loaders import Context, Ranking
from brainrank.debugger_ui.overlap import deltas, jaccard, rank_moves, rbo
from brainrank.debugger_ui.views.common import NO_MODEL_HINT, hint_on_error, pick_ranking, title_of

RBO_P = 0.9


def render(ctx: Context) -> None:
    st.title("Compare")
    if not ctx.versions:
        st.info(NO_MODEL_HINT)
    cols = st.columns(2)
    default_b = ctx.default_ranking()
    default_a = Ranking("hybrid") if default_b.mode == "learned" else Ranking("bm25")
    a = pick_ranking(ctx, "a", "Ranking A", default_a, where=cols[0])
    b = pick_ranking(ctx, "b", "Ranking B", default_b, where=cols[1])
    query = state.text("q", "Query", placeholder="e.g. refund policy")
    k = state.number("k", "Depth", 10, 1, 50)
    with hint_on_error():
        if query:
            _one_query(ctx, query, a, b, k)
        else:
            st.info("Type a query to compare the two rankings side by side.")
    st.divider()
    with hint_on_error():
        _query_set(ctx, a, b)


def _one_query(ctx: Context, query: str, a: Ranking, b: Ranking, k: int) -> None:
    ra, rb = ctx.ranking(query, a), ctx.ranking(query, b)
    top_a = [h.doc_id for h in ra.hits[:k]]
    top_b = [h.doc_id for h in rb.hits[:k]]
    cols = st.columns(3)
    cols[0].metric(f"Jaccard@{k}", f"{jaccard(top_a, top_b):.3f}")
    cols[1].metric(f"RBO@{k} (p={RBO_P})", f"{rbo(top_a, top_b, RBO_P):.3f}")
    cols[2].metric("Same top result", "yes" if top_a[:1] == top_b[:1] else "no")
    moves = {m.doc_id: m for m in rank_moves(top_a, top_b)}
    left, right = st.columns(2)
    left.markdown(f"**A: {a.label(ctx.champion)}**")
    left.dataframe(
        pd.DataFrame(
            {
                "rank": range(1, len(top_a) + 1),
                "doc_id": top_a,
                "title": [title_of(ra, d) for d in top_a],
                "in B": [_rank(moves[d].rank_b, "out") for d in top_a],
            }
        ),
        hide_index=True,
    )
    right.markdown(f"**B: {b.label(ctx.champion)}**")
    right.dataframe(
        pd.DataFrame(
            {
                "rank": range(1, len(top_b) + 1),
                "move": [moves[d].arrow for d in top_b],
                "doc_id": top_b,
                "title": [title_of(rb, d) for d in top_b],
            }
        ),
        hide_index=True,
    )
    st.caption("Moves from A to B: ↑ up, ↓ down, = same rank, new = not in A's top k.")


def _query_set(ctx: Context, a: Ranking, b: Ranking) -> None:
    st.subheader("Over the judged queries")
    if ctx.judged is None:
        st.info(
            "Start the debugger with judged queries to compare over a query set: "
            "`brainrank ui --queries queries.jsonl --qrels qrels.txt`."
        )
        return
    if state.get("set") != "1":
        if st.button(f"Compare on {len(ctx.judged)} judged queries", key="w_run_set"):
            state.navigate(set="1")
        return
    d = deltas(ctx.ndcg10_per_query(a), ctx.ndcg10_per_query(b))
    cols = st.columns(4)
    cols[0].metric("Wins (B better)", d.wins)
    cols[1].metric("Losses (B worse)", d.losses)
    cols[2].metric("Ties", d.ties)
    cols[3].metric("Mean ΔnDCG@10", f"{d.mean_delta:+.4f}")
    frame = pd.DataFrame(
        {
            "query_id": [r[0] for r in d.rows],
            "query": [ctx.judged.queries[r[0]] for r in d.rows],
            "nDCG@10 A": [r[1] for r in d.rows],
            "nDCG@10 B": [r[2] for r in d.rows],
            "ΔnDCG@10": [r[3] for r in d.rows],
        }
    )
    st.bar_chart(frame, x="query_id", y="ΔnDCG@10", sort=False, height=220)
    picked = st.dataframe(
        frame, hide_index=True, on_select="rerun", selection_mode="single-row", key="w_set_table"
    )
    rows = picked.selection.rows if picked is not None else []
    cols = st.columns([3, 1])
    qid = cols[0].selectbox(
        "Open a query in Search & explain (or click a row)",
        frame["query_id"].tolist(),
        format_func=lambda q: f"{q}: {ctx.judged.queries[q]}",
        key="w_open_query",
    )
    if rows:
        qid = frame["query_id"].iloc[rows[0]]
    if rows or cols[1].button("Open", key="w_open"):
        state.navigate(page="search", q=ctx.judged.queries[qid], mode=b.mode, model=b.model)


def _rank(rank: int | None, absent: str) -> str:
    return str(rank) if rank else absent
