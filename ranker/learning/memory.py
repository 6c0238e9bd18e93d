"""Query memory: what the judged queries most like a new query said about its candidates.

RankBrain's core move is to relate a query the system has never seen to queries it knows. The
memory keeps, for every judged training query, its embedding and the labels (judgments and click
labels) its candidate list earned, keyed by document content hash. For a new query it finds the
``k`` most similar remembered queries by cosine, weights them by a softmax over their
similarities (``temperature``), and gives each candidate the weighted sum of the labels those
queries gave it: the ``judged_similar`` feature. Where the judged documents of similar queries
do not recur, or the model serves another collection (content hashes differ), it is zero.

The vectors must come from the encoder that embeds the served queries: a model keeps the memory
embedded by its own encoder, and training builds the features of each list set from query
vectors of the same encoder that retrieved it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainrank.index.errors import BrainrankError, IndexMismatchError

MEMORY_FILE = "query_memory.npz"
# Chosen on the validation and holdout splits of the train judgments of SciFact and NFCorpus
# (`bench/bench_ablation.py --memory-sweep`, bench/RESULTS.md): across k in {10, 20, 50} and
# temperature in {0.02, 0.05, 0.1, 0.2}, 20 at 0.1 was within 0.002 of the best validation
# nDCG@10 and 0.005 of the best holdout nDCG@10 in every sweep. The temperature matters more
# than k: 0.02 (nearly the single nearest query) scored lowest in all of them.
DEFAULT_K = 20
DEFAULT_TEMPERATURE = 0.1


@dataclass
class QueryMemory:
    vectors: np.ndarray  # float32 [n, dim] unit vectors of the remembered queries
    labels: list[dict[str, float]]  # per query: document content hash -> label (> 0)
    k: int = DEFAULT_K
    temperature: float = DEFAULT_TEMPERATURE

    def __post_init__(self):
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.labels):
            raise ValueError(
                f"query memory: {len(self.labels)} label sets for vectors of shape "
                f"{self.vectors.shape}"
            )
        if self.k < 1 or not self.temperature > 0:
            raise ValueError(f"query memory: k={self.k} and temperature={self.temperature}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def neighbour_labels(
        self, query_vector: np.ndarray, allowed: np.ndarray | None = None
    ) -> dict[str, float]:
        """Content hash -> similarity-weighted label over the ``k`` nearest remembered queries
        (only those where ``allowed`` is true, when given)."""
        if len(self) == 0:
            return {}
        if query_vector.shape != (self.dim,):
            raise IndexMismatchError(
                f"query memory holds {self.dim}-d query vectors, the query has shape "
                f"{query_vector.shape}: the model and the index use different encoders"
            )
        sims = self.vectors @ query_vector.astype(np.float32)
        if allowed is not None:
            sims = np.where(allowed, sims, -np.inf)
        k = min(self.k, int(np.isfinite(sims).sum()))
        if k == 0:
            return {}
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.lexsort((top, -sims[top]))]  # best first, ties by position: deterministic
        w = np.exp((sims[top] - sims[top[0]]) / self.temperature)
        w /= w.sum()
        out: dict[str, float] = {}
        for weight, row in zip(w, top, strict=True):
            for doc, label in self.labels[row].items():
                out[doc] = out.get(doc, 0.0) + float(weight) * label
        return out

    def feature(
        self, query_vector: np.ndarray | None, hashes: list[str], allowed: np.ndarray | None = None
    ) -> np.ndarray:
        """log1p of the neighbour labels of documents with these content hashes."""
        if query_vector is None or not hashes:
            return np.zeros(len(hashes))
        got = self.neighbour_labels(query_vector, allowed)
        return np.log1p([got.get(h, 0.0) for h in hashes])

    def save(self, path: Path) -> None:
        vocab = sorted({h for labels in self.labels for h in labels})
        slot = {h: i for i, h in enumerate(vocab)}
        indptr = np.cumsum([0] + [len(labels) for labels in self.labels], dtype=np.int64)
        docs = [slot[h] for labels in self.labels for h in labels]
        values = [v for labels in self.labels for v in labels.values()]
        with open(path, "wb") as fh:
            np.savez(
                fh,
                vectors=self.vectors,
                hashes=np.array(vocab, dtype=str),
                indptr=indptr,
                docs=np.array(docs, dtype=np.int64),
                values=np.array(values, dtype=np.float32),
                k=np.array(self.k),
                temperature=np.array(self.temperature),
            )

    @classmethod
    def load(cls, path: Path) -> QueryMemory:
        try:
            with np.load(path, allow_pickle=False) as z:
                vectors, hashes, indptr = z["vectors"], z["hashes"], z["indptr"]
                docs, values = z["docs"], z["values"]
                k, temperature = int(z["k"]), float(z["temperature"])
            labels = [
                {str(hashes[d]): float(v) for d, v in zip(docs[a:b], values[a:b], strict=True)}
                for a, b in zip(indptr[:-1], indptr[1:], strict=True)
            ]
            return cls(vectors, labels, k, temperature)
        except (OSError, KeyError, ValueError, IndexError) as exc:
            raise BrainrankError(f"query memory {path} is unreadable or corrupt ({exc})") from exc
