"""brainrank at 10k, 100k and 1M documents: build, serving memory, cold start, learned latency,
approximate-index recall, and adding 1,000 documents.

    .venv/bin/python bench/bench_scale.py [--sizes 10000,100000,1000000] [--datasets DIR]
        [--real-vectors-upto 10000] [--sigma 0.55] [--seed 0] [--redo build,serve,add]
        [--vectors kind=hnsw,hnsw_ef_search=400] [--ingest-batch 200000]

Collections (``scale_collection.py`` says exactly how): every real SciFact and NFCorpus
document under its own id, plus synthetic documents made of their titles and sentences
recombined with a seeded RNG. Synthetic documents are embedded by the real encoder up to
``--real-vectors-upto`` documents ("real" rows); above, their vectors are *derived* from the
real encoder's vectors of the documents their text came from ("derived" rows).

Once, before the sizes: SciFact's 5,183 documents are ingested into bench/.work/scale/scifact
(the real passages' vectors are cached by text for every later build), a model is trained
there on SciFact's train judgments with ``brainrank train`` and exported; each collection then
imports and promotes it (``brainrank models import --promote``), so learned mode serves the
same SciFact model at every size.

Per size, each stage in a fresh process (``scale_stages.py``; peak RSS from ``os.wait4``):
- build: the collection is ingested by ``engine.update_collection`` (the path of ``brainrank
  ingest``) with a ``PrecomputedEncoder``: time, peak RSS, the vector index ``auto`` chose and
  its build-time recall check (``vector_recall`` in the manifest: sampled passages as queries).
- serve: ``brainrank.open``, the index files preloaded into the page cache as a service worker
  does (``index.preload``, timed), then every SciFact and NFCorpus test query in learned mode
  (after 5 warm-up queries): p50/p99 wall time of ``engine.search`` and the process's RSS
  after them; the same queries in dense mode (k=100) against exact search over the
  collection's own vectors (R@100: the share of the exact top 100 documents the served top 100
  holds); learned nDCG@10 per collection; whether the model stayed in domain.
- cold: ``brainrank search QUERY --json`` three times in a fresh process (page cache warm:
  the files were just written or read; dropping caches needs root and disturbs other users),
  after writing brainrank's bytecode as an installed package has it.
- add: 1,000 further synthetic documents ingested into a copy of the workspace: total time,
  embedding time (real rows: the real encoder embeds them now; derived rows: a lookup, see the
  measured embedding rate for what it would take), what the segment policy did.

``--vectors`` writes a [vectors] table into each workspace's brainrank.toml (the index is
built with it: HNSW's ef_search is stored with the index, so it is a build setting);
``--ingest-batch`` builds a collection by several ingests (segments and merges) instead of one,
which bounds the memory tokenization takes. Either gets folders of its own.

Everything lives in bench/.work/scale (git-ignored): finished stages are reused (a stage
reruns with ``--redo``, or when the collection's recipe or settings change), so an
interrupted run resumes where it stopped; the real passages' vectors are cached by text. Run
on a quiet machine; the load average is printed with the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from common import REPO, dataset_dir, machine, print_table
from scale_stages import ADD, STAGES, STEPS, WORK, stage_dir, test_queries

RECIPE = 1  # bumped when scale_collection makes other documents or vectors


# ----- the orchestrating process ---------------------------------------------------------------


def run_child(argv: list[str], out: Path | None = None) -> tuple[float, float]:
    """Run ``argv``, stdout to ``out`` (else inherited); (wall seconds, peak RSS MB). Raises on
    a non-zero exit."""
    t = time.perf_counter()
    with open(out, "w") if out else open(os.devnull, "w") as sink:
        proc = subprocess.Popen(argv, stdout=sink if out else None)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv[:4]))} ... exited with {proc.returncode}")
    return wall, usage.ru_maxrss / 1024


def stage(args, name: str, size: int | None = None, redo: set = frozenset()) -> dict:
    """A stage's result: read back when done before with the same recipe, else run now."""
    found = done(args, name, size)
    if found is not None and name not in redo | args.redo:
        return found
    folder = stage_dir(args, size)
    folder.mkdir(parents=True, exist_ok=True)
    result_file = folder / f".{name}.out.json"
    argv = [sys.executable, __file__, "--child", name, "--size", str(size or 0)]
    argv += ["--seed", str(args.seed), "--sigma", str(args.sigma)]
    argv += ["--real-vectors-upto", str(args.real_vectors_upto), "--result", str(result_file)]
    argv += ["--vectors", args.vectors, "--ingest-batch", str(args.ingest_batch)]
    if args.datasets:
        argv += ["--datasets", args.datasets]
    print(f"[{time.strftime('%H:%M:%S')}] {name} {size or ''}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    wall, peak = run_child(argv)
    result = json.loads(result_file.read_text())
    result.update(key=_key(args, size), wall_s=wall, peak_rss_mb=peak)
    result["load"] = max(load, os.getloadavg()[0])
    (folder / f"{name}.json").write_text(json.dumps(result, indent=1))
    return result


def _key(args, size: int | None) -> dict:
    """What a stage's result depends on besides the code."""
    key = {"recipe": RECIPE}
    if size is not None:
        key.update(seed=args.seed, size=size, derived=size > args.real_vectors_upto)
        key.update(vectors=args.vectors, ingest_batch=args.ingest_batch)
        key["sigma"] = args.sigma if key["derived"] else None
    return key


def done(args, name: str, size: int | None) -> dict | None:
    """The stage's stored result when it was made with the same key, else None."""
    path = stage_dir(args, size) / f"{name}.json"
    if not path.exists():
        return None
    found = json.loads(path.read_text())
    return found if found.get("key") == _key(args, size) else None


def brainrank_cli(*argv: str, out: Path | None = None) -> tuple[float, float]:
    return run_child([str(Path(sys.executable).with_name("brainrank")), *argv], out)


def prepare(args) -> dict:
    """SciFact's workspace, a model trained there, exported once."""
    info = stage(args, "scifact")
    archive = WORK / "scifact-model.tar.gz"
    trained = stage_dir(args, None) / "trained.json"
    if not trained.exists():
        d = dataset_dir(Path(args.datasets) if args.datasets else None, "scifact")
        out = stage_dir(args, None) / ".train.out"
        ws = str(WORK / "scifact")
        wall, _ = brainrank_cli(
            "train", "-w", ws, "--queries", str(d / "queries.jsonl"),
            "--qrels", str(d / "qrels" / "train.tsv"), "--json", out=out,
        )  # fmt: skip
        result = json.loads(out.read_text().strip().splitlines()[-1])
        brainrank_cli("models", "export", result["version"], str(archive), "-w", ws)
        result["seconds"] = wall
        trained.write_text(json.dumps(result, default=str))
    info["trained"] = json.loads(trained.read_text())
    return info


def measure(args, size: int) -> dict:
    here = stage_dir(args, size)
    redo = set()
    if "build" in args.redo or not (here / "ws").exists() or done(args, "build", size) is None:
        redo = {"build", "serve", "add"}  # what was measured on an older build goes with it
        shutil.rmtree(here / "ws", ignore_errors=True)
        (here / "imported.ok").unlink(missing_ok=True)
        (here / "ws").mkdir(parents=True)
        (here / "ws" / "brainrank.toml").write_text(_vectors_toml(args.vectors))
    build = stage(args, "build", size, redo)
    if not (here / "imported.ok").exists():
        t = time.perf_counter()
        brainrank_cli("models", "import", str(WORK / "scifact-model.tar.gz"), "--promote",
                      "-w", str(here / "ws"))  # fmt: skip
        (here / "imported.ok").write_text(f"{time.perf_counter() - t:.1f}\n")
    serve = stage(args, "serve", size, redo)
    cold = _cold_start(args, size)
    if (here / "ws-add").exists():
        shutil.rmtree(here / "ws-add")
    if redo or "add" in args.redo or done(args, "add", size) is None:
        t = time.perf_counter()
        subprocess.run(["cp", "-a", "--reflink=auto", str(here / "ws"), str(here / "ws-add")],
                       check=True)  # fmt: skip
        print(f"copied the workspace in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    try:
        add = stage(args, "add", size, redo)
    finally:
        shutil.rmtree(here / "ws-add", ignore_errors=True)
    return {"build": build, "serve": serve, "cold": cold, "add": add}


def _vectors_toml(setting: str) -> str:
    """A config file whose [vectors] table holds ``key=value,...``."""
    lines = ["[vectors]"]
    for item in filter(None, setting.split(",")):
        key, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"--vectors: {item!r} is not key=value")
        try:
            float(value)
            literal = value
        except ValueError:
            literal = value if value in ("true", "false") else json.dumps(value)
        lines.append(f"{key.strip()} = {literal}")
    return "\n".join(lines) + "\n"


def _compile_bytecode() -> None:
    """Write brainrank's ``.pyc`` files first, as an installed package has them: with
    ``PYTHONDONTWRITEBYTECODE`` set (some shells, CI images) every cold run would otherwise
    compile its ~70 modules from source again (about 0.3 s, measured with cProfile at 1M)."""
    import compileall

    for folder in ("index", "ranker", "debugger_ui"):
        compileall.compile_dir(REPO / folder, quiet=1)


def _cold_start(args, size: int) -> dict:
    """``brainrank search`` in a fresh process, three times: wall seconds and peak RSS."""
    here = stage_dir(args, size)
    _compile_bytecode()
    query = next(iter(test_queries(args)["scifact"][0]))[1]
    walls, peaks = [], []
    for i in range(3):
        out = here / ".cold.out"
        wall, peak = brainrank_cli("search", query, "-w", str(here / "ws"), "--json", out=out)
        payload = json.loads(out.read_text())
        if i == 0 and payload.get("mode") != "learned":
            print(f"warning: cold search ran in {payload.get('mode')} mode", file=sys.stderr)
        walls.append(wall)
        peaks.append(peak)
    return {"first_s": walls[0], "median_s": statistics.median(walls), "peak_rss_mb": max(peaks)}


# ----- tables ----------------------------------------------------------------------------------


def _f(x: float, digits: int = 1) -> str:
    """A figure as text, so the table shows the precision measured (print_table pads floats)."""
    return f"{x:.{digits}f}"


def _gb(mb: float) -> str:
    return f"{mb / 1024:.2f}"


def tables(args, prep: dict, results: dict[int, dict]) -> None:
    trained = prep["trained"]
    print(f"\nMachine: {machine()}; {date.today().isoformat()}")
    print(
        f"SciFact model {trained['version']} (trained in {trained['seconds']:.0f} s, "
        f"{'promoted' if trained['promoted'] else 'not promoted'} in its workspace); real "
        f"passages embedded at {prep['embed_rate'] or float('nan'):.1f} passages/s on this "
        "machine (OpenVINO bulk encoder, as ingest runs it). [vectors] settings: "
        f"{args.vectors or 'defaults'}; seed {args.seed}, derived-vector sigma {args.sigma}."
    )
    rows, phases = [], []
    for n, r in results.items():
        b = r["build"]
        one = b.get("batches", 1) == 1
        s = b["seconds"] if one else {}
        recall = b["vector_recall"] or {}
        if "R@100" not in recall:
            recall = "exact"
        elif recall.get("vectors") != b["vectors"]:  # carried over from a smaller index
            recall = f"{recall['R@100']:.4f} (at {recall.get('vectors', 0):,} vectors)"
        else:
            recall = f"{recall['R@100']:.4f}"
        rows.append([
            f"{n:,}", "derived" if b["derived"] else "real", f"{b['real_docs']:,} + "
            f"{b['synthetic_docs']:,}", f"{b['vectors']:,}", _f(b["generate_seconds"]),
            _f(b["ingest_seconds"]) if one else f"{b['ingest_seconds']:.1f} "
            f"({b['batches']} ingests)", *(_f(s[k]) if k in s else "-" for k in STEPS[:3]),
            _f(b["lookup_seconds"]), _f(s.get("vector_index", 0)) if one else "-",
            _gb(b["rss_before_ingest_mb"]), _gb(b["peak_rss_mb"]),
            f"{b['vector_kind']}/{b['vector_quantizer']}", recall, f"{b['load']:.1f}",
        ])  # fmt: skip
        if b.get("rss_by_phase_mb"):
            peaks = b["rss_by_phase_mb"].values()
            phases.append([f"{n:,}", *(_gb(v) if v else "-" for v in peaks)])
    print_table(
        "Build (one ingest of the whole collection unless said)",
        ["docs", "vectors", "real + synthetic docs", "passages", "make s", "ingest s", "store s",
         "keyword s", "passages s", "of which lookup s", "vector index s",
         "RSS before ingest GB", "peak RSS GB", "auto index", "build-time R@100", "load"],
        rows,
    )  # fmt: skip
    if phases:
        print_table(
            "Peak RSS of the build process within each ingest step, GB",
            ["docs", "store", "keyword indexes", "passages (split + vectors)",
             "vector index + writing", "checksums + activation"],
            phases,
        )  # fmt: skip
    rows = []
    for n, r in results.items():
        s, c = r["serve"], r["cold"]
        rows.append([
            f"{n:,}", "derived" if r["build"]["derived"] else "real",
            f"{_gb(s['rss_mb'])} ({_gb(s.get('file_mb', float('nan')))})",
            _gb(s["hwm_mb"]), _f(c["first_s"], 2), _f(c["median_s"], 2),
            _gb(c["peak_rss_mb"]),
            f"{_f(s.get('preload_s', float('nan')))} ({_gb(s.get('preload_mb', float('nan')))})",
            _f(s["p50_ms"]), _f(s["p99_ms"]), _f(s["log_cost_p50_ms"]),
            f"{s['in_domain']['scifact']:.2f} / {s['in_domain']['nfcorpus-preprocessed']:.2f}",
            f"{s['recall_at_100']:.4f}", f"{s['recall_min']:.2f}",
            f"{s['ndcg10']['scifact']:.4f}", f"{s['ndcg10']['nfcorpus-preprocessed']:.4f}",
        ])  # fmt: skip
    print_table(
        f"Serving ({results and next(iter(results.values()))['serve']['queries']} SciFact + "
        "NFCorpus test queries, learned mode)",
        ["docs", "vectors", "RSS GB (of it mapped files)", "peak RSS GB", "cold search s (1st)",
         "cold s (median of 3)", "cold peak RSS GB", "preload s (GB)", "p50 ms", "p99 ms",
         "+ query log ms",
         "in domain SF / NF", "dense R@100 vs exact", "min R@100", "nDCG@10 SciFact",
         "nDCG@10 NFCorpus"],
        rows,
    )  # fmt: skip
    rows = []
    for n, r in results.items():
        a = r["add"]
        s = a["seconds"]
        rest = s["total"] - s.get("embedding", 0)
        rows.append([
            f"{n:,}", "derived (lookup)" if a["derived"] else "real (embedded now)",
            _f(s["total"]), _f(s.get("embedding", 0)), _f(rest),
            _f(s.get("store", 0)), _f(s.get("keyword_index", 0)),
            _f(s.get("vector_index", 0)), _f(s.get("merge", 0)), a["segments"],
            a["merged"] or "none", _gb(a["peak_rss_mb"]), _f(a["first_search_s"], 2),
            f"{a['served_documents']:,}",
        ])  # fmt: skip
    print_table(
        f"Adding {ADD:,} documents (a copy of the built workspace)",
        ["docs", "vectors", "total s", "embedding s", "all but embedding s", "store s",
         "keyword s", "vector index s", "merge s", "segments", "merged", "peak RSS GB",
         "reopen + 1st search s", "serving docs"],
        rows,
    )  # fmt: skip
    for n, r in results.items():
        cal = r["build"].get("calibration")
        if cal:
            print(
                f"\nDerived vs real-embedded vectors for the {r['build']['synthetic_docs']:,} "
                f"synthetic documents of {n:,} (mean cosine of random pairs / to the best "
                "neighbour among the collection's first passages / to the ten nearest synthetic "
                "documents / to the real vector):"
            )
            for name, v in cal.items():
                extra = f" / {v['cos_to_real']:.3f}" if "cos_to_real" in v else ""
                print(f"- {name}: {v['pair']:.3f} / {v['neighbour']:.3f} / {v['ten']:.3f}{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--datasets", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sigma", type=float, default=0.55, help="noise of derived vectors")
    ap.add_argument("--real-vectors-upto", type=int, default=10_000)
    ap.add_argument(
        "--vectors",
        default="",
        help="[vectors] settings for the collections, e.g. kind=hnsw,hnsw_ef_search=400 "
        "(written to each workspace's brainrank.toml; default: the config's defaults)",
    )
    ap.add_argument(
        "--ingest-batch",
        type=int,
        default=0,
        help="build each collection by ingests of this many documents (default: one ingest)",
    )
    ap.add_argument("--redo", default="", help="stages to run again: build,serve,add")
    ap.add_argument("--child", choices=sorted(STAGES), help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.redo = {s for s in args.redo.split(",") if s}
    unknown = args.redo - {"scifact", "build", "serve", "add"}
    if unknown:
        ap.error(f"--redo: unknown stage(s) {', '.join(sorted(unknown))}; use build, serve, add")
    if args.child:
        args.result.write_text(json.dumps(STAGES[args.child](args), default=float))
        return
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
    prep = prepare(args)
    results = {}
    for n in sizes:
        results[n] = measure(args, n)
        if n != sizes[-1]:  # what a long run has so far, on stderr; the tables go to stdout
            with contextlib.redirect_stdout(sys.stderr):
                tables(args, prep, results)
    tables(args, prep, results)
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
