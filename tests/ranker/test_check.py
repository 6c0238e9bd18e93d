"""`brainrank check` and model damage, on copies of the trained sample workspace: every file of
every generation and model version is verified against the checksum written with it, damage is
one line naming the file and the command that repairs it, and a damaged query log neither
blocks searches nor stays damaged once `check --repair` sets it aside."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from brainrank.index.errors import BrainrankError
from brainrank.index.workspace import Workspace
from brainrank.ranker.cli.app import app
from brainrank.ranker.registry.registry import Registry

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def cfg(trained_config, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(trained_config.workspace, root)
    return dataclasses.replace(trained_config, workspace=root)


def champion_dir(cfg):
    return Registry(Workspace(cfg.workspace).models_dir).champion().path


def check(cfg, *more):
    res = run("check", "--json", "-w", cfg.workspace, *more)
    assert "Traceback" not in res.output
    return res.exit_code, json.loads(res.stdout.strip().splitlines()[-1])


def damaged(report) -> list[dict]:
    return [f for f in report["findings"] if f["status"] == "damaged"]


def learned_search(cfg, encoder):
    from brainrank.ranker.retrieval.search import SearchEngine

    return SearchEngine(cfg, encoder=encoder).search("gift card", mode="learned")


def test_a_healthy_workspace_checks_out(cfg):
    code, report = check(cfg)
    assert code == 0 and report["healthy"], report
    parts = {(f["part"], f["status"]) for f in report["findings"]}
    assert {("documents", "ok"), ("index", "ok"), ("model", "ok")} <= parts
    res = run("check", "-w", cfg.workspace)  # the table for people
    assert res.exit_code == 0 and "is healthy" in res.output


@pytest.mark.parametrize(
    "name",
    ["ranker/weights.npz", "ranker/portable.json", "gate.json", "ranker/ranker.json"],
)
def test_damaged_model_files_are_named_with_the_repair(cfg, encoder, name):
    path = champion_dir(cfg) / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: sizes and (mostly) syntax survive
    path.write_bytes(bytes(data))
    with pytest.raises(BrainrankError) as info:
        learned_search(cfg, encoder)
    message = str(info.value)
    assert name in message and "brainrank models rollback" in message and "\n" not in message
    code, report = check(cfg)
    assert code == 1 and any(name in f["detail"] for f in damaged(report))


def test_a_damaged_version_is_never_promoted(cfg):
    from brainrank.ranker.registry.promotion import promote

    ws = Workspace(cfg.workspace)
    before = ws.serving_state()
    gate = champion_dir(cfg) / "gate.json"
    gate.write_text(gate.read_text() + " ")
    with pytest.raises(BrainrankError, match=r"v\d+ cannot serve, nothing was changed: .*gate"):
        promote(cfg, before.champion)
    assert ws.serving_state() == before


def test_a_model_json_edited_in_place_is_refused(cfg, encoder):
    meta_path = champion_dir(cfg) / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["metrics"]["challenger"]["nDCG@10"] = 0.99  # still valid JSON
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BrainrankError, match="model.json is damaged"):
        learned_search(cfg, encoder)
    assert check(cfg)[0] == 1


def test_a_model_committed_before_checksums_is_accepted_and_reported(cfg, encoder):
    meta_path = champion_dir(cfg) / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["files"], meta["checksum"]
    meta_path.write_text(json.dumps(meta))
    assert learned_search(cfg, encoder).hits
    code, report = check(cfg)
    assert code == 0
    assert any(f["part"] == "model" and f["status"] == "unverified" for f in report["findings"])


def test_damaged_indexes_and_documents_fail_the_check(cfg):
    ws = Workspace(cfg.workspace)
    number = ws.serving_state().generation
    segment = ws.manifest(number)["segments"][0]["name"]
    data = ws.generation_dir(number) / "segments" / segment / "bm25" / "freqs.npy"
    np.save(data, np.random.default_rng(0).permutation(np.load(data)))
    code, report = check(cfg)
    assert code == 1
    (finding,) = [f for f in damaged(report) if f["part"] == "index"]
    assert "freqs.npy" in finding["detail"] and "reindex" in finding["repair"]
    res = run("check", "-w", cfg.workspace)
    assert res.exit_code == 1 and "brainrank reindex" in res.output


def test_document_text_changed_on_disk_is_found(cfg):
    store = Workspace(cfg.workspace).store_path
    blob = store.read_bytes()
    at = blob.index(b"gift card")
    store.write_bytes(blob[:at] + b"gift cart" + blob[at + 9 :])  # SQLite cannot see this
    code, report = check(cfg)
    assert code == 1
    assert any("no longer match their content hash" in f["detail"] for f in damaged(report))


def test_a_damaged_query_log_never_blocks_search_and_check_repair_sets_it_aside(cfg):
    log = Workspace(cfg.workspace).logs_dir / "querylog.sqlite"
    assert run("search", "gift card", "-w", cfg.workspace).exit_code == 0  # the log exists
    data = bytearray(log.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for start in range(2 * page, len(data), page):
        data[start : start + 8] = b"\xff" * 8
    log.write_bytes(bytes(data))
    for side in log.parent.glob("querylog.sqlite-*"):
        side.unlink()
    res = run("search", "gift card", "--mode", "bm25", "--json", "-w", cfg.workspace)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["hits"]
    warning = [line for line in res.stderr.splitlines() if "not logged" in line]
    assert len(warning) == 1 and "brainrank check --repair" in warning[0]
    code, report = check(cfg)
    (finding,) = damaged(report)
    assert code == 1 and finding["part"] == "query log" and "--repair" in finding["repair"]
    code, report = check(cfg, "--repair")
    assert code == 0
    (fixed,) = [f for f in report["findings"] if f["status"] == "repaired"]
    assert "querylog.sqlite.corrupt-" in fixed["detail"]
    (aside,) = [p for p in log.parent.glob("querylog.sqlite.corrupt-*") if p.name[-4] != "-"]
    assert aside.stat().st_size == len(data)  # kept as it was, for whoever wants to dig
    res = run("search", "gift card", "--mode", "bm25", "--json", "-w", cfg.workspace)
    assert json.loads(res.stdout.strip().splitlines()[-1])["impression_id"] == "1"
    assert "not logged" not in res.stderr


def test_a_damaged_judgment_store_fails_the_check_and_is_left_in_place(cfg):
    from tests.conftest import DATA

    res = run(
        "judgments", "import", DATA / "qrels-train.txt", "--queries", DATA / "queries.jsonl",
        "-w", cfg.workspace,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    code, report = check(cfg)
    assert code == 0, damaged(report)
    assert ("judgments", "ok") in {(f["part"], f["status"]) for f in report["findings"]}
    path = cfg.workspace / "judgments.sqlite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # a zeroed run inside its pages
    data[:16] = b"not an sqlite db"
    path.write_bytes(bytes(data))
    code, report = check(cfg, "--repair")
    (found,) = [f for f in damaged(report) if f["part"] == "judgments"]
    assert code == 1 and "judgments import" in found["repair"]
    assert path.read_bytes() == bytes(data)  # people's work: reported, never moved aside


def test_check_of_a_missing_workspace_is_one_line(tmp_path):
    res = run("check", "-w", tmp_path / "nowhere")
    assert res.exit_code == 1 and "no workspace" in res.output and "Traceback" not in res.output


def test_reindex_rewrites_an_unreadable_pointer_with_the_champion_of_record(cfg, encoder):
    from brainrank.ranker.retrieval.reindex import rebuild_indexes

    ws = Workspace(cfg.workspace)
    champion = Registry(ws.models_dir).champion().version
    ws.serving_file.write_bytes(b"\x00\x01 garbage")
    with pytest.raises(BrainrankError):
        learned_search(cfg, encoder)
    rep = rebuild_indexes(cfg, encoder_factory=lambda: encoder)
    state = ws.serving_state()
    assert (state.generation, state.champion) == (rep.generation, champion)
    assert learned_search(cfg, encoder).model == champion
    assert check(cfg)[0] == 0


def test_a_lost_pointer_is_damage_when_the_history_records_a_champion(cfg, encoder):
    from brainrank.ranker.retrieval.reindex import rebuild_indexes

    ws = Workspace(cfg.workspace)
    champion = Registry(ws.models_dir).champion().version
    ws.serving_file.unlink()  # not "nothing serves yet": the champion would vanish unsaid
    with pytest.raises(BrainrankError, match="SERVING is missing, but .*history.jsonl records"):
        learned_search(cfg, encoder)
    code, report = check(cfg)
    assert code == 1 and "serving pointer" in {f["part"] for f in damaged(report)}
    rebuild_indexes(cfg, encoder_factory=lambda: encoder)
    assert ws.serving_state().champion == champion
    assert learned_search(cfg, encoder).model == champion and check(cfg)[0] == 0
