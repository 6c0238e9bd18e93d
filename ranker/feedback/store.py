"""The query log's SQLite file: its schema, how a connection is opened, and write transactions.

``Workspace.logs_dir / "querylog.sqlite"`` holds these tables:

    searches         one row per search: time (epoch seconds, UTC), query and its normalised
                     form, mode, model version, in-domain flag, latency, source (cli, ui, eval, api,
                     service)
    results          per search (same id): the returned doc ids in rank order (position =
                     index + 1) and the feature rows of those hits as one float32 blob
                     [hits, features]; kept apart so that window scans stay small
    feature_schemas  the feature names of those blobs, one row per distinct list
    clicks           imported feedback, linked to the search it was made on when known
    query_vectors    query embeddings by normalised text and encoder, for query-drift monitors

Several processes append at once (CLI runs, the UI, a scheduler): the file is in WAL mode,
every write is one ``BEGIN IMMEDIATE`` transaction, and a writer waits up to
``BUSY_TIMEOUT_MS`` for the lock instead of failing, so concurrent writers lose nothing.
Readers never block writers.

A damaged file (``reporting_damage`` turns SQLite's "malformed" errors into one line naming it)
never blocks a search: the CLI and the service answer unlogged and say so once.
``brainrank check`` runs SQLite's integrity check on it (``check_file``) and, with
``--repair``, moves a damaged log aside (``set_aside``) so that a new one starts.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from brainrank.index.errors import BrainrankError, InputError

LOG_FILE = "querylog.sqlite"
SOURCES = ("cli", "ui", "eval", "api", "service")
# Searches that are traffic (evaluation runs are not): what the monitors and retraining read.
TRAFFIC = ("cli", "ui", "api", "service")
BUSY_TIMEOUT_MS = 60_000
SQL_CHUNK = 900  # stays below SQLite's default limit of bound parameters
REPAIR = "run `brainrank check --repair` to move it aside and start a new log"
TABLES = ("searches", "results", "feature_schemas", "clicks", "query_vectors")


class LogDamagedError(BrainrankError):
    """The query log file is damaged: it cannot be read or written until it is set aside."""


def damaged(path: Path, why: object) -> LogDamagedError:
    return LogDamagedError(f"query log {path} is damaged ({why}); {REPAIR}")


@contextmanager
def reporting_damage(path: Path) -> Iterator[None]:
    """Turn SQLite's damage errors into ``LogDamagedError``; locks and I/O errors pass as
    they are (they are not damage)."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and "decode" not in str(exc):
            raise
        raise damaged(path, exc) from None


SCHEMA = """
CREATE TABLE IF NOT EXISTS searches (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    query TEXT NOT NULL,
    norm_query TEXT NOT NULL,
    mode TEXT NOT NULL,
    model TEXT,
    in_domain INTEGER,
    latency_ms REAL NOT NULL,
    source TEXT NOT NULL
);
-- Covers the monitors' window aggregates, so they never touch the table itself.
CREATE INDEX IF NOT EXISTS searches_time ON searches(time, source, model, in_domain);
CREATE TABLE IF NOT EXISTS results (
    search_id INTEGER PRIMARY KEY,
    doc_ids TEXT NOT NULL,
    features BLOB,
    schema_id INTEGER
);
CREATE INDEX IF NOT EXISTS searches_query ON searches(norm_query, time);
-- Searches that showed a later page of results: the rank of their first hit (absent: 1).
CREATE TABLE IF NOT EXISTS pages (search_id INTEGER PRIMARY KEY, first_rank INTEGER NOT NULL);
-- Searches kept to the documents that met filters: their conditions (a JSON list of strings).
CREATE TABLE IF NOT EXISTS filtered (search_id INTEGER PRIMARY KEY, conditions TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feature_schemas (id INTEGER PRIMARY KEY, names TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS clicks (
    id INTEGER PRIMARY KEY,
    search_id INTEGER,
    norm_query TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    position INTEGER,
    time REAL NOT NULL,
    key TEXT UNIQUE NOT NULL
);
CREATE INDEX IF NOT EXISTS clicks_search ON clicks(search_id);
CREATE INDEX IF NOT EXISTS clicks_time ON clicks(time);
CREATE TABLE IF NOT EXISTS query_vectors (
    norm_query TEXT NOT NULL,
    encoder TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (norm_query, encoder)
);
"""


def check_source(source: str) -> str:
    """``source`` if it is one of ``SOURCES``, else ``InputError`` naming the allowed ones."""
    if source not in SOURCES:
        raise InputError(f"unknown query-log source {source!r}; choose one of {SOURCES}")
    return source


def connect(path: Path, *, wait: float = BUSY_TIMEOUT_MS / 1000) -> sqlite3.Connection:
    """Open (creating file and tables on first use) the log at ``path`` in WAL mode.

    The connection is in autocommit mode (writes go through ``Transaction``) and may be
    shared across threads under one lock. An unreadable file raises ``BrainrankError``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=wait)
        db.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
        _retry_locked(lambda: db.execute("PRAGMA journal_mode=WAL"))
        # A log may lose its last rows on power loss, never on a process crash.
        db.execute("PRAGMA synchronous=NORMAL")
        _retry_locked(lambda: db.executescript(SCHEMA))
    except sqlite3.OperationalError as exc:
        raise BrainrankError(f"query log {path} cannot be opened: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise damaged(path, exc) from None
    return db


def check_file(path: Path, tables=TABLES, what: str = "a query log") -> str | None:
    """SQLite's full integrity check of the file at ``path`` (read-only) and that it holds
    ``tables`` (the query log's by default): None when sound, else what is wrong."""
    try:
        db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
            names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if problems != ["ok"]:
        return "; ".join(problems[:3])
    missing = [t for t in tables if t not in names]
    return f"not {what}: no table {', '.join(missing)}" if missing else None


def set_aside(path: Path) -> Path:
    """Move a damaged log (with its -wal and -shm files) to ``NAME.corrupt-<UTC time>`` and
    return that name; the next writer starts a new log at ``path``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{target}{suffix}"))
    return target


class Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the thread lock; rolls back on error."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self):
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, exc_type, exc, tb):
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()


def _retry_locked(step, attempts: int = 50):
    """Run a schema step that can meet another process creating the same file."""
    for i in range(attempts):
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or i == attempts - 1:
                raise
            time.sleep(0.05 * (i + 1))
