"""The ONNX Runtime query encoder against the TensorFlow encoder it was exported from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brainrank.index.errors import BrainrankError
from brainrank.ranker.encoding.loading import load_query_encoder
from brainrank.ranker.encoding.onnx_export import CHECK_TEXTS, MIN_COSINE, OPSET, export_onnx
from brainrank.ranker.encoding.runtime import (
    META_FILE,
    ONNX_FILE,
    ExportMissingError,
    OnnxEncoder,
)

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm_reference.json"
_LINKED = ("config.json", "model.safetensors", "tokenizer.json")


def _linked_folder(src: Path, dest: Path, *copied: str) -> Path:
    """An encoder folder under tmp that links the fetched encoder's files (and copies some)."""
    dest.mkdir(parents=True)
    for name in _LINKED:
        (dest / name).symlink_to(src / name)
    for name in copied:
        shutil.copy2(src / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def exported(encoder, tmp_path_factory) -> Path:
    """The fetched MiniLM, exported (and checked) in a folder of its own."""
    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.fetch import fetch_encoder

    source = fetch_encoder(load_config(env={}).encoder.cache_dir)  # the encoder fixture's folder
    folder = _linked_folder(source, tmp_path_factory.mktemp("onnx") / "minilm")
    assert export_onnx(folder, reference=encoder) == folder / ONNX_FILE
    return folder


@pytest.fixture(scope="module")
def onnx_encoder(exported) -> OnnxEncoder:
    return OnnxEncoder.load(exported, max_length=256)


@pytest.fixture(scope="module")
def texts(sample_docs) -> list[str]:
    """Texts the export's own check never saw: reference sentences and the sample documents."""
    sentences = json.loads(REFERENCE.read_text(encoding="utf-8"))["sentences"]
    docs = [f"{d.title}\n{d.text}" for d in sample_docs[:12]]
    chosen = [*sentences, *docs, "battery", "how to get my money back?", " ".join(docs[:4])]
    assert not set(chosen) & set(CHECK_TEXTS)
    return chosen


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_export_records_its_check(exported, encoder):
    meta = json.loads((exported / META_FILE).read_text(encoding="utf-8"))
    assert meta["fingerprint"] == encoder.fingerprint
    assert meta["min_cosine"] >= MIN_COSINE
    assert meta["texts"] == len(CHECK_TEXTS) >= 16
    assert meta["onnx_opset"] == OPSET
    assert meta["onnx_bytes"] == (exported / ONNX_FILE).stat().st_size
    assert max(len(ids) for ids in encoder.tokenize(CHECK_TEXTS)) == encoder.max_length


def test_matches_tensorflow_on_other_texts(onnx_encoder, encoder, texts):
    got = onnx_encoder.encode(texts)
    want = encoder.encode(texts)
    assert got.shape == want.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cosines(got, want).min() >= MIN_COSINE


def test_same_identity_and_tokens_as_tensorflow(onnx_encoder, encoder, texts):
    assert onnx_encoder.fingerprint == encoder.fingerprint
    assert (onnx_encoder.dim, onnx_encoder.max_length) == (encoder.dim, encoder.max_length)
    long_text = " ".join(texts) * 3  # beyond max_length: truncated the same way
    assert onnx_encoder.tokenize([*texts, long_text]) == encoder.tokenize([*texts, long_text])
    assert len(onnx_encoder.tokenize([long_text])[0]) == 256


def test_vector_does_not_depend_on_batch_mates(onnx_encoder, texts):
    batched = onnx_encoder.encode(texts, batch_size=16)
    alone = np.vstack([onnx_encoder.encode([t]) for t in texts])
    assert _cosines(alone, batched).min() >= 0.9999
    assert onnx_encoder.encode([]).shape == (0, 384)


def test_query_path_imports_no_tensorflow(exported):
    script = (
        "import sys\n"
        "from brainrank.ranker.encoding.loading import load_query_encoder\n"
        "from brainrank.ranker.encoding.runtime import OnnxEncoder\n"
        f"folder = {str(exported)!r}\n"
        "v = OnnxEncoder.load(folder).encode(['x'])\n"
        "w = load_query_encoder(folder, 256).encode(['x'])\n"
        "assert v.shape == w.shape == (1, 384), v.shape\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_damaged_exports_are_named_and_re_exported(exported, tmp_path):
    folder = _linked_folder(exported, tmp_path / "copy", ONNX_FILE, META_FILE)
    data = (folder / ONNX_FILE).read_bytes()

    (folder / ONNX_FILE).write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ExportMissingError, match="damaged or replaced"):
        OnnxEncoder.load(folder)
    (folder / ONNX_FILE).write_bytes(b"\xff" * 64 + data[64:])  # same size, garbage header
    with pytest.raises(ExportMissingError, match="cannot load"):
        OnnxEncoder.load(folder)
    middle = len(data) // 2
    (folder / ONNX_FILE).write_bytes(data[:middle] + bytes(16) + data[middle + 16 :])
    with pytest.raises(ExportMissingError, match="damaged or replaced"):
        OnnxEncoder.load(folder, verify=True)

    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    stale = {**meta, "fingerprint": "sha256:0000000000000000", "weights_mtime_ns": 0}
    (folder / META_FILE).write_text(json.dumps(stale), encoding="utf-8")
    with pytest.raises(ExportMissingError, match="other weights"):
        OnnxEncoder.load(folder)
    (folder / META_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ExportMissingError, match="cannot read"):
        OnnxEncoder.load(folder)
    (folder / META_FILE).unlink()
    with pytest.raises(ExportMissingError, match="no ONNX export"):
        OnnxEncoder.load(folder)

    # The query path repairs it: a fresh, checked export, then ONNX Runtime serves.
    repaired = load_query_encoder(folder, 256)
    assert isinstance(repaired, OnnxEncoder)
    assert (folder / ONNX_FILE).read_bytes() == data
    assert OnnxEncoder.load(folder, verify=True).fingerprint == meta["fingerprint"]


def test_bad_arguments_are_named(exported, tmp_path):
    with pytest.raises(BrainrankError, match="max_length 1000"):
        OnnxEncoder.load(exported, max_length=1000)
    with pytest.raises(ValueError, match="threads"):
        OnnxEncoder.load(exported, threads=0)
    with pytest.raises(BrainrankError, match="does not exist"):
        load_query_encoder(tmp_path / "missing", 256)
    assert OnnxEncoder.load(exported, threads=1).encode(["x"]).shape == (1, 384)


def test_search_engine_serves_queries_through_onnx(sample_config, engine, exported):
    import dataclasses

    from brainrank.ranker.retrieval.search import SearchEngine

    cfg = dataclasses.replace(
        sample_config, encoder=dataclasses.replace(sample_config.encoder, path=exported)
    )
    onnx_engine = SearchEngine(cfg)
    for query in ("laptop won't turn on", "refund for a damaged parcel"):
        got = onnx_engine.search(query, k=5, mode="dense")
        want = engine.search(query, k=5, mode="dense")
        assert [h.doc_id for h in got.hits] == [h.doc_id for h in want.hits]
    assert isinstance(onnx_engine.encoder, OnnxEncoder)


def test_saving_an_encoder_writes_its_export(exported, tmp_path):
    from brainrank.ranker.encoding.encoder import TextEncoder

    tuned = TextEncoder.load(exported, max_length=64)  # a copy: save() updates its fingerprint
    layer = tuned.keras_model.get_layer("layer_5_output")
    layer.bias.assign(layer.bias.numpy() + 0.01)  # stands in for fine-tuning
    saved = tuned.save(tmp_path / "tuned")
    meta = json.loads((saved / META_FILE).read_text(encoding="utf-8"))
    assert meta["fingerprint"] == tuned.fingerprint and meta["min_cosine"] >= MIN_COSINE
    served = OnnxEncoder.load(saved, max_length=64, verify=True)
    assert served.fingerprint == tuned.fingerprint
    assert _cosines(served.encode(["a tuned query"]), tuned.encode(["a tuned query"]))[0] > 0.99999
