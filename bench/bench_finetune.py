"""Fine-tuning benchmark: adapt the encoder to a BEIR collection's train judgments, then score
dense retrieval (document = best passage) on the test judgments.

    .venv/bin/python bench/bench_finetune.py [--collection scifact] [--epochs 1]
        [--doc-max-length 256] [--limit-seconds S] [--two-tower] [--validate 0.2]

--validate F holds out a seeded fraction F of the TRAIN queries and reports on them instead of
the test split: hyperparameters are chosen that way, and the test split is scored only for the
final choice. Corpus embeddings are cached under bench/.work/finetune by encoder fingerprint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from common import REPO, dataset_dir, machine, print_table

CACHE = REPO / "bench" / ".work" / "finetune"


class Clock:
    """Wall and process CPU seconds of a block: CPU time is steadier when the host is busy."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ticker(label: str, total: int):
    """A progress callback that logs about every 10%."""
    state = {"done": 0, "next": 0.1, "t0": time.perf_counter()}

    def advance(n: int) -> None:
        state["done"] += n
        if state["done"] >= state["next"] * total or state["done"] == total:
            log(f"  {label}: {state['done']}/{total} ({time.perf_counter() - state['t0']:.0f} s)")
            state["next"] += 0.1

    return advance


def split_queries(qrels: dict, fraction: float, seed: int) -> tuple[dict, dict]:
    """Seeded split of judged queries into (fit, held-out)."""
    qids = sorted(qrels)
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(qids)[: round(fraction * len(qids))].tolist())
    return {q: qrels[q] for q in qids if q not in held}, {q: qrels[q] for q in qids if q in held}


def judged_pairs(qrels: dict, queries: dict, docs_by_id: dict) -> tuple[list, list]:
    """One (query text, doc full text) pair per positive judgment, and each pair's query id."""
    pairs, qids = [], []
    for qid in sorted(qrels):
        if qid not in queries:
            continue
        for did, grade in sorted(qrels[qid].items()):
            if grade > 0 and did in docs_by_id:
                pairs.append((queries[qid], docs_by_id[did].full_text))
                qids.append(qid)
    return pairs, qids


