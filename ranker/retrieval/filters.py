"""Filters on a document's timestamp, numeric fields and tags, applied before ranking.

A filter is one condition written as a user types it: ``price < 30``, ``rating >= 4.5``,
``timestamp >= 2025-01-01``, ``timestamp > now-30d``, ``category = help`` or
``category in (help, catalog)``. Several conditions must all hold. Numbers and the timestamp
take every comparison; a tag (a short string attribute) takes ``=``, ``!=`` and ``in``. A
document without the field (no timestamp, no such number or tag) matches no condition on it,
``!=`` included. Both retrievers search only the documents that match, so a selective filter
still returns its ``k`` best matches rather than what is left of an unfiltered top list.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
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
TAG_OPERATORS = ("=", "==", "!=", "in")
# The field is everything before the first operator; two-character operators are tried first.
_CONDITION = re.compile(
    r"^\s*(?P<field>[^<>=!]+?)\s*(?P<op><=|>=|!=|==|<|>|=)\s*(?P<value>.*?)\s*$"
)
_IN = re.compile(r"^\s*(?P<field>[^<>=!]+?)\s+in\s*\((?P<value>.*)\)\s*$", re.IGNORECASE)
_ITEM = re.compile(r"""\s*('[^']*'|"[^"]*"|[^,'"]*)\s*(,|$)""")
_RELATIVE = re.compile(r"^now(?:\s*-\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw]))?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
EXAMPLES = (
    "price < 30, rating >= 4.5, timestamp >= 2025-01-01, timestamp > now-30d, category = help, "
    "category in (help, catalog)"
)


@dataclass(frozen=True)
class Condition:
    """``field op value``: ``values`` as written (unquoted; several for ``in``), ``numbers``
    the same read as numbers (epoch seconds for the timestamp; None where one is not)."""

    field: str
    op: str
    values: tuple[str, ...]
    numbers: tuple[float | None, ...]
    text: str  # normalised, for messages and results


def parse_filters(
    filters: str | Sequence[str] | None, *, now: float | None = None
) -> tuple[Condition, ...]:
    """Conditions from one filter string or a list of them (None or empty: no filter); a
    ``Condition`` in the list is kept as it is."""
    if filters is None:
        return ()
    items = [filters] if isinstance(filters, str) else list(filters)
    if len(items) > MAX_FILTERS:
        raise InputError(f"{len(items)} filters given; the limit is {MAX_FILTERS}")
    now = time.time() if now is None else now
    return tuple(i if isinstance(i, Condition) else parse_condition(i, now=now) for i in items)


def parse_condition(text: object, *, now: float) -> Condition:
    if not isinstance(text, str):
        raise InputError(f"a filter must be a string like 'price < 30', not {type(text).__name__}")
    shown = text if len(text) <= 60 else text[:60] + "..."
    if len(text) > MAX_FILTER_CHARS:
        raise InputError(f"filter {shown!r} is over {MAX_FILTER_CHARS} characters")
    listed = _IN.match(text)
    m = listed or _CONDITION.match(text)
    values = _values(m["value"], listed is not None) if m is not None else ()
    if m is None or not values:
        raise InputError(
            f"cannot read the filter {shown!r}: write FIELD OP VALUE with OP one of "
            f"{', '.join(OPERATORS)}, or FIELD in (VALUE, ...) (for example {EXAMPLES})"
        )
    field, op = m["field"].strip(), "in" if listed else m["op"]
    if field == TIMESTAMP:
        if op == "in":
            raise InputError(f"filter {shown!r}: compare the timestamp with <, <=, > or >=")
        numbers: tuple[float | None, ...] = (_time_value(values[0], shown, now),)
    else:
        numbers = tuple(_number(v) for v in values)
    value_text = f"({', '.join(map(_quoted, values))})" if op == "in" else m["value"]
    return Condition(field, op, values, numbers, f"{field} {op} {value_text}")


def _values(raw: str, listed: bool) -> tuple[str, ...]:
    """The value, or the comma-separated values of an ``in`` list (a quoted one may hold a
    comma); () when one is empty or the list is malformed."""
    if not listed:
        out: list[str] = [_unquote(raw.strip())]
    else:
        out, at = [], 0
        while at < len(raw):
            m = _ITEM.match(raw, at)
            if m is None:
                return ()
            out.append(_unquote(m[1].strip()))
            at = m.end()
            if not m[2]:
                break
    return tuple(out) if out and all(out) else ()


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _quoted(value: str) -> str:
    """An ``in`` list's value as it would be written: quoted when it holds a comma."""
    if "," not in value:
        return value
    return f"'{value}'" if "'" not in value else f'"{value}"'


def equals(field: str, value: str) -> str:
    """The condition ``field = value`` written so that it reads back as exactly ``value``
    (quoted when the value has outer spaces or outer quotes of its own)."""
    outer = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
    if value != value.strip() or outer or not value:
        value = f"'{value}'" if "'" not in value else f'"{value}"'
    return f"{field} = {value}"


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# Epoch seconds, as ingest reads a timestamp: nine digits or more (from 1973 on), so that a
# year (2025) or a compact date (20250131) is not read as seconds after 1970.
_EPOCH = re.compile(r"\d{9,}(\.\d+)?")


def _time_value(raw: str, shown: str, now: float) -> float:
    rel = _RELATIVE.match(raw)
    if rel is not None:
        if rel["n"] is None:
            return now
        return now - float(rel["n"]) * _UNIT_SECONDS[rel["unit"]]
    if _EPOCH.fullmatch(raw):
        return float(raw)
    try:
        if len(raw) == 10:  # a date alone: its midnight in UTC
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        return parse_time(raw).timestamp()
    except ValueError as exc:
        raise InputError(
            f"filter {shown!r}: {exc}; a timestamp is compared with a date (2025-01-31), a "
            "time with its zone (2025-01-31T09:00:00Z), epoch seconds (1738310400) or an age "
            "(now-30d; s, m, h, d or w)"
        ) from None


class TagColumn:
    """A tag column factorised: its distinct values and each document's code. A condition
    then compares the few distinct values, not every document's string (bench_filters.py:
    0.48 ms instead of 3.11 at 200,000 documents)."""

    def __init__(self, values: np.ndarray):
        self.values, self.codes = np.unique(np.asarray(values, dtype=str), return_inverse=True)

    def isin(self, wanted: Sequence[str]) -> np.ndarray:
        """Per document: whether its tag is one of ``wanted`` (never for a missing tag)."""
        return (np.isin(self.values, np.asarray(wanted, dtype=str)) & (self.values != ""))[
            self.codes
        ]

    def present(self) -> np.ndarray:
        return (self.values != "")[self.codes]


class FilterColumns(Mapping):
    """A generation's ``doc_meta`` as filters read it: each tag column factorised once, on
    the first filter that names it."""

    def __init__(self, meta: Mapping[str, np.ndarray]):
        self._meta, self._tags = meta, {}

    def __getitem__(self, name: str):
        if not name.startswith("tag:"):
            return self._meta[name]
        column = self._tags.get(name)
        if column is None:  # two threads may both build it; either result is the same
            column = self._tags[name] = TagColumn(self._meta[name])
        return column

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta)

    def __len__(self) -> int:
        return len(self._meta)


