"""Retraining on a copy of the trained sample workspace: recovery, idempotence, lock, crash."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime

import pytest

from brainrank.index.errors import BrainrankError
from brainrank.index.records import Document
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import MonitorConfig, RetrainConfig
from brainrank.ranker.feedback.querylog import QueryLog
from brainrank.ranker.monitoring.drift import monitor
from brainrank.ranker.monitoring.reference import Reference
from brainrank.ranker.monitoring.retrain import history, retrain
from brainrank.ranker.registry.registry import Registry
from tests.conftest import DATA, ingest, make_config, permissive


@pytest.fixture
def rcfg(few_qrels):
    """Forty judged queries hold out only 8, where one swapped document moves nDCG@10 by more
    than 0.05: the workspace promotes any challenger (``permissive``), and the click margin
    only keeps the test from hanging on that noise."""
    return RetrainConfig(
        queries=DATA / "queries.jsonl",
        qrels=few_qrels,
        max_epochs=15,
        click_margin=0.5,
        min_click_eval=3,
    )


@pytest.fixture
def workspace(trained_config, tmp_path):
    shutil.copytree(trained_config.workspace, tmp_path / "ws")
    return permissive(make_config(tmp_path / "ws"))


def champion(cfg):
    return Registry(Workspace(cfg.workspace).models_dir).champion()


def log_clicked_traffic(cfg, encoder):
    """Twenty searches of training queries, each clicked at its first hit."""
    from brainrank.ranker.retrieval.search import SearchEngine

    queries = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open()][:20]
    with QueryLog.open(cfg.workspace) as log:
        engine = SearchEngine(cfg, encoder=encoder)
        clicks = []
        for q in queries:
            res = engine.search(q, k=10)
            log.record(res)
            clicks.append({"impression_id": res.impression_id, "doc_id": res.hits[0].doc_id})
        path = cfg.workspace / "feedback.jsonl"
        now = datetime.now(UTC).isoformat()
        path.write_text("".join(json.dumps({**c, "time": now}) + "\n" for c in clicks))
        assert log.import_feedback(path).imported == 20


def test_retrain_needs_judgments(workspace):
    with pytest.raises(BrainrankError, match=r"set queries and qrels in the \[retrain\] table"):
        retrain(workspace, RetrainConfig())


def test_a_fresh_champion_is_not_retrained(workspace, rcfg):
    before = champion(workspace).version
    report = retrain(workspace, rcfg, if_needed=True)
    assert report.status == "not needed" and report.monitor["verdict"] == "fresh"
    assert champion(workspace).version == before and history(workspace.workspace / "models") == []


def test_retrain_if_needed_recovers_from_fresh_documents(workspace, encoder, rcfg):
    now = datetime.now(UTC)
    fresh = [
        Document(f"n{i:03d}", f"Garden robot model R{i}", f"Autonomous lawn robot number {i}.", now)
        for i in range(80)  # over [monitor] max_changed_docs (10%) of the 604 sample documents
    ]
    ingest(workspace, encoder, fresh)
    log_clicked_traffic(workspace, encoder)
    mcfg = MonitorConfig()
    assert monitor(workspace, mcfg).monitors["corpus"]["status"] == "alarm"
    old = champion(workspace).version

    report = retrain(workspace, rcfg, mcfg, if_needed=True, encoder_factory=lambda: encoder)

    assert report.status == "promoted", report.reason
    assert report.champion_before == old and report.champion_after == champion(workspace).version
    assert report.champion_after != old and report.inputs["logged_impressions"] == 20
    assert "clicks" in report.metrics and report.metrics["clicks"]["impressions"] >= 3
    assert any("corpus" in r or "documents" in r for r in report.monitor["reasons"])
    saved = history(workspace.workspace / "models")
    assert [r["status"] for r in saved] == ["promoted"] and saved[0][
        "challenger"
    ] == report.challenger
    models = workspace.workspace / "models"
    assert Reference.load(models, report.champion_after) is not None
    assert monitor(workspace, mcfg).verdict == "fresh"

    # From cron: nothing to do now, and a forced run with the same inputs is skipped.
    assert retrain(workspace, rcfg, mcfg, if_needed=True).status == "not needed"
    again = retrain(workspace, rcfg, mcfg)
    assert again.status == "skipped" and "nothing changed" in again.reason
    assert len(history(models)) == 1


def test_two_retrains_are_kept_apart(workspace, rcfg):
    with Workspace(workspace.workspace).writer_lock("retrain"):
        with pytest.raises(BrainrankError, match="another brainrank retrain is running"):
            retrain(workspace, rcfg)


def test_a_crash_leaves_the_champion_serving(workspace, monkeypatch, rcfg):
    from brainrank.ranker.learning.tfr_model import ListwiseRanker

    def killed(*args, **kwargs):
        raise RuntimeError("killed mid-training")

    monkeypatch.setattr(ListwiseRanker, "fit", killed)
    registry = Registry(Workspace(workspace.workspace).models_dir)
    before = [v.version for v in registry.versions()]
    serving = champion(workspace).version  # not always the newest: other tests add versions
    promotions = history(registry.models_dir)
    t = time.time()
    with pytest.raises(RuntimeError, match="killed"):
        retrain(workspace, rcfg)
    assert champion(workspace).version == serving
    assert [v.version for v in registry.versions()] == before
    assert history(registry.models_dir) == promotions
    assert time.time() - t < 60
    # The lock died with the run: the next retrain may start (and stops at its own check).
    assert retrain(workspace, rcfg, if_needed=True).status == "not needed"


def test_a_champion_promoted_during_the_retrain_is_not_replaced_unseen(
    workspace, monkeypatch, rcfg
):
    import brainrank.ranker.learning.train as train_module

    original = train_module.train
    registry = Registry(Workspace(workspace.workspace).models_dir)
    before = champion(workspace).version

    def train_then_someone_promotes(cfg, *args, **kwargs):
        result = original(cfg, *args, **kwargs)
        registry.promote(result.version)  # `models promote` by hand, while the retrain runs
        return result

    monkeypatch.setattr(train_module, "train", train_then_someone_promotes)
    report = retrain(workspace, rcfg)
    # The challenger was judged against the old champion, so it must not replace the new one
    # (here the new one is that challenger, promoted by hand: one promotion, not two).
    assert report.status == "kept" and "the champion changed from" in report.reason
    assert report.champion_before == before
    assert report.champion_after == champion(workspace).version == report.challenger
    assert [e["version"] for e in registry.history()][-1] == report.challenger
    assert sum(e["version"] == report.challenger for e in registry.history()) == 1
