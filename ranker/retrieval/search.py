"""The search service: the one query path shared by the CLI, evaluation and the debugger."""

from __future__ import annotations

import threading
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError, IndexMismatchError, InputError
from brainrank.index.jsontext import check_text
from brainrank.index.records import Hit
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import Config
from brainrank.ranker.encoding.loading import encoder_path_for, load_query_encoder
from brainrank.ranker.retrieval.candidates import Candidates, Generation
from brainrank.ranker.retrieval.filters import count_tags, matching, parse_filters
from brainrank.ranker.retrieval.fusion import minmax, order, rrf
from brainrank.ranker.retrieval.result import SearchResult
from brainrank.ranker.retrieval.verify import verify_generation

# The deepest rank a search serves (offset + k).
MAX_DEPTH = 1000
MODES = ("bm25", "dense", "hybrid", "hybrid-rrf", "hybrid-minmax", "learned")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    return mode


class SearchEngine:
    """Serves searches over a workspace's current index generation.

    The encoder is loaded on the first dense or hybrid query (a BERT encoder's ONNX export, so
    queries never pay for TensorFlow), and checked against the encoder the vector index was
    built with. Searches may run from several threads at once; each result carries its own
    features and query vector. An engine serves the generation and the champion that the
    serving pointer named when it was opened, read together (a promotion switches both, so
    they always fit); open a new one to follow a later ingest or promotion (the service's
    holder does).
    """

    def __init__(self, cfg: Config, *, encoder=None, generation: int | None = None, state=None):
        self.cfg = cfg
        self.workspace = Workspace(cfg.workspace)
        empty = BrainrankError(
            f"workspace {self.workspace.root} has no documents yet; "
            f"run `brainrank ingest PATH --workspace {self.workspace.root}` first"
        )
        if not self.workspace.exists():
            raise empty
        self.store = self.workspace.open_store()
        # ``state``: the serving pointer already read by the caller (with ``generation``).
        self._state = self.workspace.serving_state() if state is None else state
        number = generation or self.workspace.serving_generation(self.store.version, self._state)
        if number is None:
            raise empty
        directory = self.workspace.generation_dir(number)
        # Damage is one line naming the file and `brainrank reindex`, never a wrong answer.
        verify_generation(directory)
        self.store.check_built_from(self.workspace.manifest(number), directory.name)
        self.generation = Generation(directory)
        if len(self.generation) == 0:
            raise empty
        self._encoder = encoder
        if encoder is not None:
            self.generation.vectors.check_encoder(encoder.fingerprint)
        self._models: dict[str, object] = {}
        self._champion = None  # (ModelVersion or None,) once read
        self._loading = threading.Lock()  # one thread loads the encoder or a model, once
        _single_thread_faiss()

    @property
    def encoder(self):
        with self._loading:
            if self._encoder is None:
                path = encoder_path_for(self.cfg, self.generation.manifest)
                encoder = load_query_encoder(path, self.cfg.encoder.max_length)
                self.generation.vectors.check_encoder(encoder.fingerprint)
                self._encoder = encoder
        return self._encoder

    @property
    def registry(self):
        from brainrank.ranker.registry.registry import Registry

        return Registry(self.workspace.models_dir)

    def index_files(self) -> list[Path]:
        """The files searches read: this generation's indexes and the document store."""
        files = sorted(p for p in self.generation.directory.rglob("*") if p.is_file())
        return [*files, self.workspace.store_path]

    def default_mode(self) -> str:
        """The configured mode; ``auto`` means learned once a champion exists, else hybrid."""
        mode = self.cfg.retrieval.default_mode
        if mode != "auto":
            return mode
        return "learned" if self.champion() is not None else "hybrid"

    def champion(self):
        """The champion's ModelVersion as of opening (None before the first promotion)."""
        if self._champion is None:
            self._champion = (self.registry.champion(self._state),)
        return self._champion[0]

    def model(self, version: str | None = None):
        """A learned model for serving (the champion by default), checked against the index."""
        reg = self.registry
        if version == "latest":
            versions = reg.versions()
            mv = versions[-1] if versions else None
        else:
            mv = reg.get(version) if version else self.champion()
        if mv is None:
            raise BrainrankError(reg.no_champion())
        if not mv.has_ranker:
            raise BrainrankError(
                f"model {mv.version} holds only an adapted encoder and no ranker; search it in "
                "a fixed mode, or train a ranker with `brainrank train`"
            )
        with self._loading:
            if mv.version not in self._models:
                model = _load_model(mv)
                model.check_generation(self.generation)
                self._models[mv.version] = (model, model.extractor(self.generation))
        return self._models[mv.version]

    def validate_query(self, query: str) -> str:
        if not isinstance(query, str):
            raise InputError(f"the query must be a string, not {type(query).__name__}")
        if not query.strip():
            raise InputError("the query is empty; type some words to search for")
        try:
            check_text(query, "the query")
        except ValueError as exc:  # a lone surrogate: from a JSON escape or a non-UTF-8 argument
            raise InputError(str(exc)) from None
        limit = self.cfg.retrieval.max_query_chars
        if len(query) > limit:
            raise InputError(
                f"the query is {len(query)} characters long; the limit is {limit} "
                "([retrieval] max_query_chars in the config)"
            )
        return query.strip()

    def filter_mask(self, where) -> tuple[tuple, np.ndarray | None]:
        """The conditions of ``where`` (``retrieval.filters``) and which of the generation's
        documents meet them all (None without a condition)."""
        conditions = parse_filters(where)
        g = self.generation
        return conditions, matching(conditions, g.filter_columns, len(g))

    def candidates(
        self, query: str, mode: str = "hybrid", allowed: np.ndarray | None = None
    ) -> Candidates:
        """The candidate set and raw signals behind a search (for features and the debugger);
        ``allowed`` (``matching``) keeps it to the documents a filter lets through."""
        query = self.validate_query(query)
        vector = None
        if check_mode(mode) != "bm25":  # learned mode ranks the hybrid candidates
            vector = self.encoder.encode([query])[0]
        fingerprint = self._encoder.fingerprint if self._encoder is not None else None
        n = self.cfg.retrieval.candidates
        return self.generation.candidates(query, vector, n, fingerprint, allowed)

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        mode: str | None = None,
        model: str | None = None,
        snippets: bool = False,
        where: str | Sequence[str] | None = None,
        offset: int = 0,
        facets: Sequence[str] | None = None,
    ) -> SearchResult:
        """Rank the collection for ``query`` and return the top ``k`` hits with their signals.

        ``model`` picks a registry version for the learned mode (default: the champion;
        ``latest`` is the newest version). ``snippets`` adds each hit's query-biased snippet
        (``retrieval.snippets``). ``where``: conditions on the timestamp, numeric fields and
        tags that every hit must meet, such as ``["price < 30", "category = help"]``
        (``retrieval.filters``). ``offset`` skips that many hits, for the next page: ranks
        ``offset + 1`` to ``offset + k`` of the same ranking (which reaches as deep as the
        candidates, ``[retrieval] candidates`` from each retriever). ``facets`` names tags
        to count among the documents the search ranked (``result.facets``).
        """
        mode = check_mode(mode or self.default_mode())
        for name, value in (("k", k), ("offset", offset)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InputError(f"{name} must be a whole number, not {value!r}")
        if k < 1:
            raise InputError(f"k must be at least 1, not {k}")
        if offset < 0:
            raise InputError(f"offset must be 0 or more, not {offset}")
        if offset + k > MAX_DEPTH:
            raise InputError(
                f"offset + k is {offset + k}; a ranking is served up to rank {MAX_DEPTH}"
            )
        conditions = parse_filters(where)  # a bad filter fails before anything loads
        # Load what the mode needs first: latency_ms is the search, not a cold start.
        if mode == "learned":
            self.model(model)
        if mode != "bm25":
            self.encoder  # noqa: B018 (loads on first use)
        t0 = time.perf_counter()
        _, allowed = self.filter_mask(conditions)
        cand = self.candidates(query, mode, allowed)
        features = names = version = in_domain = None
        if mode == "learned":
            learned, extractor = self.model(model)
            scored = learned.score(extractor, query.strip(), cand)
            scores, keep = scored.scores, np.arange(len(cand.positions))
            in_domain = bool(scored.in_domain)
            features, names = scored.features, tuple(learned.schema.names)
            version = learned.version.version if learned.version else None
        else:
            scores, keep = self._fuse(cand, mode)
        counted = None
        if facets:
            counted = count_tags(facets, self.generation.filter_columns, cand.positions[keep])
        idx = keep[order(scores[keep], cand.positions[keep])][offset : offset + k]
        ids = self.generation.doc_ids
        hits = [
            Hit(
                doc_id=ids[cand.positions[i]],
                rank=r,
                score=float(scores[i]),
                signals=_signals(cand, i),
            )
            for r, i in enumerate(idx, start=offset + 1)
        ]
        docs = self.store.get([h.doc_id for h in hits])
        # A document deleted after the index was built is dropped (with its candidate slot).
        kept = [(i, h) for i, h in zip(idx, hits, strict=True) if h.doc_id in docs]
        idx = np.asarray([i for i, _ in kept], dtype=np.int64)
        hits = [
            Hit(h.doc_id, r, h.score, h.signals) for r, (_, h) in enumerate(kept, start=offset + 1)
        ]
        vector = cand.query_vector if self.generation.vectors is not None else None
        found = None
        if snippets:
            from brainrank.ranker.retrieval.snippets import make_snippet

            bm25 = self.generation.bm25
            found = {h.doc_id: make_snippet(bm25, docs[h.doc_id].text, query) for h in hits}
        return SearchResult(
            query,
            mode,
            hits,
            docs,
            latency_ms=(time.perf_counter() - t0) * 1000,
            candidates=len(cand.positions),
            model=version,
            in_domain=in_domain,
            features=np.asarray(features[idx], np.float32) if features is not None else None,
            feature_names=names,
            query_vector=vector,
            encoder=self.generation.vectors.encoder.fingerprint if vector is not None else None,
            snippets=found,
            filters=tuple(c.text for c in conditions),
            offset=offset,
            facets=counted,
        )

    def _fuse(self, cand: Candidates, mode: str) -> tuple[np.ndarray, np.ndarray]:
        """Scores over all candidates and which candidates the mode may return."""
        everyone = np.arange(len(cand.positions))
        if mode == "bm25":
            return cand.bm25.astype(np.float64), np.flatnonzero(cand.bm25_rank > 0)
        if mode == "dense":
            return cand.dense.astype(np.float64), np.flatnonzero(cand.dense_rank > 0)
        r = self.cfg.retrieval
        fusion = {"hybrid": r.fusion, "hybrid-rrf": "rrf", "hybrid-minmax": "minmax"}[mode]
        if fusion == "rrf":
            return rrf(cand.bm25_rank, cand.dense_rank, k=r.rrf_k), everyone
        return minmax([cand.bm25, cand.dense], [1 - r.dense_weight, r.dense_weight]), everyone

    def close(self) -> None:
        self.store.close()


def _load_model(mv):
    """A model version checked against the checksums in its model.json, then loaded; damage
    is one line naming the file and the commands that put another model in service."""
    from brainrank.ranker.learning.learned import LearnedModel
    from brainrank.ranker.registry.version import REPAIR, verify_version

    verify_version(mv)
    try:
        return LearnedModel.load(mv)
    except IndexMismatchError:
        raise
    except BrainrankError as exc:
        raise BrainrankError(f"model {mv.version}: {exc}; {REPAIR}") from None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise BrainrankError(f"model {mv.version} is unreadable ({exc}); {REPAIR}") from None


def _signals(cand: Candidates, i: int) -> dict[str, float]:
    out = {"bm25": float(cand.bm25[i]), "dense": float(cand.dense[i])}
    if cand.bm25_rank[i]:
        out["bm25_rank"] = int(cand.bm25_rank[i])
    if cand.dense_rank[i]:
        out["dense_rank"] = int(cand.dense_rank[i])
    return out


def _single_thread_faiss() -> None:
    # One query at a time: OpenMP's fork/join costs more than it saves on small machines.
    import faiss

    faiss.omp_set_num_threads(1)
