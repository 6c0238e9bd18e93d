"""Why not this document: where a document stands and what holds it below a given rank."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from brainrank.debugger_ui import state
from brainrank.debugger_ui.loaders import Context, Ranking
from brainrank.debugger_ui.views.common import (
    NO_MODEL_HINT,
    contribution_chart,
    filters_text,
    hint_on_error,
    pick_filters,
    pick_mode_and_model,
    title_of,
)


def render(ctx: Context) -> None:
    st.title("Why not this document")
    query = state.text("q", "Query", placeholder="e.g. refund policy")
    pick_filters(ctx)
    ranking = pick_mode_and_model(ctx)
    doc = state.text("doc", "Document id", widget="_text", placeholder="e.g. d017")
    if not ctx.versions:
        st.info(NO_MODEL_HINT)
    if not query or not doc:
        st.info("Give a query and any document id to see where that document ranks and why.")
        return
    with hint_on_error():
        _analyse(ctx, query, ranking, doc)


def _analyse(ctx: Context, query: str, ranking: Ranking, doc: str) -> None:
    result = ctx.ranking(query, ranking)
    s = ctx.standing(query, doc, ranking)
    if not s.exists:
        st.warning(f"{doc} is not a document of this collection (ids are case-sensitive).")
        return
    docs = ctx.documents([doc])
    st.subheader(f"{doc}: {docs[doc].title if doc in docs else ''}")
    if s.failed:
        st.warning(
            f"{doc} does not meet the filter{'s' if len(s.failed) > 1 else ''} "
            f"{filters_text(s.failed)}, so this filtered search cannot return it. Its ranks "
            "below count it and the documents that meet the filters."
        )
    elif s.filters:
        st.caption(f"Ranked under the filters {filters_text(s.filters)}.")
    collection = "rank among matching documents" if s.filters else "rank in collection"
    cols = st.columns(4)
    cols[0].metric("Final rank", str(s.final_rank) if s.final_rank else "not ranked")
    cols[1].metric("Candidate", "yes" if s.candidate else "no")
    cols[2].metric(f"BM25 list rank (top {s.list_depth})", _rank(s.bm25_list_rank))
    cols[3].metric(f"Dense list rank (top {s.list_depth})", _rank(s.dense_list_rank))
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "list": "BM25",
                    "rank in list": _rank(s.bm25_list_rank),
                    collection: _rank(s.bm25_collection_rank),
                    "score": s.bm25_score,
                },
                {
                    "list": "dense",
                    "rank in list": _rank(s.dense_list_rank),
                    collection: _rank(s.dense_collection_rank),
                    "score": s.dense_score,
                },
                {
                    "list": f"final ({ranking.label(ctx.champion)})",
                    "rank in list": _rank(s.final_rank),
                    collection: "",
                    "score": next((h.score for h in result.hits if h.doc_id == doc), None),
                },
            ]
        ),
        hide_index=True,
    )
    if s.failed:
        return
    if not s.candidate:
        st.warning(
            f"{doc} was not a candidate: it is in neither the top {s.list_depth} BM25 list nor "
            f"the top {s.list_depth} dense list, so no ranking of this query can place it. "
            "Its ranks over the whole collection show how far it missed."
        )
        return
    if s.final_rank is None:
        st.warning(f"{doc} was a candidate but the {ranking.mode} ranking does not include it.")
        return
    if s.final_rank == 1:
        st.success(f"{doc} is ranked first: nothing is above it.")
        return
    target = state.number("rank", "Compare with the result at rank", 1, 1, s.final_rank - 1)
    above = result.hits[target - 1]
    st.markdown(
        f"**Rank {s.final_rank}** vs **rank {target}**: `{above.doc_id}` "
        f"{title_of(result, above.doc_id)}"
    )
    if ranking.mode == "learned":
        _attribution_gap(ctx, query, ranking.model, doc, above.doc_id)
    else:
        _signal_gap(result, doc, above)


def _attribution_gap(ctx: Context, query: str, model: str, doc: str, above: str) -> None:
    rows, wn = ctx.why_not(query, model, doc, above)
    cols = st.columns(3)
    cols[0].metric(f"{doc} score", f"{wn.target_score:.4f}")
    cols[1].metric(f"{above} score", f"{wn.above_score:.4f}")
    cols[2].metric("Gap", f"{wn.target_score - wn.above_score:+.4f}")
    holding = wn.holding_back()
    if holding:
        st.markdown(
            "Holding it below: "
            + ", ".join(f"**{name}** ({value:+.4f})" for name, value in holding[:5])
        )
    frame = pd.DataFrame(
        {
            "feature": list(wn.feature_names),
            "difference": wn.difference,
            f"{doc} value": rows[0].astype(np.float64),
            f"{above} value": rows[1].astype(np.float64),
            f"{doc} SHAP": wn.target_values,
            f"{above} SHAP": wn.above_values,
        }
    ).sort_values("difference", kind="stable")
    left, right = st.columns([2, 3])
    left.altair_chart(
        contribution_chart(wn.feature_names, wn.difference, "SHAP difference (target − above)"),
        width="stretch",
    )
    right.dataframe(frame, hide_index=True, height=420)
    st.caption(
        "Differences of SHAP values over the same background (this query's candidates) sum to "
        "the score gap; negative ones hold the document below."
    )


def _signal_gap(result, doc: str, above) -> None:
    mine = next(h for h in result.hits if h.doc_id == doc)
    rows = []
    for name in ("score", "bm25", "bm25_rank", "dense", "dense_rank"):
        a = mine.score if name == "score" else mine.signals.get(name)
        b = above.score if name == "score" else above.signals.get(name)
        rows.append({"signal": name, doc: a, above.doc_id: b})
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.info(f"{result.mode} is a fixed fusion; attributions need a learned model.")


def _rank(rank: int | None) -> str:
    return str(rank) if rank else "-"
