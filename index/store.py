"""SQLite document store: the source of truth every index is built from.

Nothing else holds the documents, so a store that exists but cannot be read is an error, never
an empty collection: the file is created only where none exists (complete, then linked into
place), and opening one checks its header, size and schema. Each store has a random id; index
generations record it and the store version they were built from, so a store that was replaced
or rolled back is caught (``check_built_from``) before a search answers from it or an ingest
shrinks the collection to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import uuid
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
_COLUMNS = {
    "documents": {"doc_id", "title", "text", "timestamp", "fields", "content_hash", "updated_at"},
    "meta": {"key", "value"},
}
_MAGIC = b"SQLite format 3\x00"


def repair_hint(path: Path) -> str:
    """What to do about a damaged store; brainrank cannot rebuild documents from its indexes."""
    return (
        f"restore {path.name} from a backup, or move it aside and ingest the source documents "
        "again (`brainrank check` lists what else is damaged)"
    )


def content_hash(doc: Document) -> str:
    """Hash of the text an encoder sees; unchanged text means a reusable embedding."""
    return _text_hash(doc.title, doc.text)


def _text_hash(title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\x1f{text}".encode()).hexdigest()[:32]


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """SQLite's damage errors, and text that no longer decodes; not locks or I/O errors."""
    return not isinstance(exc, sqlite3.OperationalError) or "decode" in str(exc)


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    added: int
    updated: int
    unchanged: int
    written: tuple[str, ...] = ()  # ids added or updated, each once, in order of arrival


