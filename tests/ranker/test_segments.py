"""Segmented index generations on the real encoder, bm25s, FAISS and SQLite.

A small ingest adds one segment and tombstones instead of rebuilding; the result must search
exactly as a fresh full build of the same live documents does (BM25 against bm25s itself),
leave the main segment's files untouched, never return a deleted document, merge back into
one segment with identical results, and keep the crash-safety of whole generations.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from brainrank.index.bm25 import BM25Index
from brainrank.index.errors import BrainrankError
from brainrank.index.params import SegmentParams
from brainrank.index.records import Document
from brainrank.index.workspace import Workspace
from brainrank.ranker.progress import Progress
from brainrank.ranker.retrieval.building import build_full, new_manifest
from brainrank.ranker.retrieval.indexing import IngestReport, _free_number, optimize_indexes
from brainrank.ranker.retrieval.search import SearchEngine
from tests.conftest import DATA, REPO, ingest

# Never merge on their own: the tests below decide when segments merge.
KEEP = SegmentParams(max_segments=8, merge_fraction=1.0, max_deleted=1.0)


@pytest.fixture
def cfg(sample_config, tmp_path):
    """A private copy of the sample workspace (604 documents, one segment)."""
    root = tmp_path / "ws"
    shutil.copytree(sample_config.workspace, root)
    return dataclasses.replace(sample_config, workspace=root, segments=KEEP)


def variant(doc: Document, tag: str) -> Document:
    """Another document close to ``doc``, so it competes with it in every mode."""
    return Document(f"{doc.doc_id}-{tag}", f"{doc.title} {tag}", f"{doc.text} Also {tag}.")


def queries(sample_docs) -> list[str]:
    lines = (DATA / "queries.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines[:20]] + [d.title for d in sample_docs[:25]]


def segmented(cfg, encoder, sample_docs):
    """Adds, updates and deletes in three ingests: three segments with tombstones in two."""
    docs = sample_docs
    changed = [dataclasses.replace(d, text=d.text + " Revised in 2024.") for d in docs[10:13]]
    new = [variant(d, "plus") for d in docs[20:24]]
    rep = ingest(cfg, encoder, changed + new)
    assert (rep.updated, rep.added, rep.embedded, rep.segments) == (3, 4, 7, 2)
    rep = ingest(cfg, encoder, delete=[docs[0].doc_id, docs[1].doc_id, new[0].doc_id])
    assert (rep.embedded, rep.segments, rep.documents) == (0, 2, 604 + 4 - 3)
    rep = ingest(cfg, encoder, [variant(d, "extra") for d in docs[30:32]])
    assert (rep.embedded, rep.segments, rep.documents) == (2, 3, 607)
    return rep


def fresh_build(cfg, encoder) -> int:
    """A full build of the store's documents, as a first ingest writes it (not served): the
    keyword indexes tokenized again from the store, the vectors reused bit for bit."""
    ws = Workspace(cfg.workspace)
    with ws.writer_lock():
        store = ws.open_store()
        try:
            number = _free_number(ws)
            serving = ws.generation_dir(ws.serving_state().generation)
            manifest = new_manifest(number, store.version, store, cfg, staged=True)
            build_full(
                ws.generation_dir(number),
                store,
                cfg,
                manifest,
                serving,
                lambda: encoder,
                Progress(),
                IngestReport(),
            )
        finally:
            store.close()
    return number


def by_id(engine, query: str, mode: str, k: int) -> list[tuple[str, float]]:
    return [(h.doc_id, h.score) for h in engine.search(query, k=k, mode=mode).hits]


def same_ranking(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> None:
    """Equal scores rank for rank, and the same documents wherever scores are not tied."""
    np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=1e-5, atol=1e-6)

    def groups(hits):  # documents grouped by (rounded) score: ties may come in any order
        out: dict[float, set[str]] = {}
        for doc, score in hits:
            out.setdefault(round(score, 4), set()).add(doc)
        return out

    ga, gb = groups(a), groups(b)
    last = min(ga)  # the lowest score shown may be cut inside a tie
    assert {s: d for s, d in ga.items() if s != last} == {s: d for s, d in gb.items() if s != last}


def test_segmented_generation_searches_as_a_fresh_full_build(cfg, encoder, sample_docs):
    segmented(cfg, encoder, sample_docs)
    seg = SearchEngine(cfg, encoder=encoder)
    assert len(seg.generation.segments) == 3
    assert [len(e.deleted) for e in seg.generation.segments] == [5, 1, 0]
    full = SearchEngine(cfg, encoder=encoder, generation=fresh_build(cfg, encoder))
    assert len(full.generation.segments) == 1 and sorted(full.generation.doc_ids) == sorted(
        seg.generation.doc_ids
    )
    store_docs = seg.store.get(seg.generation.doc_ids)
    oracle = BM25Index.build([store_docs[d].full_text for d in seg.generation.doc_ids], cfg.bm25)
    order = [full.generation.doc_ids.index(d) for d in seg.generation.doc_ids]
    for query in queries(sample_docs):
        mine = seg.generation.bm25.scores(query)
        # Global N, average length and document frequencies over the live documents only.
        np.testing.assert_allclose(mine, oracle.scores(query), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(mine, full.generation.bm25.scores(query)[order], atol=1e-5)
        for mode in ("bm25", "dense", "hybrid"):
            same_ranking(by_id(seg, query, mode, 10), by_id(full, query, mode, 10))


def test_features_and_term_tables_match_a_fresh_full_build(cfg, encoder, sample_docs):
    """The learned ranker's inputs: field scores, term sequences, coverage, lengths, metadata."""
    from brainrank.ranker.learning.features import FeatureExtractor, FeatureSchema
    from brainrank.ranker.retrieval.matches import matched_terms

    segmented(cfg, encoder, sample_docs)
    seg = SearchEngine(cfg, encoder=encoder)
    full = SearchEngine(cfg, encoder=encoder, generation=fresh_build(cfg, encoder))
    schema = FeatureSchema.create(dense_weight=0.6, rrf_k=60, doc_fields=("price", "rating"))
    where = {d: p for p, d in enumerate(full.generation.doc_ids)}
    for query in queries(sample_docs)[:15]:
        # The same candidates and retrieval signals in both (a tie at the 100th candidate may
        # fall either way), so the features read from each index are what is compared.
        cand = seg.candidates(query, "hybrid")
        ids = [seg.generation.doc_ids[p] for p in cand.positions]
        moved = dataclasses.replace(cand, positions=np.array([where[d] for d in ids]))
        x = FeatureExtractor(seg.generation, schema).extract(query, cand)
        y = FeatureExtractor(full.generation, schema).extract(query, moved)
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
        top = seg.search(query, k=1, mode="bm25").hits
        if top:
            table = matched_terms(seg, query, top[0].doc_id)
            reference = matched_terms(full, query, top[0].doc_id)
            assert table.total == pytest.approx(top[0].score, rel=1e-5, abs=1e-6)
            assert [(r.term, r.tf, r.df) for r in table.rows] == [
                (r.term, r.tf, r.df) for r in reference.rows
            ]


