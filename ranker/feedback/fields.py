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
        if not math.isfinite(value):
            raise ValueError(f"time must be a finite number of epoch seconds, got {value!r}")
        return float(value)
    return _iso(value, "ISO 8601 or epoch seconds").timestamp()


def _iso(value: object, expected: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"time must be {expected}, got {value!r}")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"bad time {value!r}: expected ISO 8601 like {ISO_EXAMPLE}") from None
    if t.tzinfo is None:
        raise ValueError(f"time {value!r} has no time zone: add Z for UTC")
    return t.astimezone(UTC)
