"""The champion's history, ``models/history.jsonl``: one JSON line per promotion or rollback.

Each line is also kept, as ``change``, in the serving pointer written just before it (see
``index.serving``), so a line lost to a process killed between the two writes is restored from
the pointer, and which champion a rollback returns to is known either way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from brainrank.index.serving import ServingState
from brainrank.ranker.registry.version import now_iso


def change(action: str, version: str, previous: str | None) -> dict:
    """A history entry: ``action`` ("promote" or "rollback") made ``version`` the champion."""
    return {"time": now_iso(), "action": action, "version": version, "previous": previous}


def read_history(path: Path) -> tuple[list[dict], list[str]]:
    """(entries oldest first, problems): lines that are not JSON objects (or not UTF-8) are
    skipped."""
    if not path.exists():
        return [], []
    entries, problems = [], []
    for lineno, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
            entry = json.loads(line)
        except ValueError:  # UnicodeDecodeError is one
            line, entry = raw.decode("utf-8", errors="replace"), None
        if isinstance(entry, dict):
            entries.append(entry)
        elif line.strip():
            problems.append(f"{path}:{lineno}: not a JSON object, skipped")
    return entries, problems


def append_entry(path: Path, entry: dict) -> None:
    """Append one line and fsync it; a torn last line (a killed writer) is ended first."""
    with open(path, "ab+") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell():  # a writer killed mid-line must not swallow this line
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write(json.dumps(entry).encode("utf-8") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def missing_change(entries: list[dict], state: ServingState) -> dict | None:
    """The pointer's last change when the history lacks it (its line was lost to a kill)."""
    if state.change is not None and (not entries or entries[-1] != state.change):
        return state.change
    return None


def previous_champion(entries: list[dict], state: ServingState) -> str | None:
    """The champion before the current one: replay the history as a stack, rollback = pop."""
    lost = missing_change(entries, state)
    stack: list[str] = []
    for entry in entries + ([lost] if lost else []):
        v = entry.get("version")
        if not isinstance(v, str):
            continue
        if entry.get("action") == "rollback" and stack:
            stack.pop()
        if not stack or stack[-1] != v:
            stack.append(v)
    current = state.champion
    if current is not None and (not stack or stack[-1] != current):
        stack.append(current)  # a legacy pointer moved without a history line (crash)
    return stack[-2] if len(stack) >= 2 else None
