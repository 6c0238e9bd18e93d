"""``brainrank reindex``: every index rebuilt from the document store, whatever state it is in.

Every error about a damaged index recommends this command, so it reads nothing it does not
need from the index folder: a damaged manifest, a half-deleted generation or an unreadable
serving pointer is what it repairs, not a reason to stop. Only the document store must be
sound (nothing can rebuild documents). When the serving pointer cannot be read, the champion
of record (the newest in ``models/history.jsonl`` that still loads) serves with the rebuilt
index, embedded by that model's encoder.
"""

from __future__ import annotations

from brainrank.index.errors import BrainrankError
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import Config
from brainrank.ranker.progress import Progress
from brainrank.ranker.retrieval.indexing import EncoderFactory, IngestReport, update_indexes


def rebuild_indexes(
    cfg: Config,
    *,
    progress: Progress | None = None,
    encoder_factory: EncoderFactory | None = None,
    bulk_loader=None,
) -> IngestReport:
    """Re-embed and re-index the whole collection into a new generation and serve it.

    ``encoder_factory`` replaces loading the encoder (tests pass the one they hold);
    ``bulk_loader(path, encoder_cfg)`` replaces ``load_bulk_encoder`` (``--ray``).
    """
    from brainrank.ranker.encoding.bulk import load_bulk_encoder

    load = bulk_loader or load_bulk_encoder

    progress = progress or Progress()
    ws = Workspace(cfg.workspace)
    if not ws.exists():
        raise BrainrankError(f"workspace {ws.root} has no documents; run `brainrank ingest` first")
    champion, pointer_ok = _champion(ws)
    if not pointer_ok:
        named = (
            f"champion {champion.version}, the last in the model history that loads"
            if champion
            else "no champion (the model history names none that loads)"
        )
        progress.note(
            f"the serving pointer {ws.serving_file} is unreadable; it is written again with {named}"
        )
        with ws.writer_lock():
            ws.set_serving(None, champion.version if champion else None)
    path = _encoder_path(cfg, ws, champion)
    return update_indexes(
        ws,
        cfg,
        rebuild=True,
        encoder_factory=encoder_factory or (lambda: load(path, cfg.encoder)),
        encoder_path=path,
        progress=progress,
    )


def _champion(ws: Workspace):
    """(the champion's ModelVersion or None, whether the serving pointer is readable)."""
    from brainrank.ranker.registry.registry import Registry

    registry = Registry(ws.models_dir)
    try:
        state = ws.serving_state()
    except BrainrankError:
        state = None
    if state is not None:
        try:
            return registry.champion(state), True
        except BrainrankError:
            return None, True  # a damaged model: `models promote` or `rollback` repairs that
    for entry in reversed(registry.history()):
        version = entry.get("version")
        if isinstance(version, str):
            try:
                return registry.get(version), False
            except BrainrankError:
                continue
    return None, False


def _encoder_path(cfg: Config, ws: Workspace, champion):
    """The encoder that embedded the serving index when that can be read, else the champion's
    bundled one, else the configured one."""
    from brainrank.ranker.encoding.loading import encoder_path_for, serving_manifest

    try:
        manifest = serving_manifest(ws)
    except BrainrankError:
        manifest = None
    if manifest is None and champion is not None and champion.bundled_encoder is not None:
        return champion.bundled_encoder
    return encoder_path_for(cfg, manifest)
