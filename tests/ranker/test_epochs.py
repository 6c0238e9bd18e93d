"""Early stopping by cross-validation: the epoch count is read from held-out folds, the final
ranker trains exactly that long on every judged training query, and the query gate's threshold
comes from every judged query's out-of-fold nearest training query."""

from __future__ import annotations

import numpy as np
import pytest

from brainrank.ranker.evaluation import read_qrels, read_queries
from brainrank.ranker.learning.epochs import (
    CROSS_VALIDATION,
    CV_MAX_QUERIES,
    SPLIT,
    cv_epochs,
    early_stopping_mode,
)
from brainrank.ranker.learning.features import FeatureExtractor, FeatureSchema
from brainrank.ranker.learning.gates import QueryGate
from brainrank.ranker.learning.lists import candidate_lists, label_items
from brainrank.ranker.learning.ranker_params import RankerParams
from brainrank.ranker.learning.tfr_model import ListwiseRanker
from brainrank.ranker.progress import Progress
from tests.conftest import DATA


def test_auto_cross_validates_few_queries_and_never_lists_from_another_index():
    assert early_stopping_mode("auto", 120, can_cross_validate=True) == CROSS_VALIDATION
    assert early_stopping_mode("auto", CV_MAX_QUERIES + 1, can_cross_validate=True) == SPLIT
    assert early_stopping_mode("cv", 5000, can_cross_validate=True) == CROSS_VALIDATION
    assert early_stopping_mode("split", 50, can_cross_validate=True) == SPLIT
    # Encoder fine-tuning fits on lists from the index before fine-tuning: not foldable.
    assert early_stopping_mode("cv", 50, can_cross_validate=False) == SPLIT
    with pytest.raises(ValueError, match="early_stopping must be one of"):
        early_stopping_mode("sometimes", 50, can_cross_validate=True)


@pytest.fixture(scope="module")
def lists(engine):
    queries = read_queries(DATA / "queries.jsonl")
    qrels = read_qrels(DATA / "qrels-train.txt")
    ids = sorted(q for q in qrels if q in queries)[:60]
    retrieval = engine.cfg.retrieval
    schema = FeatureSchema.create(dense_weight=retrieval.dense_weight, rrf_k=retrieval.rrf_k)
    extractor = FeatureExtractor(engine.generation, schema, None)
    items = label_items(ids, queries, qrels, {}, 0.5)
    return schema, candidate_lists(engine, extractor, items, Progress(), "lists"), set(ids)


def test_cv_epochs_reads_the_count_from_the_mean_held_out_curve(engine, lists):
    schema, ls, judged = lists
    before = ls.x.copy()
    params = RankerParams(residual_feature=schema.index("fused"), max_epochs=8, patience=3)
    choice = cv_epochs(
        engine.generation,
        schema,
        ls,
        judged,
        lambda: ListwiseRanker.create(len(schema.names), params),
        max_epochs=8,
        folds=3,
    )
    assert choice.folds == 3
    assert len(choice.curve) == 9  # epoch 0 (the untrained residual model) to 8
    assert choice.epochs == int(np.argmax(choice.curve))
    assert all(0.0 < v <= 1.0 for v in choice.curve)
    # Every judged query got a similarity to its nearest query in the other folds.
    assert len(choice.nearest) == len(judged)
    assert (choice.nearest < 1.0 + 1e-5).all() and (choice.nearest > 0).all()
    np.testing.assert_array_equal(ls.x, before)  # folds work on copies
    gate = QueryGate.calibrated(ls.vectors, choice.nearest)
    assert gate.threshold == pytest.approx(float(np.quantile(choice.nearest, 0.05)))
    assert choice.summary()["early_stopping"] == CROSS_VALIDATION


def test_a_fit_without_validation_trains_exactly_the_chosen_epochs(lists):
    schema, ls, _ = lists
    params = RankerParams(residual_feature=schema.index("fused"), max_epochs=4)
    ranker = ListwiseRanker.create(len(schema.names), params)
    start = [w.copy() for w in ranker.model.get_weights()]
    seen = []
    history = ranker.fit(ls.x, ls.y, None, None, on_epoch=lambda e, logs: seen.append(e))
    assert seen == [1, 2, 3, 4] and history["epochs"] == 4
    assert history["best_val_ndcg10"] is None
    after = ranker.model.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(start, after, strict=True))


def test_negative_grades_are_not_relevant_never_padding(engine):
    retrieval = engine.cfg.retrieval
    schema = FeatureSchema.create(dense_weight=retrieval.dense_weight, rrf_k=retrieval.rrf_k)
    extractor = FeatureExtractor(engine.generation, schema, None)
    cand = engine.candidates("refund", "hybrid")
    docs = [engine.generation.doc_ids[p] for p in cand.positions]
    grades = {docs[0]: -2.0, docs[1]: -1.0, docs[2]: 2.0}  # TREC's -2: junk
    got = candidate_lists(engine, extractor, [("q", "refund", grades)], Progress(), "lists")
    y = got.y[0, : len(docs)]
    assert y[:3].tolist() == [0.0, 0.0, 2.0] and (y >= 0).all()  # -1 is the padding label
