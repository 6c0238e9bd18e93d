"""The serving pointer: which model version serves over which index generation, in one file.

A learned model ranks with features from one encoder, and an index generation's vectors come
from one encoder, so the champion and the generation must change together. The workspace names
both in one file, ``SERVING``, replaced whole by an atomic write (temporary file, fsync,
rename)::

    {"generation": 7, "champion": "v0003",
     "change": {"time": "...", "action": "promote", "version": "v0003", "previous": "v0002"},
     "sha256": "..."}

A reader therefore sees the old pair or the new pair, never one half of each, and a process
killed at any moment leaves one of the two. Everything that serves reads this file:
``Workspace.serving_generation``, ``Registry.champion``, the service's engine holder, the
debugger. Writers read, change and replace it under the workspace writer lock, so an ingest
(new generation, same champion) and a promotion (both) never lose each other's update; a
promotion builds whatever the new pair needs (a re-embedded, staged generation) before it takes
that lock, and switches with one write.

``change`` repeats the champion change recorded in ``models/history.jsonl``: the pointer moves
first and the history line follows, so a process killed between the two leaves the pointer
saying what the history lacks, and the registry restores the line. ``sha256`` covers the other
fields, so a damaged file is refused instead of misread.

Workspaces written before this file kept two pointers, ``indexes/CURRENT`` (``gen-000007``)
and ``models/CHAMPION`` (``v0003``). While ``SERVING`` is missing they are read instead; the
first write of ``SERVING`` removes them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from brainrank.index.atomic import write_text_atomic
from brainrank.index.errors import BrainrankError

POINTER = "SERVING"
LEGACY_GENERATION = Path("indexes") / "CURRENT"
LEGACY_CHAMPION = Path("models") / "CHAMPION"
HISTORY = Path("models") / "history.jsonl"  # the registry's (``ranker.registry.history``)
_LEGACY_GEN = re.compile(r"^gen-(\d{6})$")
_REPAIR = (
    "run `brainrank reindex` to rebuild the indexes and write it again (with the last champion "
    "in models/history.jsonl that loads)"
)


@dataclass(frozen=True)
class ServingState:
    """What serves: an index generation and a model version (None: not yet), read at once."""

    generation: int | None = None
    champion: str | None = None
    change: dict | None = None  # the last champion change (a history.jsonl line)
    legacy: bool = False  # read from indexes/CURRENT and models/CHAMPION


def pointer_file(root: Path) -> Path:
    return Path(root) / POINTER


def read_state(root: Path) -> ServingState:
    """The serving state of workspace ``root``; a missing pointer reads as nothing served yet,
    unless the model history records a champion (then the pointer was lost: an error)."""
    path = pointer_file(root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        state = _read_legacy(Path(root))
        if state == ServingState() and _has_history(Path(root)):
            # Every promotion writes the pointer before its history line: a history without
            # a pointer means the pointer was lost, not that nothing serves yet.
            raise BrainrankError(
                f"the serving pointer {path} is missing, but {Path(root) / HISTORY} records "
                f"a champion; {_REPAIR}"
            ) from None
        return state
    except (OSError, ValueError) as exc:
        raise BrainrankError(f"cannot read the serving pointer {path} ({exc}); {_REPAIR}") from None
    try:
        payload = json.loads(text)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        generation, champion = payload.get("generation"), payload.get("champion")
        change = payload.get("change")
        if generation is not None and not (type(generation) is int and 0 < generation < 10**6):
            raise ValueError(f"generation {generation!r} is not a generation number")
        if champion is not None and not isinstance(champion, str):
            raise ValueError(f"champion {champion!r} is not a version name")
        if change is not None and not isinstance(change, dict):
            raise ValueError("change is not a JSON object")
        if payload.get("sha256") != _digest(generation, champion, change):
            raise ValueError("its checksum does not match its contents")
    except ValueError as exc:
        raise BrainrankError(f"the serving pointer {path} is damaged ({exc}); {_REPAIR}") from None
    return ServingState(generation, champion, change)


def write_state(root: Path, state: ServingState) -> ServingState:
    """Replace the pointer of workspace ``root`` with ``state`` in one atomic write.

    Call with the workspace writer lock held (``Workspace.set_serving`` checks that). The legacy
    pointers are removed afterwards: from now on they would only disagree with this file.
    """
    root = Path(root)
    payload = {"generation": state.generation, "champion": state.champion, "change": state.change}
    payload["sha256"] = _digest(state.generation, state.champion, state.change)
    write_text_atomic(pointer_file(root), json.dumps(payload, indent=2) + "\n")
    for legacy in (LEGACY_GENERATION, LEGACY_CHAMPION):
        (root / legacy).unlink(missing_ok=True)
    return ServingState(state.generation, state.champion, state.change)


def _has_history(root: Path) -> bool:
    try:
        return (root / HISTORY).stat().st_size > 0
    except OSError:
        return False


def _digest(generation, champion, change) -> str:
    canonical = json.dumps(
        {"generation": generation, "champion": champion, "change": change},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _read_legacy(root: Path) -> ServingState:
    generation = champion = None
    current = root / LEGACY_GENERATION
    try:
        name = current.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        name = None
    except (OSError, ValueError) as exc:
        raise BrainrankError(
            f"cannot read {current} ({exc}); run `brainrank reindex` to rebuild the indexes"
        ) from None
    if name is not None:
        m = _LEGACY_GEN.match(name)
        if not m:
            raise BrainrankError(
                f"{current} names {name!r}, which is not an index generation; "
                "run `brainrank reindex` to rebuild the indexes"
            )
        generation = int(m.group(1))
    try:
        champion = (root / LEGACY_CHAMPION).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        champion = None
    except (OSError, ValueError) as exc:
        raise BrainrankError(f"cannot read {root / LEGACY_CHAMPION} ({exc}); {_REPAIR}") from None
    legacy = generation is not None or champion is not None
    return ServingState(generation, champion, None, legacy=legacy)
