"""Versions being written: draft folders in the registry's ``.staging/`` and their numbers.

Each draft is a folder named ``<pid>-<random>`` beside a lock file of the same name, which its
writer holds until the draft is committed or discarded. A free lock therefore marks a writer
that died, and ``clean`` removes its folder. The drafts this process has open are kept in
``DRAFTS`` by absolute path, so any ``Registry`` object in the process can commit one.
``Registry`` calls these under its own lock where numbering or cleaning needs it.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from brainrank.index.locks import ProcessLock
from brainrank.ranker.registry.version import VERSION_NAME, is_timestamp, now_iso


@dataclass
class Draft:
    lock: ProcessLock
    parent: str | None
    imported_from: str | None = None


DRAFTS: dict[Path, Draft] = {}


def open_draft(staging_dir: Path, parent: str | None) -> Path:
    """An empty draft folder in ``staging_dir``, its lock held (call with the registry lock)."""
    staging_dir.mkdir(exist_ok=True)
    token = f"{os.getpid()}-{secrets.token_hex(6)}"
    lock = ProcessLock(staging_dir / f"{token}.lock", timeout=0).acquire()
    tmp = staging_dir / token
    tmp.mkdir()
    DRAFTS[tmp] = Draft(lock, parent)
    return tmp


def discard(tmp: Path) -> None:
    """Remove an open draft's folder and release its lock (nothing for an unknown folder)."""
    draft = DRAFTS.pop(tmp, None)
    if draft is None:
        return
    shutil.rmtree(tmp, ignore_errors=True)
    Path(f"{tmp}.lock").unlink(missing_ok=True)
    draft.lock.release()


def clean(staging_dir: Path) -> None:
    """Remove drafts whose writer died (its lock is free); call with the registry lock."""
    if not staging_dir.is_dir():
        return
    for lock_path in staging_dir.glob("*.lock"):
        probe = ProcessLock(lock_path, timeout=0)
        if not probe.try_acquire():
            continue  # a live writer
        try:
            shutil.rmtree(lock_path.with_suffix(""), ignore_errors=True)
            lock_path.unlink(missing_ok=True)
        finally:
            probe.release()  # also removes the dead writer's holder note
    for entry in staging_dir.iterdir():
        if entry.is_dir() and not Path(f"{entry}.lock").exists():
            shutil.rmtree(entry, ignore_errors=True)


def next_number(versions_dir: Path) -> int:
    """One past the highest number ever handed out (call with the registry lock)."""
    taken = [0]
    for p in versions_dir.iterdir():
        if m := VERSION_NAME.match(p.name):  # complete or not, the name is taken
            taken.append(int(m.group(1)))
    try:
        taken.append(int((versions_dir / ".last_number").read_text().strip()))
    except (OSError, ValueError):
        pass
    return max(taken) + 1


def stamp(meta: dict, name: str, draft: Draft) -> dict:
    """``meta`` with the fields a commit fills in: the version's name, when it was created
    (or imported) and its parent (none for an import: the source's numbers mean nothing)."""
    meta["version"] = name
    if draft.imported_from is not None:
        meta["imported_from"] = draft.imported_from
        meta["imported"] = now_iso()
        meta["parent"] = None
        if not is_timestamp(meta.get("created")):
            meta["created"] = meta["imported"]
    else:
        meta["created"] = now_iso()
        meta["parent"] = draft.parent or meta.get("parent")
    return meta
