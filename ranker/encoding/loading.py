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
