"""The workspace's judgment store: import, export, list, and training and retraining from it."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from typer.testing import CliRunner

from brainrank.index.errors import InputError
from brainrank.ranker.cli.app import app
from brainrank.ranker.evaluation import read_qrels, read_queries
from brainrank.ranker.feedback.judgments import JudgmentStore, workspace_judgments
from tests.conftest import DATA

runner = CliRunner()
QRELS = DATA / "qrels-train.txt"
QUERIES = DATA / "queries.jsonl"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def lines(text: str) -> set[str]:
    return {" ".join(line.split()) for line in text.splitlines() if line.strip()}


def test_import_export_round_trip_is_the_file(tmp_path):
    ws = tmp_path / "ws"
    res = run("judgments", "import", QRELS, "--queries", QUERIES, "-w", ws, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["added"] == len(lines(QRELS.read_text())) and report["changed"] == 0

    out = tmp_path / "q.jsonl"
    res = run("judgments", "export", "--queries-out", out, "-w", ws)
    assert res.exit_code == 0, res.output
    assert lines(res.stdout) == lines(QRELS.read_text())
    judged = read_qrels(QRELS)
    assert read_queries(out) == {q: t for q, t in read_queries(QUERIES).items() if q in judged}
    # The named set exports the same.
    assert lines(run("judgments", "export", "--set", "default", "-w", ws).stdout) == lines(
        QRELS.read_text()
    )


def test_reimport_is_idempotent_and_a_changed_grade_replaces_the_old(tmp_path):
    ws = tmp_path / "ws"
    assert run("judgments", "import", QRELS, "--queries", QUERIES, "-w", ws).exit_code == 0
    res = run("judgments", "import", QRELS, "--queries", QUERIES, "-w", ws, "--json")
    again = json.loads(res.stdout)
    assert (again["added"], again["changed"], again["queries"]) == (0, 0, 0)
    assert again["unchanged"] == len(lines(QRELS.read_text()))

    changed = tmp_path / "changed.txt"
    changed.write_text("q01 0 d008 0\nq01 0 d999 3\n")
    res = run(
        "judgments", "import", changed, "--queries", QUERIES, "--who", "ana", "-w", ws, "--json"
    )
    assert json.loads(res.stdout) | {"set_name": "-"} == {
        "set_name": "-", "queries": 0, "added": 1, "changed": 1, "unchanged": 0,
        "without_text": 0,
    }  # fmt: skip
    exported = lines(run("judgments", "export", "-w", ws).stdout)
    assert "q01 0 d008 0" in exported and "q01 0 d008 2" not in exported
    assert "q01 0 d999 3" in exported
    assert len(exported) == len(lines(QRELS.read_text())) + 1
    db = sqlite3.connect(JudgmentStore.file(ws))
    who = db.execute(
        "SELECT who FROM judgments WHERE query_id = 'q01' AND doc_id IN ('d008', 'd021')"
    ).fetchall()
    db.close()
    assert sorted(w for (w,) in who) == ["ana", QRELS.name]


def test_merged_sets_take_the_latest_judgment(tmp_path):
    with JudgmentStore.open(tmp_path) as store:
        store.add("a", {"q1": "brake pads"}, {"q1": {"d1": 1, "d2": 2}}, time=100.0)
        store.add("b", {"q1": "brake pads"}, {"q1": {"d1": 3}}, time=200.0)
        store.add("a", {"q2": "refund"}, {"q2": {"d3": 0}}, time=300.0)
        merged = store.judgments()
        assert merged.sets == ("a", "b")
        assert merged.qrels == {"q1": {"d1": 3, "d2": 2}, "q2": {"d3": 0}}
        assert store.judgments("a").qrels["q1"] == {"d1": 1, "d2": 2}
        assert merged.source() == {"sets": ["a", "b"], "queries": 2, "judgments": 3}


def test_unknown_sets_and_empty_workspaces_are_clear_errors(tmp_path):
    ws = tmp_path / "ws"
    res = run("judgments", "export", "-w", ws)
    assert res.exit_code == 1 and "has no judgments yet" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert run("judgments", "import", QRELS, "--queries", QUERIES, "-w", ws).exit_code == 0
    res = run("judgments", "export", "--set", "nope", "-w", ws)
    assert res.exit_code == 1
    assert "no judgment set 'nope'" in res.output and "sets: default" in res.output
    res = run("judgments", "import", QRELS, "--queries", QUERIES, "--set", "a b", "-w", ws)
    assert res.exit_code == 1 and "judgment set name 'a b' is not allowed" in res.output
    with pytest.raises(InputError, match="no judgment set 'x'"):
        workspace_judgments(ws, "x")


def test_list_shows_each_set(tmp_path):
    ws = tmp_path / "ws"
    res = run("judgments", "list", "-w", ws, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout) == []
    run("judgments", "import", QRELS, "--queries", QUERIES, "-w", ws)
    run("judgments", "import", DATA / "qrels-test.txt", "--queries", QUERIES, "--set", "test",
        "-w", ws)  # fmt: skip
    listed = {s["name"]: s for s in json.loads(run("judgments", "list", "-w", ws, "--json").stdout)}
    train, test = read_qrels(QRELS), read_qrels(DATA / "qrels-test.txt")
    assert listed["default"]["queries"] == len(train)
    assert listed["default"]["judgments"] == sum(len(g) for g in train.values())
    assert listed["test"]["judgments"] == sum(len(g) for g in test.values())
    assert listed["test"]["updated"] is not None
    res = run("judgments", "list", "-w", ws)
    assert res.exit_code == 0 and "default" in res.stdout and "test" in res.stdout


@pytest.fixture
def sample_ws(sample_config, tmp_path):
    """A writable copy of the (untrained) sample workspace."""
    shutil.copytree(sample_config.workspace, tmp_path / "ws")
    return tmp_path / "ws"


def test_import_warns_of_judgments_on_documents_the_collection_lacks(sample_ws, tmp_path):
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("q01 0 d008 2\nq01 0 dNOPE 1\nq02 0 dGONE 0\n")
    res = run("judgments", "import", mixed, "--queries", QUERIES, "-w", sample_ws)
    assert res.exit_code == 0, res.output
    assert "2 of 3 judgments name documents that are not in the collection" in res.output
    res = run("judgments", "import", QRELS, "--queries", QUERIES, "-w", sample_ws)
    assert "not in the collection" not in res.output  # the sample's own judgments


def _model_meta(ws, version):
    return json.loads((ws / "models" / "versions" / version / "model.json").read_text())


def test_train_without_files_uses_the_workspace_judgments(sample_ws):
    res = run("train", "-w", sample_ws, "--json")
    assert res.exit_code == 1 and "has no judgments yet" in res.output
    res = run("train", "--queries", QUERIES, "-w", sample_ws)
    assert res.exit_code == 1 and "give --queries and --qrels together" in res.output

    run("judgments", "import", QRELS, "--queries", QUERIES, "--set", "mine", "-w", sample_ws)
    res = run("train", "-w", sample_ws, "--json", "--no-promote", "--early-stopping", "split")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    qrels = read_qrels(QRELS)
    source = {
        "sets": ["mine"],
        "queries": len(qrels),
        "judgments": sum(len(g) for g in qrels.values()),
    }
    assert payload["training"]["judgment_source"] == source
    meta = _model_meta(sample_ws, payload["version"])
    assert meta["training"]["judgment_source"] == source


def test_retrain_after_train_needs_no_config(sample_ws):
    res = run(
        "train", "--queries", QUERIES, "--qrels", QRELS, "-w", sample_ws, "--json",
        "--early-stopping", "split",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    # train imported its judgments into the workspace (set "default").
    assert lines(run("judgments", "export", "-w", sample_ws).stdout) == lines(QRELS.read_text())
    version = json.loads(res.stdout.strip().splitlines()[-1])["version"]
    assert _model_meta(sample_ws, version)["training"]["judgment_source"]["sets"] == ["default"]

    res = run("retrain", "-w", sample_ws, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["status"] in ("promoted", "kept")
    meta = _model_meta(sample_ws, report["challenger"])
    assert meta["training"]["judgment_source"]["sets"] == ["default"]


def test_retrain_names_an_unknown_judgment_set(sample_ws):
    from brainrank.ranker.config import RetrainConfig
    from brainrank.ranker.monitoring.retrain import retrain
    from tests.conftest import make_config

    run("judgments", "import", QRELS, "--queries", QUERIES, "-w", sample_ws)
    with pytest.raises(InputError, match="no judgment set 'nope'.*sets: default"):
        retrain(make_config(sample_ws), RetrainConfig(judgment_set="nope"))
