"""Compare two rankings: one query side by side, and over the judged set per-query ΔnDCG@10
with its mean, confidence interval and paired t-test; a judged-set comparison is saved as a
named snapshot (``brainrank ui --writable``) and reopened later without ranking again."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from brainrank.debugger_ui import state
from brainrank.debugger_ui.access import READ_ONLY, require_writable
from brainrank.debugger_ui.judgments import TOP
from brainrank.debugger_ui.loaders import Context, Ranking
from brainrank.debugger_ui.overlap import deltas, jaccard, rank_moves, rbo
from brainrank.debugger_ui.views.common import (
    NO_MODEL_HINT,
    filters_text,
    hint_on_error,
    pick_filters,
    pick_ranking,
    title_of,
)
from brainrank.index.errors import BrainrankError
from brainrank.ranker.snapshots import (
    SetComparison,
    load_snapshot,
    save_snapshot,
    snapshot_names,
)

RBO_P = 0.9
UNJUDGED = "unjudged"
LIVE = ""  # the snapshot picker's "compute it now" entry
_FLASH = "compare_flash"
_NAME = "w_save_name"  # not "w_snap...": navigate(snap=...) resets those
_NAME_FOR = "compare_snap_name_for"


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
    pick_filters(ctx)
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
    qid = ctx.judged.find(query) if ctx.judged else None
    grades = ctx.judged.qrels[qid] if qid else None
    frame_a = {
        "rank": range(1, len(top_a) + 1),
        "doc_id": top_a,
        "title": [title_of(ra, d) for d in top_a],
        "in B": [_rank(moves[d].rank_b, "out") for d in top_a],
    }
    frame_b = {
        "rank": range(1, len(top_b) + 1),
        "move": [moves[d].arrow for d in top_b],
        "doc_id": top_b,
        "title": [title_of(rb, d) for d in top_b],
    }
    if grades is not None:  # a judged query: each document's grade
        frame_a["grade"] = grade_column(top_a, grades)
        frame_b["grade"] = grade_column(top_b, grades)
    left, right = st.columns(2)
    left.markdown(f"**A: {a.label(ctx.champion)}**")
    left.dataframe(pd.DataFrame(frame_a), hide_index=True)
    right.markdown(f"**B: {b.label(ctx.champion)}**")
    right.dataframe(pd.DataFrame(frame_b), hide_index=True)
    st.caption(
        "Moves from A to B: ↑ up, ↓ down, = same rank, new = not in A's top k."
        + (f" Grades are judged query {qid}'s." if qid else "")
    )


def grade_column(doc_ids, grades: dict[str, int]) -> list[str]:
    """Each document's grade, "unjudged" in the top 10 when it has none."""
    return [
        str(grades[d]) if d in grades else (UNJUDGED if i < TOP else "")
        for i, d in enumerate(doc_ids)
    ]


def _query_set(ctx: Context, a: Ranking, b: Ranking) -> None:
    st.subheader("Over the judged queries")
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        st.success(flash)
    snap = _pick_snapshot(ctx)
    if snap:
        try:
            comparison = load_snapshot(ctx.workspace.root, snap)
        except BrainrankError as exc:  # missing or damaged: one line, never a traceback
            st.error(str(exc))
            return
        saved = datetime.fromtimestamp(comparison.created, UTC).strftime("%Y-%m-%d %H:%M UTC")
        st.caption(
            f"Snapshot **{snap}**, saved {saved}: A = {comparison.a_label}, B = "
            f"{comparison.b_label}, judgments from {comparison.judgments}. Shown as saved; "
            "nothing was ranked again."
        )
        _show(comparison)
        return
    if not ctx.judged:
        st.info(
            "Start the debugger with judged queries to compare over a query set "
            "(`brainrank ui --queries queries.jsonl --qrels qrels.txt`), or grade results on "
            "the Search page (`brainrank ui --writable`)."
        )
        return
    if state.get("set") != "1":
        if st.button(f"Compare on {len(ctx.judged)} judged queries", key="w_run_set"):
            state.navigate(set="1")
        return
    if ctx.where:
        st.caption(
            f"The judged queries are ranked over the whole collection: the filters "
            f"{filters_text(ctx.where)} apply to the query above only."
        )
    comparison = live_comparison(ctx, a, b)
    _show(comparison)
    _save(ctx, comparison)


def live_comparison(ctx: Context, a: Ranking, b: Ranking) -> SetComparison:
    """A and B over the judged queries in use, with the paired statistics."""
    run_a, run_b = ctx.set_run(a), ctx.set_run(b)
    judged = ctx.judged
    return SetComparison.build(
        a.spec,
        b.spec,
        run_a.ndcg10,
        run_b.ndcg10,
        run_a.top10,
        run_b.top10,
        judged.queries,
        judged.qrels,
        labels=(a.label(ctx.champion), b.label(ctx.champion)),
        judgments=ctx.source_label(ctx.judgment_source),
    )


def _pick_snapshot(ctx: Context) -> str:
    """The snapshot to reopen (view["snap"]), or LIVE; no picker before the first one."""
    names = snapshot_names(ctx.workspace.root)
    if not names:
        if state.get("snap"):  # a link to a snapshot of another workspace, or one removed
            st.warning(f"No snapshot `{state.get('snap')}` here: this workspace has none yet.")
            state.put("snap", None)
        return LIVE
    return state.choice(
        "snap",
        "Reopen snapshot",
        [LIVE, *names],
        LIVE,
        format_func=lambda n: n or "none: compare the rankings picked above",
    )


