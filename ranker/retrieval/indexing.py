"""Bring the indexes up to date with the document store, crash-safely.

An ingest runs inside one document-store transaction: upsert and delete, then build a complete
new index generation from the store's new contents (reusing embeddings of unchanged text),
commit, and move the serving pointer (``SERVING``: generation and champion, one atomic file;
the champion is kept). A process killed anywhere before the commit leaves
the store and the serving generation as they were; one killed after it is finished by
:meth:`index.workspace.Workspace.recover` on the next run.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from brainrank.index.atomic import atomic_directory
from brainrank.index.bm25 import BM25Index
from brainrank.index.errors import BrainrankError
from brainrank.index.integrity import seal
from brainrank.index.params import EncoderInfo
from brainrank.index.records import Document
from brainrank.index.store import DocumentStore
from brainrank.index.vectors import VectorIndex
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import Config
from brainrank.ranker.progress import Progress
from brainrank.ranker.retrieval.passages import PassageSplitter
from brainrank.ranker.retrieval.verify import record_files, verify_generation

# Bumped when a generation gains files; an ingest upgrades older generations (re-using their
# embeddings) even when no document changed. 2: field indexes, term sequences, doc metadata.
FORMAT = 2


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    embedded: int = 0
    passages: int = 0
    reused_embeddings: int = 0
    documents: int = 0
    generation: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # bad input records skipped (skip_bad)
    truncated: int = 0  # documents whose text was cut to [ingest] max_text_chars
    vector_recall: dict | None = None  # the approximate vector index's measured recall

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deleted)


EncoderFactory = Callable[[], "object"]


def update_indexes(
    ws: Workspace,
    cfg: Config,
    *,
    documents: Sequence[Document] = (),
    delete_ids: Sequence[str] = (),
    rebuild: bool = False,
    encoder_factory: EncoderFactory,
    encoder_path: Path | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Upsert ``documents``, delete ``delete_ids`` and make the indexes match, atomically.

    ``encoder_path`` is recorded in the generation so searches load the same encoder.
    ``rebuild`` builds every index afresh from the store, whatever state the index folder is
    in (damaged manifests, half-deleted generations), and removes the damaged generations.
    A store that does not match the generations built from it (replaced, rolled back) is an
    error: an ingest never shrinks the collection to it.
    """
    progress = progress or Progress()
    report = IngestReport()
    t0 = time.perf_counter()
    with ws.writer_lock():
        store = ws.open_store()
        try:
            if rebuild:
                previous = _before_rebuild(ws, store)
            else:
                ws.recover(store.version)
                previous = ws.serving_generation(store.version)
                _check_store(ws, store, previous)
            with store.transaction():
                counts = store.upsert(documents)
                report.added, report.updated, report.unchanged = (
                    counts.added,
                    counts.updated,
                    counts.unchanged,
                )
                report.deleted = store.delete(delete_ids) if delete_ids else 0
                report.seconds["store"] = time.perf_counter() - t0
                current_format = ws.manifest(previous).get("format", 1) if previous else 0
                if (
                    not rebuild
                    and not report.changed
                    and previous is not None
                    and current_format == FORMAT
                ):
                    report.generation = previous
                    report.documents = store.count()
                    return report
                version = store.bump_version()
                number = _free_number(ws)
                prev_dir = None if rebuild or previous is None else ws.generation_dir(previous)
                _build_generation(
                    ws.generation_dir(number),
                    store,
                    cfg,
                    version,
                    number,
                    prev_dir,
                    encoder_factory,
                    progress,
                    report,
                    encoder_path=encoder_path,
                )
            ws.activate(number)
            report.generation = number
            if rebuild:
                _remove_damaged(ws, keep=number)
        finally:
            store.close()
    report.seconds["total"] = time.perf_counter() - t0
    return report


def _check_store(ws: Workspace, store: DocumentStore, serving: int | None) -> None:
    """Refuse a store that the generations on disk were not built from (see
    ``DocumentStore.check_built_from``); ``serving`` (when known) is held to the strict rule."""
    for number in ws.generations():
        where = ws.generation_dir(number).name
        store.check_built_from(ws.manifest(number), where, committed=number == serving)


