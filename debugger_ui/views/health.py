"""Health: is the champion still fit for its traffic and corpus? ``ranker.drift``'s monitors.

Everything shown comes from one ``MonitorReport`` (the numbers of ``brainrank monitor --json``)
and the retrain reports in the registry; this page only lays them out.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from debugger_ui import state
from debugger_ui.loaders import MONITOR_TTL, Context
from debugger_ui.views.common import hint_on_error
from debugger_ui.views.models import age

WINDOWS = ("1d", "7d", "30d")
_REFRESH = "health_refresh"
_STATUS = {"alarm": "⚠ alarm", "ok": "ok", "no data": "no data"}


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
    if report.stale:
        st.error("**Stale**, because:\n" + "\n".join(f"- {r}" for r in report.reasons))
    else:
        st.success("**Fresh**: no monitor raised an alarm.")
    if not ctx.has_query_log:
        st.info(
            "No query log yet, so the feature, query and click monitors have no traffic to "
            "look at. Searches from `brainrank search` and from this debugger's Search & "
            "explain page are logged to `logs/querylog.sqlite` in the workspace; "
            "`brainrank feedback FILE` adds clicks."
        )
    st.dataframe(summary_frame(report), hide_index=True)
    st.caption(
        f"Window {window}: {report.window['start']} to {report.window['end']}. Reference: "
        f"{report.reference or 'none'}. Computed in {report.seconds:.2f} s and reused for "
        f"{MONITOR_TTL} s (Refresh recomputes). `brainrank monitor --window {window}` prints "
        "the same report."
    )


def summary_frame(report) -> pd.DataFrame:
    rows = []
    for name, m in report.monitors.items():
        details = "; ".join(m["reasons"]) or m.get("note") or _headline(name, m)
        rows.append(
            {"monitor": name, "status": _STATUS.get(m["status"], m["status"]), "details": details}
        )
    return pd.DataFrame(rows)


def _headline(name: str, m: dict) -> str:
    if name == "features":
        worst = max(m["features"], key=lambda r: r["psi"], default=None)
        return f"largest PSI {worst['psi']:.3f} ({worst['feature']})" if worst else ""
    if name == "queries" and "terms" in m:
        return f"{m['terms']['unseen_share']:.0%} unseen terms, JS {m['terms']['js']:.3f} bits"
    if name == "corpus":
        return f"{m['changed_share']:.1%} of documents added or changed since training"
    if name == "outcomes":
        w = m.get("window") or {}
        return f"{w.get('clicks', 0)} clicks on {w.get('searches', 0)} sampled searches"
    if name == "staleness":
        return f"model age {m['age_seconds'] / 86400:.1f} of {m['max_age_seconds'] / 86400:g} days"
    return ""


# ----- features -------------------------------------------------------------------------------


def features_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per feature, largest PSI first."""
    frame = pd.DataFrame(
        {
            "feature": [r["feature"] for r in rows],
            "PSI": [r["psi"] for r in rows],
            "test": [r["test"] for r in rows],
            "statistic": [r["statistic"] for r in rows],
            "p-value": [r["p"] for r in rows],
            "out of range": [r["out_of_range"] for r in rows],
            "drifted": ["⚠ drifted" if r["drifted"] else "" for r in rows],
        }
    )
    return frame.sort_values("PSI", ascending=False, kind="stable").reset_index(drop=True)


