"""Exclusive locks between processes that say who holds them.

Built on filelock's native lock (``fcntl.flock`` on POSIX): the kernel drops it when the holder
exits, however it exits, so a killed process never leaves a lock held. While it holds a lock,
the holder keeps a note beside it, ``<lock>.holder`` (JSON: pid, command line, start time); a
process that gives up waiting names that command in its error.

Not re-entrant: each :class:`ProcessLock` opens its own descriptor, so two of them on one path
exclude each other within a process too (a writer relies on this to refuse a second writer),
and one object cannot be acquired twice.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from brainrank.index.atomic import write_text_atomic
from brainrank.index.errors import BrainrankError

# How long a lock waits by default: long enough for a busy writer's quick step, short enough
# that a hung one is reported instead of stalling a cron job forever.
WAIT_SECONDS = 600.0
_HINT = "wait for it to finish, or stop that process if it hangs"
# Recent filelock versions fall back to a marker file where flock is unsupported; a marker
# outlives a killed holder, so refuse it where the option exists (older versions raise instead).
_NATIVE_ONLY = (
    {"fallback_to_soft": False}
    if "fallback_to_soft" in inspect.signature(FileLock.__init__).parameters
    else {}
)


class LockBusyError(BrainrankError):
    """Another process (or another ProcessLock in this one) held the lock past the timeout."""

    def __init__(self, message: str, path: Path, holder: dict | None):
        super().__init__(message)
        self.path = path
        self.holder = holder


def holder_file(path: Path) -> Path:
    """The note beside lock file ``path`` that names its holder."""
    return path.with_name(path.name + ".holder")


def read_holder(path: Path) -> dict | None:
    """The holder note of lock file ``path`` (pid, command, started), or None if unreadable."""
    try:
        note = json.loads(holder_file(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) and isinstance(note.get("pid"), int) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def describe_holder(path: Path, note: dict | None = None) -> str:
    """Who holds lock file ``path``, in words, from its holder note."""
    note = read_holder(path) if note is None else note
    if note is None:
        return "an unknown process (it left no holder note)"
    pid = note["pid"]
    command = note.get("command") or "?"
    started = note.get("started") or "?"
    if not _alive(pid):  # a killed holder's note, not yet replaced by the new holder's
        return f"an unknown process (the last note names pid {pid}, `{command}`, now gone)"
    this = " (this process)" if pid == os.getpid() else ""
    return f"pid {pid}{this} running `{command}` since {started}"


class ProcessLock:
    """An exclusive lock on file ``path``; use as a context manager or acquire()/release().

    ``timeout`` is how many seconds acquire() waits before raising :class:`LockBusyError`
    (0: fail at once). ``what`` starts that error's message, e.g. "another brainrank ingest is
    running on workspace W"; the rest names the lock file and the holder's command.
    """

    def __init__(self, path: Path | str, *, timeout: float = WAIT_SECONDS, what: str | None = None):
        self.path = Path(path)
        self.timeout = timeout
        self.what = what or "a brainrank lock is busy"
        self._lock = FileLock(self.path, thread_local=False, **_NATIVE_ONLY)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._lock.is_locked

    def acquire(self, timeout: float | None = None) -> ProcessLock:
        """Take the lock, waiting up to ``timeout`` seconds (default: the object's), and return
        self; raise LockBusyError naming the holder when it stays taken."""
        wait = self.timeout if timeout is None else timeout
        if not (isinstance(wait, int | float) and math.isfinite(wait) and wait >= 0):
            raise ValueError(f"lock timeout must be a number of seconds >= 0, got {wait!r}")
        if self.held:
            raise RuntimeError(f"{self.path} is already held by this ProcessLock (not re-entrant)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=wait, blocking=wait > 0)
        except Timeout:
            note = read_holder(self.path)
            waited = f" (gave up after {wait:g} s)" if wait > 0 else ""
            raise LockBusyError(
                f"{self.what}: {self.path} is held by {describe_holder(self.path, note)}"
                f"{waited}; {_HINT}",
                self.path,
                note,
            ) from None
        try:
            note = {
                "pid": os.getpid(),
                "command": " ".join(sys.argv) or sys.executable,
                "started": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            write_text_atomic(holder_file(self.path), json.dumps(note) + "\n")
        except BaseException:
            self._lock.release()
            raise
        return self

    def try_acquire(self) -> bool:
        """Take the lock if it is free now; False (without waiting) if someone holds it."""
        try:
            self.acquire(timeout=0)
        except LockBusyError:
            return False
        return True

    def release(self) -> None:
        """Remove the holder note, then release the lock (nothing happens when not held)."""
        if not self.held:
            return
        try:
            # While still held, so the next holder's note is never the one removed.
            holder_file(self.path).unlink(missing_ok=True)
        finally:
            self._lock.release()

    def __enter__(self) -> ProcessLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
