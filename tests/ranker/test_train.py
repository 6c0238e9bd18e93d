"""Training, serving and promoting learned models on the sample workspace."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from brainrank.index.errors import IndexMismatchError
from brainrank.ranker.learning.learned import LearnedModel
from brainrank.ranker.learning.splits import query_split, stable_split
from brainrank.ranker.registry.registry import Registry
from brainrank.ranker.retrieval.search import SearchEngine
from tests.conftest import DATA, REPO, ingest, make_config


def registry(cfg):
    from brainrank.index.workspace import Workspace

    return Registry(Workspace(cfg.workspace).models_dir)


def test_stable_split_depends_only_on_the_key():
    keys = [f"q{i}" for i in range(1000)]
    kept, held = stable_split(keys, 0.2, "salt")
    assert 150 < len(held) < 250 and set(kept) | set(held) == set(keys)
    kept2, held2 = stable_split(list(reversed(keys)) + ["new"], 0.2, "salt")
    assert set(held) <= set(held2)


def test_query_split_is_holdout_then_validation_of_the_rest():
    keys = [f"q{i}" for i in range(1000)]
    rest, holdout = stable_split(keys, 0.2, "holdout3")
    train_ids, val_ids = stable_split(rest, 0.15, "val3")
    assert query_split(keys, 0.2, 0.15, 3) == (train_ids, val_ids, holdout)
    assert query_split(keys, 0.2, 0.15, 3).holdout != query_split(keys, 0.2, 0.15, 4).holdout


def test_trained_version_records_what_it_learned_from(trained_config):
    champion = registry(trained_config).champion()
    meta = champion.meta
    assert meta["feature_schema"]["names"][0] == "fused"
    assert meta["training"]["click_impressions"] == 1300
    assert meta["training"]["holdout_queries"] >= 1
    # 105 judged training queries: the epoch count was cross-validated (learning.epochs), and
    # the final ranker trained exactly that long on all of them.
    ranker = meta["training"]["ranker"]
    assert ranker["early_stopping"] == "cross-validation" and ranker["folds"] == 5
    assert ranker["epochs"] == ranker["best_epoch"] == int(np.argmax(ranker["curve"]))
    assert len(ranker["curve"]) == meta["options"]["max_epochs"] + 1
    # Cross-validated epochs: a seed ensemble of 5 DNNs, saved as one DNN five times as wide.
    assert meta["options"]["ensemble"] is None and ranker["members"] == 5
    params = json.loads((champion.path / "ranker" / "ranker.json").read_text())["params"]
    assert params["hidden"] == [320, 160] and params["members"] == 1
    assert {"challenger", "hybrid", "bm25", "dense"} <= set(meta["metrics"])
    baseline = json.loads((champion.path / "baseline.json").read_text())
    assert set(baseline["features"]) == set(meta["feature_schema"]["names"])
    assert (champion.path / "gate.json").exists() and (champion.path / "clicks.jsonl").exists()
    prior = json.loads((champion.path / "judgment_prior.json").read_text())
    assert prior and meta["training"]["judgment_prior_docs"] == len(prior)
    from brainrank.ranker.learning.memory import MEMORY_FILE, QueryMemory

    memory = QueryMemory.load(champion.path / MEMORY_FILE)
    training = meta["training"]
    assert len(memory) == training["query_memory_queries"]
    assert len(memory) == training["train_queries"] + training["val_queries"]
    assert all(set(labels) <= set(prior) for labels in memory.labels)
    # The base fusion's dense share was chosen on the training lists, and the model serves it.
    fusion = training["fusion"]
    assert fusion["chosen_on"] == "training queries"
    assert fusion["configured_dense_weight"] == trained_config.retrieval.dense_weight
    assert meta["feature_schema"]["dense_weight"] == fusion["dense_weight"]
    by_share = fusion["ndcg10_by_share"]
    assert fusion["dense_weight"] == fusion["configured_dense_weight"] or by_share[
        str(fusion["dense_weight"])
    ] == max(by_share.values())
    engine = SearchEngine(trained_config)
    result = engine.search("money back", k=20, mode="learned")
    names = list(result.feature_names)
    x = result.features
    w = fusion["dense_weight"]
    np.testing.assert_allclose(
        x[:, names.index("fused")],
        (1 - w) * x[:, names.index("bm25_norm")] + w * x[:, names.index("dense_norm")],
        atol=1e-6,
    )


def _judged_lists():
    from types import SimpleNamespace

    from brainrank.ranker.learning.features import FeatureSchema
    from brainrank.ranker.learning.lists import ListSet

    gen = SimpleNamespace(doc_ids=["a", "b", "c"], content_hashes=["ha", "hb", "hc"])
    schema = FeatureSchema.create(dense_weight=0.6, rrf_k=60)

    def lists(keys, labels, vectors=None):
        y = np.array(labels, dtype=np.float32)
        x = np.zeros(y.shape + (len(schema.names),), dtype=np.float32)
        v = None if vectors is None else np.array(vectors, dtype=np.float32)
        return ListSet(keys, keys, x, y, [["a", "b", "c"][: y.shape[1]]] * len(keys), v)

    return gen, schema, lists


def test_judgment_prior_is_out_of_fold_and_never_sees_the_holdout():
    from brainrank.ranker.learning.judged import set_judged_features
    from brainrank.ranker.learning.splits import PRIOR_FOLDS, fold

    gen, schema, lists = _judged_lists()
    col = schema.index("judged_doc")

    # Two train queries in different folds, both judging "a"; "b" judged by one of them.
    keys = [f"q{i}" for i in range(50)]
    k1 = keys[0]
    k2 = next(k for k in keys if fold(k) != fold(k1))
    tr = lists([k1, k2], [[1, 2, 0], [2, 0, 0]])
    va = lists(["v"], [[0, 0, 1]])
    ho = lists(["h"], [[0, 0, 2]])  # the holdout's judgment of "c" must not count anywhere
    served, memory = set_judged_features(gen, schema, tr, va, ho)
    assert memory is None  # lists without query vectors: no query memory
    assert not tr.x[..., schema.index("judged_similar")].any()
    assert served == {"ha": 3.0, "hb": 2.0, "hc": 1.0}  # train + validation, not the holdout
    assert PRIOR_FOLDS > 1
    # Out of fold: each train list sees only the other query's labels.
    np.testing.assert_allclose(tr.x[0, :, col], np.log1p([2.0, 0.0, 0.0]))
    np.testing.assert_allclose(tr.x[1, :, col], np.log1p([1.0, 2.0, 0.0]))
    np.testing.assert_allclose(va.x[0, :, col], np.log1p([3.0, 2.0, 0.0]))  # train prior
    np.testing.assert_allclose(ho.x[0, :, col], np.log1p([3.0, 2.0, 1.0]))  # served prior


def test_query_memory_feature_is_out_of_fold_and_never_sees_the_holdout():
    from brainrank.ranker.learning.judged import set_judged_features
    from brainrank.ranker.learning.splits import fold

    gen, schema, lists = _judged_lists()
    col = schema.index("judged_similar")
    keys = [f"q{i}" for i in range(50)]
    k1 = keys[0]
    k2 = next(k for k in keys if fold(k) != fold(k1))
    k3 = next(k for k in keys if fold(k) == fold(k1) and k != k1)
    x_axis, y_axis = [1.0, 0.0], [0.0, 1.0]
    # k1 and k3 share a fold: k1's features may only come from k2, whatever the similarity.
    tr = lists([k1, k2, k3], [[1, 0, 0], [0, 2, 0], [0, 0, 3]], [x_axis, y_axis, x_axis])
    va = lists(["v"], [[0, 0, 1]], [x_axis])
    ho = lists(["h"], [[2, 0, 0]], [y_axis])  # the holdout's labels must not count anywhere
    also = lists([k1, k2, k3], [[0, 0, 0]] * 3, [y_axis, x_axis, y_axis])
    _, memory = set_judged_features(gen, schema, tr, va, ho, also)
    assert len(memory) == 4 and {"ha": 2.0} not in memory.labels  # train + validation only
    np.testing.assert_allclose(tr.x[0, :, col], np.log1p([0.0, 2.0, 0.0]), rtol=1e-6)
    # k2 (on the y axis) sees k1 and k3 (both on the x axis, equally far): half weight each.
    np.testing.assert_allclose(tr.x[1, :, col], np.log1p([0.5, 0.0, 1.5]), rtol=1e-5)
    # Validation sees all train queries; its nearest are k1 and k3 (identical), k2 far away.
    assert va.x[0, 0, col] > va.x[0, 1, col] and va.x[0, 2, col] > va.x[0, 1, col]
    # The holdout query (y axis) is nearest to k2: "b" dominates.
    assert ho.x[0, 1, col] > ho.x[0, 0, col] and ho.x[0, 1, col] > ho.x[0, 2, col]
    # The extra lists use their own vectors (k1 now on the y axis): still only k2's labels.
    np.testing.assert_allclose(also.x[0, :, col], np.log1p([0.0, 2.0, 0.0]), rtol=1e-6)


def test_query_memory_settings_reach_the_served_memory_and_its_features():
    from brainrank.ranker.learning.judged import set_judged_features

    gen, schema, lists = _judged_lists()
    col = schema.index("judged_similar")
    near, far = [1.0, 0.0], [0.6, 0.8]  # cosines 1.0 and 0.6 to the holdout query

    def holdout_feature(**settings):
        tr = lists(["q0", "q1"], [[3, 0, 0], [0, 3, 0]], [near, far])
        va = lists(["v"], [[0, 0, 0]], [[0.0, 1.0]])
        ho = lists(["h"], [[0, 0, 0]], [near])
        _, memory = set_judged_features(gen, schema, tr, va, ho, **settings)
        return memory, ho.x[0, :, col]

    memory, one = holdout_feature(memory_k=1)
    assert (memory.k, memory.temperature) == (1, 0.1)
    np.testing.assert_allclose(one, np.log1p([3.0, 0.0, 0.0]), rtol=1e-6)  # the nearest only
    # Three neighbours: "b" gets the far query's label at weight exp(-0.4 / t) / total.
    for t in (0.1, 1.0):
        w = np.exp(-0.4 / t)
        w_va = np.exp((0.0 - 1.0) / t)  # the validation query is orthogonal to the holdout's
        _, got = holdout_feature(memory_k=3, memory_temperature=t)
        np.testing.assert_allclose(
            got, np.log1p([3 / (1 + w + w_va), 3 * w / (1 + w + w_va), 0.0]), rtol=1e-5
        )


def test_learned_is_the_default_mode_once_a_champion_exists(trained_config):
    engine = SearchEngine(trained_config)
    res = engine.search("car parts for sale", k=5)
    assert res.mode == "learned" and len(res.hits) == 5
    assert len({h.doc_id for h in res.hits}) == 5
    assert res.in_domain in (True, False)


def test_learned_scores_reload_identically(trained_config):
    engine = SearchEngine(trained_config)
    mv = registry(trained_config).champion()
    cand = engine.candidates("laptop won't turn on", "hybrid")
    a, b = LearnedModel.load(mv), LearnedModel.load(mv)
    sa = a.score(a.extractor(engine.generation), "laptop won't turn on", cand).scores
    sb = b.score(b.extractor(engine.generation), "laptop won't turn on", cand).scores
    np.testing.assert_array_equal(sa, sb)


def test_model_refuses_an_index_from_another_encoder(trained_config, tmp_path):
    mv = registry(trained_config).champion()
    copy = tmp_path / "v"
    shutil.copytree(mv.path, copy)
    meta = dict(mv.meta, encoder=dict(mv.meta["encoder"], fingerprint="sha256:0000000000000000"))
    from brainrank.ranker.registry.version import ModelVersion

    other = ModelVersion("v9999", copy, meta)
    with pytest.raises(IndexMismatchError, match="re-embed"):
        LearnedModel.load(other).check_generation(SearchEngine(trained_config).generation)


def test_model_with_a_different_feature_schema_is_refused(trained_config, tmp_path):
    mv = registry(trained_config).champion()
    meta = json.loads(json.dumps(mv.meta))
    meta["feature_schema"]["names"] = meta["feature_schema"]["names"][:-1]
    from brainrank.ranker.registry.version import ModelVersion

    with pytest.raises(IndexMismatchError, match="features"):
        LearnedModel.load(ModelVersion("v9999", mv.path, meta))


def test_promote_rollback_and_export_import(trained_config, tmp_path, encoder, sample_docs):
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.learning.train import TrainOptions, train
    from brainrank.ranker.registry.promotion import promote, rollback

    first = registry(trained_config).champion().version
    result = train(
        trained_config,
        read_queries(DATA / "queries.jsonl"),
        read_qrels(DATA / "qrels-train.txt"),
        options=TrainOptions(promote=False, seed=1, max_epochs=5),
    )
    assert not result.promoted and registry(trained_config).champion().version == first
    promote(trained_config, result.version)
    assert registry(trained_config).champion().version == result.version
    assert rollback(trained_config).version == first
    assert registry(trained_config).champion().version == first

    archive = registry(trained_config).export(first, tmp_path / "model.tar.gz")
    other = make_config(tmp_path / "other")
    ingest(other, encoder, sample_docs[:60])
    imported = registry(other).import_archive(archive)
    promote(other, imported.version)
    res = SearchEngine(other).search("gift card balance", k=3)
    assert res.mode == "learned" and len(res.hits) == 3


KILL_TRAINING = """
import sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
import brainrank.ranker.learning.tfr_model as tm
from brainrank.ranker.config import load_config
from brainrank.ranker.evaluation import read_qrels, read_queries
from brainrank.ranker.learning.train import TrainOptions, train

