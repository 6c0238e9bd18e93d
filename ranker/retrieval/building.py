"""Writing an index generation: in full from the document store, or from the one before it.

A full build tokenizes and indexes every document into one segment (reusing the embeddings of
unchanged text). An ingest that changes a few documents instead takes over the previous
generation's segments by hard link, marks the old copies of changed and deleted documents in
tombstones, and adds one small segment holding only the documents it added or changed: its
cost follows the change, not the collection. The merge policy (``[segments]``) bounds what
searches carry: past ``max_segments`` the small segments are merged into one, past
``merge_fraction`` or ``max_deleted`` everything is (term counts and embeddings are carried
over, nothing is tokenized or embedded again). Either way the generation is written under a
temporary name, sealed with every file's checksum (a linked file's are the ones written with
it), renamed into place, and only then served (``indexing``). Which of the two, and how much
to merge, is decided in ``planning``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from brainrank.index.atomic import atomic_directory
from brainrank.index.errors import BrainrankError
from brainrank.index.integrity import describe_files, read_manifest, seal, verify_files
from brainrank.index.params import EncoderInfo
from brainrank.index.store import DocumentStore
from brainrank.index.vectors import VectorIndex
from brainrank.ranker.config import Config
from brainrank.ranker.progress import Progress
from brainrank.ranker.retrieval.layout import (
    SEGMENTS,
    SegmentEntry,
    is_segmented,
    read_layout,
    write_keyword_weights,
    write_tombstones,
)
from brainrank.ranker.retrieval.passages import PassageSplitter
from brainrank.ranker.retrieval.planning import FORMAT, Delta, passage_settings
from brainrank.ranker.retrieval.segments import (
    Segment,
    keyword_segment,
    link_tree,
    merge_segments,
    read_segment,
    segment_name,
    write_segment,
)
from brainrank.ranker.retrieval.verify import MANIFEST, REINDEX, verify_generation


def new_manifest(number: int, version: int, store: DocumentStore, cfg: Config, **fields) -> dict:
    """The fields every generation's manifest starts with."""
    newest = store.newest_timestamp()
    return {
        "generation": number,
        "format": FORMAT,
        "store_version": version,
        "created": datetime.now(UTC).isoformat(),
        "newest_document": newest.isoformat() if newest else None,
        "config": cfg.to_dict(),
        "bm25": asdict(cfg.bm25),
        "passages": passage_settings(cfg),
        **fields,
    }


def _finish(tmp: Path, manifest: dict, entries: list[SegmentEntry], report, store, linked):
    """Write the generation's BM25 weights, record segments and checksums (``linked``: the
    file records of linked segments, as written with them), then write the manifest last: a
    folder without one is incomplete."""
    write_tombstones(tmp, entries)
    t = time.perf_counter()
    write_keyword_weights(tmp, entries)
    report.seconds["keyword_weights"] = time.perf_counter() - t
    manifest["segments"] = [e.to_manifest() for e in entries]
    manifest["documents"] = report.documents = sum(e.live for e in entries)
    manifest["vectors"] = sum(e.vectors for e in entries)
    manifest["seconds"] = report.seconds
    manifest["store_id"] = store.store_id
    files = {**linked, **describe_files(tmp, skip=(MANIFEST, *linked))}
    manifest["files"] = dict(sorted(files.items()))
    report.segments = len(entries)
    (tmp / MANIFEST).write_text(json.dumps(seal(manifest), indent=2))


def _describe_vectors(manifest: dict, vectors: VectorIndex) -> None:
    """The main segment's vector index, as the manifest reports it."""
    manifest["encoder"] = asdict(vectors.encoder)
    manifest["vector_kind"] = vectors.kind
    manifest["vector_quantizer"] = vectors.quantizer
    manifest["vector_recall"] = vectors.recall
    manifest["vector_params"] = asdict(vectors.params)


def _write(
    tmp: Path, name: str, seg: Segment, info: EncoderInfo, cfg: Config, report, vectors=None
):
    t = time.perf_counter()
    built = write_segment(tmp / SEGMENTS / name, seg, info, cfg.vectors, vectors)
    report.seconds["vector_index"] = report.seconds.get("vector_index", 0.0) + (
        time.perf_counter() - t
    )
    return built


def _info(encoder) -> EncoderInfo:
    return EncoderInfo(encoder.name, encoder.fingerprint, encoder.dim)


# ----- a full build --------------------------------------------------------------------------


def build_full(
    target: Path,
    store: DocumentStore,
    cfg: Config,
    manifest: dict,
    prev_dir: Path | None,
    encoder: Callable[[], object],
    progress: Progress,
    report,
) -> None:
    """Every document of the store into one segment, reusing embeddings of unchanged text."""
    ids = list(store.hashes())
    with atomic_directory(target) as tmp:
        entries: list[SegmentEntry] = []
        if ids:
            t = time.perf_counter()
            docs = list(store.iter_documents(ids))
            seg = keyword_segment(docs, cfg.bm25)
            report.seconds["keyword_index"] = time.perf_counter() - t
            enc = encoder()  # loaded even when everything could be reused: its fingerprint decides
            reuse = previous_embeddings(prev_dir, cfg, enc.fingerprint)
            seg.embeddings, seg.owner = embed(docs, seg.hashes, enc, cfg, progress, report, reuse)
            report.reused_embeddings = len(docs) - report.embedded
            name = segment_name(manifest["generation"])
            vectors = _write(tmp, name, seg, _info(enc), cfg, report)
            entries = [SegmentEntry(name, len(docs), len(seg.owner))]
            _describe_vectors(manifest, vectors)
            report.vector_recall = vectors.recall
        _finish(tmp, manifest, entries, report, store, {})


