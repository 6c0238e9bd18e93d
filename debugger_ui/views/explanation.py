"""How one result's score is made: the fixed fusion (BM25 + dense), what the learned model
changed on top of it, the gate's decision, and what matched (BM25 terms, the dense passage).

Everything shown is computed by ``ranker.learning.decompose``, ``ranker.learning.explain``
(SHAP of the correction only) and ``ranker.retrieval.matches``; this module draws it.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import streamlit as st

from brainrank.debugger_ui.loaders import Context, Ranking

# Correction attributions drawn as their own waterfall steps; the rest are summed into one.
TOP_FEATURES = 6
TEXT_CHARS = 1500
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>:~$^&=\"'])")


def render(ctx: Context, query: str, ranking: Ranking, doc: str, result) -> None:
    """The score breakdown of ``doc`` in ``result`` (the SearchResult of ``query``)."""
    parts_of_query = ctx.decomposed(query, ranking)
    parts = parts_of_query[doc]
    gate = parts_of_query.gate
    learned = ranking.mode == "learned"
    correction = None
    if learned and parts_of_query.correction_served:
        correction = ctx.correction(query, ranking.model, doc)
    st.subheader(f"How {doc}'s score of {parts.score:.4f} is made")
    if learned and gate is not None and not gate.in_domain:
        st.warning(
            f"The {gate.gate} gate sent this query back to the fusion: {gate.reason}. "
            "No learned correction was applied, so the score is the fusion's."
        )
    cols = st.columns(5 if learned else 3)
    cols[0].metric("BM25 part", f"{parts.bm25_part:.4f}")
    cols[1].metric("Dense part", f"{parts.dense_part:.4f}")
    cols[2].metric(_fusion_label(parts.fusion.kind), f"{parts.fusion_part:.4f}")
    if learned:
        served = parts_of_query.correction_served
        cols[3].metric(
            "Learned correction", f"{parts.correction:+.4f}" if served else "not applied"
        )
        label = "Learned score" if served else "Served score (fusion)"
        cols[4].metric(label, f"{parts.score:.4f}")
    st.altair_chart(waterfall_chart(waterfall_steps(parts, correction, learned)), width="stretch")
    st.caption(_how(parts, correction, learned, gate))
    if correction is not None:
        _correction_table(correction, parts_of_query.features[parts_of_query.row(doc)])
    terms, passage = ctx.matches(query, doc, result.query_vector)
    left, right = st.tabs(["BM25 terms", "Dense passage"])
    with left:
        _terms(ctx, terms, result.documents.get(doc))
    with right:
        _passage(passage, parts)


def waterfall_steps(parts, correction=None, learned: bool = False) -> pd.DataFrame:
    """Waterfall rows (step, start, end, kind) from 0 to the score, in drawing order.

    The fusion part's BM25 and dense steps are exact; the correction's steps are its SHAP
    base value (the mean correction over this query's candidates), the largest attributions
    and the rest summed, which together end exactly at the correction SHAP explained.
    """
    rows = []
    at = 0.0

    def step(label: str, delta: float, kind: str) -> None:
        nonlocal at
        rows.append({"step": label, "start": at, "end": at + delta, "kind": kind, "delta": delta})
        at += delta

    step("BM25 (fusion)", parts.bm25_part, "fusion")
    step("dense (fusion)", parts.dense_part, "fusion")
    rows.append(_total(_fusion_label(parts.fusion.kind), parts.fusion_part))
    if correction is not None:
        values, names = correction.values[0], correction.feature_names
        step("correction: mean over candidates", float(correction.base_values[0]), "correction")
        order = np.argsort(-np.abs(values), kind="stable")
        for j in order[:TOP_FEATURES]:
            step(f"correction: {names[j]}", float(values[j]), "correction")
        rest = order[TOP_FEATURES:]
        if len(rest):
            step(f"correction: {len(rest)} other features", float(values[rest].sum()), "correction")
    if learned:
        # The served score: the running total, up to float32 rounding of the features.
        label = "learned score" if correction is not None else "served score (the fusion's)"
        rows.append(_total(label, parts.score))
    for i, row in enumerate(rows):
        row["order"] = i
    return pd.DataFrame(rows)


def waterfall_chart(steps: pd.DataFrame):
    """Horizontal waterfall: each bar spans start to end (totals span 0 to the value)."""
    import altair as alt

    colours = alt.Scale(
        domain=["fusion", "total", "up", "down"],
        range=["#1565c0", "#616161", "#2e7d32", "#c62828"],
    )
    data = steps.assign(
        colour=np.where(
            steps["kind"] == "correction",
            np.where(steps["delta"] >= 0, "up", "down"),
            steps["kind"],
        )
    )
    return (
        alt.Chart(data, title="From 0 to the score")
        .mark_bar()
        .encode(
            y=alt.Y("step:N", sort=alt.SortField("order"), title=None),
            x=alt.X("start:Q", title="score"),
            x2="end:Q",
            color=alt.Color("colour:N", scale=colours, legend=None),
            tooltip=[
                "step",
                alt.Tooltip("delta:Q", format="+.4f"),
                alt.Tooltip("end:Q", format=".4f"),
            ],
        )
        .properties(height=28 * len(data) + 40)
    )


def _total(label: str, value: float) -> dict:
    return {"step": label, "start": 0.0, "end": value, "kind": "total", "delta": value}


def _fusion_label(kind: str) -> str:
    return {"minmax": "min-max fusion", "rrf": "RRF fusion"}.get(kind, f"{kind} score")


def _how(parts, correction, learned: bool, gate) -> str:
    f = parts.fusion
    if f.kind == "minmax":
        fusion = (
            f"The fusion is {f.bm25_weight:.2f} × min-max normalised BM25 ({f.bm25_signal:.3f} "
            f"raw) + {f.dense_weight:.2f} × min-max normalised cosine ({f.dense_signal:.3f} "
            "raw), normalised over this query's candidates."
        )
    elif f.kind == "rrf":
        fusion = "Reciprocal rank fusion: 1 / (k + rank) from each list the document is in."
    else:
        fusion = f"The {f.kind} mode ranks by one signal."
    if not learned:
        return fusion + " A fixed mode has no learned correction."
    weight = f" × {parts.fusion_weight:g}" if parts.fusion_weight != 1 else ""
    text = (
        f"{fusion} The learned score is that fusion{weight} plus a learned correction "
        f"({parts.fusion_part:.4f} {parts.correction:+.4f} = {parts.score:.4f})."
    )
    if correction is not None:
        text += (
            f" {correction.method.capitalize()} SHAP splits the correction alone over the "
            f"features, from its mean {correction.base_values[0]:+.4f} over "
            f"{correction.background_size} candidates."
        )
    elif gate is not None and not gate.in_domain:
        text += " The correction is zero (up to float32 rounding): the gate did not serve it."
    return text


def _correction_table(correction, row: np.ndarray) -> None:
    values = correction.values[0]
    frame = pd.DataFrame(
        {
            "feature": list(correction.feature_names),
            "value": np.asarray(row, dtype=np.float64),
            "attribution to the correction": values,
        }
    ).sort_values("attribution to the correction", key=np.abs, ascending=False)
    with st.expander("What the learned correction is made of (SHAP, every feature)"):
        st.dataframe(frame, hide_index=True)


def _terms(ctx: Context, table, document) -> None:
    if not table.rows:
        st.info("None of the query's terms is in the index, so the BM25 score is 0.")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "term": r.term,
                        "in query": r.query_count,
                        "tf": r.tf,
                        "df": r.df,
                        "idf": r.idf,
                        "contribution": r.contribution,
                    }
                    for r in table.rows
                ]
            ),
            hide_index=True,
        )
        st.caption(
            f"Terms as the index sees them (lowercased, stopwords removed, stemmed). The "
            f"contributions sum to {table.total:.4f}; the index's BM25 score is {table.score:.4f}."
        )
    if table.unknown:
        st.caption("Not in the index: " + ", ".join(f"`{t}`" for t in table.unknown))
    if document is not None:
        from brainrank.ranker.retrieval.matches import highlight

        pieces = highlight(ctx.engine.generation.bm25, _cut(document.full_text), table.matched)
        st.markdown(highlighted_markdown(pieces))


def highlighted_markdown(pieces) -> str:
    """Markdown of (text, matched term or None) pieces, matches on an orange background;
    every piece is escaped, so document text never renders as markdown."""
    out = []
    for text, term in pieces:
        if term is None:
            out.append(escape_markdown(re.sub(r"\s+", " ", text)))
        else:
            out.append(f":orange-background[{escape_markdown(text)}]")
    return "".join(out)


def escape_markdown(text: str) -> str:
    """``text`` with every markdown-special ASCII punctuation backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS].rsplit(" ", 1)[0] + " …"


def _passage(passage, parts) -> None:
    if passage is None:
        st.info("This mode embeds no query, so no passage matched.")
        return
    st.metric(
        f"Passage {passage.index + 1} of {passage.n_passages}: cosine",
        f"{passage.similarity:.4f}",
    )
    if passage.text is None:
        st.caption(passage.note)
        return
    st.caption(
        f"The document's dense signal ({parts.fusion.dense_signal:.4f}) is its best passage's "
        "cosine with the query. The encoder reads at most its window of each passage."
    )
    st.text(passage.text)
