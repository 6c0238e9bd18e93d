"""Learned-relevance benchmark: train on a collection's train judgments, evaluate on its test
judgments next to the fixed modes, then check how the model transfers to other collections.

    .venv/bin/python bench/bench_learned.py --collection scifact [--encoder] [--clicks FILE]
        [--transfer nfcorpus-preprocessed,sample] [--scorer dnn|gam] [--ensemble N]

Workspaces live in bench/.work/<name> (reused; `bench_retrieval.py` builds the same ones).
"sample" means the bundled data/ collection (test judgments data/qrels-test.txt).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

from common import REPO, dataset_dir, machine, print_table

FIXED = ["bm25", "dense", "hybrid-rrf", "hybrid-minmax"]


def collection_files(name: str, datasets: Path | None, split: str):
    if name == "sample":
        data = REPO / "data"
        qrels = data / ("qrels-train.txt" if split == "train" else "qrels-test.txt")
        return data / "docs.jsonl", data / "queries.jsonl", qrels
    path = dataset_dir(datasets, name)
    return path, path / "queries.jsonl", path / "qrels" / f"{split}.tsv"


def workspace(name: str, datasets: Path | None):
    """Config for bench/.work/<name>, ingesting the collection when needed."""
    from brainrank.index.readers import read_documents
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.loading import encoder_path_for, load_encoder, serving_manifest
    from brainrank.ranker.retrieval.indexing import update_indexes

    cfg = load_config(workspace=REPO / "bench" / ".work" / name, env={})
    corpus, _, _ = collection_files(name, datasets, "test")
    ws = Workspace(cfg.workspace)
    path = encoder_path_for(cfg, serving_manifest(ws))
    rep = update_indexes(
        ws,
        cfg,
        documents=read_documents(corpus).documents,
        encoder_factory=lambda: load_encoder(path, cfg.encoder.max_length),
        encoder_path=path,
    )
    return cfg, rep


def evaluate_modes(cfg, name, datasets, model=None, modes=FIXED):
    """Fixed modes on the serving index; the learned model (and, when it brings its own
    fine-tuned encoder, the dense and hybrid modes too) on the index embedded by its encoder."""
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.evaluation import evaluate, read_qrels, read_queries
    from brainrank.ranker.registry.promotion import ensure_generation
    from brainrank.ranker.registry.registry import Registry
    from brainrank.ranker.retrieval.search import SearchEngine

    _, queries, qrels = collection_files(name, datasets, "test")
    q, j = read_queries(queries), read_qrels(qrels)
    engine = SearchEngine(cfg)
    results = evaluate(engine, q, j, list(modes))
    if model is not None:
        mv = Registry(Workspace(cfg.workspace).models_dir).get(model)
        number = ensure_generation(cfg, mv)
        own = SearchEngine(cfg, generation=number)
        if number != engine.generation.manifest["generation"]:
            tuned = evaluate(own, q, j, ["dense", "hybrid-minmax"])
            results.update({f"{m} (fine-tuned encoder)": r for m, r in tuned.items()})
        results[f"learned ({model})"] = evaluate(own, q, j, ["learned"], model=model)["learned"]
    return results


def rows(results):
    return [
        [
            m,
            r["nDCG@10"],
            r["RR@10"],
            r["R@100"],
            r["AP"],
            r["latency_ms"]["p50"],
            r["latency_ms"]["p99"],
        ]
        for m, r in results.items()
    ]


HEADER = ["mode", "nDCG@10", "RR@10", "R@100", "AP", "p50 ms", "p99 ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--collection", default="scifact")
    ap.add_argument("--datasets", type=Path, default=None)
    ap.add_argument("--encoder", action="store_true", help="also fine-tune the encoder")
    ap.add_argument("--clicks", type=Path, default=None)
    ap.add_argument("--scorer", default="dnn")
    ap.add_argument(
        "--ensemble", type=int, default=None, help="DNN rankers averaged (default: as train's)"
    )
    ap.add_argument("--transfer", default="", help="comma-separated target collections")
    ap.add_argument(
        "--train-qrels",
        type=Path,
        default=None,
        help="train judgments to use instead of the collection's qrels/train.tsv "
        "(e.g. NFCorpus's graded raw/nfcorpus_original_train.2-1-0.qrel)",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.learning.train import TrainOptions, train
    from brainrank.ranker.registry.registry import Registry

    print(f"machine: {machine()}; date: {date.today()}")
    cfg, _ = workspace(args.collection, args.datasets)
    _, queries, qrels = collection_files(args.collection, args.datasets, "train")
    qrels = args.train_qrels or qrels
    t = time.perf_counter()
    result = train(
        cfg,
        read_queries(queries),
        read_qrels(qrels),
        clicks_path=args.clicks,
        options=TrainOptions(
            finetune_encoder=args.encoder, scorer=args.scorer, ensemble=args.ensemble
        ),
    )
    train_s = time.perf_counter() - t
    s = result.summary
    ft = s.get("encoder_finetune", {})
    print_table(
        f"Training on {args.collection} train ({s['train_queries']} train / {s['val_queries']} "
        f"validation / {s['holdout_queries']} holdout queries)",
        [
            "model",
            "total s",
            "features s",
            "ranker s",
            "epochs",
            "encoder fine-tune s",
            "re-embed s",
            "promoted",
        ],
        [
            [
                result.version,
                train_s,
                s["feature_seconds"],
                s["ranker_seconds"],
                s["ranker"].get("epochs", "?"),
                ft.get("seconds", "-"),
                ft.get("reembed_seconds", "-"),
                result.promoted,
            ]
        ],
    )
    results = evaluate_modes(cfg, args.collection, args.datasets, model=result.version)
    print_table(f"{args.collection} test: fixed modes and the learned model", HEADER, rows(results))
    out = {"train": {"seconds": train_s, **s}, args.collection: results}

    if args.transfer:
        archive = REPO / "bench" / ".work" / f"{args.collection}-{result.version}.tar.gz"
        Registry(Path(cfg.workspace) / "models").export(result.version, archive)
        for target in args.transfer.split(","):
            tcfg, _ = workspace(target, args.datasets)
            reg = Registry(Path(tcfg.workspace) / "models")
            mv = reg.import_archive(archive)
            tres = evaluate_modes(tcfg, target, args.datasets, model=mv.version)
            print_table(
                f"Transfer: {args.collection} model on {target} test (no training there)",
                HEADER,
                rows(tres),
            )
            out[f"transfer:{target}"] = tres
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
