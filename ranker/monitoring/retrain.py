"""Retraining: a challenger from the judgments and the clicks gathered so far, promoted only when
it is shown to beat the champion.

One run: (with ``if_needed``) ask the monitors and stop when the champion is fresh; bring the
indexes up to date; export the query log's clicked searches as a click log (merged with the
champion's own click log, without the judged queries training holds out); train a challenger
without promoting it; compare it with the champion on the held-out judged queries (nDCG@10,
from ``ranker.learning.train``) and on held-out clicked queries (inverse-propensity-weighted click
DCG@10); promote it only when it is better at the lower bound of the paired bootstrap
(``[promotion]``, ``learning.decision``) and not worse on clicks by more than the click
margin; save the monitoring reference of the new champion; write a report into the registry
(``models/retrain/``) either way.

Safe from cron: ``Workspace.writer_lock("retrain")`` keeps two runs apart (the second fails
fast); a run whose inputs (document store, judgments, clicks) are those of the last
completed run, with the champion that run left, is skipped; training and promotion are
crash-safe on their own (a version appears whole or not at all; the promotion prepares the
challenger's index first and then switches model and index in one write of the serving
pointer, ``ranker.registry.promotion``), so a run killed anywhere leaves the previous champion
serving with its index, or, once that write is done, the new pair; a re-run trains again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from brainrank.index.atomic import write_text_atomic
from brainrank.index.errors import BrainrankError
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import MonitorConfig, RetrainConfig
from brainrank.ranker.durations import parse_duration
from brainrank.ranker.monitoring.reference import Reference, build_reference, training_texts

log = logging.getLogger(__name__)

REPORTS_DIR = "retrain"


@dataclass
class RetrainReport:
    status: str  # promoted | kept | not needed | skipped
    reason: str
    started: str
    champion_before: str | None = None
    champion_after: str | None = None
    challenger: str | None = None
    monitor: dict | None = None
    metrics: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def retrain(
    cfg,
    rcfg: RetrainConfig,
    mcfg: MonitorConfig | None = None,
    *,
    if_needed: bool = False,
    now: float | None = None,
    progress=None,
    encoder_factory=None,
) -> RetrainReport:
    """Run one retraining (see the module docstring); the report says what happened and why.

    ``mcfg`` (the monitors asked by ``if_needed``, and k of the click comparison) defaults to
    the config's own [monitor] table, ``cfg.ops.monitor``.
    """
    from brainrank.ranker.registry.registry import Registry

    mcfg = mcfg or cfg.ops.monitor
    ws = Workspace(cfg.workspace)
    if not ws.exists():
        raise BrainrankError(f"workspace {ws.root} has no documents; run `brainrank ingest` first")
    t0 = time.perf_counter()
    now = time.time() if now is None else now
    started = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    with ws.writer_lock("retrain"):
        registry = Registry(ws.models_dir)
        champion = registry.champion()
        before = champion.version if champion else None
        trigger = None
        if if_needed:
            from brainrank.ranker.monitoring.drift import monitor

            verdict = monitor(cfg, mcfg, now=now)
            trigger = {"verdict": verdict.verdict, "reasons": verdict.reasons}
            if not verdict.stale and champion is not None:
                return RetrainReport(
                    "not needed",
                    f"the monitors call {before} fresh",
                    started,
                    before,
                    before,
                    monitor=trigger,
                    seconds=round(time.perf_counter() - t0, 2),
                )
        queries, qrels, digest, sets = _judgments(rcfg, ws)
        store_version = _refresh_indexes(cfg, ws, encoder_factory, progress)
        with tempfile.TemporaryDirectory(prefix="brainrank-retrain-") as tmp:
            cold = _cold_queries(queries, qrels, rcfg)
            clicks_path, held, n_logged = _click_logs(ws, champion, rcfg, now, Path(tmp), cold)
            inputs = {
                "store_version": store_version,
                "judgments": digest,
                "clicks": _digest([clicks_path]) if clicks_path else None,
                "logged_impressions": n_logged,
            }
            last = last_report(ws.models_dir)
            if last and last.get("inputs") == inputs and last.get("champion_after") == before:
                return RetrainReport(
                    "skipped",
                    f"nothing changed since the retrain of {last['started']} "
                    f"({last['challenger']} was {last['status']})",
                    started,
                    before,
                    before,
                    monitor=trigger,
                    inputs=inputs,
                    seconds=round(time.perf_counter() - t0, 2),
                )
            report = _train_and_decide(
                cfg, rcfg, mcfg, queries, qrels, clicks_path, held, champion, progress, sets
            )
        report.started, report.monitor, report.inputs = started, trigger, inputs
        report.champion_before = before
        report.seconds = round(time.perf_counter() - t0, 2)
        report.path = str(_write_report(ws.models_dir, report))
    return report


def _train_and_decide(
    cfg, rcfg, mcfg, queries, qrels, clicks_path, held, champion, progress, sets=()
):
    from brainrank.ranker.learning.train import TrainOptions, train
    from brainrank.ranker.registry.promotion import promote
    from brainrank.ranker.registry.registry import ChampionMoved, Registry
    from brainrank.ranker.retrieval.search import SearchEngine

    options = TrainOptions(
        promote=False,
        seed=rcfg.seed,
        max_epochs=rcfg.max_epochs,
        finetune_encoder=rcfg.finetune_encoder,
    )
    result = train(
        cfg,
        queries,
        qrels,
        clicks_path=clicks_path,
        options=options,
        progress=progress,
        judgment_sets=sets,
    )
    propensities = _propensities(clicks_path, mcfg.k)
    metrics = {"holdout": result.metrics, "promotion": result.decision.to_dict()}
    # The same rule as `brainrank train` ([promotion]): better at the bootstrap's lower bound.
    reasons = [result.decision.reason]
    ok = result.decision.promote
    if champion is not None and len(held) >= rcfg.min_click_eval:
        engine = SearchEngine(cfg)
        clicks = {
            "metric": f"IPS click DCG@{mcfg.k}",
            "challenger": click_dcg(engine, held, result.version, propensities, mcfg.k),
            "champion": click_dcg(engine, held, champion.version, propensities, mcfg.k),
            "impressions": len(held),
        }
        metrics["clicks"] = clicks
        reasons.append(
            f"held-out IPS click DCG@{mcfg.k} {clicks['challenger']:.4f} vs champion "
            f"{clicks['champion']:.4f}"
        )
        ok = ok and clicks["challenger"] >= clicks["champion"] * (1 - rcfg.click_margin)
    registry = Registry(Workspace(cfg.workspace).models_dir)
    warnings = []
    status, after = "kept", champion.version if champion else None
    if ok:
        try:
            promote(cfg, result.version, progress=progress, expect=after)
            status, after = "promoted", result.version
        except ChampionMoved as exc:  # the challenger was never compared with the new one
            ok, after = False, exc.now
            reasons.append(str(exc))
    reason = "; ".join(reasons)
    reason += f" (click margin {rcfg.click_margin}): " + (
        f"{result.version} promoted"
        if ok
        else f"{result.version} kept as challenger; {'champion' if champion else 'nothing'} kept"
    )
    if after is not None and Reference.load(registry.models_dir, after) is None:
        try:
            mv = registry.get(after)
            ref = build_reference(
                SearchEngine(cfg), after, training_texts(mv, queries, qrels), mcfg.k
            )
            ref.save(registry.models_dir)
        except BrainrankError as exc:  # monitoring falls back to the log; retraining succeeded
            warnings.append(f"no monitoring reference for {after}: {exc}")
    return RetrainReport(
        status,
        reason,
        "",
        champion_after=after,
        challenger=result.version,
        metrics=metrics,
        warnings=warnings,
    )


def click_dcg(
    engine, impressions: list[dict], version: str, propensities, k: int = 10, depth: int = 100
) -> float:
    """Inverse-propensity-weighted DCG@k of the logged clicks when ``version`` re-ranks each
    logged list.

    Each model re-orders the documents that were shown (by its rank among its top
    ``depth``), so both are judged on the same documents: a model cannot be credited for a
    document nobody saw. A click at logged position p counts 1 / propensity[p], so the ranking
    that produced the clicks gains nothing from the attention its top positions drew
    (Joachims et al., WSDM 2017). A later page of results (``first_position`` > 1) keeps its
    place: its documents are re-ordered among its own positions.
    """
    import math

    cache: dict[str, dict[str, int]] = {}
    total = 0.0
    for imp in impressions:
        query, shown, skip = imp["query"], imp["shown"], imp.get("first_position", 1) - 1
        if query not in cache:
            hits = engine.search(query, k=depth, mode="learned", model=version).hits
            cache[query] = {h.doc_id: h.rank for h in hits}
        rank = cache[query]
        order = sorted(range(len(shown)), key=lambda i: (rank.get(shown[i], depth + 1), i))
        position = {shown[i]: r for r, i in enumerate(order, start=skip + 1)}
        for doc in imp["clicks"]:
            logged = skip + shown.index(doc)
            if position[doc] <= k and logged < len(propensities):
                total += 1.0 / propensities[logged] / math.log2(1 + position[doc])
    return total / len(impressions) if impressions else 0.0


def _propensities(clicks_path: Path | None, k: int):
    """Examination propensity per position, from the click model fitted to the click log."""
    import numpy as np

    if clicks_path is None:
        return 1.0 / np.arange(1, k + 1)
    from brainrank.ranker.feedback.click_model import estimate_propensities
    from brainrank.ranker.feedback.clicklog import read_click_log

    return np.maximum(estimate_propensities(read_click_log(clicks_path), k), 1e-3)


def _judgments(rcfg: RetrainConfig, ws: Workspace):
    """(queries, qrels, content digest, judgment sets): the files the [retrain] table names,
    else the workspace's judgment store (``judgment_set``, or all sets merged)."""
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.feedback.judgments import JudgmentStore, workspace_judgments

    if rcfg.queries is not None and rcfg.qrels is not None:
        files = [rcfg.queries, rcfg.qrels]
        return read_queries(rcfg.queries), read_qrels(rcfg.qrels), _digest(files), ()
    if rcfg.queries is not None or rcfg.qrels is not None:
        raise BrainrankError(
            "the [retrain] table names only one of queries and qrels; set both, or neither to "
            "use the workspace's judgments"
        )
    if rcfg.judgment_set is None and not JudgmentStore.exists(ws.root):
        raise BrainrankError(
            "retraining needs judgments: import some with `brainrank judgments import QRELS "
            "--queries FILE`, train once with `brainrank train --queries FILE --qrels QRELS`, "
            "or set queries and qrels in the [retrain] table of the config (e.g. queries = "
            '"queries.jsonl", qrels = "qrels.txt")'
        )
    found = workspace_judgments(ws.root, rcfg.judgment_set)
    return found.queries, found.qrels, found.digest(), found.sets


