"""Index segments: the immutable parts a generation is made of, written once, then shared.

A segment folder (``segments/seg-000007`` inside a generation) holds one set of documents
and every index over them: ``docs.json`` (ids and content hashes in position order),
``doc_meta.npz``, raw term counts for the full text (with term sequences), the title and the
body (``index.postings``), and the passage vectors with their FAISS index (``index.vectors``).
A segment is named after the generation that wrote it and never changes afterwards, so a
later generation takes it over by hard-linking its files (same inodes, nothing copied or
rebuilt) and records the checksums written with it. Which of its documents are deleted is the
generation's business (``layout``), not the segment's.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError
from brainrank.index.params import BM25Params, EncoderInfo, VectorParams
from brainrank.index.postings import TermCounts
from brainrank.index.records import Document
from brainrank.index.store import content_hash
from brainrank.index.vectors import VectorIndex

REINDEX = "run `brainrank reindex` to rebuild the indexes"


def segment_name(number: int) -> str:
    return f"seg-{number:06d}"


@dataclass
class Segment:
    """One segment's contents in memory: built from documents, or read back to be merged."""

    ids: list[str]
    hashes: list[str]
    text: TermCounts
    title: TermCounts
    body: TermCounts
    meta: dict[str, np.ndarray]
    embeddings: np.ndarray | None = None  # passage vectors, grouped by document in order
    owner: np.ndarray | None = None  # document position of each passage vector
    vectors: VectorIndex | None = None  # its index, when read from disk

    def __len__(self) -> int:
        return len(self.ids)

    def passage_vectors(self, position: int) -> np.ndarray:
        return self.vectors.passage_vectors(position)


def keyword_segment(docs: Sequence[Document], params: BM25Params) -> Segment:
    """A segment of ``docs`` without vectors yet: keyword indexes, metadata, ids and hashes."""
    return Segment(
        ids=[d.doc_id for d in docs],
        hashes=[content_hash(d) for d in docs],
        text=TermCounts.build([d.full_text for d in docs], params, keep_sequences=True),
        title=TermCounts.build([d.title for d in docs], params),
        body=TermCounts.build([d.text for d in docs], params),
        meta=doc_meta(docs),
    )


def doc_meta(docs: Sequence[Document]) -> dict[str, np.ndarray]:
    """Timestamps (epoch seconds, NaN when unknown), numeric fields (``field:NAME``, NaN =
    absent) and tags (``tag:NAME``, unicode, "" = absent) as columns."""
    columns = {
        "timestamp": np.array(
            [d.timestamp.timestamp() if d.timestamp else np.nan for d in docs], dtype=np.float64
        )
    }
    for name in sorted({name for d in docs for name in d.fields}):
        columns[f"field:{name}"] = np.array([d.fields.get(name, np.nan) for d in docs], np.float64)
    for name in sorted({name for d in docs for name in d.tags}):
        columns[f"tag:{name}"] = np.array([d.tags.get(name, "") for d in docs], dtype=str)
    return columns


def absent_column(name: str, n: int) -> np.ndarray:
    """The ``doc_meta`` column ``name`` of ``n`` documents that lack it (a segment without)."""
    return np.full(n, "", dtype=str) if name.startswith("tag:") else np.full(n, np.nan)


def write_segment(
    folder: Path,
    seg: Segment,
    info: EncoderInfo,
    params: VectorParams,
    vectors: VectorIndex | None = None,
) -> VectorIndex:
    """Write ``seg`` to ``folder``; its vector index is ``vectors`` or built from its passages."""
    folder.mkdir(parents=True)
    (folder / "docs.json").write_text(json.dumps({"ids": seg.ids, "hashes": seg.hashes}))
    with open(folder / "doc_meta.npz", "wb") as fh:
        np.savez(fh, **seg.meta)
    seg.text.save(folder / "bm25")
    seg.title.save(folder / "bm25_title")
    seg.body.save(folder / "bm25_body")
    if vectors is None:
        vectors = VectorIndex.build(seg.embeddings, info, params, seg.owner)
    vectors.save(folder / "vectors")
    return vectors


