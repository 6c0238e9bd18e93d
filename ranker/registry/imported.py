"""Unpacking and checking an imported model version before it is committed: nothing in it may
name code.

An archive comes from elsewhere. Its ranker must be weights that a model built in code reads
(``ranker.weights.h5``) or the portable numpy arrays (``weights.npz`` and ``portable.json``):
a ranker held only as ``model.keras`` is refused, because a Keras model config can make Keras
import any installed module, whatever ``safe_mode`` says. The parts this module recognises
(a brainrank ranker, a Hugging Face or two-tower encoder) are read the safe way (JSON, numpy
without pickle, safetensors headers) to prove them usable, so a broken archive fails its
import instead of the first search after it. Folders in other layouts pass unchecked.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from brainrank.index.errors import BrainrankError, InputError
from brainrank.index.integrity import DamagedArtifactError, is_sealed, seal_ok, verify_files
from brainrank.index.jsontext import loads
from brainrank.ranker.registry.archive import unpack_archive
from brainrank.ranker.registry.version import read_meta

RANKER_DIR = "ranker"
ENCODER_DIR = "encoder"
KERAS_WEIGHTS = "ranker.weights.h5"  # ranker_files.WEIGHTS_FILE
LEGACY_MODEL = "model.keras"
PORTABLE = ("weights.npz", "portable.json")
# A ranker's arrays are kilobytes to a few megabytes; an .npz member may be compressed, so its
# declared size (which zipfile enforces when reading) is checked before numpy reads it.
MAX_WEIGHT_BYTES = 256 << 20
_REEXPORT = (
    "serve or search with it once in the workspace it came from (which writes its portable "
    "weights.npz and portable.json), then export it again"
)


def unpack_version(archive: Path, folder: Path) -> str:
    """Unpack an exported version into the empty draft ``folder`` and check it; the name it
    had where it came from (its model.json "version", else the archive's file name)."""
    if archive.is_dir():
        raise InputError(
            f"model archive {archive} is a folder; give the .tar.gz that `brainrank models "
            "export` wrote"
        )
    if not archive.is_file():
        raise InputError(f"model archive {archive} does not exist")
    unpack_archive(archive, folder)
    check_model_json(folder, archive)
    meta = read_meta(folder / "model.json", where=f"model.json in {archive}")
    check_checksums(folder, meta, archive)
    check_imported(folder, meta, archive)  # loads nothing that can name code
    original = meta.get("version")
    return original if isinstance(original, str) else archive.name


def check_checksums(folder: Path, meta: dict, archive: Path) -> None:
    """The unpacked files must be those the exported model.json recorded (an archive from
    before checksums has none to check): the commit seals what it is given, so damage that
    passed here would read as sound ever after."""
    if not is_sealed(meta):
        return
    again = "export the version again from a workspace where `brainrank check` passes"
    if not seal_ok(meta):
        raise InputError(
            f"model.json in {archive} is damaged (its contents differ from its own checksum); "
            f"{again}"
        )
    try:
        verify_files(folder, meta.get("files"), repair=again, full=True)
    except DamagedArtifactError as exc:
        # Messages name the staging folder, which is gone once the import fails.
        shown = str(exc).replace(f"{folder}/", f"{archive.name}:")
        raise InputError(f"{archive}: {shown}") from None


def check_model_json(folder: Path, archive: Path) -> None:
    """model.json must parse (deep nesting and giant integers are errors, not crashes)."""
    try:
        loads((folder / "model.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"model.json in {archive} is not valid JSON: {exc}") from None


def check_imported(folder: Path, meta: dict, archive: Path) -> None:
    """Raise InputError naming ``archive`` when the unpacked version in ``folder`` is unsafe
    or unusable."""
    try:
        if (folder / RANKER_DIR).is_dir():
            _check_ranker(folder / RANKER_DIR, meta, archive)
        if (folder / ENCODER_DIR).is_dir():
            _check_encoder(folder / ENCODER_DIR, archive)
    except BrainrankError as exc:
        if isinstance(exc, InputError):
            raise
        # Messages name the staging folder, which is gone once the import fails.
        message = str(exc).replace(str(folder), f"{archive.name}:")
        raise InputError(f"{archive}: {message}") from None


def _check_ranker(ranker: Path, meta: dict, archive: Path) -> None:
    names = {p.name for p in ranker.iterdir()}
    portable = any(name in names for name in PORTABLE)
    if LEGACY_MODEL in names and not (portable or KERAS_WEIGHTS in names):
        raise InputError(
            f"{archive}: its ranker is only a {LEGACY_MODEL} file, whose Keras config can make "
            f"brainrank import arbitrary code, so it is not imported; {_REEXPORT}"
        )
    if "ranker.json" in names and not (portable or KERAS_WEIGHTS in names):
        raise InputError(f"{archive}: its ranker has ranker.json but no weights")
    if not portable:
        return
    for name in ("ranker.json", "portable.json"):
        if name in names:
            _check_json(ranker / name, f"ranker/{name}", archive)
    if "weights.npz" in names:
        _check_npz(ranker / "weights.npz", archive)
    from brainrank.ranker.learning.portable import PortableRanker

    ranker_model = PortableRanker.load(ranker)
    schema = (meta.get("feature_schema") or {}).get("names") or []
    if ranker_model.n_features != len(schema):
        raise InputError(
            f"{archive}: its ranker takes {ranker_model.n_features} features but its "
            f"model.json lists {len(schema)}"
        )


def _check_encoder(encoder: Path, archive: Path) -> None:
    names = {p.name for p in encoder.iterdir()}
    if "config.json" in names:  # Hugging Face BERT layout
        weights = "model.safetensors"
        needed = ("config.json", "tokenizer.json", weights)
    elif "brainrank_two_tower.json" in names:
        weights = "weights.safetensors"
        needed = ("brainrank_two_tower.json", weights)
    else:
        return
    missing = [name for name in needed if name not in names]
    if missing:
        raise InputError(f"{archive}: its bundled encoder lacks {', '.join(missing)}")
    for name in needed:
        if name.endswith(".json"):
            _check_json(encoder / name, f"encoder/{name}", archive)
    _check_safetensors(encoder / weights, archive)


def _check_json(path: Path, name: str, archive: Path) -> None:
    try:
        value = loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{archive}: {name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f"{archive}: {name} must hold a JSON object")


def _check_npz(path: Path, archive: Path) -> None:
    try:
        with zipfile.ZipFile(path) as npz:
            total = sum(info.file_size for info in npz.infolist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{archive}: ranker/{path.name} is not an .npz file ({exc})") from None
    if total > MAX_WEIGHT_BYTES:
        raise InputError(
            f"{archive}: ranker/{path.name} unpacks to {total / 2**20:.0f} MiB; a ranker's "
            f"weights are capped at {MAX_WEIGHT_BYTES >> 20} MiB"
        )


def _check_safetensors(path: Path, archive: Path) -> None:
    """The header of a safetensors file: an 8-byte length, then JSON naming tensors that fit."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= length <= min(size - 8, 100 << 20):
            raise InputError(f"{archive}: encoder/{path.name} is not a safetensors file")
        try:
            header = json.loads(fh.read(length))
        except (ValueError, RecursionError):
            raise InputError(f"{archive}: encoder/{path.name} has a corrupt header") from None
    ends = [
        t.get("data_offsets", [0, 0])[1] if isinstance(t, dict) else -1
        for key, t in (header.items() if isinstance(header, dict) else [])
        if key != "__metadata__"
    ]
    if not isinstance(header, dict) or any(
        not isinstance(end, int) or not 0 <= end <= size - 8 - length for end in ends
    ):
        raise InputError(f"{archive}: encoder/{path.name} is truncated or corrupt")
