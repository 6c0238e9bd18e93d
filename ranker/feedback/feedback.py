"""Importing click feedback into the query log: parse a JSONL file, link clicks to searches.

``QueryLog.import_feedback`` reads the file with ``read_feedback`` (all lines are checked
before anything is written) and writes the rows with ``add_clicks`` in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from brainrank.index.errors import InputError
from brainrank.index.jsontext import is_valid_text, loads
from brainrank.ranker.feedback.fields import normalise_query, parse_epoch_seconds

# A result list is at most 1,000 long; a larger position is a mistake, not a click.
MAX_POSITION = 100_000
_MAX_ROWID = 2**63 - 1  # SQLite's largest integer

# A click row as the ``clicks`` table takes it: (search_id, norm_query, doc_id, position, time,
# key); ``key`` makes importing the same click twice a no-op.
ClickRow = tuple[int | None, str, str, int | None, float, str]


@dataclass
class FeedbackReport:
    lines: int = 0
    imported: int = 0
    duplicates: int = 0
    unmatched: int = 0  # clicks with no logged search to attach to (kept, not used for outcomes)
    unknown_docs: int = 0  # clicks on documents the collection does not hold (kept)
    messages: list[str] = field(default_factory=list)


def read_feedback(
    db: sqlite3.Connection, path: Path | str, match_seconds: float
) -> tuple[FeedbackReport, list[ClickRow]]:
    """The click rows of a feedback file, linked to searches in ``db``, and a report so far.

    A bad line raises ``InputError`` naming the file and line. See
    ``QueryLog.import_feedback`` for the file format and how clicks are linked.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"feedback file {path} does not exist or is not a file")
    report = FeedbackReport()
    rows = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            report.lines += 1
            try:
                rows.append(click_row(db, raw, match_seconds))
            except ValueError as exc:
                raise InputError(f"{path.name} line {lineno}: {exc}") from None
    return report, rows


def clicked_documents(path: Path | str) -> list[str] | None:
    """The doc_id of every line of a feedback file, or None when a line is bad (the import then
    names it)."""
    ids = []
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                obj = loads(raw.decode("utf-8-sig"))
                if not isinstance(obj, dict) or not isinstance(obj.get("doc_id"), str):
                    return None
                ids.append(obj["doc_id"])
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return ids


def add_clicks(db: sqlite3.Connection, rows: list[ClickRow], report: FeedbackReport) -> None:
    """Insert click rows (inside the caller's transaction), counting them in ``report``."""
    for row in rows:
        cur = db.execute(
            "INSERT OR IGNORE INTO clicks(search_id, norm_query, doc_id, position, time, "
            "key) VALUES (?,?,?,?,?,?)",
            row,
        )
        if cur.rowcount == 0:
            report.duplicates += 1
            continue
        report.imported += 1
        report.unmatched += row[0] is None


def click_row(db: sqlite3.Connection, raw: bytes, match_seconds: float) -> ClickRow:
    """One feedback line as a click row; ``ValueError`` says what is wrong with it."""
    try:
        obj = loads(raw.decode("utf-8-sig").rstrip("\r\n"))  # columns of the line itself
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    doc_id = obj.get("doc_id")
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError(f"doc_id must be a non-empty string, got {_short(doc_id)}")
    when = parse_epoch_seconds(obj.get("time"))
    position = obj.get("position")
    if position is not None and (
        isinstance(position, bool)
        or not isinstance(position, int)
        or not 1 <= position <= MAX_POSITION
    ):
        raise ValueError(
            f"position must be an integer from 1 to {MAX_POSITION}, got {_short(position)}"
        )
    impression, query = obj.get("impression_id"), obj.get("query")
    if impression is None and not (isinstance(query, str) and query.strip()):
        raise ValueError("a click needs an impression_id or a non-empty query")
    for name, text in (("doc_id", doc_id), ("query", query)):
        if isinstance(text, str) and not is_valid_text(text):
            raise ValueError(f"{name} is not valid Unicode (it holds a lone surrogate escape)")
    if impression is not None:
        search_id, norm, shown, first = _by_impression(db, impression, doc_id)
    else:
        norm = normalise_query(query)
        search_id, shown, first = _by_query(db, norm, doc_id, when, match_seconds)
    if search_id is not None:
        actual = first + shown.index(doc_id)
        if position is not None and position != actual:
            raise ValueError(
                f"position {position} disagrees with the logged search, which showed "
                f"{doc_id!r} at position {actual}"
            )
        position = actual
    key = f"{search_id if search_id is not None else 'q:' + norm}|{doc_id}|{when:.3f}"
    if impression is None:
        # The same click imported before, whether or not it then matched a search (a search
        # logged since can match it now): its key, so the insert is counted a duplicate.
        known = db.execute(
            "SELECT key FROM clicks WHERE time=? AND norm_query=? AND doc_id=? LIMIT 1",
            (when, norm, doc_id),
        ).fetchone()
        key = known[0] if known else key
    return (search_id, norm, doc_id, position, when, key)


def _by_impression(db: sqlite3.Connection, impression, doc_id: str) -> tuple[int, str, list, int]:
    """(search id, normalised query, shown doc ids, rank of the first) of the search a click
    names."""
    try:
        search_id = int(impression) if isinstance(impression, int | str) else -1
    except ValueError:  # not digits, or more of them than Python converts
        search_id = -1
    if isinstance(impression, bool) or not 0 <= search_id <= _MAX_ROWID:
        raise ValueError(f"impression_id {_short(impression)} is not a search id")
    found = db.execute(
        "SELECT s.norm_query, r.doc_ids, COALESCE(p.first_rank, 1) FROM searches s "
        "JOIN results r ON r.search_id = s.id LEFT JOIN pages p ON p.search_id = s.id "
        "WHERE s.id=?",
        (search_id,),
    ).fetchone()
    if found is None:
        raise ValueError(f"impression_id {_short(impression)} is not in the query log")
    norm, shown = found[0], json.loads(found[1])
    if doc_id not in shown:
        raise ValueError(
            f"doc_id {_short(doc_id)} was not shown in impression {_short(impression)}"
        )
    return search_id, norm, shown, int(found[2])


def _by_query(
    db: sqlite3.Connection, norm: str, doc_id: str, when: float, match_seconds: float
) -> tuple[int | None, list, int]:
    """The latest search of ``norm`` within ``match_seconds`` before ``when`` that showed
    ``doc_id``, as (search id, shown doc ids, rank of the first); (None, [], 1) when there is
    none."""
    for sid, ids, first in db.execute(
        "SELECT s.id, r.doc_ids, COALESCE(p.first_rank, 1) FROM searches s "
        "JOIN results r ON r.search_id = s.id LEFT JOIN pages p ON p.search_id = s.id "
        "WHERE s.norm_query=? AND s.time<=? AND s.time>=? ORDER BY s.time DESC LIMIT 20",
        (norm, when + 1.0, when - match_seconds),
    ):
        ids = json.loads(ids)
        if doc_id in ids:
            return int(sid), ids, int(first)
    return None, [], 1


def _short(value) -> str:
    """``repr`` for a message, cut to 60 characters (a value may be megabytes or 5,000 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    text = (
        repr(value) if isinstance(value, str | int | float | type(None)) else type(value).__name__
    )
    return text if len(text) <= 60 else text[:57] + "..."