def test_a_small_ingest_leaves_the_main_segment_untouched(cfg, encoder, sample_docs):
    ws = Workspace(cfg.workspace)
    before = ws.serving_state().generation
    main = ws.generation_dir(before) / "segments" / "seg-000001"
    stats = {p.relative_to(main): p.stat() for p in main.rglob("*") if p.is_file()}
    rep = ingest(cfg, encoder, [variant(d, "new") for d in sample_docs[:3]] + [
        dataclasses.replace(sample_docs[5], text="Completely rewritten.")
    ])  # fmt: skip
    assert (rep.added, rep.updated, rep.embedded, rep.reused_embeddings) == (3, 1, 4, 603)
    assert rep.segments == 2 and rep.merged is None and rep.rebuilt is None
    after = ws.generation_dir(rep.generation) / "segments" / "seg-000001"
    for rel, stat in stats.items():
        now = (after / rel).stat()
        assert (now.st_ino, now.st_mtime_ns, now.st_size) == (
            stat.st_ino,
            stat.st_mtime_ns,
            stat.st_size,
        ), f"{rel} was rewritten"
    delta = ws.generation_dir(rep.generation) / "segments" / f"seg-{rep.generation:06d}"
    assert len(json.loads((delta / "docs.json").read_text())["ids"]) == 4


