"""One model version: its folder name, its model.json and the checks every reader applies.

A version folder ``versions/v0007/`` holds ``model.json`` (parsed into :class:`ModelVersion`)
beside folders that are opaque here (``ranker/``, ``encoder/``, ``baseline.json``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from brainrank.index.errors import InputError

# The name of a version folder: "v" and at least four digits.
VERSION_NAME = re.compile(r"^v(\d{4,})$")


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
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_schema"]["names"])

    @property
    def ranker_dir(self) -> Path:
        return self.path / "ranker"


def read_meta(path: Path, where: str | None = None) -> dict:
    """Parse and check a model.json; ``where`` names it in errors (default: the path)."""
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
    if meta.get("version") != folder.name:
        raise InputError(f"{meta_path} says version {meta.get('version')!r}, not {folder.name}")
    if not is_timestamp(meta.get("created")):
        raise InputError(f'{meta_path}: "created" is not an ISO timestamp')
    return ModelVersion(folder.name, folder, meta)
