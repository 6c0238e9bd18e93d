"""The folder of a segmented index generation, and loading it for serving.

    indexes/gen-000012/
        manifest.json            segments in order, counts, every file's checksum (sealed)
        segments/seg-000003/     the main segment, hard-linked from the generation before
        segments/seg-000012/     the documents this generation's ingest added or changed
        tombstones/seg-000003.npy  positions of seg-000003 deleted or superseded since
        keyword/bm25/            BM25 weights under this generation's statistics: df.npy, and
                                 seg-000003.npy ... (one float32 per posting of each segment)

The manifest lists ``segments`` as ``{"name", "documents", "deleted"}`` in order. A segment's
live documents are its positions minus its tombstones; the generation numbers the live
documents of all segments in order (``index.livemap``). Generations written before segments
(format 2: ``docs.json``, ``bm25/`` ... at the top) load as before.

A posting's BM25 weight depends on the generation's N, average length and document
frequencies, so the weights belong to the generation, not to the segments it shares: they are
written with it (``write_keyword_weights``, before its checksums are recorded) and mapped at
load, so searches never weigh postings. A generation written before them (its manifest lists
none) is weighed in memory when loaded: the same scores, a slower start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError
from brainrank.index.integrity import damaged
from brainrank.index.keyword import DF, KeywordIndex
from brainrank.index.livemap import LiveMap
from brainrank.index.postings import TermCounts
from brainrank.index.segment_vectors import SegmentedVectors
from brainrank.index.vectors import VectorIndex
from brainrank.ranker.retrieval.segments import absent_column

SEGMENTS = "segments"
TOMBSTONES = "tombstones"
KEYWORD = "keyword"
# The keyword indexes of each segment, by the folder name they share with their weights.
KEYWORD_FIELDS = ("bm25", "bm25_title", "bm25_body")
REINDEX = "run `brainrank reindex` to rebuild the indexes"


@dataclass
class SegmentEntry:
    """One segment of a generation: its name, size, and which of its positions are deleted."""

    name: str
    documents: int
    vectors: int = 0  # passage vectors it holds (of deleted documents too)
    deleted: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def live(self) -> int:
        return self.documents - len(self.deleted)

    def live_positions(self) -> np.ndarray | None:
        """Ascending positions not deleted; None when none is."""
        if not len(self.deleted):
            return None
        return np.setdiff1d(np.arange(self.documents), self.deleted)

    def to_manifest(self) -> dict:
        return {
            "name": self.name,
            "documents": self.documents,
            "vectors": self.vectors,
            "deleted": len(self.deleted),
        }


def is_segmented(manifest: dict) -> bool:
    return isinstance(manifest.get("segments"), list)


def read_layout(directory: Path, manifest: dict) -> list[SegmentEntry]:
    """The segments a generation's manifest lists, with their tombstones read and checked."""
    entries = []
    for item in manifest["segments"]:
        try:
            name, documents, deleted = str(item["name"]), int(item["documents"]), item["deleted"]
        except (KeyError, TypeError, ValueError):
            raise damaged(
                directory / "manifest.json", "a malformed segment entry", REINDEX
            ) from None
        entry = SegmentEntry(name, documents, int(item.get("vectors", 0)))
        if deleted:
            path = directory / TOMBSTONES / f"{name}.npy"
            try:
                dead = np.load(path, allow_pickle=False).astype(np.int64)
            except (OSError, ValueError) as exc:
                raise damaged(path, f"not a readable array: {exc}", REINDEX) from None
            if (
                dead.ndim != 1
                or len(dead) != deleted
                or (len(dead) and (dead[0] < 0 or dead[-1] >= documents))
                or np.any(np.diff(dead) <= 0)
            ):
                raise damaged(path, f"not {deleted} ascending positions of {name}", REINDEX)
            entry.deleted = dead
        entries.append(entry)
    return entries


def write_tombstones(folder: Path, entries: list[SegmentEntry]) -> None:
    for entry in entries:
        if len(entry.deleted):
            (folder / TOMBSTONES).mkdir(exist_ok=True)
            np.save(folder / TOMBSTONES / f"{entry.name}.npy", entry.deleted, allow_pickle=False)


