"""The monitors' report: the verdict, its reasons, each monitor's numbers, and the one way to
say them in words.

``brainrank monitor`` and the debugger's Health page both print ``MonitorReport.headline()``
and ``MonitorReport.summary()``, so the terminal and the page cannot tell different stories.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime


def no_data(why: str) -> dict:
    """A monitor's section when it has nothing to compare, and why."""
    return {"status": "no data", "reasons": [], "note": why}


def section(reasons: list[str], **numbers) -> dict:
    """A monitor's section: "alarm" when it has reasons, else "ok", with its numbers."""
    return {"status": "alarm" if reasons else "ok", "reasons": reasons, **numbers}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


@dataclass
class MonitorReport:
    """The verdict ("fresh" or "stale"), its reasons, and each monitor's numbers."""

    verdict: str
    reasons: list[str]
    model: str | None
    window: dict
    monitors: dict[str, dict]
    reference: str | None
    seconds: float = 0.0

    @property
    def stale(self) -> bool:
        return self.verdict == "stale"

    @property
    def alarms(self) -> list[str]:
        """Names of the monitors that raised an alarm, in report order."""
        return [name for name, m in self.monitors.items() if m["status"] == "alarm"]

    def headline(self) -> str:
        """The verdict in one line, e.g. "stale: model v0002, 120 searches in the last 1d; 4 of
        5 monitors had enough data; alarm from features". It names no clock time, so two runs
        over the same traffic agree."""
        model = f"model {self.model}" if self.model else "no champion model"
        alarms = self.alarms
        if alarms:
            outcome = f"alarm{'s' if len(alarms) > 1 else ''} from {', '.join(alarms)}"
        else:
            outcome = "no monitor raised an alarm"
        return (
            f"{self.verdict}: {model}, {self.window['searches']} searches in the last "
            f"{_span(self.window['seconds'])}; {self.with_data} of {len(self.monitors)} "
            f"monitors had enough data; {outcome}"
        )

    @property
    def with_data(self) -> int:
        """How many monitors had enough data to judge (the others say "no data")."""
        return sum(m["status"] != "no data" for m in self.monitors.values())

    def summary(self) -> list[dict]:
        """One row per monitor: ``monitor``, ``status`` ("alarm", "ok" or "no data") and
        ``details`` (its reasons, else why it has no data, else its telling number)."""
        return [
            {
                "monitor": name,
                "status": m["status"],
                "details": "; ".join(m["reasons"]) or m.get("note") or _details(name, m),
            }
            for name, m in self.monitors.items()
        ]

    def to_dict(self) -> dict:
        return {**asdict(self), "headline": self.headline()}


def _details(name: str, m: dict) -> str:
    if name == "features":
        worst = max(m.get("features") or [], key=lambda r: r["psi"], default=None)
        return f"largest PSI {worst['psi']:.3f} ({worst['feature']})" if worst else ""
    if name == "queries":
        if m.get("terms"):
            terms = m["terms"]
            return f"{terms['unseen_share']:.0%} unseen terms, JS {terms['js']:.3f} bits"
        share = (m.get("out_of_domain") or {}).get("share")
        return f"{share:.0%} of searches out of the model's domain" if share is not None else ""
    if name == "corpus":
        if m.get("changed_share") is None:
            return f"{m.get('documents', 0)} documents; no promoted model to compare them with"
        return f"{m['changed_share']:.1%} of documents added or changed since training"
    if name == "outcomes":
        w = m.get("window") or {}
        return f"{w.get('clicks', 0)} clicks on {w.get('searches', 0)} sampled searches"
    if name == "staleness":
        return f"model age {m['age_seconds'] / 86400:.1f} of {m['max_age_seconds'] / 86400:g} days"
    return ""


def _span(seconds: float) -> str:
    """A window length as the config writes it: 1d, 12h, 15m, 90s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