def dense_run(encoder, docs, queries: dict, qids: list[str], max_passages: int, overlap: int):
    """Exact dense retrieval, document score = max passage cosine; (run, embed Clock, vectors)."""
    clock = None
    key = f"{encoder.fingerprint.replace(':', '-')}-{encoder.max_length}-{max_passages}-{overlap}"
    cache = CACHE / f"{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            vectors, owner = z["vectors"], z["owner"]
        log(f"  corpus embeddings from cache {cache.name}")
    else:
        if encoder.tokenizer is not None:
            from brainrank.ranker.retrieval.passages import PassageSplitter

            splitter = PassageSplitter(
                encoder.tokenizer, encoder.max_length, overlap=overlap, max_passages=max_passages
            )
            passages = splitter.split(docs)
        else:
            passages = [[d.full_text] for d in docs]
        flat = [t for texts in passages for t in texts]
        owner = np.repeat(np.arange(len(docs)), [len(p) for p in passages])
        with Clock() as clock:
            vectors = encoder.encode(flat, batch_size=64, progress=ticker("embed", len(flat)))
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(cache, vectors=vectors, owner=owner)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    qvec = encoder.encode([queries[q] for q in qids])
    run = {}
    for i in range(0, len(qids), 256):
        doc_scores = np.maximum.reduceat(qvec[i : i + 256] @ vectors.T, starts, axis=1)
        for qid, row in zip(qids[i : i + 256], doc_scores, strict=True):
            top = np.argsort(-row, kind="stable")[:100]
            run[qid] = [docs[p].doc_id for p in top]
    return run, clock, len(vectors)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--collection", default="scifact")
    ap.add_argument("--datasets", type=Path, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--doc-max-length", type=int, default=None)
    ap.add_argument("--limit-seconds", type=float, default=None, help="fine-tuning time budget")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--hard-negatives", type=int, default=None)
    ap.add_argument("--skip-top", type=int, default=3, help="unjudged BM25 top hits never mined")
    ap.add_argument("--depth", type=int, default=30, help="BM25 depth mined for negatives")
    ap.add_argument("--two-tower", action="store_true", help="train the from-scratch fallback")
    ap.add_argument("--tt-epochs", type=int, default=None)
    ap.add_argument("--validate", type=float, default=None, metavar="F")
    ap.add_argument("--max-passages", type=int, default=None, help="for evaluation (config: 4)")
    ap.add_argument("--baseline", action="store_true", help="also score the pretrained encoder")
    ap.add_argument("--save", type=Path, default=None, help="write the trained encoder here")
    ap.add_argument("--json", type=Path, default=None, help="also write results here")
    args = ap.parse_args()

    import dataclasses

    from brainrank.index.bm25 import BM25Index
    from brainrank.index.readers import read_documents
    from brainrank.ranker.config import load_config
    from brainrank.ranker.evaluation import read_qrels, read_queries, score_run

    cfg = load_config(env={})
    data = dataset_dir(args.datasets, args.collection)
    docs = read_documents(data).documents
    docs_by_id = {d.doc_id: d for d in docs}
    queries = read_queries(data / "queries.jsonl")
    train = read_qrels(data / "qrels" / "train.tsv")
    if args.validate:
        fit, held = split_queries(train, args.validate, seed=0)
        split_name = f"train-heldout ({args.validate:.0%} of train queries)"
    else:
        fit, held = train, read_qrels(data / "qrels" / "test.tsv")
        split_name = "test"
    eval_qids = sorted(q for q in held if q in queries)
    held = {q: held[q] for q in eval_qids}
    pairs, pair_qids = judged_pairs(fit, queries, docs_by_id)
    max_passages = args.max_passages or cfg.encoder.max_passages
    overlap = cfg.encoder.passage_overlap
    log(f"{len(docs)} docs, {len(pairs)} training pairs, {len(eval_qids)} {split_name} queries")

    rows = []
    load_before = os.getloadavg()[0]
    if args.two_tower:
        from brainrank.ranker.encoding.two_tower import TwoTowerParams, train_two_tower

        tt = TwoTowerParams()
        if args.tt_epochs:
            tt = dataclasses.replace(tt, epochs=args.tt_epochs)
        with Clock() as train_clock:
            enc, summary = train_two_tower(docs, pairs, tt)
        log(f"two-tower: {summary}")
        run, embed, n_vec = dense_run(enc, docs, queries, eval_qids, max_passages, overlap)
        rows.append(["two-tower (from scratch)", train_clock, embed, n_vec, score_run(held, run)])
    else:
        from brainrank.ranker.encoding.encoder import TextEncoder
        from brainrank.ranker.encoding.finetune import (
            FinetuneParams,
            finetune_encoder,
            mine_bm25_negatives,
        )

        encoder = TextEncoder.load(cfg.encoder.resolved_path(), max_length=cfg.encoder.max_length)
        if args.baseline:
            run, embed, n_vec = dense_run(encoder, docs, queries, eval_qids, max_passages, overlap)
            rows.append(["pretrained", None, embed, n_vec, score_run(held, run)])
            log(f"pretrained: {rows[-1][-1]}")

        changes = {
            "epochs": args.epochs,
            "doc_max_length": args.doc_max_length,
            "max_seconds": args.limit_seconds,
            "learning_rate": args.lr,
            "batch_size": args.batch_size,
            "hard_negatives": args.hard_negatives,
        }
        params = dataclasses.replace(
            FinetuneParams(), **{k: v for k, v in changes.items() if v is not None}
        )
        with Clock() as train_clock:
            texts = [d.full_text for d in docs]
            bm25 = BM25Index.build(texts, cfg.bm25)
            position = {d.doc_id: i for i, d in enumerate(docs)}
            judged = {
                qid: {position[d] for d, g in rels.items() if g > 0 and d in position}
                for qid, rels in fit.items()
            }
            mined = mine_bm25_negatives(
                bm25.scores,
                texts,
                [p[0] for p in pairs],
                [judged[q] for q in pair_qids],
                k=params.hard_negatives,
                depth=args.depth,
                seed=params.seed,
                skip_top=args.skip_top,
            )
            negatives = [[texts[i] for i in row] for row in mined]
            log(f"mined negatives; fine-tuning with {params}")
            summary = finetune_encoder(
                encoder,
                pairs,
                negatives,
                params,
                progress=ticker("fine-tune", len(pairs) * params.epochs),
            )
        log(f"fine-tune: {summary}")
        if args.save:
            encoder.save(args.save)
        run, embed, n_vec = dense_run(encoder, docs, queries, eval_qids, max_passages, overlap)
        label = (
            f"fine-tuned (ep {params.epochs}, lr {params.learning_rate:g}, bs {params.batch_size}, "
            f"hn {params.hard_negatives}, doc {params.doc_max_length}, {summary['steps']}"
            f"/{summary['planned_steps']} steps)"
        )
        rows.append([label, train_clock, embed, n_vec, score_run(held, run)])

    print(f"machine: {machine()}; date: {date.today()}")
    print(f"load average (1 min) before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f}")
    print_table(
        f"Dense retrieval after fine-tuning: {args.collection}, {split_name}, "
        f"{len(eval_qids)} queries, {len(pairs)} training pairs, max {max_passages} passages/doc",
        [
            "encoder",
            "train s (cpu s)",
            "re-embed s (cpu s)",
            "vectors",
            "nDCG@10",
            "R@100",
            "RR@10",
        ],
        [
            [name, _secs(tr), _secs(emb), n, m["nDCG@10"], m["R@100"], m["RR@10"]]
            for name, tr, emb, n, m in rows
        ],
    )
    if args.json:
        out = [
            {
                "encoder": name,
                "train_s": tr and tr.wall,
                "train_cpu_s": tr and tr.cpu,
                "embed_s": emb and emb.wall,
                "embed_cpu_s": emb and emb.cpu,
                "vectors": n,
                "metrics": m,
            }
            for name, tr, emb, n, m in rows
        ]
        args.json.write_text(json.dumps(out, indent=2))


def _secs(clock) -> str:
    return "-" if clock is None else f"{clock.wall:.0f} ({clock.cpu:.0f})"


if __name__ == "__main__":
    main()
