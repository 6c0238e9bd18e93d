"""Model archives: a version folder as a .tar.gz, written atomically and unpacked with care.

``Registry.export`` and ``Registry.import_archive`` number, check and commit versions; this
module only moves bytes between a folder and a tar file. An archive to import is untrusted:
nothing may land outside the target folder, links or special files are refused, and its size,
member count and unpacked bytes are capped (``ArchiveLimits``). The decompressed stream is
counted as it is read, so a small archive that would unpack to gigabytes (in a file, a long
name or a header) is refused after reading at most the cap, not after filling the disk.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from brainrank.index.atomic import atomic_file
from brainrank.index.errors import InputError


def write_archive(folder: Path, name: str, archive: Path) -> Path:
    """Write ``folder`` as ``name``/... into a .tar.gz (``archive``/``name``.tar.gz for a folder).

    The file appears under its final name only once complete; owners are left out.
    """
    archive = Path(archive).expanduser()
    if archive.is_dir():
        archive = archive / f"{name}.tar.gz"
    with atomic_file(archive, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
        tar.add(folder, arcname=name, filter=_anonymous)
    return archive


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on an archive to import.

    A model version is a ranker of a few MB plus, when its encoder was fine-tuned, that
    encoder (weights and ONNX export: ~200 MB for MiniLM, under 2 GB for a BERT-base). Weights
    barely compress, so a real archive unpacks to little more than its own size; one that
    would unpack to more than ``ratio`` times its size (plus ``slack``) is a bomb.
    """

    archive_bytes: int = 4 << 30
    members: int = 10_000
    unpacked_bytes: int = 8 << 30
    ratio: int = 20
    slack: int = 64 << 20

    def unpacked_for(self, archive_size: int) -> int:
        """The most bytes an archive of ``archive_size`` bytes may unpack to."""
        return min(self.unpacked_bytes, self.slack + self.ratio * archive_size)


class _TooBig(Exception):
    """The decompressed stream passed its cap."""


class _Capped:
    """A read-only stream that raises ``_TooBig`` once more than ``limit`` bytes were read."""

    def __init__(self, stream, limit: int):
        self._stream = stream
        self.limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        want = self.limit + 1 - self.count
        data = self._stream.read(want if size is None or size < 0 else min(size, want))
        self.count += len(data)
        if self.count > self.limit:
            raise _TooBig
        return data


def unpack_archive(archive: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()) -> None:
    """Check and extract a model archive into ``dest``, which then holds model.json.

    The archive may hold model.json at its root or inside one top folder (as exported). On
    failure (``InputError`` naming the archive) ``dest`` may hold part of it: the caller
    discards the folder.
    """
    archive, dest = Path(archive), Path(dest)
    size = archive.stat().st_size
    if size > limits.archive_bytes:
        raise InputError(
            f"{archive} is {size / 2**30:.1f} GiB; model archives are capped at "
            f"{limits.archive_bytes / 2**30:.0f} GiB"
        )
    budget = limits.unpacked_for(size)
    raw = dest / ".unpack"
    try:
        with _decompressed(archive) as stream:
            capped = _Capped(stream, budget)
            with tarfile.open(fileobj=capped, mode="r|") as tar:
                _extract(tar, archive, raw, limits, budget)
    except _TooBig:
        raise InputError(
            f"{archive} unpacks to more than {budget / 2**20:.0f} MiB ({size / 2**20:.1f} MiB "
            "compressed); refusing to import what looks like a decompression bomb"
        ) from None
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError) as exc:
        raise InputError(f"{archive} is not a readable model archive: {exc}") from None
    _lift(raw, dest, archive)


def _decompressed(archive: Path):
    """The archive's tar stream: gzip, bzip2 and xz are told apart by their magic bytes."""
    with archive.open("rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(archive, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(archive, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(archive, "rb")
    return archive.open("rb")


def _extract(tar: tarfile.TarFile, archive: Path, raw: Path, limits, budget: int) -> None:
    """Extract member by member (a stream cannot go back), checking each before its bytes."""
    members = total = 0
    for m in tar:
        members += 1
        if members > limits.members:
            raise InputError(
                f"{archive} holds more than {limits.members} members; model archives hold a few"
            )
        p = PurePosixPath(m.name)
        # An archive is untrusted: nothing may land outside the target folder.
        if p.is_absolute() or ".." in p.parts:
            raise InputError(f"{archive}: unsafe member {m.name!r}; refusing to import")
        if not (m.isdir() or (m.isreg() and not m.issparse())):
            raise InputError(
                f"{archive}: member {m.name!r} is a link or special file; "
                "model archives hold only files and folders"
            )
        if not p.parts:  # "." is the archive root itself
            continue
        target = raw.joinpath(*p.parts)
        if m.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        total += m.size
        if total > budget:
            raise _TooBig
        target.parent.mkdir(parents=True, exist_ok=True)
        with tar.extractfile(m) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


def _lift(raw: Path, dest: Path, archive: Path) -> None:
    """Move the version's files from the unpacked tree into ``dest``: from its root when it
    holds model.json, else from its one top folder."""
    tops = list(raw.iterdir()) if raw.is_dir() else []
    if (raw / "model.json").is_file():
        root = raw
    elif len(tops) == 1 and (tops[0] / "model.json").is_file():
        root = tops[0]
    else:
        raise InputError(f"{archive} has no model.json; it is not a model archive")
    try:
        for entry in list(root.iterdir()):
            if entry != raw:
                os.replace(entry, dest / entry.name)
        shutil.rmtree(raw)
    except OSError as exc:
        raise InputError(f"{archive} is not a readable model archive: {exc}") from None
