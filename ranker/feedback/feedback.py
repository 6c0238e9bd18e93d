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
from brainrank.ranker.feedback.fields import normalise_query, parse_epoch_seconds

# A click row as the ``clicks`` table takes it: (search_id, norm_query, doc_id, position, time,
# key); ``key`` makes importing the same click twice a no-op.
ClickRow = tuple[int | None, str, str, int | None, float, str]


@dataclass
class FeedbackReport:
    lines: int = 0
    imported: int = 0
    duplicates: int = 0
    unmatched: int = 0  # clicks with no logged search to attach to (kept, not used for outcomes)
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
        obj = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    doc_id = obj.get("doc_id")
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError(f"doc_id must be a non-empty string, got {doc_id!r}")
    when = parse_epoch_seconds(obj.get("time"))
    position = obj.get("position")
    if position is not None and (
        isinstance(position, bool) or not isinstance(position, int) or position < 1
    ):
        raise ValueError(f"position must be an integer >= 1, got {position!r}")
    impression, query = obj.get("impression_id"), obj.get("query")
    if impression is None and not (isinstance(query, str) and query.strip()):
        raise ValueError("a click needs an impression_id or a non-empty query")
    if impression is not None:
        search_id, norm, shown = _by_impression(db, impression, doc_id)
    else:
        norm = normalise_query(query)
        search_id, shown = _by_query(db, norm, doc_id, when, match_seconds)
    if search_id is not None:
        actual = shown.index(doc_id) + 1
        if position is not None and position != actual:
            raise ValueError(
                f"position {position} disagrees with the logged search, which showed "
                f"{doc_id!r} at position {actual}"
            )
        position = actual
    key = f"{search_id if search_id is not None else 'q:' + norm}|{doc_id}|{when:.3f}"
    return (search_id, norm, doc_id, position, when, key)


def _by_impression(db: sqlite3.Connection, impression, doc_id: str) -> tuple[int, str, list]:
    """(search id, normalised query, shown doc ids) of the search a click names."""
    try:
        search_id = int(str(impression))
    except ValueError:
        raise ValueError(f"impression_id {impression!r} is not a search id") from None
    found = db.execute(
        "SELECT s.norm_query, r.doc_ids FROM searches s JOIN results r "
        "ON r.search_id = s.id WHERE s.id=?",
        (search_id,),
    ).fetchone()
    if found is None:
        raise ValueError(f"impression_id {impression!r} is not in the query log")
    norm, shown = found[0], json.loads(found[1])
    if doc_id not in shown:
        raise ValueError(f"doc_id {doc_id!r} was not shown in impression {impression!r}")
    return search_id, norm, shown


def _by_query(
    db: sqlite3.Connection, norm: str, doc_id: str, when: float, match_seconds: float
) -> tuple[int | None, list]:
    """The latest search of ``norm`` within ``match_seconds`` before ``when`` that showed
    ``doc_id``, as (search id, shown doc ids); (None, []) when there is none."""
    for sid, ids in db.execute(
        "SELECT s.id, r.doc_ids FROM searches s JOIN results r ON r.search_id = s.id "
        "WHERE s.norm_query=? AND s.time<=? AND s.time>=? ORDER BY s.time DESC LIMIT 20",
        (norm, when + 1.0, when - match_seconds),
    ):
        ids = json.loads(ids)
        if doc_id in ids:
            return int(sid), ids
    return None, []