def _show(comparison: SetComparison) -> None:
    """Wins, losses, the statistics, the per-query table and one query's two top 10s."""
    rows = comparison.queries
    d = deltas({o.query_id: o.a for o in rows}, {o.query_id: o.b for o in rows})
    cols = st.columns(4)
    cols[0].metric("Wins (B better)", d.wins)
    cols[1].metric("Losses (B worse)", d.losses)
    cols[2].metric("Ties", d.ties)
    cols[3].metric("Mean ΔnDCG@10", f"{d.mean_delta:+.4f}")
    _statistics(comparison)
    frame = pd.DataFrame(
        {
            "query_id": [o.query_id for o in rows],
            "query": [o.text for o in rows],
            "nDCG@10 A": [o.a for o in rows],
            "nDCG@10 B": [o.b for o in rows],
            "ΔnDCG@10": [o.delta for o in rows],
        }
    )
    if not rows:
        return
    st.bar_chart(frame, x="query_id", y="ΔnDCG@10", sort=False, height=220)
    picked = st.dataframe(
        frame, hide_index=True, on_select="rerun", selection_mode="single-row", key="w_set_table"
    )
    selected = picked.selection.rows if picked is not None else []
    by_id = {o.query_id: o for o in rows}
    cols = st.columns([3, 1])
    qid = cols[0].selectbox(
        "Open a query in Search & explain (or click a row)",
        frame["query_id"].tolist(),
        format_func=lambda q: f"{q}: {by_id[q].text}",
        key="w_open_query",
    )
    b = Ranking.parse(comparison.b)
    if selected:
        qid = frame["query_id"].iloc[selected[0]]
    if selected or cols[1].button("Open", key="w_open"):
        state.navigate(page="search", q=by_id[qid].text, mode=b.mode, model=b.model)
    _one_judged_query(comparison, by_id[qid])


def _statistics(comparison: SetComparison) -> None:
    s = comparison.stats
    level = f"{s.confidence:.0%}"
    cols = st.columns(4)
    interval = "-" if s.ci_low is None else f"{s.ci_low:+.4f} to {s.ci_high:+.4f}"
    cols[0].metric(f"{level} CI of mean Δ", interval)
    cols[1].metric("p-value (paired t-test)", "-" if s.p is None else f"{s.p:.4g}")
    cols[2].metric("t", "-" if s.t is None else f"{s.t:.3f}")
    cols[3].metric("Queries", s.n)
    if s.note:
        st.info(f"No t-test: {s.note}.")
        return
    st.caption(
        f"Paired t-test of B − A over {s.n} queries ({s.df} degrees of freedom, two-sided, "
        f"scipy.stats.ttest_rel); the interval is the mean difference ± t·sd/√n. A p-value "
        f"under 0.05 with an interval that excludes 0 says B and A differ beyond what these "
        "queries' spread explains."
    )


def _one_judged_query(comparison: SetComparison, outcome) -> None:
    """The picked query's top 10 under A and B, with each document's grade."""
    st.markdown(f"**{outcome.query_id}: {outcome.text}**")
    left, right = st.columns(2)
    for where, side, label, value, top in (
        (left, "A", comparison.a_label, outcome.a, outcome.top_a),
        (right, "B", comparison.b_label, outcome.b, outcome.top_b),
    ):
        where.markdown(f"{side}: {label} · nDCG@10 {value:.4f}")
        where.dataframe(
            pd.DataFrame(
                {
                    "rank": range(1, len(top) + 1),
                    "doc_id": list(top),
                    "grade": grade_column(top, outcome.grades),
                }
            ),
            hide_index=True,
        )


def _save(ctx: Context, comparison: SetComparison) -> None:
    st.markdown("**Save this comparison as a snapshot**")
    if not ctx.writable:
        st.caption(READ_ONLY)
    default = f"{comparison.a}-vs-{comparison.b}-{datetime.now(UTC):%Y%m%d-%H%M}".replace(":", "-")
    if st.session_state.get(_NAME_FOR) != (comparison.a, comparison.b):
        st.session_state[_NAME_FOR] = (comparison.a, comparison.b)
        st.session_state[_NAME] = default
    cols = st.columns([3, 1], vertical_alignment="bottom")
    name = cols[0].text_input("Snapshot name", key=_NAME, disabled=not ctx.writable).strip()
    if cols[1].button("Save snapshot", key="w_save_snapshot", disabled=not ctx.writable):
        try:
            path = save_comparison(ctx, comparison, name)
        except BrainrankError as exc:
            st.error(str(exc))
        else:
            st.session_state[_FLASH] = f"Saved snapshot {name} ({path})."
            state.navigate(snap=name)


def save_comparison(ctx: Context, comparison: SetComparison, name: str):
    """Save ``comparison`` as snapshot ``name`` in the workspace; refused (``ReadOnlyError``)
    unless the debugger is writable, whatever the browser sent."""
    require_writable(ctx.writable, f"save snapshot {name!r}")
    return save_snapshot(ctx.workspace.root, comparison, name)


def _rank(rank: int | None, absent: str) -> str:
    return str(rank) if rank else absent
