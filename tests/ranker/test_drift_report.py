"""The monitor report's one-line headline and per-monitor summary, which `brainrank monitor`
and the Health page both print."""

from __future__ import annotations

import json

from rich.console import Console

from brainrank.ranker.cli.render import monitor_table
from brainrank.ranker.monitoring.report import MonitorReport, no_data, section


def report(monitors: dict, model="v0003", seconds=86400.0, searches=120) -> MonitorReport:
    reasons = [r for m in monitors.values() if m["status"] == "alarm" for r in m["reasons"]]
    return MonitorReport(
        verdict="stale" if reasons else "fresh",
        reasons=reasons,
        model=model,
        window={"start": "-", "end": "-", "seconds": seconds, "searches": searches},
        monitors=monitors,
        reference=None,
    )


STALE = {
    "features": section(["feature dense drifted: PSI 0.41, ks p=1.0e-09"], features=[]),
    "queries": no_data("12 searches in the window (min_searches 30)"),
    "corpus": section([], changed_share=0.125),
    "staleness": section(
        ["model v0003 is 31.0 days old (max 30)"],
        age_seconds=31 * 86400,
        max_age_seconds=30 * 86400,
    ),
}


def test_stale_headline_names_the_model_window_and_alarms():
    rep = report(STALE)
    assert rep.alarms == ["features", "staleness"]
    assert rep.headline() == (
        "stale: model v0003, 120 searches in the last 1d; 3 of 4 monitors had enough data; "
        "alarms from features, staleness"
    )


def test_fresh_headline():
    rep = report({"corpus": section([], changed_share=0.0)}, model=None, seconds=12 * 3600)
    assert rep.headline() == (
        "fresh: no champion model, 120 searches in the last 12h; 1 of 1 monitors had enough "
        "data; no monitor raised an alarm"
    )
    assert (
        report({}, seconds=90)
        .headline()
        .endswith("in the last 90s; 0 of 0 monitors had enough data; no monitor raised an alarm")
    )


def test_fresh_with_silent_monitors_says_how_many_looked():
    rep = report(
        {
            "queries": no_data("12 searches in the window (min_searches 30)"),
            "corpus": section([], changed_share=0.0),
        }
    )
    assert rep.verdict == "fresh" and rep.with_data == 1
    assert "1 of 2 monitors had enough data" in rep.headline()
    rows = {r["monitor"]: r["status"] for r in rep.summary()}
    assert rows == {"queries": "no data", "corpus": "ok"}


def test_summary_gives_reasons_else_the_note_else_the_telling_number():
    rows = {r["monitor"]: r for r in report(STALE).summary()}
    assert rows["features"] == {
        "monitor": "features",
        "status": "alarm",
        "details": "feature dense drifted: PSI 0.41, ks p=1.0e-09",
    }
    assert rows["queries"]["status"] == "no data"
    assert rows["queries"]["details"] == "12 searches in the window (min_searches 30)"
    assert rows["corpus"]["details"] == "12.5% of documents added or changed since training"


def test_json_and_table_carry_the_same_words():
    rep = report(STALE)
    assert json.loads(json.dumps(rep.to_dict()))["headline"] == rep.headline()
    console = Console(width=400, record=True)
    console.print(monitor_table(rep))
    text = console.export_text()
    for row in rep.summary():
        assert row["details"] in text
