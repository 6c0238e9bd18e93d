"""The workspace directory: documents, index generations, models and logs of one deployment.

Index generations make ingest crash-safe. A generation ``indexes/gen-000007`` is written in
full under a temporary name, renamed into place, and only then named in the serving pointer
``SERVING`` (``index.serving``: the generation and the champion model, one atomic file). Each
generation records the document-store version it was built from; the store commits its change
just before the pointer moves, and :meth:`Workspace.recover` moves the pointer forward if a
process died between the two steps. Until then searches keep using the old generation.

Every pointer write happens under the writer lock (``writer_lock()``, the ingest lock), which
:meth:`Workspace.set_serving` checks. Pruning keeps the generation the pointer names and any
generation a live promotion has pinned (:meth:`Workspace.pin`) while it gets ready to switch.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from brainrank.index.atomic import write_text_atomic
from brainrank.index.errors import BrainrankError
from brainrank.index.integrity import read_manifest, seal
from brainrank.index.locks import ProcessLock, read_holder
from brainrank.index.serving import (
    LEGACY_GENERATION,
    ServingState,
    pointer_file,
    read_state,
    write_state,
)
from brainrank.index.store import DocumentStore

_GEN = re.compile(r"^gen-(\d{6})$")
REINDEX = "run `brainrank reindex` to rebuild the indexes"
_PIN = re.compile(r"^gen-(\d{6})\.[0-9a-f-]+\.lock$")
# The writer lock that guards generations and the serving pointer.
WRITER = "ingest"


class Workspace:
    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser()

    # -- layout ---------------------------------------------------------------------------
    @property
    def store_path(self) -> Path:
        return self.root / "documents.sqlite"

    @property
    def indexes_dir(self) -> Path:
        return self.root / "indexes"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def exists(self) -> bool:
        return self.store_path.exists()

    def create(self) -> None:
        for d in (self.root, self.indexes_dir, self.models_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)

    def open_store(self) -> DocumentStore:
        self.create()
        return DocumentStore(self.store_path)

    # -- generations ----------------------------------------------------------------------
    def generation_dir(self, number: int) -> Path:
        return self.indexes_dir / f"gen-{number:06d}"

    def generations(self) -> list[int]:
        """Numbers of the complete generations on disk, oldest first."""
        if not self.indexes_dir.exists():
            return []
        found = []
        for p in self.indexes_dir.iterdir():
            m = _GEN.match(p.name)
            if m and (p / "manifest.json").exists():
                try:  # a generation whose manifest is damaged is not complete either
                    read_manifest(p / "manifest.json", REINDEX)
                except BrainrankError:
                    continue
                found.append(int(m.group(1)))
        return sorted(found)

    # -- the serving pointer -----------------------------------------------------------------
    @property
    def serving_file(self) -> Path:
        """The pointer naming the serving generation and champion (see ``index.serving``)."""
        return pointer_file(self.root)

    def serving_state(self) -> ServingState:
        """Generation and champion as one consistent read of the serving pointer."""
        return read_state(self.root)

    def current_generation(self, state: ServingState | None = None) -> int | None:
        """The generation the pointer names (checked to be complete); None before the first."""
        state = self.serving_state() if state is None else state
        if state.generation is None:
            return None
        if not (self.generation_dir(state.generation) / "manifest.json").exists():
            where = self.root / LEGACY_GENERATION if state.legacy else self.serving_file
            raise BrainrankError(
                f"{where} names generation {state.generation}, which is not a complete index "
                "generation; run `brainrank reindex` to rebuild the indexes"
            )
        return state.generation

    def set_serving(
        self, generation: int | None, champion: str | None, change: dict | None = None
    ) -> ServingState:
        """Make ``generation`` serve with model ``champion``, in one atomic write.

        The caller holds the writer lock and has read the state it changes under that lock.
        """
        self._require_writer()
        if generation is not None and generation not in self.generations():
            raise BrainrankError(f"index generation {generation} is missing or incomplete")
        return write_state(self.root, ServingState(generation, champion, change))

    def manifest(self, number: int) -> dict:
        """A generation's manifest, checked against its own checksum (BrainrankError if not)."""
        return read_manifest(self.generation_dir(number) / "manifest.json", REINDEX)

    def update_manifest(self, number: int, **fields) -> None:
        """Change fields of a generation's manifest atomically."""
        manifest = self.manifest(number)
        manifest.update(fields)
        write_text_atomic(
            self.generation_dir(number) / "manifest.json", json.dumps(seal(manifest), indent=2)
        )

    def activate(self, number: int, keep: int = 3) -> None:
        """Serve generation ``number`` with the same champion (one atomic write), then prune.

        Call with the writer lock held (ingest, reindex, recovery).
        """
        state = self.serving_state()
        self.set_serving(number, state.champion, state.change)
        self.prune(keep)

    def prune(self, keep: int = 3) -> list[int]:
        """Delete generations older than the newest ``keep``; returns their numbers.

        Never the one the pointer names, nor one a live process has pinned. Call with the
        writer lock held.
        """
        self._require_writer()
        protected = {self.serving_state().generation, *self._pinned()}
        gens = self.generations()
        doomed = [n for n in gens[: max(len(gens) - keep, 0)] if n not in protected]
        for old in doomed:
            shutil.rmtree(self.generation_dir(old), ignore_errors=True)
        return doomed

    @contextmanager
    def pin(self, number: int) -> Iterator[None]:
        """Keep generation ``number`` from being pruned while the block runs.

        A promotion pins the generation it prepared until it has switched to it. The pin is a
        lock file, so a killed process's pin no longer counts. Pinning does not wait for the
        writer lock: check under that lock that the generation still exists.
        """
        folder = self.indexes_dir / ".pins"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"gen-{number:06d}.{os.getpid()}-{secrets.token_hex(4)}.lock"
        lock = ProcessLock(path, timeout=0).acquire()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            lock.release()

    def _pinned(self) -> set[int]:
        """Generations pinned by live processes; pins of dead ones are removed."""
        folder = self.indexes_dir / ".pins"
        pinned: set[int] = set()
        for path in folder.glob("gen-*.lock") if folder.is_dir() else []:
            m = _PIN.match(path.name)
            if not m:
                continue
            probe = ProcessLock(path, timeout=0)
            if not probe.try_acquire():
                pinned.add(int(m.group(1)))
                continue
            try:
                path.unlink(missing_ok=True)
            finally:
                probe.release()
        return pinned

    def _require_writer(self) -> None:
        note = read_holder(self.root / f".{WRITER}.lock")
        if note is None or note["pid"] != os.getpid():
            raise RuntimeError(
                f"the serving pointer of {self.root} changes only under the writer lock; "
                "wrap the call in Workspace.writer_lock()"
            )

    def serving_generation(
        self, store_version: int, state: ServingState | None = None
    ) -> int | None:
        """The generation that should serve: the pointer's, moved forward past an interrupted swap.

        When the pointer's generation was built from an older store version and a complete,
        non-staged generation exists for ``store_version``, that one serves (its ingest
        committed but died before moving the pointer). Staged generations (built for a
        challenger model's encoder) serve only once a promotion switches to them. Read-only,
        so searches call it; pass ``state`` to use a pointer already read (with its champion).
        """
        current = self.current_generation(state)
        if current is not None and self.manifest(current).get("store_version") == store_version:
            return current
        for number in reversed(self.generations()):
            manifest = self.manifest(number)
            if manifest.get("store_version") == store_version and not manifest.get("staged"):
                return number
        return current

    def recover(self, store_version: int) -> int | None:
        """Finish a build interrupted after its commit and remove writers' temporary dirs."""
        if self.indexes_dir.exists():
            for p in self.indexes_dir.glob(".gen-*.tmp"):
                shutil.rmtree(p, ignore_errors=True)
        state = self.serving_state()
        number = self.serving_generation(store_version, state)
        if number is not None and number != state.generation:
            self.activate(number)
        return number

    def next_generation_number(self) -> int:
        gens = self.generations()
        return (gens[-1] if gens else 0) + 1

    # -- writers --------------------------------------------------------------------------
    @contextmanager
    def writer_lock(self, name: str = WRITER, timeout: float = 0.0) -> Iterator[None]:
        """Exclusive lock so two writers never build generations or move the pointer at once.

        Fails fast by default (cron runs must not pile up); ``timeout`` seconds > 0 waits.
        The BrainrankError raised names the lock file and the command holding it.
        """
        self.create()
        with ProcessLock(
            self.root / f".{name}.lock",
            timeout=timeout,
            what=f"another brainrank {name} is running on workspace {self.root}",
        ):
            yield
