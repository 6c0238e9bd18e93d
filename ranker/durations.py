"""Durations ("90s", "15m", "7d") and schedules (crontab lines, "every 10m") in the config.

Stdlib only at import: APScheduler loads when a schedule is parsed.
"""

from __future__ import annotations

import re

from brainrank.index.errors import BrainrankError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# The longest duration taken: a window or interval past a century is a typo, and dates that
# far back or ahead are out of Python's range.
MAX_SECONDS = 100 * 365 * 86400


def parse_duration(text: str | float | int, name: str = "duration") -> float:
    """Seconds in "90s", "15m", "12h", "7d", "2w" or a plain number of seconds (at most
    ``MAX_SECONDS``)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
        if not m:
            raise ValueError(f"{name} {text!r} is not a duration like 90s, 15m, 12h, 7d or 2w")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not seconds <= MAX_SECONDS:  # NaN too
        raise ValueError(f"{name} {text!r} is longer than 100 years")
    return seconds


def parse_schedule(expr: str, timezone: str = "UTC", where: str = "schedule"):
    """An APScheduler trigger from a crontab line ("30 3 * * *") or "every 90s"/"every 10m"."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    text = expr.strip()
    try:
        if text.lower().startswith("every "):
            seconds = parse_duration(text[6:], where)
            if seconds <= 0:
                raise ValueError("the interval must be positive")
            return IntervalTrigger(seconds=seconds, timezone=timezone)
        fields = text.split()
        if len(fields) == 5:
            fields[4] = _crontab_weekdays(fields[4])
        return CronTrigger.from_crontab(" ".join(fields), timezone=timezone)
    except (ValueError, LookupError) as exc:
        raise BrainrankError(
            f"config {where} {expr!r} is not a crontab expression (minute hour day month "
            f"weekday, e.g. '30 3 * * *') or an interval like 'every 10m': {exc}"
        ) from None


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _crontab_weekdays(field: str) -> str:
    """Crontab weekday numbers (0 or 7 = Sunday) as names: APScheduler counts 0 = Monday."""
    out = []
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*" and step:
            span = "0-6"
        if not any(c.isdigit() for c in span):
            out.append(part)  # "*" and names mean the same in both
            continue
        lo, _, hi = span.partition("-")
        days = range(int(lo), int(hi or lo) + 1, int(step or 1))
        if not days or min(days) < 0 or max(days) > 7:
            raise ValueError(f"weekday {part!r} is outside 0-7")
        out += [_DAYS[d % 7] for d in days]
    return ",".join(dict.fromkeys(out))
