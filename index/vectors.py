"""Vector index: FAISS inner-product search over L2-normalised passage embeddings.

Each document has one or more passage vectors. FAISS ids are passage rows (through
``IndexIDMap2``); ``owner[row]`` is the document position, and positions map to string doc ids
through the generation's ``doc_ids`` list. A document scores as its best passage. Passages are
stored grouped by document in position order, so a document's rows are one slice. The index
remembers which encoder produced its vectors and refuses query vectors from any other.

Large collections get an approximate index (HNSW or IVF, optionally over 8-bit scalar or
product-quantized codes; ``VectorParams``). Building one calibrates how hard it searches
(``index.vector_search``): R@100 of the approximate search against exact search for queries
made of held-out passages, raised to ``recall_target`` by searching harder. The effort chosen
and the recall of each step are stored in ``vectors.json`` (the recall also in the
generation's manifest, printed by ingest), and every search of the index uses that effort.
Loading maps the FAISS index and the embeddings into memory instead of reading them, so a cold
process does not read a million vectors before its first answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import faiss
import numpy as np

from brainrank.index.errors import BrainrankError, IndexMismatchError
from brainrank.index.faiss_build import make_base, to_cpu, to_gpu, training_sample
from brainrank.index.params import EncoderInfo, VectorParams
from brainrank.index.vector_search import (
    calibrate,
    calibration_queries,
    effort_cap,
    effort_name,
    exact_top,
    held_out_rows,
    recall,
    search_params,
    set_default_effort,
)
from brainrank.index.vector_tombstones import Tombstones


class VectorIndex:
    def __init__(
        self,
        index: faiss.Index,
        embeddings: np.ndarray,
        owner: np.ndarray,
        encoder: EncoderInfo,
        kind: str,
        params: VectorParams,
        quantizer: str = "none",
        recall: dict | None = None,
        effort: int | None = None,
    ):
        self._index = index
        self.quantizer = quantizer
        # {"R@100", "queries", "vectors", "target", "reached", the effort setting, "steps"}:
        # what the build measured (``_calibrate``).
        self.recall = recall
        self.embeddings = embeddings
        self.owner = owner
        self.encoder = encoder
        self.kind = kind
        self.params = params
        counts = np.bincount(owner) if len(owner) else np.zeros(0, dtype=np.int64)
        self._ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._most_passages = int(counts.max()) if len(counts) else 1
        # Passage rows a search asks for per wanted document. Exact search takes the most
        # passages of any document, so the top documents' best passages are always reached;
        # an approximate search explores at least as many candidates as rows it asks for, so
        # one long document must not make every query explore thousands: there it is the
        # 99th percentile of passages per document.
        if kind == "flat" or not len(counts):
            self._rows_per_doc = self._most_passages
        else:
            self._rows_per_doc = max(1, math.ceil(float(np.percentile(counts, 99))))
        self._deleted: Tombstones | None = None
        base = faiss.downcast_index(index.index) if hasattr(index, "index") else None
        self._base = base if effort_name(base) else None
        default = params.hnsw_ef_search if isinstance(base, faiss.IndexHNSW) else params.ivf_nprobe
        # efSearch or nprobe of every search: what the build calibrated, else the setting's
        # (kept for a GPU copy too, which searches with the file's own setting).
        self.effort = effort or (None if self._base is None else default)

    @property
    def size(self) -> int:
        """Number of documents."""
        return len(self._ptr) - 1

    def rows(self, position: int) -> slice:
        """The passage rows of the document at ``position``."""
        return slice(int(self._ptr[position]), int(self._ptr[position + 1]))

    def passage_counts(self) -> np.ndarray:
        """Passage vectors per document, by position."""
        return np.diff(self._ptr)

    def passage_vectors(self, position: int) -> np.ndarray:
        """The passage vectors of the document at ``position``, in passage order."""
        return self.embeddings[self.rows(position)]

    def delete(self, positions: np.ndarray) -> None:
        """Leave the documents at ``positions`` out of this loaded index's searches.

        Tombstones of a segmented generation: the files are not changed. Searches filter the
        deleted passages inside FAISS (an ``IDSelector``) and fall back to exact search over
        the live passages when an approximate index finds too few live documents.
        """
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        if len(positions) == 0:
            self._deleted = None
            return
        if positions[0] < 0 or positions[-1] >= self.size:
            raise IndexMismatchError(f"deleted positions outside 0..{self.size - 1}")
        dead = np.zeros(self.size, dtype=bool)
        dead[positions] = True
        self._deleted = Tombstones(positions, ~dead[self.owner], self._index)

    @property
    def live(self) -> int:
        """Number of documents not deleted (``delete``)."""
        return self.size - (0 if self._deleted is None else len(self._deleted.positions))

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        encoder: EncoderInfo,
        params: VectorParams = VectorParams(),
        owner: np.ndarray | None = None,
    ) -> VectorIndex:
        """Index ``embeddings``; row i belongs to document ``owner[i]`` (default: i)."""
        emb = _check_matrix(embeddings, encoder.dim)
        owner = _check_owner(owner, len(emb))
        kind, quantizer = params.resolve_kind(len(emb)), params.resolve_quantizer(len(emb))
        index = faiss.IndexIDMap2(make_base(kind, quantizer, encoder.dim, len(emb), params))
        if not index.is_trained and len(emb):
            index.train(training_sample(emb))
        held = held_out_rows(len(emb), params.recall_queries) if kind != "flat" else []
        # The held-out passages join the index after it is measured without them; FAISS ids
        # are rows, so the index then lists its rows out of order.
        bounds = np.concatenate([[-1], held, [len(emb)]]).astype(np.int64)
        for lo, hi in zip(bounds[:-1] + 1, bounds[1:], strict=True):
            if hi > lo:
                index.add_with_ids(emb[lo:hi], np.arange(lo, hi, dtype=np.int64))
        built = cls(index, emb, owner, encoder, kind, params, quantizer)
        if len(held):
            built.recall = built._calibrate(np.asarray(held))
            index.add_with_ids(emb[held], np.asarray(held, dtype=np.int64))
        return built

    def measure_recall(self, queries: np.ndarray, truth: np.ndarray, effort: int) -> float:
        """R@k of this index's passage search at ``effort`` for ``queries``, against
        ``truth``, their exact top k rows (``vector_search.exact_top``), searched as a top-k
        document search searches (as deep, with the same search parameters)."""
        k = truth.shape[1]
        searched = min(k * self._rows_per_doc, self._index.ntotal)
        params = search_params(self._base, effort, searched)
        _, found = self._index.search(np.ascontiguousarray(queries), searched, params=params)
        return recall(found[:, :k], truth)

    def _calibrate(self, held: np.ndarray, k: int = 100) -> dict:
        """Set the search effort to the least that reaches ``recall_target`` for queries
        made of the ``held`` rows, which this index must not hold yet; the recall measured at
        each step."""
        queries = calibration_queries(self.embeddings, held)
        truth = exact_top(self.embeddings, queries, k, exclude=held)
        self.effort, steps = calibrate(
            lambda effort: round(self.measure_recall(queries, truth, effort), 4),
            self.effort,
            effort_cap(self._base),
            self.params.recall_target,
        )
        reached = dict(steps)[self.effort]
        return {
            f"R@{k}": reached,
            "queries": len(held),
            "vectors": len(self.embeddings),
            "target": self.params.recall_target,
            "reached": reached >= self.params.recall_target,
            effort_name(self._base): self.effort,
            "steps": steps,
        }

    def extend(self, embeddings: np.ndarray, owner: np.ndarray | None = None) -> VectorIndex:
        """A new index holding these vectors plus ``embeddings`` of documents after the last.

        ``owner`` gives the new rows' document positions (default: one row per new document).
        Approximate structures are extended instead of rebuilt (HNSW insertion is
        incremental); this index object is left untouched.
        """
        new = _check_matrix(embeddings, self.encoder.dim)
        if owner is None:
            owner = np.arange(self.size, self.size + len(new), dtype=np.int64)
        all_emb = np.vstack([self.embeddings, new]) if len(new) else self.embeddings
        all_owner = _check_owner(np.concatenate([self.owner, owner]), len(all_emb))
        if (
            self.kind == "flat"
            or self.params.resolve_kind(len(all_emb)) != self.kind
            or self.params.resolve_quantizer(len(all_emb)) != self.quantizer
        ):
            return VectorIndex.build(all_emb, self.encoder, self.params, all_owner)
        index = faiss.deserialize_index(faiss.serialize_index(to_cpu(self._index)))
        index.add_with_ids(new, np.arange(len(self.embeddings), len(all_emb), dtype=np.int64))
        # The effort and recall calibrated at build time carry over (the recall's "vectors"
        # says at what size); a rebuild calibrates again.
        return VectorIndex(
            index,
            all_emb,
            all_owner,
            self.encoder,
            self.kind,
            self.params,
            self.quantizer,
            self.recall,
            self.effort,
        )

    def check_encoder(self, fingerprint: str | None) -> None:
        if fingerprint != self.encoder.fingerprint:
            raise IndexMismatchError(
                f"the vector index was built with encoder {self.encoder.name} "
                f"({self.encoder.fingerprint}) but the query vectors come from {fingerprint}; "
                "run `brainrank reindex` to re-embed the collection with the current encoder"
            )

    def search(
        self, queries: np.ndarray, k: int, *, encoder_fingerprint: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` documents per query row as (best-passage scores, positions).

        Rows holding fewer than ``k`` documents are padded with position -1, score -inf.
        """
        self.check_encoder(encoder_fingerprint)
        q = _check_matrix(np.atleast_2d(queries), self.encoder.dim)
        k = min(k, self.live)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        positions = np.full((len(q), k), -1, dtype=np.int64)
        if k == 0:
            return scores, positions
        # Rows enough for k documents in nearly every case; should the rows found hold fewer
        # than k documents (a few long ones), search twice as deep, up to the exact bound.
        cap = min(k * self._most_passages, len(self.embeddings))
        depth = min(k * self._rows_per_doc, cap)
        while True:
            if self._deleted is None:
                raw_scores, rows = self._index.search(q, depth, params=self._search_params(depth))
            else:
                raw_scores, rows = self._deleted.search(self, q, depth)
            if depth >= cap or all(len(np.unique(self.owner[r[r >= 0]])) >= k for r in rows):
                break
            depth = min(depth * 2, cap)
        for i in range(len(q)):
            valid = rows[i] >= 0
            docs = self.owner[rows[i][valid]]
            _, first = np.unique(docs, return_index=True)
            first = np.sort(first)[:k]  # hits come best-first: a document's first is its best
            if len(first) < k and self._deleted is not None:
                # A filtered approximate search can run out of live neighbours: exact instead.
                return self._deleted.exact(self, q, k, scores, positions)
            positions[i, : len(first)] = docs[first]
            scores[i, : len(first)] = raw_scores[i][valid][first]
        return scores, positions

    def similarity(self, query: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Exact cosine of one query vector with each document's best passage."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) == 0:
            return np.zeros(0, dtype=np.float32)
        starts = self._ptr[positions]
        lengths = self._ptr[positions + 1] - starts
        block_starts = np.cumsum(lengths) - lengths
        rows = np.repeat(starts - block_starts, lengths) + np.arange(lengths.sum())
        sims = self.embeddings[rows] @ np.asarray(query, dtype=np.float32).reshape(-1)
        return np.maximum.reduceat(sims, block_starts)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        set_default_effort(self._base, self.effort)
        faiss.write_index(to_cpu(self._index), str(directory / "vectors.faiss"))
        np.save(directory / "embeddings.npy", self.embeddings, allow_pickle=False)
        np.save(directory / "owner.npy", self.owner, allow_pickle=False)
        meta = {
            "kind": self.kind,
            "quantizer": self.quantizer,
            "recall": self.recall,
            "effort": self.effort,
            "encoder": asdict(self.encoder),
            "params": asdict(self.params),
            "documents": self.size,
            "vectors": len(self.embeddings),
        }
        (directory / "vectors.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> VectorIndex:
        try:
            meta = json.loads((directory / "vectors.json").read_text())
            # Mapped, not read: pages load as searches touch them.
            embeddings = np.load(directory / "embeddings.npy", mmap_mode="r", allow_pickle=False)
            owner = np.load(directory / "owner.npy", allow_pickle=False)
            index = faiss.read_index(str(directory / "vectors.faiss"), _MMAP)
            params, encoder = VectorParams(**meta["params"]), EncoderInfo(**meta["encoder"])
            _check_loaded(index, embeddings, owner, meta, encoder.dim)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, IndexMismatchError) as exc:
            raise BrainrankError(
                f"vector index at {directory} is missing or corrupt ({exc}); "
                "run `brainrank reindex` to rebuild it"
            ) from None
        if params.use_gpu:
            index = to_gpu(index)
        return cls(
            index,
            embeddings,
            owner,
            encoder,
            meta["kind"],
            params,
            meta.get("quantizer", "none"),
            meta.get("recall"),
            meta.get("effort"),
        )

    def _search_params(self, depth: int, selector=None):
        """FAISS search parameters for ``depth`` rows at this index's effort, keeping only
        ``selector``'s rows (``vector_search.search_params``)."""
        return search_params(self._base, self.effort or 0, depth, selector)


def _check_loaded(index, embeddings: np.ndarray, owner: np.ndarray, meta: dict, dim: int) -> None:
    """Cheap structural checks of a loaded index: counts, shapes, and FAISS ids 0..n-1."""
    n = meta.get("vectors")
    if not index.ntotal == len(embeddings) == len(owner) == n:
        raise ValueError(
            f"it holds {index.ntotal} vectors, {len(embeddings)} embeddings and "
            f"{len(owner)} owners, {n} were written"
        )
    if embeddings.dtype != np.float32 or embeddings.shape != (n, dim) or index.d != dim:
        raise ValueError(
            f"embeddings {embeddings.shape} {embeddings.dtype}, index dimension "
            f"{index.d}, expected ({n}, {dim}) float32"
        )
    _check_owner(owner, n)
    if hasattr(index, "id_map"):  # IndexIDMap2: FAISS ids must be the passage rows
        ids = faiss.vector_to_array(index.id_map)  # in any order (held-out rows come last)
        seen = np.zeros(n, dtype=bool)
        seen[ids[(ids >= 0) & (ids < n)]] = True
        if len(ids) != n or not seen.all():
            raise ValueError("its FAISS ids are not the passage rows 0..n-1")


def _check_owner(owner: np.ndarray | None, n: int) -> np.ndarray:
    if owner is None:
        return np.arange(n, dtype=np.int64)
    owner = np.asarray(owner, dtype=np.int64)
    if len(owner) != n:
        raise IndexMismatchError(f"{n} vectors but {len(owner)} passage owners")
    steps = np.diff(owner)
    if n and (owner[0] != 0 or np.any(steps < 0) or np.any(steps > 1)):
        raise IndexMismatchError("passage owners must run 0, 0, 1, 2, 2, ... without gaps")
    return owner


# The FAISS index file is memory-mapped where FAISS can (flat codes, HNSW storage, IVF lists).
_MMAP = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY


def _check_matrix(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or (x.size and x.shape[1] != dim):
        raise IndexMismatchError(
            f"vectors of shape {x.shape} do not match the index dimension {dim}"
        )
    return x.reshape(-1, dim)
