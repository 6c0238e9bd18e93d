"""Bulk embedding on OpenVINO against the TensorFlow reference encoder."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

import brainrank
from brainrank.ranker.config import load_config
from brainrank.ranker.encoding.bulk import OpenVinoEncoder, bulk_runtime, load_bulk_encoder
from brainrank.ranker.encoding.fetch import fetch_encoder


@pytest.fixture(scope="module")
def folder():
    return fetch_encoder(load_config(env={}).encoder.cache_dir)  # the encoder fixture's folder


@pytest.fixture(scope="module")
def texts(sample_docs) -> list[str]:
    """Sample documents of very different lengths, a few words to a long multi-sentence text."""
    docs = [f"{d.title}\n{d.text}" for d in sample_docs[:20]]
    return [*docs, "battery", "where is my parcel?", " ".join(docs[:6])]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("precision, floor", [("float32", 0.99999), ("bfloat16", 0.9999)])
def test_openvino_vectors_match_tensorflow(encoder, folder, texts, precision, floor):
    bulk = OpenVinoEncoder.load(folder, max_length=256, precision=precision)
    assert bulk.precision == precision
    assert (bulk.fingerprint, bulk.dim) == (encoder.fingerprint, encoder.dim)
    got = bulk.encode(texts, batch_size=8)
    want = encoder.encode(texts, batch_size=8)
    assert got.shape == want.shape and got.dtype == np.float32
    assert cosines(got, want).min() >= floor
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_vector_does_not_depend_on_its_batch_mates(folder, texts, precision):
    bulk = OpenVinoEncoder.load(folder, max_length=256, precision=precision)
    batched = bulk.encode(texts, batch_size=16)
    alone = np.vstack([bulk.encode([t], batch_size=1) for t in texts])
    other_mates = bulk.encode(list(reversed(texts)), batch_size=5)[::-1]
    assert cosines(alone, batched).min() >= 0.9999
    assert cosines(other_mates, batched).min() >= 0.9999


def test_auto_precision_follows_the_cpu(folder):
    from brainrank.ranker.encoding.precision import cpu_has_bf16_units

    bulk = OpenVinoEncoder.load(folder, max_length=64, precision="auto")
    assert bulk.precision == ("bfloat16" if cpu_has_bf16_units() else "float32")


def test_runtime_setting_picks_the_encoder(encoder, folder, tmp_path):
    cfg = load_config(env={}).encoder
    assert isinstance(load_bulk_encoder(folder, cfg), OpenVinoEncoder)
    as_tf = dataclasses.replace(cfg, bulk_runtime="tensorflow")
    assert load_bulk_encoder(folder, as_tf, reference=encoder) is encoder
    assert bulk_runtime(tmp_path, "auto") == "tensorflow"  # no config.json: a two-tower folder


def test_bad_runtime_setting_is_named(tmp_path):
    (tmp_path / "brainrank.toml").write_text('[encoder]\nbulk_runtime = "gpu"\n')
    with pytest.raises(brainrank.BrainrankError, match="bulk_runtime must be one of"):
        load_config(tmp_path / "brainrank.toml", env={})


def test_ingest_embeds_on_openvino_without_tensorflow(sample_config, tmp_path):
    """A whole ingest through the public API, in a fresh process: TensorFlow is never imported,
    and the vectors agree with the sample workspace's, embedded by TensorFlow."""
    from tests.conftest import DATA

    workspace = tmp_path / "ws"
    script = (
        "import sys, brainrank\n"
        f"with brainrank.open({str(workspace)!r}) as engine:\n"
        f"    engine.ingest({str(DATA / 'docs.jsonl')!r})\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"

    from brainrank.ranker.retrieval.search import SearchEngine

    def generation(ws_path):
        engine = SearchEngine(dataclasses.replace(sample_config, workspace=ws_path))
        gen = engine.generation
        engine.close()
        return gen

    ours, reference = generation(workspace), generation(sample_config.workspace)
    assert ours.doc_ids == reference.doc_ids
    got, want = ours.vectors.embeddings, reference.vectors.embeddings
    assert got.shape == want.shape
    assert cosines(got, want).min() >= 0.9999


def test_batches_in_flight_land_in_their_own_rows(folder, texts):
    """Several streams finish batches out of order; each vector still lands in its text's row,
    equal to one batch at a time, and progress counts every text once."""
    seen: list[int] = []
    many = OpenVinoEncoder.load(folder, max_length=256, precision="float32", streams=2)
    got = many.encode(texts, batch_size=3, progress=seen.append)
    want = OpenVinoEncoder.load(folder, 256, "float32", streams=1).encode(texts, batch_size=3)
    assert cosines(got, want).min() >= 0.99999 and sum(seen) == len(texts)
    assert many.encode([], batch_size=3).shape == (0, many.dim)
    with pytest.raises(ValueError, match="streams must be at least 1"):
        OpenVinoEncoder.load(folder, 256, "float32", streams=0)
