"""The workspace's judgment store: named query sets and their graded judgments, in SQLite.

``WORKSPACE/judgments.sqlite`` holds three tables:

    sets       name, created (epoch seconds, UTC)
    queries    per set: query id, text, when the text was last set
    judgments  per set, query and document: an integer grade, who gave it and when

A set is a namespace: the same query id may appear in two sets. Writing is an upsert: a
judgment that is already there with the same grade is left alone (so importing a file twice
changes nothing), a different grade replaces it and records the new who and when. Every write is
one ``BEGIN IMMEDIATE`` transaction in WAL mode (as the query log, ``feedback.store``), so an
import lands whole or not at all, and a UI writing grades while a training reads never blocks it.

Reading all sets at once (``judgments(None)``) merges them: for a (query, document) judged in
several sets the most recent judgment wins (ties: the set whose name sorts last), and a query id
whose text differs between sets takes the most recently set text.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time as _time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from brainrank.index.errors import BrainrankError, InputError
from brainrank.index.validation import check_name
from brainrank.ranker.feedback.store import BUSY_TIMEOUT_MS, Transaction, _retry_locked

JUDGMENTS_FILE = "judgments.sqlite"
DEFAULT_SET = "default"
JUDGMENT_TABLES = ("sets", "queries", "judgments")
NONE_YET = (
    "import some with `brainrank judgments import QRELS --queries FILE` "
    "or train once with `brainrank train --queries FILE --qrels QRELS`"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sets (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS queries (
    set_name TEXT NOT NULL REFERENCES sets(name),
    query_id TEXT NOT NULL,
    text TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (set_name, query_id)
);
CREATE TABLE IF NOT EXISTS judgments (
    set_name TEXT NOT NULL REFERENCES sets(name),
    query_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    grade INTEGER NOT NULL,
    who TEXT,
    time REAL NOT NULL,
    PRIMARY KEY (set_name, query_id, doc_id)
);
"""


def check_set_name(name: str) -> str:
    """``name`` if it is a usable set name, else ``InputError`` saying what is allowed."""
    return check_name(name, "judgment set name", 64)


@dataclass(frozen=True)
class ImportReport:
    set_name: str
    queries: int  # query texts added or changed
    added: int  # judgments new to the set
    changed: int  # judgments whose grade changed
    unchanged: int  # judgments already there with the same grade
    without_text: int  # judged queries that have no text in the queries given

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass(frozen=True)
class SetSummary:
    name: str
    queries: int  # queries of the set that have judgments
    judgments: int
    created: float
    updated: float | None  # newest judgment

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass(frozen=True)
class Judgments:
    """What a reader gets: query texts, graded judgments, and the sets they came from."""

    sets: tuple[str, ...]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @property
    def judgment_count(self) -> int:
        return sum(len(g) for g in self.qrels.values())

    def source(self) -> dict:
        """What a model version records about the judgments it learned from."""
        judged = [q for q in self.qrels if q in self.queries]
        return {
            "sets": list(self.sets),
            "queries": len(judged),
            "judgments": sum(len(self.qrels[q]) for q in judged),
        }

    def digest(self) -> str:
        """A short hash of the content (changes when any text or grade does)."""
        h = hashlib.sha256()
        for qid in sorted(self.queries):
            h.update(f"q\t{qid}\t{self.queries[qid]}\n".encode())
        for qid in sorted(self.qrels):
            for doc, grade in sorted(self.qrels[qid].items()):
                h.update(f"j\t{qid}\t{doc}\t{grade}\n".encode())
        return h.hexdigest()[:16]