def test_deleted_documents_are_never_returned(cfg, encoder, sample_docs):
    victims = sample_docs[40:46]
    copies = [variant(d, "copy") for d in victims]
    ingest(cfg, encoder, copies)  # a second segment of close copies
    gone = [d.doc_id for d in victims[:3]] + [d.doc_id for d in copies[3:]]
    ingest(cfg, encoder, delete=gone)
    engine = SearchEngine(cfg, encoder=encoder)
    for doc in victims:
        for mode in ("bm25", "dense", "hybrid"):
            found = [h.doc_id for h in engine.search(doc.title, k=50, mode=mode).hits]
            assert not set(found) & set(gone)
            assert len(found) == 50 or mode == "bm25"  # BM25 returns only documents that match


def test_optimize_merges_into_one_segment_with_identical_results(cfg, encoder, sample_docs):
    segmented(cfg, encoder, sample_docs)
    before = SearchEngine(cfg, encoder=encoder)
    rankings = {
        (q, m): by_id(before, q, m, 10)
        for q in queries(sample_docs)[::3]
        for m in ("bm25", "dense", "hybrid")
    }
    rep = optimize_indexes(Workspace(cfg.workspace), cfg)
    assert (rep.merged, rep.segments, rep.embedded, rep.documents) == ("all", 1, 0, 607)
    after = SearchEngine(cfg, encoder=encoder)
    assert after.generation.manifest["segments"] == [
        {"name": f"seg-{rep.generation:06d}", "documents": 607, "vectors": 607, "deleted": 0}
    ]
    for (query, mode), ranking in rankings.items():
        same_ranking(by_id(after, query, mode, 10), ranking)
    again = optimize_indexes(Workspace(cfg.workspace), cfg)
    assert again.merged is None and again.generation == rep.generation


def test_merge_policy(cfg, encoder, sample_docs):
    ws = Workspace(cfg.workspace)
    few = dataclasses.replace(cfg, segments=SegmentParams(max_segments=3, merge_fraction=0.05))
    for i in range(2):
        rep = ingest(few, encoder, [variant(sample_docs[i], f"v{i}")])
        assert (rep.segments, rep.merged) == (i + 2, None)
    main = ws.generation_dir(rep.generation) / "segments" / "seg-000001" / "bm25" / "freqs.npy"
    inode = main.stat().st_ino
    rep = ingest(few, encoder, [variant(sample_docs[2], "v2")])  # a fourth: the small ones merge
    assert (rep.segments, rep.merged, rep.embedded) == (2, "small", 1)
    main = ws.generation_dir(rep.generation) / "segments" / "seg-000001" / "bm25" / "freqs.npy"
    assert main.stat().st_ino == inode
    # Small segments past 5% of the main one: everything merges, nothing is embedded again.
    rep = ingest(few, encoder, [variant(d, "bulk") for d in sample_docs[3:40]])
    assert (rep.segments, rep.merged, rep.embedded, rep.documents) == (1, "all", 37, 644)
    # Deleted documents past max_deleted of those the segments hold: everything merges too.
    strict = dataclasses.replace(cfg, segments=SegmentParams(max_deleted=0.01))
    rep = ingest(strict, encoder, delete=[d.doc_id for d in sample_docs[100:110]])
    assert (rep.segments, rep.merged, rep.documents) == (1, "all", 634)


def test_a_generation_written_before_segments_loads_and_is_upgraded(cfg, encoder, sample_docs):
    ws = Workspace(cfg.workspace)
    number = ws.serving_state().generation
    query = "money back"
    before = {m: by_id(SearchEngine(cfg, encoder=encoder), query, m, 10) for m in ("bm25", "dense")}
    old = write_format_2(ws, number, cfg)
    engine = SearchEngine(cfg, encoder=encoder)
    assert engine.generation.manifest["format"] == 2 and not engine.generation.segments
    for mode, ranking in before.items():
        same_ranking(by_id(engine, query, mode, 10), ranking)
    rep = ingest(cfg, encoder, [variant(sample_docs[0], "after")])
    assert (rep.generation, rep.segments, rep.embedded) == (old + 1, 1, 1)
    assert ws.manifest(rep.generation)["format"] == 3


