"""Damaged files on disk: a store that cannot be read is an error, never an empty collection;
index generations are verified against the checksums written with them, and `reindex`
rebuilds whatever state the index folder is in. Real files, damaged as a disk or a person would:
truncated, zeroed, bytes flipped, arrays permuted, on a copy of the sample workspace."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from brainrank.index.errors import BrainrankError
from brainrank.index.integrity import (
    HEAD_BYTES,
    DamagedArtifactError,
    describe_files,
    verify_files,
)
from brainrank.index.records import Document
from brainrank.index.store import DocumentStore
from brainrank.index.workspace import Workspace
from tests.conftest import ingest

GEN = "indexes/gen-000001"


def docs(n: int) -> list[Document]:
    return [Document(f"d{i}", f"title {i}", f"some body text number {i}") for i in range(n)]


def filled_store(path, n=300) -> None:
    store = DocumentStore(path)
    with store.transaction():
        store.upsert(docs(n))
        store.bump_version()
    store.close()


@pytest.fixture
def cfg(sample_config, tmp_path):
    """A private copy of the sample workspace and its config, to damage."""
    root = tmp_path / "ws"
    shutil.copytree(sample_config.workspace, root)
    return dataclasses.replace(sample_config, workspace=root)


def flip(path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def permute(path) -> None:
    """Same file size, same values, wrong order: no parser can notice this."""
    np.save(path, np.random.default_rng(0).permutation(np.load(path)))


# ----- the document store (item 2) -------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b""), "an empty file"),
        (truncate, "truncated"),
        (lambda p: p.write_bytes(b"\0" * 4096 + p.read_bytes()[4096:]), "not an SQLite"),
    ],
    ids=["zero-bytes", "truncated", "zeroed-header"],
)
def test_an_unreadable_store_is_an_error_never_an_empty_one(tmp_path, damage, message):
    path = tmp_path / "documents.sqlite"
    filled_store(path)
    damage(path)
    with pytest.raises(BrainrankError, match=message) as info:
        store = DocumentStore(path)
        store.count()  # on the old code the store opened as empty (or failed only here)
    assert str(path) in str(info.value) and "backup" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_store_of_another_schema_is_refused(tmp_path):
    path = tmp_path / "documents.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE documents (id TEXT, body TEXT)")
    db.execute("INSERT INTO documents VALUES ('a', 'b')")
    db.commit()
    db.close()
    with pytest.raises(BrainrankError, match="not a brainrank document store"):
        DocumentStore(path).count()


def test_damaged_pages_are_one_line_naming_the_store(tmp_path):
    path = tmp_path / "documents.sqlite"
    filled_store(path, n=2000)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for i in range(2 * page, len(data) - page, page):  # every interior page's header
        data[i : i + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(BrainrankError, match="documents.sqlite is unreadable"):
        store = DocumentStore(path)
        list(store.iter_documents())
    assert DocumentStore(path).integrity_check() is not None


def test_a_new_store_appears_complete(tmp_path):
    path = tmp_path / "documents.sqlite"
    store = DocumentStore(path)
    assert path.stat().st_size > 0 and store.store_id and store.version == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "documents.sqlite",
        "documents.sqlite-shm",
        "documents.sqlite-wal",
    ]
    store.close()
    with pytest.raises(BrainrankError, match="does not exist"):
        DocumentStore(tmp_path / "other.sqlite", create=False)


def test_search_over_an_emptied_store_is_an_error(cfg):
    from brainrank.ranker.retrieval.search import SearchEngine

    store_path = Workspace(cfg.workspace).store_path
    store_path.write_bytes(b"")
    with pytest.raises(BrainrankError, match="empty file"):
        SearchEngine(cfg)
    # A store replaced by a valid but empty one: the index knows better.
    store_path.unlink()
    DocumentStore(store_path).close()
    with pytest.raises(BrainrankError, match="does not match the index"):
        SearchEngine(cfg)


def test_ingest_never_shrinks_the_collection_to_a_replaced_store(cfg, encoder):
    """On the old code this ingest silently replaced the sample's 604 documents by 3."""
    w = Workspace(cfg.workspace)
    before = sorted(p.name for p in w.indexes_dir.iterdir())
    w.store_path.unlink()
    DocumentStore(w.store_path).close()  # a fresh, valid, empty store in its place
    with pytest.raises(BrainrankError, match="does not match the index") as info:
        ingest(cfg, encoder, docs(3))
    assert "move the indexes folder aside" in str(info.value)
    assert sorted(p.name for p in w.indexes_dir.iterdir()) == before
    # Zeroed instead: the CLI says so in one line and changes nothing either.
    from brainrank.ranker.cli.app import app

    w.store_path.write_bytes(b"")
    source = cfg.workspace / "more.jsonl"
    source.write_text(json.dumps({"id": "x1", "title": "t", "text": "body"}) + "\n")
    res = CliRunner().invoke(app, ["ingest", str(source), "-w", str(cfg.workspace)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "documents.sqlite is unreadable (an empty file)" in res.output
    assert w.store_path.stat().st_size == 0
    assert sorted(p.name for p in w.indexes_dir.iterdir()) == before


# ----- index generations (item 4) --------------------------------------------------------------


SEG = "segments/seg-000001/"  # the sample workspace's one segment
DAMAGE = {
    "bm25-freqs-permuted": (SEG + "bm25/freqs.npy", permute),
    "bm25-docs-permuted": (SEG + "bm25/docs.npy", permute),
    "title-indptr-truncated": (SEG + "bm25_title/indptr.npy", truncate),
    "vocab-flipped": (SEG + "bm25/vocab.json", flip),
    "sequences-permuted": (SEG + "bm25/sequences.npy", permute),
    "faiss-truncated": (SEG + "vectors/vectors.faiss", truncate),
    "faiss-header-flipped": (SEG + "vectors/vectors.faiss", lambda p: flip(p, 40)),
    "embeddings-flipped": (SEG + "vectors/embeddings.npy", flip),
    "owner-zeroed": (SEG + "vectors/owner.npy", lambda p: p.write_bytes(b"\0" * p.stat().st_size)),
    "doc-ids-flipped": (SEG + "docs.json", flip),
    "doc-meta-truncated": (SEG + "doc_meta.npz", truncate),
    "manifest-truncated": ("manifest.json", truncate),
}


@pytest.mark.parametrize("name, damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_index_files_are_named_with_the_repair(cfg, name, damage):
    """Each is one line naming the file and `brainrank reindex`; on the old code the
    permuted arrays were served silently and several others gave a traceback."""
    from brainrank.ranker.retrieval.search import SearchEngine

    damage(cfg.workspace / GEN / name)
    with pytest.raises(BrainrankError) as info:
        SearchEngine(cfg).search("gift card", mode="bm25")
    message = str(info.value)
    assert name in message and "brainrank reindex" in message and "\n" not in message


def test_a_manifest_changed_in_place_is_caught_by_its_own_checksum(cfg):
    from brainrank.ranker.retrieval.search import SearchEngine

    path = cfg.workspace / GEN / "manifest.json"
    text = path.read_text()
    path.write_text(text.replace('"documents": 604', '"documents": 603'))  # valid JSON still
    with pytest.raises(DamagedArtifactError, match="differ from its own checksum"):
        SearchEngine(cfg)


def test_a_generation_written_before_checksums_is_accepted(cfg):
    from brainrank.ranker.retrieval.search import SearchEngine

    path = cfg.workspace / GEN / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["files"], manifest["checksum"], manifest["store_id"]
    path.write_text(json.dumps(manifest))
    assert SearchEngine(cfg).search("gift card", mode="bm25").hits
    truncate(cfg.workspace / GEN / SEG / "bm25" / "freqs.npy")  # structure is still checked
    with pytest.raises(BrainrankError, match="freqs.npy"):
        SearchEngine(cfg)


def test_damaged_embeddings_are_never_reused(cfg, encoder, sample_docs):
    """An ingest verifies the generation it copies embeddings from, in full."""
    flip(cfg.workspace / GEN / SEG / "vectors" / "embeddings.npy")
    rep = ingest(cfg, encoder, [Document("new-1", "Hovercraft rental", "Rent a hovercraft.")])
    assert rep.reused_embeddings == 0 and rep.embedded == len(sample_docs) + 1


@pytest.mark.parametrize(
    "damage", [truncate, flip, lambda p: p.write_bytes(bytes(p.stat().st_size))]
)
def test_a_damaged_document_list_is_rebuilt_not_reused(cfg, encoder, sample_docs, damage):
    """docs.json of the generation an ingest replaces, damaged (bench_faults.py found this
    one raising a JSON traceback): the ingest rebuilds everything from the store."""
    damage(cfg.workspace / GEN / SEG / "docs.json")
    rep = ingest(cfg, encoder, [Document("new-1", "Hovercraft rental", "Rent a hovercraft.")])
    assert rep.reused_embeddings == 0 and rep.embedded == len(sample_docs) + 1


def test_big_files_get_cheap_checks_on_load_and_full_ones_on_request(tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    np.save(folder / "big.npy", np.arange(3 * HEAD_BYTES // 4, dtype=np.float32))
    (folder / "small.json").write_text('{"a": 1}')
    files = describe_files(folder)
    assert "head_sha256" in files["big.npy"] and "head_sha256" not in files["small.json"]
    cheap = dict(repair="run `fix`", full=False, large=lambda rel: rel == "big.npy")
    verify_files(folder, files, **cheap)
    flip(folder / "big.npy", at=2 * HEAD_BYTES)  # past the head: only a full check sees it
    verify_files(folder, files, **cheap)
    with pytest.raises(DamagedArtifactError, match="big.npy is damaged .* run `fix`"):
        verify_files(folder, files, repair="run `fix`", full=True)
    flip(folder / "big.npy", at=2 * HEAD_BYTES)
    flip(folder / "big.npy", at=200)  # in the head
    with pytest.raises(DamagedArtifactError, match="first bytes"):
        verify_files(folder, files, **cheap)
    (folder / "big.npy").write_bytes((folder / "big.npy").read_bytes()[:-4])
    with pytest.raises(DamagedArtifactError, match="bytes,"):
        verify_files(folder, files, **cheap)


# ----- reindex repairs whatever state the index folder is in (item 3) --------------------------


def test_reindex_rebuilds_from_a_wrecked_index_folder(cfg, encoder):
    from brainrank.ranker.retrieval.reindex import rebuild_indexes
    from brainrank.ranker.retrieval.search import SearchEngine

    w = Workspace(cfg.workspace)
    before = SearchEngine(cfg).search("gift card", mode="bm25", k=5)
    (w.root / "SERVING").write_bytes(b"\xff\xfe not a pointer")
    flip(w.generation_dir(1) / "manifest.json", at=3)
    half = w.generation_dir(4)  # half-deleted: some files, no manifest
    shutil.copytree(w.generation_dir(1) / SEG / "bm25", half / SEG / "bm25")
    gutted = w.generation_dir(3)  # a manifest, but its vectors are gone
    shutil.copytree(w.generation_dir(1), gutted)
    (gutted / "manifest.json").write_text(json.dumps({"generation": 3, "store_version": 1}))
    shutil.rmtree(gutted / SEG / "vectors")
    with pytest.raises(BrainrankError):
        SearchEngine(cfg)
    rep = rebuild_indexes(cfg, encoder_factory=lambda: encoder)
    assert rep.documents == 604 and rep.generation == 5
    assert sorted(p.name for p in w.indexes_dir.iterdir() if p.name.startswith("gen-")) == [
        "gen-000005"
    ]
    after = SearchEngine(cfg).search("gift card", mode="bm25", k=5)
    assert [h.doc_id for h in after.hits] == [h.doc_id for h in before.hits]


def test_reindex_command_with_a_garbled_manifest(cfg):
    from brainrank.ranker.cli.app import app

    truncate(cfg.workspace / GEN / "manifest.json")
    res = CliRunner().invoke(app, ["reindex", "-w", str(cfg.workspace)])
    assert res.exit_code == 0, res.output
    assert "rebuilt generation 2: 604 documents" in res.output
    res = CliRunner().invoke(app, ["search", "gift", "--mode", "bm25", "-w", str(cfg.workspace)])
    assert res.exit_code == 0, res.output


def test_big_keyword_arrays_get_the_cheap_check_on_load(cfg, monkeypatch):
    from brainrank.ranker.retrieval import verify
    from brainrank.ranker.retrieval.search import SearchEngine

    gen = cfg.workspace / GEN
    freqs = SEG + "bm25/freqs.npy"
    large = verify._large_on_load(gen)
    assert not large(freqs) and not large(SEG + "docs.json")  # small: hashed in full
    monkeypatch.setattr(verify, "BIG_ARRAY", (gen / freqs).stat().st_size)
    large = verify._large_on_load(gen)
    assert large(freqs) and not large(SEG + "docs.json") and not large(SEG + "bm25/vocab.json")
    assert SearchEngine(cfg).search("gift card", mode="bm25").hits
    permute(gen / freqs)  # within its first MiB: the cheap check still sees it
    with pytest.raises(DamagedArtifactError, match="freqs.npy is damaged"):
        SearchEngine(cfg).search("gift card", mode="bm25")
