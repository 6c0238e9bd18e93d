"""Which encoder goes with an index, and loading it (pretrained, fine-tuned or two-tower)."""

from __future__ import annotations

from pathlib import Path

from brainrank.index.workspace import Workspace
from brainrank.ranker.config import Config


def encoder_path_for(cfg: Config, manifest: dict | None) -> Path:
    """The config's encoder if it names one, else the one that built the index, else MiniLM."""
    if cfg.encoder.path is not None:
        return cfg.encoder.path
    if manifest and manifest.get("encoder_path"):
        return Path(manifest["encoder_path"])
    return cfg.encoder.resolved_path()


def serving_manifest(ws: Workspace) -> dict | None:
    """Manifest of the generation serving now, or None for an empty workspace."""
    if not ws.exists():
        return None
    store = ws.open_store()
    try:
        number = ws.serving_generation(store.version)
    finally:
        store.close()
    return ws.manifest(number) if number is not None else None


def load_encoder(path: Path, max_length: int):
    """Load a BERT folder in Hugging Face layout or a two-tower encoder saved by brainrank."""
    from brainrank.ranker.encoding.two_tower import load_encoder as load_any

    return load_any(path, max_length=max_length)


def load_query_encoder(path: Path, max_length: int, threads: int | None = None):
    """The encoder that embeds queries: a BERT folder's ONNX export, served without TensorFlow.

    A BERT folder with no usable export (written before exports existed, an imported model's
    bundled encoder, a damaged model.onnx) is exported here on first use: that imports
    TensorFlow once to check the export, then serves through ONNX Runtime. Two-tower encoders
    have no ONNX export and keep the TensorFlow path, as does any folder without config.json
    (``load_encoder`` then says what is wrong with it). ``threads`` caps ONNX Runtime's
    threads (default: its own choice; the service runs one per worker, a worker per core).
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        return load_encoder(path, max_length)
    from brainrank.ranker.encoding.runtime import ExportMissingError, OnnxEncoder

    try:
        return OnnxEncoder.load(path, max_length=max_length, threads=threads)
    except ExportMissingError:
        from brainrank.ranker.encoding.onnx_export import export_onnx

        export_onnx(path)
        return OnnxEncoder.load(path, max_length=max_length, threads=threads)
