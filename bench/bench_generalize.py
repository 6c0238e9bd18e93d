"""Does the learned ranker generalize? New queries, few judgments, other collections.

    .venv/bin/python bench/bench_generalize.py [--rows few,terciles,adapt,all] [--seeds 0,1,2]
        [--collections scifact,nfcorpus-preprocessed,sample] [--few 150]
        [--early-stopping split,cv] [--adapt-rates 2e-5,5e-5] [--adapt-pairs 2000]
        [--adapt-variants terms,title-cloze,no-negatives,terms-no-negatives,terms-wise]
        [--train-variants default,fixed-fusion,gam,approx-ndcg,...]

Every learned figure comes from ``brainrank train`` as a user runs it (``train()``: candidate
lists, judged features, early stopping, gates on, no promotion), scored on the collection's
*test* judgments, mean over ``--seeds`` (the seed moves the train/validation/holdout split and
the ranker's initialisation). Each row stands beside BM25 and the best fixed fusion (the better
of hybrid-rrf and hybrid-minmax on the same test queries, which flatters the fusion).

- ``few``: a fixed, seeded sample of ``--few`` judged training queries (seed 12345, the same for
  every setting), once per early-stopping setting (``--early-stopping``: the validation split,
  or epochs chosen by 5-fold cross-validation, ``ranker.learning.epochs``).
- ``terciles``: a model trained on all training judgments; SciFact's test queries split into
  thirds by the cosine of their nearest training query (the pretrained encoder's query
  vectors), each third against the fusion on the same queries. Each seed's line also prints
  the train-side counterparts a recipe is chosen on: learned minus the best fixed mode on
  training's own holdout (train judgments), and learned minus the best fusion on the third of
  that holdout farthest from the queries the model trained on.

- ``all``: a model trained on all of the collection's training judgments (``sample``: the
  bundled collection with its click log, as ``make demo`` trains), against *every* fixed mode
  (bm25, dense, hybrid, hybrid-rrf, hybrid-minmax) on the test queries; on the sample it also
  prints each seed's first result for the Makefile's demo queries.
- ``--train-variants`` compares training recipes in the same run: ``default``, and the base
  fusion at ``[retrieval] dense_weight`` instead of the share chosen on the training lists
  (``fixed-fusion``, the recipe before 2026-12-03 afternoon); a never-shown document's click
  features at the neutral 1.0 rather than its peers' (``v3-clicks``, the recipe before
  2026-12-03 evening).

- ``adapt``: ``brainrank adapt`` alone, no judgments. The collection is ingested into a fresh
  workspace bench/.work/<collection>-adapt/base (bulk encoder, as ``brainrank ingest``), copied
  once per learning rate (``--adapt-rates``) and pair recipe (``--adapt-variants``: title and
  cloze pairs with one BM25 hard negative each, without hard negatives, with half the pairs
  salient terms -> document, and ``terms-wise``: the default, then averaged half and half with
  the pretrained weights) and adapted there (``--adapt-pairs`` mined pairs, seed 0); dense,
  hybrid (the configured fusion), hybrid-rrf and hybrid-minmax before and after, on the *train*
  judgments (to choose the rate) and the test judgments (the figure). One seed: each run embeds
  the collection again.

Workspaces are bench/.work/<collection> (``bench_learned.py`` builds the same ones); models
trained here are registered there as challengers and never promoted.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from datetime import date

import numpy as np
from bench_learned import collection_files, workspace
from common import REPO, machine, print_table

FUSIONS = ("hybrid-rrf", "hybrid-minmax")
FEW_SEED = 12345


def judged(name, datasets, split):
    from brainrank.ranker.evaluation import read_qrels, read_queries

    _, queries, qrels = collection_files(name, datasets, split)
    q, j = read_queries(queries), read_qrels(qrels)
    return q, {k: v for k, v in j.items() if k in q}


def per_query_modes(cfg, queries, qrels, modes, model=None):
    """{mode: {query: nDCG@10}} on ``qrels``' queries; with ``model``, on the index embedded
    by its encoder (a staged generation when it brings a fine-tuned one)."""
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.evaluation import per_query
    from brainrank.ranker.registry.promotion import ensure_generation
    from brainrank.ranker.registry.registry import Registry
    from brainrank.ranker.retrieval.search import SearchEngine

    generation = None
    if model is not None:
        mv = Registry(Workspace(cfg.workspace).models_dir).get(model)
        generation = ensure_generation(cfg, mv)
    engine = SearchEngine(cfg, generation=generation)
    out = {}
    for mode in modes:
        run = {
            q: [h.doc_id for h in engine.search(queries[q], k=100, mode=mode, model=model).hits]
            for q in qrels
        }
        out[mode] = per_query(qrels, run)
    return out


# --train-variants: TrainOptions fields of each training recipe compared.
TRAIN_VARIANTS = {
    "default": {},
    "fixed-fusion": {"tune_fusion": False},  # the base fusion at [retrieval] dense_weight
    # A never-shown document's click features at the neutral 1.0 (feature schema v3), the
    # recipe before 2026-12-03 evening.
    "v3-clicks": {"click_peers": False},
    # A smaller, more regularised DNN correction (issue #15 item 3: few judgments).
    "small": {"hidden": (16,), "l2": 1e-3},
    "dropout": {"dropout": 0.3},
    # One ranker instead of the default seed ensemble of 5 (the recipe before 2026-12-03 night).
    "single": {"ensemble": 1},
    # The encoder fine-tuned on the training queries too (`train --encoder`; issue #15 item 3).
    "encoder": {"finetune_encoder": True},
    # Other scorers and losses for few judgments (issue #15 item 3).
    "gam": {"scorer": "gam"},
    "approx-ndcg": {"loss": "approx_ndcg"},
}
SAMPLE_CLICKS = REPO / "data" / "clicks.jsonl"


def demo_queries() -> list[str]:
    """The queries ``make demo`` searches, read from the Makefile so the two cannot drift."""
    text = (REPO / "Makefile").read_text()
    return re.findall(r'\$\(RUN\) search "([^"]+)"', text)


def first_results(cfg, model, queries) -> list[str]:
    """``id title`` of the learned model's first result for each query (on the index its own
    encoder embedded, as ``per_query_modes``)."""
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.registry.promotion import ensure_generation
    from brainrank.ranker.registry.registry import Registry
    from brainrank.ranker.retrieval.search import SearchEngine

    mv = Registry(Workspace(cfg.workspace).models_dir).get(model)
    engine = SearchEngine(cfg, generation=ensure_generation(cfg, mv))
    out = []
    for q in queries:
        result = engine.search(q, k=1, mode="learned", model=model)
        hit = result.hits[0]
        out.append(f"{hit.doc_id} {result.documents[hit.doc_id].title}")
    return out


def train_model(cfg, queries, qrels, *, seed, early_stopping, variant="default", clicks=None):
    from brainrank.ranker.learning.train import TrainOptions, train
    from brainrank.ranker.progress import Progress

    options = TrainOptions(
        promote=False, seed=seed, early_stopping=early_stopping, **TRAIN_VARIANTS[variant]
    )
    t = time.perf_counter()
    result = train(cfg, queries, qrels, clicks_path=clicks, options=options, progress=Progress())
    return result, time.perf_counter() - t


def all_rows(args, name):
    """Trained on all of the collection's train judgments (the sample with its click log, as
    ``make demo`` trains), against *every* fixed mode on the test queries (issue #14 item 7)."""
    cfg, _ = workspace(name, args.datasets)
    queries, train_qrels = judged(name, args.datasets, "train")
    test_queries, test_qrels = judged(name, args.datasets, "test")
    clicks = SAMPLE_CLICKS if name == "sample" else None
    fixed_modes = ("bm25", "dense", "hybrid", *FUSIONS)
    fixed = per_query_modes(cfg, test_queries, test_qrels, fixed_modes)
    best_mode = max(fixed_modes, key=lambda m: mean(fixed[m]))
    demo = demo_queries()
    rows = []
    for variant in args.train_variants:
        scores, epochs, holdout = [], [], []
        for seed in args.seeds:
            result, _ = train_model(
                cfg, queries, train_qrels, seed=seed, early_stopping="auto",
                variant=variant, clicks=clicks,
            )  # fmt: skip
            holdout.append(holdout_gain(result.metrics))
            learned = per_query_modes(
                cfg, test_queries, test_qrels, ["learned"], model=result.version
            )["learned"]
            scores.append(mean(learned))
            epochs.append(result.summary.get("ranker", {}).get("best_epoch"))
            weight = result.summary.get("fusion", {}).get("dense_weight")
            print(
                f"{name} all {variant} seed {seed}: {scores[-1]:.4f} (dense share {weight}; "
                f"holdout: learned - best fixed {holdout[-1]:+.4f})",
                flush=True,
            )
            if name == "sample":
                for q, first in zip(demo, first_results(cfg, result.version, demo), strict=True):
                    print(f"  demo query {q!r}: first {first}", flush=True)
        m = statistics.mean(scores)
        best = mean(fixed[best_mode])
        rows.append(
            [
                f"{name}, all train queries, {variant}",
                f"{mean(fixed['bm25']):.4f}",
                f"{best_mode} {best:.4f}",
                f"{m:.4f} ({', '.join(f'{s:.3f}' for s in scores)})",
                f"{m - best:+.4f} (seed {args.seeds[0]}: {scores[0] - best:+.4f})",
                "/".join(str(e) for e in epochs),
                f"{statistics.mean(holdout):+.4f}",
            ]
        )
    return rows


def far_holdout_gain(cfg, encode, queries, train_qrels, version) -> float:
    """Learned minus the best fixed fusion on the third of training's own holdout queries
    farthest from the queries the model trained on (train judgments): the train-side
    counterpart of the farthest test third."""
    import json

    from brainrank.index.workspace import Workspace
    from brainrank.ranker.registry.registry import Registry

    mv = Registry(Workspace(cfg.workspace).models_dir).get(version)
    held = json.loads((mv.path / "model.json").read_text())["holdout_queries"]
    seen = [q for q in train_qrels if q not in set(held)]
    seen_vecs = np.asarray(encode([queries[q] for q in seen]), dtype=np.float32)
    held_vecs = np.asarray(encode([queries[q] for q in held]), dtype=np.float32)
    nearest = (held_vecs @ seen_vecs.T).max(axis=1)
    far = [held[i] for i in np.argsort(nearest)[: len(held) // 3]]
    far_qrels = {q: train_qrels[q] for q in far}
    got = per_query_modes(cfg, queries, far_qrels, ("learned", *FUSIONS), model=version)
    return mean(got["learned"]) - max(mean(got[m]) for m in FUSIONS)


def holdout_gain(metrics: dict) -> float:
    """Learned minus the best fixed mode in nDCG@10 on training's own holdout (train
    judgments): what a recipe is chosen on, where the test figures only report."""
    fixed = [v["nDCG@10"] for k, v in metrics.items() if k not in ("challenger", "champion")]
    return metrics["challenger"]["nDCG@10"] - max(fixed)


def mean(scores: dict[str, float], keys=None) -> float:
    keys = list(scores) if keys is None else keys
    return float(np.mean([scores[k] for k in keys])) if keys else float("nan")


def few_setting(args, name):
    """(cfg, train queries, the fixed sample of ``args.few`` judged ones, test queries, test
    qrels, BM25's and the best fixed fusion's test nDCG@10) of the ``few`` rows."""
    cfg, _ = workspace(name, args.datasets)
    queries, train_qrels = judged(name, args.datasets, "train")
    test_queries, test_qrels = judged(name, args.datasets, "test")
    sample = sorted(random.Random(FEW_SEED).sample(sorted(train_qrels), args.few))
    few = {q: train_qrels[q] for q in sample}
    fixed = per_query_modes(cfg, test_queries, test_qrels, ("bm25", *FUSIONS))
    fusion = max(mean(fixed[m]) for m in FUSIONS)
    return cfg, queries, few, test_queries, test_qrels, mean(fixed["bm25"]), fusion


def few_rows(args, name):
    cfg, queries, few, test_queries, test_qrels, bm25, fusion = few_setting(args, name)
    rows = []
    for stopping, variant in [(e, v) for e in args.early_stopping for v in args.train_variants]:
        scores, epochs, seconds, cv = [], [], [], []
        for seed in args.seeds:
            result, secs = train_model(
                cfg, queries, few, seed=seed, early_stopping=stopping, variant=variant
            )
            curve = result.summary.get("ranker", {}).get("curve")
            cv.append(max(curve) if curve else float("nan"))
            learned = per_query_modes(
                cfg, test_queries, test_qrels, ["learned"], model=result.version
            )["learned"]
            scores.append(mean(learned))
            ranker = result.summary.get("ranker", {})
            epochs.append(ranker.get("best_epoch"))
            seconds.append(secs)
            print(
                f"{name} few={args.few} {stopping} {variant} seed {seed}: {scores[-1]:.4f} "
                f"(cross-validated nDCG@10 on the train queries {cv[-1]:.4f})",
                flush=True,
            )
        m = statistics.mean(scores)
        rows.append(
            [
                f"{name}, {args.few} train queries, early stopping {stopping}, {variant}",
                f"{bm25:.4f}",
                f"{fusion:.4f}",
                f"{m:.4f} ({', '.join(f'{s:.3f}' for s in scores)})",
                f"{m - fusion:+.4f}",
                "/".join(str(e) for e in epochs) + f"; cv {statistics.mean(cv):.4f}",
                f"{statistics.mean(seconds):.0f}",
            ]
        )
    return rows


def tercile_rows(args, name):
    from brainrank.ranker.retrieval.search import SearchEngine

    cfg, _ = workspace(name, args.datasets)
    queries, train_qrels = judged(name, args.datasets, "train")
    test_queries, test_qrels = judged(name, args.datasets, "test")
    engine = SearchEngine(cfg)
    encode = engine.encoder.encode  # the pretrained encoder the workspace serves with
    train_vecs = np.asarray(encode([queries[q] for q in train_qrels]), dtype=np.float32)
    test_ids = sorted(test_qrels)
    test_vecs = np.asarray(encode([test_queries[q] for q in test_ids]), dtype=np.float32)
    nearest = (test_vecs @ train_vecs.T).max(axis=1)
    order = np.argsort(nearest)
    thirds = {
        "farthest": [test_ids[i] for i in order[: len(order) // 3]],
        "middle": [test_ids[i] for i in order[len(order) // 3 : 2 * len(order) // 3]],
        "nearest": [test_ids[i] for i in order[2 * len(order) // 3 :]],
    }
    fixed = per_query_modes(cfg, test_queries, test_qrels, ("bm25", *FUSIONS))
    rows = []
    for variant in args.train_variants:
        per_seed = []
        for seed in args.seeds:
            result, _ = train_model(
                cfg, queries, train_qrels, seed=seed, early_stopping="auto", variant=variant
            )
            per_seed.append(
                per_query_modes(cfg, test_queries, test_qrels, ["learned"], model=result.version)[
                    "learned"
                ]
            )
            far_gain = far_holdout_gain(cfg, encode, queries, train_qrels, result.version)
            print(
                f"{name} terciles {variant} seed {seed}: "
                + ", ".join(f"{t} {mean(per_seed[-1], ids):.4f}" for t, ids in thirds.items())
                + f"; holdout learned - best fixed {holdout_gain(result.metrics):+.4f}"
                + f", its farthest third {far_gain:+.4f}"
                + f"; epochs {result.summary.get('ranker', {}).get('best_epoch')}",
                flush=True,
            )
        for third, ids in thirds.items():
            fusion = max(mean(fixed[m], ids) for m in FUSIONS)
            learned = statistics.mean(mean(s, ids) for s in per_seed)
            rows.append(
                [
                    f"{name}, {third} third of test queries, {variant}",
                    f"{mean(fixed['bm25'], ids):.4f}",
                    f"{fusion:.4f}",
                    f"{learned:.4f}",
                    f"{learned - fusion:+.4f}",
                    "",
                    "",
                ]
            )
    return rows


ADAPT_MODES = ("dense", "hybrid", "hybrid-rrf", "hybrid-minmax")


def adapt_base(name, datasets):
    """A fresh workspace of the collection, embedded by the bulk encoder as ingest does."""
    from brainrank.index.readers import read_documents
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.bulk import load_bulk_encoder
    from brainrank.ranker.retrieval.indexing import update_indexes

    cfg = load_config(workspace=REPO / "bench" / ".work" / f"{name}-adapt" / "base", env={})
    corpus, _, _ = collection_files(name, datasets, "test")
    path = cfg.encoder.resolved_path()
    update_indexes(
        Workspace(cfg.workspace),
        cfg,
        documents=read_documents(corpus).documents,
        encoder_factory=lambda: load_bulk_encoder(path, cfg.encoder),
        encoder_path=path,
    )
    return cfg


def adapt_rows(args, name):
    import shutil

    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.adapt_pairs import PairParams
    from brainrank.ranker.learning.adapt import AdaptOptions, adapt
    from brainrank.ranker.progress import Progress

    base = adapt_base(name, args.datasets)
    splits = {split: judged(name, args.datasets, split) for split in ("train", "test")}

    def scores(cfg):
        return {
            split: {m: mean(v) for m, v in per_query_modes(cfg, q, j, ADAPT_MODES).items()}
            for split, (q, j) in splits.items()
        }

    before = scores(base)
    rows = [_adapt_row(name, "pretrained (before)", before, None)]
    for rate in args.adapt_rates:
        for variant in args.adapt_variants:
            pairs, fields = ADAPT_VARIANTS[variant]
            tag = f"lr{rate:g}-{variant}"
            folder = base.workspace.parent / tag
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(base.workspace, folder)
            cfg = load_config(workspace=folder, env={})
            # No time budget: on a loaded machine it would cut training short and move the
            # figure.
            options = AdaptOptions(
                pairs=PairParams(max_pairs=args.adapt_pairs, **pairs),
                learning_rate=rate,
                max_seconds=None,
                # Every variant names its interpolation: the adapted weights alone unless it
                # says otherwise, whatever AdaptOptions' default is.
                **{"hard_negatives": 0, "interpolation": 1.0, **fields},
            )
            t = time.perf_counter()
            result = adapt(cfg, options, progress=Progress())
            secs = time.perf_counter() - t
            after = scores(cfg)
            print(f"{name} adapt {tag}: {after} ({secs:.0f} s; {result.summary})", flush=True)
            rows.append(_adapt_row(name, f"adapt, lr {rate:g}, {variant}", after, before, secs))
    return rows


# --adapt-variants: (PairParams fields, other AdaptOptions fields).
ADAPT_VARIANTS = {
    "title-cloze": ({}, {"hard_negatives": 1}),  # the mix before salient terms
    "no-negatives": ({}, {}),  # in-batch negatives only
    "terms": ({"terms_share": 0.5}, {"hard_negatives": 1}),  # half the pairs salient terms
    "terms-no-negatives": ({"terms_share": 0.5}, {}),  # the default before 2026-12-04
    # The default: as above, then the adapted weights averaged with the pretrained ones.
    "terms-wise": ({"terms_share": 0.5}, {"interpolation": 0.5}),
}


def _adapt_row(name, label, got, before, secs=None):
    def cell(split, mode):
        value = got[split][mode]
        delta = "" if before is None else f" ({value - before[split][mode]:+.4f})"
        return f"{value:.4f}{delta}"

    return [
        f"{name}, {label}",
        *(cell("train", m) for m in ("dense", "hybrid")),
        *(cell("test", m) for m in ADAPT_MODES),
        "" if secs is None else f"{secs:.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None)
    parser.add_argument("--rows", default="few,terciles")
    parser.add_argument("--collections", default="scifact,nfcorpus-preprocessed")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--few", type=int, default=150)
    parser.add_argument("--early-stopping", default="split,cv")
    parser.add_argument("--adapt-rates", default="2e-5,5e-5")
    parser.add_argument("--adapt-pairs", type=int, default=2000)
    parser.add_argument(
        "--adapt-variants", default="terms-wise", help=f"of {','.join(ADAPT_VARIANTS)}"
    )
    parser.add_argument(
        "--train-variants", default="default", help=f"of {','.join(TRAIN_VARIANTS)}"
    )
    args = parser.parse_args()
    args.train_variants = args.train_variants.split(",")
    if set(args.train_variants) - set(TRAIN_VARIANTS):
        parser.error(f"unknown --train-variants; known: {list(TRAIN_VARIANTS)}")
    args.adapt_rates = [float(r) for r in args.adapt_rates.split(",")]
    args.adapt_variants = args.adapt_variants.split(",")
    unknown = set(args.adapt_variants) - set(ADAPT_VARIANTS)
    if unknown:
        parser.error(f"unknown --adapt-variants {sorted(unknown)}; known: {list(ADAPT_VARIANTS)}")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.early_stopping = args.early_stopping.split(",")
    wanted = args.rows.split(",")
    rows, adapted, every = [], [], []
    for name in args.collections.split(","):
        if "adapt" in wanted:
            adapted += adapt_rows(args, name)
        if "few" in wanted:
            rows += few_rows(args, name)
        if "all" in wanted:
            every += all_rows(args, name)
        if "terciles" in wanted and name == "scifact":
            rows += tercile_rows(args, name)
    print(f"\nMachine: {machine()}; {date.today()}; seeds {args.seeds}")
    if adapted:
        print_table(
            "brainrank adapt, no judgments (nDCG@10; change from the pretrained encoder)",
            ["setting", "train dense", "train hybrid", *(f"test {m}" for m in ADAPT_MODES), "s"],
            adapted,
        )
    if every:
        print_table(
            "Learned ranker trained on all train judgments (nDCG@10 on test, mean over seeds)",
            [
                "setting",
                "bm25",
                "best fixed mode",
                "learned",
                "learned - best fixed",
                "epochs",
                "holdout (train split): learned - best fixed",
            ],  # fmt: skip
            every,
        )
    if not rows:
        return
    print_table(
        "Learned ranker on test judgments (nDCG@10, mean over seeds)",
        ["setting", "bm25", "best fixed fusion", "learned", "learned - fusion", "epochs", "s"],
        rows,
    )


if __name__ == "__main__":
    main()
