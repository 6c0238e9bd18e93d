"""SQLite document store: the source of truth every index is built from."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from brainrank.index.errors import BrainrankError, InputError
from brainrank.index.records import Document

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    timestamp TEXT,
    fields TEXT NOT NULL DEFAULT '{}',
    content_hash TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def content_hash(doc: Document) -> str:
    """Hash of the text an encoder sees; unchanged text means a reusable embedding."""
    return hashlib.sha256(f"{doc.title}\x1f{doc.text}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    added: int
    updated: int
    unchanged: int


class DocumentStore:
    """Documents keyed by id, with a version number bumped by every committed change.

    Writes happen inside :meth:`transaction`; SQLite's journal guarantees that a process killed
    halfway leaves the previous committed state.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise BrainrankError(f"document store {self.path} is unreadable: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the write lock; commit on success, roll back on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @property
    def version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        return int(row[0]) if row else 0

    def bump_version(self) -> int:
        """Increment the version (call inside a transaction) and return the new one."""
        new = self.version + 1
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES('version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (str(new),),
        )
        return new

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def upsert(self, docs: Iterable[Document]) -> UpsertCounts:
        """Insert new documents and replace changed ones (call inside a transaction)."""
        known = dict(
            self._db.execute(
                "SELECT doc_id, content_hash || '|' || fields || '|' || "
                "COALESCE(timestamp, '') FROM documents"
            )
        )
        now = datetime.now(UTC).isoformat()
        added = updated = unchanged = 0
        rows = []
        for doc in docs:
            chash = content_hash(doc)
            fields = json.dumps(doc.fields, sort_keys=True)
            ts = doc.timestamp.isoformat() if doc.timestamp else None
            previous = known.get(doc.doc_id)
            if previous == f"{chash}|{fields}|{ts or ''}":
                unchanged += 1
                continue
            if previous is None:
                added += 1
            else:
                updated += 1
            rows.append((doc.doc_id, doc.title, doc.text, ts, fields, chash, now))
        self._db.executemany(
            "INSERT INTO documents"
            "(doc_id, title, text, timestamp, fields, content_hash, updated_at) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT(doc_id) DO UPDATE SET title=excluded.title, "
            "text=excluded.text, timestamp=excluded.timestamp, fields=excluded.fields, "
            "content_hash=excluded.content_hash, updated_at=excluded.updated_at",
            rows,
        )
        return UpsertCounts(added, updated, unchanged)

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Delete documents (inside a transaction); an unknown id is an error, deleting nothing."""
        ids = list(dict.fromkeys(doc_ids))
        missing = [i for i in ids if not self._exists(i)]
        if missing:
            shown = ", ".join(repr(i) for i in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise InputError(f"cannot delete unknown document id(s): {shown}{more}")
        self._db.executemany("DELETE FROM documents WHERE doc_id=?", [(i,) for i in ids])
        return len(ids)

    def _exists(self, doc_id: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM documents WHERE doc_id=?", (doc_id,)).fetchone()
            is not None
        )

    def hashes(self) -> dict[str, str]:
        """Map of every doc id to its content hash, in insertion order."""
        return dict(self._db.execute("SELECT doc_id, content_hash FROM documents ORDER BY rowid"))

    def get(self, doc_ids: Sequence[str]) -> dict[str, Document]:
        """Documents by id; ids not in the store are absent from the result."""
        out: dict[str, Document] = {}
        ids = list(doc_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(
                f"SELECT doc_id, title, text, timestamp, fields FROM documents "
                f"WHERE doc_id IN ({marks})",
                chunk,
            ):
                out[row[0]] = _to_document(row)
        return out

    def iter_documents(self, doc_ids: Sequence[str] | None = None) -> Iterator[Document]:
        """All documents in insertion order, or the given ids in the given order."""
        if doc_ids is not None:
            found = self.get(doc_ids)
            yield from (found[i] for i in doc_ids if i in found)
            return
        yield from (
            _to_document(row)
            for row in self._db.execute(
                "SELECT doc_id, title, text, timestamp, fields FROM documents ORDER BY rowid"
            )
        )

    def newest_timestamp(self) -> datetime | None:
        row = self._db.execute("SELECT MAX(timestamp) FROM documents").fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None


def _to_document(row: tuple) -> Document:
    doc_id, title, text, ts, fields = row
    return Document(
        doc_id=doc_id,
        title=title,
        text=text,
        timestamp=datetime.fromisoformat(ts) if ts else None,
        fields=json.loads(fields),
    )
