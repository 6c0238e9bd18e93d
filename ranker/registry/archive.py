"""Model archives: a version folder as a .tar.gz, written atomically and unpacked with care.

``Registry.export`` and ``Registry.import_archive`` number, check and commit versions; this
module only moves bytes between a folder and a tar file. An archive to import is untrusted:
nothing may land outside the target folder, and links or special files are refused.
"""

from __future__ import annotations

import shutil
import tarfile
import zlib
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


def unpack_archive(archive: Path, dest: Path) -> None:
    """Check and extract a model archive into ``dest``, which then holds model.json.

    The archive may hold model.json at its root or inside one top folder (as exported).
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            paths = []
            for m in members:
                p = PurePosixPath(m.name)
                # An archive is untrusted: nothing may land outside the target folder.
                if p.is_absolute() or ".." in p.parts:
                    raise InputError(f"{archive}: unsafe member {m.name!r}; refusing to import")
                if not (m.isfile() or m.isdir()):
                    raise InputError(
                        f"{archive}: member {m.name!r} is a link or special file; "
                        "model archives hold only files and folders"
                    )
                if p.parts:  # "." is the archive root itself
                    paths.append((p.parts, m))
            files = {parts for parts, m in paths if m.isfile()}
            tops = {parts[0] for parts, _ in paths}
            if ("model.json",) in files:
                prefix: tuple[str, ...] = ()
            elif len(tops) == 1 and (next(iter(tops)), "model.json") in files:
                prefix = (next(iter(tops)),)
            else:
                raise InputError(f"{archive} has no model.json; it is not a model archive")
            for parts, m in paths:
                rel = parts[len(prefix) :]
                if not rel:
                    continue
                target = dest.joinpath(*rel)
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise InputError(f"{archive} is not a readable model archive: {exc}") from None
