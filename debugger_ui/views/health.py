"""Health: is the champion still fit for its traffic and corpus? The drift monitors'
verdict.

Everything shown comes from one ``MonitorReport`` (the numbers of ``brainrank monitor --json``)
and the retrain reports in the registry; this page only lays them out.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from brainrank.debugger_ui import state
from brainrank.debugger_ui.caches import MONITOR_TTL
from brainrank.debugger_ui.loaders import Context
from brainrank.debugger_ui.views.common import hint_on_error
from brainrank.debugger_ui.views.health_tables import (
    bars,
    baseline_frame,
    duration,
    features_frame,
    histogram_frame,
    history_frame,
    queries_frame,
    summary_frame,
)
from brainrank.debugger_ui.views.models import age

WINDOWS = ("1d", "7d", "30d")
_REFRESH = "health_refresh"


def render(ctx: Context) -> None:
    st.title("Health")
    _model(ctx)
    if ctx.generation is None:
        st.info("The workspace has no documents yet: run `brainrank ingest PATH`.")
        return
    _index(ctx)
    with hint_on_error():
        mcfg = ctx.monitor_config
        options = list(dict.fromkeys([*WINDOWS, mcfg.window]))
        left, right = st.columns([4, 1])
        window = state.choice(
            "window",
            "Live window (ending now)",
            options,
            mcfg.window,
            where=left,
            horizontal=True,
            radio=True,
        )
        right.button("Refresh", key="w_health_refresh", on_click=_refresh)
        report = ctx.monitor(window, st.session_state.get(_REFRESH, 0))
        _verdict(ctx, report, window)
        _features(report, mcfg)
        _queries(report, mcfg)
        _corpus(report)
        _outcomes(report, mcfg)
    _history(ctx)


def _refresh() -> None:
    st.session_state[_REFRESH] = st.session_state.get(_REFRESH, 0) + 1


def _model(ctx: Context) -> None:
    champion = next((v for v in ctx.versions if v.version == ctx.champion), None)
    if champion is None:
        st.info(
            "No champion model: searches use the fixed modes, and the feature, query and click "
            "monitors have nothing to watch. Train one with "
            "`brainrank train --queries FILE --qrels FILE` to track it here."
        )
        return
    now = datetime.now(UTC)
    days = (now - champion.created).total_seconds() / 86400
    cols = st.columns(3)
    cols[0].metric("Champion", champion.version)
    cols[1].metric("Trained", champion.created.strftime("%Y-%m-%d"))
    cols[2].metric("Model age", age(champion.created, now))
    st.caption(f"Trained {champion.created.strftime('%Y-%m-%d %H:%M UTC')}, {days:.2f} days ago.")
    training = champion.meta.get("training") or {}
    st.markdown(
        f"Trained on {training.get('judged_queries', '?')} judged queries "
        f"({training.get('train_queries', '?')} for training, "
        f"{training.get('holdout_queries', '?')} held out) and "
        f"{training.get('click_impressions', 0)} click impressions."
    )


def _index(ctx: Context) -> None:
    manifest = ctx.workspace.manifest(ctx.generation)
    cols = st.columns(3)
    cols[0].metric("Index generation", ctx.generation)
    cols[1].metric("Documents", manifest.get("documents", "?"))
    built = manifest.get("created")
    if built:
        cols[2].metric("Index built", datetime.fromisoformat(built).strftime("%Y-%m-%d"))


def _verdict(ctx: Context, report, window: str) -> None:
    st.subheader("Verdict")
    cols = st.columns(3)
    cols[0].metric("Verdict", report.verdict)
    cols[1].metric("Searches in window", report.window["searches"])
    cols[2].metric("Monitored model", report.model or "none")
    # The headline `brainrank monitor` prints first, then each reason.
    if report.stale:
        st.error(f"**{report.headline()}**\n\n" + "\n".join(f"- {r}" for r in report.reasons))
    elif report.with_data < len(report.monitors):
        # Fresh as far as anyone could tell: not a green light for the monitors that abstained.
        idle = [name for name, m in report.monitors.items() if m["status"] == "no data"]
        st.warning(f"**{report.headline()}**\n\nNo data for: {', '.join(idle)}.")
    else:
        st.success(f"**{report.headline()}**")
    if not ctx.has_query_log:
        st.info(
            "No query log yet, so the feature, query and click monitors have no traffic to "
            "look at. Searches from `brainrank search` and from this debugger's Search & "
            "explain page (when started with `--writable`) are logged to "
            "`logs/querylog.sqlite` in the workspace; `brainrank feedback FILE` adds clicks."
        )
    st.dataframe(summary_frame(report), hide_index=True)
    st.caption(
        f"Window {window}: {report.window['start']} to {report.window['end']}. Reference: "
        f"{report.reference or 'none'}. Computed in {report.seconds:.2f} s and reused for "
        f"{MONITOR_TTL} s (Refresh recomputes). `brainrank monitor --window {window}` prints "
        "the same report."
    )


# ----- features -------------------------------------------------------------------------------


def _features(report, mcfg) -> None:
    st.subheader("Feature drift")
    m = report.monitors["features"]
    if m["status"] == "no data":
        st.info(f"No feature comparison: {m['note']}.")
        return
    rows = m["features"]
    st.caption(
        f"{m['searches']} learned searches by {report.model} in the sample (first pages "
        f"without filters, {m['distinct_queries']} distinct queries) against the champion's "
        "served reference. "
        f"A feature drifts when PSI ≥ {mcfg.psi_threshold} and its test's p < "
        f"{mcfg.alpha} / {len(rows)} features, or when more than {mcfg.out_of_range:.0%} of "
        "its live values lie outside the training range."
    )
    frame = features_frame(rows)
    st.dataframe(frame, hide_index=True, height=min(38 + 35 * len(frame), 420))
    by_name = {r["feature"]: r for r in rows}
    name = state.choice("feature", "Histogram of", frame["feature"].tolist(), frame["feature"][0])
    row = by_name[name]
    st.altair_chart(
        bars(
            histogram_frame(row["histogram"]),
            ("reference", "live"),
            f"{name}: reference vs live (PSI {row['psi']:.3f})",
        ),
        width="stretch",
    )
    base = row.get("baseline")
    if base and base.get("live"):
        with st.expander("Against all training candidates (baseline.json)"):
            st.caption(
                "baseline.json describes the ~150 candidates of every training list, the "
                "monitor's live rows only the hits returned, so these shapes differ even "
                f"without drift. Live values below the training range: {base['below']}, "
                f"above: {base['above']}."
            )
            st.altair_chart(
                bars(
                    baseline_frame(base),
                    ("training", "live"),
                    f"{name}: training candidates vs live",
                ),
                width="stretch",
            )


# ----- queries, corpus, clicks ------------------------------------------------------------------


def _queries(report, mcfg) -> None:
    st.subheader("Query drift")
    m = report.monitors["queries"]
    if m["status"] == "no data":
        st.info(f"No query comparison: {m['note']}.")
        return
    st.dataframe(queries_frame(m, mcfg), hide_index=True)
    terms, c = m.get("terms"), m.get("centroid") or {}
    notes = []
    if terms:
        notes.append(
            f"{terms['live_queries']} distinct live queries against "
            f"{terms['reference_queries']} training queries"
        )
    if c.get("shift") is None and c.get("note"):
        notes.append(f"centroid shift not measured: {c['note']}")
    if notes:
        st.caption("; ".join(notes) + ".")


def _corpus(report) -> None:
    st.subheader("Corpus freshness")
    m = report.monitors["corpus"]
    cols = st.columns(4)
    cols[0].metric("Documents in the store", m["documents"])
    changed = "-"  # no promoted model: no training to compare the documents with
    if m.get("changed_share") is not None:
        changed = f"{m['changed_since_training']} ({m['changed_share']:.1%})"
    cols[1].metric("Changed since training", changed)
    cols[2].metric("Index lag", duration(m["index_lag_seconds"]))
    cols[3].metric("Index behind store", "yes" if m["index_behind_store"] else "no")
    st.caption(
        f"Newest document ingested: {m.get('newest_ingested') or '-'}; newest indexed: "
        f"{m.get('newest_indexed') or '-'}; last store update {m.get('last_update') or '-'}."
    )


def _outcomes(report, mcfg) -> None:
    st.subheader("Click outcomes")
    m = report.monitors["outcomes"]
    live, ref = m.get("window"), m.get("reference")
    if not live or not live.get("clicks"):
        st.info(
            "No clicks on the searches of this window: import feedback with "
            "`brainrank feedback FILE` to compare CTR and click MRR with the period after "
            "training."
        )
        return
    k = mcfg.k
    rows = [("window", live)] + ([("after training", ref)] if ref else [])
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "period": name,
                    "searches": o["searches"],
                    "clicks": o["clicks"],
                    "searches clicked": o["clicked"],
                    f"CTR@{k}": o[f"CTR@{k}"],
                    "click MRR": o["click_MRR"],
                }
                for name, o in rows
            ]
        ),
        hide_index=True,
    )
    if m["status"] == "no data":
        st.caption(m["note"])


# ----- retrain history ----------------------------------------------------------------------------


def _history(ctx: Context) -> None:
    st.subheader("Retrain history")
    reports = ctx.retrain_history()
    if not reports:
        st.info(
            "No retrain reports yet: `brainrank retrain [--if-needed]` writes one to "
            "`models/retrain/` whenever it trains a challenger, promoted or not."
        )
        return
    st.dataframe(history_frame(reports), hide_index=True)
