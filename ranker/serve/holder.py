"""The engine a service worker searches with, replaced when the workspace moves on.

Other processes change what should serve through one pointer file, the workspace's
``SERVING`` (``index.serving``), replaced atomically: it names the index generation and the
champion model together (``ingest`` and ``reindex`` move the generation, ``models promote``,
``rollback``, ``models import --promote`` and ``retrain`` move both at once). A holder's watcher
thread stats it every ``poll_seconds`` (and the two legacy pointers it replaces, for a workspace
not yet migrated). When it changed the holder reads it once, opens a new ``SearchEngine`` on the
generation that should serve, reads its files into the page cache (``[service] preload``),
warms it with one search with the champion the same read named
(the encoder is reused when the generation was embedded with the same one), and then replaces
its reference in one assignment. A request reads the reference once and uses that engine to the
end, so a swap never fails a request in flight; an engine swapped out is closed
``grace_seconds`` later. Until the first engine is open the holder is not ready. When opening
or warming a new engine fails the old engine serves on, with the champion it was warmed with,
while the holder retries. Indexes and models are only read here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from brainrank.index.errors import BrainrankError
from brainrank.index.preload import preload
from brainrank.index.serving import LEGACY_CHAMPION, LEGACY_GENERATION
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import Config
from brainrank.ranker.encoding.loading import encoder_path_for, load_query_encoder

log = logging.getLogger("brainrank.serve")

WARM_QUERY = "warm up the engine"


@dataclass(frozen=True)
class Serving:
    """One opened engine and what it serves."""

    searcher: object  # ranker.retrieval.search.SearchEngine
    generation: int
    model: str | None  # the champion it was opened with; None before the first promotion
    documents: int
    opened: float  # epoch seconds

    def describe(self) -> dict:
        return {"model": self.model, "generation": self.generation, "documents": self.documents}


class EngineHolder:
    """Holds the ``Serving`` of one worker and swaps in a new one when the pointers move."""

    def __init__(
        self,
        cfg: Config,
        *,
        poll_seconds: float = 0.5,
        grace_seconds: float = 30.0,
        on_swap: Callable[[Serving], None] = lambda serving: None,
    ):
        self.cfg = cfg
        self.workspace = Workspace(cfg.workspace)
        self.poll_seconds = poll_seconds
        self.grace_seconds = grace_seconds
        self.on_swap = on_swap
        self.problem: str | None = None  # why the last open failed, for /readyz
        self._serving: Serving | None = None
        self._seen: tuple | None = None  # pointer stamps the serving engine was opened after
        self._retired: list[tuple[float, Serving]] = []
        self._encoders: dict[Path, object] = {}
        self._swap = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def serving(self) -> Serving | None:
        """The engine to use for one request (read once per request); None until loaded."""
        return self._serving

    # -- lifetime ----------------------------------------------------------------------------
    def start(self) -> None:
        """Open the first engine and watch the pointers, in a background thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="brainrank-holder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._swap:
            everything = [s for _, s in self._retired]
            if self._serving is not None:
                everything.append(self._serving)
            self._serving, self._retired = None, []
        for serving in everything:
            serving.searcher.close()

    def _watch(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.refresh()
                failures = 0
            except Exception as exc:  # keep serving the old engine; say why once per reason
                failures += 1
                message = str(exc)
                if not isinstance(exc, BrainrankError):
                    message = f"{type(exc).__name__}: {message}"
                if message != self.problem:
                    log.warning("cannot open the engine of %s: %s", self.workspace.root, message)
                self.problem = message
            self._close_retired()
            # Back off while opening fails (a missing encoder must not be reloaded twice a second).
            self._stop.wait(min(self.poll_seconds * 2 ** max(failures - 1, 0), 10.0))

    # -- swapping ----------------------------------------------------------------------------
    def stamps(self) -> tuple:
        """(inode, mtime, size) of the serving pointer (and the legacy ones); None if missing."""
        root = self.workspace.root
        out = []
        for path in (self.workspace.serving_file, root / LEGACY_GENERATION, root / LEGACY_CHAMPION):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                out.append(None)
                continue
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def refresh(self) -> bool:
        """Swap in a new engine when the pointers moved (or none is open); True if swapped."""
        stamps = self.stamps()  # before opening: a move during the open is seen next time
        if self._serving is not None and stamps == self._seen:
            return False
        new, warm_error = self._open()
        if warm_error is not None and self._serving is not None:
            # Keep serving what works and try again at the next poll.
            new.searcher.close()
            raise BrainrankError(f"kept the engine serving; the new one fails: {warm_error}")
        with self._swap:
            old, self._serving, self._seen = self._serving, new, stamps
            if old is not None:
                self._retired.append((time.monotonic(), old))
        self.problem = None
        log.info(
            "serving generation %d (%d documents), model %s",
            new.generation,
            new.documents,
            new.model or "none (no champion)",
        )
        if warm_error is not None:  # nothing better to serve: answer what fails with why
            log.warning("the warm-up search failed: %s", warm_error)
        self.on_swap(new)
        return True

    def _open(self) -> tuple[Serving, BrainrankError | None]:
        """A new engine on the generation that should serve, and the error of its warm-up."""
        from brainrank.ranker.retrieval.search import SearchEngine

        if not self.workspace.exists():
            raise BrainrankError(
                f"workspace {self.workspace.root} has no documents yet; run `brainrank ingest`"
            )
        state = self.workspace.serving_state()  # one read: generation and champion agree
        store = self.workspace.open_store()
        try:
            number = self.workspace.serving_generation(store.version, state)
        finally:
            store.close()
        if number is None:
            raise BrainrankError(f"workspace {self.workspace.root} has no index generation yet")
        encoder = self._encoder(encoder_path_for(self.cfg, self.workspace.manifest(number)))
        searcher = SearchEngine(self.cfg, encoder=encoder, generation=number, state=state)
        model = warm_error = None
        try:
            if self.cfg.service.preload:
                t = time.perf_counter()
                size = preload(searcher.index_files())
                log.info("preloaded %.0f MB in %.1f s", size / 1e6, time.perf_counter() - t)
            champion = searcher.champion()
            model = champion.version if champion is not None else None
            searcher.search(WARM_QUERY, k=1, model=model)
        except BrainrankError as exc:
            warm_error = exc
        except BaseException:
            searcher.close()
            raise
        serving = Serving(searcher, number, model, len(searcher.generation), time.time())
        return serving, warm_error

    def _encoder(self, path: Path):
        """The query encoder at ``path``, kept across swaps (only the latest one is kept)."""
        if path not in self._encoders:
            # The loader SearchEngine uses, so the service embeds queries as the CLI does.
            # Two threads that sleep when idle (no spinning): a lone request embeds its query
            # on two cores, and under load the workers (one per core) share them without
            # fighting (bench_serve.py: p50 19 ms vs 20.5 ms with one thread at 1 client,
            # 87 vs 84 requests/s at 8, SciFact, 2-core Zen 4).
            encoder = load_query_encoder(path, self.cfg.encoder.max_length, threads=2)
            self._encoders = {path: encoder}
        return self._encoders[path]

    def _close_retired(self) -> None:
        now = time.monotonic()
        with self._swap:
            due = [s for t, s in self._retired if now - t >= self.grace_seconds]
            self._retired = [(t, s) for t, s in self._retired if now - t < self.grace_seconds]
        for serving in due:
            serving.searcher.close()
