"""What a small ingest costs on a workspace of all of SciFact: add 1,000, add 10, delete 10.

    .venv/bin/python bench/bench_incremental.py [--base DIR] [--datasets DIR]
        [--kinds flat,hnsw] [--repeats 1]

The base workspace (SciFact's 5,183 documents; embedding them is the slow part, done once and
kept in --base, default bench/.work/incremental/base) is copied for every scenario, so each
one starts from the same collection. Before measuring, a copy of the base is brought to the
running code's index format and vector index kind by an ingest that changes one document's
numeric fields only (it rebuilds every index and reuses every embedding), so the same script
measures the code before and after segments. The added documents are real text from another
collection: the first 1,010 documents of NFCorpus (ids prefixed ``nf-``). The deleted ones are
the first 10 SciFact documents.

The encoder is loaded once, outside the timings. Per scenario: documents embedded, embedding
seconds, index seconds (everything else: store, keyword indexes, vector index, merging,
writing and checking files) and the total, medians over --repeats; the segments the new
generation has and whether the merge policy merged ("all": everything into one segment,
without embedding or tokenizing again). Adding 1,000 documents to SciFact passes the default
[segments] merge_fraction (10% of the main segment), so it is also run with merging off;
``--kinds`` repeats the scenarios with the vector index forced to that kind (``flat`` is what
SciFact's size gets by default; ``hnsw`` shows what an approximate index costs). Run on a
quiet machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import time
from datetime import date
from pathlib import Path

from common import REPO, dataset_dir, machine, print_table

SCENARIOS = ("add 1,000", "add 1,000, no merge", "add 10", "delete 10")


def nfcorpus_documents(datasets: Path | None, n: int):
    from brainrank.index.records import Document

    docs = []
    with (dataset_dir(datasets, "nfcorpus-preprocessed") / "corpus.jsonl").open() as fh:
        for line in fh:
            d = json.loads(line)
            docs.append(Document(f"nf-{d['_id']}", d.get("title", ""), d["text"]))
            if len(docs) == n:
                break
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", type=Path, default=REPO / "bench" / ".work" / "incremental" / "base")
    ap.add_argument("--datasets", type=Path, default=None)
    ap.add_argument("--kinds", default="flat", help="vector index kinds, comma-separated")
    ap.add_argument("--repeats", type=int, default=1, help="runs per scenario (median shown)")
    args = ap.parse_args()

    from brainrank.index.readers import read_documents
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.bulk import load_bulk_encoder
    from brainrank.ranker.retrieval import indexing
    from brainrank.ranker.retrieval.indexing import update_indexes

    scifact = dataset_dir(args.datasets, "scifact")
    base_cfg = load_config(workspace=args.base, env={})
    encoder = load_bulk_encoder(base_cfg.encoder.resolved_path(), base_cfg.encoder)

    def run(cfg, **change):
        ws = Workspace(cfg.workspace)
        return update_indexes(ws, cfg, encoder_factory=lambda: encoder, **change)

    if not Workspace(args.base).exists():
        t = time.perf_counter()
        rep = run(base_cfg, documents=read_documents(scifact).documents)
        took = time.perf_counter() - t
        print(f"base: {rep.documents} SciFact documents embedded and indexed in {took:.0f}s")
    added = nfcorpus_documents(args.datasets, 1010)
    deleted = [d.doc_id for d in read_documents(scifact).documents[:10]]
    changes = {
        "add 1,000": {"documents": added[:1000]},
        "add 1,000, no merge": {"documents": added[:1000]},
        "add 10": {"documents": added[1000:1010]},
        "delete 10": {"delete_ids": deleted},
    }
    work = args.base.parent / "runs"
    rows = []
    for kind in args.kinds.split(","):
        prepared = work / f"base-{kind}"
        shutil.rmtree(prepared, ignore_errors=True)
        shutil.copytree(args.base, prepared)
        cfg = load_config(workspace=prepared, env={})
        cfg = dataclasses.replace(cfg, vectors=dataclasses.replace(cfg.vectors, kind=kind))
        t = time.perf_counter()
        first = read_documents(scifact).documents[0]
        touched = dataclasses.replace(first, fields={"bench_prepared": 1.0})
        rep = run(cfg, documents=[touched])  # the base in this code's format and kind
        took = time.perf_counter() - t
        print(f"{kind}: base prepared (format {indexing.FORMAT}) in {took:.1f}s", flush=True)
        for name in SCENARIOS:
            scenario = cfg
            if name.endswith("no merge"):
                if not hasattr(cfg, "segments"):
                    continue  # the code before segments has no merge policy to turn off
                # 1,000 is past [segments] merge_fraction of SciFact: the default merges all.
                policy = dataclasses.replace(cfg.segments, merge_fraction=1.0)
                scenario = dataclasses.replace(cfg, segments=policy)
            runs = []
            for _ in range(args.repeats):
                target = work / "scenario"
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(prepared, target)
                rep = run(dataclasses.replace(scenario, workspace=target), **changes[name])
                runs.append(rep)
                print(f"{kind} {name}: embedded {rep.embedded}, {rep.seconds}", flush=True)
            seconds = [r.seconds for r in runs]
            emb = statistics.median(s.get("embedding", 0.0) for s in seconds)
            index = statistics.median(s["total"] - s.get("embedding", 0.0) for s in seconds)
            total = statistics.median(s["total"] for s in seconds)
            segments = getattr(runs[0], "segments", None)
            merged = getattr(runs[0], "merged", None) or "no"
            after = "-" if segments is None else f"{segments} ({merged} merge)"
            rows.append([kind, name, runs[0].embedded, emb, index, total, after])
        shutil.rmtree(prepared, ignore_errors=True)
    shutil.rmtree(work / "scenario", ignore_errors=True)

    store = Workspace(args.base).open_store()
    print(f"\nMachine: {machine()}; {date.today().isoformat()}; index format {indexing.FORMAT}")
    print(
        f"Base: SciFact, {store.count()} documents; median of {args.repeats} run(s) per "
        "scenario; encoder loaded outside the timings"
    )
    store.close()
    print_table(
        "Ingest cost of a small change",
        ["vectors", "change", "embedded", "embedding s", "index s", "total s", "segments after"],
        rows,
    )


if __name__ == "__main__":
    main()
