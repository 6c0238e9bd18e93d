"""The query log a service worker appends to. A log that cannot be written never fails a search.

Every search served is recorded with source ``service`` (its features and query vector come
with it, as for the CLI). When the log cannot be written (a corrupt file, a full disk, a lock
held past ``LOG_WAIT_MS``) the search is answered anyway, with ``impression_id`` null: every
failure counts in ``brainrank_querylog_failures``, and the server log gets one warning per run
of failures (again only after a search was logged in between), not one per search. After any
failure but a lock timeout the file is opened afresh for the next search, so a damaged log set
aside by ``brainrank check --repair`` is replaced by a new one without a restart.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from brainrank.index.errors import BrainrankError
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import Config
from brainrank.ranker.feedback.querylog import LOG_FILE, FeedbackReport, QueryLog
from brainrank.ranker.feedback.store import LogDamagedError

log = logging.getLogger("brainrank.serve")

SOURCE = "service"
# A search waits at most this long for another writer's lock before it is answered unlogged.
LOG_WAIT_MS = 2_000


class LogUnavailable(BrainrankError):
    """The query log cannot be opened or written; feedback cannot be stored."""


def log_path(cfg: Config) -> Path:
    """``[service] log_path`` (relative to the workspace), else the workspace's query log."""
    path = cfg.service.log_path
    if path is None:
        return Workspace(cfg.workspace).logs_dir / LOG_FILE
    return path if path.is_absolute() else Path(cfg.workspace) / path


class ServiceLog:
    """Opens the log on first use (again after a failure) and records what the service does."""

    def __init__(self, path: Path, on_failure: Callable[[], None] = lambda: None):
        self.path = path
        self._on_failure = on_failure
        self._log: QueryLog | None = None
        self._opening = threading.Lock()
        self._warned = False  # a warning was logged and no search was logged since

    def _open(self) -> QueryLog:
        with self._opening:
            if self._log is None:
                # The log waits 60 s for a lock by default; a search may not.
                self._log = QueryLog(self.path, source=SOURCE, wait=LOG_WAIT_MS / 1000)
            return self._log

    def record(self, result) -> None:
        """Log a ``SearchResult`` (setting its ``impression_id``); on failure warn and go on."""
        try:
            self._open().record(result)
        except (BrainrankError, sqlite3.Error, OSError, ValueError) as exc:
            result.impression_id = None
            self._on_failure()
            if not isinstance(exc, sqlite3.OperationalError):
                self.close()  # reopen next time: the file may have been repaired or replaced
            if not self._warned:
                self._warned = True
                log.warning(
                    "search answered but not logged to %s: %s (searches go on unlogged; "
                    "brainrank_querylog_failures counts them)",
                    self.path,
                    exc,
                )
            return
        if self._warned:
            self._warned = False
            log.info("the query log %s is written again", self.path)

    def import_clicks(self, records: list[dict]) -> FeedbackReport:
        """Store click records (``QueryLog.import_clicks``); ``LogUnavailable`` when the log
        fails."""
        try:
            qlog = self._open()
        except BrainrankError as exc:
            raise LogUnavailable(f"the query log is unavailable: {exc}") from None
        try:
            return qlog.import_clicks(records)
        except (sqlite3.Error, OSError, LogDamagedError) as exc:
            if isinstance(exc, LogDamagedError):
                self.close()
            log.warning("feedback not stored in %s: %s", self.path, exc)
            raise LogUnavailable(f"the query log could not be written: {exc}") from None

    def close(self) -> None:
        with self._opening:
            if self._log is not None:
                self._log.close()
                self._log = None
