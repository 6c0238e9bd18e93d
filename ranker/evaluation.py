"""Offline evaluation: judged queries through the search path, scored with ir-measures."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrank.index.atomic import write_text_atomic
from brainrank.index.errors import InputError
from brainrank.index.jsontext import check_text, loads
from brainrank.ranker.retrieval.search import SearchEngine, check_mode

METRICS = ("nDCG@10", "RR@10", "R@100", "AP")
Qrels = dict[str, dict[str, int]]
# trec_eval (under ir-measures) keeps grades in C ints: larger ones give wrong metrics.
GRADE_RANGE = (-(2**31), 2**31 - 1)


def read_queries(path: Path | str) -> dict[str, str]:
    """Queries from JSONL (``_id``/``id`` and ``text``) or TSV (``id<TAB>text``)."""
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, line in _lines(path):
        if path.suffix in (".jsonl", ".json"):
            try:
                obj = loads(line)
            except ValueError as exc:
                raise InputError(f"{path.name} line {lineno}: not valid JSON ({exc})") from None
            if not isinstance(obj, dict):
                found = type(obj).__name__
                raise InputError(
                    f"{path.name} line {lineno}: expected a JSON object, found {found}"
                )
            qid = obj.get("_id", obj.get("id", obj.get("query_id")))
            text = obj.get("text", obj.get("query"))
            if isinstance(qid, bool) or not isinstance(qid, str | int) or not isinstance(text, str):
                raise InputError(f"{path.name} line {lineno}: a query needs an id and a text")
            qid = str(qid)
            try:
                check_text(qid, "the query id")
                check_text(text, "the query text")
            except ValueError as exc:
                raise InputError(f"{path.name} line {lineno}: {exc}") from None
        else:
            parts = line.split("\t", 1)
            if len(parts) != 2:
                raise InputError(f"{path.name} line {lineno}: expected 'query_id<TAB>text'")
            qid, text = parts
        if not text.strip():
            raise InputError(f"{path.name} line {lineno}: query {qid!r} has no text")
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
        parts = [p.strip() for p in line.split("\t")]  # BEIR: ids may hold spaces
        if len(parts) not in (3, 4) or not all(parts):
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
            value = int(grade)
        except ValueError:
            shown = grade if len(grade) <= 40 else grade[:40] + "..."
            raise InputError(
                f"{path.name} line {lineno}: grade {shown!r} is not an integer (a line is "
                "'query_id 0 doc_id grade' or 'query_id doc_id grade')"
            ) from None
        low, high = GRADE_RANGE
        if not low <= value <= high:
            raise InputError(
                f"{path.name} line {lineno}: grade {grade[:40]} is out of range; grades are "
                f"integers from {low} to {high} (usually 0 to 3)"
            )
        qrels.setdefault(qid, {})[did] = value
    if not qrels:
        raise InputError(f"no judgments in {path}")
    return qrels


@dataclass
class JudgmentCheck:
    """How many judgments name queries without a text, or documents not in the collection."""

    judged_queries: int = 0  # query ids in the qrels
    unknown_queries: int = 0  # ... of them absent from the queries file
    judgments: int = 0  # (query, document) pairs of the judged queries that have a text
    unknown_docs: int = 0  # ... of them naming a document not in the collection
    usable_queries: int = 0  # queries with a text and a positive judgment on a known document

    def warnings(self) -> list[str]:
        """One line per kind of judgment that cannot be used."""
        out = []
        if self.unknown_queries:
            out.append(
                f"{self.unknown_queries} of {self.judged_queries} judged queries are not in the "
                "queries file; their judgments are ignored"
            )
        if self.unknown_docs:
            out.append(
                f"{self.unknown_docs} of {self.judgments} judgments name documents that are not "
                "in the collection"
            )
        return out

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


def check_judgments(
    queries: dict[str, str], qrels: Qrels, known_docs: Collection[str]
) -> JudgmentCheck:
    """Count judgments naming unknown queries or documents; InputError when none is usable.

    Usable: a judged query with a text and a positive grade on a document of the collection.
    """
    check = JudgmentCheck(judged_queries=len(qrels))
    for qid, grades in qrels.items():
        if qid not in queries:
            check.unknown_queries += 1
            continue
        check.judgments += len(grades)
        unknown = [d for d in grades if d not in known_docs]
        check.unknown_docs += len(unknown)
        check.usable_queries += any(g > 0 and d in known_docs for d, g in grades.items())
    if check.usable_queries == 0:
        if check.judgments == 0:
            why = "none of the judged query ids appear in the queries file"
        elif check.unknown_docs == check.judgments:
            why = (
                f"none of the {check.judgments} judged documents are in the collection (were "
                "the judgments made for another one?)"
            )
        else:
            why = "no judged query has a relevant (grade > 0) document in the collection"
        raise InputError(f"no usable judgments: {why}")
    return check


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
    if run_dir is not None:
        prepare_run_dir(run_dir)
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


def prepare_run_dir(run_dir: Path) -> Path:
    """Create the folder run files go to; InputError when it is a file or cannot be made."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--run-dir {run_dir} is a file; give a folder for the run files")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create --run-dir {run_dir}: {exc.strerror or exc}") from None
    return run_dir