def previous_embeddings(prev_dir: Path | None, cfg: Config, fingerprint: str) -> dict:
    """(doc id, content hash) -> (segment, position) of its passage vectors in the generation
    in ``prev_dir``, when that was embedded by the same encoder with the same passage settings.
    Each source is verified in full first (reused vectors must not carry damage into the new
    generation); a damaged one is left out, so its documents are embedded again."""
    if prev_dir is None or not (prev_dir / MANIFEST).exists():
        return {}
    try:
        manifest = read_manifest(prev_dir / MANIFEST, REINDEX)
        if (manifest.get("encoder") or {}).get("fingerprint") != fingerprint or manifest.get(
            "passages"
        ) != passage_settings(cfg):
            return {}
        if is_segmented(manifest):
            names = [e.name for e in read_layout(prev_dir, manifest)]
        else:  # format 2: one set of indexes at the top
            verify_generation(prev_dir, full=True)
            docs = json.loads((prev_dir / "docs.json").read_text(encoding="utf-8"))
            if not docs["ids"]:
                return {}
            vectors = VectorIndex.load(prev_dir / "vectors")
            seg = Segment(docs["ids"], docs["hashes"], *[None] * 4, vectors=vectors)
            return {key: (seg, p) for p, key in enumerate(zip(seg.ids, seg.hashes, strict=True))}
    except (BrainrankError, OSError, ValueError, KeyError, TypeError):
        return {}  # a damaged previous generation is rebuilt, not reused
    found = {}
    for name in names:
        seg = verified_vectors(prev_dir, manifest, name)
        if seg is not None and seg.vectors.encoder.fingerprint == fingerprint:
            keys = zip(seg.ids, seg.hashes, strict=True)
            found.update((key, (seg, p)) for p, key in enumerate(keys))
    return found


def verified_vectors(directory: Path, manifest: dict, name: str) -> Segment | None:
    """Segment ``name``'s document list and vectors, both verified in full first (only they
    are read, so only they must verify); None when damaged: its documents are embedded
    again rather than reused."""
    folder = directory / SEGMENTS / name
    try:
        verify_segment(directory, manifest, name, only=("docs.json", "vectors/"))
        docs = json.loads((folder / "docs.json").read_text(encoding="utf-8"))
        vectors = VectorIndex.load(folder / "vectors")
        seg = Segment(docs["ids"], docs["hashes"], *[None] * 4, vectors=vectors)
    except (BrainrankError, OSError, ValueError, KeyError, TypeError):
        return None
    return seg if vectors.size == len(seg.ids) == len(seg.hashes) else None


def verify_segment(directory: Path, manifest: dict, name: str, only: tuple = ("",)) -> None:
    """Hash the files of one segment of a sealed generation (those whose path in the segment
    starts with one of ``only``) against the checksums its manifest recorded."""
    prefixes = tuple(f"{SEGMENTS}/{name}/{start}" for start in only)
    files = {rel: e for rel, e in (manifest.get("files") or {}).items() if rel.startswith(prefixes)}
    if not files:
        raise BrainrankError(f"{directory / SEGMENTS / name} has no recorded checksums; {REINDEX}")
    verify_files(directory, files, repair=REINDEX, full=True)


def embed(docs, hashes, encoder, cfg: Config, progress: Progress, report, reuse: dict):
    """Passage vectors of ``docs`` grouped by document, and each vector's document; vectors of
    unchanged text come from ``reuse`` (``previous_embeddings``), the rest are embedded."""
    t = time.perf_counter()
    blocks: list[np.ndarray | None] = [None] * len(docs)
    todo = []
    for p, (doc, h) in enumerate(zip(docs, hashes, strict=True)):
        found = reuse.get((doc.doc_id, h))
        if found is None:
            todo.append(p)
        else:
            blocks[p] = np.asarray(found[0].passage_vectors(found[1]), dtype=np.float32)
    report.passages = 0
    if todo:
        from brainrank.ranker.encoding.bulk import bulk_context

        splitter = PassageSplitter(
            encoder.tokenizer,
            cfg.encoder.max_length,
            overlap=cfg.encoder.passage_overlap,
            max_passages=cfg.encoder.max_passages,
        )
        passages = splitter.split([docs[p] for p in todo])
        flat = [text for texts in passages for text in texts]
        with (
            progress.task("Embedding passages", len(flat)) as advance,
            bulk_context(encoder, cfg.encoder.bulk_precision),
        ):
            vectors = encoder.encode(flat, batch_size=cfg.encoder.batch_size, progress=advance)
        start = 0
        for p, texts in zip(todo, passages, strict=True):
            blocks[p] = vectors[start : start + len(texts)]
            start += len(texts)
        report.passages = len(flat)
    report.embedded = len(todo)
    report.seconds["embedding"] = time.perf_counter() - t
    counts = [len(b) for b in blocks]
    owner = np.repeat(np.arange(len(docs)), counts).astype(np.int64)
    if not blocks:
        return np.zeros((0, encoder.dim), np.float32), owner
    return np.vstack(blocks).astype(np.float32, copy=False), owner


