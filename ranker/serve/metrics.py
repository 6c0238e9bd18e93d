"""The service's Prometheus metrics, summed over uvicorn's worker processes.

``brainrank serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before any worker
starts. prometheus_client then keeps each worker's values in files there, and ``render`` adds
them up, so a scrape that reaches any worker sees the whole service. Multiprocess mode has no
Info metric and cannot remove a label: the serving model is a gauge labelled by version, 1 for
the version a worker serves and 0 for one it no longer serves (``livemax`` across workers, so
a version reads 1 while any live worker still serves it).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own setting
# Seconds; a search takes 5-30 ms when warm, a cold model load seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NO_MODEL = "none"


class Metrics:
    """The metrics of one worker; ``render`` gives the whole service's in text format."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # A registry of its own, so apps built in one process (tests) never collide.
        r = self.registry = CollectorRegistry()
        by_request = ["endpoint", "status"]
        self.requests = Counter(
            "brainrank_requests", "HTTP requests by endpoint and status", by_request, registry=r
        )
        self.errors = Counter(
            "brainrank_request_errors",
            "HTTP requests answered with an error status (400 and above)",
            by_request,
            registry=r,
        )
        self.search_seconds = Histogram(
            "brainrank_search_seconds",
            "Time to answer POST /search (ranking and logging), by ranking mode",
            ["mode"],
            buckets=BUCKETS,
            registry=r,
        )
        self.model = Gauge(
            "brainrank_model_info",
            f"Champion model version served: 1 while served, 0 after ('{NO_MODEL}': no champion)",
            ["version"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.generation = Gauge(
            "brainrank_index_generation",
            "Index generation served",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.documents = Gauge(
            "brainrank_documents",
            "Documents in the index generation served",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.querylog_failures = Counter(
            "brainrank_querylog_failures",
            "Searches answered but not written to the query log",
            registry=r,
        )
        self.swaps = Counter(
            "brainrank_engine_swaps",
            "Engines swapped in after an ingest or a model promotion (the first load counts)",
            registry=r,
        )
        self._model_label: str | None = None

    def request(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()

    def serving(self, generation: int, model: str | None, documents: int) -> None:
        """Record what this worker serves after a swap."""
        label = model or NO_MODEL
        if self._model_label is not None and self._model_label != label:
            self.model.labels(self._model_label).set(0)
        self.model.labels(label).set(1)
        self._model_label = label
        self.generation.set(generation)
        self.documents.set(documents)
        self.swaps.inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text (all workers' values in multiprocess mode) and its media type."""
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Drop this worker's live gauges from the shared folder (the worker is exiting)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())