def test_a_workspace_indexed_before_text_folding_is_rebuilt_with_it(cfg, encoder, sample_docs):
    """An index tokenized without NFKC folding (``normalize = "none"``, as every index was
    before the setting) keeps serving as it was built; the next ingest under the default
    setting rebuilds the keyword indexes in full (vectors reused), after which a full-width
    query finds the part number."""
    ws = Workspace(cfg.workspace)
    unfolded = dataclasses.replace(cfg, bm25=dataclasses.replace(cfg.bm25, normalize="none"))
    rep = ingest(unfolded, encoder, [variant(sample_docs[0], "before")])
    assert (rep.segments, rep.embedded) == (1, 1)  # other BM25 settings: a full build
    assert rep.rebuilt == "it was built with other [bm25] settings than the config's"
    assert ws.manifest(rep.generation)["bm25"]["normalize"] == "none"
    wide, plain = "Ｒｏａｄｓｉｇｈｔ ＸＲ-２２００", "Roadsight XR-2200"
    found = by_id(SearchEngine(unfolded, encoder=encoder), plain, "bm25", 5)
    assert "d225" in {d for d, _ in found}
    assert not SearchEngine(unfolded, encoder=encoder).search(wide, k=5, mode="bm25").hits
    rep = ingest(unfolded, encoder, [variant(sample_docs[3], "unfolded")])
    assert (rep.segments, rep.rebuilt) == (2, None)  # same settings: a segment more
    # Two segments tokenized another way cannot be merged under the default settings.
    from typer.testing import CliRunner

    from brainrank.ranker.cli.app import app

    res = CliRunner().invoke(app, ["optimize", "-w", str(cfg.workspace)])
    assert res.exit_code == 1
    assert (
        "cannot be merged: it was built with other [bm25] settings than the config's; run "
        "`brainrank reindex`" in " ".join(res.output.split())
    )
    rep = ingest(cfg, encoder, [variant(sample_docs[1], "after")])
    assert (rep.segments, rep.embedded) == (1, 1)
    assert rep.rebuilt == "it was built with other [bm25] settings than the config's"
    rep = ingest(cfg, encoder, [variant(sample_docs[2], "later")])
    assert (rep.segments, rep.rebuilt) == (2, None)  # extended by a segment again
    assert ws.manifest(rep.generation)["bm25"]["normalize"] == "nfkc"
    engine = SearchEngine(cfg, encoder=encoder)
    same_ranking(by_id(engine, wide, "bm25", 5), by_id(engine, plain, "bm25", 5))


def write_format_2(ws: Workspace, number: int, cfg) -> int:
    """The serving generation again, in the layout written before segments, and serve it."""
    from brainrank.index.integrity import seal
    from brainrank.index.vectors import VectorIndex
    from brainrank.ranker.retrieval.verify import record_files

    source = ws.generation_dir(number) / "segments" / "seg-000001"
    target = ws.generation_dir(number + 1)
    manifest = {**ws.manifest(number), "generation": number + 1, "format": 2}
    for key in ("segments", "bm25", "vector_params", "files", "checksum"):
        manifest.pop(key)
    store = ws.open_store()
    docs = list(store.iter_documents(json.loads((source / "docs.json").read_text())["ids"]))
    store.close()
    target.mkdir()
    shutil.copy(source / "docs.json", target / "docs.json")
    shutil.copy(source / "doc_meta.npz", target / "doc_meta.npz")
    BM25Index.build([d.full_text for d in docs], cfg.bm25, keep_sequences=True).save(
        target / "bm25"
    )
    BM25Index.build([d.title for d in docs], cfg.bm25).save(target / "bm25_title")
    BM25Index.build([d.text for d in docs], cfg.bm25).save(target / "bm25_body")
    VectorIndex.load(source / "vectors").save(target / "vectors")
    manifest["files"] = record_files(target)
    (target / "manifest.json").write_text(json.dumps(seal(manifest)))
    with ws.writer_lock():
        ws.activate(number + 1)
    return number + 1


