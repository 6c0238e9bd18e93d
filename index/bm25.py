"""Keyword index: bm25s over title and body, Snowball-stemmed, English stopwords removed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from index.errors import BrainrankError


@dataclass(frozen=True)
class BM25Params:
    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"
    stemmer: str = "english"
    stopwords: str = "en"


class BM25Index:
    """A bm25s index whose document positions match the generation's ``doc_ids`` list."""

    def __init__(self, retriever: bm25s.BM25, params: BM25Params, n_docs: int):
        self._retriever = retriever
        self.params = params
        self.n_docs = n_docs
        self._stemmer = Stemmer.Stemmer(params.stemmer)

    @classmethod
    def build(cls, texts: Sequence[str], params: BM25Params = BM25Params()) -> BM25Index:
        """Index ``texts``; position i of the index is ``texts[i]``."""
        stemmer = Stemmer.Stemmer(params.stemmer)
        tokens = bm25s.tokenize(
            list(texts), stopwords=params.stopwords, stemmer=stemmer, show_progress=False
        )
        retriever = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, params, len(texts))

    def tokenize(self, query: str) -> list[str]:
        """The stemmed, stopword-free terms of ``query`` as the index sees them."""
        return bm25s.tokenize(
            [query],
            stopwords=self.params.stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )[0]

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (float32, zeros when no term matches)."""
        ids = self._retriever.get_tokens_ids(self.tokenize(query))
        if not ids:
            return np.zeros(self.n_docs, dtype=np.float32)
        return self._retriever.get_scores(ids).astype(np.float32, copy=False)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._retriever.save(str(directory), allow_pickle=False, show_progress=False)
        payload = {"params": asdict(self.params), "n_docs": self.n_docs}
        (directory / "brainrank_bm25.json").write_text(json.dumps(payload))

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        try:
            meta = json.loads((directory / "brainrank_bm25.json").read_text())
            retriever = bm25s.BM25.load(str(directory), mmap=False, show_progress=False)
        except (OSError, ValueError, KeyError) as exc:
            raise BrainrankError(
                f"keyword index at {directory} is missing or corrupt ({exc}); "
                "run `brainrank reindex` to rebuild it"
            ) from exc
        return cls(retriever, BM25Params(**meta["params"]), int(meta["n_docs"]))
