"""``brainrank check``: verify everything a workspace holds and say how to repair what is damaged.

Each part is checked in full, which searches do not do on every start: SQLite's integrity check
of the document store and the query log, every file of every index generation and model
version hashed against the checksums recorded when it was written. Generations and versions
written before checksums existed are checked structurally (they load) and reported as
``unverified``. A damaged query log can be set aside (``repair=True``): it is moved to
``querylog.sqlite.corrupt-<time>`` and a new log starts; everything else is repaired by the
command each finding names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from brainrank.index.errors import BrainrankError
from brainrank.index.store import DocumentStore, repair_hint
from brainrank.index.workspace import Workspace
from brainrank.ranker.feedback.judgments import JUDGMENT_TABLES, JUDGMENTS_FILE
from brainrank.ranker.feedback.store import LOG_FILE, check_file, connect, set_aside
from brainrank.ranker.retrieval.verify import REINDEX, verify_generation

OK, UNVERIFIED, NOTE, DAMAGED, REPAIRED = "ok", "unverified", "note", "damaged", "repaired"


@dataclass(frozen=True)
class Finding:
    """One checked part: its status (ok, unverified, note, damaged, repaired) and what to do."""

    part: str
    path: str
    status: str
    detail: str
    repair: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def healthy(findings: list[Finding]) -> bool:
    return not any(f.status == DAMAGED for f in findings)


def check_workspace(
    root: Path, *, log_paths: tuple[Path, ...] = (), repair: bool = False
) -> list[Finding]:
    """Findings for the workspace at ``root``: documents, serving pointer, index generations,
    model versions and query logs (the workspace's, plus ``log_paths``)."""
    ws = Workspace(root)
    if not ws.root.is_dir():
        raise BrainrankError(f"there is no workspace at {ws.root}")
    findings: list[Finding] = []
    store = _check_store(ws, findings)
    try:
        _check_serving(ws, store, findings)
        _check_generations(ws, store, findings)
    finally:
        if store is not None:
            store.close()
    _check_models(ws, findings)
    for path in dict.fromkeys([ws.logs_dir / LOG_FILE, *log_paths]):
        _check_log(Path(path), repair, findings)
    _check_judgments(ws.root / JUDGMENTS_FILE, findings)
    return findings


def _check_store(ws: Workspace, findings: list[Finding]) -> DocumentStore | None:
    path = ws.store_path
    if not path.exists():
        if any(ws.indexes_dir.glob("gen-*")):
            findings.append(Finding("documents", str(path), DAMAGED, "missing", repair_hint(path)))
        else:
            findings.append(Finding("documents", str(path), NOTE, "no documents ingested yet"))
        return None
    try:
        store = DocumentStore(path, create=False)
    except BrainrankError as exc:
        findings.append(Finding("documents", str(path), DAMAGED, str(exc), repair_hint(path)))
        return None
    try:
        problem = store.integrity_check()
        if problem is None:
            bad = store.mismatched_documents()
            if bad:
                shown = ", ".join(repr(i) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
                problem = f"{len(bad)} documents no longer match their content hash: {shown}"
        count, version = store.count(), store.version
    except BrainrankError as exc:
        problem = str(exc)
    if problem:
        store.close()
        findings.append(Finding("documents", str(path), DAMAGED, problem, repair_hint(path)))
        return None
    detail = f"{count} documents, version {version}"
    findings.append(Finding("documents", str(path), OK, detail))
    return store


def _check_serving(ws: Workspace, store: DocumentStore | None, findings: list[Finding]) -> None:
    where = str(ws.serving_file)
    try:
        state = ws.serving_state()
        number = ws.serving_generation(store.version) if store is not None else None
    except BrainrankError as exc:
        findings.append(Finding("serving pointer", where, DAMAGED, str(exc), REINDEX))
        return
    if store is not None and number is not None:
        try:
            store.check_built_from(ws.manifest(number), ws.generation_dir(number).name)
        except BrainrankError as exc:
            findings.append(Finding("documents", str(store.path), DAMAGED, str(exc)))
            return
    detail = f"generation {number}, champion {state.champion or 'none'}"
    findings.append(Finding("serving pointer", where, OK, detail))


def _check_generations(ws: Workspace, store: DocumentStore | None, findings: list[Finding]):
    folders = sorted(ws.indexes_dir.glob("gen-*")) if ws.indexes_dir.is_dir() else []
    seen: set = set()  # files already hashed: generations share segments (hard links)
    for folder in folders:
        try:
            verified = verify_generation(folder, full=True, seen=seen)
            if not verified:
                from brainrank.ranker.retrieval.candidates import Generation

                Generation(folder)  # written before checksums: it must at least load
            if store is not None:
                manifest = ws.manifest(int(folder.name[4:]))
                store.check_built_from(manifest, folder.name, committed=False)
        except BrainrankError as exc:
            findings.append(Finding("index", str(folder), DAMAGED, str(exc), REINDEX))
            continue
        if verified:
            detail = "every file matches its checksum" + _segments_note(ws, folder)
            findings.append(Finding("index", str(folder), OK, detail))
        else:
            detail = "written before checksums: it loads, but its files cannot be verified"
            findings.append(Finding("index", str(folder), UNVERIFIED, detail, REINDEX))
    for tmp in sorted(ws.indexes_dir.glob(".gen-*.tmp")) if ws.indexes_dir.is_dir() else []:
        detail = "left by an interrupted build; the next ingest removes it"
        findings.append(Finding("index", str(tmp), NOTE, detail))


def _segments_note(ws: Workspace, folder: Path) -> str:
    """How many segments and deleted documents a generation carries, when it is not merged."""
    segments = ws.manifest(int(folder.name[4:])).get("segments")
    if not isinstance(segments, list) or not segments:
        return ""
    if len(segments) == 1 and not segments[0].get("deleted"):
        return ""
    deleted = sum(int(s.get("deleted", 0)) for s in segments)
    return f" ({len(segments)} segments, {deleted} deleted documents; `brainrank optimize` merges)"


def _check_models(ws: Workspace, findings: list[Finding]) -> None:
    from brainrank.ranker.registry.registry import Registry
    from brainrank.ranker.registry.version import (
        REPAIR,
        VERSION_NAME,
        load_version,
        verify_version,
    )

    registry = Registry(ws.models_dir)
    folders = sorted(registry.versions_dir.iterdir()) if registry.versions_dir.is_dir() else []
    for folder in folders:
        if not (VERSION_NAME.match(folder.name) and folder.is_dir()):
            continue
        try:
            if not (folder / "model.json").is_file():
                raise BrainrankError(f"{folder} has no model.json")
            verified = verify_version(load_version(folder), full=True)
        except BrainrankError as exc:
            findings.append(Finding("model", str(folder), DAMAGED, str(exc), REPAIR))
            continue
        if verified:
            findings.append(Finding("model", str(folder), OK, "every file matches its checksum"))
        else:
            detail = "committed before checksums: its files cannot be verified"
            findings.append(Finding("model", str(folder), UNVERIFIED, detail))
    pointer_ok = not any(f.part == "serving pointer" and f.status == DAMAGED for f in findings)
    try:
        registry.champion()
    except BrainrankError as exc:
        if pointer_ok:  # else already reported
            findings.append(Finding("champion", str(ws.serving_file), DAMAGED, str(exc), REPAIR))
    registry.history()
    for problem in registry.problems:
        findings.append(Finding("model history", str(registry.history_file), NOTE, problem))


def _check_log(path: Path, repair: bool, findings: list[Finding]) -> None:
    if not path.exists():
        findings.append(Finding("query log", str(path), NOTE, "no searches logged yet"))
        return
    problem = check_file(path)
    if problem is None:
        findings.append(Finding("query log", str(path), OK, "integrity check passed"))
        return
    if not repair:
        fix = "run `brainrank check --repair` to move it aside and start a new log"
        findings.append(Finding("query log", str(path), DAMAGED, problem, fix))
        return
    aside = set_aside(path)
    connect(path).close()  # the new, empty log
    detail = f"{problem}; moved to {aside.name} and started a new log"
    findings.append(Finding("query log", str(path), REPAIRED, detail))


def _check_judgments(path: Path, findings: list[Finding]) -> None:
    """The judgment store: people's work, so it is reported, never moved aside."""
    if not path.exists():
        findings.append(Finding("judgments", str(path), NOTE, "no judgments imported yet"))
        return
    problem = check_file(path, JUDGMENT_TABLES, "a judgment store")
    if problem is None:
        findings.append(Finding("judgments", str(path), OK, "integrity check passed"))
        return
    fix = (
        "restore it from a backup, or move it aside and import the judgments again with "
        "`brainrank judgments import`"
    )
    findings.append(Finding("judgments", str(path), DAMAGED, problem, fix))
