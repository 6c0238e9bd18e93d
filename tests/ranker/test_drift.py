"""Drift statistics (arithmetic oracles, a property) and the monitors on the sample workspace:
no alarm for training-distribution traffic, and each injected drift fires its monitor."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brainrank.index.records import Document
from brainrank.ranker.config import MonitorConfig
from brainrank.ranker.durations import parse_duration
from brainrank.ranker.feedback.fields import normalise_query
from brainrank.ranker.feedback.querylog import QueryLog
from brainrank.ranker.learning.features import BASE_FEATURES
from brainrank.ranker.monitoring.drift import monitor
from brainrank.ranker.monitoring.reference import Reference, build_reference, training_texts
from brainrank.ranker.monitoring.stats import (
    baseline_histogram,
    feature_drift,
    js_divergence,
    ks_test,
    psi,
    query_term_drift,
)
from tests.conftest import DATA, ingest, make_config

DAY = 86400.0
NEW_TOPIC = [
    "symptoms of seasonal flu in children",
    "current mortgage interest rates",
    "python programming tutorial for beginners",
    "football match results premier league",
    "train timetable to the airport",
    "how to treat a sprained ankle",
    "best ski resorts in the alps",
    "spanish grammar lessons",
    "stock market index futures",
    "vegan lasagna recipe",
    "quantum computing explained",
    "cheap hotels in lisbon",
]


# -- statistics -------------------------------------------------------------------------------


def test_psi_is_the_textbook_sum():
    # p = (0.5, 0.5), q = (0.9, 0.1): sum (q - p) ln(q / p)
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert psi(np.array([50, 50]), np.array([90, 10])) == pytest.approx(expected)


def test_js_divergence_bounds():
    assert js_divergence(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4); JS = (log2(4/3) + 0.5 log2(2/3) + 0.5 log2(2)) / 2
    expected = (math.log2(4 / 3) + 0.5 * math.log2(2 / 3) + 0.5 * math.log2(2)) / 2
    assert js_divergence(np.array([2, 0]), np.array([1, 1])) == pytest.approx(expected)


def test_ks_detects_a_shift_and_counts_searches_not_rows():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=2000), rng.normal(1.0, size=2000)
    d, p_rows = ks_test(a, b, 2000, 2000)
    _, p_searches = ks_test(a, b, 20, 20)
    assert 0.3 < d < 0.5 and p_rows < 1e-50
    assert p_searches > p_rows  # fewer independent units, weaker evidence


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("7d", 7 * DAY), (5, 5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_feature_rows_carry_the_histograms_psi_compared():
    # Feature a: continuous, reference 0..99, live shifted up by 50 -> live rows above the
    # reference median fill the upper bins. Feature b: discrete {0, 1}; 4 of 100 live values
    # are an unseen 2 (below the 5% that would make it continuous), counted as "other".
    ref = np.stack([np.arange(100.0), np.arange(100) % 2], axis=1)
    live = np.stack([np.arange(100.0) + 50, np.r_[np.zeros(96), np.full(4, 2.0)]], axis=1)
    a, b = feature_drift(ref, 20, live, 20, ("a", "b"), MonitorConfig())
    ha = a["histogram"]
    assert len(ha["edges"]) == 9 and len(ha["reference"]) == len(ha["live"]) == 10
    assert ha["reference"] == [10] * 10
    assert ha["live"] == [0] * 5 + [10] * 4 + [60]  # 50..89 in the upper bins, 90..149 past 89.1
    assert a["psi"] == pytest.approx(psi(np.array(ha["reference"]), np.array(ha["live"])))
    hb = b["histogram"]
    assert (hb["values"], hb["reference"], hb["live"]) == ([0.0, 1.0], [50, 50, 0], [96, 0, 4])
    assert b["psi"] == pytest.approx(psi(np.array(hb["reference"]), np.array(hb["live"])))


def test_baseline_histogram_counts_live_values_in_the_training_bins():
    entry = {"edges": [0.0, 0.5, 1.0], "counts": [30, 70]}
    out = baseline_histogram(entry, np.array([-0.1, 0.1, 0.2, 0.5, 0.9, 1.0, 1.5]))
    # [0, 0.5): 0.1, 0.2; [0.5, 1.0]: 0.5, 0.9, 1.0 (numpy's last bin is closed)
    assert out == {
        "edges": [0.0, 0.5, 1.0],
        "training": [30, 70],
        "live": [2, 3],
        "below": 1,
        "above": 1,
    }


def test_parse_duration_rejects_nonsense():
    with pytest.raises(ValueError, match="'7 days' is not a duration"):
        parse_duration("7 days")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=3, max_size=3),
        min_size=2,
        max_size=60,
    ),
    st.lists(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=4), min_size=1, max_size=8),
)
def test_drift_of_a_sample_against_itself_is_zero(rows, queries):
    x = np.array(rows, dtype=np.float32)
    table = feature_drift(x, 5, x, 5, ("a", "b", "c"), MonitorConfig())
    for row in table:
        assert row["psi"] == pytest.approx(0.0, abs=1e-12)
        assert row["statistic"] == pytest.approx(0.0, abs=1e-12)
        assert not row["drifted"]
    terms = query_term_drift(queries, queries)
    assert terms["unseen_share"] == 0.0 and terms["js"] == pytest.approx(0.0, abs=1e-12)


# -- the monitors on the sample workspace -------------------------------------------------------


class Replay:
    """Serves each distinct query once through the real search path, then logs copies of
    the results at chosen times (a search is deterministic, so a repeat is identical)."""

    def __init__(self, engine):
        self.engine, self.cache = engine, {}

    def serve(self, log, queries, t0, step=60.0, shift=None, where=(), as_unfiltered=False):
        for i, q in enumerate(queries):
            if (q, where) not in self.cache:
                self.cache[q, where] = self.engine.search(q, k=10, where=where)
            res = dataclasses.replace(self.cache[q, where])
            if as_unfiltered:  # logged as if no filter had kept its candidates
                res.filters = ()
            if shift is not None and res.features is not None:
                res.features = res.features.copy()
                res.features[:, res.feature_names.index(shift[0])] += shift[1]
            log.record(res, time=t0 + i * step)


def copy_workspace(trained_config, target):
    shutil.copytree(trained_config.workspace, target)
    return make_config(target)


@pytest.fixture(scope="module")
def sim(trained_config, encoder, tmp_path_factory):
    """A copy of the trained sample workspace with its monitoring reference and a replayer."""
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.registry.registry import Registry
    from brainrank.ranker.retrieval.search import SearchEngine

    cfg = copy_workspace(trained_config, tmp_path_factory.mktemp("drift") / "ws")
    engine = SearchEngine(cfg, encoder=encoder)
    champion = Registry(engine.workspace.models_dir).champion()
    queries = read_queries(DATA / "queries.jsonl")
    texts = training_texts(champion, queries, read_qrels(DATA / "qrels-train.txt"))
    build_reference(engine, champion.version, texts).save(engine.workspace.models_dir)
    distinct = sorted(set(texts))
    return {
        "cfg": cfg,
        "replay": Replay(engine),
        "encoder": encoder,
        "champion": champion,
        "training": distinct,
        "trained": champion.created.timestamp(),
    }


def traffic(queries, n, seed):
    rng = np.random.default_rng(seed)
    return [queries[i] for i in rng.integers(0, len(queries), n)]


def run_window(sim, day, queries, shift=None, filtered=(), **monitor_options):
    """Log ``queries`` on day ``day`` after training and monitor that one day; ``filtered``:
    (queries, filters, as_unfiltered) served with filters on the same day, after them."""
    start = sim["trained"] + day * DAY
    with QueryLog.open(sim["cfg"].workspace) as log:
        step = DAY / (len(queries) + len(filtered and filtered[0]) + 1)
        sim["replay"].serve(log, queries, start, step=step, shift=shift)
        if filtered:
            more, where, as_unfiltered = filtered
            t = start + len(queries) * step
            sim["replay"].serve(log, more, t, step=step, where=where, as_unfiltered=as_unfiltered)
        mcfg = MonitorConfig(**monitor_options)
        return monitor(sim["cfg"], mcfg, window="1d", now=start + DAY - 1, log=log)


def alarms(report):
    return {name for name, m in report.monitors.items() if m["status"] == "alarm"}


def test_reference_round_trip(sim):
    models = sim["cfg"].workspace / "models"
    ref = Reference.load(models, sim["champion"].version)
    assert ref.features.shape == (len(ref.row_search), len(BASE_FEATURES))
    assert ref.searches >= 20
    assert ref.features.dtype == np.float32 and set(ref.row_search) == set(range(ref.searches))


def test_training_traffic_raises_no_alarm(sim):
    for day, seed in ((1, 1), (2, 2)):
        report = run_window(sim, day, traffic(sim["training"], 120, seed))
        assert report.verdict == "fresh", report.reasons
        assert report.monitors["features"]["status"] == "ok"
        assert report.monitors["queries"]["status"] == "ok"


def test_queries_on_a_new_topic_fire_the_query_monitor(sim):
    report = run_window(sim, 3, traffic(NEW_TOPIC, 60, 3))
    assert "queries" in alarms(report)
    q = report.monitors["queries"]
    assert q["terms"]["unseen_share"] > 0.9
    assert q["out_of_domain"]["share"] > 0.5


def test_centroid_shift_fires_once_vectors_are_cached(sim):
    # The search path can hand the log each query's vector; here they are embedded directly.
    fingerprint = sim["champion"].encoder_fingerprint
    with QueryLog.open(sim["cfg"].workspace) as log:
        texts = [normalise_query(q) for q in NEW_TOPIC + sim["training"]]
        log.store_vectors(texts, sim["encoder"].encode(texts), fingerprint)
    calm = run_window(sim, 4, traffic(sim["training"], 80, 4))
    assert calm.monitors["queries"]["centroid"]["shift"] is not None
    assert calm.verdict == "fresh", calm.reasons
    drifted = run_window(sim, 5, traffic(NEW_TOPIC, 60, 5) + traffic(sim["training"], 20, 5))
    c = drifted.monitors["queries"]["centroid"]
    assert c["shift"] > c["null_q99"]
    assert any("centroid" in r for r in drifted.reasons)


def test_a_shifted_feature_fires_the_feature_monitor(sim):
    report = run_window(sim, 6, traffic(sim["training"], 120, 6), shift=("dense", 0.3))
    assert alarms(report) == {"features"}
    rows = report.monitors["features"]["features"]
    drifted = [r["feature"] for r in rows if r["drifted"]]
    assert drifted == ["dense"]
    # Each row carries its histograms, and the live side of baseline.json's bins counts
    # every live value once (in a bin, or below / above the training range).
    dense = next(r for r in rows if r["feature"] == "dense")
    assert dense["psi"] == pytest.approx(
        psi(np.array(dense["histogram"]["reference"]), np.array(dense["histogram"]["live"]))
    )
    base = dense["baseline"]
    assert sum(base["live"]) + base["below"] + base["above"] == sum(dense["histogram"]["live"])


def test_filtered_searches_are_logged_but_not_compared(sim):
    """A filter changes the candidates' features (here the age of the documents it keeps),
    which is no drift of the queries or of the model: those searches are left out."""
    recent = ("timestamp >= 2025-01-01",)
    queries = traffic(sim["training"], 120, 10)
    # Were their feature rows compared, the filter alone would raise the alarm.
    compared = run_window(sim, 10, [], filtered=(queries, recent, True))
    assert "features" in alarms(compared)
    # Beside unfiltered traffic, only that traffic is compared.
    plain = traffic(sim["training"], 120, 11)
    mixed = run_window(sim, 11, plain, filtered=(queries, recent, False))
    assert mixed.verdict == "fresh", mixed.reasons
    assert mixed.monitors["features"]["status"] == "ok"
    assert mixed.monitors["features"]["searches"] == len(plain)
    assert mixed.monitors["queries"]["searches"] == len(plain) + len(queries)
    # Filtered traffic alone leaves the feature monitor without data, and it says why.
    alone = run_window(sim, 12, [], filtered=(queries, recent, False))
    features = alone.monitors["features"]
    assert features["status"] == "no data"
    assert f"{len(queries)} more, filtered or later pages, are not compared" in features["note"]


def test_click_outcomes_fire_when_clicks_drop(sim, tmp_path):
    # Days 0-7 after training are the reference period: every search clicked at position 1.
    # Day 8 is the window: one search in five clicked, at position 3.
    cfg = copy_workspace(sim["cfg"], tmp_path / "ws")
    shutil.rmtree(cfg.workspace / "logs")  # only this test's traffic
    sim = {**sim, "cfg": cfg}
    t0 = sim["trained"] + 60
    feedback = []
    with QueryLog.open(cfg.workspace) as log:
        sim["replay"].serve(log, traffic(sim["training"], 100, 7), t0, step=5 * DAY / 100)
        sim["replay"].serve(log, traffic(sim["training"], 100, 8), t0 + 8 * DAY, step=600)
        with closing(sqlite3.connect(log.path)) as db:  # raw rows, as feedback would see them
            rows = db.execute(
                "SELECT s.id, s.time, r.doc_ids FROM searches s JOIN results r "
                "ON r.search_id = s.id ORDER BY s.id"
            ).fetchall()
        for i, (sid, when, ids) in enumerate(rows):
            late = when >= t0 + 8 * DAY
            if late and i % 5:
                continue
            doc = json.loads(ids)[2 if late else 0]
            feedback.append({"impression_id": sid, "doc_id": doc, "time": when + 5})
        path = tmp_path / "fb.jsonl"
        path.write_text("".join(json.dumps(f) + "\n" for f in feedback))
        assert log.import_feedback(path).imported == len(feedback)
        report = monitor(cfg, MonitorConfig(), window="1d", now=t0 + 9 * DAY - 120, log=log)
    out = report.monitors["outcomes"]
    assert out["reference"]["CTR@10"] == 1.0 and out["window"]["click_MRR"] < 0.1
    assert out["status"] == "alarm" and len(out["reasons"]) == 2


def test_fresh_documents_fire_the_corpus_monitor(sim, tmp_path):
    cfg = copy_workspace(sim["cfg"], tmp_path / "ws")
    now = datetime.now(UTC)
    fresh = [
        Document(f"n{i:03d}", f"Garden robot model R{i}", f"Autonomous lawn robot number {i}.", now)
        for i in range(80)
    ]
    ingest(cfg, sim["encoder"], fresh)
    report = monitor(cfg, MonitorConfig(), now=time.time())
    corpus = report.monitors["corpus"]
    assert corpus["status"] == "alarm"
    assert corpus["changed_since_training"] == 80 and corpus["changed_share"] == 80 / 684


def test_an_old_model_is_stale(sim):
    mcfg = MonitorConfig(max_model_age="30d")
    report = monitor(sim["cfg"], mcfg, now=sim["trained"] + 31 * DAY)
    assert report.monitors["staleness"]["status"] == "alarm"
    assert report.stale and any("days old" in r for r in report.reasons)
