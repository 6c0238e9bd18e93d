"""The query log: every search served, and the clicks it drew, in one SQLite file per workspace.

``QueryLog`` is the one object callers use. It writes searches and query vectors itself and
hands the rest to one module per concern, each working on the log's connection:

    store     the file's schema (its tables are described there), connection, transactions
    feedback  importing click feedback and linking clicks to logged searches
    windows   reading windows of the log for the monitors and retraining
"""

from __future__ import annotations

import functools
import json
import threading
import time as _time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainrank.index.errors import InputError
from brainrank.ranker.feedback import windows
from brainrank.ranker.feedback.feedback import (
    FeedbackReport,
    add_clicks,
    click_row,
    read_feedback,
)
from brainrank.ranker.feedback.fields import normalise_query
from brainrank.ranker.feedback.store import (
    LOG_FILE,
    SOURCES,
    SQL_CHUNK,
    TRAFFIC,
    Transaction,
    check_source,
    connect,
    reporting_damage,
)
from brainrank.ranker.feedback.windows import WindowSample

__all__ = ["LOG_FILE", "SOURCES", "TRAFFIC", "FeedbackReport", "QueryLog", "WindowSample"]


def _damage_named(method):
    """A method whose SQLite damage errors become one ``LogDamagedError`` naming the file."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with reporting_damage(self.path):
            return method(self, *args, **kwargs)

    return wrapper


class QueryLog:
    """Appends searches and clicks to the workspace's log; reads windows for the monitors."""

    def __init__(self, path: Path | str, *, source: str = "cli", wait: float = 60.0):
        """Open the log at ``path``; a writer waits up to ``wait`` seconds for the lock."""
        self.source = check_source(source)
        self.path = Path(path)
        self._lock = threading.Lock()  # one connection, shared by a UI's threads
        self._schemas: dict[tuple[str, ...], int] = {}
        self._db = connect(self.path, wait=wait)

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
    def _write(self) -> Transaction:
        return Transaction(self._db, self._lock)

    @_damage_named
    def record(self, result, *, source: str | None = None, time: float | None = None) -> int:
        """Append one search (a ``SearchResult``) and return its impression id.

        The id is also set as ``result.impression_id``, for the caller to hand out for
        feedback. The result's feature rows (one per hit) and its query vector come with it;
        the vector is cached once per query text for the query-drift monitors. A later page
        (``result.offset`` > 0) is logged with the rank of its first hit, and a filtered search
        with its conditions, both without feature rows: the feature monitors compare searches
        whose candidates are drawn as training's lists were (a first page of the whole
        collection), or a filter such as ``timestamp > now-30d`` would read as drift.
        """
        source = check_source(source or self.source)
        ids = [h.doc_id for h in result.hits]
        names = result.feature_names
        blob = None
        offset, filters = result.offset, list(result.filters)
        comparable = not offset and not filters
        if result.features is not None and names is not None and len(ids) and comparable:
            x = np.ascontiguousarray(result.features, dtype=np.float32)
            if x.shape != (len(ids), len(names)):
                raise ValueError(
                    f"features have shape {x.shape}; expected ({len(ids)}, {len(names)})"
                )
            blob = x.tobytes()
        in_domain = result.in_domain
        row = (
            result.query,
            normalise_query(result.query),
            result.mode,
            result.model,
            None if in_domain is None else int(bool(in_domain)),
            float(result.latency_ms),
            source,
        )
        with self._write():
            # Stamped under the write lock, so ids follow time even with concurrent writers
            # (window reads find a window's id range from its first and last rows by time).
            when = float(time if time is not None else _time.time())
            schema_id = self._schema_id(tuple(names)) if blob is not None else None
            cur = self._db.execute(
                "INSERT INTO searches(time, query, norm_query, mode, model, in_domain, "
                "latency_ms, source) VALUES (?,?,?,?,?,?,?,?)",
                (when, *row),
            )
            self._db.execute(
                "INSERT INTO results(search_id, doc_ids, features, schema_id) VALUES (?,?,?,?)",
                (cur.lastrowid, json.dumps(ids), blob, schema_id),
            )
            if offset:
                self._db.execute(
                    "INSERT INTO pages(search_id, first_rank) VALUES (?,?)",
                    (cur.lastrowid, offset + 1),
                )
            if filters:
                self._db.execute(
                    "INSERT INTO filtered(search_id, conditions) VALUES (?,?)",
                    (cur.lastrowid, json.dumps(filters)),
                )
            if result.query_vector is not None and result.encoder:
                self._db.execute(
                    "INSERT OR IGNORE INTO query_vectors VALUES (?,?,?)",
                    (row[1], result.encoder, np.asarray(result.query_vector, np.float32).tobytes()),
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

    @_damage_named
    def store_vectors(self, queries: Sequence[str], vectors: np.ndarray, encoder: str) -> None:
        """Cache embeddings of normalised query texts made by ``encoder``."""
        rows = [
            (q, encoder, np.asarray(v, np.float32).tobytes())
            for q, v in zip(queries, vectors, strict=True)
        ]
        with self._write():
            self._db.executemany("INSERT OR REPLACE INTO query_vectors VALUES (?,?,?)", rows)

    @_damage_named
    def vectors(self, queries: Sequence[str], encoder: str) -> dict[str, np.ndarray]:
        """Cached embeddings of the given normalised queries (missing ones are absent)."""
        out: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(queries))
        for i in range(0, len(unique), SQL_CHUNK):
            chunk = unique[i : i + SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            for q, blob in self._db.execute(
                f"SELECT norm_query, vector FROM query_vectors WHERE encoder=? "
                f"AND norm_query IN ({marks})",
                (encoder, *chunk),
            ):
                out[q] = np.frombuffer(blob, dtype=np.float32)
        return out

    # -- feedback -------------------------------------------------------------------------
    @_damage_named
    def import_feedback(self, path: Path | str, *, match_seconds: float = 3600.0) -> FeedbackReport:
        """Import clicks from JSONL, one click a line, all or nothing.

        Each line has ``doc_id``, ``time`` (ISO 8601 with a zone) and either ``impression_id``
        (from ``search --json``) or ``query``; ``position`` (1 = top) is optional when it can
        be read off the logged search. A click given by query is attached to the latest
        logged search of that query within ``match_seconds`` before it that returned the
        document. Importing a file twice adds nothing the second time. A bad line raises
        ``InputError`` naming the file and line, and nothing is imported.
        """
        report, rows = read_feedback(self._db, path, match_seconds)
        with self._write():
            add_clicks(self._db, rows, report)
        return report

    @_damage_named
    def import_clicks(
        self, records: Iterable[Mapping[str, Any]], *, match_seconds: float = 3600.0
    ) -> FeedbackReport:
        """Import click records (the objects a feedback file's lines hold), all or nothing,
        exactly as ``import_feedback`` stores the same lines. A bad record raises
        ``InputError`` naming it (``click 2: ...``)."""
        report, rows = FeedbackReport(), []
        for number, record in enumerate(records, start=1):
            report.lines += 1
            try:
                raw = json.dumps(dict(record)).encode("utf-8")
                rows.append(click_row(self._db, raw, match_seconds))
            except (TypeError, ValueError) as exc:
                raise InputError(f"click {number}: {exc}") from None
        with self._write():
            add_clicks(self._db, rows, report)
        return report

    @_damage_named
    def last_click_id(self) -> int:
        """The id of the newest imported click (0 when there is none)."""
        return windows.last_click_id(self._db)

    # -- reading (see ``windows``) ---------------------------------------------------------
    @_damage_named
    def count(
        self,
        start: float | None = None,
        end: float | None = None,
        *,
        sources: Sequence[str] = TRAFFIC,
    ) -> int:
        """Searches of ``sources`` in [start, end) (evaluation runs are not traffic)."""
        return windows.count(self._db, start, end, sources=sources)

    @_damage_named
    def span(self) -> tuple[float, float] | None:
        """(first, last) search time, or None for an empty log."""
        return windows.span(self._db)

    @_damage_named
    def sample(
        self,
        start: float,
        end: float,
        *,
        max_searches: int = 5_000,
        seed: int = 0,
        sources: Sequence[str] = TRAFFIC,
    ) -> WindowSample:
        """A uniform sample of up to ``max_searches`` searches of ``sources`` in [start, end);
        see ``windows.sample``."""
        return windows.sample(
            self._db, start, end, max_searches=max_searches, seed=seed, sources=sources
        )

    @_damage_named
    def outcomes(self, search_ids: Sequence[int] | np.ndarray, *, k: int = 10) -> dict:
        """Click outcomes (CTR@k, click MRR) of the given searches; see ``windows.outcomes``."""
        return windows.outcomes(self._db, search_ids, k=k)

    def impressions(
        self, start: float, end: float, *, limit: int = 200_000, clicked_queries: bool = False
    ) -> Iterator[dict]:
        """Logged cli/ui searches in [start, end) as click-log impressions (the newest
        ``limit``, oldest first); see ``windows.impressions``."""
        with reporting_damage(self.path):
            yield from windows.impressions(
                self._db, start, end, limit=limit, clicked_queries=clicked_queries
            )
