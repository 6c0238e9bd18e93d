"""Drift and freshness monitors: is the champion still fit for the traffic and the corpus?

Each monitor compares the live window of the query log with a *reference*: what the champion
saw when it was trained. Five monitors, each with its own alarm:

- **features**: per feature, the population stability index (PSI) over the reference's decile
  bins, and a two-sample test: Kolmogorov-Smirnov for continuous features, chi-squared for
  discrete ones (at most 20 distinct values). A feature drifts when PSI >= ``psi_threshold``
  *and* the test rejects at ``alpha`` / number of features (Bonferroni). Rows of one search
  are not independent (a list shares its query), so the tests count searches, not rows.
- **queries**: share of query terms never seen in training, in excess of the share a new
  query from the training distribution would show (Good-Turing: terms seen once / all
  terms); Jensen-Shannon divergence of the term distributions, in excess of the divergence
  between two halves of the training queries; the shift of the query-embedding centroid
  beyond its bootstrap 99th percentile; and the rise of the out-of-domain share (searches the
  learned ranker handed back to the fusion).
- **corpus**: share of documents added or changed since the model was trained; index lag
  (the serving index behind the document store, or its newest document older than the
  newest ingested one).
- **outcomes**: CTR@k and click MRR of the window against the period just after training.
- **staleness**: model age against ``max_model_age``.

The reference is the champion's *served* profile (``ranker.monitoring.reference``); the
model's ``baseline.json`` (all training candidates) serves only the out-of-range share (live
values outside the training minimum and maximum, which a subset of candidates must respect).
The report and its one-line headline are in ``ranker.monitoring.report``; the statistics
themselves (arrays in, numbers out) are in ``ranker.monitoring.stats``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import MonitorConfig
from brainrank.ranker.durations import parse_duration
from brainrank.ranker.learning.features import JUDGED_FEATURES
from brainrank.ranker.monitoring.reference import Reference, reference_from_log
from brainrank.ranker.monitoring.report import MonitorReport, iso, no_data, section
from brainrank.ranker.monitoring.stats import (
    baseline_histogram,
    centroid_shift,
    feature_drift,
    query_term_drift,
)


def monitor(
    cfg,
    mcfg: MonitorConfig,
    *,
    window: str | None = None,
    now: float | None = None,
    log=None,
    reference: Reference | None = None,
    embed=None,
    max_embed: int = 0,
) -> MonitorReport:
    """Run every monitor on the window ending at ``now`` (default: the config's window).

    ``reference`` overrides the champion's saved profile. ``embed`` (texts -> unit vectors,
    with the champion's encoder) embeds up to ``max_embed`` window queries whose vectors the
    log has not cached, for the centroid monitor.
    """
    from brainrank.ranker.feedback.querylog import QueryLog
    from brainrank.ranker.registry.registry import Registry

    t0 = time.perf_counter()
    now = time.time() if now is None else float(now)
    span = parse_duration(window or mcfg.window, "window")
    start = now - span
    ws = Workspace(cfg.workspace)
    if not ws.exists():
        raise BrainrankError(f"workspace {ws.root} has no documents; run `brainrank ingest` first")
    champion = Registry(ws.models_dir).champion()
    own_log = log is None
    if own_log:
        log = QueryLog.open(ws.root) if QueryLog.exists(ws.root) else None
    try:
        trained = champion.created.timestamp() if champion else None
        if champion is not None and reference is None:
            reference = Reference.load(ws.models_dir, champion.version)
            if reference is None and log is not None:
                ref_end = min(trained + parse_duration(mcfg.reference_period), start)
                reference = reference_from_log(log, champion.version, trained, ref_end, mcfg)
        monitors: dict[str, dict] = {}
        searches = 0
        if log is not None and champion is not None:
            sample = log.sample(start, now, max_searches=mcfg.max_searches, seed=mcfg.seed)
            searches = sample.total
            monitors["features"] = _features(champion, reference, sample, mcfg)
            monitors["queries"] = _queries(
                cfg, champion, reference, sample, log, mcfg, embed, max_embed
            )
            monitors["outcomes"] = _outcomes(log, sample, trained, start, mcfg)
        else:
            why = "no model promoted yet" if champion is None else "the query log is empty"
            for name in ("features", "queries", "outcomes"):
                monitors[name] = no_data(why)
        monitors["corpus"] = _corpus(ws, trained, now, mcfg)
        monitors["staleness"] = _staleness(champion, now, mcfg)
    finally:
        if own_log and log is not None:
            log.close()
    reasons = [r for m in monitors.values() if m["status"] == "alarm" for r in m["reasons"]]
    return MonitorReport(
        verdict="stale" if reasons else "fresh",
        reasons=reasons,
        model=champion.version if champion else None,
        window={
            "start": iso(start),
            "end": iso(now),
            "seconds": span,
            "searches": searches,
        },
        monitors=monitors,
        reference=reference.source if reference is not None else None,
        seconds=round(time.perf_counter() - t0, 3),
    )


def _features(champion, ref, sample, cfg) -> dict:
    if ref is None or not len(ref.features):
        return no_data("no reference profile for the champion yet (run `brainrank retrain`)")
    learned = np.flatnonzero(sample.model == champion.version)
    # Filtered searches and later pages log no feature rows (``QueryLog.record``).
    own = np.intersect1d(learned, sample.row_search)
    if len(own) < cfg.min_searches or sample.feature_names != ref.feature_names:
        skipped = len(learned) - len(own)
        why = (
            f" ({skipped} more, filtered or later pages, are not compared: their candidates "
            "are not drawn as the training lists were)"
            if skipped
            else ""
        )
        return no_data(
            f"{len(own)} learned searches by {champion.version} with feature rows in the "
            f"window{why}"
        )
    rows = np.isin(sample.row_search, own)
    live = sample.features[rows]
    groups = len(set(sample.queries[own].tolist()))
    baseline = _baseline(champion.path / "baseline.json")
    # The judged features are out of fold in training but, for a query that was itself judged,
    # carry its own labels when served: their training range is no bound on live values.
    # PSI and the test against the served reference profile still watch them.
    ranges = {
        n: (f["edges"][0], f["edges"][-1])
        for n, f in baseline.items()
        if f.get("edges") and n not in JUDGED_FEATURES
    }
    table = feature_drift(
        ref.features,
        max(len(set(ref.queries)), 2),
        live,
        max(groups, 2),
        ref.feature_names,
        cfg,
        ranges,
    )
    for j, row in enumerate(table):
        if row["feature"] in baseline:
            row["baseline"] = baseline_histogram(baseline[row["feature"]], live[:, j])
    drifted = [r for r in table if r["drifted"]]
    reasons = [f"feature {r['feature']} drifted: {'; '.join(r['fired'])}" for r in drifted]
    return section(reasons, searches=len(own), distinct_queries=groups, features=table)


def _baseline(path: Path) -> dict[str, dict]:
    """Per-feature entries of a model's ``baseline.json`` ({} when it is missing or unreadable)."""
    try:
        feats = json.loads(path.read_text())["features"]
        return {n: f for n, f in feats.items() if isinstance(f, dict)}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _queries(cfg, champion, ref, sample, log, mcfg, embed, max_embed) -> dict:
    from brainrank.index.bm25 import tokenize  # bm25s costs half a second of imports

    if len(sample) < mcfg.min_searches:
        return no_data(f"{len(sample)} searches in the window (min_searches {mcfg.min_searches})")
    reasons: list[str] = []
    out: dict = {"searches": sample.total, "sampled": len(sample)}
    distinct, counts = np.unique(sample.queries.astype(str), return_counts=True)
    if ref is not None and ref.queries:
        terms = tokenize(sorted(set(ref.queries)) + distinct.tolist(), cfg.bm25)
        n_ref = len(set(ref.queries))
        drift = query_term_drift(terms[:n_ref], terms[n_ref:], mcfg.seed)
        out["terms"] = drift
        excess = drift["unseen_share"] - drift["expected_unseen"]
        if excess > mcfg.unseen_terms_margin:
            reasons.append(
                f"{drift['unseen_share']:.0%} of query terms unseen in training "
                f"(expected about {drift['expected_unseen']:.0%})"
            )
        if drift["js"] - drift["js_null"] > mcfg.js_margin:
            reasons.append(
                f"query terms diverge from training: JS {drift['js']:.2f} bits "
                f"(sampling alone gives {drift['js_null']:.2f})"
            )
    learned_flags = sample.in_domain[np.isfinite(sample.in_domain)]
    learned = len(learned_flags)
    ood = float(1 - learned_flags.mean()) if learned else None
    base = ref.out_of_domain if ref is not None and ref.out_of_domain is not None else 0.05
    out["out_of_domain"] = {"share": ood, "reference": base, "learned_searches": learned}
    if ood is not None and learned >= mcfg.min_searches and ood - base > mcfg.ood_margin:
        reasons.append(f"{ood:.0%} of searches out of the model's domain (training {base:.0%})")
    out["centroid"] = _centroid(champion, log, distinct, counts, mcfg, embed, max_embed)
    c = out["centroid"]
    if c.get("shift") is not None and c["shift"] > max(c["null_q99"], mcfg.centroid_min):
        reasons.append(
            f"query embedding centroid moved by {c['shift']:.3f} (cosine distance; sampling "
            f"alone stays below {c['null_q99']:.3f})"
        )
    measured = "terms" in out or c.get("shift") is not None or learned >= mcfg.min_searches
    if not measured:  # nothing compared: "ok" would claim a check that never ran
        return {
            **no_data(
                "no training queries to compare with, no centroid shift measured and "
                f"{learned} learned searches (min_searches {mcfg.min_searches})"
            ),
            **out,
        }
    return section(reasons, **out)


def _centroid(champion, log, distinct, counts, mcfg, embed, max_embed) -> dict:
    gate = champion.path / "gate_queries.npy"
    fingerprint = champion.encoder_fingerprint
    if not gate.is_file() or not fingerprint:
        return {"shift": None, "note": "the champion has no training query embeddings"}
    cached = log.vectors(distinct.tolist(), fingerprint)
    missing = [q for q in distinct[np.argsort(-counts)].tolist() if q not in cached]
    if missing and embed is not None and max_embed > 0:
        todo = missing[:max_embed]
        vectors = np.asarray(embed(todo), np.float32)
        log.store_vectors(todo, vectors, fingerprint)
        cached.update(zip(todo, vectors, strict=True))
    have = [i for i, q in enumerate(distinct.tolist()) if q in cached]
    if len(have) < 10:
        return {"shift": None, "note": f"{len(have)} window queries have cached embeddings"}
    live = np.stack([cached[distinct[i]] for i in have])
    train = np.load(gate, allow_pickle=False)
    # Distinct queries, as for the terms: a popular query is not a new topic.
    out = centroid_shift(train, live, None, mcfg.seed)
    out["coverage"] = float(counts[have].sum() / counts.sum())
    return out


def _outcomes(log, sample, trained, start, cfg) -> dict:
    live = log.outcomes(sample.ids, k=cfg.k)
    ref_end = min(trained + parse_duration(cfg.reference_period), start)
    ref = None
    if ref_end > trained:
        ref_sample = log.sample(trained, ref_end, max_searches=cfg.max_searches, seed=cfg.seed)
        ref = log.outcomes(ref_sample.ids, k=cfg.k)
    numbers = {"window": live, "reference": ref}
    if ref is None or min(ref["clicked"], live["clicked"]) < cfg.min_clicked:
        note = "too few searches with clicks (import feedback with `brainrank feedback FILE`)"
        return {**no_data(note), **numbers}
    reasons = []
    for metric in (f"CTR@{cfg.k}", "click_MRR"):
        a, b = ref[metric], live[metric]
        if a and b is not None and (a - b) / a > cfg.ctr_drop and _drop_significant(ref, live, cfg):
            reasons.append(f"{metric} fell from {a:.3f} after training to {b:.3f}")
    return section(reasons, **numbers)


def _drop_significant(ref: dict, live: dict, cfg) -> bool:
    """One-sided two-proportion z-test on the share of searches with a click."""
    from scipy.special import ndtr

    n1, n2 = ref["searches"], live["searches"]
    p1, p2 = ref["clicked"] / n1, live["clicked"] / n2
    pooled = (ref["clicked"] + live["clicked"]) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return bool(se > 0 and ndtr(-(p1 - p2) / se) < cfg.alpha)


def _corpus(ws: Workspace, trained: float | None, now: float, cfg) -> dict:
    uri = f"file:{ws.store_path}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        total, newest_ts, newest_update = db.execute(
            "SELECT COUNT(*), MAX(timestamp), MAX(updated_at) FROM documents"
        ).fetchone()
        changed = 0
        if trained is not None:
            since = datetime.fromtimestamp(trained, UTC).isoformat()
            (changed,) = db.execute(
                "SELECT COUNT(*) FROM documents WHERE updated_at > ?", (since,)
            ).fetchone()
        row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        store_version = int(row[0]) if row else 0
    finally:
        db.close()
    reasons = []
    share = changed / total if total else 0.0
    out = {"documents": total, "changed_since_training": changed, "changed_share": share}
    if trained is None:  # nothing was trained on these documents: no share to report
        out.update(changed_since_training=None, changed_share=None)
    elif share > cfg.max_changed_docs:
        reasons.append(
            f"{share:.0%} of documents were added or changed since the model was trained "
            f"({changed} of {total})"
        )
    number = ws.serving_generation(store_version)
    manifest = ws.manifest(number) if number is not None else {}
    indexed = manifest.get("newest_document")
    lag = 0.0
    if newest_ts and indexed:
        lag = max(
            datetime.fromisoformat(newest_ts).timestamp()
            - datetime.fromisoformat(indexed).timestamp(),
            0.0,
        )
    behind = manifest.get("store_version") != store_version
    out.update(
        index_lag_seconds=lag,
        index_behind_store=behind,
        newest_ingested=newest_ts,
        newest_indexed=indexed,
        last_update=newest_update,
    )
    if behind:
        reasons.append("the serving index was built from an older document store version")
    if lag > parse_duration(cfg.max_index_lag):
        reasons.append(f"index lag {lag / 86400:.1f} days (newest indexed vs newest ingested)")
    return section(reasons, **out)


def _staleness(champion, now: float, cfg) -> dict:
    if champion is None:
        return no_data("no model promoted yet")
    age = now - champion.created.timestamp()
    limit = parse_duration(cfg.max_model_age)
    reasons = []
    if age > limit:
        reasons.append(
            f"model {champion.version} is {age / 86400:.1f} days old (max {limit / 86400:g})"
        )
    return section(
        reasons, age_seconds=age, max_age_seconds=limit, created=iso(champion.created.timestamp())
    )
