"""Judged queries for the debugger: which query a typed text is, and per-query nDCG@10."""

from __future__ import annotations

from dataclasses import dataclass, field

from brainrank.ranker.evaluation import Qrels, per_query
from brainrank.ranker.feedback.fields import normalise_query

METRIC = "nDCG@10"
RUN_DEPTH = 100


@dataclass
class JudgedSet:
    """Queries (id -> text) and their judgments (id -> doc id -> grade), judged ones only."""

    queries: dict[str, str]
    qrels: Qrels
    _by_text: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.queries = {q: t for q, t in self.queries.items() if q in self.qrels}
        self.qrels = {q: self.qrels[q] for q in self.queries}
        self._by_text = {}
        for qid, text in self.queries.items():
            self._by_text.setdefault(normalise_query(text), qid)

    def find(self, text: str) -> str | None:
        """The id of the judged query with this text, if any."""
        return self._by_text.get(normalise_query(text))

    def relevant(self, qid: str) -> dict[str, int]:
        """Documents judged relevant (grade > 0) for ``qid``, best grade first."""
        grades = self.qrels.get(qid, {})
        return dict(
            sorted(((d, g) for d, g in grades.items() if g > 0), key=lambda x: (-x[1], x[0]))
        )

    def ndcg10(self, qid: str, ranked: list[str]) -> float:
        """nDCG@10 of one ranked list of doc ids, by ``ranker.evaluation.per_query``."""
        return per_query({qid: self.qrels[qid]}, {qid: ranked}, METRIC)[qid]

    def __len__(self) -> int:
        return len(self.queries)


def ndcg10_per_query(engine, judged: JudgedSet, mode: str, model: str | None) -> dict[str, float]:
    """nDCG@10 of every judged query under one ranking (``engine.search``, depth 100)."""
    run = {
        qid: [h.doc_id for h in engine.search(text, k=RUN_DEPTH, mode=mode, model=model).hits]
        for qid, text in judged.queries.items()
    }
    return per_query(judged.qrels, run, METRIC)
