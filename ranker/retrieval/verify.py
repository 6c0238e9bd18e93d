"""Checking an index generation against the checksums its manifest recorded when it was written.

``indexing`` records every file of a generation (size and SHA-256) in its ``manifest.json`` and
seals the manifest. A search verifies the generation it loads: the manifest, the keyword
indexes, document ids and metadata are hashed every time; the two big vector files of each
segment (FAISS index, embeddings) get a size, head and array-header check, so a cold start
over a million documents stays fast. ``full=True`` hashes those too: before an ingest reuses
or merges a generation's segments, and in ``brainrank check``. Generations written before
checksums carry none; they get the structural checks alone, and ``check`` says so.
"""

from __future__ import annotations

from pathlib import Path

from brainrank.index.integrity import (
    check_npy_files,
    damaged,
    describe_files,
    is_sealed,
    read_manifest,
    verify_files,
)

MANIFEST = "manifest.json"
# Checked structurally on every load, hashed in full only on request (in every segment).
LARGE = frozenset({"vectors/vectors.faiss", "vectors/embeddings.npy"})


# Any other array this big gets the same structural check on load (size, first MiB, header):
# hashing a million documents' keyword postings (about 1.5 GB) would take most of a cold start.
BIG_ARRAY = 64 << 20


def is_large(rel: str) -> bool:
    return rel in LARGE or rel.endswith(tuple(f"/{name}" for name in LARGE))


def _large_on_load(directory: Path):
    def large(rel: str) -> bool:
        if is_large(rel):
            return True
        try:
            return rel.endswith(".npy") and (directory / rel).stat().st_size >= BIG_ARRAY
        except OSError:
            return False  # missing: verify_files names it

    return large


REINDEX = "run `brainrank reindex` to rebuild the indexes"
# What every generation with documents holds, checksums or not.
_REQUIRED = ("bm25/brainrank_bm25.json", "vectors/vectors.json", "vectors/vectors.faiss")
# ... and each segment of a segmented one.
_SEGMENT_REQUIRED = ("bm25/postings.json", "vectors/vectors.json", "vectors/vectors.faiss")


def record_files(directory: Path) -> dict[str, dict]:
    """The checksums of a finished generation folder, for its manifest."""
    return describe_files(directory, skip=(MANIFEST,))


def verify_generation(directory: Path, *, full: bool = False, seen: set | None = None) -> bool:
    """Raise ``DamagedArtifactError`` (naming the file and ``brainrank reindex``) for damage.

    Returns True when checksums were verified, False for a generation written before them
    (then only its manifest and arrays are checked structurally). ``seen``: see
    ``verify_files`` (``brainrank check`` hashes a segment shared by generations once).
    """
    manifest = read_manifest(directory / MANIFEST, REINDEX)
    files = manifest.get("files")
    if files is None or not is_sealed(manifest):
        if isinstance(manifest.get("segments"), list):
            required = tuple(
                f"segments/{entry.get('name')}/{rel}"
                for entry in manifest["segments"]
                if isinstance(entry, dict)
                for rel in ("docs.json", *_SEGMENT_REQUIRED)
            )
        else:
            required = ("docs.json", *(_REQUIRED if manifest.get("documents") != 0 else ()))
        for rel in required:
            if not (directory / rel).is_file():
                raise damaged(directory / rel, "the file is missing", REINDEX)
        check_npy_files(directory, REINDEX)
        return False
    large = _large_on_load(directory)
    verify_files(directory, files, repair=REINDEX, full=full, large=large, seen=seen)
    return True
