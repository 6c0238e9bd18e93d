"""Bring the indexes up to date with the document store, crash-safely.

An ingest runs inside one document-store transaction: upsert and delete, then build a complete
new index generation from the store's new contents (reusing embeddings of unchanged text),
commit, and swap the ``CURRENT`` pointer. A process killed anywhere before the commit leaves
the store and the serving generation as they were; one killed after it is finished by
:meth:`index.workspace.Workspace.recover` on the next run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from index.atomic import atomic_directory
from index.bm25 import BM25Index
from index.errors import BrainrankError
from index.records import Document
from index.store import DocumentStore
from index.vectors import EncoderInfo, VectorIndex
from index.workspace import Workspace
from ranker.config import Config
from ranker.progress import Progress


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    embedded: int = 0
    reused_embeddings: int = 0
    documents: int = 0
    generation: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)

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
    progress: Progress | None = None,
) -> IngestReport:
    """Upsert ``documents``, delete ``delete_ids`` and make the indexes match, atomically."""
    progress = progress or Progress()
    report = IngestReport()
    t0 = time.perf_counter()
    with ws.writer_lock():
        store = ws.open_store()
        try:
            ws.recover(store.version)
            previous = ws.serving_generation(store.version)
            with store.transaction():
                counts = store.upsert(documents)
                report.added, report.updated, report.unchanged = (
                    counts.added,
                    counts.updated,
                    counts.unchanged,
                )
                report.deleted = store.delete(delete_ids) if delete_ids else 0
                report.seconds["store"] = time.perf_counter() - t0
                if not rebuild and not report.changed and previous is not None:
                    report.generation = previous
                    report.documents = store.count()
                    return report
                version = store.bump_version()
                number = ws.next_generation_number()
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
                )
            ws.activate(number)
            report.generation = number
        finally:
            store.close()
    report.seconds["total"] = time.perf_counter() - t0
    return report


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
) -> None:
    hashes = store.hashes()
    prev_ids, prev_hashes, prev_vectors = _previous(prev_dir)
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
            "store_version": version,
            "created": datetime.now(UTC).isoformat(),
            "documents": len(ids),
            "newest_document": _iso(store.newest_timestamp()),
            "config": cfg.to_dict(),
        }
        if ids:
            t = time.perf_counter()
            docs = list(store.iter_documents(ids))
            bm25 = BM25Index.build([d.full_text for d in docs], cfg.bm25)
            bm25.save(tmp / "bm25")
            report.seconds["keyword_index"] = time.perf_counter() - t

            encoder = None
            fingerprint = prev_vectors.encoder.fingerprint if prev_vectors is not None else None
            reuse = {}
            if prev_vectors is not None:
                encoder = encoder_factory()
                if encoder.fingerprint == fingerprint:
                    reuse = {
                        (i, h): p
                        for p, (i, h) in enumerate(zip(prev_ids, prev_hashes, strict=True))
                    }
            todo = [p for p, i in enumerate(ids) if (i, hashes[i]) not in reuse]
            if todo and encoder is None:
                encoder = encoder_factory()
            t = time.perf_counter()
            dim = encoder.dim if encoder is not None else prev_vectors.encoder.dim
            emb = np.zeros((len(ids), dim), dtype=np.float32)
            for p, i in enumerate(ids):
                src = reuse.get((i, hashes[i]))
                if src is not None:
                    emb[p] = prev_vectors.embeddings[src]
            if todo:
                with progress.task("Embedding documents", len(todo)) as advance:
                    emb[todo] = encoder.encode(
                        [docs[p].full_text for p in todo],
                        batch_size=cfg.encoder.batch_size,
                        progress=advance,
                    )
            report.embedded = len(todo)
            report.reused_embeddings = len(ids) - len(todo)
            report.seconds["embedding"] = time.perf_counter() - t

            t = time.perf_counter()
            info = (
                EncoderInfo(encoder.name, encoder.fingerprint, encoder.dim)
                if encoder is not None
                else prev_vectors.encoder
            )
            if only_additions and prev_vectors.encoder == info:
                vectors = prev_vectors.extend(emb[len(prev_ids) :])
            else:
                vectors = VectorIndex.build(emb, info, cfg.vectors)
            vectors.save(tmp / "vectors")
            report.seconds["vector_index"] = time.perf_counter() - t
            manifest["encoder"] = asdict(info)
            manifest["vector_kind"] = vectors.kind
        (tmp / "docs.json").write_text(json.dumps({"ids": ids, "hashes": [hashes[i] for i in ids]}))
        manifest["seconds"] = report.seconds
        # The manifest is written last: a generation directory without one is incomplete.
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _previous(prev_dir: Path | None):
    if prev_dir is None or not (prev_dir / "docs.json").exists():
        return [], [], None
    docs = json.loads((prev_dir / "docs.json").read_text())
    if not docs["ids"]:
        return [], [], None
    try:
        vectors = VectorIndex.load(prev_dir / "vectors")
    except BrainrankError:
        return [], [], None  # a damaged previous generation is rebuilt, not reused
    return docs["ids"], docs["hashes"], vectors


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None
