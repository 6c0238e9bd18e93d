"""Everything the pages load or compute, cached through ``caches`` (``st.cache_*``).

The search engine (index, encoder, loaded models) is a ``st.cache_resource`` keyed by the
workspace and the index generation serving now, so a promotion that switches the index or a new
ingest gets a fresh engine on the next run. Rankings and explanations are ``st.cache_data``
keyed by query, mode, filters and an explicit model version (never "the champion", which
moves), so a cached entry can never go stale. A ranking carries the feature rows and query
vector the search computed, so the Search page can log what it shows without ranking again.
Judgments come from the files given or the workspace's judgment store, read on every run (a
grade given on the Search page shows at once). Monitor reports depend on the clock and on
traffic, so they live ``MONITOR_TTL`` seconds. All computation is ``ranker``'s; this module
only calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from brainrank.debugger_ui import caches
from brainrank.debugger_ui.access import require_writable
from brainrank.debugger_ui.judgments import (
    JudgedSet,
    SetRun,
    store_judged,
    store_set_names,
    write_grade,
)
from brainrank.index.errors import BrainrankError
from brainrank.index.workspace import Workspace
from brainrank.ranker.cli.ui_settings import Settings
from brainrank.ranker.config import Config, load_config

FIXED_MODES = ("hybrid", "bm25", "dense", "hybrid-rrf", "hybrid-minmax")
# Judgment sources besides the store's sets (whose names cannot start with "_").
ALL_SETS = "_all"
FILES = "_files"


@dataclass(frozen=True)
class Ranking:
    """A ranking to show: a fixed mode, or the learned mode with one model version."""

    mode: str
    model: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.mode}:{self.model}" if self.model else self.mode

    @classmethod
    def parse(cls, spec: str) -> Ranking:
        mode, _, model = spec.partition(":")
        return cls(mode, model or None)

    def label(self, champion: str | None = None) -> str:
        if self.mode != "learned":
            return self.mode
        suffix = " (champion)" if self.model == champion else ""
        return f"learned {self.model}{suffix}"


class Context:
    """What one script run knows about the workspace; cheap to build, engine loaded on demand."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.cfg: Config = load_config(settings.config, workspace=settings.workspace)
        self.workspace = Workspace(self.cfg.workspace)
        self.key = f"{Path(self.cfg.workspace).resolve()}|{settings.config or ''}"
        # Promote, roll back, the query log, grades and snapshots write only when started
        # with --writable.
        self.writable = settings.writable
        self._judgment_source: str | None = None  # None: the first of judgment_sources
        self.judgment_problem = ""  # why the judgment store could not be read
        # The filters of the rankings shown (``pick_filters``): conditions as typed, in order.
        self.where: tuple[str, ...] = ()

    @cached_property
    def serving(self):
        """The serving pointer, read once per script run, so generation and champion agree."""
        return self.workspace.serving_state()

    @cached_property
    def generation(self) -> int | None:
        """The index generation serving now; None for a workspace without documents."""
        if not self.workspace.exists():
            return None
        store = self.workspace.open_store()
        try:
            return self.workspace.serving_generation(store.version, self.serving)
        finally:
            store.close()

    @property
    def engine(self):
        if self.generation is None:
            raise BrainrankError(
                f"workspace {self.workspace.root} has no documents yet; run `brainrank ingest "
                f"PATH --workspace {self.workspace.root}` first"
            )
        return caches.engine(str(self.cfg.workspace), self.settings.config, self.generation)

    @cached_property
    def registry(self):
        from brainrank.ranker.registry.registry import Registry

        return Registry(self.workspace.models_dir)

    @cached_property
    def versions(self) -> list:
        return self.registry.versions() if self.workspace.models_dir.exists() else []

    @cached_property
    def champion(self) -> str | None:
        mv = self.registry.champion(self.serving) if self.workspace.models_dir.exists() else None
        return mv.version if mv else None

    @cached_property
    def rankings(self) -> list[Ranking]:
        """What the pickers offer: each model version in the learned mode, then fixed modes."""
        ordered = sorted(self.versions, key=lambda v: (v.version != self.champion, -v.number))
        return [Ranking("learned", v.version) for v in ordered] + [Ranking(m) for m in FIXED_MODES]

    def default_ranking(self) -> Ranking:
        """The champion when there is one, else hybrid (never an unservable choice)."""
        if self.champion:
            return Ranking("learned", self.champion)
        return Ranking("hybrid")

    # ----- judgments: the files given (--queries/--qrels) or the workspace's store --------

    @cached_property
    def judgment_sets(self) -> list[str]:
        """The judgment store's sets; [] without a store (a damaged one: judgment_problem)."""
        try:
            return store_set_names(self.workspace.root)
        except BrainrankError as exc:
            self.judgment_problem = str(exc)
            return []

    @property
    def judgment_sources(self) -> list[str]:
        """What the judged views can use: the files given, all the store's sets merged (what
        `brainrank train` learns from), each set."""
        s = self.settings
        files = [FILES] if s.queries is not None and s.qrels is not None else []
        sets = [ALL_SETS, *self.judgment_sets] if self.judgment_sets else []
        return files + sets

    @property
    def judgment_source(self) -> str | None:
        """The source picked (``use_judgments``) if still there, else the first one."""
        sources = self.judgment_sources
        if self._judgment_source in sources:
            return self._judgment_source
        return sources[0] if sources else None

    def source_label(self, source: str) -> str:
        if source == FILES:
            return f"files {self.settings.qrels.name}"
        return "all sets, merged" if source == ALL_SETS else f"set {source}"

    def use_judgments(self, source: str | None) -> None:
        self._judgment_source = source
        self.__dict__.pop("judged", None)

    def refresh_judgments(self) -> None:
        """Forget what this run read from the judgment store (after a grade was written)."""
        for name in ("judgment_sets", "judged"):
            self.__dict__.pop(name, None)

    def _files_judged(self) -> JudgedSet | None:
        s = self.settings
        if s.queries is None or s.qrels is None:
            return None
        return caches.judged(
            str(s.queries), str(s.qrels), caches.mtime(s.queries), caches.mtime(s.qrels)
        )

    @cached_property
    def judged(self) -> JudgedSet | None:
        """The judged queries of the source in use; None when there is none."""
        source = self.judgment_source
        if source is None:
            return None
        if source == FILES:
            return self._files_judged()
        return store_judged(self.workspace.root, None if source == ALL_SETS else source)

    def set_grades(self, set_name: str, query: str) -> tuple[str | None, dict[str, int]]:
        """(query id or None, doc id -> grade) of ``query`` in one set of the store."""
        judged = store_judged(self.workspace.root, set_name)
        qid = judged.find(query)
        return qid, (dict(judged.qrels[qid]) if qid else {})

    def save_grade(self, set_name: str, query: str, doc_id: str, grade: int) -> str:
        """Write one grade to the judgment store at once (``judgments.write_grade``); returns
        the query id. A read-only debugger (the default) refuses with ``ReadOnlyError``."""
        require_writable(self.writable, f"grade {doc_id}")
        files = self._files_judged()
        qid = write_grade(
            self.workspace.root, set_name, query, doc_id, grade, others=[files] if files else []
        )
        self.refresh_judgments()
        return qid

    @cached_property
    def monitor_config(self):
        """The [monitor] table of the config (``MonitorConfig``)."""
        return self.cfg.ops.monitor

    @property
    def has_query_log(self) -> bool:
        from brainrank.ranker.feedback.querylog import QueryLog

        return QueryLog.exists(self.workspace.root)

    # ----- cached computations ------------------------------------------------------------

    def monitor(self, window: str, refresh: int = 0):
        """``ranker.monitoring.drift.monitor`` over ``window`` ending now (a ``MonitorReport``).

        Cached for ``MONITOR_TTL`` seconds: new traffic shows up within that time (keying on
        the log's size would recompute on every load of a busy deployment). A new champion,
        index generation or log, or ``refresh``, recomputes at once.
        """
        mcfg = self.monitor_config
        return caches.monitor(
            self.cfg,
            mcfg,
            self.key,
            window,
            repr(mcfg),
            self.champion,
            self.generation,
            self.has_query_log,
            refresh,
        )

    def retrain_history(self) -> list[dict]:
        """The retrain reports in the registry (``models/retrain/``), oldest first."""
        from brainrank.ranker.monitoring.retrain import REPORTS_DIR

        folder = self.workspace.models_dir / REPORTS_DIR
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        signature = tuple((f.name, f.stat().st_mtime_ns) for f in files)
        return caches.retrain_history(str(self.workspace.models_dir), signature)

    def ranking(self, query: str, ranking: Ranking):
        """SearchResult of every candidate for ``query`` (top first), with its features,
        under the filters ``where``, with its ``facets`` (``tag_names``)."""
        return caches.ranking(
            self.engine,
            self.key,
            self.generation,
            query,
            ranking.mode,
            ranking.model,
            self.where,
            self.tag_names,
        )

    @property
    def tag_names(self) -> tuple[str, ...]:
        """The tags documents of the serving generation have (the first ``MAX_FACETS``)."""
        from brainrank.ranker.retrieval.filters import MAX_FACETS

        names = sorted(
            n.split(":", 1)[1] for n in self.engine.generation.filter_columns if n[:4] == "tag:"
        )
        return tuple(names[:MAX_FACETS])

    def log_search(self, query: str, ranking: Ranking, k: int) -> str:
        """Append the top ``k`` of this ranking to the workspace's query log (source "ui").

        Returns the impression id. The caller decides when a view counts as a search
        (once per distinct query, ranking and k of a browser session); the Compare and
        "why not" pages never log, so their replays do not reach the monitors. A read-only
        debugger (the default) refuses with ``ReadOnlyError``.
        """
        require_writable(self.writable, "log this search")
        top = self.ranking(query, ranking).top(k)
        return str(caches.query_log(str(self.workspace.root)).record(top))

    def explained(self, query: str, model: str, doc_ids: tuple[str, ...]):
        """(CandidateFeatures, Explanation of ``doc_ids``, GAM sub-scores or None)."""
        return caches.explained(
            self.engine, self.key, self.generation, query, model, self.where, doc_ids
        )

    def decomposed(self, query: str, ranking: Ranking):
        """``ranker.learning.decompose.Decomposition`` of every candidate's score."""
        return caches.decomposed(
            self.engine, self.key, self.generation, query, ranking.mode, ranking.model, self.where
        )

    def correction(self, query: str, model: str, doc_id: str):
        """SHAP ``Explanation`` of ``doc_id``'s learned correction (score less fusion part)."""
        return caches.correction(
            self.engine, self.key, self.generation, query, model, self.where, doc_id
        )

    def matches(self, query: str, doc_id: str, query_vector=None):
        """(BM25 ``TermTable``, dense ``PassageMatch`` or None without a query vector)."""
        dense = query_vector is not None
        return caches.matches(
            self.engine, self.key, self.generation, query, doc_id, dense, query_vector
        )

    def filtered_out(self, doc_ids: list[str]) -> set[str]:
        """Those of ``doc_ids`` in the collection that do not meet the filters ``where``."""
        if not self.where:
            return set()
        _, allowed = self.engine.filter_mask(self.where)
        wanted = set(doc_ids)
        ids = self.engine.generation.doc_ids
        return {d for i, d in enumerate(ids) if d in wanted and not allowed[i]}

    def documents(self, doc_ids: list[str]) -> dict:
        """Documents by id from the store (ids not in it are left out)."""
        return self.engine.store.get(doc_ids)

    def why_not(self, query: str, model: str, target: str, above: str):
        """(feature rows of target and above [2, F], WhyNot)."""
        return caches.why_not(
            self.engine, self.key, self.generation, query, model, self.where, target, above
        )

    def standing(self, query: str, doc_id: str, ranking: Ranking):
        result = self.ranking(query, ranking)
        return caches.standing(
            self.engine, self.key, self.generation, query, doc_id, ranking.spec, self.where, result
        )

    def set_run(self, ranking: Ranking) -> SetRun:
        """nDCG@10 and top 10 of every judged query of the source in use under ``ranking``
        (over the whole collection: judgments are not filtered)."""
        judged = self.judged
        return caches.per_query(
            self.engine,
            self.key,
            self.generation,
            judged,
            f"{self.judgment_source}|{judged.digest}",
            ranking.mode,
            ranking.model,
        )

    def ndcg10_per_query(self, ranking: Ranking) -> dict[str, float]:
        return self.set_run(ranking).ndcg10