def _refresh_indexes(cfg, ws: Workspace, encoder_factory, progress) -> int:
    """Bring the indexes up to date with the document store; return the store version."""
    from brainrank.ranker.encoding.bulk import load_bulk_encoder
    from brainrank.ranker.encoding.loading import encoder_path_for, serving_manifest
    from brainrank.ranker.retrieval.indexing import update_indexes

    path = encoder_path_for(cfg, serving_manifest(ws))
    factory = encoder_factory or (lambda: load_bulk_encoder(path, cfg.encoder))
    update_indexes(ws, cfg, encoder_factory=factory, encoder_path=path, progress=progress)
    store = ws.open_store()
    try:
        return store.version
    finally:
        store.close()


def _cold_queries(queries: dict[str, str], qrels: dict, rcfg: RetrainConfig) -> set[str]:
    """Normalised texts of the judged queries ``train`` will hold out or validate on.

    Their clicks stay out of the challenger's click log. ``train`` keeps held-out queries'
    clicks in the click *features*; when those clicks reflect the same relevance as the
    judgments, the held-out comparison rewards a model that leans on click features, which
    then fails on new queries that have no clicks yet. Without them the held-out queries are
    judged cold, like new queries, and the held-out clicked queries cover the warm case.
    """
    from brainrank.ranker.feedback.fields import normalise_query
    from brainrank.ranker.learning.splits import query_split
    from brainrank.ranker.learning.train import TrainOptions

    options = TrainOptions(seed=rcfg.seed)
    judged = [q for q in qrels if q in queries]
    _, val, holdout = query_split(
        judged, options.holdout_fraction, options.val_fraction, options.seed
    )
    return {normalise_query(queries[q]) for q in holdout + val}