def _before_rebuild(ws: Workspace, store: DocumentStore) -> None:
    """Clear leftovers and check the store, reading nothing that may be damaged as required."""
    for tmp in ws.indexes_dir.glob(".gen-*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        serving = ws.serving_generation(store.version)
    except BrainrankError:
        serving = None  # a damaged pointer or manifest: what this rebuild repairs
    _check_store(ws, store, serving)


def _free_number(ws: Workspace) -> int:
    """The next generation number, past every generation folder, complete or not."""
    taken = [0, *ws.generations()]
    taken += [int(p.name[4:]) for p in ws.indexes_dir.glob("gen-*") if p.name[4:].isdigit()]
    return max(taken) + 1


def _remove_damaged(ws: Workspace, keep: int) -> None:
    """Delete generation folders that are incomplete or fail their cheap checks (rebuild)."""
    for folder in sorted(ws.indexes_dir.glob("gen-*")):
        if folder.name == ws.generation_dir(keep).name or not folder.is_dir():
            continue
        try:
            verify_generation(folder)
        except BrainrankError:
            shutil.rmtree(folder, ignore_errors=True)


def _build_generation(
    target: Path,
    store: DocumentStore,
    cfg: Config,
    version: int,
    number: int,
    prev_dir: Path | None,
    encoder_factory: EncoderFactory,
    progress: Progress,
    report: IngestReport,
    *,
    encoder_path: Path | None = None,
    staged: bool = False,
) -> None:
    hashes = store.hashes()
    prev_ids, prev_hashes, prev_vectors, prev_passages = _previous(prev_dir)
    # Keep surviving documents at their old positions when nothing old changed, so an
    # approximate index can be extended instead of rebuilt.
    only_additions = prev_vectors is not None and all(
        hashes.get(i) == h for i, h in zip(prev_ids, prev_hashes, strict=True)
    )
    if only_additions:
        known = set(prev_ids)
        ids = prev_ids + [i for i in hashes if i not in known]
    else:
        ids = list(hashes)
    report.documents = len(ids)

    with atomic_directory(target) as tmp:
        manifest = {
            "generation": number,
            "format": FORMAT,
            "store_version": version,
            "created": datetime.now(UTC).isoformat(),
            "documents": len(ids),
            "newest_document": _iso(store.newest_timestamp()),
            "config": cfg.to_dict(),
            "encoder_path": str(encoder_path) if encoder_path else None,
            "staged": staged,
        }
        if ids:
            t = time.perf_counter()
            docs = list(store.iter_documents(ids))
            bm25 = BM25Index.build([d.full_text for d in docs], cfg.bm25, keep_sequences=True)
            bm25.save(tmp / "bm25")
            # Field indexes feed the learned ranker's title and body features.
            BM25Index.build([d.title for d in docs], cfg.bm25).save(tmp / "bm25_title")
            BM25Index.build([d.text for d in docs], cfg.bm25).save(tmp / "bm25_body")
            _save_doc_meta(tmp / "doc_meta.npz", docs)
            report.seconds["keyword_index"] = time.perf_counter() - t

            # Loaded even when everything could be reused: its fingerprint decides that.
            encoder = encoder_factory()
            passage_cfg = _passage_settings(cfg)
            reuse: dict[tuple[str, str], int] = {}
            if (
                prev_vectors is not None
                and prev_passages == passage_cfg
                and encoder.fingerprint == prev_vectors.encoder.fingerprint
            ):
                reuse = {key: p for p, key in enumerate(zip(prev_ids, prev_hashes, strict=True))}
            todo = [p for p, i in enumerate(ids) if (i, hashes[i]) not in reuse]
            t = time.perf_counter()
            blocks: list[np.ndarray | None] = [None] * len(ids)
            for p, i in enumerate(ids):
                src = reuse.get((i, hashes[i]))
                if src is not None:
                    blocks[p] = prev_vectors.embeddings[prev_vectors.rows(src)]
            if todo:
                splitter = PassageSplitter(
                    encoder.tokenizer,
                    cfg.encoder.max_length,
                    overlap=cfg.encoder.passage_overlap,
                    max_passages=cfg.encoder.max_passages,
                )
                passages = splitter.split([docs[p] for p in todo])
                from brainrank.ranker.encoding.bulk import bulk_context

                flat = [text for texts in passages for text in texts]
                with (
                    progress.task("Embedding passages", len(flat)) as advance,
                    bulk_context(encoder, cfg.encoder.bulk_precision),
                ):
                    vectors = encoder.encode(
                        flat, batch_size=cfg.encoder.batch_size, progress=advance
                    )
                start = 0
                for p, texts in zip(todo, passages, strict=True):
                    blocks[p] = vectors[start : start + len(texts)]
                    start += len(texts)
                report.passages = len(flat)
            report.embedded = len(todo)
            report.reused_embeddings = len(ids) - len(todo)
            report.seconds["embedding"] = time.perf_counter() - t

            t = time.perf_counter()
            info = EncoderInfo(encoder.name, encoder.fingerprint, encoder.dim)
            counts = [len(b) for b in blocks]
            owner = np.repeat(np.arange(len(ids)), counts)
            emb = np.vstack(blocks)
            if only_additions and reuse and prev_vectors.encoder == info:
                cut = len(prev_vectors.embeddings)
                vectors_index = prev_vectors.extend(emb[cut:], owner[cut:])
            else:
                vectors_index = VectorIndex.build(emb, info, cfg.vectors, owner)
            vectors_index.save(tmp / "vectors")
            report.seconds["vector_index"] = time.perf_counter() - t
            manifest["passages"] = passage_cfg
            manifest["vectors"] = len(emb)
            manifest["encoder"] = asdict(info)
            manifest["vector_kind"] = vectors_index.kind
            manifest["vector_quantizer"] = vectors_index.quantizer
            manifest["vector_recall"] = report.vector_recall = vectors_index.recall
        (tmp / "docs.json").write_text(json.dumps({"ids": ids, "hashes": [hashes[i] for i in ids]}))
        manifest["seconds"] = report.seconds
        manifest["store_id"] = store.store_id
        manifest["files"] = record_files(tmp)
        # The manifest is written last: a generation directory without one is incomplete.
        (tmp / "manifest.json").write_text(json.dumps(seal(manifest), indent=2))


def stage_generation(
    ws: Workspace,
    cfg: Config,
    *,
    encoder_factory: EncoderFactory,
    encoder_path: Path,
    progress: Progress | None = None,
) -> tuple[int, IngestReport]:
    """Build, but do not activate, a generation of the current documents for another encoder.

    This is how a challenger model with its own fine-tuned encoder gets an index to be
    evaluated on while the champion keeps serving; promoting the model activates it.
    """
    report = IngestReport()
    t0 = time.perf_counter()
    with ws.writer_lock():
        store = ws.open_store()
        try:
            ws.recover(store.version)
            current = ws.serving_generation(store.version)
            _check_store(ws, store, current)
            number = _free_number(ws)
            prev_dir = ws.generation_dir(current) if current is not None else None
            _build_generation(
                ws.generation_dir(number),
                store,
                cfg,
                store.version,
                number,
                prev_dir,
                encoder_factory,
                progress or Progress(),
                report,
                encoder_path=encoder_path,
                staged=True,
            )
        finally:
            store.close()
    report.generation = number
    report.seconds["total"] = time.perf_counter() - t0
    return number, report


def _previous(prev_dir: Path | None):
    """Doc ids, hashes, vector index and passage settings of the generation being replaced."""
    if prev_dir is None or not (prev_dir / "docs.json").exists():
        return [], [], None, None
    try:
        # Verified first, in full: reused embeddings must not carry damage into the new
        # generation (ValueError covers bad JSON and bad UTF-8 in files older than checksums).
        verify_generation(prev_dir, full=True)
        docs = json.loads((prev_dir / "docs.json").read_text(encoding="utf-8"))
        if not docs["ids"]:
            return [], [], None, None
        vectors = VectorIndex.load(prev_dir / "vectors")
        passages = json.loads((prev_dir / "manifest.json").read_text()).get("passages")
    except (BrainrankError, OSError, ValueError, KeyError, TypeError):
        return [], [], None, None  # a damaged previous generation is rebuilt, not reused
    return docs["ids"], docs["hashes"], vectors, passages


def _passage_settings(cfg: Config) -> dict:
    e = cfg.encoder
    return {
        "max_length": e.max_length,
        "max_passages": e.max_passages,
        "overlap": e.passage_overlap,
    }


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def _save_doc_meta(path: Path, docs: list[Document]) -> None:
    """Timestamps (epoch seconds, NaN when unknown) and numeric fields as columns (NaN = absent)."""
    names = sorted({name for d in docs for name in d.fields})
    columns = {
        "timestamp": np.array(
            [d.timestamp.timestamp() if d.timestamp else np.nan for d in docs], dtype=np.float64
        )
    }
    for name in names:
        columns[f"field:{name}"] = np.array([d.fields.get(name, np.nan) for d in docs], np.float64)
    with open(path, "wb") as fh:
        np.savez(fh, **columns)
