"""What each measuring process of ``bench_scale.py`` does: build a collection, serve it, add
1,000 documents to it (and, once, ingest SciFact alone). ``bench_scale.py --child STAGE`` runs
one of these in a fresh process and writes its result as JSON; the parent reads the process's
peak RSS from ``os.wait4``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from common import REPO, dataset_dir

WORK = REPO / "bench" / ".work" / "scale"
ADD = 1000
WARMUP = 5
STEPS = ("store", "keyword_index", "embedding", "vector_index")  # an ingest's, in order
LOGGED = 100  # queries searched twice, without and with the query log


def stage_dir(args, size: int | None) -> Path:
    """Where a size's workspace and results live (a ``--vectors`` or ``--ingest-batch`` other
    than the default gets a folder of its own)."""
    if not size:
        return WORK / "prep"
    tag = "".join(c if c.isalnum() else "-" for c in args.vectors)
    tag += f"-batch{args.ingest_batch}" if args.ingest_batch else ""
    return WORK / (f"n{size}-{tag.strip('-')}" if tag else f"n{size}")


def _encoder_and_sources(args, cfg):
    from scale_collection import Sources, VectorCache

    from brainrank.ranker.encoding.bulk import load_bulk_encoder
    from brainrank.ranker.encoding.fetch import fetch_encoder

    real = load_bulk_encoder(fetch_encoder(cfg.encoder.cache_dir), cfg.encoder)
    name = f"vectors-{real.fingerprint.split(':')[-1]}-{real.precision}-{cfg.encoder.max_length}"
    cache = VectorCache(WORK / "cache" / f"{name}.npz", real.dim)
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    datasets = Path(args.datasets) if args.datasets else None
    sources = Sources.read(
        dataset_dir(datasets, "scifact"),
        dataset_dir(datasets, "nfcorpus-preprocessed"),
        real.tokenizer,
        cfg.encoder.max_length,
    )
    return real, cache, sources


def _config(workspace: Path):
    from brainrank.ranker.config import load_config

    return load_config(workspace=workspace, env={})


def _report(report, manifest: dict | None) -> dict:
    manifest = manifest or {}
    return {
        "seconds": report.seconds,
        "documents": report.documents,
        "embedded": report.embedded,
        "passages_embedded": report.passages,
        "segments": report.segments,
        "merged": report.merged,
        "vector_kind": manifest.get("vector_kind"),
        "vector_quantizer": manifest.get("vector_quantizer"),
        "vector_recall": manifest.get("vector_recall"),
        "vectors": manifest.get("vectors"),
    }


def _serving_manifest(workspace: Path) -> dict | None:
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.encoding.loading import serving_manifest

    return serving_manifest(Workspace(workspace))


def stage_scifact(args) -> dict:
    """SciFact alone, ingested the normal way (its passages' vectors cached on the way)."""
    from scale_collection import make_precomputed_encoder

    from brainrank.ranker.engine import update_collection

    cfg = _config(WORK / "scifact")
    real, cache, sources = _encoder_and_sources(args, cfg)
    encoder = make_precomputed_encoder(real, cache, embed=True)
    docs = sources.documents[: len(sources.pools[0])]
    report = update_collection(cfg, documents=docs, bulk_loader=lambda path, ecfg: encoder)
    cache.save()
    return {**_report(report, _serving_manifest(cfg.workspace)), "embed_rate": cache.rate}


def stage_build(args) -> dict:
    """Make the collection of ``args.size`` documents, then ingest it."""
    from scale_collection import (
        BLOCK,
        SyntheticVectors,
        derived_for,
        make_precomputed_encoder,
        text_key,
        write_npy,
    )

    from brainrank.ranker.engine import update_collection
    from brainrank.ranker.retrieval.passages import PassageSplitter

    here = stage_dir(args, args.size)
    cfg = _config(here / "ws")
    t0 = time.perf_counter()
    real, cache, sources = _encoder_and_sources(args, cfg)
    encoder = make_precomputed_encoder(real, cache, embed=True)
    e = cfg.encoder
    splitter = PassageSplitter(
        real.tokenizer, e.max_length, overlap=e.passage_overlap, max_passages=e.max_passages
    )
    passages = splitter.split(sources.documents)
    flat = [p for texts in passages for p in texts]
    owner = np.repeat(np.arange(len(passages)), [len(p) for p in passages])
    real_vectors = encoder.encode(flat, batch_size=e.batch_size)
    cache.save()
    firsts = np.concatenate([[0], np.cumsum([len(p) for p in passages])[:-1]])
    real_first = real_vectors[firsts]
    ids = np.array([d.doc_id for d in sources.documents])
    np.savez(here / "real.npz", vectors=real_vectors, owner=owner, ids=ids)

    n_syn = args.size - len(sources.documents)
    if n_syn < 1:
        raise SystemExit(f"--sizes: {args.size} must exceed the {len(sources.documents)} real docs")
    derived = args.size > args.real_vectors_upto
    offset, row_bytes = write_npy(here / "synthetic.npy", (n_syn, real.dim))
    docs, keys = [], np.zeros(n_syn, np.uint64)
    calibration = None
    with (here / "synthetic.npy").open("r+b") as fh:
        for lo in range(0, n_syn, BLOCK):
            hi = min(lo + BLOCK, n_syn)
            if derived:
                block, vectors = derived_for(sources, real_first, args.seed, lo, hi, args.sigma)
            else:
                block, _, _ = sources.synthetic(args.seed, lo, hi)
                vectors = encoder.encode([d.full_text for d in block], batch_size=e.batch_size)
            fh.seek(offset + lo * row_bytes)
            np.ascontiguousarray(vectors, np.float32).tofile(fh)
            keys[lo:hi] = [text_key(d.full_text) for d in block]
            docs += block
    cache.save()
    if not derived and n_syn:
        calibration = _calibrate(sources, real_first, args.seed, here / "synthetic.npy", n_syn)
    generate = time.perf_counter() - t0

    # From here on every passage has a vector: nothing may be embedded behind the table's back.
    ingest_encoder = make_precomputed_encoder(
        real, cache, SyntheticVectors(here / "synthetic.npy", keys), embed=False
    )
    documents = sources.documents + docs
    del docs, passages, flat, real_vectors
    before = _proc_status("VmRSS")
    sampler = RssSampler()
    sampler.start()
    started = time.perf_counter()
    batch = args.ingest_batch or len(documents)
    batches = []
    for lo in range(0, len(documents), batch):
        report = update_collection(
            cfg, documents=documents[lo : lo + batch], bulk_loader=lambda p, c: ingest_encoder
        )
        batches.append(report.seconds["total"])
    sampler.stop()
    phases = None if len(batches) > 1 else sampler.phases(started, report.seconds)
    expected = len(owner) + n_syn
    if ingest_encoder.looked_up != expected:
        raise SystemExit(
            f"ingest asked for {ingest_encoder.looked_up} passage vectors, {expected} expected: "
            "the passage splitting differs from this script's (a synthetic document of two "
            "passages?)"
        )
    return {
        **_report(report, _serving_manifest(cfg.workspace)),
        "real_docs": len(sources.documents),
        "synthetic_docs": n_syn,
        "derived": derived,
        "generate_seconds": generate,
        "lookup_seconds": ingest_encoder.seconds,
        "ingest_seconds": sum(batches),
        "batches": len(batches),
        "rss_by_phase_mb": phases,
        "rss_before_ingest_mb": before,
        "embed_rate": cache.rate,
        "calibration": calibration,
    }


def _calibrate(sources, real_first, seed, path, n_syn) -> dict:
    """How derived vectors compare with real ones for the same synthetic documents: cosine to
    the real vector, and the spread (random pairs, best neighbour) of each kind, per sigma."""
    from scale_collection import derived_for

    real = np.load(path)
    rng = np.random.default_rng(0)
    pairs = rng.integers(n_syn, size=(4000, 2))
    probe = rng.choice(n_syn, size=min(500, n_syn), replace=False)

    def spread(v) -> dict:
        pair = float(np.mean(np.sum(v[pairs[:, 0]] * v[pairs[:, 1]], axis=1)))
        sims = v[probe] @ np.vstack([real_first, v]).T
        sims[np.arange(len(probe)), len(real_first) + probe] = -1  # not itself
        ten = np.sort(sims[:, len(real_first) :], axis=1)[:, -10:]
        return {"pair": pair, "neighbour": float(np.mean(sims.max(axis=1))), "ten": ten.mean()}

    out = {"real": spread(real)}
    for sigma in (0.0, 0.2, 0.4, 0.5, 0.55, 0.6, 0.7):
        _, v = derived_for(sources, real_first, seed, 0, n_syn, sigma)
        out[f"sigma={sigma}"] = {**spread(v), "cos_to_real": float(np.mean(np.sum(v * real, 1)))}
    return out


def stage_serve(args) -> dict:
    """Warm learned latency and RSS, then dense top 100 against exact search, in one process."""
    import brainrank
    from brainrank.index.preload import preload
    from brainrank.ranker.evaluation import score_run

    here = stage_dir(args, args.size)
    sets = test_queries(args)
    flat = [(name, qid, text) for name, (queries, _) in sets.items() for qid, text in queries]
    engine = brainrank.open(here / "ws", config=_config(here / "ws"))
    # As a service worker does before it serves ([service] preload): the index files into the
    # page cache, so the latencies below do not depend on what other jobs left cached.
    t = time.perf_counter()
    preloaded = preload(engine.searcher.index_files())
    preload_s = time.perf_counter() - t
    for _, _, text in flat[:WARMUP]:
        engine.search(text, k=10, mode="learned")
    latency, runs = [], {name: {} for name in sets}
    in_domain = dict.fromkeys(sets, 0)
    for name, qid, text in flat:
        t = time.perf_counter()
        result = engine.search(text, k=10, mode="learned")
        latency.append((time.perf_counter() - t) * 1000)
        runs[name][qid] = [h.doc_id for h in result.hits]
        in_domain[name] += bool(result.in_domain)
    rss, hwm = _proc_status("VmRSS"), _proc_status("VmHWM")
    anon, mapped = _proc_status("RssAnon"), _proc_status("RssFile")
    logged = []  # (without, with the query log) for the same query, back to back
    for _, _, text in flat[:: max(len(flat) // LOGGED, 1)]:
        pair = []
        for log in (False, True):
            t = time.perf_counter()
            engine.search(text, k=10, mode="learned", log=log)
            pair.append((time.perf_counter() - t) * 1000)
        logged.append(pair)
    dense, vectors = [], []
    for _, _, text in flat:
        result = engine.search(text, k=100, mode="dense")
        dense.append([h.doc_id for h in result.hits])
        vectors.append(result.query_vector)
    generation = engine.searcher.generation
    documents = len(generation)
    exact = _exact_top(generation, np.vstack(vectors).astype(np.float32), 100)
    engine.close()
    segments = len(_serving_manifest(here / "ws").get("segments") or [None])
    recall = [len(set(d) & set(x)) / len(x) for d, x in zip(dense, exact, strict=True)]
    ndcg = {name: score_run(qrels, runs[name])["nDCG@10"] for name, (_, qrels) in sets.items()}
    return {
        "queries": len(flat),
        "preload_mb": preloaded / 1e6,
        "preload_s": preload_s,
        "p50_ms": float(np.percentile(latency, 50)),
        "p99_ms": float(np.percentile(latency, 99)),
        "log_cost_p50_ms": float(np.percentile([b - a for a, b in logged], 50)),
        "rss_mb": rss,
        "hwm_mb": hwm,
        "anon_mb": anon,  # of RSS: the process's own memory
        "file_mb": mapped,  # of RSS: mapped index files (page cache, shared, reclaimable)
        "in_domain": {name: in_domain[name] / len(runs[name]) for name in sets},
        "recall_at_100": float(np.mean(recall)),
        "recall_min": float(np.min(recall)),
        "ndcg10": ndcg,
        "documents": documents,
        "segments": segments,
    }


def test_queries(args) -> dict:
    from brainrank.ranker.evaluation import read_qrels, read_queries

    datasets = Path(args.datasets) if args.datasets else None
    out = {}
    for name in ("scifact", "nfcorpus-preprocessed"):
        path = dataset_dir(datasets, name)
        qrels = read_qrels(path / "qrels" / "test.tsv")
        queries = read_queries(path / "queries.jsonl")
        out[name] = ([(q, queries[q]) for q in qrels if q in queries], qrels)
    return out


def _exact_top(generation, queries: np.ndarray, k: int, block: int = 200_000):
    """Exact top-``k`` document ids per query over the vectors the served index holds (a
    document scores as its best passage), a block of passage rows at a time.

    Until 2026-12-03 the truth came from the vectors the collection was built from; at 1M it
    overlapped exact search over the stored vectors by only 0.983 on average, which capped the
    measured R@100 near 0.98."""
    vectors = generation.vectors
    if not hasattr(vectors, "embeddings"):
        raise SystemExit("R@100 needs a generation of one segment; run `brainrank optimize`")
    emb, owner, ids = vectors.embeddings, np.asarray(vectors.owner), generation.doc_ids
    found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in queries]
    for lo in range(0, len(emb), block):
        own = owner[lo : lo + block]
        starts = np.flatnonzero(np.r_[True, np.diff(own) != 0])
        per_doc = np.maximum.reduceat(queries @ np.asarray(emb[lo : lo + block]).T, starts, 1)
        depth = min(k + 1, per_doc.shape[1])  # + 1: a document cut by the block boundary
        top = np.argpartition(-per_doc, depth - 1, axis=1)[:, :depth]
        for i in range(len(queries)):
            found[i].append((per_doc[i, top[i]], own[starts][top[i]]))
    out = []
    for parts in found:
        best: dict[int, float] = {}
        for scores, docs in parts:
            for score, doc in zip(scores.tolist(), docs.tolist(), strict=True):
                best[doc] = max(score, best.get(doc, -np.inf))
        ranked = sorted(best, key=lambda d: (-best[d], d))[:k]
        out.append([ids[d] for d in ranked])
    return out


def stage_add(args) -> dict:
    """Ingest the next 1,000 synthetic documents into the copy in ``ws-add``."""
    from scale_collection import VectorCache, derived_for, make_precomputed_encoder, text_key

    import brainrank
    from brainrank.ranker.engine import update_collection

    here = stage_dir(args, args.size)
    cfg = _config(here / "ws-add")
    real, cache, sources = _encoder_and_sources(args, cfg)
    lookup = make_precomputed_encoder(real, cache, embed=True)
    n_syn = args.size - len(sources.documents)
    derived = args.size > args.real_vectors_upto
    # A cache of these documents alone: real rows embed them now, derived rows look them up.
    fresh = VectorCache(WORK / "cache" / "unused.npz", real.dim)
    if derived:
        real_first = lookup.encode([d.full_text for d in sources.documents])
        docs, vectors = derived_for(sources, real_first, args.seed, n_syn, n_syn + ADD, args.sigma)
        fresh.add([text_key(d.full_text) for d in docs], vectors, 0.0)
    else:
        docs, _, _ = sources.synthetic(args.seed, n_syn, n_syn + ADD)
    encoder = make_precomputed_encoder(real, fresh, embed=not derived)
    report = update_collection(cfg, documents=docs, bulk_loader=lambda path, ecfg: encoder)
    t = time.perf_counter()
    with brainrank.open(cfg.workspace, config=cfg) as engine:
        first = engine.search(docs[0].title or docs[0].text[:80], k=10, mode="learned")
        served = len(engine.searcher.generation)
    return {
        **_report(report, _serving_manifest(cfg.workspace)),
        "derived": derived,
        "first_search_s": time.perf_counter() - t,
        "served_documents": served,
        "found_itself": docs[0].doc_id in [h.doc_id for h in first.hits],
        "embed_rate": cache.rate,
    }


class RssSampler(threading.Thread):
    """This process's RSS five times a second, to tell which step of an ingest peaks."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            self.samples.append((time.perf_counter(), _proc_status("VmRSS")))

    def stop(self) -> None:
        self._done.set()
        self.join()

    def phases(self, started: float, seconds: dict) -> dict:
        """Peak RSS (MB) within each step of one ingest, from its report's seconds (``store``
        counts from the ingest's start; the others are durations, in this order)."""
        ends, at = {}, started + seconds.get("store", 0.0)
        ends["store"] = at
        for name in STEPS[1:]:
            at += seconds.get(name, 0.0)
            ends[name] = at
        ends["checksums and activation"] = float("inf")
        out, lo = {}, started
        for name, hi in ends.items():
            inside = [rss for t, rss in self.samples if lo <= t < hi]
            out[name] = max(inside) if inside else None
            lo = hi
        return out


def _proc_status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


STAGES = {"scifact": stage_scifact, "build": stage_build, "serve": stage_serve, "add": stage_add}
