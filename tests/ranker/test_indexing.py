"""Ingest lifecycle on the real encoder, FAISS and SQLite: updates, deletes, crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from brainrank.index.errors import InputError
from brainrank.index.records import Document
from brainrank.index.workspace import Workspace
from brainrank.ranker.retrieval.search import SearchEngine
from tests.conftest import REPO, ingest, make_config


@pytest.fixture
def small(sample_docs):
    return list(sample_docs[:12])


def ids(result):
    return [h.doc_id for h in result.hits]


def test_ingest_makes_collection_searchable(tmp_path, encoder, small):
    cfg = make_config(tmp_path / "ws")
    rep = ingest(cfg, encoder, small)
    assert (rep.added, rep.documents, rep.embedded, rep.generation) == (12, 12, 12, 1)
    engine = SearchEngine(cfg, encoder=encoder)
    target = small[3]
    assert engine.search(target.title, k=3, mode="hybrid").hits[0].doc_id == target.doc_id


def test_reingest_same_data_changes_nothing(tmp_path, encoder, small):
    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, small)
    rep = ingest(cfg, encoder, small)
    assert (rep.added, rep.updated, rep.unchanged, rep.generation) == (0, 0, 12, 1)


def test_update_reembeds_only_changed_text(tmp_path, encoder, small):
    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, small)
    changed = Document(
        small[0].doc_id, "Zeppelin airship tours", "Fly over the lake in a zeppelin."
    )
    new = Document("new-1", "Hovercraft rental", "Rent a hovercraft for the weekend.")
    rep = ingest(cfg, encoder, [changed, new])
    assert (rep.added, rep.updated, rep.embedded, rep.reused_embeddings) == (1, 1, 2, 11)
    engine = SearchEngine(cfg, encoder=encoder)
    assert engine.search("zeppelin airship", k=1, mode="bm25").hits[0].doc_id == small[0].doc_id
    assert engine.search("hovercraft", k=1, mode="dense").hits[0].doc_id == "new-1"


def test_embeddings_reused_equal_fresh_ones(tmp_path, encoder, small):
    import numpy as np

    def first_passages(docs):
        # A document's first passage is its full text as the encoder reads it.
        gen = SearchEngine(cfg, encoder=encoder).generation
        return gen.vectors.embeddings[
            [gen.vectors.rows(gen.doc_ids.index(d.doc_id)).start for d in docs]
        ]

    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, small[:6])
    before = first_passages(small[:6])
    ingest(cfg, encoder, small[6:])  # additions only: old vectors are copied, not recomputed
    np.testing.assert_array_equal(first_passages(small[:6]), before)
    fresh = encoder.encode([d.full_text for d in small])
    # Bulk embedding may run in bfloat16 (config bulk_precision), hence the tolerance.
    np.testing.assert_allclose(first_passages(small), fresh, atol=3e-3)


def test_delete_removes_from_every_mode(tmp_path, encoder, small):
    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, small)
    victim = small[5]
    rep = ingest(cfg, encoder, delete=[victim.doc_id])
    assert (rep.deleted, rep.documents) == (1, 11)
    engine = SearchEngine(cfg, encoder=encoder)
    for mode in ("bm25", "dense", "hybrid"):
        assert victim.doc_id not in ids(engine.search(victim.title, k=20, mode=mode))


def test_delete_unknown_id_is_an_error_and_changes_nothing(tmp_path, encoder, small):
    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, small)
    with pytest.raises(InputError, match="unknown document id"):
        ingest(cfg, encoder, delete=[small[0].doc_id, "no-such-doc"])
    assert SearchEngine(cfg, encoder=encoder).store.count() == 12


def test_storing_and_deleting_one_id_is_an_error_and_changes_nothing(tmp_path, encoder, small):
    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, small)
    ws = Workspace(cfg.workspace)
    generation = ws.serving_state().generation
    changed = Document(small[0].doc_id, "Replacement zeppelin", "a new body")
    new = Document("brand-new", "Another zeppelin", "text")
    with pytest.raises(
        InputError, match=r"id\(s\) 'brand-new', '.+' are both among the documents to store and"
    ):
        ingest(
            cfg,
            encoder,
            [changed, new, small[1]],
            delete=["brand-new", small[0].doc_id, small[1].doc_id],
        )  # small[1] is stored unchanged
    engine = SearchEngine(cfg, encoder=encoder)
    assert engine.store.count() == 12 and ws.serving_state().generation == generation
    assert engine.store.get([small[0].doc_id])[small[0].doc_id].title == small[0].title
    assert "brand-new" not in engine.store.get(["brand-new"])
    assert small[1].doc_id in engine.store.get([small[1].doc_id])


def test_reindex_builds_a_new_generation_with_same_results(tmp_path, encoder, small):
    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, small)
    before = ids(SearchEngine(cfg, encoder=encoder).search(small[2].text, k=5))
    rep = ingest(cfg, encoder, rebuild=True)
    assert rep.generation == 2 and rep.embedded == 12
    assert ids(SearchEngine(cfg, encoder=encoder).search(small[2].text, k=5)) == before


KILL_SCRIPT = """
import json, os, sys, time
sys.path.insert(0, {repo!r})
from brainrank.index.readers import read_documents
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import load_config
from brainrank.ranker.encoding.encoder import TextEncoder
from brainrank.ranker.retrieval.indexing import update_indexes

