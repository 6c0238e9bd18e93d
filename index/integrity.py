"""Checksums and cheap structural checks of artifact files, so damage is reported, never served.

A writer records :func:`describe_files` of the folder it wrote (each file's size and SHA-256,
and for a big file the SHA-256 of its first ``HEAD_BYTES`` too) in the manifest it writes last,
then :func:`seal` s that manifest (a checksum of the manifest itself). A reader calls
:func:`verify_files`: every file is hashed in full except the ones the caller calls large,
which on a cold start only get their size, head and (for ``.npy``) array header checked, so
loading stays fast at a million documents; ``full=True`` hashes those too (``brainrank
check``, activating a generation). Any difference raises :class:`DamagedArtifactError` naming
the file and the command that repairs it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError

CHUNK = 1 << 20
HEAD_BYTES = 1 << 20  # a big file's first MiB (headers, FAISS's index description) is hashed
SEAL = "checksum"  # the manifest field holding the manifest's own checksum


class DamagedArtifactError(BrainrankError):
    """An artifact file is missing, truncated or differs from the checksum recorded for it."""


def damaged(path: Path | str, why: str, repair: str) -> DamagedArtifactError:
    """The one-line error for a damaged file: what, why, and the command that repairs it."""
    return DamagedArtifactError(f"{path} is damaged ({why}); {repair}")


def file_sha256(path: Path, limit: int | None = None) -> str:
    """SHA-256 of a file (of its first ``limit`` bytes when given), read in 1 MiB blocks."""
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as fh:
        while left is None or left > 0:
            block = fh.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()


def describe_files(folder: Path, skip: Iterable[str] = ()) -> dict[str, dict]:
    """``{relative path: {"bytes", "sha256"[, "head_sha256"]}}`` of every file under ``folder``."""
    skipped = set(skip)
    out: dict[str, dict] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in skipped:
            continue
        size = path.stat().st_size
        entry = {"bytes": size, "sha256": file_sha256(path)}
        if size > HEAD_BYTES:
            entry["head_sha256"] = file_sha256(path, HEAD_BYTES)
        out[rel] = entry
    return out


def verify_files(
    folder: Path,
    files: dict,
    *,
    repair: str,
    full: bool = True,
    large: Callable[[str], bool] = lambda rel: False,
    seen: set | None = None,
) -> None:
    """Check each file of ``files`` (as :func:`describe_files` wrote it) under ``folder``.

    Files for which ``large(rel)`` holds are only checked for size, head and array header
    unless ``full``; every other file is hashed. ``seen`` (a set the caller keeps for one
    check) skips hashing a file again that was found sound under another name: index
    generations share segments by hard links, one inode under several folders.
    """
    if not isinstance(files, dict):
        raise damaged(folder, "its list of file checksums is malformed", repair)
    for rel, entry in files.items():
        path = folder / rel
        try:
            expected = int(entry["bytes"])
            size = path.stat().st_size
        except FileNotFoundError:
            raise damaged(path, "the file is missing", repair) from None
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise damaged(path, f"cannot check it: {exc}", repair) from None
        if size != expected:
            raise damaged(path, f"{size} bytes, {expected} were written", repair)
        try:
            if not full and large(rel) and "head_sha256" in entry:
                if file_sha256(path, HEAD_BYTES) != entry["head_sha256"]:
                    raise damaged(path, "its first bytes differ from the checksum written", repair)
                if path.suffix == ".npy":
                    check_npy(path, repair)
            else:
                st = path.stat()
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, entry.get("sha256"))
                if seen is not None and key in seen:
                    continue
                if file_sha256(path) != entry.get("sha256"):
                    raise damaged(path, "its checksum differs from the one written with it", repair)
                if seen is not None:
                    seen.add(key)
        except OSError as exc:
            raise damaged(path, f"cannot read it: {exc}", repair) from None


def check_npy(path: Path, repair: str) -> None:
    """Cheap structural check of an ``.npy`` file: its header parses and matches its size."""
    try:
        with open(path, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            if major == 1:
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            header = fh.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise damaged(path, f"not a readable array: {exc}", repair) from None
    if dtype.hasobject:
        raise damaged(path, "it holds Python objects, never written by brainrank", repair)
    want = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != want:
        raise damaged(path, f"{size} bytes, its {shape} {dtype} array needs {want}", repair)


def check_npy_files(folder: Path, repair: str) -> None:
    """``check_npy`` for every ``.npy`` under ``folder`` (artifacts written before checksums)."""
    for path in sorted(folder.rglob("*.npy")):
        check_npy(path, repair)


# ----- manifests -------------------------------------------------------------------------------


def _digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != SEAL}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal(manifest: dict) -> dict:
    """``manifest`` with its own checksum (over every other field) in ``"checksum"``."""
    return {**{k: v for k, v in manifest.items() if k != SEAL}, SEAL: _digest(manifest)}


def read_manifest(path: Path, repair: str) -> dict:
    """Parse a JSON manifest and check its seal; one written before seals is accepted as is."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise damaged(path, "the file is missing", repair) from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        raise damaged(path, f"not readable JSON: {exc}", repair) from None
    if not isinstance(manifest, dict):
        raise damaged(path, f"it holds a JSON {type(manifest).__name__}, not an object", repair)
    if not seal_ok(manifest):
        raise damaged(path, "its contents differ from its own checksum", repair)
    return manifest


def is_sealed(manifest: dict) -> bool:
    """Whether a manifest carries checksums (those written before this check carry none)."""
    return SEAL in manifest


def seal_ok(manifest: dict) -> bool:
    """False when a sealed manifest differs from its seal; an unsealed one passes."""
    return SEAL not in manifest or manifest[SEAL] == _digest(manifest)