def stalled_fit(self, *args, **kwargs):
    Path({flag!r}).write_text("training")
    time.sleep(600)

tm.ListwiseRanker.fit = stalled_fit
cfg = load_config(workspace={ws!r}, env={{}})
train(cfg, read_queries({queries!r}), read_qrels({qrels!r}), options=TrainOptions())
"""


def test_sigkill_during_training_leaves_the_champion_serving(trained_config, tmp_path):
    before = [v.version for v in registry(trained_config).versions()]
    champion = registry(trained_config).champion().version
    flag = tmp_path / "flag"
    script = KILL_TRAINING.format(
        repo=str(REPO),
        flag=str(flag),
        ws=str(trained_config.workspace),
        queries=str(DATA / "queries.jsonl"),
        qrels=str(DATA / "qrels-train.txt"),
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    deadline = time.time() + 300
    while not flag.exists():
        assert proc.poll() is None, "training died before reaching the fit"
        assert time.time() < deadline, "training never reached the fit"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reg = registry(trained_config)
    assert [v.version for v in reg.versions()] == before
    assert reg.champion().version == champion
    res = SearchEngine(trained_config).search("money back", k=3)
    assert res.mode == "learned" and res.hits
    tmp = reg.begin()  # the next writer clears the dead draft
    reg.abort(tmp)
    assert not [p for p in reg.staging_dir.iterdir() if p.is_dir()]


def test_encoder_finetuning_stages_an_index_and_fits_the_ranker_on_unseen_lists(
    tmp_path, encoder, sample_docs
):
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.learning.train import TrainOptions, train

    cfg = make_config(tmp_path / "ws")
    ingest(cfg, encoder, sample_docs)
    before = SearchEngine(cfg, encoder=encoder).generation.vectors.encoder.fingerprint
    # 12 of the judged queries: fine-tuning steps cost seconds each on 2 cores, and what is
    # checked here is the staging, not how much the encoder learns.
    qrels = read_qrels(DATA / "qrels-train.txt")
    qrels = {q: qrels[q] for q in sorted(qrels)[:12]}
    result = train(
        cfg,
        read_queries(DATA / "queries.jsonl"),
        qrels,
        options=TrainOptions(finetune_encoder=True, max_epochs=5, promote=False),
    )
    summary = result.summary
    assert summary["encoder_finetune"]["steps"] >= 1
    # The encoder saw the train queries, so the ranker fits on their lists from the old index.
    assert summary["ranker_fit_lists"] == "index before fine-tuning"
    # The fine-tuned encoder has seen the train queries: the base fusion's share is chosen on
    # the validation queries only.
    assert summary["fusion"]["chosen_on"] == "validation queries"
    # ... which, with this few judged queries, is said (they would be cross-validated).
    assert any("validation queries alone" in w for w in summary["warnings"])
    mv = registry(cfg).get(result.version)
    assert mv.meta["encoder"]["bundled"] and (mv.path / "encoder" / "model.safetensors").exists()
    assert mv.meta["encoder"]["fingerprint"] != before
    staged = SearchEngine(cfg, generation=mv.meta["staged_generation"])
    assert staged.generation.vectors.encoder.fingerprint == mv.meta["encoder"]["fingerprint"]
    assert SearchEngine(cfg).generation.vectors.encoder.fingerprint == before  # not promoted
    hits = staged.search("car parts for sale", k=5, mode="learned", model=result.version).hits
    assert len({h.doc_id for h in hits}) == 5


def test_encoder_warning_only_where_the_epochs_would_be_cross_validated():
    from brainrank.ranker.learning.epochs import CV_MAX_QUERIES
    from brainrank.ranker.learning.train import TrainOptions, _encoder_warnings

    few = CV_MAX_QUERIES // 2
    (warning,) = _encoder_warnings(TrainOptions(finetune_encoder=True), few, 12)
    assert f"with {few} judged training queries" in warning and "on the 12 validation" in warning
    assert _encoder_warnings(TrainOptions(finetune_encoder=True), CV_MAX_QUERIES + 1, 40) == []
    assert (
        _encoder_warnings(TrainOptions(finetune_encoder=True, early_stopping="split"), few, 12)
        == []
    )
    assert _encoder_warnings(TrainOptions(), few, 12) == []
    # Forcing cross-validation asks for it at any size.
    forced = TrainOptions(finetune_encoder=True, early_stopping="cv")
    assert len(_encoder_warnings(forced, CV_MAX_QUERIES + 1, 40)) == 1
