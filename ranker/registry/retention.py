"""Removing model versions: pruning old ones and withdrawing one that never served.

A folder is first renamed into the registry's .staging/ and only then deleted, so a kill
mid-delete leaves no half-version behind. The champion, the version before it and the version
whose encoder embedded the serving index are never pruned.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from brainrank.index.errors import BrainrankError, InputError
from brainrank.index.serving import ServingState
from brainrank.ranker.registry.history import previous_champion
from brainrank.ranker.registry.version import ModelVersion

if TYPE_CHECKING:
    from brainrank.ranker.registry.registry import Registry


def prune(registry: Registry, keep: int = 10) -> list[str]:
    """Delete versions older than the newest ``keep``, never the champion, the previous one
    or the one whose encoder embedded the serving index; returns the deleted names."""
    if keep < 0:
        raise InputError(f"keep must be 0 or more, got {keep}")
    with registry.locked():
        registry.clean_staging()
        state = registry.workspace.serving_state()
        champion = registry.champion(state)
        current = champion.version if champion else None
        protected = {current, previous_champion(registry.history(), state)}
        protected.add(_serving_encoder_version(registry, state))
        old = registry.versions()
        old = old[: max(len(old) - keep, 0)]
        doomed = [v for v in old if v.version not in protected]
        for v in doomed:
            _delete(registry, v, "pruned")
    return [v.version for v in doomed]


def _serving_encoder_version(registry: Registry, state: ServingState) -> str | None:
    """The version whose bundled encoder embedded the serving generation (an adapted
    encoder serves with no champion), or None."""
    try:
        manifest = registry.workspace.manifest(state.generation) if state.generation else {}
    except BrainrankError:
        return None
    path = Path(manifest.get("encoder_path") or registry.workspace.root)
    inside = path.is_relative_to(registry.versions_dir)
    return path.relative_to(registry.versions_dir).parts[0] if inside else None


def withdraw(registry: Registry, version: str) -> None:
    """Delete a version that never served (an import whose index could not be built)."""
    with registry.locked():
        mv = registry.get(version)
        served = {e.get("version") for e in registry.history()} | {
            getattr(registry.champion(), "version", None)
        }
        if mv.version in served:
            raise BrainrankError(f"model {mv.version} has served; it cannot be withdrawn")
        _delete(registry, mv, "withdrawn")


def _delete(registry: Registry, mv: ModelVersion, why: str) -> None:
    """Remove a version folder, first renamed into .staging/ (so a kill mid-delete leaves no
    half-version); under the registry lock."""
    registry.staging_dir.mkdir(exist_ok=True)
    grave = registry.staging_dir / f"{why}-{mv.version}-{secrets.token_hex(4)}"
    os.replace(mv.path, grave)
    shutil.rmtree(grave, ignore_errors=True)
