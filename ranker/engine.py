"""The Python API: ``brainrank.open(workspace)`` and the ``Engine`` it returns.

An engine serves searches over a workspace's current index generation and champion, and
ingests documents into it. It is what the CLI's commands call, so a script, the CLI and the
HTTP service rank a query the same way. Heavy libraries load on first use.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainrank.index.errors import BrainrankError, InputError
from brainrank.index.records import Document
from brainrank.ranker.config import Config, load_config
from brainrank.ranker.retrieval.result import SearchResult

if TYPE_CHECKING:
    from brainrank.ranker.learning.explain import Explanation
    from brainrank.ranker.progress import Progress
    from brainrank.ranker.retrieval.indexing import IngestReport
    from brainrank.ranker.retrieval.search import SearchEngine


def open(workspace: str | Path | None = None, config: str | Path | Config | None = None) -> Engine:
    """Open the search engine of ``workspace`` (default: ``BRAINRANK_WORKSPACE`` or
    ``./brainrank-data``) with an optional TOML ``config`` file or a ``Config``."""
    if workspace is not None and not isinstance(workspace, str | os.PathLike):
        raise InputError(f"workspace must be a path, not {type(workspace).__name__}")
    if config is not None and not isinstance(config, str | os.PathLike | Config):
        raise InputError(
            f"config must be a TOML file's path or a brainrank.Config, not {type(config).__name__}"
        )
    if isinstance(config, Config):
        cfg = (
            config if workspace is None else dataclasses.replace(config, workspace=Path(workspace))
        )
    else:
        cfg = load_config(Path(config) if config else None, workspace=workspace)
    return Engine(cfg)


class Engine:
    """Search, explain and ingest over one workspace. Use it as a context manager.

    Searches are not written to the query log unless ``log=True`` (the CLI and the service
    log what they serve). After ``ingest`` the next search sees the new index generation.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._searcher: SearchEngine | None = None
        self._log = None
        self._lock = threading.Lock()

    # ----- searching ----------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str | None = None,
        model: str | None = None,
        *,
        log: bool = False,
        snippets: bool = False,
        where: str | Sequence[str] | None = None,
        offset: int = 0,
        facets: Sequence[str] | None = None,
    ) -> SearchResult:
        """The top ``k`` documents for ``query``.

        ``mode`` is one of bm25, dense, hybrid, hybrid-rrf, hybrid-minmax, learned (default:
        learned once a model is promoted, else hybrid); ``model`` a registry version for the
        learned mode (default: the champion; ``latest`` is the newest version). With
        ``snippets``, ``result.snippets`` holds each hit's query-biased snippet: the stretch of
        its text with the most query terms, and where they are in it. ``where`` keeps the
        hits to documents meeting every condition on the timestamp, a numeric field or a tag:
        ``where=["price < 30", "timestamp > now-30d", "category in (help, catalog)"]``.
        ``offset`` pages: ``offset=10`` gives ranks 11 to ``10 + k`` of the same ranking.
        ``facets=["category"]`` counts each tag value among the documents the search ranked
        (its candidates): ``result.facets == {"category": {"help": 12, "catalog": 40}}``.
        """
        result = self.searcher.search(
            query,
            k=k,
            mode=mode,
            model=model,
            snippets=snippets,
            where=where,
            offset=offset,
            facets=facets,
        )
        if log:
            self._query_log().record(result)
        return result

    def search_many(
        self,
        queries: Iterable[str] | Mapping[str, str],
        k: int = 10,
        mode: str | None = None,
        model: str | None = None,
        *,
        log: bool = False,
        where: str | Sequence[str] | None = None,
    ) -> list[SearchResult] | dict[str, SearchResult]:
        """Search each query (all with the same ``where`` filters); a mapping of query id to
        text gives a dict by the same ids."""
        if isinstance(queries, str):
            raise InputError("search_many takes a list of queries; use search for one query")
        if isinstance(queries, Mapping):
            return {
                qid: self.search(text, k, mode, model, log=log, where=where)
                for qid, text in queries.items()
            }
        return [self.search(text, k, mode, model, log=log, where=where) for text in queries]

    def explain(
        self,
        query: str,
        doc_ids: Iterable[str] | None = None,
        *,
        k: int = 10,
        model: str | None = None,
        where: str | Sequence[str] | None = None,
    ) -> Explanation:
        """Per-feature attributions (SHAP) of the learned model's score of each document.

        ``doc_ids`` defaults to the top ``k`` of the learned ranking; any candidate of the
        query can be explained. ``values.sum(1) + base_values == scores`` for every row.
        ``where``: the filters of the search explained (its candidates are those that match).
        """
        from brainrank.ranker.learning.explain import candidate_features, explain

        searcher = self.searcher
        features = candidate_features(searcher, query, model, where)
        if doc_ids is None:
            ranked = self.search(query, k=k, mode="learned", model=model, where=where)
            doc_ids = [h.doc_id for h in ranked.hits]
        doc_ids = list(doc_ids)
        learned, _ = searcher.model(model)
        x = features.rows(doc_ids)
        explained = explain(learned, x, background=features.features, method="auto")
        return dataclasses.replace(explained, doc_ids=tuple(doc_ids))

    def document(self, doc_id: str) -> Document:
        """The stored document with id ``doc_id``."""
        found = self.searcher.store.get([doc_id])
        if doc_id not in found:
            raise InputError(f"no document with id {doc_id!r} in {self.cfg.workspace}")
        return found[doc_id]

    # ----- writing ------------------------------------------------------------------------

    def ingest(
        self,
        source: str | Path | Iterable[Mapping[str, Any] | Document] = (),
        *,
        delete: Iterable[str] = (),
        skip_bad: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Add or update documents (a file or BEIR folder, or records) and delete ``delete``.

        Records are dicts as in a JSONL file (``id``, ``title``, ``text``, ``timestamp``, ...)
        or ``Document``s. Indexes are brought up to date atomically: a failure leaves what
        served before serving. Bad records raise, or are skipped and listed in the report's
        ``skipped`` with ``skip_bad``.
        """
        from brainrank.index.readers import read_documents, read_records

        delete = [delete] if isinstance(delete, str) else list(delete)  # one id, or several
        limit = self.cfg.ingest.max_text_chars
        if (
            source is None
            or isinstance(source, Mapping | bytes)
            or not (isinstance(source, str | os.PathLike) or isinstance(source, Iterable))
        ):
            raise InputError(
                "ingest takes a file or folder path, or a list of records (dicts or "
                f"brainrank.Document), not {type(source).__name__}"
            )
        if isinstance(source, str | os.PathLike):
            read = read_documents(source, skip_bad=skip_bad, max_text_chars=limit)
        elif source == () and delete:
            read = None
        else:
            read = read_records(source, skip_bad=skip_bad, max_text_chars=limit)
        report = update_collection(
            self.cfg,
            documents=read.documents if read else (),
            delete=delete,
            progress=progress,
        )
        report.skipped = read.skipped if read else []
        report.truncated = read.truncated if read else 0
        report.dropped = read.dropped if read else []
        report.ignored = read.ignored if read else {}
        self._reopen()
        return report

    # ----- lifetime -----------------------------------------------------------------------

    @property
    def searcher(self) -> SearchEngine:
        """The ``SearchEngine`` serving now (opened on first use, reopened after ingest)."""
        with self._lock:
            if self._searcher is None:
                from brainrank.ranker.retrieval.search import SearchEngine

                self._searcher = SearchEngine(self.cfg)
            return self._searcher

    def _query_log(self):
        with self._lock:
            if self._log is None:
                from brainrank.ranker.feedback.querylog import QueryLog

                self._log = QueryLog.open(self.cfg.workspace, source="api")
            return self._log

    def _reopen(self) -> None:
        with self._lock:
            if self._searcher is not None:
                self._searcher.close()
                self._searcher = None

    def close(self) -> None:
        """Release the document store and the query log."""
        self._reopen()
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"brainrank.Engine({str(self.cfg.workspace)!r})"


def update_collection(
    cfg: Config,
    *,
    documents=(),
    delete=(),
    rebuild: bool = False,
    progress: Progress | None = None,
    bulk_loader=None,
) -> IngestReport:
    """Store ``documents``, delete ids and bring the indexes up to date (ingest and reindex).

    ``bulk_loader(path, encoder_cfg)`` loads the encoder that embeds (default
    ``load_bulk_encoder``; ``--ray`` passes ``ray_bulk.ray_loader``)."""
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.encoding.bulk import load_bulk_encoder
    from brainrank.ranker.encoding.loading import encoder_path_for, serving_manifest
    from brainrank.ranker.retrieval.indexing import update_indexes

    load = bulk_loader or load_bulk_encoder
    if rebuild and not documents and not delete:  # `reindex`: whatever state the indexes are in
        from brainrank.ranker.retrieval.reindex import rebuild_indexes

        return rebuild_indexes(cfg, progress=progress, bulk_loader=load)
    ws = Workspace(cfg.workspace)
    if rebuild and not ws.exists():
        raise BrainrankError(f"workspace {ws.root} has no documents; run `brainrank ingest` first")
    path = encoder_path_for(cfg, serving_manifest(ws))
    return update_indexes(
        ws,
        cfg,
        documents=documents,
        delete_ids=list(delete),
        rebuild=rebuild,
        encoder_factory=lambda: load(path, cfg.encoder),
        encoder_path=path,
        progress=progress,
    )
