"""Putting a model version into service: the index must be embedded by the model's encoder.

Promotion, rollback and import all go through :func:`ensure_generation`: it finds a complete
index generation of the current documents embedded by the model's encoder (a challenger's
staged generation, or the one serving now), or builds it by re-embedding the collection, and
only then do the pointers move.
"""

from __future__ import annotations

from pathlib import Path

from brainrank.index.errors import BrainrankError
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import Config
from brainrank.ranker.learning.learned import ENCODER_DIR
from brainrank.ranker.progress import Progress


def ensure_generation(cfg: Config, version, *, progress: Progress | None = None) -> int:
    """Number of a generation of the current documents embedded by ``version``'s encoder."""
    from brainrank.ranker.encoding.loading import load_encoder
    from brainrank.ranker.retrieval.indexing import stage_generation

    ws = Workspace(cfg.workspace)
    store = ws.open_store()
    try:
        store_version = store.version
    finally:
        store.close()
    wanted = version.meta["encoder"]["fingerprint"]
    for number in [ws.serving_generation(store_version), *reversed(ws.generations())]:
        if number is None:
            continue
        manifest = ws.manifest(number)
        if (
            manifest.get("store_version") == store_version
            and manifest.get("encoder", {}).get("fingerprint") == wanted
        ):
            return number
    bundled = version.path / ENCODER_DIR
    path = bundled if bundled.is_dir() else cfg.encoder.resolved_path()
    encoder = load_encoder(path, cfg.encoder.max_length)
    if encoder.fingerprint != wanted:
        raise BrainrankError(
            f"model {version.version} needs encoder {wanted}, which is neither bundled with it "
            f"nor the configured encoder ({encoder.fingerprint} at {path})"
        )
    (progress or Progress()).note(
        f"re-embedding the collection with model {version.version}'s encoder"
    )
    number, _ = stage_generation(
        ws, cfg, encoder_factory=lambda: encoder, encoder_path=Path(path), progress=progress
    )
    return number


def promote(cfg: Config, version: str, *, progress: Progress | None = None):
    """Make ``version`` the champion, switching the index to its encoder first if needed."""
    from brainrank.ranker.registry.registry import Registry

    ws = Workspace(cfg.workspace)
    registry = Registry(ws.models_dir)
    mv = registry.get(version)
    number = ensure_generation(cfg, mv, progress=progress)
    _activate(ws, number)
    return registry.promote(mv.version)


def rollback(cfg: Config, *, progress: Progress | None = None):
    """Return to the previous champion (and its encoder's index)."""
    from brainrank.ranker.registry.registry import Registry

    ws = Workspace(cfg.workspace)
    registry = Registry(ws.models_dir)
    mv = registry.rollback()
    _activate(ws, ensure_generation(cfg, mv, progress=progress))
    return mv


def _activate(ws: Workspace, number: int) -> None:
    with ws.writer_lock():
        if ws.current_generation() != number:
            ws.activate(number)