def matching(conditions: Sequence[Condition], meta: Mapping, size: int):
    """Which of a generation's ``size`` documents pass every condition (a bool array), or
    None when there is no condition. ``meta``: the generation's ``doc_meta`` columns (tag
    columns as strings or as ``TagColumn``; ``Generation.filter_columns`` keeps them so)."""
    if not conditions:
        return None
    keep = np.ones(size, dtype=bool)
    for c in conditions:
        keep &= _matches(c, meta)
    return keep


def _matches(c: Condition, meta: Mapping[str, np.ndarray]) -> np.ndarray:
    numeric = meta.get(TIMESTAMP if c.field == TIMESTAMP else f"field:{c.field}")
    tags = meta.get(f"tag:{c.field}")
    if numeric is not None and (tags is None or None not in c.numbers):
        if None in c.numbers:
            bad = c.values[c.numbers.index(None)]
            raise InputError(f"filter {c.text!r}: {bad!r} is not a number ({c.field} is numeric)")
        with np.errstate(invalid="ignore"):
            if c.op == "in":
                found = np.isin(numeric, np.asarray(c.numbers, dtype=np.float64))
            else:
                found = OPERATORS[c.op](numeric, c.numbers[0])
        return found & ~np.isnan(numeric)
    if tags is not None:
        if c.op not in TAG_OPERATORS:
            raise InputError(
                f"filter {c.text!r}: {c.field} is a tag, compared with =, != or in (...), "
                f"not {c.op}"
            )
        tags = tags if isinstance(tags, TagColumn) else TagColumn(tags)
        found = tags.isin(c.values)
        return tags.present() & ~found if c.op == "!=" else found
    names = [TIMESTAMP]
    names += sorted({n.split(":", 1)[1] for n in meta if ":" in n})
    raise InputError(
        f"cannot filter on {c.field!r}: no document has that field; the fields here are "
        f"{', '.join(names)}"
    )


MAX_FACETS = 8
MAX_FACET_VALUES = 100


def count_tags(
    names: Sequence[str], columns: Mapping, positions: np.ndarray
) -> dict[str, dict[str, int]]:
    """For each tag in ``names``: how many of the documents at ``positions`` have each value,
    most first (ties by value), at most ``MAX_FACET_VALUES`` values; a missing tag is not
    counted. ``columns``: ``Generation.filter_columns``."""
    if isinstance(names, str):
        names = [names]
    if len(names) > MAX_FACETS:
        raise InputError(f"{len(names)} facets asked for; the limit is {MAX_FACETS}")
    out: dict[str, dict[str, int]] = {}
    for name in names:
        if not isinstance(name, str):
            raise InputError(f"a facet is a tag's name, not {type(name).__name__}")
        column = columns.get(f"tag:{name}")
        if column is None:
            tags = sorted(n.split(":", 1)[1] for n in columns if n.startswith("tag:"))
            raise InputError(
                f"cannot count {name!r}: no document has that tag; the tags here are "
                f"{', '.join(tags) or 'none'}"
            )
        column = column if isinstance(column, TagColumn) else TagColumn(column)
        counts = np.bincount(column.codes[positions], minlength=len(column.values))
        found = [(int(n), str(v)) for v, n in zip(column.values, counts, strict=True) if n and v]
        found.sort(key=lambda item: (-item[0], item[1]))
        out[name] = {value: n for n, value in found[:MAX_FACET_VALUES]}
    return out
