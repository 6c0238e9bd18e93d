"""Offline evaluation: judged queries through the search path, scored with ir-measures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from brainrank.index.atomic import write_text_atomic
from brainrank.index.errors import InputError
from brainrank.ranker.retrieval.search import SearchEngine, check_mode

METRICS = ("nDCG@10", "RR@10", "R@100", "AP")
Qrels = dict[str, dict[str, int]]


def read_queries(path: Path | str) -> dict[str, str]:
    """Queries from JSONL (``_id``/``id`` and ``text``) or TSV (``id<TAB>text``)."""
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, line in _lines(path):
        if path.suffix in (".jsonl", ".json"):
            try:
                obj = json.loads(line)
                qid = str(obj.get("_id", obj.get("id", obj.get("query_id"))))
                text = obj.get("text", obj.get("query"))
            except (ValueError, AttributeError) as exc:
                raise InputError(f"{path.name} line {lineno}: not a JSON object ({exc})") from None
            if qid == "None" or not isinstance(text, str):
                raise InputError(f"{path.name} line {lineno}: a query needs an id and a text")
        else:
            parts = line.split("\t", 1)
            if len(parts) != 2:
                raise InputError(f"{path.name} line {lineno}: expected 'query_id<TAB>text'")
            qid, text = parts
        if qid in out:
            raise InputError(f"{path.name} line {lineno}: duplicate query id {qid!r}")
        out[qid] = text
    if not out:
        raise InputError(f"no queries in {path}")
    return out


def read_qrels(path: Path | str) -> Qrels:
    """Judgments from TREC qrels (``qid 0 docid grade``) or BEIR TSV (with a header line)."""
    path = Path(path)
    qrels: Qrels = {}
    for lineno, line in _lines(path):
        parts = line.split()
        if lineno == 1 and parts[:2] == ["query-id", "corpus-id"]:
            continue
        if len(parts) == 4:
            qid, _, did, grade = parts
        elif len(parts) == 3:
            qid, did, grade = parts
        else:
            raise InputError(
                f"{path.name} line {lineno}: expected 'query_id 0 doc_id grade' (TREC) or "
                f"'query_id<TAB>doc_id<TAB>grade' (BEIR), got {len(parts)} fields"
            )
        try:
            qrels.setdefault(qid, {})[did] = int(grade)
        except ValueError:
            raise InputError(
                f"{path.name} line {lineno}: grade {grade!r} is not an integer"
            ) from None
    if not qrels:
        raise InputError(f"no judgments in {path}")
    return qrels


def _lines(path: Path):
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file")
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
            except UnicodeDecodeError:
                raise InputError(f"{path.name} line {lineno}: not valid UTF-8") from None
            if line:
                yield lineno, line


def score_run(qrels: Qrels, run: dict[str, list[str]]) -> dict[str, float]:
    """Mean nDCG@10, RR@10, R@100 and AP of ranked lists (order is the list order)."""
    import ir_measures

    # Scores derived from rank so ir-measures sees exactly our order, ties included.
    scored = {q: {d: float(len(docs) - r) for r, d in enumerate(docs)} for q, docs in run.items()}
    for q in qrels:
        scored.setdefault(q, {})
    measures = [ir_measures.parse_measure(m) for m in METRICS]
    agg = ir_measures.calc_aggregate(measures, qrels, scored)
    return {m: float(agg[ir_measures.parse_measure(m)]) for m in METRICS}


def per_query(qrels: Qrels, run: dict[str, list[str]], metric: str = "nDCG@10") -> dict[str, float]:
    """One metric per query (for per-query comparisons)."""
    import ir_measures

    scored = {q: {d: float(len(docs) - r) for r, d in enumerate(docs)} for q, docs in run.items()}
    out = {q: 0.0 for q in qrels}
    for m in ir_measures.iter_calc([ir_measures.parse_measure(metric)], qrels, scored):
        out[m.query_id] = float(m.value)
    return out


def evaluate(
    engine: SearchEngine,
    queries: dict[str, str],
    qrels: Qrels,
    modes: Sequence[str],
    *,
    depth: int = 100,
    run_dir: Path | None = None,
    on_query: Callable[[int], None] | None = None,
    model: str | None = None,
    log=None,
) -> dict[str, dict]:
    """Search every judged query in every mode; metrics plus warm latency per mode.

    ``model`` picks the registry version the learned mode uses (default: the champion).
    ``log`` (a ``QueryLog``) records every search when given.
    """
    for m in modes:
        check_mode(m)
    judged = [q for q in qrels if q in queries]
    if not judged:
        raise InputError("none of the judged query ids appear in the queries file")
    qrels = {q: qrels[q] for q in judged}
    results: dict[str, dict] = {}
    for mode in modes:
        engine.search(queries[judged[0]], k=depth, mode=mode, model=model)  # warm up
        run: dict[str, list[str]] = {}
        lines: list[str] = []
        latencies = []
        for qid in judged:
            t0 = time.perf_counter()
            res = engine.search(queries[qid], k=depth, mode=mode, model=model)
            latencies.append((time.perf_counter() - t0) * 1000)
            if log is not None:
                log.record(res)
            run[qid] = [h.doc_id for h in res.hits]
            lines += [
                f"{qid} Q0 {h.doc_id} {h.rank} {h.score:.6f} brainrank-{mode}" for h in res.hits
            ]
            if on_query:
                on_query(1)
        metrics = score_run(qrels, run)
        metrics["latency_ms"] = {
            "p50": float(np.percentile(latencies, 50)),
            "p99": float(np.percentile(latencies, 99)),
        }
        metrics["queries"] = len(judged)
        results[mode] = metrics
        if run_dir is not None:
            write_text_atomic(Path(run_dir) / f"run.{mode}.trec", "\n".join(lines) + "\n")
    return results