class DocumentStore:
    """Documents keyed by id, with a version number bumped by every committed change.

    Writes happen inside :meth:`transaction`; SQLite's journal guarantees that a process killed
    halfway leaves the previous committed state.
    """

    def __init__(self, path: Path | str, *, create: bool = True):
        """Open the store at ``path``, creating an empty one there only when no file exists."""
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise BrainrankError(f"document store {self.path} does not exist")
            _create(self.path)
        check_header(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None

    def _damaged(self, why: object) -> BrainrankError:
        return BrainrankError(
            f"document store {self.path} is unreadable ({why}); {repair_hint(self.path)}"
        )

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Report damage found while reading as one line naming the file, not a traceback."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                raise self._damaged(exc) from None
            raise  # a lock or an I/O error: not damage

    def _check_schema(self) -> None:
        tables = {
            name: {row[1] for row in self._db.execute(f"PRAGMA table_info({name})")}
            for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:  # tables not yet created (a store from before stores were linked in)
            self._db.executescript(_SCHEMA)
            return
        for table, columns in _COLUMNS.items():
            if not columns <= tables.get(table, set()):
                missing = sorted(columns - tables.get(table, set()))
                raise self._damaged(
                    f"not a brainrank document store: table {table} lacks {', '.join(missing)}"
                )

    def integrity_check(self) -> str | None:
        """SQLite's full ``integrity_check`` (reads every page): None when sound, else why."""
        try:
            rows = [r[0] for r in self._db.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as exc:
            return str(exc)
        return None if rows == ["ok"] else "; ".join(rows[:5])

    def mismatched_documents(self) -> list[str]:
        """Ids of documents whose title and text no longer match their content hash: damage
        SQLite's own check cannot see. Reads the whole store (``brainrank check``)."""
        with self._reading():
            rows = self._db.execute("SELECT doc_id, title, text, content_hash FROM documents")
            return [doc_id for doc_id, title, text, h in rows if _text_hash(title, text) != h]

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

    def _meta(self, key: str) -> str | None:
        with self._reading():
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    @property
    def version(self) -> int:
        value = self._meta("version")
        try:
            return int(value) if value is not None else 0
        except ValueError:
            raise self._damaged(f"its version is {value!r}") from None

    @property
    def store_id(self) -> str | None:
        """This store's random id (None for a store made before ids, until its next change)."""
        return self._meta("store_id")

    def bump_version(self) -> int:
        """Increment the version (call inside a transaction) and return the new one."""
        new = self.version + 1
        self._set_meta("version", str(new))
        if self.store_id is None:
            self._set_meta("store_id", uuid.uuid4().hex)
        return new

    def is_empty(self) -> bool:
        with self._reading():
            return self._db.execute("SELECT 1 FROM documents LIMIT 1").fetchone() is None

    def check_built_from(self, manifest: dict, where: str, *, committed: bool = True) -> None:
        """Raise unless an index generation's ``manifest`` could have been built from this store.

        A generation names the store (id) and version it was built from. A generation that is
        serving (``committed``) never comes from a later version than the store's; any other
        may be one version ahead (an ingest killed between building and committing). A store
        that fails this was replaced or rolled back: serving from it would answer with missing
        documents and the next ingest would drop them, so nothing may use it.
        """
        built_id, built = manifest.get("store_id"), manifest.get("store_version")
        ours, version = self.store_id, self.version
        why = None
        if built_id is not None and built_id != ours:
            why = "it is not the store they were built from"
        elif isinstance(built, int) and built > version + (0 if committed else 1):
            why = f"it is at version {version}, they were built from version {built}"
        elif committed and manifest.get("documents") and self.is_empty():
            why = f"it holds no documents, they index {manifest['documents']}"
        if why:
            raise BrainrankError(
                f"document store {self.path} does not match the index {where}: {why}, so the "
                f"store was replaced, rolled back or damaged; {repair_hint(self.path)}. To start "
                "a new collection on purpose, move the indexes folder aside too"
            )

    def count(self) -> int:
        with self._reading():
            return self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def upsert(self, docs: Iterable[Document]) -> UpsertCounts:
        """Insert new documents and replace changed ones (call inside a transaction)."""
        with self._reading():
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
            # One JSON object of attributes: numbers are fields, strings tags (_to_document).
            fields = json.dumps({**doc.fields, **doc.tags}, sort_keys=True)
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
        with self._reading():
            self._db.executemany(
                "INSERT INTO documents"
                "(doc_id, title, text, timestamp, fields, content_hash, updated_at) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT(doc_id) DO UPDATE SET title=excluded.title, "
                "text=excluded.text, timestamp=excluded.timestamp, fields=excluded.fields, "
                "content_hash=excluded.content_hash, updated_at=excluded.updated_at",
                rows,
            )
        written = tuple(dict.fromkeys(row[0] for row in rows))
        return UpsertCounts(added, updated, unchanged, written)

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Delete documents (inside a transaction); an unknown id is an error, deleting nothing."""
        ids = list(dict.fromkeys(doc_ids))
        missing = [i for i in ids if not self._exists(i)]
        if missing:
            shown = ", ".join(repr(i) for i in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise InputError(f"cannot delete unknown document id(s): {shown}{more}")
        with self._reading():
            self._db.executemany("DELETE FROM documents WHERE doc_id=?", [(i,) for i in ids])
        return len(ids)

    def _exists(self, doc_id: str) -> bool:
        with self._reading():
            row = self._db.execute("SELECT 1 FROM documents WHERE doc_id=?", (doc_id,)).fetchone()
        return row is not None

    def hashes(self) -> dict[str, str]:
        """Map of every doc id to its content hash, in insertion order."""
        with self._reading():
            return dict(
                self._db.execute("SELECT doc_id, content_hash FROM documents ORDER BY rowid")
            )

    def get(self, doc_ids: Sequence[str]) -> dict[str, Document]:
        """Documents by id; ids not in the store are absent from the result."""
        out: dict[str, Document] = {}
        ids = list(doc_ids)
        with self._reading():
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
        with self._reading():
            yield from (
                _to_document(row)
                for row in self._db.execute(
                    "SELECT doc_id, title, text, timestamp, fields FROM documents ORDER BY rowid"
                )
            )

    def newest_timestamp(self) -> datetime | None:
        with self._reading():
            row = self._db.execute("SELECT MAX(timestamp) FROM documents").fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None


def _to_document(row: tuple) -> Document:
    doc_id, title, text, ts, attributes = row
    attributes = json.loads(attributes)
    return Document(
        doc_id=doc_id,
        title=title,
        text=text,
        timestamp=datetime.fromisoformat(ts) if ts else None,
        fields={k: v for k, v in attributes.items() if not isinstance(v, str)},
        tags={k: v for k, v in attributes.items() if isinstance(v, str)},
    )


def check_header(path: Path) -> None:
    """Cheap check that ``path`` is a whole SQLite file: magic bytes, and no fewer pages than
    its header counts (skipped while a write-ahead log holds pages not yet copied in)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
        size = path.stat().st_size
    except OSError as exc:
        raise BrainrankError(f"document store {path} is unreadable ({exc})") from None
    if size == 0 or not head.startswith(_MAGIC) or len(head) < 100:
        why = "an empty file" if size == 0 else "not an SQLite database"
        raise BrainrankError(f"document store {path} is unreadable ({why}); {repair_hint(path)}")
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    counted = pages and head[24:28] == head[92:96]  # the count is valid only then
    wal = Path(f"{path}-wal")
    if counted and size < pages * page and not (wal.exists() and wal.stat().st_size):
        raise BrainrankError(
            f"document store {path} is unreadable (truncated: {size} bytes, its header counts "
            f"{pages} pages of {page}); {repair_hint(path)}"
        )


def _create(path: Path) -> None:
    """Create an empty store at ``path``, complete before it appears (a hard link, so a store
    another process created meanwhile is never replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            db.execute("INSERT INTO meta(key, value) VALUES('store_id', ?)", (uuid.uuid4().hex,))
        finally:
            db.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # created by another process meanwhile: use that one
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for leftover in (tmp, f"{tmp}-wal", f"{tmp}-shm"):
            Path(leftover).unlink(missing_ok=True)
