"""The query log: every search served, and the clicks it drew, in one SQLite file per workspace.

``Workspace.logs_dir / "querylog.sqlite"`` holds four tables:

    searches         one row per search: time (epoch seconds, UTC), query and its normalised
                     form, mode, model version, in-domain flag, latency, source (cli, ui, eval, api)
    results          per search (same id): the returned doc ids in rank order (position =
                     index + 1) and the feature rows of those hits as one float32 blob
                     [hits, features]; kept apart so that window scans stay small
    clicks           imported feedback, linked to the search it was made on when known
    query_vectors    query embeddings by normalised text and encoder, for query-drift monitors

Several processes append at once (CLI runs, the UI, a scheduler): the file is in WAL mode,
every search is one ``BEGIN IMMEDIATE`` transaction, and a writer waits up to ``busy_timeout``
for the lock instead of failing, so concurrent writers lose nothing. Readers never block
writers. The monitors read windows through SQL aggregates and random samples of row ids, so
their cost does not grow with the size of the log.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time as _time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError, InputError
from brainrank.ranker.feedback.fields import normalise_query, parse_epoch_seconds

log = logging.getLogger(__name__)

LOG_FILE = "querylog.sqlite"
SOURCES = ("cli", "ui", "eval", "api")
# Searches that are traffic (evaluation runs are not): what the monitors and retraining read.
TRAFFIC = ("cli", "ui", "api")
BUSY_TIMEOUT_MS = 60_000
_SQL_CHUNK = 900  # stays below SQLite's default limit of bound parameters

_SCHEMA = """
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


@dataclass
class WindowSample:
    """A uniform random sample of the searches in a window, as columns (one row per search).

    ``features`` stacks the feature rows of all sampled searches that logged features with
    ``feature_names``; ``row_search`` gives each row's index into the per-search columns.
    """

    ids: np.ndarray  # int64
    time: np.ndarray  # float64 epoch seconds
    queries: np.ndarray  # object: normalised query text
    mode: np.ndarray  # object
    model: np.ndarray  # object (None outside learned mode)
    in_domain: np.ndarray  # float64, NaN outside learned mode
    features: np.ndarray  # float32 [rows, n_features]
    row_search: np.ndarray  # int64 [rows]
    feature_names: tuple[str, ...] = ()
    total: int = 0  # searches in the window (the sample is drawn from these)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class FeedbackReport:
    lines: int = 0
    imported: int = 0
    duplicates: int = 0
    unmatched: int = 0  # clicks with no logged search to attach to (kept, not used for outcomes)
    messages: list[str] = field(default_factory=list)