# ----- a generation from the one before ------------------------------------------------------


# Reuse a changed document's vectors from a segment not otherwise read when at least this
# share of that segment's documents can: hashing a segment's vectors in full costs far less
# per document than embedding one, but a handful of changes is embedded without the hashing.
REUSE_SHARE = 0.01


def _reusable(delta: Delta, merged_from, parts, fingerprint: str) -> dict:
    """Vectors a changed document may keep, where its text is unchanged (a new timestamp,
    field or tag) and the encoder is the same: from an old segment being merged (verified in
    full and read anyway), or from another whose documents changed in enough numbers
    (``REUSE_SHARE``; its document list and vectors verified in full first)."""
    read = {e.name: seg for e, (seg, _) in zip(merged_from, parts, strict=True)}
    wanted: dict[str, int] = {}
    for name, _, _ in delta.previous.values():
        wanted[name] = wanted.get(name, 0) + 1
    for entry in delta.entries:
        n = wanted.get(entry.name, 0)
        if entry.name in read or n == 0 or n < REUSE_SHARE * entry.documents:
            continue
        seg = verified_vectors(delta.prev_dir, delta.manifest, entry.name)
        if seg is not None:
            read[entry.name] = seg
    read = {
        name: seg
        for name, seg in read.items()
        if seg.vectors is not None and seg.vectors.encoder.fingerprint == fingerprint
    }
    return {
        (doc_id, h): (read[name], p)
        for doc_id, (name, p, h) in delta.previous.items()
        if name in read
    }


def build_delta(
    target: Path,
    store: DocumentStore,
    cfg: Config,
    manifest: dict,
    delta: Delta,
    choice: str,
    encoder: Callable[[], object],
    progress: Progress,
    report,
) -> None:
    """The previous generation's segments, linked, plus one segment of what changed; or, as
    ``choice`` says, the small segments (or all) merged with it into one."""
    kept = [e for e in delta.entries if e.live]  # a segment with nothing live is dropped
    linked = {"none": kept, "small": kept[:1], "all": []}[choice]
    merged_from = kept[len(linked) :]
    for entry in merged_from:  # read and rewritten: verified in full first
        verify_segment(delta.prev_dir, delta.manifest, entry.name)
    name = segment_name(manifest["generation"])
    with atomic_directory(target) as tmp:
        fresh, info = None, None
        t = time.perf_counter()
        parts = [
            (read_segment(delta.prev_dir / SEGMENTS / e.name), e.live_positions())
            for e in merged_from
        ]
        read_s = time.perf_counter() - t
        t = time.perf_counter()
        docs = list(store.iter_documents(delta.ids)) if delta.ids else []
        if docs:
            fresh = keyword_segment(docs, cfg.bm25)
            report.seconds["keyword_index"] = time.perf_counter() - t
            enc = encoder()
            info = _info(enc)
            reuse = _reusable(delta, merged_from, parts, enc.fingerprint)
            fresh.embeddings, fresh.owner = embed(
                docs, fresh.hashes, enc, cfg, progress, report, reuse
            )
        info = info or EncoderInfo(**delta.manifest["encoder"])
        records = delta.manifest.get("files") or {}
        carried = {}
        for entry in linked:
            link_tree(delta.prev_dir / SEGMENTS / entry.name, tmp / SEGMENTS / entry.name)
            prefix = f"{SEGMENTS}/{entry.name}/"
            carried.update((rel, e) for rel, e in records.items() if rel.startswith(prefix))
        entries = list(linked)
        if merged_from:
            t = time.perf_counter()
            if fresh is not None:
                parts.append((fresh, None))
            merged, vectors = merge_segments(parts, info, cfg.vectors)
            report.seconds["merge"] = read_s + time.perf_counter() - t
            built = _write(tmp, name, merged, info, cfg, report, vectors)
            entries.append(SegmentEntry(name, len(merged), len(merged.owner)))
        elif fresh is not None:
            built = _write(tmp, name, fresh, info, cfg, report)
            entries.append(SegmentEntry(name, len(fresh), len(fresh.owner)))
        if linked:  # the main segment is the one before: its description carries over
            for key in ("encoder", "vector_kind", "vector_quantizer", "vector_recall"):
                manifest[key] = delta.manifest.get(key)
            manifest["vector_params"] = delta.manifest.get("vector_params")
        else:
            _describe_vectors(manifest, built)
        report.vector_recall = manifest.get("vector_recall")
        report.merged = None if choice == "none" else choice
        report.reused_embeddings = sum(e.live for e in entries) - report.embedded
        _finish(tmp, manifest, entries, report, store, carried)