def test_damage_to_a_shared_segment_is_found_in_every_generation(cfg, encoder, sample_docs):
    from brainrank.ranker.workspace_check import DAMAGED, check_workspace

    ws = Workspace(cfg.workspace)
    rep = ingest(cfg, encoder, [variant(sample_docs[0], "new")])
    old, new = ws.generation_dir(rep.generation - 1), ws.generation_dir(rep.generation)
    shared = new / "segments" / "seg-000001" / "bm25" / "freqs.npy"
    assert shared.stat().st_ino == (old / "segments" / "seg-000001" / "bm25" / "freqs.npy").stat(
    ).st_ino  # fmt: skip
    data = bytearray(shared.read_bytes())
    data[-1] ^= 0xFF
    shared.write_bytes(bytes(data))  # in place: both generations hold this inode
    with pytest.raises(BrainrankError, match="freqs.npy is damaged"):
        SearchEngine(cfg, encoder=encoder)
    bad = {f.path for f in check_workspace(cfg.workspace) if f.status == DAMAGED}
    assert {str(old), str(new)} <= bad
    # An ingest does not extend a damaged generation: it builds everything again, reusing the
    # vectors (and document lists) that verify, which here is all of them.
    rep = ingest(cfg, encoder, [variant(sample_docs[1], "new")])
    assert (rep.segments, rep.embedded, rep.reused_embeddings) == (1, 1, 605)
    assert SearchEngine(cfg, encoder=encoder).search("gift card").hits


KILL = """
import sys, time
sys.path.insert(0, {repo!r})
import dataclasses
from brainrank.index.params import SegmentParams
from brainrank.index.records import Document
from brainrank.index.vectors import VectorIndex
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import load_config
from brainrank.ranker.encoding.encoder import TextEncoder
from brainrank.ranker.retrieval.indexing import update_indexes

cfg = load_config(workspace={ws!r}, env={{}})
cfg = dataclasses.replace(cfg, segments=SegmentParams(merge_fraction=1.0))
save = VectorIndex.save
def stalled(self, directory):  # the delta's keyword files and links are written by now
    save(self, directory)
    open({flag!r}, "w").write("writing")
    time.sleep(600)
VectorIndex.save = stalled
enc = TextEncoder.load(cfg.encoder.resolved_path())
docs = [Document(f"k{{i}}", f"Kayak rental {{i}}", "Rent a kayak by the hour.") for i in range(5)]
update_indexes(Workspace(cfg.workspace), cfg, documents=docs, delete_ids=["d001"],
               encoder_factory=lambda: enc)
"""


def test_sigkill_while_writing_a_delta_keeps_the_previous_generation(cfg, encoder, tmp_path):
    ws = Workspace(cfg.workspace)
    serving = ws.serving_state().generation
    flag = tmp_path / "flag"
    script = KILL.format(repo=str(REPO), ws=str(cfg.workspace), flag=str(flag))
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    deadline = time.time() + 300
    while not flag.exists():
        assert proc.poll() is None, "the ingest died before writing its segment"
        assert time.time() < deadline, "the ingest never wrote its segment"
        time.sleep(0.1)
    assert list(ws.indexes_dir.glob(".gen-*.tmp"))  # the half-written generation
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    engine = SearchEngine(cfg, encoder=encoder)
    assert ws.serving_state().generation == serving and len(engine.generation) == 604
    assert engine.store.count() == 604 and "d001" in engine.generation.doc_ids
    assert not {"k0", "k1"} & {h.doc_id for h in engine.search("kayak rental", k=5).hits}
    rep = ingest(cfg, encoder, [Document("k0", "Kayak rental", "Rent a kayak.")])
    assert (rep.documents, rep.segments) == (605, 2)
    assert not list(ws.indexes_dir.glob(".gen-*.tmp"))


def test_optimize_command(cfg, encoder, sample_docs):
    from typer.testing import CliRunner

    from brainrank.ranker.cli.app import app

    ingest(cfg, encoder, [variant(sample_docs[0], "new")])
    res = CliRunner().invoke(app, ["optimize", "-w", str(cfg.workspace)])
    assert res.exit_code == 0, res.output
    assert "merged into generation 3: 605 documents, one segment" in res.output
    res = CliRunner().invoke(app, ["optimize", "-w", str(cfg.workspace)])
    assert res.exit_code == 0 and "generation 3 is already one segment" in res.output


