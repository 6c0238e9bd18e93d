"""Read index files into the page cache before searches need them.

Indexes are memory-mapped, so a process that opens one reads nothing up front and each search
faults in the pages it touches. That is what a one-shot ``brainrank search`` wants, but a
service opening a large index would pay for those faults in its first minutes of searches: at
1M documents a warm learned search has a p99 near 60 ms once the files are cached and several
hundred ms while they are not (bench/RESULTS.md). ``preload`` asks the kernel to read the
files (``posix_fadvise(WILLNEED)``, in the background) and, with ``wait``, returns once they
are in memory (``madvise(MADV_POPULATE_READ)`` on Linux 5.14+, else reading them through).
The pages stay the kernel's: clean, shared by every worker, and reclaimed under memory pressure.
"""

from __future__ import annotations

import logging
import mmap
import os
import sys
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

# Not exported by Python 3.11's mmap module; Linux's value since 5.14.
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22 if sys.platform == "linux" else None)
_BLOCK = 8 << 20


def preload(paths: Iterable[Path], *, wait: bool = True) -> int:
    """Bring ``paths`` (files; missing ones are skipped) into the page cache; their bytes.

    Without ``wait`` this only starts the kernel's reads and returns at once.
    """
    files = []
    for path in paths:
        try:
            size = os.stat(path).st_size
        except OSError:
            continue
        if size:
            files.append((Path(path), size))
    for path, size in files:  # start every read first: the kernel overlaps them
        _advise(path, size)
    if wait:
        for path, size in files:
            _populate(path, size)
    return sum(size for _, size in files)


def _advise(path: Path, size: int) -> None:
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, size, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def _populate(path: Path, size: int) -> int:
    """Fault ``path`` into the page cache; the bytes read through (0 when madvise did it)."""
    try:
        with open(path, "rb") as fh:
            if _MADV_POPULATE_READ is not None:
                try:
                    with mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                        mapped.madvise(_MADV_POPULATE_READ)
                    return 0
                except (OSError, ValueError):
                    pass  # an older kernel: read it through instead
            buffer, read = bytearray(_BLOCK), 0
            while n := fh.readinto(buffer):
                read += n
            return read
    except OSError as exc:
        log.warning("could not preload %s: %s", path, exc)
        return 0