def _features(report, mcfg) -> None:
    st.subheader("Feature drift")
    m = report.monitors["features"]
    if m["status"] == "no data":
        st.info(f"No feature comparison: {m['note']}.")
        return
    rows = m["features"]
    st.caption(
        f"{m['searches']} learned searches by {report.model} in the sample "
        f"({m['distinct_queries']} distinct queries) against the champion's served reference. "
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
        _bars(
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
                _bars(
                    baseline_frame(base),
                    ("training", "live"),
                    f"{name}: training candidates vs live",
                ),
                width="stretch",
            )


def histogram_frame(hist: dict) -> pd.DataFrame:
    """Bins (labelled), with each side's share of its rows."""
    if "values" in hist:
        labels = [f"{v:g}" for v in hist["values"]] + ["other"]
    else:
        edges = hist["edges"]
        labels = (
            [f"< {edges[0]:.3g}"]
            + [f"{a:.3g} – {b:.3g}" for a, b in zip(edges, edges[1:], strict=False)]
            + [f"≥ {edges[-1]:.3g}"]
            if edges
            else ["all"]
        )
    return _shares(labels, {"reference": hist["reference"], "live": hist["live"]})


def baseline_frame(base: dict) -> pd.DataFrame:
    e = base["edges"]
    labels = [f"{a:.3g} – {b:.3g}" for a, b in zip(e, e[1:], strict=False)]
    return _shares(labels, {"training": base["training"], "live": base["live"]})


def _shares(labels: list[str], counts: dict[str, list]) -> pd.DataFrame:
    rows = []
    for series, values in counts.items():
        total = sum(values) or 1
        for i, (label, count) in enumerate(zip(labels, values, strict=False)):
            rows.append(
                {"bin": label, "order": i, "series": series, "count": count, "share": count / total}
            )
    return pd.DataFrame(rows)


def _bars(data: pd.DataFrame, series: tuple[str, str], title: str):
    import altair as alt

    order = data.drop_duplicates("bin").sort_values("order")["bin"].tolist()
    return (
        alt.Chart(data, title=title)
        .mark_bar()
        .encode(
            x=alt.X("bin:N", sort=order, title=None, axis=alt.Axis(labelAngle=-30)),
            xOffset=alt.XOffset("series:N", sort=list(series)),
            y=alt.Y("share:Q", title="share of rows", axis=alt.Axis(format="%")),
            color=alt.Color(
                "series:N",
                sort=list(series),
                title=None,
                scale=alt.Scale(range=["#9e9e9e", "#1565c0"]),
            ),
            tooltip=["bin", "series", "count", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=260)
    )


# ----- queries, corpus, clicks ------------------------------------------------------------------


def queries_frame(m: dict, mcfg) -> pd.DataFrame:
    """Each query-drift measure, what sampling alone gives, and where the alarm starts."""
    rows = []
    terms = m.get("terms")
    if terms:
        rows.append(
            (
                "unseen query terms (share)",
                terms["unseen_share"],
                terms["expected_unseen"],
                terms["expected_unseen"] + mcfg.unseen_terms_margin,
            )
        )
        rows.append(
            (
                "JS divergence of terms (bits)",
                terms["js"],
                terms["js_null"],
                terms["js_null"] + mcfg.js_margin,
            )
        )
    c = m.get("centroid") or {}
    if c.get("shift") is not None:
        rows.append(
            (
                "centroid shift (cosine distance)",
                c["shift"],
                c["null_q99"],
                max(c["null_q99"], mcfg.centroid_min),
            )
        )
    ood = m.get("out_of_domain") or {}
    if ood.get("share") is not None:
        rows.append(
            (
                "out-of-domain searches (share)",
                ood["share"],
                ood["reference"],
                ood["reference"] + mcfg.ood_margin,
            )
        )
    return pd.DataFrame(rows, columns=["measure", "live", "without drift", "alarm above"])


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
    cols[1].metric(
        "Changed since training", f"{m['changed_since_training']} ({m['changed_share']:.1%})"
    )
    cols[2].metric("Index lag", _duration(m["index_lag_seconds"]))
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


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


# ----- retrain history ----------------------------------------------------------------------------


def history_frame(reports: list[dict]) -> pd.DataFrame:
    """One row per retrain report, newest first."""
    rows = []
    for r in reversed(reports):
        holdout = (r.get("metrics") or {}).get("holdout") or {}
        incumbent = "champion" if "champion" in holdout else "hybrid"
        clicks = (r.get("metrics") or {}).get("clicks") or {}
        trigger = r.get("monitor") or {}
        rows.append(
            {
                "time": r.get("started"),
                "decision": r.get("status"),
                "challenger": r.get("challenger"),
                "champion before": r.get("champion_before"),
                "champion after": r.get("champion_after"),
                "challenger nDCG@10": (holdout.get("challenger") or {}).get("nDCG@10"),
                "incumbent nDCG@10": (holdout.get(incumbent) or {}).get("nDCG@10"),
                "challenger click DCG": clicks.get("challenger"),
                "champion click DCG": clicks.get("champion"),
                "trigger": "; ".join(trigger.get("reasons") or []) or "run without --if-needed",
                "reason": r.get("reason"),
                "seconds": r.get("seconds"),
            }
        )
    return pd.DataFrame(rows)


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
