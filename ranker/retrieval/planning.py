"""What an ingest builds on: the generation format, the settings a generation must share with
the config to be extended, and the plan for writing a change on top of the previous generation
(``plan_delta``: its segments, tombstones updated, plus the new documents) or the reason it must
be rebuilt in full (``full_build_reason``), and how much to merge (``merge_choice``).
``building`` writes what is planned here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError
from brainrank.index.integrity import verify_files
from brainrank.index.params import SegmentParams
from brainrank.ranker.config import Config
from brainrank.ranker.retrieval.layout import (
    SEGMENTS,
    TOMBSTONES,
    SegmentEntry,
    is_segmented,
    read_layout,
)
from brainrank.ranker.retrieval.verify import REINDEX

# Bumped when a generation's layout changes; an ingest upgrades older generations (re-using
# their embeddings) even when no document changed. 2: field indexes, term sequences, doc
# metadata. 3: segments of raw term counts, tombstones.
FORMAT = 3


@dataclass
class Delta:
    """A new generation as the previous one's segments (tombstones updated) plus new ones."""

    prev_dir: Path
    manifest: dict
    entries: list[SegmentEntry]
    ids: list[str]  # documents added or changed: the new segment's, in arrival order
    # A changed document's place before: doc id -> (segment name, position, content hash).
    previous: dict[str, tuple[str, int, str]] = field(default_factory=dict)

    @property
    def live(self) -> int:
        return sum(e.live for e in self.entries) + len(self.ids)


def full_build_reason(manifest: dict, cfg: Config) -> str | None:
    """Why no change can be written on top of the generation ``manifest`` describes (it must
    be rebuilt in full), or None."""
    if manifest.get("format") != FORMAT or not is_segmented(manifest):
        return "it was written by an older brainrank"
    if manifest.get("bm25") != asdict(cfg.bm25):
        return "it was built with other [bm25] settings than the config's"
    if manifest.get("passages") != passage_settings(cfg):
        return "it was built with other passage settings than the config's"
    if not manifest.get("documents"):
        return "it holds no documents"
    return None


def plan_delta(
    prev_dir: Path, manifest: dict, cfg: Config, changed: Sequence[str], deleted: Sequence[str]
) -> Delta | None:
    """How to write the change on top of the generation in ``prev_dir``; None when it needs a
    full build (``full_build_reason``, or damage)."""
    if full_build_reason(manifest, cfg) is not None:
        return None
    try:
        # What is read (document lists, tombstones) is hashed; what is only linked gets the
        # cheap checks (size, head), keeping the cost apart from the collection's size. Its
        # checksums are carried over, so `brainrank check` and searches still see any damage.
        verify_files(
            prev_dir,
            manifest.get("files") or {},
            repair=REINDEX,
            full=False,
            large=lambda rel: not rel.endswith("docs.json") and not rel.startswith(TOMBSTONES),
        )
        entries = read_layout(prev_dir, manifest)
        where: dict[str, tuple[int, int, str]] = {}
        for s, entry in enumerate(entries):
            docs = json.loads((prev_dir / SEGMENTS / entry.name / "docs.json").read_text())
            dead = set(entry.deleted.tolist())
            where.update(
                (d, (s, p, h))
                for p, (d, h) in enumerate(zip(docs["ids"], docs["hashes"], strict=True))
                if p not in dead
            )
    except (BrainrankError, OSError, ValueError, KeyError, TypeError):
        return None  # a damaged generation is rebuilt from the store, not extended
    superseded = [[] for _ in entries]
    for doc_id in dict.fromkeys([*changed, *deleted]):
        if doc_id in where:
            s, p, _ = where[doc_id]
            superseded[s].append(p)
    for entry, more in zip(entries, superseded, strict=True):
        if more:
            entry.deleted = np.union1d(entry.deleted, np.asarray(more, dtype=np.int64))
    gone = set(deleted)  # written and deleted by the same ingest: nothing to index
    ids = [i for i in dict.fromkeys(changed) if i not in gone]
    previous = {i: (entries[where[i][0]].name, where[i][1], where[i][2]) for i in ids if i in where}
    return Delta(prev_dir, manifest, entries, ids, previous)


def merge_choice(delta: Delta, params: SegmentParams, vectors_changed: bool) -> str:
    """How the new generation is made: ``none`` (one segment more), ``small`` (the small
    segments merged with the new one) or ``all`` (everything merged into one segment)."""
    kept = [e for e in delta.entries if e.live]
    main = delta.entries[0].live
    small = sum(e.live for e in delta.entries[1:]) + len(delta.ids)
    held = sum(e.documents for e in kept) + len(delta.ids)
    deleted = sum(len(e.deleted) for e in kept)
    if vectors_changed or main == 0 or small > params.merge_fraction * main:
        return "all"
    if deleted > params.max_deleted * held:
        return "all"
    if len(kept) + (1 if delta.ids else 0) > params.max_segments:
        return "small"
    return "none"


def passage_settings(cfg: Config) -> dict:
    e = cfg.encoder
    return {
        "max_length": e.max_length,
        "max_passages": e.max_passages,
        "overlap": e.passage_overlap,
    }
