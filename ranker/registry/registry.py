"""The model registry: numbered, immutable model versions and an atomically swapped champion.

Layout under ``Workspace.models_dir``::

    versions/v0007/model.json   metadata; a folder without it is not a version
    versions/v0007/ranker/      opaque here, like encoder/ and baseline.json
    CHAMPION                    one line naming the serving version, replaced atomically
    history.jsonl               one JSON line per promotion or rollback
    .staging/                   versions being written; each writer holds a lock file there
    .registry.lock              serialises numbering, pointer moves and pruning

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
import or prune removes it. (``index.atomic.atomic_directory`` is not used because the final
name is only known once the lock is held, and it would overwrite an existing folder.)

``export`` and ``import_archive`` move versions between workspaces as .tar.gz files; the tar
handling (atomic writing, refusing unsafe members) is ``ranker.registry.archive``'s.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from brainrank.index.atomic import write_text_atomic
from brainrank.index.errors import BrainrankError, InputError
from brainrank.ranker.registry.archive import unpack_archive, write_archive

log = logging.getLogger(__name__)

_NAME = re.compile(r"^v(\d{4,})$")
_ALIAS = re.compile(r"^v?(\d+)$", re.IGNORECASE)
_FIX_POINTER = "run `brainrank models promote VERSION` or `brainrank models rollback`"


def version_name(number: int) -> str:
    """The folder name of version ``number``: 7 -> ``v0007``."""
    return f"v{number:04d}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ModelVersion:
    """One complete version folder and its parsed model.json."""

    version: str
    path: Path
    meta: dict

    @property
    def number(self) -> int:
        return int(self.version[1:])

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.meta["created"])

    @property
    def parent(self) -> str | None:
        return self.meta.get("parent")

    @property
    def metrics(self) -> dict:
        return dict(self.meta.get("metrics") or {})

    @property
    def encoder_fingerprint(self) -> str | None:
        return (self.meta.get("encoder") or {}).get("fingerprint")

    @property
    def bundled_encoder(self) -> Path | None:
        """The fine-tuned encoder folder shipped in this version, or None for a shared one."""
        if (self.meta.get("encoder") or {}).get("bundled"):
            return self.path / "encoder"
        return None

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_schema"]["names"])

    @property
    def ranker_dir(self) -> Path:
        return self.path / "ranker"


def _read_meta(path: Path, where: str | None = None) -> dict:
    where = where or str(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InputError(f"{where} is not valid JSON: {exc}") from None
    check_meta(meta, where)
    return meta


def check_meta(meta: object, where: str) -> None:
    """Raise InputError unless ``meta`` has the fields every model.json needs."""
    if not isinstance(meta, dict):
        raise InputError(f"{where} must hold a JSON object, not {type(meta).__name__}")
    schema = meta.get("feature_schema")
    if not isinstance(schema, dict):
        raise InputError(f"{where} lacks \"feature_schema\" ({{'version': int, 'names': [...]}})")
    names = schema.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{where}: feature_schema.names must be a list of strings")
    if not isinstance(schema.get("version"), int):
        raise InputError(f"{where}: feature_schema.version must be an integer")
    if "encoder" in meta and not isinstance(meta["encoder"], dict):
        raise InputError(f'{where}: "encoder" must be an object {{name, fingerprint, bundled}}')


def _is_timestamp(value: object) -> bool:
    try:
        datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _load(folder: Path) -> ModelVersion:
    meta_path = folder / "model.json"
    meta = _read_meta(meta_path)
    if meta.get("version") != folder.name:
        raise InputError(f"{meta_path} says version {meta.get('version')!r}, not {folder.name}")
    if not _is_timestamp(meta.get("created")):
        raise InputError(f'{meta_path}: "created" is not an ISO timestamp')
    return ModelVersion(folder.name, folder, meta)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Draft:
    lock: IO[str]
    parent: str | None
    imported_from: str | None = None


# Keyed by absolute path so any Registry object in this process can commit a draft.
_DRAFTS: dict[Path, _Draft] = {}


class Registry:
    """Model versions under ``models_dir`` (normally ``Workspace.models_dir``)."""

    def __init__(self, models_dir: Path | str):
        self.models_dir = Path(models_dir).expanduser().absolute()
        self.problems: list[str] = []  # warnings from the last versions()/history() call
        self.last_committed: ModelVersion | None = None

    @property
    def versions_dir(self) -> Path:
        return self.models_dir / "versions"

    @property
    def staging_dir(self) -> Path:
        return self.models_dir / ".staging"

    @property
    def champion_file(self) -> Path:
        return self.models_dir / "CHAMPION"

    @property
    def history_file(self) -> Path:
        return self.models_dir / "history.jsonl"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the registry lock; held only for quick steps, so waiting is fine."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with open(self.models_dir / ".registry.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- writing ---------------------------------------------------------------------------
    def begin(self, parent: str | None = None) -> Path:
        """Start a version: an empty folder to write into, to pass to commit() or abort()."""
        parent_name = self.get(parent).version if parent is not None else None
        with self._locked():
            self._clean_staging()
            self.staging_dir.mkdir(exist_ok=True)
            token = f"{os.getpid()}-{secrets.token_hex(6)}"
            lock = open(self.staging_dir / f"{token}.lock", "w")  # held until commit/abort
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            tmp = self.staging_dir / token
            tmp.mkdir()
        _DRAFTS[tmp] = _Draft(lock, parent_name)
        return tmp

    def commit(self, tmp: Path) -> ModelVersion:
        """Number the draft and move it into versions/; a failed commit discards the draft."""
        tmp = Path(tmp).absolute()
        draft = _DRAFTS.get(tmp)
        if draft is None:
            raise BrainrankError(f"{tmp} is not an open draft; start one with Registry.begin()")
        try:
            meta_path = tmp / "model.json"
            if not meta_path.is_file():
                raise BrainrankError(
                    f"the new model version has no model.json (in {tmp}); the trainer must "
                    "write it last, after the ranker files"
                )
            meta = _read_meta(meta_path)
            if (meta.get("encoder") or {}).get("bundled") and not (tmp / "encoder").is_dir():
                raise BrainrankError(
                    f"{meta_path} says the encoder is bundled but there is no encoder/ folder"
                )
            with self._locked():
                number = self._next_number()
                name = version_name(number)
                meta["version"] = name
                if draft.imported_from is not None:
                    meta["imported_from"] = draft.imported_from
                    meta["imported"] = _now()
                    meta["parent"] = None  # the source registry's numbers mean nothing here
                    if not _is_timestamp(meta.get("created")):
                        meta["created"] = meta["imported"]
                else:
                    meta["created"] = _now()
                    meta["parent"] = draft.parent or meta.get("parent")
                write_text_atomic(meta_path, json.dumps(meta, indent=2) + "\n")
                os.replace(tmp, self.versions_dir / name)
                _fsync_dir(self.versions_dir)
                write_text_atomic(self.versions_dir / ".last_number", f"{number}\n")
            mv = _load(self.versions_dir / name)
        finally:
            self.abort(tmp)
        self.last_committed = mv
        return mv

    def abort(self, tmp: Path) -> None:
        """Discard a draft and release its lock (nothing happens for an unknown folder)."""
        tmp = Path(tmp).absolute()
        draft = _DRAFTS.pop(tmp, None)
        if draft is None:
            return
        shutil.rmtree(tmp, ignore_errors=True)
        Path(f"{tmp}.lock").unlink(missing_ok=True)
        draft.lock.close()

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

    def _next_number(self) -> int:
        taken = [0]
        for p in self.versions_dir.iterdir():
            if m := _NAME.match(p.name):  # complete or not, the name is taken
                taken.append(int(m.group(1)))
        try:
            taken.append(int((self.versions_dir / ".last_number").read_text().strip()))
        except (OSError, ValueError):
            pass
        return max(taken) + 1

    def _clean_staging(self) -> None:
        """Remove drafts whose writer died (its lock is free); call with the registry lock."""
        if not self.staging_dir.is_dir():
            return
        for lock_path in self.staging_dir.glob("*.lock"):
            with open(lock_path, "a") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer
                shutil.rmtree(lock_path.with_suffix(""), ignore_errors=True)
                lock_path.unlink(missing_ok=True)
        for entry in self.staging_dir.iterdir():
            if entry.is_dir() and not Path(f"{entry}.lock").exists():
                shutil.rmtree(entry, ignore_errors=True)

    # -- reading ---------------------------------------------------------------------------
    def versions(self) -> list[ModelVersion]:
        """Complete versions, oldest first; unreadable ones are skipped and noted in problems."""
        self.problems = []
        if not self.versions_dir.is_dir():
            return []
        found = []
        for p in self.versions_dir.iterdir():
            if not (_NAME.match(p.name) and (p / "model.json").is_file()):
                continue
            try:
                found.append(_load(p))
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
                raise InputError("no model has been promoted yet; run `brainrank models promote`")
            return mv
        m = _ALIAS.match(key)
        if m:
            folder = self.versions_dir / version_name(int(m.group(1)))
            if (folder / "model.json").is_file():
                try:
                    return _load(folder)
                except InputError as exc:
                    raise BrainrankError(f"model version {folder.name} is corrupt: {exc}") from None
        known = ", ".join(v.version for v in self.versions()) or "none yet"
        raise InputError(
            f"unknown model version {version!r}; known versions: {known} (or 'champion')"
        )

    def _pointer(self) -> str | None:
        try:
            return self.champion_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None

    def champion(self) -> ModelVersion | None:
        """The version CHAMPION names; None before the first promotion."""
        name = self._pointer()
        if name is None:
            return None
        folder = self.versions_dir / name
        if not _NAME.match(name) or not (folder / "model.json").is_file():
            raise BrainrankError(
                f"{self.champion_file} names {name!r}, which is not a complete model version; "
                f"{_FIX_POINTER}"
            )
        try:
            return _load(folder)
        except InputError as exc:
            raise BrainrankError(f"the champion is corrupt: {exc}; {_FIX_POINTER}") from None

    def history(self) -> list[dict]:
        """Promotions and rollbacks, oldest first; unreadable lines are noted in problems."""
        self.problems = []
        if not self.history_file.exists():
            return []
        entries = []
        lines = self.history_file.read_text(encoding="utf-8").splitlines()
        for lineno, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if isinstance(entry, dict):
                entries.append(entry)
            elif line.strip():
                self.problems.append(f"{self.history_file}:{lineno}: not a JSON object, skipped")
        return entries

    def _rollback_target(self, current: str | None) -> str | None:
        """The champion before ``current``: replay history as a stack, rollback = pop."""
        stack: list[str] = []
        for entry in self.history():
            v = entry.get("version")
            if not isinstance(v, str):
                continue
            if entry.get("action") == "rollback" and stack:
                stack.pop()
            if not stack or stack[-1] != v:
                stack.append(v)
        if current is not None and (not stack or stack[-1] != current):
            stack.append(current)  # the pointer moved without a history line (crash)
        return stack[-2] if len(stack) >= 2 else None

    # -- champion --------------------------------------------------------------------------
    def _set_champion(self, action: str, version: str, previous: str | None) -> None:
        write_text_atomic(self.champion_file, version + "\n")
        line = json.dumps(
            {"time": _now(), "action": action, "version": version, "previous": previous}
        )
        with open(self.history_file, "ab+") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():  # a writer killed mid-line must not swallow this line
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write(line.encode("utf-8") + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    def promote(self, version: str) -> ModelVersion:
        """Make ``version`` the champion (atomic pointer swap) and record it in history."""
        with self._locked():
            target = self.get(version)
            previous = self._pointer()
            if previous != target.version:
                self._set_champion("promote", target.version, previous)
        return target

    def rollback(self) -> ModelVersion:
        """Make the champion before the current one champion again."""
        with self._locked():
            current = self._pointer()
            target = self._rollback_target(current)
            if target is None:
                raise BrainrankError(
                    f"no earlier champion in {self.history_file} to roll back to; "
                    "promote a version with `brainrank models promote VERSION`"
                )
            try:
                mv = self.get(target)
            except InputError:
                raise BrainrankError(
                    f"the previous champion {target} no longer exists (pruned or deleted); "
                    "promote a version with `brainrank models promote VERSION`"
                ) from None
            self._set_champion("rollback", mv.version, current)
        return mv

    def prune(self, keep: int = 10) -> list[str]:
        """Delete versions older than the newest ``keep``, never the champion or the previous one.

        Returns the deleted names. Each folder is first renamed into .staging/, so a kill
        mid-delete leaves no half-version behind.
        """
        if keep < 0:
            raise InputError(f"keep must be 0 or more, got {keep}")
        with self._locked():
            self._clean_staging()
            champion = self.champion()
            current = champion.version if champion else None
            protected = {current, self._rollback_target(current)}
            old = self.versions()
            old = old[: max(len(old) - keep, 0)]
            doomed = [v for v in old if v.version not in protected]
            self.staging_dir.mkdir(exist_ok=True)
            for v in doomed:
                grave = self.staging_dir / f"pruned-{v.version}-{secrets.token_hex(4)}"
                os.replace(v.path, grave)
                shutil.rmtree(grave, ignore_errors=True)
        return [v.version for v in doomed]

    # -- archives --------------------------------------------------------------------------
    def export(self, version: str, archive: Path) -> Path:
        """Write the version folder as a .tar.gz (into ``archive``/vNNNN.tar.gz for a folder)."""
        mv = self.get(version)
        return write_archive(mv.path, mv.version, archive)

    def import_archive(self, archive: Path) -> ModelVersion:
        """Add an exported version under a new number; its old name goes in "imported_from"."""
        archive = Path(archive).expanduser()
        if not archive.is_file():
            raise InputError(f"model archive {archive} does not exist")
        tmp = self.begin()
        try:
            unpack_archive(archive, tmp)
            meta = _read_meta(tmp / "model.json", where=f"model.json in {archive}")
            original = meta.get("version")
            _DRAFTS[tmp].imported_from = original if isinstance(original, str) else archive.name
        except BaseException:
            self.abort(tmp)
            raise
        return self.commit(tmp)
