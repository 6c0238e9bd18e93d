"""Drift-monitoring simulation on SciFact: false alarms, detection, recovery by retraining.

    .venv/bin/python bench/bench_drift.py [--windows 100] [--per-window 200] [--fresh-docs 800]

A copy of the SciFact workspace (bench/.work/scifact, built by bench_retrieval.py) gets a
champion trained on SciFact train judgments and its monitoring reference. Traffic is SciFact
queries (train and test, Zipf popularity) served by the real search path; each distinct query
is searched once and its result re-logged for repeats (searches are deterministic). Clicks
are simulated from the train judgments of half the train queries with a position-biased
examination model and imported as feedback. Days 0-6 after training are the outcome reference
period; then:

1. ``--windows`` one-day windows without drift: the false-alarm rate (verdict "stale").
2. One window of each injected drift: queries on a new topic (NFCorpus: nutrition), a shifted
   feature (``dense`` cosine moved by 0.02, 0.05, 0.1), clicks falling (users find half as
   much), fresh documents (``--fresh-docs`` NFCorpus documents ingested), an old model.
3. Recovery: three more days of mixed traffic (SciFact and the new topic's train queries,
   clicked), then ``retrain --if-needed`` with the NFCorpus judgments added; nDCG@10 on the
   new topic's test queries and on SciFact test before and after. Then a feature-pipeline change
   (``bm25_norm`` computed as a z-score), and ``retrain --if-needed`` under it: nDCG@10 on
   SciFact test before the change, under it, and after retraining.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from common import REPO, machine, print_table

WORK = REPO / "bench" / ".work"
DAY = 86400.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Replay:
    """Searches each distinct query once (real search path) and logs copies at chosen times."""

    def __init__(self, engine):
        self.engine, self.cache = engine, {}

    def warm(self, queries):
        for q in dict.fromkeys(queries):
            if q not in self.cache:
                self.cache[q] = self.engine.search(q, k=10)

    def serve(self, qlog, queries, t0, step, shift=None) -> list[int]:
        self.warm(queries)
        ids = []
        for i, q in enumerate(queries):
            res = dataclasses.replace(self.cache[q])
            if shift is not None:
                res.features = res.features.copy()
                res.features[:, res.feature_names.index(shift[0])] += shift[1]
            ids.append(qlog.record(res, time=t0 + i * step))
        return ids


def simulate_clicks(replay, queries, ids, qrels_by_text, times, rng, relevant_p=0.7):
    """Position-biased clicks: position k examined w.p. 1/k^0.8, relevant docs clicked w.p.
    ``relevant_p``, others w.p. 0.05."""
    out = []
    for q, sid, t in zip(queries, ids, times, strict=True):
        res = replay.cache[q][0]
        rel = qrels_by_text.get(q, {})
        for h in res.hits:
            p = (relevant_p if rel.get(h.doc_id, 0) > 0 else 0.05) / h.rank**0.8
            if rng.random() < p:
                out.append({"impression_id": sid, "doc_id": h.doc_id, "time": t + 5 + h.rank})
    return out


def setup(args):
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.config import load_config
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.learning.train import TrainOptions, train
    from brainrank.ranker.monitoring.reference import build_reference, training_texts
    from brainrank.ranker.registry.registry import Registry
    from brainrank.ranker.retrieval.search import SearchEngine

    src = WORK / "scifact"
    if not src.is_dir() or Workspace(src).serving_state().generation is None:
        sys.exit(f"skipped: {src} not found; run bench/bench_retrieval.py first")
    target = WORK / "drift-scifact"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("models", "logs", ".*.lock"))
    copy = Workspace(target)
    with copy.writer_lock():  # the models stayed behind: the copy serves its index alone
        copy.set_serving(copy.serving_state().generation, None)
    cfg = load_config(workspace=target, env={})
    data = dataset("scifact")
    queries = read_queries(data / "queries.jsonl")
    train_qrels = read_qrels(data / "qrels" / "train.tsv")
    log("training the champion on SciFact train")
    t = time.perf_counter()
    result = train(cfg, queries, train_qrels, options=TrainOptions(seed=args.seed))
    if not result.promoted:
        from brainrank.ranker.registry.promotion import promote

        promote(cfg, result.version)
    train_seconds = time.perf_counter() - t
    engine = SearchEngine(cfg)
    champion = Registry(Workspace(target).models_dir).champion()
    texts = training_texts(champion, queries, train_qrels)
    t = time.perf_counter()
    build_reference(engine, champion.version, texts).save(Workspace(target).models_dir)
    log(
        f"champion {champion.version}; reference from {len(texts)} queries in "
        f"{time.perf_counter() - t:.0f}s"
    )
    return cfg, engine, champion, train_seconds


def dataset(name: str) -> Path:
    from common import dataset_dir

    return dataset_dir(None, name)


def qrels_by_text(queries, qrels):
    return {queries[q]: g for q, g in qrels.items() if q in queries}


def ndcg(engine, queries, qrels, mode="learned"):
    from brainrank.ranker.evaluation import evaluate

    return evaluate(engine, queries, qrels, [mode])[mode]["nDCG@10"]


def nfcorpus_subset(n_docs: int, seed: int):
    """NFCorpus documents relevant to a random set of test queries (about ``n_docs``), those
    test queries, and train judgments restricted to the chosen documents."""
    from brainrank.index.readers import read_documents
    from brainrank.ranker.evaluation import read_qrels, read_queries

    data = dataset("nfcorpus-preprocessed")
    queries = read_queries(data / "queries.jsonl")
    test, train_q = (
        read_qrels(data / "qrels" / "test.tsv"),
        read_qrels(data / "qrels" / "train.tsv"),
    )
    rng = np.random.default_rng(seed)
    chosen, docs = [], set()
    for q in rng.permutation(sorted(test)):
        rel = {d for d, g in test[q].items() if g > 0}
        if len(rel) < 3 or len(docs | rel) > n_docs:
            continue
        chosen.append(q)
        docs |= rel
    test_sub = {q: {d: g for d, g in test[q].items() if d in docs} for q in chosen}
    train_sub = {}
    for q, grades in train_q.items():
        kept = {d: g for d, g in grades.items() if d in docs}
        if sum(g > 0 for g in kept.values()) >= 2:
            train_sub[q] = kept
    train_ids = sorted(train_sub)[:: max(1, len(train_sub) // 400)]
    train_sub = {q: train_sub[q] for q in train_ids}
    documents = [d for d in read_documents(data).documents if d.doc_id in docs]
    return queries, test_sub, train_sub, documents


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--windows", type=int, default=100)
    ap.add_argument("--per-window", type=int, default=200)
    ap.add_argument("--fresh-docs", type=int, default=800)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.feedback.querylog import QueryLog
    from brainrank.ranker.monitoring.drift import MonitorConfig, monitor
    from brainrank.ranker.monitoring.retrain import RetrainConfig, retrain

    print(f"machine: {machine()}; date: {date.today()}")
    t_all = time.perf_counter()
    cfg, engine, champion, train_seconds = setup(args)
    data = dataset("scifact")
    sci_queries = read_queries(data / "queries.jsonl")
    sci_test = read_qrels(data / "qrels" / "test.tsv")
    sci_qrels = {**read_qrels(data / "qrels" / "train.tsv"), **sci_test}
    pool = sorted({sci_queries[q] for q in sci_qrels if q in sci_queries})
    # Clicks come from train judgments only, and only on half of the train queries (the rest
    # are searched but never clicked, like test queries), so retraining on logged clicks
    # cannot learn the test judgments and meets queries without click evidence.
    train_judged = read_qrels(data / "qrels" / "train.tsv")
    clicked = sorted(train_judged)[::2]
    by_text = qrels_by_text(sci_queries, {q: train_judged[q] for q in clicked})
    rng = np.random.default_rng(args.seed)
    popularity = 1.0 / np.arange(1, len(pool) + 1) ** 0.7
    popularity = (popularity / popularity.sum())[rng.permutation(len(pool))]

    replay = Replay(engine)
    t = time.perf_counter()
    replay.warm(pool)
    log(f"{len(pool)} distinct queries served in {time.perf_counter() - t:.0f}s")
    trained = champion.created.timestamp()
    no_age = MonitorConfig(max_model_age="3650d")
    qlog = QueryLog.open(cfg.workspace)

    def window(day, queries=None, shift=None, relevant_p=0.7, clicks=True, mcfg=no_age):
        queries = queries or [pool[i] for i in rng.choice(len(pool), args.per_window, p=popularity)]
        start = trained + day * DAY
        step = DAY / (len(queries) + 1)
        ids = replay.serve(qlog, queries, start, step, shift)
        if clicks:
            times = [start + i * step for i in range(len(queries))]
            fb = simulate_clicks(replay, queries, ids, by_text, times, rng, relevant_p)
            path = cfg.workspace / "logs" / "feedback.jsonl"
            path.write_text("".join(json.dumps(c) + "\n" for c in fb))
            qlog.import_feedback(path)
        return monitor(cfg, mcfg, window="1d", now=start + DAY - 1, log=qlog)

    for day in range(7):  # the period just after training: the outcome reference
        window(day)
    t = time.perf_counter()
    reports = [window(7 + w) for w in range(args.windows)]
    null_seconds = time.perf_counter() - t
    names = ["features", "queries", "outcomes", "corpus", "staleness"]
    fired = {n: sum(r.monitors[n]["status"] == "alarm" for r in reports) for n in names}
    stale = sum(r.stale for r in reports)
    print_table(
        f"False alarms: {args.windows} one-day windows of {args.per_window} searches, no drift",
        ["monitor", "windows alarmed", "rate"],
        [[n, fired[n], fired[n] / args.windows] for n in names]
        + [["**verdict stale**", stale, stale / args.windows]],
    )
    examples = [r for r in reports if r.stale][:3]
    for r in examples:
        print(f"- false alarm example: {'; '.join(r.reasons)}")
    log(f"null windows: {null_seconds:.0f}s, {null_seconds / args.windows:.2f}s per window")

    # -- injected drifts, one window each ----------------------------------------------------
    nf_queries, nf_test, nf_train, nf_docs = nfcorpus_subset(args.fresh_docs, args.seed)
    day = 7 + args.windows
    detection = []

    def detect(name, expected, report):
        status = {n: report.monitors[n]["status"] for n in names}
        detection.append(
            [
                name,
                expected,
                "yes" if status[expected] == "alarm" else "**no**",
                ", ".join(n for n in names if status[n] == "alarm") or "-",
                "; ".join(report.monitors[expected]["reasons"])[:110] or "-",
            ]
        )

    topic = [nf_queries[q] for q in rng.choice(sorted(nf_queries), args.per_window)]
    detect("queries on a new topic (NFCorpus)", "queries", window(day, topic, clicks=False))
    for size in (0.02, 0.05, 0.1):
        day += 1
        detect(
            f"feature `dense` shifted by +{size}", "features", window(day, shift=("dense", size))
        )
    day += 1
    detect(
        "clicks fall (relevant results clicked half as often)",
        "outcomes",
        window(day, relevant_p=0.35),
    )
    day += 1
    report = window(day, mcfg=MonitorConfig())
    detect("model older than max_model_age (30d)", "staleness", report)

    pre_sci = ndcg(engine, sci_queries, sci_test)
    nf_texts = {q: nf_queries[q] for q in nf_test}
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.encoding.loading import encoder_path_for, serving_manifest
    from brainrank.ranker.retrieval.indexing import update_indexes

    ws = Workspace(cfg.workspace)
    t = time.perf_counter()
    update_indexes(
        ws,
        cfg,
        documents=nf_docs,
        encoder_factory=lambda: engine.encoder,
        encoder_path=encoder_path_for(cfg, serving_manifest(ws)),
    )
    ingest_seconds = time.perf_counter() - t
    log(f"{len(nf_docs)} fresh documents ingested in {ingest_seconds:.0f}s")
    from brainrank.ranker.retrieval.search import SearchEngine

    engine = SearchEngine(cfg, encoder=engine.encoder)
    replay = Replay(engine)
    day += 1
    detect(f"{len(nf_docs)} fresh documents (NFCorpus) ingested", "corpus", window(day))
    print_table(
        "Detection: each drift injected into one one-day window",
        ["drift", "monitor expected", "detected in the window", "monitors alarmed", "reasons"],
        detection,
    )

    # -- recovery ----------------------------------------------------------------------------
    # The new topic goes on for three days before the nightly retrain: users search it (its
    # train queries, so that test queries stay unseen) and click what they find relevant.
    nf_clicked = sorted(nf_train)[::2]
    by_text.update(qrels_by_text(nf_queries, {q: nf_train[q] for q in nf_clicked}))
    nf_pool = sorted(nf_queries[q] for q in nf_train)
    for _ in range(3):
        day += 1
        mixed = [pool[i] for i in rng.choice(len(pool), args.per_window // 2, p=popularity)]
        mixed += [nf_pool[i] for i in rng.integers(0, len(nf_pool), args.per_window // 2)]
        window(day, mixed)
    drift_topic = ndcg(engine, nf_texts, nf_test)
    drift_topic_hybrid = ndcg(engine, nf_texts, nf_test, "hybrid")
    judged = cfg.workspace / "judgments"
    judged.mkdir(exist_ok=True)
    all_q = {**{q: sci_queries[q] for q in sci_queries}, **{q: nf_queries[q] for q in nf_train}}
    (judged / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in all_q.items())
    )
    train_qrels = {**read_qrels(data / "qrels" / "train.tsv"), **nf_train}
    (judged / "qrels.txt").write_text(
        "".join(f"{q} 0 {d} {g}\n" for q, gs in train_qrels.items() for d, g in gs.items())
    )
    rcfg = RetrainConfig(
        queries=judged / "queries.jsonl", qrels=judged / "qrels.txt", seed=args.seed
    )
    t = time.perf_counter()
    rep = retrain(
        cfg,
        rcfg,
        no_age,
        if_needed=True,
        now=trained + (day + 1) * DAY - 1,
        encoder_factory=lambda: engine.encoder,
    )
    retrain_seconds = time.perf_counter() - t
    log(f"retrain: {rep.status} in {retrain_seconds:.0f}s: {rep.reason}")
    engine = SearchEngine(cfg, encoder=engine.encoder)
    post_topic, post_sci = ndcg(engine, nf_texts, nf_test), ndcg(engine, sci_queries, sci_test)
    rows = [
        [
            f"new topic (NFCorpus test, {len(nf_test)} q.)",
            drift_topic_hybrid,
            "-",
            drift_topic,
            post_topic,
            rep.status,
        ],
        ["SciFact test (300 q.)", "-", pre_sci, "-", post_sci, ""],
    ]

    # A feature-pipeline change: bm25_norm becomes a z-score (the same queries before/after).
    from brainrank.ranker.learning import features as feats

    def zscore(x):
        x = np.asarray(x, dtype=np.float64)
        return (x - x.mean()) / x.std() if len(x) and x.std() > 1e-12 else np.zeros_like(x)

    original = feats.FeatureExtractor.extract
    pre_shift = post_sci
    for_model = rep.champion_after

    def changed(self, query, cand):
        x = original(self, query, cand)
        j = self.schema.index("bm25_norm")
        x[:, j] = zscore(cand.bm25).astype(np.float32)
        return x

    feats.FeatureExtractor.extract = changed
    try:
        engine = SearchEngine(cfg, encoder=engine.encoder)
        replay = Replay(engine)
        day += 1
        shifted = window(day, mcfg=dataclasses.replace(no_age, window="1d"))
        under_shift = ndcg(engine, sci_queries, sci_test)
        t = time.perf_counter()
        rep2 = retrain(
            cfg,
            dataclasses.replace(rcfg, seed=args.seed + 1),
            dataclasses.replace(no_age, window="1d"),
            if_needed=True,
            now=trained + (day + 1) * DAY - 1,
            encoder_factory=lambda: engine.encoder,
        )
        log(
            f"retrain under the changed pipeline: {rep2.status} in "
            f"{time.perf_counter() - t:.0f}s: {rep2.reason}"
        )
        engine = SearchEngine(cfg, encoder=engine.encoder)
        recovered = ndcg(engine, sci_queries, sci_test)
    finally:
        feats.FeatureExtractor.extract = original
    rows.append(
        [
            "SciFact test, `bm25_norm` now a z-score",
            "-",
            pre_shift,
            under_shift,
            recovered,
            rep2.status,
        ]
    )
    print_table(
        "nDCG@10 before drift, under drift, and after `retrain --if-needed`",
        [
            "queries",
            "hybrid (no model)",
            f"before drift ({for_model} / {champion.version})",
            "under drift",
            "after retrain",
            "retrain",
        ],
        rows,
    )
    print(f"\n- pipeline-change window: {shifted.verdict}; {'; '.join(shifted.reasons)[:200]}")
    print(
        f"- champion training {train_seconds:.0f}s; {len(nf_docs)} documents ingested in "
        f"{ingest_seconds:.0f}s; retrain {retrain_seconds:.0f}s; total "
        f"{(time.perf_counter() - t_all) / 60:.1f} min"
    )
    qlog.close()


if __name__ == "__main__":
    main()
