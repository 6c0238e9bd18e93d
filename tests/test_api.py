"""The public Python API, driven only through the names in ``brainrank.__all__``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

import brainrank

REPO = Path(__file__).resolve().parents[1]
DOCS = [
    {"id": "refund", "title": "Refund policy", "text": "Money back within 60 days of purchase."},
    brainrank.Document("brakes", "Brake pads", "Ceramic brake pads and rotors for cars."),
    {"id": "hoses", "text": "Garden hoses for watering lawns and flower beds."},
]


def test_the_public_surface():
    assert {"open", "Engine", "SearchResult", "Hit", "Document", "__version__"} <= set(
        brainrank.__all__
    )
    for name in brainrank.__all__:
        assert getattr(brainrank, name) is not None, name
    assert brainrank.__version__ == version("brainrank")


def test_import_costs_no_heavy_library():
    """``import brainrank``, its records and its config load without numpy or TensorFlow."""
    code = (
        "import sys, brainrank; brainrank.load_config(env={}); "
        "print([m for m in ('numpy', 'tensorflow', 'faiss', 'bm25s', 'streamlit') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_wheel_installs_one_top_level_package(tmp_path):
    """``pip install .`` puts ``brainrank`` and its dist-info into site-packages, nothing else."""
    src = tmp_path / "src"  # build from a copy: setuptools writes egg-info next to the sources
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, src / name)
    for name in ("brainrank", "index", "ranker", "debugger_ui"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("brainrank-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
        names = set(zf.namelist())
    assert tops == {"brainrank", f"brainrank-{brainrank.__version__}.dist-info"}
    for module in (
        "brainrank/index/records.py",
        "brainrank/ranker/engine.py",
        "brainrank/debugger_ui/app.py",
        "brainrank/ranker/cli/app.py",
    ):
        assert module in names


def test_ingest_search_and_close(tmp_path):
    with brainrank.open(tmp_path / "ws") as engine:
        report = engine.ingest(DOCS)
        assert (report.added, report.documents) == (3, 3)

        result = engine.search("refund money back", k=2, mode="bm25")
        assert isinstance(result, brainrank.SearchResult)
        assert [h.rank for h in result.hits] == [1]  # BM25 returns only matching documents
        assert result.hits[0].doc_id == "refund"
        assert result.documents["refund"].title == "Refund policy"
        assert result.features is None and result.query_vector is None
        assert result.impression_id is None  # the Python API logs only when asked

        hybrid = engine.search("brakes for my car", k=3, mode="hybrid")
        assert hybrid.hits[0].doc_id == "brakes"
        assert hybrid.query_vector.shape == (384,) and hybrid.encoder
        payload = hybrid.to_dict()
        assert set(payload) == {"query", "mode", "model", "took_ms", "impression_id", "hits"}
        assert payload["hits"][0]["id"] == "brakes" and payload["hits"][0]["title"] == "Brake pads"
        json.dumps(payload)

        logged = engine.search("garden hose", k=1, mode="bm25", log=True)
        assert logged.impression_id is not None and logged.impression_id.isdigit()

        many = engine.search_many(["refund", "garden hose"], k=1, mode="bm25")
        assert [r.hits[0].doc_id for r in many] == ["refund", "hoses"]
        by_id = engine.search_many({"q1": "brake pads", "q2": "refund"}, k=1, mode="bm25")
        assert {q: r.hits[0].doc_id for q, r in by_id.items()} == {"q1": "brakes", "q2": "refund"}

        assert engine.document("brakes").text.startswith("Ceramic")
        with pytest.raises(brainrank.InputError, match="nowhere"):
            engine.document("nowhere")
        with pytest.raises(brainrank.InputError, match="empty"):
            engine.search("   ")
        with pytest.raises(brainrank.InputError, match="unknown mode"):
            engine.search("refund", mode="psychic")
        # Arguments of the wrong type are input errors that say which, never a TypeError.
        for kwargs, problem in [
            ({"k": None}, "k must be a whole number, not None"),
            ({"k": "5"}, "k must be a whole number, not '5'"),
            ({"k": True}, "k must be a whole number"),
            ({"offset": 1.5}, "offset must be a whole number, not 1.5"),
        ]:
            with pytest.raises(brainrank.InputError, match=problem):
                engine.search("refund", mode="bm25", **kwargs)
        assert len(engine.search("refund", k=np.int64(1), mode="bm25").hits) == 1
        with pytest.raises(brainrank.InputError, match="the query must be a string, not int"):
            engine.search_many({"a": 5})
        for source in (None, {"id": "x", "text": "y"}, 5):
            with pytest.raises(brainrank.InputError, match="a file or folder path, or a list"):
                engine.ingest(source)
        with pytest.raises(brainrank.InputError, match="workspace must be a path, not int"):
            brainrank.open(123)
        with pytest.raises(brainrank.InputError, match="config must be a TOML file's path"):
            brainrank.open(tmp_path / "ws", config=5)

        # A bad record stops the ingest, and nothing already stored changes.
        with pytest.raises(brainrank.InputError, match="record 2: missing text"):
            engine.ingest([{"id": "new", "text": "fine"}, {"id": "broken"}])
        assert "new" not in [h.doc_id for h in engine.search("fine", mode="bm25").hits]
        skipped = engine.ingest([{"id": "new", "text": "fine words"}, {"id": "x"}], skip_bad=True)
        assert skipped.added == 1 and len(skipped.skipped) == 1
        odd = {"id": "odd", "text": "odd fields", "sizes": ["s"], "price": float("nan")}
        noted = engine.ingest([odd])  # what was left out is in the report, as the CLI lists it
        assert noted.ignored == {"sizes": ("a list", "input record 1", 1)}
        assert noted.dropped == [
            'input record 1: field "price" dropped: nan is not a finite number'
        ]

        engine.ingest(delete="refund")  # one id; the next search sees the new generation
        assert "refund" not in [h.doc_id for h in engine.search("refund", mode="bm25").hits]
    engine.close()  # closing twice is harmless


def test_filters_and_pages_through_the_api(tmp_path):
    hoses = [
        {"id": f"hose-{i}", "text": f"Garden hose number {i}", "price": 10.0 * i,
         "timestamp": f"202{i}-05-01T00:00:00Z"}
        for i in range(1, 6)
    ]  # fmt: skip
    with brainrank.open(tmp_path / "ws") as engine:
        engine.ingest(hoses)
        cheap = engine.search("garden hose", k=5, mode="hybrid", where=["price <= 30"])
        assert sorted(h.doc_id for h in cheap.hits) == ["hose-1", "hose-2", "hose-3"]
        recent = engine.search("garden hose", mode="bm25", where="timestamp >= 2024-01-01")
        assert sorted(h.doc_id for h in recent.hits) == ["hose-4", "hose-5"]
        assert recent.to_dict()["filters"] == ["timestamp >= 2024-01-01"]
        whole = engine.search("garden hose", k=5, mode="hybrid")
        pages = [engine.search("garden hose", k=2, mode="hybrid", offset=o) for o in (0, 2, 4)]
        assert [h.doc_id for p in pages for h in p.hits] == [h.doc_id for h in whole.hits]
        by_id = engine.search_many({"a": "hose", "b": "garden"}, mode="bm25", where="price > 40")
        assert {q: [h.doc_id for h in r.hits] for q, r in by_id.items()} == {
            "a": ["hose-5"],
            "b": ["hose-5"],
        }
        with pytest.raises(brainrank.InputError, match="cannot filter on 'colour'"):
            engine.search("hose", where="colour = 3")


def test_learned_search_and_explain(trained_config, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(trained_config.workspace, ws)
    with brainrank.open(ws) as engine:
        result = engine.search("gift card balance", k=5)
        assert result.mode == "learned" and result.model == "v0001"
        assert result.features.shape == (5, len(result.feature_names))
        assert result.in_domain in (True, False)

        explained = engine.explain("gift card balance", k=3)
        assert explained.doc_ids == tuple(h.doc_id for h in result.hits[:3])
        assert explained.feature_names == result.feature_names
        np.testing.assert_allclose(
            explained.values.sum(1) + explained.base_values, explained.scores, atol=1e-6
        )
        one = engine.explain("gift card balance", [result.hits[4].doc_id])
        assert one.values.shape == (1, len(result.feature_names))

        # A filtered search is explained over its own candidates: the served scores, and an
        # error for a document the filter left out.
        cheap = engine.search("phone charger", k=3, where="price < 30")
        why = engine.explain("phone charger", k=3, where="price < 30")
        assert why.doc_ids == tuple(h.doc_id for h in cheap.hits)
        np.testing.assert_allclose(why.scores, [h.score for h in cheap.hits], rtol=1e-5)
        dear = engine.search("phone charger", k=1, where="price > 30").hits[0].doc_id
        with pytest.raises(brainrank.InputError, match="not candidates"):
            engine.explain("phone charger", [dear], where="price < 30")


def test_learned_search_in_a_fresh_process_never_imports_tensorflow(trained_config, tmp_path):
    """The query path (Python API and CLI, learned mode) runs the exported encoder and ranker."""
    ws = tmp_path / "ws"
    shutil.copytree(trained_config.workspace, ws)
    with brainrank.open(ws) as engine:  # exports an encoder made before exports existed
        expected = engine.search("gift card balance", k=3).to_dict()
    code = (
        "import json, sys, brainrank\n"
        "from brainrank.ranker.cli.app import app\n"
        "with brainrank.open(sys.argv[1]) as engine:\n"
        "    result = engine.search('gift card balance', k=3)\n"
        "app(['search', 'gift card balance', '-k', '3', '--json', '-w', sys.argv[1]],\n"
        "    standalone_mode=False)\n"
        "print(json.dumps([result.to_dict(), 'tensorflow' in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ws)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    api, tf_loaded = json.loads(out[-1])
    cli = json.loads(out[-2])
    assert not tf_loaded
    for got in (api, cli):
        assert got["mode"] == "learned" and got["model"] == expected["model"]
        assert [h["id"] for h in got["hits"]] == [h["id"] for h in expected["hits"]]
        np.testing.assert_allclose(
            [h["score"] for h in got["hits"]], [h["score"] for h in expected["hits"]], atol=1e-6
        )
