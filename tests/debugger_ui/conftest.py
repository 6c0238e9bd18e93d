"""Fixtures for the debugger: a workspace with two model versions and a way to run the app."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, make_config, permissive

APP = Path(__file__).resolve().parents[2] / "debugger_ui" / "app.py"
QUERIES = DATA / "queries.jsonl"
QRELS = DATA / "qrels-train.txt"
# The first run of a fresh workspace loads TensorFlow, the encoder and a model.
FIRST_RUN_TIMEOUT = 180


def copy_workspace(cfg, dest: Path):
    shutil.copytree(cfg.workspace, dest)
    return make_config(dest)


def add_gam_version(cfg) -> str:
    """Register an untrained GAM beside the champion (not promoted); returns its version.

    Its sub-scores are arbitrary but exact, which is all the pages need; training one for
    real would cost the suite half a minute.
    """
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.learning.learned import RANKER_DIR
    from brainrank.ranker.learning.ranker_params import RankerParams
    from brainrank.ranker.learning.tfr_model import ListwiseRanker
    from brainrank.ranker.registry.registry import Registry

    registry = Registry(Workspace(cfg.workspace).models_dir)
    champion = registry.champion()
    tmp = registry.begin(parent=champion.version)
    for item in champion.path.iterdir():
        if item.name in ("model.json", RANKER_DIR):
            continue
        copy = shutil.copytree if item.is_dir() else shutil.copyfile
        copy(item, tmp / item.name)
    n = len(champion.feature_names)
    params = RankerParams(scorer="gam", hidden=(8,), dropout=0.0, max_epochs=0, seed=3)
    ListwiseRanker.create(n, params).save(tmp / RANKER_DIR)
    meta = {k: v for k, v in champion.meta.items() if k not in ("version", "created", "parent")}
    meta["options"] = {**meta.get("options", {}), "scorer": "gam"}
    (tmp / "model.json").write_text(json.dumps(meta, default=str))
    return registry.commit(tmp).version


@pytest.fixture(scope="session")
def ui_config(trained_config, tmp_path_factory):
    """A copy of the trained sample workspace: champion v0001 (DNN) and challenger v0002 (GAM)."""
    cfg = copy_workspace(trained_config, tmp_path_factory.mktemp("ui") / "ws")
    add_gam_version(cfg)
    return cfg


def log_traffic(cfg, encoder, texts, t0: float, step: float, shift=None) -> None:
    """Log ``texts`` as CLI searches at ``t0 + i * step`` through the real search path.

    Each distinct query is searched once and its result re-logged for repeats (a search is
    deterministic); ``shift = (feature, delta)`` adds ``delta`` to that feature's logged rows.
    """
    import dataclasses

    from brainrank.ranker.feedback.querylog import QueryLog
    from brainrank.ranker.retrieval.search import SearchEngine

    served = {}
    engine = SearchEngine(cfg, encoder=encoder)
    with QueryLog.open(cfg.workspace) as log:
        for i, text in enumerate(texts):
            if text not in served:
                served[text] = engine.search(text, k=10)
            result = dataclasses.replace(served[text])
            if shift is not None:
                result.features = result.features.copy()
                result.features[:, result.feature_names.index(shift[0])] += shift[1]
            log.record(result, time=t0 + i * step)
    engine.close()


@pytest.fixture(scope="session")
def health_config(trained_config, encoder, tmp_path_factory):
    """A copy of the trained sample workspace after one real retrain (so its history has a
    report and its new champion a monitoring reference), with 120 searches of training
    queries logged in the last hour whose ``dense`` feature is shifted by 0.3."""
    import time

    import numpy as np

    from brainrank.index.workspace import Workspace
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.monitoring.reference import training_texts
    from brainrank.ranker.monitoring.retrain import RetrainConfig, retrain
    from brainrank.ranker.registry.registry import Registry

    cfg = copy_workspace(trained_config, tmp_path_factory.mktemp("health") / "ws")
    shutil.rmtree(cfg.workspace / "logs", ignore_errors=True)
    # Two epochs, promoted whatever they score: the point is a report, not a better model.
    rcfg = RetrainConfig(queries=QUERIES, qrels=QRELS, max_epochs=2)
    report = retrain(permissive(cfg), rcfg, encoder_factory=lambda: encoder)
    assert report.status == "promoted", report.reason
    champion = Registry(Workspace(cfg.workspace).models_dir).champion()
    texts = sorted(set(training_texts(champion, read_queries(QUERIES), read_qrels(QRELS))))
    rng = np.random.default_rng(0)
    traffic = [texts[i] for i in rng.integers(0, len(texts), 120)]
    log_traffic(cfg, encoder, traffic, time.time() - 3600, 25.0, shift=("dense", 0.3))
    return cfg


@pytest.fixture(scope="session")
def ui_engine(ui_config, encoder):
    """The oracle: the same workspace served by ranker's own SearchEngine."""
    from brainrank.ranker.retrieval.search import SearchEngine

    return SearchEngine(ui_config, encoder=encoder)


@pytest.fixture
def launch(monkeypatch):
    """launch(cfg, judged=True, writable=False, **query_params) -> AppTest after its first run.

    ``writable`` starts the app as ``brainrank ui --writable`` would (promote, roll back and
    the query log); without it the app is read-only, as by default.
    """
    pytest.importorskip("streamlit", reason="the debugger needs Streamlit: pip install -e .")
    from streamlit.testing.v1 import AppTest

    def start(cfg, judged: bool = True, writable: bool = False, **params):
        argv = [str(APP), "--workspace", str(cfg.workspace)]
        if judged:
            argv += ["--queries", str(QUERIES), "--qrels", str(QRELS)]
        if writable:
            argv.append("--writable")
        monkeypatch.setattr(sys, "argv", argv)
        at = AppTest.from_file(str(APP), default_timeout=FIRST_RUN_TIMEOUT)
        for key, value in params.items():
            at.query_params[key] = value
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return start


def metric(at, label: str) -> str:
    """The value shown by the metric with this label."""
    for m in at.metric:
        if m.label == label:
            return m.value
    raise AssertionError(f"no metric {label!r}; shown: {[m.label for m in at.metric]}")


def frame_with(at, *columns: str, without: tuple[str, ...] = ()):
    """The first dataframe shown that has all ``columns`` and none of ``without``."""
    for df in at.dataframe:
        names = set(df.value.columns)
        if set(columns) <= names and not names & set(without):
            return df.value
    raise AssertionError(f"no dataframe with columns {columns} (without {without})")


def url(at) -> dict[str, str]:
    return {k: v[0] if isinstance(v, list) else v for k, v in at.query_params.items()}