class QueryLog:
    """Appends searches and clicks to the workspace's log; reads windows for the monitors."""

    def __init__(self, path: Path | str, *, source: str = "cli"):
        if source not in SOURCES:
            raise InputError(f"unknown query-log source {source!r}; choose one of {SOURCES}")
        self.path = Path(path)
        self.source = source
        self._lock = threading.Lock()  # one connection, shared by a UI's threads
        self._schemas: dict[tuple[str, ...], int] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60
            )
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _retry_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
            # A log may lose its last rows on power loss, never on a process crash.
            self._db.execute("PRAGMA synchronous=NORMAL")
            _retry_locked(lambda: self._db.executescript(_SCHEMA))
        except sqlite3.DatabaseError as exc:
            raise BrainrankError(f"query log {self.path} is unreadable: {exc}") from exc

    @classmethod
    def open(cls, workspace_root: Path | str, *, source: str = "cli") -> QueryLog:
        """The log of the workspace at ``workspace_root`` (created on first use)."""
        from brainrank.index.workspace import Workspace

        return cls(Workspace(workspace_root).logs_dir / LOG_FILE, source=source)

    @staticmethod
    def exists(workspace_root: Path | str) -> bool:
        from brainrank.index.workspace import Workspace

        return (Workspace(workspace_root).logs_dir / LOG_FILE).exists()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> QueryLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------
    def _write(self):
        return _Transaction(self._db, self._lock)

    def record(self, result, *, source: str | None = None, time: float | None = None) -> int:
        """Append one search (a ``SearchResult``) and return its impression id.

        The id is also set as ``result.impression_id``, for the caller to hand out for
        feedback. The result's feature rows (one per hit) and its query vector come with it;
        the vector is cached once per query text for the query-drift monitors.
        """
        source = source or self.source
        if source not in SOURCES:
            raise InputError(f"unknown query-log source {source!r}; choose one of {SOURCES}")
        ids = [h.doc_id for h in result.hits]
        names = result.feature_names
        blob = None
        if result.features is not None and names is not None and len(ids):
            x = np.ascontiguousarray(result.features, dtype=np.float32)
            if x.shape != (len(ids), len(names)):
                raise ValueError(
                    f"features have shape {x.shape}; expected ({len(ids)}, {len(names)})"
                )
            blob = x.tobytes()
        in_domain = result.in_domain
        row = (
            float(time if time is not None else _time.time()),
            result.query,
            normalise_query(result.query),
            result.mode,
            result.model,
            None if in_domain is None else int(bool(in_domain)),
            float(result.latency_ms),
            source,
        )
        with self._write():
            schema_id = self._schema_id(tuple(names)) if blob is not None else None
            cur = self._db.execute(
                "INSERT INTO searches(time, query, norm_query, mode, model, in_domain, "
                "latency_ms, source) VALUES (?,?,?,?,?,?,?,?)",
                row,
            )
            self._db.execute(
                "INSERT INTO results(search_id, doc_ids, features, schema_id) VALUES (?,?,?,?)",
                (cur.lastrowid, json.dumps(ids), blob, schema_id),
            )
            if result.query_vector is not None and result.encoder:
                self._db.execute(
                    "INSERT OR IGNORE INTO query_vectors VALUES (?,?,?)",
                    (row[2], result.encoder, np.asarray(result.query_vector, np.float32).tobytes()),
                )
        impression = int(cur.lastrowid)
        result.impression_id = str(impression)
        return impression

    def _schema_id(self, names: tuple[str, ...]) -> int:
        if names not in self._schemas:
            key = json.dumps(list(names))
            self._db.execute("INSERT OR IGNORE INTO feature_schemas(names) VALUES (?)", (key,))
            (sid,) = self._db.execute(
                "SELECT id FROM feature_schemas WHERE names=?", (key,)
            ).fetchone()
            self._schemas[names] = int(sid)
        return self._schemas[names]

    def store_vectors(self, queries: Sequence[str], vectors: np.ndarray, encoder: str) -> None:
        """Cache embeddings of normalised query texts made by ``encoder``."""
        rows = [
            (q, encoder, np.asarray(v, np.float32).tobytes())
            for q, v in zip(queries, vectors, strict=True)
        ]
        with self._write():
            self._db.executemany("INSERT OR REPLACE INTO query_vectors VALUES (?,?,?)", rows)

    # -- feedback -------------------------------------------------------------------------
    def import_feedback(self, path: Path | str, *, match_seconds: float = 3600.0) -> FeedbackReport:
        """Import clicks from JSONL, one click a line, all or nothing.

        Each line has ``doc_id``, ``time`` (ISO 8601 with a zone) and either ``impression_id``
        (from ``search --json``) or ``query``; ``position`` (1 = top) is optional when it can
        be read off the logged search. A click given by query is attached to the latest
        logged search of that query within ``match_seconds`` before it that returned the
        document. Importing a file twice adds nothing the second time. A bad line raises
        ``InputError`` naming the file and line, and nothing is imported.
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
                    rows.append(self._click_row(raw, match_seconds))
                except ValueError as exc:
                    raise InputError(f"{path.name} line {lineno}: {exc}") from None
        with self._write():
            for row in rows:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO clicks(search_id, norm_query, doc_id, position, time, "
                    "key) VALUES (?,?,?,?,?,?)",
                    row,
                )
                if cur.rowcount == 0:
                    report.duplicates += 1
                    continue
                report.imported += 1
                report.unmatched += row[0] is None
        return report

    def _click_row(self, raw: bytes, match_seconds: float) -> tuple:
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
            try:
                search_id = int(str(impression))
            except ValueError:
                raise ValueError(f"impression_id {impression!r} is not a search id") from None
            found = self._db.execute(
                "SELECT s.norm_query, r.doc_ids FROM searches s JOIN results r "
                "ON r.search_id = s.id WHERE s.id=?",
                (search_id,),
            ).fetchone()
            if found is None:
                raise ValueError(f"impression_id {impression!r} is not in the query log")
            norm, shown = found[0], json.loads(found[1])
            if doc_id not in shown:
                raise ValueError(f"doc_id {doc_id!r} was not shown in impression {impression!r}")
        else:
            norm = normalise_query(query)
            search_id, shown = None, []
            for sid, ids in self._db.execute(
                "SELECT s.id, r.doc_ids FROM searches s JOIN results r ON r.search_id = s.id "
                "WHERE s.norm_query=? AND s.time<=? AND s.time>=? ORDER BY s.time DESC LIMIT 20",
                (norm, when + 1.0, when - match_seconds),
            ):
                ids = json.loads(ids)
                if doc_id in ids:
                    search_id, shown = int(sid), ids
                    break
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

    # -- reading --------------------------------------------------------------------------
    def count(
        self,
        start: float | None = None,
        end: float | None = None,
        *,
        sources: Sequence[str] = TRAFFIC,
    ) -> int:
        """Searches of ``sources`` in [start, end) (evaluation runs are not traffic)."""
        where, args = _time_filter(start, end)
        marks = ",".join("?" * len(sources))
        return int(
            self._db.execute(
                f"SELECT COUNT(*) FROM searches {where} AND source IN ({marks})", (*args, *sources)
            ).fetchone()[0]
        )

    def span(self) -> tuple[float, float] | None:
        """(first, last) search time, or None for an empty log."""
        lo, hi = self._db.execute("SELECT MIN(time), MAX(time) FROM searches").fetchone()
        return None if lo is None else (float(lo), float(hi))

    def sample(
        self,
        start: float,
        end: float,
        *,
        max_searches: int = 5_000,
        seed: int = 0,
        sources: Sequence[str] = TRAFFIC,
    ) -> WindowSample:
        """A uniform sample of up to ``max_searches`` searches of ``sources`` in [start, end).

        The window's id range comes from two index look-ups and ids are drawn from it at
        random, so the cost depends on the sample size, not on the size of the window (ids
        follow time, as searches are appended as they happen). ``total`` is the number of
        matching searches: exact when the whole window was read, else estimated from the
        share of drawn ids that matched. Evaluation runs are not traffic and are left out.
        """
        where, args = _time_filter(start, end)
        first = self._db.execute(
            f"SELECT id FROM searches {where} ORDER BY time LIMIT 1", args
        ).fetchone()
        if first is None:
            return _empty_sample()
        (last,) = self._db.execute(
            f"SELECT id FROM searches {where} ORDER BY time DESC LIMIT 1", args
        ).fetchone()
        lo, hi = min(first[0], last), max(first[0], last)
        span = hi - lo + 1
        wanted = set(sources)
        if span <= 2 * max_searches:
            rows = [r for r in self._fetch(start, end, lo=lo, hi=hi) if r[8] in wanted]
            total = len(rows)
        else:
            rng = np.random.default_rng(seed)
            pool = rng.permutation(span) + lo
            rows, drawn = [], 0
            while len(rows) < max_searches and drawn < span:
                # Draw in rounds sized by the share of ids that matched so far.
                share = len(rows) / drawn if drawn and rows else 1.0
                more = int((max_searches - len(rows)) / max(share, 0.01) * 1.1) + 16
                ids = np.sort(pool[drawn : drawn + more])
                drawn += len(ids)
                rows += [r for r in self._fetch(start, end, ids=ids) if r[8] in wanted]
            total = int(round(span * len(rows) / drawn)) if drawn < span else len(rows)
        if len(rows) > max_searches:
            keep = np.random.default_rng(seed + 1).choice(len(rows), max_searches, replace=False)
            rows = [rows[i] for i in np.sort(keep)]
        rows.sort(key=lambda r: r[0])
        return self._columns(rows, total)

    def _fetch(self, start, end, *, lo=None, hi=None, ids=None) -> list[tuple]:
        cols = (
            "s.id, s.time, s.norm_query, s.mode, s.model, s.in_domain, r.features, "
            "r.schema_id, s.source FROM searches s LEFT JOIN results r ON r.search_id = s.id"
        )
        where, args = _time_filter(start, end, "s.")
        if ids is None:
            return self._db.execute(
                f"SELECT {cols} {where} AND s.id BETWEEN ? AND ?", (*args, lo, hi)
            ).fetchall()
        rows = []
        for i in range(0, len(ids), _SQL_CHUNK):
            chunk = ids[i : i + _SQL_CHUNK].tolist()
            marks = ",".join("?" * len(chunk))
            rows += self._db.execute(
                f"SELECT {cols} {where} AND s.id IN ({marks})", (*args, *chunk)
            ).fetchall()
        return rows

    def _columns(self, rows: list[tuple], total: int) -> WindowSample:
        if not rows:
            return _empty_sample(total)
        schemas = {
            sid: tuple(json.loads(names))
            for sid, names in self._db.execute("SELECT id, names FROM feature_schemas")
        }
        # Feature rows of the most common schema in the sample (the serving model's).
        sids = [r[7] for r in rows if r[7] is not None]
        names: tuple[str, ...] = ()
        blocks, owners = [], []
        if sids:
            main = max(set(sids), key=sids.count)
            names = schemas[main]
            for i, r in enumerate(rows):
                if r[7] == main and r[6]:
                    x = np.frombuffer(r[6], dtype=np.float32).reshape(-1, len(names))
                    blocks.append(x)
                    owners.append(np.full(len(x), i, dtype=np.int64))
        width = len(names)
        return WindowSample(
            ids=np.array([r[0] for r in rows], dtype=np.int64),
            time=np.array([r[1] for r in rows], dtype=np.float64),
            queries=np.array([r[2] for r in rows], dtype=object),
            mode=np.array([r[3] for r in rows], dtype=object),
            model=np.array([r[4] for r in rows], dtype=object),
            in_domain=np.array(
                [np.nan if r[5] is None else float(r[5]) for r in rows], dtype=np.float64
            ),
            features=np.vstack(blocks) if blocks else np.zeros((0, width), np.float32),
            row_search=np.concatenate(owners) if owners else np.zeros(0, np.int64),
            feature_names=names,
            total=total,
        )

    def outcomes(self, search_ids: Sequence[int] | np.ndarray, *, k: int = 10) -> dict:
        """Click outcomes of the given searches (e.g. a window's sample): CTR@k, click MRR.

        CTR@k is the share of searches with a click in the top ``k``; click MRR the mean of
        1 / (position of the first click), 0 for searches without one. ``clicks`` counts the
        linked clicks; with none the rates say nothing (no feedback was imported).
        """
        ids = [int(i) for i in search_ids]
        clicked = clicks = 0
        rr = 0.0
        for i in range(0, len(ids), _SQL_CHUNK):
            chunk = ids[i : i + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            for first, n in self._db.execute(
                f"SELECT MIN(position), COUNT(*) FROM clicks WHERE search_id IN ({marks}) "
                f"GROUP BY search_id",
                chunk,
            ):
                clicks += n
                clicked += first <= k
                rr += 1.0 / first
        n = len(ids)
        return {
            "searches": n,
            "clicks": clicks,
            "clicked": clicked,
            f"CTR@{k}": clicked / n if n else None,
            "click_MRR": rr / n if n else None,
        }

    def vectors(self, queries: Sequence[str], encoder: str) -> dict[str, np.ndarray]:
        """Cached embeddings of the given normalised queries (missing ones are absent)."""
        out: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(queries))
        for i in range(0, len(unique), _SQL_CHUNK):
            chunk = unique[i : i + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            for q, blob in self._db.execute(
                f"SELECT norm_query, vector FROM query_vectors WHERE encoder=? "
                f"AND norm_query IN ({marks})",
                (encoder, *chunk),
            ):
                out[q] = np.frombuffer(blob, dtype=np.float32)
        return out

    def impressions(
        self, start: float, end: float, *, limit: int = 200_000, clicked_queries: bool = False
    ) -> Iterator[dict]:
        """Logged cli/ui searches in [start, end) as impressions in the click-log format that
        ``ranker.feedback.clicks.read_click_log`` reads (the newest ``limit``, oldest first).

        With ``clicked_queries`` only searches of queries that drew at least one click in
        the period are kept: other queries teach a click model nothing.
        """
        where, args = _time_filter(start, end, "s.")
        extra, extra_args = "", ()
        if clicked_queries:
            extra = (
                "AND s.norm_query IN (SELECT norm_query FROM clicks "
                "WHERE search_id IS NOT NULL AND time >= ?)"
            )
            extra_args = (args[0],)
        rows = self._db.execute(
            f"SELECT s.id, s.time, s.query, r.doc_ids FROM searches s JOIN results r "
            f"ON r.search_id = s.id {where} AND s.source IN ('cli', 'ui') {extra} "
            f"ORDER BY s.id DESC LIMIT ?",
            (*args, *extra_args, limit),
        ).fetchall()
        if not rows:
            return
        lo = min(r[0] for r in rows)
        clicks: dict[int, set[str]] = {}
        for sid, doc in self._db.execute(
            "SELECT search_id, doc_id FROM clicks WHERE search_id >= ?", (lo,)
        ):
            clicks.setdefault(int(sid), set()).add(doc)
        for sid, when, query, ids in reversed(rows):
            shown = json.loads(ids)
            if not shown:
                continue
            yield {
                "impression_id": f"log-{sid}",
                "time": datetime.fromtimestamp(when, tz=UTC).isoformat(),
                "query": query,
                "shown": shown,
                "clicks": [d for d in shown if d in clicks.get(int(sid), ())],
            }

    def last_click_id(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM clicks").fetchone()[0])


class _Transaction:
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


def _time_filter(start, end, prefix: str = "") -> tuple[str, tuple]:
    start = -1e18 if start is None else float(start)
    end = 1e18 if end is None else float(end)
    return f"WHERE {prefix}time >= ? AND {prefix}time < ?", (start, end)


def _empty_sample(total: int = 0) -> WindowSample:
    empty = np.zeros(0, dtype=object)
    return WindowSample(
        ids=np.zeros(0, np.int64),
        time=np.zeros(0),
        queries=empty,
        mode=empty,
        model=empty,
        in_domain=np.zeros(0),
        features=np.zeros((0, 0), np.float32),
        row_search=np.zeros(0, np.int64),
        total=total,
    )


def _retry_locked(step, attempts: int = 50):
    """Run a schema step that can meet another process creating the same file."""
    for i in range(attempts):
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or i == attempts - 1:
                raise
            _time.sleep(0.05 * (i + 1))
