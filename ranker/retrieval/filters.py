"""Filters on a document's timestamp and numeric fields, applied before ranking.

A filter is one condition written as a user types it: ``price < 30``, ``rating >= 4.5``,
``timestamp >= 2025-01-01`` or ``timestamp > now-30d``. Several conditions must all hold. A
document without the field (no timestamp, no such number) matches no condition on it, ``!=``
included. Both retrievers search only the documents that match, so a selective filter still
returns its ``k`` best matches rather than what is left of an unfiltered top list.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np

from brainrank.index.errors import InputError
from brainrank.ranker.feedback.fields import parse_time

MAX_FILTERS = 16
MAX_FILTER_CHARS = 200
TIMESTAMP = "timestamp"
OPERATORS = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "=": np.equal,
    "==": np.equal,
    "!=": np.not_equal,
}
# The field is everything before the first operator; two-character operators are tried first.
_CONDITION = re.compile(
    r"^\s*(?P<field>[^<>=!]+?)\s*(?P<op><=|>=|!=|==|<|>|=)\s*(?P<value>.*?)\s*$"
)
_RELATIVE = re.compile(r"^now(?:\s*-\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw]))?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
EXAMPLES = "price < 30, rating >= 4.5, timestamp >= 2025-01-01, timestamp > now-30d"


@dataclass(frozen=True)
class Condition:
    """``field op value``; ``value`` is a number, or epoch seconds for the timestamp."""

    field: str
    op: str
    value: float
    text: str  # as given, for messages and results

    def column(self) -> str:
        """The generation's ``doc_meta`` column this condition reads."""
        return TIMESTAMP if self.field == TIMESTAMP else f"field:{self.field}"


def parse_filters(
    filters: str | Sequence[str] | None, *, now: float | None = None
) -> tuple[Condition, ...]:
    """Conditions from one filter string or a list of them (None or empty: no filter)."""
    if filters is None:
        return ()
    items = [filters] if isinstance(filters, str) else list(filters)
    if len(items) > MAX_FILTERS:
        raise InputError(f"{len(items)} filters given; the limit is {MAX_FILTERS}")
    now = time.time() if now is None else now
    return tuple(parse_condition(item, now=now) for item in items)


def parse_condition(text: object, *, now: float) -> Condition:
    if not isinstance(text, str):
        raise InputError(f"a filter must be a string like 'price < 30', not {type(text).__name__}")
    shown = text if len(text) <= 60 else text[:60] + "..."
    if len(text) > MAX_FILTER_CHARS:
        raise InputError(f"filter {shown!r} is over {MAX_FILTER_CHARS} characters")
    m = _CONDITION.match(text)
    if m is None or not m["value"]:
        raise InputError(
            f"cannot read the filter {shown!r}: write FIELD OP VALUE with OP one of "
            f"{', '.join(OPERATORS)} (for example {EXAMPLES})"
        )
    field, op, raw = m["field"], m["op"], m["value"]
    if field == TIMESTAMP:
        value = _time_value(raw, shown, now)
    else:
        try:
            value = float(raw)
        except ValueError:
            raise InputError(
                f"filter {shown!r}: {raw!r} is not a number (filters compare the timestamp "
                "and numeric fields)"
            ) from None
        if not math.isfinite(value):
            raise InputError(f"filter {shown!r}: the value must be a finite number")
    return Condition(field, op, value, f"{field} {op} {raw}")


def _time_value(raw: str, shown: str, now: float) -> float:
    rel = _RELATIVE.match(raw)
    if rel is not None:
        if rel["n"] is None:
            return now
        return now - float(rel["n"]) * _UNIT_SECONDS[rel["unit"]]
    try:
        if len(raw) == 10:  # a date alone: its midnight in UTC
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        return parse_time(raw).timestamp()
    except ValueError as exc:
        raise InputError(
            f"filter {shown!r}: {exc}; a timestamp is compared with a date (2025-01-31), a "
            "time with its zone (2025-01-31T09:00:00Z) or an age (now-30d; s, m, h, d or w)"
        ) from None


def matching(conditions: Sequence[Condition], meta: Mapping[str, np.ndarray], size: int):
    """Which of a generation's ``size`` documents pass every condition (a bool array), or
    None when there is no condition. ``meta``: the generation's ``doc_meta`` columns."""
    if not conditions:
        return None
    keep = np.ones(size, dtype=bool)
    for c in conditions:
        values = meta.get(c.column())
        if values is None:
            names = [TIMESTAMP, *(n.removeprefix("field:") for n in meta if n != TIMESTAMP)]
            raise InputError(
                f"cannot filter on {c.field!r}: no document has that field; the fields here "
                f"are {', '.join(sorted(set(names), key=names.index))}"
            )
        with np.errstate(invalid="ignore"):
            keep &= OPERATORS[c.op](values, c.value) & ~np.isnan(values)
    return keep
