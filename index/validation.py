"""One input record (a dict as in a JSONL line, a CSV row or a Parquet row) as a ``Document``.

``readers`` finds the records in a file and names the file and line; this module checks one
record: an id, some searchable text in its title or body, valid Unicode, a timestamp that
parses, numeric fields that are finite. Standard library only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from brainrank.index.errors import InputError
from brainrank.index.jsontext import check_text, is_valid_text
from brainrank.index.records import Document

ID_KEYS = ("_id", "id", "doc_id")
TEXT_KEYS = ("text", "body", "contents")
# Searchable text: a document needs some in its title or its body.
SEARCHABLE_KEYS = ("title", *TEXT_KEYS)
TIME_KEYS = ("timestamp", "time", "date", "published")
# A longer string attribute (a URL, a second abstract) is not a tag to filter on.
MAX_TAG_CHARS = 200
# Keys with a meaning of their own are never read as extra numeric fields.
RESERVED = frozenset((*ID_KEYS, "title", *TEXT_KEYS, *TIME_KEYS, "metadata"))


class BadRecord(Exception):
    """A problem with one record; the caller prefixes the file and line."""


@dataclass(frozen=True)
class Rules:
    """How records become documents: declared numeric fields, typed values, text limit."""

    numeric_fields: Sequence[str] | None
    typed: bool  # False for CSV, whose cells are all strings
    max_text_chars: int | None

    def __post_init__(self) -> None:
        limit = self.max_text_chars
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InputError(f"max_text_chars must be an integer, not {limit!r}")
        if limit is not None and limit < 1:
            raise InputError(f"max_text_chars must be at least 1, not {limit}")


def _first(record: dict[str, Any], keys: Sequence[str]) -> Any:
    return next((record[key] for key in keys if record.get(key) is not None), None)


def describe(value: Any) -> str:
    return json.dumps(value[:40]) if isinstance(value, str) else type(value).__name__


def _show(value: Any) -> str:
    """A value for a message: never more than ~60 characters, whatever its size or depth."""
    if isinstance(value, str):
        return json.dumps(value[:60])
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, int | float):
        return repr(value)[:60]
    return type(value).__name__


def to_document(
    record: dict[str, Any], rules: Rules, *, typed: bool
) -> tuple[Document, bool, list[str]]:
    """The document of one record, whether its text was cut, and what was dropped."""
    doc_id = _first(record, ID_KEYS)
    if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()):
        raise BadRecord("missing id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        raise BadRecord(f"id must be a string or integer, found {describe(doc_id)}")
    if isinstance(doc_id, int) and doc_id.bit_length() > 64:
        raise BadRecord(f"id is {_show(doc_id)}; an integer id must fit in 64 bits")
    title = record.get("title")
    if title is not None and not isinstance(title, str):
        raise BadRecord(f"title must be a string, found {describe(title)}")
    text = _first(record, TEXT_KEYS)
    if text is not None and not isinstance(text, str):
        raise BadRecord(f"text must be a string, found {describe(text)}")
    if title is None and text is None:
        raise BadRecord('missing text (expected "title" or one of "text", "body", "contents")')
    title, text = title or "", text or ""
    cut = False
    limit = rules.max_text_chars
    if limit is not None and (len(title) > limit or len(text) > limit):
        title, text, cut = title[:limit], text[:limit], True
    if not text.strip() and not title.strip():
        raise BadRecord("empty text: no title or body")
    try:
        doc_id = check_text(str(doc_id), "id")
        check_text(title, "title")
        check_text(text, "text")
    except ValueError as err:
        raise BadRecord(str(err)) from None
    stamp = _first(record, TIME_KEYS)
    blank = stamp is None or (isinstance(stamp, str) and not stamp.strip())
    timestamp = None if blank else _parse_timestamp(stamp, typed)
    fields, dropped = _extra_fields(record, rules.numeric_fields, typed=typed)
    tags = _tags(record, fields) if rules.numeric_fields is None else {}
    return Document(doc_id, title, text, timestamp, fields, tags), cut, dropped


def _parse_timestamp(value: Any, typed: bool) -> datetime:
    """ISO 8601 (naive means UTC), a date, or Unix epoch seconds, as an aware UTC datetime."""
    if isinstance(value, datetime):  # Parquet timestamp columns
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        try:
            moment = _moment(value, typed)
        except ValueError:
            expected = "expected ISO 8601 or Unix epoch seconds"
            raise BadRecord(f"unparseable timestamp {_show(value)} ({expected})") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+02:00 falls before year 1 in UTC
        raise BadRecord(f"timestamp {_show(value)} is out of range in UTC") from None


def _moment(value: Any, typed: bool) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            if typed:
                raise
            return _epoch(float(value))  # CSV cells are strings, epochs included
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _epoch(value)
    raise ValueError(value)


def _epoch(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as err:  # out of range or NaN
        raise ValueError(str(err)) from None


def _extra_fields(
    record: dict[str, Any], declared: Sequence[str] | None, *, typed: bool
) -> tuple[dict[str, float], list[str]]:
    """Numeric fields, and one message per number left out (NaN, infinite, too large)."""
    fields: dict[str, float] = {}
    dropped: list[str] = []
    if declared is None:
        for key, value in record.items():
            if not isinstance(key, str) or key in RESERVED or not _numeric(value, typed):
                continue
            number = _number(value, typed)
            if number is None or not is_valid_text(key):
                shown = json.dumps(key[:40])  # ASCII-escaped, so a lone surrogate prints too
                dropped.append(f"field {shown} dropped: {_show(value)} is not a finite number")
            else:
                fields[key] = number
        return fields, dropped
    for key in declared:
        value = record.get(key)
        if value is None or (not typed and value == ""):
            continue
        number = _number(value, typed)
        if number is None:
            raise BadRecord(f'field "{key}" must be a finite number, found {_show(value)}')
        fields[key] = number
    return fields, dropped


def _tags(record: dict[str, Any], fields: dict[str, float]) -> dict[str, str]:
    """Short string attributes (category, brand, ...): every other key whose value is a
    non-empty string of at most ``MAX_TAG_CHARS`` characters (white space trimmed), or a
    boolean (the tag ``true`` or ``false``)."""
    tags: dict[str, str] = {}
    for key, value in record.items():
        if not isinstance(key, str) or key in RESERVED or key in fields:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        if isinstance(value, str) and 0 < len(value.strip()) <= MAX_TAG_CHARS:
            if is_valid_text(key) and is_valid_text(value):
                tags[key] = value.strip()
    return tags


def ignored_fields(record: dict[str, Any], doc: Document) -> dict[str, str]:
    """The record's other keys with a value that is neither a number nor a tag (a list, an
    object, a date, a string over ``MAX_TAG_CHARS`` characters), each with what it held:
    searches cannot filter on them, so ingest names them rather than dropping them unsaid."""
    out: dict[str, str] = {}
    for key, value in record.items():
        if not isinstance(key, str) or key in RESERVED or key in doc.fields or key in doc.tags:
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # an empty cell: nothing was there to keep
        if isinstance(value, int | float | Decimal) or not is_valid_text(key):
            continue  # a number left out is in ``dropped``, with its value
        if isinstance(value, str):
            what = (
                f"a string of {len(value)} characters (tags hold up to {MAX_TAG_CHARS})"
                if len(value.strip()) > MAX_TAG_CHARS
                else "a string that is not valid text"
            )
        else:
            kinds = {list: "a list", dict: "an object", datetime: "a time", date: "a date"}
            what = kinds.get(type(value), f"a value of type {type(value).__name__}")
        out[key] = what
    return out


def _numeric(value: Any, typed: bool) -> bool:
    """Whether ``value`` is meant as a number (a CSV cell: whether it parses as one)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float | Decimal):  # Decimal: Parquet decimal columns
        return True
    if typed or not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _number(value: Any, typed: bool) -> float | None:
    """``value`` as a finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    if typed and isinstance(value, str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_name(name: object, longest: int) -> bool:
    """Whether ``name`` is 1-``longest`` letters, digits, '.', '_' or '-' starting with a
    letter or digit: safe as a file name and a key."""
    return isinstance(name, str) and len(name) <= longest and bool(_NAME.fullmatch(name))


def check_name(name: object, what: str, longest: int) -> str:
    """``name`` if ``is_name``, else ``InputError`` naming ``what`` and what is allowed."""
    if not is_name(name, longest):
        raise InputError(
            f"{what} {name!r} is not allowed; use 1-{longest} letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return name
