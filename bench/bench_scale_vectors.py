"""Vector index settings on a bench_scale collection: dense R@100 against exact search and
single-query latency, for the same 623 SciFact + NFCorpus test queries bench_scale serves.

    .venv/bin/python bench/bench_scale_vectors.py [--size 1000000] [--datasets DIR]
        [--indexes served,ivf,hnsw-flat] [--ef 300,600,1200] [--nprobe 32,64,128,256]
        [--build "kind=ivf,quantizer=none;kind=ivf,quantizer=sq8"] [--rerank 4]

Needs the collection built by ``bench/bench_scale.py`` at that size (bench/.work/scale/n<size>).
``served``: the index that ingest built (``[vectors]`` defaults) at several efSearch values;
``ivf``: an IVF index of 4,096 lists over the float vectors (trained on 160k of them, seed 0)
at several nprobe values; ``hnsw-flat``: HNSW (M 32, efConstruction 100) over float vectors
(the build takes about as long as ingest's vector index phase). ``--build``: indexes built as
ingest builds them (``VectorIndex.build`` with these ``[vectors]`` settings, ``;`` between
indexes), which calibrates their efSearch or nprobe to ``recall_target`` (index.vector_search);
they are searched at the calibrated effort, and one over 8-bit codes also with its top
``--rerank`` x 100 rows re-scored exactly from the float embeddings. The second table gives
their build time (calibration included), calibrated effort and the R@100 the calibration
measured, and the size of the FAISS file that serving maps. Each search asks for 100 rows
per query as serving does there (the collection's 99th percentile of passages per document
is 1), one thread, one query at a time; a query's documents are its rows' owners in order, and
R@100 is the share of the exact top 100 documents (bench_scale's own exact search over the
vectors the collection was built from) found. Query vectors come from the served encoder.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import faiss
import numpy as np
from common import machine, print_table
from scale_stages import WORK, _exact_top, test_queries

from brainrank.index.params import EncoderInfo, VectorParams
from brainrank.index.vector_search import search_params
from brainrank.index.vectors import VectorIndex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--datasets", default=None)
    ap.add_argument("--indexes", default="served,ivf")
    ap.add_argument("--ef", default="300,600,1200")
    ap.add_argument("--nprobe", default="32,64,128,256")
    ap.add_argument("--build", default="", help="[vectors] settings, e.g. kind=ivf;kind=hnsw")
    ap.add_argument("--rerank", type=int, default=4)
    args = ap.parse_args()
    here = WORK / f"n{args.size}"
    gens = sorted((here / "ws" / "indexes").glob("gen-*"))
    if not gens:
        raise SystemExit(f"no collection at {here}: run bench/bench_scale.py --sizes {args.size}")
    segs = sorted((gens[-1] / "segments").glob("seg-*"))
    if len(segs) != 1:
        raise SystemExit(f"{gens[-1]} has {len(segs)} segments; this script reads one")
    seg = segs[0]
    ids = json.loads((seg / "docs.json").read_text())["ids"]
    emb = np.load(seg / "vectors" / "embeddings.npy", mmap_mode="r")
    owner = np.load(seg / "vectors" / "owner.npy")
    queries, truth = _queries(here, args)
    rows_per_doc = max(1, int(np.ceil(np.percentile(np.bincount(owner), 99))))
    faiss.omp_set_num_threads(1)
    results, builds = [], []

    def evaluate(name, index, params_for, settings, rerank=0):
        for setting in settings:
            params = params_for(setting)
            latency, recall = [], []
            for i in range(len(queries)):
                t = time.perf_counter()
                depth = 100 * rows_per_doc * max(1, rerank)
                _, rows = index.search(queries[i : i + 1], depth, params=params)
                if rerank:  # exact scores of the candidates, from the mapped float vectors
                    found = np.sort(rows[0][rows[0] >= 0])
                    exact = np.asarray(emb[found]) @ queries[i]
                    rows = found[np.argsort(-exact)][None, : 100 * rows_per_doc]
                latency.append((time.perf_counter() - t) * 1000)
                docs = owner[rows[0][rows[0] >= 0]]
                _, first = np.unique(docs, return_index=True)
                found = {ids[d] for d in docs[np.sort(first)[:100]]}
                recall.append(len(found & set(truth[i])) / 100)
            row = [name, setting, float(np.mean(recall)), float(np.min(recall))]
            results.append(row + [np.percentile(latency, 50), np.percentile(latency, 99)])
            print(results[-1], flush=True)

    wanted = args.indexes.split(",")
    ef = [int(v) for v in args.ef.split(",")]
    if "served" in wanted:
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
        served = faiss.read_index(str(seg / "vectors" / "vectors.faiss"), flags)
        meta = json.loads((seg / "vectors" / "vectors.json").read_text())
        name = f"served: {meta['kind']}/{meta['quantizer']}"
        evaluate(name, served, lambda e: faiss.SearchParametersHNSW(efSearch=e), ef)
    if "ivf" in wanted:
        t = time.perf_counter()
        coarse = faiss.IndexFlatIP(emb.shape[1])  # kept referenced while ivf lives
        ivf = faiss.IndexIVFFlat(coarse, emb.shape[1], 4096, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(len(emb), min(160_000, len(emb)), replace=False)
        faiss.omp_set_num_threads(2)
        ivf.train(np.ascontiguousarray(emb[np.sort(sample)]))
        for lo in range(0, len(emb), 100_000):
            ivf.add(np.ascontiguousarray(emb[lo : lo + 100_000]))
        faiss.omp_set_num_threads(1)
        print(f"ivf built in {time.perf_counter() - t:.0f} s", flush=True)
        nprobe = [int(v) for v in args.nprobe.split(",")]
        evaluate("ivf4096, float", ivf, lambda n: faiss.SearchParametersIVF(nprobe=n), nprobe)
    if "hnsw-flat" in wanted:
        t = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(emb.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 100
        faiss.omp_set_num_threads(2)
        for lo in range(0, len(emb), 100_000):
            hnsw.add(np.ascontiguousarray(emb[lo : lo + 100_000]))
        faiss.omp_set_num_threads(1)
        print(f"hnsw built in {time.perf_counter() - t:.0f} s", flush=True)
        evaluate("hnsw32, float", hnsw, lambda e: faiss.SearchParametersHNSW(efSearch=e), ef)
    for settings in filter(None, args.build.split(";")):
        rows = 100 * rows_per_doc
        builds.append(_build(settings, seg, emb, owner, evaluate, args.rerank, here, rows))

    print(f"\nMachine: {machine()}; {date.today()}; {len(emb):,} vectors, {len(queries)} queries")
    print_table(
        "Dense R@100 against exact search, by vector index setting",
        ["index", "setting", "R@100", "min R@100", "p50 ms", "p99 ms"],
        results,
    )
    if builds:
        print_table(
            "Indexes built and calibrated as ingest does (index.vector_search)",
            ["[vectors]", "index", "build s", "effort", "calibration R@100", "reached", "file MB"],
            builds,
        )


def _build(settings: str, seg: Path, emb, owner, evaluate, rerank: int, here: Path, rows: int):
    """Build one index as ingest does, search it at its calibrated effort for ``rows`` rows
    as serving does, and describe it."""
    values = {}
    for pair in settings.split(","):
        key, value = pair.split("=")
        values[key] = value if not value.replace(".", "").isdigit() else json.loads(value)
    params = VectorParams(**values)
    encoder = EncoderInfo(**json.loads((seg / "vectors" / "vectors.json").read_text())["encoder"])
    faiss.omp_set_num_threads(2)
    t = time.perf_counter()
    built = VectorIndex.build(emb, encoder, params, owner)
    seconds = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    print(f"{settings}: built in {seconds:.0f} s, {built.recall}", flush=True)
    name = f"{built.kind}/{built.quantizer}, calibrated"
    effort = built.effort

    def at(depth):
        return lambda _: search_params(built._base, effort, depth)

    evaluate(name, built._index, at(rows), [effort])
    if built.quantizer == "sq8" and rerank:
        evaluate(f"{name} + re-rank x{rerank}", built._index, at(rows * rerank), [effort], rerank)
    path = here / "calibrated.faiss"  # the file serving would map, written to be measured
    faiss.write_index(built._index, str(path))
    size = path.stat().st_size / 2**20
    path.unlink()
    recall = built.recall or {}
    row = [settings, name, seconds, effort, recall.get("R@100"), recall.get("reached")]
    return row + [size]


def _queries(here: Path, args) -> tuple[np.ndarray, list[list[str]]]:
    """The test queries' vectors (from the served encoder) and their exact top 100, cached
    beside the collection."""
    cache = here / "query-vectors.npz"
    if not cache.exists():
        import brainrank
        from brainrank.ranker.config import load_config

        sets = test_queries(SimpleNamespace(datasets=args.datasets))
        texts = [text for queries, _ in sets.values() for _, text in queries]
        engine = brainrank.open(here / "ws", config=load_config(workspace=here / "ws", env={}))
        vectors = [engine.search(t, k=1, mode="dense").query_vector for t in texts]
        engine.close()
        q = np.vstack(vectors).astype(np.float32)
        truth = _exact_top(here, q, 100)
        np.savez(cache, vectors=q, truth=np.array(truth))
    with np.load(cache) as z:
        return z["vectors"], [list(row) for row in z["truth"]]


if __name__ == "__main__":
    main()
