"""Fields the click log (``feedback.clicklog``) and the query log (``feedback.querylog``) read
alike: the query key that joins them, and times.

Both logs take these from here so a click and a logged search meet on the same key, and a bad
time gets the same message whichever file it came from. ``normalise_query`` is the one query
normaliser: every module that keys, joins or recognises queries by text calls it.
Standard library only.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

ISO_EXAMPLE = "2026-10-03T14:22:05Z"
MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime can hold


def normalise_query(text: str) -> str:
    """Lowercase, collapse runs of whitespace to one space and strip: the key joining queries."""
    return " ".join(text.lower().split())


def parse_time(value: object) -> datetime:
    """An ISO 8601 time with a time zone (``2026-10-03T14:22:05Z``) as an aware UTC datetime.

    Raises ``ValueError`` with a message naming the value.
    """
    return _iso(value, "an ISO 8601 string")


def parse_epoch_seconds(value: object) -> float:
    """Epoch seconds from a number, or from an ISO 8601 time with a time zone.

    Raises ``ValueError`` with a message naming the value.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an integer too large for a float
            seconds = math.inf
        if not 0 <= seconds <= MAX_EPOCH:  # also NaN
            shown = f"{seconds:.6g}" if isinstance(value, float) or seconds > 1e15 else value
            raise ValueError(
                f"time must be a finite number of epoch seconds from 0 to {MAX_EPOCH} (year "
                f"9999), got {shown}"
            )
        return seconds
    return _iso(value, "ISO 8601 or epoch seconds").timestamp()


def _iso(value: object, expected: str) -> datetime:
    if not isinstance(value, str):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        small = isinstance(value, bool | type(None)) or (number and abs(value) < 1e15)
        shown = repr(value) if small else type(value).__name__
        raise ValueError(f"time must be {expected}, got {shown}")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
        raise ValueError(f"bad time {shown}: expected ISO 8601 like {ISO_EXAMPLE}") from None
    if t.tzinfo is None:
        raise ValueError(f"time {value!r} has no time zone: add Z for UTC")
    try:
        return t.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+02:00 falls before year 1 in UTC
        raise ValueError(f"time {value!r} is out of range in UTC") from None
