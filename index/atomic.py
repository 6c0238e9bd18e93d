"""Write-then-rename helpers: a reader sees the old file or folder or the new one, never a torn one.

Write artifacts with one of two helpers: :func:`atomic_file` for a file (fsync, then
``os.replace`` over the old one) and :func:`replace_directory` for a folder (rename the finished
folder in, then remove the old one). :func:`atomic_directory` stages a folder for the latter.
Neither deletes the old copy before the new one is in place.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries, so a rename in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot sync a directory; the rename still stands
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """Yield a temporary sibling file opened in ``mode`` ("w" text, "wb" binary) that replaces
    ``path`` (fsync, then rename) only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (fsync, then rename over the old file)."""
    with atomic_file(path) as fh:
        fh.write(text)


def replace_directory(staged: Path, final: Path, *, overwrite: bool = True) -> None:
    """Rename the finished folder ``staged`` to ``final``, on the same file system.

    An existing ``final`` is renamed aside first (POSIX cannot rename a folder over a non-empty
    one) and deleted only once the new folder is in place; if that rename fails, the old folder
    is put back. So ``final`` is never missing except between two renames, and a crash there
    leaves the old copy in a ``.NAME.*.tmp`` sibling. With ``overwrite=False`` an existing
    ``final`` raises FileExistsError instead (callers that number folders under a lock).
    """
    if not (final.exists() or final.is_symlink()):
        os.replace(staged, final)
        fsync_dir(final.parent)
        return
    if not overwrite:
        raise FileExistsError(f"{final} already exists")
    aside = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        os.replace(final, aside / "old")
        try:
            os.replace(staged, final)
        except BaseException:
            os.replace(aside / "old", final)
            raise
        fsync_dir(final.parent)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield an empty folder to fill; it replaces ``final`` (see replace_directory) only if the
    block succeeds, and is discarded otherwise."""
    final.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        staged = holder / "new"
        # A plain mkdir (not mkdtemp's 0700) so the folder gets the usual permissions.
        staged.mkdir()
        yield staged
        replace_directory(staged, final)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