def read_segment(folder: Path, *, vectors: bool = True) -> Segment:
    """A written segment, for a merge or for reusing its embeddings (its checksums are the
    caller's to verify first)."""
    try:
        docs = json.loads((folder / "docs.json").read_text(encoding="utf-8"))
        ids, hashes = docs["ids"], docs["hashes"]
        with np.load(folder / "doc_meta.npz", allow_pickle=False) as z:
            meta = {name: z[name] for name in z.files}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BrainrankError(f"index segment {folder} is unreadable ({exc}); {REINDEX}") from None
    if not (isinstance(ids, list) and isinstance(hashes, list) and len(ids) == len(hashes)):
        raise BrainrankError(f"index segment {folder} has a malformed docs.json; {REINDEX}")
    seg = Segment(
        ids=ids,
        hashes=hashes,
        text=TermCounts.load(folder / "bm25"),
        title=TermCounts.load(folder / "bm25_title"),
        body=TermCounts.load(folder / "bm25_body"),
        meta=meta,
    )
    if vectors:
        seg.vectors = VectorIndex.load(folder / "vectors")
        seg.embeddings, seg.owner = seg.vectors.embeddings, seg.vectors.owner
    for name, size in (("keyword", seg.text.n_docs), ("vector", seg.vectors and seg.vectors.size)):
        if size is not None and size != len(ids):
            raise BrainrankError(
                f"{name} index in {folder} holds {size} documents but the segment lists "
                f"{len(ids)}; {REINDEX}"
            )
    return seg


def merge_segments(
    parts: Sequence[tuple[Segment, np.ndarray | None]],
    info: EncoderInfo,
    params: VectorParams,
) -> tuple[Segment, VectorIndex]:
    """One segment of the documents each part keeps (``keep``: ascending positions, None for
    all), in part order, and its vector index. Term counts and embeddings are carried over, so
    nothing is tokenized or embedded again. When the first part keeps everything and its
    approximate index has the settings asked for, that index is extended with the others'
    vectors (HNSW inserts incrementally) instead of rebuilt."""
    keeps = [np.arange(len(s)) if keep is None else np.asarray(keep) for s, keep in parts]
    merged = Segment(
        ids=[s.ids[i] for (s, _), keep in zip(parts, keeps, strict=True) for i in keep],
        hashes=[s.hashes[i] for (s, _), keep in zip(parts, keeps, strict=True) for i in keep],
        text=TermCounts.merge([(s.text, keep) for s, keep in parts]),
        title=TermCounts.merge([(s.title, keep) for s, keep in parts]),
        body=TermCounts.merge([(s.body, keep) for s, keep in parts]),
        meta=_merge_meta([s.meta for s, _ in parts], keeps),
    )
    blocks, owners, start = [], [], 0
    for (s, _), keep in zip(parts, keeps, strict=True):
        counts = np.bincount(s.owner, minlength=len(s))[keep]
        rows = np.isin(s.owner, keep) if len(keep) < len(s) else slice(None)
        blocks.append(np.asarray(s.embeddings[rows], dtype=np.float32))
        owners.append(np.repeat(np.arange(start, start + len(keep)), counts))
        start += len(keep)
    merged.embeddings = np.vstack(blocks) if blocks else np.zeros((0, info.dim), np.float32)
    merged.owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    first, keep = parts[0]
    cut = len(blocks[0])
    if keep is None and first.vectors is not None and first.vectors.params == params:
        vectors = first.vectors.extend(merged.embeddings[cut:], merged.owner[cut:])
    else:
        vectors = VectorIndex.build(merged.embeddings, info, params, merged.owner)
    return merged, vectors


def _merge_meta(metas: Sequence[dict], keeps: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    names = ["timestamp", *sorted({n for m in metas for n in m if n != "timestamp"})]
    return {
        name: np.concatenate(
            [
                m[name][keep] if name in m else absent_column(name, len(keep))
                for m, keep in zip(metas, keeps, strict=True)
            ]
        ).astype(str if name.startswith("tag:") else np.float64)
        for name in names
    }


def link_tree(source: Path, target: Path) -> None:
    """Make ``target`` a folder of hard links to every file under ``source`` (a copy where the
    file system cannot link): a segment taken over without reading or rewriting it."""
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)
