"""One model version: its folder name, its model.json and the checks every reader applies.

A version folder ``versions/v0007/`` holds ``model.json`` (parsed into :class:`ModelVersion`)
beside folders that are opaque here (``ranker/``, ``encoder/``, ``baseline.json``).

When a version is committed, model.json gets the size and SHA-256 of every file in the folder
(``"files"``, from :func:`version_files`) and a checksum of itself (``seal_meta``). Reading a
version checks that seal; :func:`verify_version` checks the files before a model is loaded for
serving (a bundled encoder by size and head only, unless ``full``) and in ``brainrank check``.
Versions committed before checksums carry none and are accepted as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from brainrank.index import jsontext
from brainrank.index.errors import InputError
from brainrank.index.integrity import describe_files, is_sealed, seal, seal_ok, verify_files

# The name of a version folder: "v" and at least four digits.
VERSION_NAME = re.compile(r"^v(\d{4,})$")
REPAIR = (
    "run `brainrank models rollback` or `brainrank models promote VERSION` to serve another "
    "version (`brainrank check` lists what is damaged)"
)
# Not recorded: model.json itself, and the ONNX export that serving writes on first use.
_UNRECORDED = ("model.json", "encoder/model.onnx", "encoder/onnx.json")


def version_name(number: int) -> str:
    """The folder name of version ``number``: 7 -> ``v0007``."""
    return f"v{number:04d}"


def now_iso() -> str:
    """The current UTC time as model.json and history.jsonl write it."""
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
    def has_ranker(self) -> bool:
        """False for a version that holds only an encoder (``brainrank adapt`` before any
        ranker was trained): it serves the fixed modes over its encoder's index."""
        return self.meta.get("kind") != "encoder"

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_schema"]["names"])

    @property
    def ranker_dir(self) -> Path:
        return self.path / "ranker"


def read_meta(path: Path, where: str | None = None) -> dict:
    """Parse and check a model.json; ``where`` names it in errors (default: the path)."""
    where = where or str(path)
    try:
        meta = jsontext.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # bad JSON (nested too deeply too) and UnicodeDecodeError
        raise InputError(f"{where} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise InputError(f"cannot read {where}: {exc.strerror or exc}") from None
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


def is_timestamp(value: object) -> bool:
    """Whether ``value`` is an ISO 8601 timestamp string."""
    try:
        datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def load_version(folder: Path) -> ModelVersion:
    """Read a committed version folder; InputError when its model.json is wrong for it."""
    meta_path = folder / "model.json"
    meta = read_meta(meta_path)
    if not seal_ok(meta):
        raise InputError(f"{meta_path} is damaged (its contents differ from its own checksum)")
    if meta.get("version") != folder.name:
        raise InputError(f"{meta_path} says version {meta.get('version')!r}, not {folder.name}")
    if not is_timestamp(meta.get("created")):
        raise InputError(f'{meta_path}: "created" is not an ISO timestamp')
    return ModelVersion(folder.name, folder, meta)


def version_files(folder: Path) -> dict[str, dict]:
    """The checksums of a finished version folder, for its model.json (``seal_meta``)."""
    return describe_files(folder, skip=_UNRECORDED)


def seal_meta(meta: dict, files: dict[str, dict]) -> dict:
    """``meta`` with the folder's file checksums and a checksum of itself, ready to write."""
    return seal({**meta, "files": files})


def verify_version(mv: ModelVersion, *, full: bool = False) -> bool:
    """Check a version's files against its model.json; ``DamagedArtifactError`` names a bad one.

    A bundled encoder's big files are checked by size and head unless ``full``. Returns False
    for a version committed before checksums (nothing to check against).
    """
    files = mv.meta.get("files")
    if files is None or not is_sealed(mv.meta):
        return False
    verify_files(
        mv.path, files, repair=REPAIR, full=full, large=lambda rel: rel.startswith("encoder/")
    )
    return True