def test_a_document_added_and_deleted_by_one_ingest_is_refused_and_leaves_no_segment(cfg, encoder):
    """Once stored then deleted, reported as added; now refused before anything is written."""
    ws = Workspace(cfg.workspace)
    before, folders = ws.serving_state().generation, sorted(ws.indexes_dir.iterdir())
    doc = Document("gone", "Kayak rental", "Rent a kayak by the hour.")
    with pytest.raises(BrainrankError, match="'gone' are both among the documents to store"):
        ingest(cfg, encoder, [doc], delete=["gone", "d002"])
    assert ws.serving_state().generation == before
    assert sorted(ws.indexes_dir.iterdir()) == folders  # no generation or segment written
    engine = SearchEngine(cfg, encoder=encoder)
    assert "gone" not in engine.generation.doc_ids and "d002" in engine.generation.doc_ids


def _vectors_of(cfg, encoder, doc_ids):
    engine = SearchEngine(cfg, encoder=encoder)
    try:
        position = {d: i for i, d in enumerate(engine.generation.doc_ids)}
        vectors = engine.generation.vectors
        return {d: np.array(vectors.passage_vectors(position[d])) for d in doc_ids}
    finally:
        engine.close()


def test_a_change_of_fields_or_tags_alone_keeps_the_vectors(cfg, encoder, sample_docs):
    """Unchanged text keeps its vectors bit for bit, from the old segment verified in full;
    a handful of changes to a large segment embeds them instead of hashing it."""
    docs = sample_docs[:40]
    before = _vectors_of(cfg, encoder, [d.doc_id for d in docs])
    relabelled = [dataclasses.replace(d, tags={"category": "archive"}) for d in docs]
    rep = ingest(cfg, encoder, relabelled)  # 40 of 604: past the 1% share
    assert (rep.updated, rep.embedded, rep.reused_embeddings) == (40, 0, 604)
    after = _vectors_of(cfg, encoder, [d.doc_id for d in docs])
    assert all(np.array_equal(before[d], after[d]) for d in before)
    engine = SearchEngine(cfg, encoder=encoder)
    try:
        hits = engine.search("refund", k=50, mode="hybrid", where="category = archive").hits
        assert hits and {h.doc_id for h in hits} <= {d.doc_id for d in docs}
    finally:
        engine.close()
    rep = ingest(cfg, encoder, [dataclasses.replace(sample_docs[100], fields={"price": 1.0})])
    assert (rep.updated, rep.embedded) == (1, 1)  # 1 of 604: embedded, nothing hashed


def test_damaged_old_vectors_are_embedded_again_not_reused(
    tmp_path, encoder, sample_docs, monkeypatch
):
    """Damage past the first bytes that an extending ingest checks: the full check before
    reuse catches it, and the changed documents are embedded again."""
    from brainrank.index import integrity
    from tests.conftest import make_config

    monkeypatch.setattr(integrity, "HEAD_BYTES", 4096)  # the sample's vectors are under 1 MiB
    cfg = dataclasses.replace(make_config(tmp_path / "ws"), segments=KEEP)
    ingest(cfg, encoder, sample_docs)
    ws = Workspace(cfg.workspace)
    gen = ws.generation_dir(ws.serving_state().generation)
    (seg,) = sorted((gen / "segments").glob("seg-*"))
    emb = seg / "vectors" / "embeddings.npy"
    data = bytearray(emb.read_bytes())
    data[-100] ^= 0xFF  # in the last document's vector
    emb.write_bytes(bytes(data))
    docs = [dataclasses.replace(d, tags={"category": "archive"}) for d in sample_docs[-40:]]
    rep = ingest(cfg, encoder, docs)
    assert rep.rebuilt is None and (rep.updated, rep.embedded) == (40, 40)
    last = sample_docs[-1].doc_id
    want = encoder.encode([sample_docs[-1].full_text])[0]
    assert float(_vectors_of(cfg, encoder, [last])[last][0] @ want) > 0.999
