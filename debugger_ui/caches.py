"""The cached calls behind ``loaders.Context``: the only place ``st.cache_*`` is used.

Resources (the engine, the query log) are keyed by workspace and generation; data (rankings,
explanations, splits, judgments, monitor reports) by everything that determines it, with the
unhashable arguments (engines, results) passed with a leading underscore so Streamlit skips
them and an explicit key stands in.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from brainrank.debugger_ui.judgments import JudgedSet, set_run
from brainrank.ranker.config import load_config

# Seconds a monitor report is reused (the Health page says when it was computed).
MONITOR_TTL = 60
# Rank every candidate, so any candidate's final rank is known (the UI shows the top k).
FULL_DEPTH = 1000


def mtime(path) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner="Opening the index…", max_entries=4)
def engine(workspace: str, config: Path | None, generation: int):
    from brainrank.ranker.retrieval.search import SearchEngine

    # The encoder loads on the first dense, hybrid or learned search (BM25 never needs it).
    return SearchEngine(load_config(config, workspace=Path(workspace)), generation=generation)


@st.cache_data(show_spinner="Reading judgments…", max_entries=8)
def judged(queries: str, qrels: str, _m1: float, _m2: float) -> JudgedSet:
    from brainrank.ranker.evaluation import read_qrels, read_queries

    return JudgedSet(read_queries(queries), read_qrels(qrels))


@st.cache_data(show_spinner="Ranking…", max_entries=256)
def ranking(_engine, key, generation: int, query, mode, model, where: tuple, facets: tuple):
    return _engine.search(query, k=FULL_DEPTH, mode=mode, model=model, where=where, facets=facets)


@st.cache_resource(show_spinner=False, max_entries=4)
def query_log(root: str):
    """The workspace's query log, opened once for the UI's searches (SQLite, WAL)."""
    from brainrank.ranker.feedback.querylog import QueryLog

    return QueryLog.open(root, source="ui")


@st.cache_data(show_spinner="Explaining (SHAP)…", max_entries=128)
def explained(_engine, key, generation: int, query: str, model: str, where: tuple, doc_ids):
    from brainrank.ranker.learning.explain import candidate_features, explain, gam_subscores

    features = candidate_features(_engine, query, model, where)
    learned, _ = _engine.model(model)
    x = features.rows(list(doc_ids))
    # auto: a GAM's SHAP values in closed form (exact, and far cheaper than sampling).
    explanation = explain(learned, x, background=features.features, method="auto")
    sub = gam_subscores(learned, x) if learned.ranker.params.scorer == "gam" else None
    return features, explanation, sub


@st.cache_data(show_spinner="Splitting the scores…", max_entries=128)
def decomposed(_engine, key, generation: int, query: str, mode: str, model, where: tuple):
    from brainrank.ranker.learning.decompose import decompose

    return decompose(_engine, query, mode, model, where)


@st.cache_data(show_spinner="Explaining the correction (SHAP)…", max_entries=256)
def correction(_engine, key, generation: int, query: str, model: str, where: tuple, doc_id):
    from brainrank.ranker.learning.explain import explain

    parts = decomposed(_engine, key, generation, query, "learned", model, where)
    learned, _ = _engine.model(model)
    x = parts.features[[parts.row(doc_id)]]
    return explain(learned, x, background=parts.features, method="auto", target="correction")


@st.cache_data(show_spinner=False, max_entries=256)
def matches(_engine, key, generation, query: str, doc_id: str, dense: bool, _vector):
    from brainrank.ranker.retrieval.matches import matched_passage, matched_terms

    passage = matched_passage(_engine, _vector, doc_id) if dense else None
    return matched_terms(_engine, query, doc_id), passage


@st.cache_data(show_spinner="Explaining (SHAP)…", max_entries=128)
def why_not(_engine, key, generation: int, query: str, model: str, where: tuple, target, above):
    from brainrank.ranker.learning.explain import candidate_features, why_not

    features = candidate_features(_engine, query, model, where)
    learned, _ = _engine.model(model)
    rows = features.rows([target, above])
    return rows, why_not(learned, rows[0], rows[1], features.features)


@st.cache_data(show_spinner=False, max_entries=128)
def standing(_engine, key, generation, query, doc_id, spec: str, where: tuple, _result):
    from brainrank.ranker.learning.explain import standing

    return standing(_engine, query, doc_id, _result)


@st.cache_data(show_spinner="Ranking every judged query…", max_entries=32)
def per_query(_engine, key, generation, _judged, judged_key: str, mode: str, model: str | None):
    return set_run(_engine, _judged, mode, model)


@st.cache_data(show_spinner="Running the monitors…", ttl=MONITOR_TTL, max_entries=16)
def monitor(_cfg, _mcfg, key, window, mcfg_key, champion, generation, has_log, refresh):
    from brainrank.ranker.monitoring.drift import monitor

    return monitor(_cfg, _mcfg, window=window)


@st.cache_data(show_spinner=False, max_entries=8)
def retrain_history(models_dir: str, signature: tuple) -> list[dict]:
    from brainrank.ranker.monitoring.retrain import history

    return history(Path(models_dir))