def _click_logs(
    ws: Workspace, champion, rcfg: RetrainConfig, now: float, tmp: Path, cold: set[str]
):
    """(training click log or None, held-out clicked impressions, logged impressions used)."""
    from brainrank.ranker.feedback.fields import normalise_query
    from brainrank.ranker.feedback.querylog import QueryLog
    from brainrank.ranker.learning.splits import click_holdout

    merged: dict[str, dict] = {}
    if champion is not None and (champion.path / "clicks.jsonl").is_file():
        for line in (champion.path / "clicks.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = json.loads(line)
                if normalise_query(obj["query"]) not in cold:
                    merged[obj["impression_id"]] = obj
    logged = []
    if QueryLog.exists(ws.root):
        with QueryLog.open(ws.root) as qlog:
            start = now - parse_duration(rcfg.clicks_window)
            logged = list(
                qlog.impressions(start, now, limit=rcfg.max_impressions, clicked_queries=True)
            )
    texts = sorted({normalise_query(imp["query"]) for imp in logged})
    held_texts = click_holdout(texts, rcfg.click_holdout, rcfg.seed)
    held_set = set(held_texts)
    held = []
    for imp in logged:
        text = normalise_query(imp["query"])
        if text in held_set:
            if imp["clicks"]:
                held.append(imp)
        elif text not in cold:
            merged[imp["impression_id"]] = imp
    if len(held) > rcfg.max_click_eval:
        step = len(held) / rcfg.max_click_eval
        held = [held[int(i * step)] for i in range(rcfg.max_click_eval)]
    if not merged:
        return None, held, len(logged)
    path = tmp / "clicks.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in merged.values()), encoding="utf-8")
    return path, held, len(logged)


def _digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes() if p is not None and Path(p).is_file() else b"-")
    return h.hexdigest()[:16]


def _write_report(models_dir: Path, report: RetrainReport) -> Path:
    stamp = report.started.replace(":", "").replace("-", "").replace("+0000", "Z")
    path = Path(models_dir) / REPORTS_DIR / f"{stamp}-{report.challenger or 'none'}.json"
    report.path = str(path)
    write_text_atomic(path, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return path


def history(models_dir: Path) -> list[dict]:
    """Every written retrain report, oldest first (for the Health page and `models`)."""
    folder = Path(models_dir) / REPORTS_DIR
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            log.warning("unreadable retrain report %s skipped", path)
    return out


def last_report(models_dir: Path) -> dict | None:
    reports = history(models_dir)
    return reports[-1] if reports else None