class JudgmentStore:
    """Named query sets and their graded judgments in one SQLite file of the workspace."""

    def __init__(self, path: Path | str, *, wait: float = BUSY_TIMEOUT_MS / 1000):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=wait
            )
            db.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
            _retry_locked(lambda: db.execute("PRAGMA journal_mode=WAL"))
            _retry_locked(lambda: db.executescript(SCHEMA))
        except sqlite3.OperationalError as exc:
            raise BrainrankError(f"judgment store {self.path} cannot be opened: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None
        self._db = db

    @staticmethod
    def file(workspace_root: Path | str) -> Path:
        return Path(workspace_root).expanduser() / JUDGMENTS_FILE

    @classmethod
    def open(cls, workspace_root: Path | str) -> JudgmentStore:
        """The store of the workspace at ``workspace_root`` (created on first use)."""
        return cls(cls.file(workspace_root))

    @classmethod
    def exists(cls, workspace_root: Path | str) -> bool:
        return cls.file(workspace_root).exists()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JudgmentStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _damaged(self, exc: object) -> BrainrankError:
        return BrainrankError(
            f"judgment store {self.path} is damaged ({exc}); move it aside and import the "
            "judgments again (`brainrank judgments import`)"
        )

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._db
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise BrainrankError(f"judgment store {self.path}: {exc}") from None
            raise self._damaged(exc) from None

    # -- writing --------------------------------------------------------------------------
    def add(
        self,
        set_name: str,
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        *,
        who: str | None = None,
        time: float | None = None,
    ) -> ImportReport:
        """Upsert judgments (and the texts of the queries they judge) into ``set_name``.

        Only the queries that ``qrels`` judges are stored: a queries file often lists others
        (test queries) that do not belong to the set. Judgments of queries without a text are
        kept; training ignores them until a text arrives.
        """
        check_set_name(set_name)
        now = _time.time() if time is None else time
        texts = [(q, queries[q]) for q in qrels if q in queries]
        rows = [(q, d, int(g)) for q, grades in qrels.items() for d, g in grades.items()]
        added = changed = new_texts = 0
        with self._reading() as db, Transaction(db, self._lock):
            db.execute("INSERT OR IGNORE INTO sets(name, created) VALUES (?, ?)", (set_name, now))
            for qid, text in texts:
                cur = db.execute(
                    "INSERT INTO queries(set_name, query_id, text, time) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(set_name, query_id) DO UPDATE SET text = excluded.text, "
                    "time = excluded.time WHERE text != excluded.text",
                    (set_name, qid, text, now),
                )
                new_texts += cur.rowcount
            for qid, doc, grade in rows:
                old = db.execute(
                    "SELECT grade FROM judgments WHERE set_name = ? AND query_id = ? "
                    "AND doc_id = ?",
                    (set_name, qid, doc),
                ).fetchone()
                if old is not None and old[0] == grade:
                    continue
                db.execute(
                    "INSERT OR REPLACE INTO judgments(set_name, query_id, doc_id, grade, who, "
                    "time) VALUES (?, ?, ?, ?, ?, ?)",
                    (set_name, qid, doc, grade, who, now),
                )
                if old is None:
                    added += 1
                else:
                    changed += 1
        return ImportReport(
            set_name,
            new_texts,
            added,
            changed,
            len(rows) - added - changed,
            sum(q not in queries for q in qrels),
        )

    # -- reading --------------------------------------------------------------------------
    def set_names(self) -> list[str]:
        with self._reading() as db:
            return [r[0] for r in db.execute("SELECT name FROM sets ORDER BY name")]

    def summaries(self) -> list[SetSummary]:
        """One line per set: judged queries, judgments, created and last updated."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT s.name, s.created, COUNT(DISTINCT j.query_id), COUNT(j.doc_id), "
                "MAX(j.time) FROM sets s LEFT JOIN judgments j ON j.set_name = s.name "
                "GROUP BY s.name ORDER BY s.name"
            ).fetchall()
        return [SetSummary(name, q, n, created, upd) for name, created, q, n, upd in rows]

    def judgments(self, set_name: str | None = None) -> Judgments:
        """The queries and judgments of one set, or of all sets merged (module docstring).

        An unknown set raises ``InputError`` naming the known ones.
        """
        names = self.set_names()
        if set_name is not None and set_name not in names:
            known = ", ".join(names) if names else f"none yet; {NONE_YET}"
            raise InputError(f"no judgment set {set_name!r} in {self.path} (sets: {known})")
        where, args = ("WHERE set_name = ?", (set_name,)) if set_name is not None else ("", ())
        order = "ORDER BY time, set_name"  # later rows win below
        with self._reading() as db:
            texts = db.execute(f"SELECT query_id, text FROM queries {where} {order}", args)
            queries = {qid: text for qid, text in texts}
            qrels: dict[str, dict[str, int]] = {}
            rows = db.execute(
                f"SELECT query_id, doc_id, grade FROM judgments {where} {order}", args
            )
            for qid, doc, grade in rows:
                qrels.setdefault(qid, {})[doc] = grade
        used = (set_name,) if set_name is not None else tuple(names)
        return Judgments(used, queries, qrels)


def workspace_judgments(workspace_root: Path | str, set_name: str | None = None) -> Judgments:
    """The judgments of a workspace (one set, or all merged); ``InputError`` when it has none."""
    if not JudgmentStore.exists(workspace_root):
        if set_name is not None:
            raise InputError(f"no judgment set {set_name!r}: the workspace has no judgments yet")
        raise InputError(f"the workspace {workspace_root} has no judgments yet; {NONE_YET}")
    with JudgmentStore.open(workspace_root) as store:
        found = store.judgments(set_name)
    if not found.qrels:
        where = f"set {set_name!r}" if set_name else f"the workspace {workspace_root}"
        raise InputError(f"{where} has no judgments yet; {NONE_YET}")
    return found
