"""Reading a click log: JSONL impressions (a result list shown to a user and what was clicked).

The format is described in ``data/README.md``; ``QueryLog.impressions`` writes the same records
from the query log.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from pathlib import Path

from brainrank.index.errors import InputError
from brainrank.index.jsontext import is_valid_text, loads
from brainrank.ranker.feedback.fields import parse_time

_REQUIRED = ("impression_id", "time", "query", "shown", "clicks")


@dataclass(frozen=True)
class Impression:
    """One result list shown to a user: ``shown`` in display order, the first at position
    ``first_position`` (1, unless the list was a later page of results)."""

    impression_id: str
    time: datetime
    query: str
    query_id: str | None
    shown: tuple[str, ...]
    clicks: frozenset[str]
    first_position: int = 1


class ClickLog(list[Impression]):
    """The impressions read from a log, in file order; ``skipped`` has one message per bad line."""

    def __init__(self, impressions: Iterable[Impression] = (), skipped: Iterable[str] = ()):
        super().__init__(impressions)
        self.skipped: list[str] = list(skipped)


# The position of a later page's first result: at most this (a larger one is a mistake).
MAX_FIRST = 100_000


class _BadLine(Exception):
    pass


def read_click_log(path: Path | str, *, skip_bad: bool = False) -> ClickLog:
    """Read a JSONL click log (one impression per line; see ``data/README.md``).

    The first bad line raises ``InputError`` naming file, line and problem; with ``skip_bad``
    bad lines are left out and their messages collected in the result's ``skipped``. Blank lines
    are ignored. Times must carry a time zone and are converted to UTC.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"click log {path} does not exist or is not a file")
    log = ClickLog()
    first_line: dict[str, int] = {}
    try:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    imp = _parse_impression(raw)
                    seen = first_line.get(imp.impression_id)
                    if seen is not None:
                        raise _BadLine(
                            f"duplicate impression id {imp.impression_id!r} (first on line {seen})"
                        )
                except _BadLine as err:
                    message = f"{path.name} line {lineno}: {err}"
                    if not skip_bad:
                        raise InputError(message) from None
                    log.skipped.append(message)
                    continue
                first_line[imp.impression_id] = lineno
                log.append(imp)
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None
    return log


def _parse_impression(raw: bytes) -> Impression:
    try:
        obj = loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise _BadLine("not valid UTF-8") from None
    except ValueError as exc:
        raise _BadLine(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _BadLine(f"expected a JSON object, got {type(obj).__name__}")
    missing = [f for f in _REQUIRED if obj.get(f) is None]
    if missing:
        raise _BadLine(f"missing field(s) {', '.join(missing)}; required: {', '.join(_REQUIRED)}")
    iid, query, query_id = obj["impression_id"], obj["query"], obj.get("query_id")
    if not isinstance(iid, str) or not iid:
        raise _BadLine(f"impression_id must be a non-empty string, got {iid!r}")
    if not isinstance(query, str) or not query.strip():
        raise _BadLine(f"query must be a non-empty string, got {query!r}")
    if query_id is not None and not isinstance(query_id, str):
        raise _BadLine(f"query_id must be a string or null, got {query_id!r}")
    shown, clicks = obj["shown"], obj["clicks"]
    for name, ids in (("shown", shown), ("clicks", clicks)):
        if not isinstance(ids, list) or not all(map(isinstance, ids, repeat(str))):
            raise _BadLine(f"{name} must be a list of document id strings, got {ids!r}")
    if not shown:
        raise _BadLine("shown is empty: an impression must show at least one document")
    texts = [("impression_id", iid), ("query", query), ("query_id", query_id or "")]
    texts += [("shown", d) for d in shown]
    bad = next((name for name, text in texts if not is_valid_text(text)), None)
    if bad is not None:
        raise _BadLine(f"{bad} is not valid Unicode (it holds a lone surrogate escape)")
    if len(set(shown)) != len(shown):
        dup = next(d for i, d in enumerate(shown) if d in shown[:i])
        where = [i + 1 for i, d in enumerate(shown) if d == dup]
        raise _BadLine(f"document {dup!r} is shown twice (positions {where[0]} and {where[1]})")
    stray = [d for d in clicks if d not in shown]
    if stray:
        raise _BadLine(f"clicked id {stray[0]!r} is not in shown")
    try:
        when = parse_time(obj["time"])
    except ValueError as exc:
        raise _BadLine(str(exc)) from None
    first = obj.get("first_position", 1)
    if isinstance(first, bool) or not isinstance(first, int) or not 1 <= first <= MAX_FIRST:
        raise _BadLine(f"first_position must be an integer from 1 to {MAX_FIRST}, got {first!r}")
    return Impression(
        impression_id=iid,
        time=when,
        query=query,
        query_id=query_id,
        shown=tuple(shown),
        clicks=frozenset(clicks),
        first_position=first,
    )


@dataclass
class ClickCheck:
    """How much of a click log names documents the collection does not hold."""

    impressions: int = 0
    usable: int = 0  # impressions showing at least one known document
    shown: int = 0
    unknown_shown: int = 0  # shown entries naming an unknown document
    clicks: int = 0
    unknown_clicks: int = 0  # clicks on an unknown document

    def warnings(self) -> list[str]:
        if not self.unknown_shown:
            return []
        return [
            f"{self.unknown_shown} of {self.shown} shown results and {self.unknown_clicks} of "
            f"{self.clicks} clicks name documents that are not in the collection; "
            f"{self.impressions - self.usable} of {self.impressions} impressions show none "
            "that is"
        ]

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


def check_clicks(log: Iterable[Impression], known_docs: Collection[str], source: str) -> ClickCheck:
    """Count what in ``log`` names unknown documents; InputError when no impression is usable."""
    check = ClickCheck()
    for imp in log:
        unknown = [d for d in imp.shown if d not in known_docs]
        check.impressions += 1
        check.usable += len(unknown) < len(imp.shown)
        check.shown += len(imp.shown)
        check.unknown_shown += len(unknown)
        check.clicks += len(imp.clicks)
        check.unknown_clicks += sum(d not in known_docs for d in imp.clicks)
    if check.impressions and not check.usable:
        raise InputError(
            f"no usable clicks in {source}: none of its {check.impressions} impressions shows a "
            "document of the collection (was it logged over another one?)"
        )
    return check