cfg = load_config(workspace={ws!r}, env={{}})
real = TextEncoder.load(cfg.encoder.resolved_path())

class SlowEncoder:
    # The real encoder; it announces the embedding step, then stalls so the test can kill us.
    name, fingerprint, dim, tokenizer = real.name, real.fingerprint, real.dim, real.tokenizer
    def encode(self, texts, **kw):
        open({flag!r}, "w").write("embedding")
        time.sleep(600)

docs = read_documents({docs!r}).documents
update_indexes(Workspace(cfg.workspace), cfg, documents=docs, encoder_factory=SlowEncoder)
"""


def test_sigkill_during_ingest_keeps_previous_collection(tmp_path, encoder, small, sample_docs):
    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, small)
    more = tmp_path / "more.jsonl"
    more.write_text(
        "\n".join(
            json.dumps({"id": d.doc_id, "title": d.title, "text": d.text})
            for d in sample_docs[12:40]
        )
    )
    flag = tmp_path / "flag"
    script = KILL_SCRIPT.format(
        repo=str(REPO), ws=str(cfg.workspace), flag=str(flag), docs=str(more)
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    deadline = time.time() + 120
    while not flag.exists():
        assert proc.poll() is None, "ingest process died before reaching the embedding step"
        assert time.time() < deadline, "ingest never reached the embedding step"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    engine = SearchEngine(cfg, encoder=encoder)
    assert engine.store.count() == 12 and len(engine.generation) == 12
    assert engine.search(small[0].title, k=1).hits[0].doc_id == small[0].doc_id
    # The next ingest cleans up and succeeds.
    rep = ingest(cfg, encoder, sample_docs[12:40])
    assert rep.documents == 40
    assert not list(Workspace(cfg.workspace).indexes_dir.glob(".gen-*.tmp"))


def test_crash_between_commit_and_pointer_swap_is_recovered(tmp_path, encoder, small, monkeypatch):
    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, small[:6])

    def die(self, number, keep=2):
        raise SystemExit("killed after commit")

    monkeypatch.setattr(Workspace, "activate", die)
    with pytest.raises(SystemExit):
        ingest(cfg, encoder, small[6:])
    monkeypatch.undo()
    ws = Workspace(cfg.workspace)
    assert ws.current_generation() == 1  # the pointer never moved...
    engine = SearchEngine(cfg, encoder=encoder)  # ...but serving follows the committed store
    assert len(engine.generation) == 12
    with ws.writer_lock():  # recovery moves the pointer: a writer's step
        ws.recover(engine.store.version)
    assert ws.current_generation() == 2


def test_second_writer_is_refused(tmp_path, encoder, small):
    from brainrank.index.errors import BrainrankError

    cfg = make_config(tmp_path / "ws")
    ws = Workspace(cfg.workspace)
    with ws.writer_lock(), pytest.raises(BrainrankError, match="another brainrank ingest"):
        ingest(cfg, encoder, small)


def test_deleting_everything_leaves_an_empty_searchable_error(tmp_path, encoder, small):
    from brainrank.index.errors import BrainrankError

    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, small[:2])
    ingest(cfg, encoder, delete=[small[0].doc_id, small[1].doc_id])
    with pytest.raises(BrainrankError, match="no documents"):
        SearchEngine(cfg, encoder=encoder)


def test_old_generations_are_pruned(tmp_path, encoder, small):
    cfg = make_config(tmp_path / "ws")
    for i in range(5):
        ingest(cfg, encoder, [small[i]])
    ws = Workspace(cfg.workspace)
    assert ws.generations() == [3, 4, 5]
    # Pruning removes the old folders outright, not just their manifests.
    folders = sorted(p.name for p in ws.indexes_dir.iterdir() if p.name.startswith("gen-"))
    assert folders == ["gen-000003", "gen-000004", "gen-000005"]
    assert ws.current_generation() == 5 and ws.manifest(5)["documents"] == 5
