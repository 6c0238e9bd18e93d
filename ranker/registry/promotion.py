"""Putting a model version into service: prepare its index first, then switch in one write.

A model serves only over an index generation of the current documents embedded by its own
encoder. Promotion, rollback, ``models import --promote`` and ``retrain`` all go through
:func:`switch_to`, in two phases:

1. Prepare, while the old pair keeps serving: :func:`ensure_generation` finds such a
   generation (the serving one, or a challenger's staged one) or builds it by re-embedding
   the collection into a new *staged* generation, which serves nothing yet. The generation is
   then pinned so that no concurrent ingest prunes it.
2. Switch: under the workspace writer lock, check the generation still matches the documents
   (an ingest may have committed meanwhile: then prepare again), and write the serving pointer
   naming the generation and the champion together (``Registry.switch``).

So the model and the index change in one atomic step: a search sees the old pair or the new
one, a process killed at any moment leaves the old pair serving (or, after the write, the new
one), and a re-run finds the staged generation it prepared and finishes quickly.
"""

from __future__ import annotations

from pathlib import Path

from brainrank.index.errors import BrainrankError
from brainrank.index.integrity import DamagedArtifactError
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import Config
from brainrank.ranker.learning.learned import ENCODER_DIR
from brainrank.ranker.progress import Progress
from brainrank.ranker.registry.registry import ANY_CHAMPION
from brainrank.ranker.registry.version import verify_version

# Preparations a switch may redo because ingests kept changing the documents meanwhile.
ATTEMPTS = 3


def ensure_generation(cfg: Config, version, *, progress: Progress | None = None) -> int:
    """Number of a generation of the current documents embedded by ``version``'s encoder.

    Builds a staged generation (re-embedding the collection) when none exists; nothing that
    serves changes.
    """
    from brainrank.ranker.encoding.bulk import load_bulk_encoder
    from brainrank.ranker.retrieval.indexing import stage_generation

    ws = Workspace(cfg.workspace)
    number = _matching_generation(ws, version)
    if number is not None:
        return number
    wanted = encoder_fingerprint(version)
    bundled = version.path / ENCODER_DIR
    path = bundled if bundled.is_dir() else cfg.encoder.resolved_path()
    encoder = load_bulk_encoder(path, cfg.encoder)
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


def promote(cfg: Config, version: str, *, progress: Progress | None = None, expect=ANY_CHAMPION):
    """Make ``version`` the champion, with an index embedded by its encoder, in one switch.

    ``expect``: the champion the promotion was decided against (a challenger that beat it);
    if another command moved the champion since, nothing changes and the error says so."""
    from brainrank.ranker.registry.registry import Registry

    mv = Registry(Workspace(cfg.workspace).models_dir).get(version)
    return switch_to(cfg, mv, "promote", expect=expect, progress=progress)


def rollback(cfg: Config, *, progress: Progress | None = None):
    """Return to the previous champion: prepare its encoder's index, then switch once."""
    from brainrank.ranker.registry.registry import Registry

    ws = Workspace(cfg.workspace)
    state = ws.serving_state()
    mv = Registry(ws.models_dir).rollback_target(state)
    return switch_to(cfg, mv, "rollback", expect=state.champion, progress=progress)


def switch_to(
    cfg: Config, mv, action: str, *, expect=ANY_CHAMPION, progress: Progress | None = None
):
    """Prepare ``mv``'s generation, then make (generation, ``mv``) serve in one pointer write.

    ``action`` is recorded in the history ("promote" or "rollback"). ``expect`` is the
    champion it was planned against (a rollback's, or the one a challenger beat): if another
    command moved the champion during the preparation, nothing changes and the error says so.
    A version holding only an encoder (``adapt``'s, before any ranker) changes the generation
    and leaves no champion.
    """
    from brainrank.ranker.registry.registry import Registry

    ws = Workspace(cfg.workspace)
    registry = Registry(ws.models_dir)
    try:
        verify_version(mv, full=True)  # every search would fail on a damaged champion
    except DamagedArtifactError as exc:
        raise BrainrankError(
            f"model {mv.version} cannot serve, nothing was changed: {exc}"
        ) from None
    if not mv.has_ranker:
        _check_encoder_only(mv, ws.serving_state().champion)
    planned = {} if expect is ANY_CHAMPION else {"expect": expect}
    for _ in range(ATTEMPTS):
        number = ensure_generation(cfg, mv, progress=progress)
        with ws.pin(number), ws.writer_lock(timeout=registry.lock_timeout):
            if _matching_generation(ws, mv, only=number) is None:
                continue  # an ingest committed since: the documents need a new generation
            state = ws.serving_state()
            before = state.generation
            if mv.has_ranker:
                result = registry.switch(action, mv.version, generation=number, **planned)
            else:
                _check_encoder_only(mv, state.champion)
                ws.set_serving(number, None, state.change)
                result = mv
            if number != before:
                ws.prune()
            return result
    raise BrainrankError(
        f"the documents changed {ATTEMPTS} times while model {mv.version}'s index was being "
        "prepared; nothing was changed, run the command again once the ingests are done"
    )


def _check_encoder_only(mv, champion: str | None) -> None:
    """An encoder-only version serves the fixed modes over its index, and only while no
    champion does: a champion's ranker needs the index of its own encoder."""
    if champion is not None:
        raise BrainrankError(
            f"model {mv.version} holds only an adapted encoder, while champion {champion} "
            "serves with its own; train a ranker on the adapted encoder (`brainrank train` "
            "after `brainrank adapt`) to serve both"
        )


def _matching_generation(ws: Workspace, version, only: int | None = None) -> int | None:
    """A complete generation of the current documents embedded by ``version``'s encoder.

    Prefers the one serving now, then the newest; ``only`` checks that single generation.
    """
    store = ws.open_store()
    try:
        store_version = store.version
    finally:
        store.close()
    wanted = encoder_fingerprint(version)
    if only is not None:
        candidates = [only]
    else:
        candidates = [ws.serving_generation(store_version), *reversed(ws.generations())]
    complete = set(ws.generations())
    for number in candidates:
        if number is None or number not in complete:
            continue
        manifest = ws.manifest(number)
        # An empty collection has no vectors, so any encoder serves it.
        embedded = (manifest.get("encoder") or {}).get("fingerprint") == wanted
        if manifest.get("store_version") == store_version and (
            embedded or manifest.get("documents") == 0
        ):
            return number
    return None


def encoder_fingerprint(version) -> str:
    """The fingerprint of the encoder ``version`` was trained with, from its model.json."""
    encoder = version.meta.get("encoder")
    fingerprint = encoder.get("fingerprint") if isinstance(encoder, dict) else None
    if not isinstance(fingerprint, str) or not fingerprint:
        raise BrainrankError(
            f"model {version.version} records no encoder fingerprint in its model.json, so no "
            "index can be matched with it; export it again from a workspace that trained it"
        )
    return fingerprint
