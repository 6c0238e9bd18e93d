"""The Keras MiniLM encoder against vectors from sentence-transformers on torch, plus invariants."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainrank.index.errors import BrainrankError
from brainrank.ranker.encoding.encoder import TextEncoder
from brainrank.ranker.encoding.fetch import ENCODER_SHA256, fetch_encoder
from brainrank.ranker.encoding.precision import (
    bulk_precision,
    cpu_has_bf16_units,
    resolve_precision,
)

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm_reference.json"
CACHE_DIR = Path.home() / ".cache" / "brainrank" / "encoders"


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    return fetch_encoder(CACHE_DIR)  # downloads once, then only verifies the hash


@pytest.fixture(scope="module")
def minilm(minilm_dir) -> TextEncoder:
    return TextEncoder.load(minilm_dir, max_length=256)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def test_matches_sentence_transformers_reference(minilm, reference):
    assert reference["model_sha256"] == ENCODER_SHA256
    assert reference["max_seq_length"] == minilm.max_length
    got = minilm.encode(reference["sentences"])
    want = np.asarray(reference["embeddings"], dtype=np.float64)
    want /= np.linalg.norm(want, axis=1, keepdims=True)  # undo the 7-decimal rounding drift
    cosines = (got.astype(np.float64) * want).sum(axis=1)
    assert got.shape == (len(reference["sentences"]), 384)
    assert got.dtype == np.float32
    assert cosines.min() > 0.9999, dict(zip(reference["sentences"], cosines.round(6), strict=True))


def test_metadata(minilm, minilm_dir):
    assert minilm.name == "all-MiniLM-L6-v2"
    assert minilm.dim == 384
    assert minilm.fingerprint == "sha256:" + ENCODER_SHA256[:16]


def test_outputs_are_unit_norm_including_empty_string(minilm, reference):
    vectors = minilm.encode(reference["sentences"] + ["", " ", "?"])
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_list_gives_empty_matrix(minilm):
    assert minilm.encode([]).shape == (0, 384)
    assert minilm.encode([]).dtype == np.float32


def test_batch_order_does_not_matter(minilm, reference):
    texts = reference["sentences"]
    base = minilm.encode(texts, batch_size=3)
    perm = list(range(len(texts)))
    random.Random(7).shuffle(perm)
    shuffled = minilm.encode([texts[i] for i in perm], batch_size=3)
    np.testing.assert_allclose(shuffled, base[perm], atol=1e-5)


def test_padding_does_not_change_a_vector(minilm, reference):
    short, long = reference["sentences"][0], reference["sentences"][-1]
    alone = minilm.encode([short])
    # In one batch with a 256-token text, the short one is padded from 16 to 256 positions.
    padded = minilm.encode([long, short], batch_size=2)[1:]
    np.testing.assert_allclose(padded, alone, atol=1e-5)


def test_progress_reports_each_batch(minilm):
    seen: list[int] = []
    minilm.encode([f"sentence {i}" for i in range(10)], batch_size=4, progress=seen.append)
    assert seen == [4, 4, 2]


def test_save_then_load_gives_identical_vectors(minilm, minilm_dir, reference, tmp_path):
    saved = minilm.save(tmp_path / "copy")
    again = TextEncoder.load(saved)
    texts = reference["sentences"]
    np.testing.assert_array_equal(again.encode(texts), minilm.encode(texts))
    # Unchanged weights are written byte for byte, so the fingerprint stays the same.
    assert again.fingerprint == minilm.fingerprint
    names = sorted(p.relative_to(saved) for p in saved.rglob("*"))
    assert names == sorted(p.relative_to(minilm_dir) for p in minilm_dir.rglob("*"))


def test_changed_weight_changes_fingerprint_and_keeps_layout(minilm_dir, tmp_path):
    from safetensors import safe_open

    encoder = TextEncoder.load(minilm_dir)  # a private copy: the module fixture stays pristine
    before = encoder.encode(["a changed weight"])
    beta = encoder.keras_model.get_layer("layer_5_output_ln").beta
    beta.assign_add(np.full(beta.shape, 0.05, dtype=np.float32))
    saved = encoder.save(tmp_path / "tuned")
    reloaded = TextEncoder.load(saved)

    assert reloaded.fingerprint != "sha256:" + ENCODER_SHA256[:16]
    assert reloaded.fingerprint == encoder.fingerprint  # save() re-fingerprints the encoder
    after = reloaded.encode(["a changed weight"])
    assert not np.allclose(after, before, atol=1e-4)
    np.testing.assert_array_equal(after, encoder.encode(["a changed weight"]))

    def layout(path):
        with safe_open(str(path / "model.safetensors"), "np") as f:
            return {name: f.get_slice(name).get_shape() for name in f.keys()}

    assert layout(saved) == layout(minilm_dir)


def test_missing_folder_names_path_and_fix(tmp_path):
    missing = tmp_path / "no-such-encoder"
    with pytest.raises(BrainrankError) as err:
        TextEncoder.load(missing)
    message = str(err.value)
    assert str(missing) in message
    assert "brainrank encoder fetch" in message and "--encoder PATH" in message


def test_missing_file_and_bad_config_are_reported(minilm_dir, tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    shutil.copy(minilm_dir / "config.json", folder / "config.json")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(BrainrankError, match="tokenizer.json"):
        TextEncoder.load(folder)

    shutil.copy(minilm_dir / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((minilm_dir / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "gpt2"}))
    with pytest.raises(BrainrankError, match="model_type 'gpt2'"):
        TextEncoder.load(folder)

    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BrainrankError, match=re.escape(str(folder))):  # empty weights file
        TextEncoder.load(folder)


def test_max_length_beyond_positions_is_rejected(minilm_dir):
    with pytest.raises(BrainrankError, match="max_position_embeddings 512"):
        TextEncoder.load(minilm_dir, max_length=1000)


def test_xla_path_matches_and_pads_partial_batches(minilm, minilm_dir, reference):
    xla = TextEncoder.load(minilm_dir, jit_compile=True)
    # Seven short texts (short keeps XLA compiles cheap): batches of 4 and 3, the 3 padded to 4.
    texts = reference["sentences"][:6] + ["one more short text"]
    np.testing.assert_allclose(xla.encode(texts, batch_size=4), minilm.encode(texts), atol=1e-5)


@pytest.mark.skipif(not cpu_has_bf16_units(), reason="this CPU has no bfloat16 matrix units")
def test_bfloat16_bulk_precision_is_close_and_scoped(minilm, reference):
    sentences = reference["sentences"]
    expected = np.asarray(reference["embeddings"], dtype=np.float32)
    with bulk_precision("bfloat16") as resolved:
        bf16 = minilm.encode(sentences)
    assert resolved == "bfloat16"
    cosine = np.sum(bf16 * expected, axis=1)
    assert cosine.min() > 0.999  # bfloat16 products: close, but not float32-exact
    assert np.abs(bf16 - expected).max() > 1e-6  # the block really changed the arithmetic
    after = minilm.encode(sentences)  # back to float32 once the block ends
    np.testing.assert_allclose(after, expected, atol=2e-6)


def test_precision_names_are_checked():
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("auto") in ("float32", "bfloat16")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8")
