"""Search & explain: the ranked list, each result's attribution, judgments and nDCG@10."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import streamlit as st

from brainrank.debugger_ui import state
from brainrank.debugger_ui.judgments import TOP
from brainrank.debugger_ui.loaders import Context, Ranking
from brainrank.debugger_ui.views import explanation, grading
from brainrank.debugger_ui.views.common import (
    NO_MODEL_HINT,
    contribution_chart,
    features_frame,
    filters_text,
    hint_on_error,
    pick_filters,
    pick_mode_and_model,
    title_of,
)
from brainrank.debugger_ui.views.explanation import escape_markdown
from brainrank.index.errors import BrainrankError

MAX_K = 50
FACET_VALUES = 6  # per tag, most frequent first
# The last view this browser session logged: (workspace, query, filters, ranking, k,
# impression id).
_LOGGED = "search_logged_view"


def render(ctx: Context) -> None:
    st.title("Search & explain")
    query = state.text("q", "Query", placeholder="e.g. refund policy")
    pick_filters(ctx)
    ranking = pick_mode_and_model(ctx)
    k = state.number("k", "Results shown", 10, 1, MAX_K)
    if not ctx.versions:
        st.info(NO_MODEL_HINT)
    if not query:
        st.info("Type a query to see its ranking and why each result is where it is.")
        if ctx.judged:
            examples = list(ctx.judged.queries.values())[:8]
            st.caption("Judged queries: " + " · ".join(f"`{q}`" for q in examples))
        return
    with hint_on_error():
        _results(ctx, query, ranking, k)


def _results(ctx: Context, query: str, ranking: Ranking, k: int) -> None:
    result = ctx.ranking(query, ranking)
    impression = _log_once(ctx, query, ranking, k)
    hits = result.hits[:k]
    st.caption(
        f"{ranking.label(ctx.champion)} · {len(result.hits)} ranked of {result.candidates} "
        f"candidates · ranked in {result.latency_ms:.0f} ms"
        + (f" · filtered by {filters_text(ctx.where)}" if ctx.where else "")
        + (f" · logged as impression {impression}" if impression else "")
    )
    if ranking.mode == "learned" and result.in_domain is False:
        st.warning(
            "This query is outside the model's training domain, so it was ranked by the "
            "min-max fusion (the model's attributions below explain a score that was not served)."
        )
    _facets(ctx, result)
    if not hits:
        st.info(
            "No document that meets the filters matched this query."
            if ctx.where
            else "No document matched this query."
        )
        return
    grading.apply_pending(ctx)  # grades picked since the last run, before judgments are read
    qid = ctx.judged.find(query) if ctx.judged else None
    grades = ctx.judged.qrels[qid] if qid else {}
    if qid:
        ranked = [h.doc_id for h in result.hits]
        relevant = ctx.judged.relevant(qid)
        found = sum(1 for h in hits if grades.get(h.doc_id, 0) > 0)
        cols = st.columns(3)
        cols[0].metric("nDCG@10", f"{ctx.judged.ndcg10(qid, ranked):.4f}")
        cols[1].metric(f"Relevant in top {k}", f"{found} of {len(relevant)}")
        cols[2].metric("Judged query", qid)
    # Grades (and "unjudged" in the top 10) whenever there are judgments to show or to give.
    overlay = ctx.judged is not None or ctx.writable
    bm25 = ctx.engine.generation.bm25
    frame = _hits_frame(result, hits, grades if overlay else None, bm25)
    st.dataframe(frame, hide_index=True)
    grading.render(ctx, query, result, hits)

    top_ids = [h.doc_id for h in hits]
    ranked_ids = [h.doc_id for h in result.hits]
    options = list(top_ids)
    wanted = state.get("doc")
    if wanted and wanted not in options and wanted in ranked_ids:
        options.append(wanted)  # a linked document below the top k is explained too
    rank_of = {h.doc_id: h.rank for h in result.hits}
    doc = state.choice(
        "doc",
        "Result to explain",
        options,
        options[0],
        widget="_select",
        format_func=lambda d: f"#{rank_of[d]}  {d}  {title_of(result, d)}",
    )
    explanation.render(ctx, query, ranking, doc, result)  # fusion, correction, what matched
    if ranking.mode == "learned":
        _explanation(ctx, query, ranking.model, options, doc, result)
    else:
        st.info(
            f"{ranking.mode} is a fixed fusion of the BM25 and dense signals in the table; "
            "attributions need a learned model."
        )
    document = result.documents.get(doc)
    if document is not None:
        with st.expander(f"{doc}: {document.title}"):
            st.write(document.text)
    if qid:
        _missed(ctx, qid, result, top_ids)


def _facets(ctx: Context, result) -> None:
    """Each tag's values among the ranked documents, with their counts; picking one adds
    ``tag = value`` to the filters."""
    from brainrank.ranker.retrieval.filters import equals

    # A tag whose name holds <, >, = or ! cannot be filtered on; without them "=" splits
    # each button's key unambiguously.
    shown = {
        t: v for t, v in (result.facets or {}).items() if len(v) > 1 and not set(t) & set("<>=!")
    }
    if not shown:
        return  # no tags, or every ranked document has the same value
    with st.expander("Narrow by tag", expanded=not ctx.where):
        for tag, counts in shown.items():
            values = list(counts.items())[:FACET_VALUES]
            cols = st.columns(len(values) + 1)
            cols[0].markdown(f"**{escape_markdown(tag)}**")
            for col, (value, n) in zip(cols[1:], values, strict=True):
                if col.button(f"{escape_markdown(value)} ({n})", key=f"w_facet_{tag}={value}"):
                    where = "\n".join((*ctx.where, equals(tag, value)))
                    state.navigate(where=where, doc=None)


def _log_once(ctx: Context, query: str, ranking: Ranking, k: int) -> str | None:
    """Log the ranking shown to the query log once per distinct view; its impression id
    (None when the debugger is read-only or the write failed).

    Streamlit reruns the page on every interaction (picking a result, opening a tab), which
    is not a new search; a new query, filter, ranking or number of results is.
    """
    if not ctx.writable:
        return None  # the sidebar says why: read-only
    view = (str(ctx.workspace.root), query, ctx.where, ranking.spec, k)
    logged = st.session_state.get(_LOGGED)
    if logged is not None and logged[:-1] == view:
        return logged[-1]
    impression = None
    try:
        impression = ctx.log_search(query, ranking, k)
    except (BrainrankError, sqlite3.Error, OSError) as exc:
        st.caption(f"This search was not written to the query log: {exc}")
    st.session_state[_LOGGED] = (*view, impression)  # a failed write is not retried per rerun
    return impression


def _hits_frame(result, hits, grades: dict | None, bm25) -> pd.DataFrame:
    """The shown hits, each with its query-biased snippet (the stretch of its text with the
    most query terms, ``retrieval.snippets``)."""
    from brainrank.ranker.retrieval.snippets import make_snippet

    rows = []
    for h in hits:
        doc = result.documents.get(h.doc_id)
        row = {
            "rank": h.rank,
            "doc_id": h.doc_id,
            "title": doc.title if doc else "",
            "score": h.score,
        }
        if grades is not None:
            grade = grades.get(h.doc_id)
            if grade is None:
                row["judged"] = grading.UNJUDGED if h.rank <= TOP else ""
            else:
                row["judged"] = "✓ relevant" if grade > 0 else "✗"
            row["grade"] = "" if grade is None else str(grade)
        row.update(
            {
                "bm25": h.signals.get("bm25"),
                "bm25 rank": h.signals.get("bm25_rank"),
                "dense": h.signals.get("dense"),
                "dense rank": h.signals.get("dense_rank"),
                "snippet": make_snippet(bm25, doc.text, result.query).text if doc else "",
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _explanation(ctx, query, model, doc_ids, doc, result) -> None:
    features, ex, sub = ctx.explained(query, model, tuple(doc_ids))  # under ctx.where
    i = doc_ids.index(doc)
    st.subheader(f"Why {doc} scores {ex.scores[i]:.4f}")
    how = (
        f"Exact SHAP of {model}'s additive (GAM) score in closed form: each value is the "
        "feature's sub-score minus its mean"
        if ex.method == "additive"
        else f"{ex.method.capitalize()} SHAP over {model}'s per-document score; masked "
        "features are averaged"
    )
    st.caption(
        f"{how} over {ex.background_size} of this query's {len(features.doc_ids)} "
        f"candidates. Base value {ex.base_values[i]:.4f} + contributions = score."
    )
    left, right = st.columns([3, 2])
    left.altair_chart(
        contribution_chart(ex.feature_names, ex.values[i], f"{doc}: top contributions"),
        width="stretch",
    )
    top = pd.DataFrame(
        {
            "feature": list(ex.feature_names),
            "value": features.rows([doc])[0].astype(np.float64),
            "contribution": ex.values[i],
        }
    ).sort_values("contribution", key=np.abs, ascending=False)
    right.dataframe(top, hide_index=True, height=360)
    tabs = ["Attributions (SHAP)", "Feature values"] + (
        ["GAM sub-scores (exact)"] if sub is not None else []
    )
    drawn = st.tabs(tabs)
    shap_frame = features_frame(ex.feature_names, ex.values, doc_ids)
    shap_frame.insert(1, "score", ex.scores)
    shap_frame.insert(2, "base", ex.base_values)
    drawn[0].dataframe(shap_frame, hide_index=True)
    drawn[1].dataframe(
        features_frame(ex.feature_names, features.rows(list(doc_ids)), doc_ids), hide_index=True
    )
    if sub is not None:
        drawn[2].caption(
            "A GAM's score is the sum of one function per feature; these are those functions' "
            "values. SHAP value = sub-score − its mean over the background."
        )
        drawn[2].dataframe(features_frame(ex.feature_names, sub, doc_ids), hide_index=True)


def _missed(ctx, qid, result, top_ids) -> None:
    relevant = ctx.judged.relevant(qid)
    rank_of = {h.doc_id: h.rank for h in result.hits}
    missed = [d for d in relevant if d not in top_ids]
    filtered_out = ctx.filtered_out(missed)
    if not missed:
        st.success(f"Every document judged relevant for {qid} is in the top {len(top_ids)}.")
        return
    st.subheader(f"Relevant documents missed ({len(missed)})")
    docs = ctx.documents(missed)
    st.dataframe(
        pd.DataFrame(
            {
                "doc_id": missed,
                "title": [
                    docs[d].title if d in docs else "(not in the collection)" for d in missed
                ],
                "grade": [relevant[d] for d in missed],
                "rank": [
                    str(rank_of[d])
                    if d in rank_of
                    else "filtered out"
                    if d in filtered_out
                    else "not ranked"
                    for d in missed
                ],
            }
        ),
        hide_index=True,
    )
