"""The workspace directory: documents, index generations, models and logs of one deployment.

Index generations make ingest crash-safe. A generation ``indexes/gen-000007`` is written in
full under a temporary name, renamed into place, and only then named in ``indexes/CURRENT``.
Each generation records the document-store version it was built from; the store commits its
change just before the pointer moves, and :meth:`Workspace.recover` moves the pointer forward
if a process died between the two steps. Until then searches keep using the old generation.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from brainrank.index.atomic import write_text_atomic
from brainrank.index.errors import BrainrankError
from brainrank.index.locks import ProcessLock
from brainrank.index.store import DocumentStore

_GEN = re.compile(r"^gen-(\d{6})$")


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
                found.append(int(m.group(1)))
        return sorted(found)

    def current_generation(self) -> int | None:
        pointer = self.indexes_dir / "CURRENT"
        if not pointer.exists():
            return None
        name = pointer.read_text().strip()
        m = _GEN.match(name)
        if not m or not (self.indexes_dir / name / "manifest.json").exists():
            raise BrainrankError(
                f"{pointer} names {name!r}, which is not a complete index generation; "
                "run `brainrank reindex` to rebuild the indexes"
            )
        return int(m.group(1))

    def manifest(self, number: int) -> dict:
        return json.loads((self.generation_dir(number) / "manifest.json").read_text())

    def update_manifest(self, number: int, **fields) -> None:
        """Change fields of a generation's manifest atomically."""
        manifest = self.manifest(number)
        manifest.update(fields)
        write_text_atomic(
            self.generation_dir(number) / "manifest.json", json.dumps(manifest, indent=2)
        )

    def activate(self, number: int, keep: int = 3) -> None:
        """Point CURRENT at generation ``number`` atomically, then prune old generations."""
        write_text_atomic(self.indexes_dir / "CURRENT", f"gen-{number:06d}\n")
        for old in self.generations()[:-keep]:
            if old != number:
                shutil.rmtree(self.generation_dir(old), ignore_errors=True)

    def serving_generation(self, store_version: int) -> int | None:
        """The generation that should serve: CURRENT, moved forward past an interrupted swap.

        When CURRENT was built from an older store version and a complete, non-staged
        generation exists for ``store_version``, that one serves (its ingest committed but
        died before moving the pointer). Staged generations (built for a challenger model's
        encoder) serve only once a promotion activates them. Read-only, so searches call it.
        """
        current = self.current_generation()
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
        number = self.serving_generation(store_version)
        if number is not None and number != self.current_generation():
            self.activate(number)
        return number

    def next_generation_number(self) -> int:
        gens = self.generations()
        return (gens[-1] if gens else 0) + 1

    # -- writers --------------------------------------------------------------------------
    @contextmanager
    def writer_lock(self, name: str = "ingest", timeout: float = 0.0) -> Iterator[None]:
        """Exclusive lock so two writers never build generations at once.

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