def live_map(entries: list[SegmentEntry]) -> LiveMap:
    return LiveMap([e.documents for e in entries], [e.deleted for e in entries])


def write_keyword_weights(folder: Path, entries: list[SegmentEntry]) -> None:
    """Weigh the postings of the generation being written in ``folder`` (its segments in place,
    its tombstones in ``entries``) and save the weights under ``keyword/``. The folder is
    renamed into place only once complete, so these need no renames of their own."""
    live = live_map(entries)
    if len(live) == 0:
        return
    names = [e.name for e in entries]
    for name in KEYWORD_FIELDS:
        parts = [TermCounts.load(folder / SEGMENTS / seg / name) for seg in names]
        KeywordIndex(parts, live).save_weights(folder / KEYWORD / name, names)


def _keyword_index(directory: Path, manifest: dict, name: str, parts, live, segments):
    """A field's keyword index with the weights written with the generation (``segments``:
    its segments' names), or weighed now for a generation written before them."""
    if f"{KEYWORD}/{name}/{DF}" not in (manifest.get("files") or {}):
        return KeywordIndex(parts, live)
    return KeywordIndex.load(parts, live, directory / KEYWORD / name, segments)


@dataclass
class Loaded:
    """What a generation serves from: documents in position order and their indexes."""

    doc_ids: list[str]
    content_hashes: list[str]
    bm25: object = None
    bm25_title: object = None
    bm25_body: object = None
    vectors: object = None
    doc_meta: dict = field(default_factory=dict)
    segments: list[SegmentEntry] = field(default_factory=list)


def load_segmented(directory: Path, manifest: dict) -> Loaded:
    """A segmented generation's documents and indexes over its live documents."""
    entries = read_layout(directory, manifest)
    live = live_map(entries)
    ids, hashes, metas = [], [], []
    text, title, body, vectors = [], [], [], []
    for entry in entries:
        folder = directory / SEGMENTS / entry.name
        try:
            docs = json.loads((folder / "docs.json").read_text(encoding="utf-8"))
            with np.load(folder / "doc_meta.npz", allow_pickle=False) as z:
                metas.append({name: z[name] for name in z.files})
        except (OSError, ValueError) as exc:
            raise BrainrankError(
                f"index segment {folder} is unreadable ({exc}); {REINDEX}"
            ) from None
        if len(docs.get("ids", ())) != entry.documents:
            raise BrainrankError(
                f"index segment {folder} lists {len(docs.get('ids', ()))} documents, the "
                f"generation {entry.documents}; {REINDEX}"
            )
        ids.append(docs["ids"])
        hashes.append(docs["hashes"])
        text.append(TermCounts.load(folder / "bm25"))
        title.append(TermCounts.load(folder / "bm25_title"))
        body.append(TermCounts.load(folder / "bm25_body"))
        vectors.append(VectorIndex.load(folder / "vectors"))
        for name, size in (("keyword", text[-1].n_docs), ("vector", vectors[-1].size)):
            if size != entry.documents:
                raise BrainrankError(
                    f"{name} index in {folder} holds {size} documents but the generation "
                    f"lists {entry.documents}; {REINDEX}"
                )
    out = Loaded(live.gather_list(ids), live.gather_list(hashes), segments=entries)
    if len(live) == 0:
        return out
    segments = [e.name for e in entries]
    out.bm25 = _keyword_index(directory, manifest, "bm25", text, live, segments)
    out.bm25_title = _keyword_index(directory, manifest, "bm25_title", title, live, segments)
    out.bm25_body = _keyword_index(directory, manifest, "bm25_body", body, live, segments)
    # One segment without deletions needs no merging of results.
    out.vectors = vectors[0] if live.trivial else SegmentedVectors(vectors, live)
    names = ["timestamp", *sorted({n for m in metas for n in m if n != "timestamp"})]
    out.doc_meta = {
        name: live.gather(
            [
                m[name] if name in m else absent_column(name, e.documents)
                for m, e in zip(metas, entries, strict=True)
            ]
        )
        for name in names
    }
    return out
