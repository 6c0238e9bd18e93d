"""Judged queries for the debugger: which query a typed text is, per-query nDCG@10, and the
workspace's judgment store as the debugger reads and writes it (grades given on the Search
page go there at once, one transaction each, and feed the next ``brainrank train``)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from brainrank.index.errors import InputError
from brainrank.ranker.evaluation import Qrels, per_query
from brainrank.ranker.feedback.fields import normalise_query
from brainrank.ranker.feedback.judgments import JudgmentStore, check_set_name

METRIC = "nDCG@10"
RUN_DEPTH = 100
TOP = 10
GRADES = (0, 1, 2, 3)
# Who a grade given in the debugger is recorded as (the store's ``who`` column).
UI_JUDGE = "ui"


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

    @cached_property
    def digest(self) -> str:
        """A short hash of the content, so cached comparisons follow a changed grade."""
        h = hashlib.sha256()
        for qid in sorted(self.queries):
            h.update(f"q\t{qid}\t{self.queries[qid]}\n".encode())
            for doc, grade in sorted(self.qrels[qid].items()):
                h.update(f"j\t{doc}\t{grade}\n".encode())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class SetRun:
    """One ranking over every judged query: its nDCG@10 and top 10 per query id."""

    ndcg10: dict[str, float]
    top10: dict[str, list[str]]


def set_run(engine, judged: JudgedSet, mode: str, model: str | None) -> SetRun:
    """nDCG@10 and top 10 of every judged query under one ranking (``engine.search``,
    depth 100)."""
    run = {
        qid: [h.doc_id for h in engine.search(text, k=RUN_DEPTH, mode=mode, model=model).hits]
        for qid, text in judged.queries.items()
    }
    return SetRun(per_query(judged.qrels, run, METRIC), {q: r[:TOP] for q, r in run.items()})


# ----- The workspace's judgment store -----------------------------------------------------


def store_set_names(root: Path | str) -> list[str]:
    """The judgment sets of the workspace; [] when it has no store (none is created)."""
    if not JudgmentStore.exists(root):
        return []
    with JudgmentStore.open(root) as store:
        return store.set_names()


def store_judged(root: Path | str, set_name: str | None = None) -> JudgedSet:
    """One set of the store, or every set merged (latest judgment wins), as a ``JudgedSet``;
    empty when the set or the store does not exist yet."""
    if not JudgmentStore.exists(root):
        return JudgedSet({}, {})
    with JudgmentStore.open(root) as store:
        if set_name is not None and set_name not in store.set_names():
            return JudgedSet({}, {})
        found = store.judgments(set_name)
    return JudgedSet(found.queries, found.qrels)


def ui_query_id(text: str) -> str:
    """The id a query first judged in the debugger gets: stable for its normalised text."""
    return "ui-" + hashlib.sha1(normalise_query(text).encode()).hexdigest()[:10]


def query_id_for(text: str, target: JudgedSet, others: Sequence[JudgedSet]) -> tuple[str, str]:
    """(query id, text to store) for grading ``text`` into the set ``target``.

    The set's own query with this normalised text keeps its id and text; else the id the
    same text has elsewhere (another set, the files the debugger was started with), when the
    set does not use that id for another text, so merged judgments line up; else a new
    ``ui-`` id from the text.
    """
    qid = target.find(text)
    if qid is not None:
        return qid, target.queries[qid]
    for judged in others:
        qid = judged.find(text)
        if qid is not None and qid not in target.queries:
            return qid, judged.queries[qid]
    return ui_query_id(text), " ".join(text.split())


def write_grade(
    root: Path | str,
    set_name: str,
    text: str,
    doc_id: str,
    grade: int,
    *,
    others: Sequence[JudgedSet] = (),
    who: str = UI_JUDGE,
) -> str:
    """Give ``doc_id`` grade 0-3 for query ``text`` in set ``set_name`` (created if new; the
    query joins it with its first grade); returns the query id. One transaction."""
    check_set_name(set_name)
    if isinstance(grade, bool) or grade not in GRADES:
        raise InputError(f"grade {grade!r} is not allowed; give one of 0, 1, 2, 3")
    if not text.strip():
        raise InputError("type a query before grading its results")
    known = [store_judged(root), *others]  # every set merged, then e.g. the files
    qid, stored = query_id_for(text, store_judged(root, set_name), known)
    with JudgmentStore.open(root) as store:
        store.add(set_name, {qid: stored}, {qid: {doc_id: int(grade)}}, who=who)
    return qid
