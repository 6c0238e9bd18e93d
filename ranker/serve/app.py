"""The HTTP service: search, documents, feedback, health and metrics over one workspace.

``brainrank serve`` runs ``factory`` in each uvicorn worker; tests and embedders can call
``create_app`` with a ``Config``. A search ranks exactly as the CLI and the Python API do (the
same ``SearchEngine.search``) and is written to the query log with source ``service``.
Searches, documents, health and metrics are open; with a token, ``POST /feedback`` needs
``Authorization: Bearer <token>``. Errors are ``{"error": "..."}`` (``serve.errors``).
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from brainrank.index.errors import InputError
from brainrank.ranker.config import Config, load_config
from brainrank.ranker.feedback.fields import parse_time
from brainrank.ranker.retrieval.filters import MAX_FACETS, MAX_FILTERS
from brainrank.ranker.serve.errors import BodyLimit, Observe, install_handlers
from brainrank.ranker.serve.holder import EngineHolder, Serving
from brainrank.ranker.serve.metrics import Metrics
from brainrank.ranker.serve.searchlog import LogUnavailable, ServiceLog, log_path

log = logging.getLogger("brainrank.serve")

# How ``brainrank serve`` hands settings to its worker processes.
TOKEN_ENV = "BRAINRANK_TOKEN"
MAX_K = 1000


Strings = list[Annotated[str, Field(strict=True)]]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Annotated[str, Field(strict=True, description="What to search for")]
    k: Annotated[int, Field(strict=True, ge=1, le=MAX_K, description="Number of hits")] = 10
    offset: Annotated[
        int,
        Field(
            strict=True,
            ge=0,
            lt=MAX_K,
            description="Hits to skip, for the next page (offset + k at most 1000)",
        ),
    ] = 0
    mode: Annotated[
        str | None,
        Field(
            strict=True,
            description="bm25, dense, hybrid, hybrid-rrf, hybrid-minmax or learned "
            "(default: learned once a model is promoted, else hybrid)",
        ),
    ] = None
    model: Annotated[
        str | None,
        Field(strict=True, description="Model version for the learned mode (default: champion)"),
    ] = None
    snippets: Annotated[
        bool,
        Field(
            strict=True,
            description="Add each hit's snippet: the stretch of its text with the most query "
            "terms, and where they are in it",
        ),
    ] = False
    where: Annotated[
        Strings | None,
        Field(
            max_length=MAX_FILTERS,
            description="Conditions every hit must meet, on the timestamp, a numeric field or "
            'a tag: ["price < 30", "timestamp > now-30d", "category in (help, catalog)"]',
        ),
    ] = None
    facets: Annotated[
        Strings | None,
        Field(
            max_length=MAX_FACETS,
            description="Tags to count among the documents the search ranked: "
            '["category"] gives {"category": {"help": 12, "catalog": 40}}',
        ),
    ] = None


class Snippet(BaseModel):
    text: str
    highlights: list[tuple[int, int]] = Field(
        description="[start, end) character spans of the words that matched the query"
    )


class Hit(BaseModel):
    rank: int
    id: str
    title: str | None
    score: float
    signals: dict[str, float]
    snippet: Snippet | None = Field(None, description="Only when the request asked for snippets")


class SearchResponse(BaseModel):
    query: str
    mode: str
    model: str | None
    took_ms: float
    impression_id: str | None = Field(description="For POST /feedback; null when not logged")
    filters: list[str] | None = Field(None, description="Only when the request had `where`")
    offset: int | None = Field(None, description="Only when the request skipped hits")
    facets: dict[str, dict[str, int]] | None = Field(
        None, description="Only when the request asked for facets"
    )
    hits: list[Hit]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    impression_id: Annotated[str, Field(strict=True, min_length=1)]
    clicks: Annotated[list[Annotated[str, Field(strict=True, min_length=1)]], Field(min_length=1)]
    time: Annotated[
        str | None, Field(strict=True, description="ISO 8601 with a zone (default: now)")
    ] = None


class ErrorResponse(BaseModel):
    error: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


def factory() -> FastAPI:
    """The app of one uvicorn worker: the config from ``BRAINRANK_WORKSPACE`` and
    ``BRAINRANK_CONFIG``, the feedback token from ``BRAINRANK_TOKEN`` (set by ``brainrank
    serve`` before its workers start)."""
    # Beside uvicorn's lines: what is served and what failed, not every library's chatter.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s:     %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    from threadpoolctl import threadpool_limits

    # A worker per core: the numeric libraries already loaded compute on one thread (the
    # ones loaded later read OPENBLAS_NUM_THREADS and OMP_NUM_THREADS, set by `brainrank serve`).
    threadpool_limits(limits=1)
    return create_app(load_config(), token=os.environ.get(TOKEN_ENV) or None)


def create_app(cfg: Config, *, token: str | None = None, poll_seconds: float = 0.5) -> FastAPI:
    """The service over ``cfg.workspace``; it loads its engine in the background on start-up."""
    metrics = Metrics()
    holder = EngineHolder(
        cfg,
        poll_seconds=poll_seconds,
        on_swap=lambda s: metrics.serving(s.generation, s.model, s.documents),
    )
    qlog = ServiceLog(log_path(cfg), on_failure=metrics.querylog_failures.inc)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        holder.start()
        try:
            yield
        finally:
            holder.stop()
            qlog.close()
            metrics.close()

    app = FastAPI(
        title="brainrank",
        summary="Hybrid search with a learned ranker",
        lifespan=lifespan,
    )
    app.state.holder, app.state.metrics, app.state.query_log = holder, metrics, qlog
    install_handlers(app)
    app.add_middleware(BodyLimit)
    paths = {getattr(r, "path", "") for r in app.routes}
    app.add_middleware(Observe, record=metrics.request, endpoints=lambda: paths)

    def ready() -> Serving:
        serving = holder.serving
        if serving is None:
            why = holder.problem or "the engine is still loading"
            raise HTTPException(503, f"not ready: {why}", headers={"Retry-After": "1"})
        return serving

    def authorised(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise HTTPException(
                401,
                "POST /feedback needs Authorization: Bearer <token>",
                {"WWW-Authenticate": "Bearer"},
            )

    @app.post(
        "/search",
        response_model=None,
        responses={200: {"model": SearchResponse}, **_errors(400, 404, 413, 503)},
    )
    def search(body: SearchRequest) -> Response:
        """The top ``k`` documents for ``query``, with the signals behind each score."""
        serving = ready()
        searcher = serving.searcher
        model = _check_model(serving, body)
        t0 = time.perf_counter()
        result = searcher.search(
            body.query,
            k=body.k,
            mode=body.mode,
            model=model,
            snippets=body.snippets,
            where=body.where,
            offset=body.offset,
            facets=body.facets,
        )
        qlog.record(result)
        metrics.search_seconds.labels(result.mode).observe(time.perf_counter() - t0)
        # Plain JSON types already: straight to the encoder, not through jsonable_encoder.
        return JSONResponse(result.to_dict())

    @app.get("/documents/{doc_id:path}", responses=_errors(404, 503))
    def document(doc_id: str) -> dict:
        """The stored document with id ``doc_id`` (URL-encoded)."""
        found = ready().searcher.store.get([doc_id])
        if doc_id not in found:
            raise HTTPException(404, f"no document with id {doc_id!r}")
        doc = found[doc_id]
        return {
            "id": doc.doc_id,
            "title": doc.title,
            "text": doc.text,
            "timestamp": doc.timestamp.isoformat() if doc.timestamp else None,
            "fields": doc.fields,
            "tags": doc.tags,
        }

    @app.post(
        "/feedback",
        dependencies=[Depends(authorised)],
        responses=_errors(400, 401, 413, 503),
    )
    def feedback(body: FeedbackRequest) -> dict:
        """Store clicks on the hits of a logged search, as `brainrank feedback` would."""
        if body.time is not None:
            try:
                parse_time(body.time)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        try:
            when = time.time() if body.time is None else body.time
            clicks = [
                {"impression_id": body.impression_id, "doc_id": d, "time": when}
                for d in body.clicks
            ]
            report = qlog.import_clicks(clicks)
        except LogUnavailable as exc:
            raise HTTPException(503, str(exc)) from None
        return {"imported": report.imported, "duplicates": report.duplicates}

    @app.get("/healthz")
    def healthz() -> dict:
        """Alive (200) as soon as the worker runs, ready or not."""
        return {"status": "ok"}

    @app.get("/readyz", responses=_errors(503))
    def readyz() -> dict:
        """200 with what this worker serves once its engine is loaded, 503 before. ``worker``
        is the process id: each worker swaps on its own, so a client checking that every worker
        moved on tells them apart by it."""
        return {**ready().describe(), "worker": os.getpid()}

    @app.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        """Prometheus metrics of all workers, in text format."""
        body, media_type = metrics.render()
        return Response(body, media_type=media_type)

    paths.update(getattr(r, "path", "") for r in app.routes)
    return app


def _check_model(serving: Serving, body: SearchRequest) -> str | None:
    """The model version to rank with (pinned to the one the engine was warmed with); 404 for
    a version the registry does not have, or a learned search with no champion."""
    searcher = serving.searcher
    if body.mode is not None:
        from brainrank.ranker.retrieval.search import check_mode

        check_mode(body.mode)
    if body.model is not None:
        registry = searcher.registry
        try:
            if body.model == "latest":
                if not registry.versions():
                    raise InputError("no model versions yet; train one with `brainrank train`")
            else:
                registry.get(body.model)
        except InputError as exc:
            raise HTTPException(404, str(exc)) from None
        return body.model
    if serving.model is None and (body.mode or searcher.default_mode()) == "learned":
        raise HTTPException(404, searcher.registry.no_champion())
    return serving.model
