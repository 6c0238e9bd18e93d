"""Bring the indexes up to date with the document store, crash-safely.

An ingest runs inside one document-store transaction: upsert and delete, then write a new
index generation, commit, and move the serving pointer (``SERVING``: generation and champion,
one atomic file; the champion is kept). A process killed anywhere before the commit leaves
the store and the serving generation as they were; one killed after it is finished by
:meth:`index.workspace.Workspace.recover` on the next run.

A generation is an ordered list of immutable segments (``building``, ``layout``). An ingest
that changes a few documents keeps the previous generation's segments (hard links), marks the
old copies of what it changed or deleted, and adds one segment of the new documents, so its
cost follows the change; its merge policy ([segments]) and ``brainrank optimize`` merge
segments back into one. A first ingest, ``reindex``, other keyword or passage settings, another
encoder or an older index format build everything into one segment instead (reusing the
embeddings of unchanged text).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from brainrank.index.errors import BrainrankError, InputError
from brainrank.index.integrity import DamagedArtifactError
from brainrank.index.records import Document
from brainrank.index.store import DocumentStore
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import Config
from brainrank.ranker.progress import Progress
from brainrank.ranker.retrieval.building import build_delta, build_full, new_manifest
from brainrank.ranker.retrieval.layout import is_segmented, read_layout
from brainrank.ranker.retrieval.planning import (
    FORMAT,
    full_build_reason,
    merge_choice,
    plan_delta,
)
from brainrank.ranker.retrieval.verify import verify_generation


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    embedded: int = 0  # documents embedded now
    passages: int = 0  # passages embedded now
    reused_embeddings: int = 0  # searchable documents whose vectors were not computed now
    documents: int = 0
    generation: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # bad input records skipped (skip_bad)
    truncated: int = 0  # documents whose text was cut to [ingest] max_text_chars
    dropped: list[str] = field(default_factory=list)  # numeric fields left out (NaN, inf, ...)
    # Fields kept neither as a number nor as a tag: name -> (what, where first, documents).
    ignored: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    vector_recall: dict | None = None  # the approximate vector index's measured recall
    segments: int | None = None  # segments of the generation written
    merged: str | None = None  # "small" or "all" when the ingest merged segments
    # Why the index was rebuilt in full rather than extended by a segment (None: it was
    # extended, or there was nothing to extend, or `reindex` asked for it).
    rebuilt: str | None = None

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
    if delete_ids:
        documents = list(documents)
        _refuse_both([d.doc_id for d in documents], delete_ids)
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
            base = ws.manifest(previous) if previous is not None else None
            built_from = store.version
            with store.transaction():
                counts = store.upsert(documents)
                report.added, report.updated, report.unchanged = (
                    counts.added,
                    counts.updated,
                    counts.unchanged,
                )
                report.deleted = store.delete(delete_ids) if delete_ids else 0
                report.seconds["store"] = time.perf_counter() - t0
                if (
                    not rebuild
                    and not report.changed
                    and base is not None
                    and base.get("format", 1) == FORMAT
                ):
                    report.generation = previous
                    report.documents = store.count()
                    return report
                version = store.bump_version()
                number = _free_number(ws)
                manifest = new_manifest(
                    number, version, store, cfg, encoder_path=_path(encoder_path), staged=False
                )
                prev_dir = None if rebuild or previous is None else ws.generation_dir(previous)
                delta = None
                if prev_dir is not None:
                    report.rebuilt = (
                        "the document store changed after it was built"
                        if base.get("store_version") != built_from
                        else full_build_reason(base, cfg)
                    )
                if prev_dir is not None and report.rebuilt is None:
                    delta = plan_delta(prev_dir, base, cfg, counts.written, list(delete_ids))
                    if delta is None:
                        report.rebuilt = "one of its files could not be read"
                _write_generation(
                    ws.generation_dir(number),
                    store,
                    cfg,
                    manifest,
                    prev_dir,
                    delta,
                    _once(encoder_factory),
                    progress,
                    report,
                )
            ws.activate(number)
            report.generation = number
            if rebuild:
                _remove_damaged(ws, keep=number)
        finally:
            store.close()
    report.seconds["total"] = time.perf_counter() - t0
    return report


def _write_generation(target, store, cfg, manifest, prev_dir, delta, encoder, progress, report):
    """A generation from ``delta`` when there is one the encoder still fits, else in full."""
    if delta is not None and delta.live:
        fingerprint = (delta.manifest.get("encoder") or {}).get("fingerprint")
        # Only what is embedded now needs the encoder; its fingerprint still decides, as the
        # vectors of every segment must come from the encoder queries are embedded with.
        if encoder().fingerprint == fingerprint:
            vectors_changed = delta.manifest.get("vector_params") != asdict(cfg.vectors)
            choice = merge_choice(delta, cfg.segments, vectors_changed)
            try:
                build_delta(target, store, cfg, manifest, delta, choice, encoder, progress, report)
                return
            except DamagedArtifactError:
                # A segment to merge is damaged: everything is rebuilt from the store.
                report.rebuilt = "a segment to merge is damaged"
        else:
            report.rebuilt = "it was embedded by another encoder"
    build_full(target, store, cfg, manifest, prev_dir, encoder, progress, report)


def _once(factory: EncoderFactory) -> EncoderFactory:
    """``factory`` called at most once, on first use."""
    held = []

    def get():
        if not held:
            held.append(factory())
        return held[0]

    return get


def _path(path: Path | None) -> str | None:
    return str(path) if path else None


def optimize_indexes(ws: Workspace, cfg: Config, progress: Progress | None = None) -> IngestReport:
    """Merge the serving generation's segments into one, in a new generation, and serve it.

    Nothing is tokenized or embedded again. A generation that already is one segment without
    deleted documents (or one written before segments) is left as it is: the report's
    ``generation`` is the serving one and ``merged`` is None.
    """
    report = IngestReport()
    t0 = time.perf_counter()
    with ws.writer_lock():
        store = ws.open_store()
        try:
            ws.recover(store.version)
            previous = ws.serving_generation(store.version)
            _check_store(ws, store, previous)
            if previous is None:
                raise BrainrankError(
                    f"workspace {ws.root} has no index yet; run `brainrank ingest` first"
                )
            base = ws.manifest(previous)
            report.generation, report.documents = previous, int(base.get("documents") or 0)
            prev_dir = ws.generation_dir(previous)
            entries = read_layout(prev_dir, base) if is_segmented(base) else []
            report.segments = len(entries) or 1
            if len(entries) <= 1 and not any(len(e.deleted) for e in entries):
                return report
            delta = plan_delta(prev_dir, base, cfg, (), ())
            if delta is None or not delta.live:
                why = full_build_reason(base, cfg) or "one of its files could not be read"
                raise BrainrankError(
                    f"generation {previous} cannot be merged: {why}; run `brainrank reindex` "
                    "to rebuild it"
                )
            number = _free_number(ws)
            manifest = new_manifest(
                number,
                store.version,
                store,
                cfg,
                encoder_path=base.get("encoder_path"),
                staged=False,
            )
            build_delta(
                ws.generation_dir(number),
                store,
                cfg,
                manifest,
                delta,
                "all",
                lambda: None,
                progress or Progress(),
                report,
            )
            ws.activate(number)
            report.generation = number
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


def _refuse_both(stored_ids: Sequence[str], delete_ids: Sequence[str]) -> None:
    """An id both stored and deleted by one ingest is an error, before anything changes:
    either order would silently drop half of the request (unchanged documents included)."""
    stored = set(stored_ids)
    both = [i for i in dict.fromkeys(delete_ids) if i in stored]
    if both:
        shown = ", ".join(repr(i) for i in both[:10])
        more = f" and {len(both) - 10} more" if len(both) > 10 else ""
        raise InputError(
            f"document id(s) {shown}{more} are both among the documents to store and the ids to "
            "delete; nothing was changed (ingest and delete them in separate runs)"
        )


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
            manifest = new_manifest(
                number, store.version, store, cfg, encoder_path=_path(encoder_path), staged=True
            )
            build_full(
                ws.generation_dir(number),
                store,
                cfg,
                manifest,
                prev_dir,
                _once(encoder_factory),
                progress or Progress(),
                report,
            )
        finally:
            store.close()
    report.generation = number
    report.seconds["total"] = time.perf_counter() - t0
    return number, report
