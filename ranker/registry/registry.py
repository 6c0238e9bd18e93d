"""The model registry: numbered, immutable model versions and the champion that serves.

Layout under ``Workspace.models_dir`` (the registry's folder is always ``<workspace>/models``)::

    versions/v0007/model.json   metadata; a folder without it is not a version
    versions/v0007/ranker/      opaque here, like encoder/ and baseline.json
    history.jsonl               one JSON line per promotion or rollback
    .staging/                   versions being written; each writer holds a lock file there
    .registry.lock              serialises numbering, pointer moves and pruning (its holder
                                writes .registry.lock.holder, named when a waiter gives up)

Writing a version, two equivalent forms::

    tmp = registry.begin(parent="champion")   # empty folder in .staging/
    ...write ranker/, encoder/, baseline.json, then model.json last...
    mv = registry.commit(tmp)                  # -> ModelVersion("v0008", ...)

    with registry.new_version(parent="champion") as tmp:
        ...same writes; an exception discards the folder...
    mv = registry.last_committed

The caller writes model.json; ``commit`` fills in "version", "created" and "parent" and
rewrites it, then renames the folder to its number in one ``os.replace``. A version folder
therefore appears complete or not at all, and numbers are handed out under a file lock, so two
trainings never get the same one. Numbers are never reused, even after pruning. A writer killed
mid-way leaves only a folder in ``.staging/``; its lock dies with it, and the next ``begin``,
import or prune removes it. The rename is ``index.atomic.replace_directory(overwrite=False)``
(the name is known only under the lock, and a folder is never replaced); the locks are
``index.locks.ProcessLock`` (a step waits ``lock_timeout`` s, then names the lock's holder).
Draft folders, their locks and the numbering are ``ranker.registry.drafts``'s.

The champion is named by the workspace's serving pointer (``index.serving``), together with
the index generation it serves over, so the two change in one atomic write: ``switch`` writes
it under the workspace writer lock (taken before the registry lock, never after), then appends
the history line; a line lost to a kill is restored from the pointer's record of the change.
``promote`` and ``rollback`` here keep the serving generation; ``ranker.registry.promotion``
first prepares a generation embedded by the model's encoder, then switches.

``export`` and ``import_archive`` move versions between workspaces as .tar.gz files; the tar
handling (atomic writing, refusing unsafe members) is ``ranker.registry.archive``'s; reading
model.json into a ``ModelVersion`` is ``ranker.registry.version``'s.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from brainrank.index.atomic import replace_directory, write_text_atomic
from brainrank.index.errors import BrainrankError, InputError
from brainrank.index.integrity import DamagedArtifactError
from brainrank.index.locks import WAIT_SECONDS, ProcessLock
from brainrank.index.serving import LEGACY_CHAMPION, ServingState
from brainrank.index.workspace import Workspace
from brainrank.ranker.registry import drafts
from brainrank.ranker.registry.archive import write_archive
from brainrank.ranker.registry.history import (
    append_entry,
    change,
    missing_change,
    previous_champion,
    read_history,
)
from brainrank.ranker.registry.imported import unpack_version
from brainrank.ranker.registry.retention import prune, withdraw
from brainrank.ranker.registry.version import (
    VERSION_NAME,
    ModelVersion,
    load_version,
    read_meta,
    seal_meta,
    verify_version,
    version_files,
    version_name,
)

log = logging.getLogger(__name__)


class ChampionMoved(BrainrankError):
    """Another command changed the champion a promotion or rollback was planned against."""

    def __init__(self, message: str, now: str | None):
        super().__init__(message)
        self.now = now  # the champion that serves instead


_ALIAS = re.compile(r"^v?(\d+)$", re.IGNORECASE)
_FIX_POINTER = "run `brainrank models promote VERSION` or `brainrank models rollback`"
_ANY = object()  # switch(expect=...) default: whatever the champion is
ANY_CHAMPION = _ANY  # for callers that pass ``expect`` through


class Registry:
    """Model versions under ``models_dir`` (normally ``Workspace.models_dir``)."""

    def __init__(self, models_dir: Path | str, *, lock_timeout: float = WAIT_SECONDS):
        self.models_dir = Path(models_dir).expanduser().absolute()
        self.lock_timeout = lock_timeout  # seconds a step waits for another process's step
        self.problems: list[str] = []  # warnings from the last versions()/history() call
        self.last_committed: ModelVersion | None = None

    @property
    def versions_dir(self) -> Path:
        return self.models_dir / "versions"

    @property
    def staging_dir(self) -> Path:
        return self.models_dir / ".staging"

    @property
    def workspace(self) -> Workspace:
        """The workspace whose serving pointer names the champion."""
        return Workspace(self.models_dir.parent)

    @property
    def history_file(self) -> Path:
        return self.models_dir / "history.jsonl"

    def locked(self) -> ProcessLock:
        """The registry lock, for a ``with``; held only for quick steps, so waiting is fine."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        return ProcessLock(
            self.models_dir / ".registry.lock",
            timeout=self.lock_timeout,
            what=f"the model registry {self.models_dir} is busy",
        )

    # -- writing ---------------------------------------------------------------------------
    def begin(self, parent: str | None = None) -> Path:
        """Start a version: an empty folder to write into, to pass to commit() or abort()."""
        parent_name = self.get(parent).version if parent is not None else None
        with self.locked():
            drafts.clean(self.staging_dir)
            return drafts.open_draft(self.staging_dir, parent_name)

    def commit(self, tmp: Path) -> ModelVersion:
        """Number the draft and move it into versions/; a failed commit discards the draft."""
        tmp = Path(tmp).absolute()
        draft = drafts.DRAFTS.get(tmp)
        if draft is None:
            raise BrainrankError(f"{tmp} is not an open draft; start one with Registry.begin()")
        try:
            meta_path = tmp / "model.json"
            if not meta_path.is_file():
                raise BrainrankError(
                    f"the new model version has no model.json (in {tmp}); the trainer must "
                    "write it last, after the ranker files"
                )
            meta = read_meta(meta_path)
            if (meta.get("encoder") or {}).get("bundled") and not (tmp / "encoder").is_dir():
                raise BrainrankError(
                    f"{meta_path} says the encoder is bundled but there is no encoder/ folder"
                )
            files = version_files(tmp)  # hashed before the lock: an encoder is ~100 MB
            with self.locked():
                number = drafts.next_number(self.versions_dir)
                name = version_name(number)
                meta = seal_meta(drafts.stamp(meta, name, draft), files)
                write_text_atomic(meta_path, json.dumps(meta, indent=2) + "\n")
                replace_directory(tmp, self.versions_dir / name, overwrite=False)
                write_text_atomic(self.versions_dir / ".last_number", f"{number}\n")
            mv = load_version(self.versions_dir / name)
        finally:
            self.abort(tmp)
        self.last_committed = mv
        return mv

    def abort(self, tmp: Path) -> None:
        """Discard a draft and release its lock (nothing happens for an unknown folder)."""
        drafts.discard(Path(tmp).absolute())

    @contextmanager
    def new_version(self, parent: str | None = None) -> Iterator[Path]:
        """``begin`` + ``commit`` as a block; the result is in ``self.last_committed``."""
        tmp = self.begin(parent)
        try:
            yield tmp
        except BaseException:
            self.abort(tmp)
            raise
        self.commit(tmp)

    def clean_staging(self) -> None:
        """Remove drafts whose writer died (``drafts.clean``); call with the registry lock."""
        drafts.clean(self.staging_dir)

    # -- reading ---------------------------------------------------------------------------
    def no_champion(self) -> str:
        """Why nothing serves the learned mode, and what to run: promote a version there is,
        or train the first."""
        if self.versions():
            return (
                "no model has been promoted yet; promote one with `brainrank models promote "
                "VERSION` (`brainrank models list` shows them)"
            )
        return "no learned model yet: train one with `brainrank train --queries FILE --qrels FILE`"

    def versions(self) -> list[ModelVersion]:
        """Complete versions, oldest first; unreadable ones are skipped and noted in problems."""
        self.problems = []
        if not self.versions_dir.is_dir():
            return []
        found = []
        for p in self.versions_dir.iterdir():
            if not (VERSION_NAME.match(p.name) and (p / "model.json").is_file()):
                continue
            try:
                found.append(load_version(p))
            except (BrainrankError, OSError) as exc:
                self.problems.append(f"skipped model version {p.name}: {exc}")
                log.warning(self.problems[-1])
        return sorted(found, key=lambda v: v.number)

    def get(self, version: str) -> ModelVersion:
        """A version by name: "v0007", "v7", "7" or "champion"."""
        key = str(version).strip()
        if key.lower() == "champion":
            mv = self.champion()
            if mv is None:
                raise InputError(self.no_champion())
            return mv
        m = _ALIAS.match(key)
        if m:
            folder = self.versions_dir / version_name(int(m.group(1)))
            if (folder / "model.json").is_file():
                try:
                    return load_version(folder)
                except InputError as exc:
                    raise BrainrankError(f"model version {folder.name} is corrupt: {exc}") from None
        known = ", ".join(v.version for v in self.versions()) or "none yet"
        raise InputError(
            f"unknown model version {version!r}; known versions: {known} (or 'champion')"
        )

    def champion(self, state: ServingState | None = None) -> ModelVersion | None:
        """The version the serving pointer names; None before the first promotion.

        ``state``: a pointer already read (so generation and champion come from one read).
        """
        state = self.workspace.serving_state() if state is None else state
        name = state.champion
        if name is None:
            return None
        folder = self.versions_dir / name
        if not VERSION_NAME.match(name) or not (folder / "model.json").is_file():
            where = self.models_dir.parent / LEGACY_CHAMPION if state.legacy else None
            where = where or self.workspace.serving_file
            raise BrainrankError(
                f"{where} names model {name!r}, which is not a complete model version; "
                f"{_FIX_POINTER}"
            )
        try:
            return load_version(folder)
        except InputError as exc:
            raise BrainrankError(f"the champion is corrupt: {exc}; {_FIX_POINTER}") from None

    def history(self) -> list[dict]:
        """Promotions and rollbacks, oldest first; unreadable lines are noted in problems."""
        entries, self.problems = read_history(self.history_file)
        return entries

    def rollback_target(self, state: ServingState | None = None) -> ModelVersion:
        """The champion before the current one (what ``rollback`` returns to)."""
        state = self.workspace.serving_state() if state is None else state
        target = previous_champion(self.history(), state)
        if target is None:
            raise BrainrankError(
                f"no earlier champion in {self.history_file} to roll back to; "
                "promote a version with `brainrank models promote VERSION`"
            )
        try:
            return self.get(target)
        except InputError:
            raise BrainrankError(
                f"the previous champion {target} no longer exists (pruned or deleted); "
                "promote a version with `brainrank models promote VERSION`"
            ) from None

    # -- champion --------------------------------------------------------------------------
    def switch(
        self, action: str, version: str, *, generation: int | None = None, expect=_ANY
    ) -> ModelVersion:
        """Make ``version`` the champion over ``generation`` (default: the one serving now).

        One atomic write of the serving pointer, then the history line. The caller holds the
        workspace writer lock. ``expect`` is the champion the caller planned against (a
        rollback's): if another process has moved it since, nothing changes and the error says
        so. A no-op when the pair already serves.
        """
        ws = self.workspace
        with self.locked():
            state = ws.serving_state()
            self._restore_history(state)
            if expect is not _ANY and state.champion != expect:
                raise ChampionMoved(
                    f"the champion changed from {expect} to {state.champion} while the {action} "
                    "was getting ready; nothing was changed, run it again",
                    state.champion,
                )
            mv = self.get(version)
            number = state.generation if generation is None else generation
            if (state.champion, state.generation) == (mv.version, number):
                return mv
            entry = state.change
            if state.champion != mv.version:
                entry = change(action, mv.version, state.champion)
            ws.set_serving(number, mv.version, entry)
            if entry is not state.change:
                append_entry(self.history_file, entry)
        return mv

    def _restore_history(self, state: ServingState) -> None:
        """Append the pointer's last change when its history line was lost to a kill."""
        lost = missing_change(self.history(), state)
        if lost is not None:
            append_entry(self.history_file, lost)

    def promote(self, version: str) -> ModelVersion:
        """Make ``version`` the champion over the serving generation, and record it in history.

        No re-embedding: ``ranker.registry.promotion.promote`` prepares the index first.
        """
        with self.workspace.writer_lock(timeout=self.lock_timeout):
            return self.switch("promote", version)

    def rollback(self) -> ModelVersion:
        """Make the champion before the current one champion again (same generation)."""
        with self.workspace.writer_lock(timeout=self.lock_timeout):
            state = self.workspace.serving_state()
            target = self.rollback_target(state)
            return self.switch("rollback", target.version, expect=state.champion)

    def prune(self, keep: int = 10) -> list[str]:
        """Delete versions older than the newest ``keep`` (``retention.prune``)."""
        return prune(self, keep)

    def withdraw(self, version: str) -> None:
        """Delete a version that never served (``retention.withdraw``)."""
        withdraw(self, version)

    # -- archives --------------------------------------------------------------------------
    def export(self, version: str, archive: Path) -> Path:
        """Write the version folder as a .tar.gz (into ``archive``/vNNNN.tar.gz for a folder)."""
        mv = self.get(version)
        try:
            verify_version(mv, full=True)  # an archive of damaged files would pass as sound
        except DamagedArtifactError as exc:
            raise BrainrankError(f"model {mv.version} was not exported: {exc}") from None
        return write_archive(mv.path, mv.version, archive)

    def import_archive(self, archive: Path) -> ModelVersion:
        """Add an exported version under a new number; its old name goes in "imported_from"."""
        tmp = self.begin()
        try:
            drafts.DRAFTS[tmp].imported_from = unpack_version(Path(archive).expanduser(), tmp)
        except BaseException:
            self.abort(tmp)
            raise
        return self.commit(tmp)
