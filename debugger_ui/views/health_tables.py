"""Tables and charts of the Health page, from a ``MonitorReport``'s numbers and retrain reports.

Display only: every number comes from ``ranker.monitoring``; these functions
label, order and reshape them.
"""

from __future__ import annotations

import pandas as pd

_STATUS = {"alarm": "⚠ alarm", "ok": "ok", "no data": "no data"}


def summary_frame(report) -> pd.DataFrame:
    """``MonitorReport.summary()``, the rows ``brainrank monitor`` prints, with alarms marked."""
    rows = report.summary()
    for row in rows:
        row["status"] = _STATUS.get(row["status"], row["status"])
    return pd.DataFrame(rows, columns=["monitor", "status", "details"])


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


def bars(data: pd.DataFrame, series: tuple[str, str], title: str):
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


def duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
