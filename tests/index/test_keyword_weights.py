"""A generation's BM25 weights on disk: written with the generation, mapped when it loads.

Real ingests of the sample collection (real encoder, bm25s, FAISS, SQLite). The oracle is the
same index weighed in memory from the segments' raw counts, which ``test_keyword`` holds to
bm25s itself: the saved weights must score bit for bit as it does.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from brainrank.index.errors import BrainrankError
from brainrank.index.integrity import seal
from brainrank.index.keyword import KeywordIndex
from brainrank.index.params import SegmentParams
from brainrank.index.records import Document
from brainrank.index.workspace import Workspace
from brainrank.ranker.retrieval.layout import KEYWORD, KEYWORD_FIELDS
from tests.conftest import ingest

QUERIES = ["gift card", "brake pads for cars", "refund policy", "wireless headphones battery"]


@pytest.fixture
def cfg(sample_config, tmp_path):
    """A private copy of the sample workspace, whose segments never merge on their own."""
    root = tmp_path / "ws"
    shutil.copytree(sample_config.workspace, root)
    keep = SegmentParams(max_segments=8, merge_fraction=1.0, max_deleted=1.0)
    return dataclasses.replace(sample_config, workspace=root, segments=keep)


def engine(cfg):
    from brainrank.ranker.retrieval.search import SearchEngine

    return SearchEngine(cfg)


def generation_dir(cfg):
    ws = Workspace(cfg.workspace)
    return ws.generation_dir(ws.serving_state().generation)


def two_segments(cfg, encoder, sample_docs):
    """A second segment, tombstones in the first: every statistic differs from the first
    generation's, so none of its weights may be reused."""
    docs = [Document(f"w{i}", f"Gift card {i}", "A gift card for brake pads.") for i in range(3)]
    ingest(cfg, encoder, docs, delete=[d.doc_id for d in sample_docs[:4]])


def test_a_generation_is_written_with_its_weights(cfg, encoder, sample_docs):
    two_segments(cfg, encoder, sample_docs)
    folder = generation_dir(cfg)
    manifest = json.loads((folder / "manifest.json").read_text())
    names = [s["name"] for s in manifest["segments"]]
    assert len(names) == 2 and manifest["segments"][0]["deleted"] == 4
    for field in KEYWORD_FIELDS:  # each checksummed with the generation
        for file in ("df.npy", *(f"{n}.npy" for n in names)):
            assert f"{KEYWORD}/{field}/{file}" in manifest["files"]
    gen = engine(cfg).generation
    for served in (gen.bm25, gen.bm25_title, gen.bm25_body):
        weighed = KeywordIndex(served._parts, served._live)
        assert all(not w.flags.writeable for w in served._weights)  # mapped from the files
        for query in QUERIES:
            np.testing.assert_array_equal(served.scores(query), weighed.scores(query))
            ids = served.term_ids(query)
            np.testing.assert_array_equal(
                served.document_frequency(ids), weighed.document_frequency(ids)
            )


def test_a_generation_written_before_weights_is_weighed_when_loaded(cfg, encoder, sample_docs):
    two_segments(cfg, encoder, sample_docs)
    before = {q: engine(cfg).search(q, k=20, mode="bm25").hits for q in QUERIES}
    folder = generation_dir(cfg)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith(KEYWORD)}
    (folder / "manifest.json").write_text(json.dumps(seal(manifest)))
    shutil.rmtree(folder / KEYWORD)
    served = engine(cfg)
    assert served.generation.bm25._weights[0].flags.writeable  # weighed in memory
    for query in QUERIES:
        hits = served.search(query, k=20, mode="bm25").hits
        assert [(h.doc_id, h.score) for h in hits] == [(h.doc_id, h.score) for h in before[query]]


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "rel, damage",
    [
        ("bm25/seg-000001.npy", lambda p: p.unlink()),
        ("bm25_title/seg-000001.npy", _truncate),
        ("bm25_body/seg-000001.npy", _flip),
        ("bm25/df.npy", _flip),
    ],
    ids=["missing", "truncated", "flipped", "df-flipped"],
)
def test_damaged_weights_are_named_with_the_repair(cfg, rel, damage):
    """One line naming the file and `brainrank reindex`, never other scores."""
    damage(generation_dir(cfg) / KEYWORD / rel)
    with pytest.raises(BrainrankError) as info:
        engine(cfg).search("gift card", mode="bm25")
    message = str(info.value)
    assert f"{KEYWORD}/{rel}" in message and "brainrank reindex" in message
    assert "\n" not in message
