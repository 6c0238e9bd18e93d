"""Where the learned ranker's gain comes from: the judged features and honest training lists.

    .venv/bin/python bench/bench_ablation.py [--collection scifact] [--train-qrels FILE]
        [--fit-generation N] [--seeds 0,1,2] [--memory-sweep]

Runs on a workspace that ``bench_learned.py`` trained (bench/.work/<collection>). The judged
train queries are split exactly as ``brainrank train`` splits them (holdout, validation, train)
and their candidate lists built with the same features and out-of-fold judged features
(``ranker.learning.judged``); then a ranker is fit per variant and scored on the collection's test
judgments (nDCG@10, the ranker alone: no domain gates), mean over ``--seeds``:

- the min-max fusion the ranker corrects (no learning beyond the encoder);
- the ranker without the judged features (``judged_doc``, the judgment prior, and
  ``judged_similar``, the query memory: columns zeroed), with each alone, and with both;
- each fitted on the train queries' lists from the serving index and, when the serving index
  was embedded by an encoder fine-tuned here, from the index it started from
  (``--fit-generation``, default: the newest generation embedded by an encoder that no model
  of this workspace fine-tuned), which is what ``brainrank train --encoder`` does.

``--memory-sweep`` also refits the ranker (prior + memory, seed 0) for each query-memory
setting (neighbours k x softmax temperature) and prints validation and holdout nDCG@10: the
splits of the *train* judgments that chose the defaults in ``ranker/memory.py``. The test
judgments play no part in that table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
from common import REPO, dataset_dir, machine, print_table


def honest_generation(ws, serving: int) -> int | None:
    """The newest generation embedded by an encoder no model of this workspace fine-tuned."""
    import json

    for number in sorted(ws.generations(), reverse=True):
        if number == serving:
            continue
        manifest = json.loads((ws.generation_dir(number) / "manifest.json").read_text())
        path = manifest.get("encoder_path")  # None: the configured (pretrained) encoder
        if not path or not Path(path).is_relative_to(ws.models_dir):
            return number
    return None


def ranked(lists, scores) -> dict[str, list[str]]:
    """The run of per-slot scores over a list set (padding never ranked)."""
    from brainrank.ranker.learning.lists import rank_lists

    return rank_lists(np.where(lists.y >= 0, scores, -np.inf), lists)


def fit_and_score(schema, fit, va, seed: int, *score_sets):
    """Fit a ranker (as ``train`` does, without gates) and score each of ``score_sets``."""
    from brainrank.ranker.learning.ranker_params import RankerParams
    from brainrank.ranker.learning.tfr_model import ListwiseRanker

    params = RankerParams(residual_feature=schema.index("fused"), seed=seed, max_epochs=100)
    ranker = ListwiseRanker.create(len(schema.names), params)
    history = ranker.fit(fit[0], fit[1], va[0], va[1])
    scores = [np.asarray(ranker.score(x), dtype=np.float64) for x in score_sets]
    return history["best_epoch"], scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--collection", default="scifact")
    ap.add_argument("--datasets", type=Path, default=None)
    ap.add_argument("--train-qrels", type=Path, default=None)
    ap.add_argument("--fit-generation", type=int, default=None)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--memory-sweep", action="store_true")
    args = ap.parse_args()

    from brainrank.index.workspace import Workspace
    from brainrank.ranker.config import load_config
    from brainrank.ranker.evaluation import per_query, read_qrels, read_queries, score_run
    from brainrank.ranker.feedback.fields import normalise_query
    from brainrank.ranker.learning.features import FeatureExtractor, FeatureSchema
    from brainrank.ranker.learning.judged import (
        fill_judged_similar,
        fill_judgment_prior,
        set_judged_features,
    )
    from brainrank.ranker.learning.lists import candidate_lists, label_items
    from brainrank.ranker.learning.splits import query_split
    from brainrank.ranker.learning.train import TrainOptions, fine_tuned_here
    from brainrank.ranker.progress import Progress
    from brainrank.ranker.retrieval.search import SearchEngine

    print(f"machine: {machine()}; date: {date.today()}")
    data = dataset_dir(args.datasets, args.collection)
    cfg = load_config(workspace=REPO / "bench" / ".work" / args.collection, env={})
    ws = Workspace(cfg.workspace)
    engine = SearchEngine(cfg)
    serving = engine.generation.manifest["generation"]
    fit_gen = args.fit_generation
    if fit_gen is None and fine_tuned_here(ws, engine.generation):
        fit_gen = honest_generation(ws, serving)
    queries = read_queries(data / "queries.jsonl")
    qrels = read_qrels(args.train_qrels or data / "qrels" / "train.tsv")
    test = read_qrels(data / "qrels" / "test.tsv")
    options = TrainOptions()
    judged = [q for q in qrels if q in queries]
    train_ids, val_ids, holdout = query_split(
        judged, options.holdout_fraction, options.val_fraction, options.seed
    )
    schema = FeatureSchema.create(
        dense_weight=cfg.retrieval.dense_weight, rrf_k=cfg.retrieval.rrf_k
    )
    progress = Progress()

    def lists(eng, ids, judgments):
        ids = [q for q in ids if q in queries]
        items = label_items(ids, queries, judgments, {}, options.click_weight)
        extractor = FeatureExtractor(eng.generation, schema)
        return candidate_lists(eng, extractor, items, progress, "lists")

    t = time.perf_counter()
    tr, va, ho = (lists(engine, ids, qrels) for ids in (train_ids, val_ids, holdout))
    te = lists(engine, list(test), test)
    fits = {f"serving index (generation {serving})": tr}
    if fit_gen is not None:
        fits[f"index before fine-tuning (generation {fit_gen})"] = lists(
            SearchEngine(cfg, generation=fit_gen), train_ids, qrels
        )
    also = list(fits.values())[1] if len(fits) > 1 else None
    served, memory = set_judged_features(engine.generation, schema, tr, va, ho, also)
    # The test lists get the prior and memory the model serves with (train and validation).
    fill_judgment_prior(engine.generation, schema, te, lambda i: served)
    fill_judged_similar(engine.generation, schema, te, lambda i: (memory, None))
    columns = {name: schema.index(name) for name in ("judged_doc", "judged_similar")}
    variants = {
        "none": (),
        "prior": ("judged_doc",),
        "memory": ("judged_similar",),
        "prior + memory": ("judged_doc", "judged_similar"),
    }
    print(f"lists built in {time.perf_counter() - t:.0f}s")

    def ndcg(scores):
        return score_run(test, ranked(te, scores))["nDCG@10"]

    # Each test query's nearest remembered (train or validation) query, for the breakdown.
    nearest = (te.vectors @ memory.vectors.T).max(axis=1)
    per_variant: dict[str, dict[str, float]] = {}

    fused = schema.index("fused")
    per_variant["min-max fusion (no ranker)"] = per_query(test, ranked(te, te.x[..., fused]))
    rows = [["min-max fusion (no ranker)", "-", "-", ndcg(te.x[..., fused]), "-"]]
    seeds = [int(s) for s in args.seeds.split(",")]
    for fit_name, fit in fits.items():
        for variant, kept in variants.items():
            scores, epochs = [], []
            for seed in seeds:
                x_fit, x_val, x_test = fit.x.copy(), va.x.copy(), te.x.copy()
                for name, column in columns.items():
                    if name not in kept:
                        for x in (x_fit, x_val, x_test):
                            x[..., column] = 0.0
                epoch, (test_scores,) = fit_and_score(
                    schema, (x_fit, fit.y), (x_val, va.y), seed, x_test
                )
                scores.append(ndcg(test_scores))
                epochs.append(epoch)
                if seed == seeds[0]:
                    per_variant[f"ranker, {variant}"] = per_query(test, ranked(te, test_scores))
            rows.append(
                [
                    "ranker",
                    fit_name,
                    variant,
                    statistics.mean(scores),
                    " / ".join(f"{s:.4f} (epoch {e})" for s, e in zip(scores, epochs, strict=True)),
                ]
            )
    print_table(
        f"{args.collection} test nDCG@10 ({len(te.keys)} queries; ranker fitted on "
        f"{len(tr.keys)} train queries, early stopping on {len(va.keys)})",
        ["model", "ranker fitted on lists from", "judged features", "nDCG@10 (mean)", "per seed"],
        rows,
    )
    # Where the judged features help: test queries by their nearest remembered query's cosine
    # (the last fit above, first seed; a ranker fitted per variant).
    edges = np.quantile(nearest, [0, 1 / 3, 2 / 3, 1])
    bucket = np.clip(np.searchsorted(edges, nearest, side="right") - 1, 0, 2)
    table = []
    for b in range(3):
        keys = [k for k, g in zip(te.keys, bucket, strict=True) if g == b]
        table.append(
            [f"{edges[b]:.2f} - {edges[b + 1]:.2f}", len(keys)]
            + [statistics.mean(v[k] for k in keys) for v in per_variant.values()]
        )
    print_table(
        f"{args.collection} test nDCG@10 by the cosine of the nearest remembered query "
        f"(terciles; {list(fits)[-1]}, seed {seeds[0]})",
        ["nearest cosine", "queries", *per_variant],
        table,
    )
    remembered = {normalise_query(queries[k]) for k in tr.keys + va.keys}
    repeated = sum(normalise_query(queries[k]) in remembered for k in te.keys)
    print(f"\n{repeated} of {len(te.keys)} test queries repeat a remembered query's text")
    if args.memory_sweep:
        memory_sweep(args, engine, schema, fits, tr, va, ho, qrels, holdout)


def memory_sweep(args, engine, schema, fits, tr, va, ho, qrels, holdout) -> None:
    """Validation and holdout nDCG@10 of the ranker per query-memory setting (seed 0)."""
    from brainrank.ranker.evaluation import score_run
    from brainrank.ranker.learning.judged import set_judged_features
    from brainrank.ranker.learning.memory import DEFAULT_K, DEFAULT_TEMPERATURE

    fit_name, fit = list(fits.items())[-1]
    also = fit if fit is not tr else None
    val_qrels = {q: qrels[q] for q in va.keys}
    ho_qrels = {q: qrels[q] for q in holdout}

    rows = []
    for k in (10, 20, 50):
        for temperature in (0.02, 0.05, 0.1, 0.2):
            set_judged_features(
                engine.generation,
                schema,
                tr,
                va,
                ho,
                also,
                memory_k=k,
                memory_temperature=temperature,
            )
            epoch, (val_scores, ho_scores) = fit_and_score(
                schema, (fit.x, fit.y), (va.x, va.y), 0, va.x, ho.x
            )
            default = " (default)" if (k, temperature) == (DEFAULT_K, DEFAULT_TEMPERATURE) else ""
            rows.append(
                [
                    f"{k}{default}",
                    temperature,
                    score_run(val_qrels, ranked(va, val_scores))["nDCG@10"],
                    score_run(ho_qrels, ranked(ho, ho_scores))["nDCG@10"],
                    epoch,
                ]
            )
    print_table(
        f"{args.collection}: query-memory settings on the train judgments' splits "
        f"({len(va.keys)} validation, {len(ho.keys)} holdout queries; ranker fitted on "
        f"{fit_name}, prior + memory, seed 0)",
        ["k", "temperature", "validation nDCG@10", "holdout nDCG@10", "best epoch"],
        rows,
    )


if __name__ == "__main__":
    main()
