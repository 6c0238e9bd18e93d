"""Reading windows of the query log for the monitors and retraining.

The monitors read windows through SQL aggregates and random samples of row ids, so their cost
does not grow with the size of the log. Each function takes the log's connection; ``QueryLog``
exposes them as methods.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from brainrank.ranker.feedback.store import SQL_CHUNK, TRAFFIC

TRAFFIC_SQL = ",".join(f"'{s}'" for s in TRAFFIC)  # fixed names, never user input


@dataclass
class WindowSample:
    """A uniform random sample of the searches in a window, as columns (one row per search).

    ``features`` stacks the feature rows of all sampled searches that logged features with
    ``feature_names``; ``row_search`` gives each row's index into the per-search columns.
    """

    ids: np.ndarray  # int64
    time: np.ndarray  # float64 epoch seconds
    queries: np.ndarray  # object: normalised query text
    mode: np.ndarray  # object
    model: np.ndarray  # object (None outside learned mode)
    in_domain: np.ndarray  # float64, NaN outside learned mode
    features: np.ndarray  # float32 [rows, n_features]
    row_search: np.ndarray  # int64 [rows]
    feature_names: tuple[str, ...] = ()
    total: int = 0  # searches in the window (the sample is drawn from these)

    def __len__(self) -> int:
        return len(self.ids)


def count(
    db: sqlite3.Connection,
    start: float | None = None,
    end: float | None = None,
    *,
    sources: Sequence[str] = TRAFFIC,
) -> int:
    """Searches of ``sources`` in [start, end) (evaluation runs are not traffic)."""
    where, args = _time_filter(start, end)
    marks = ",".join("?" * len(sources))
    return int(
        db.execute(
            f"SELECT COUNT(*) FROM searches {where} AND source IN ({marks})", (*args, *sources)
        ).fetchone()[0]
    )


def span(db: sqlite3.Connection) -> tuple[float, float] | None:
    """(first, last) search time, or None for an empty log."""
    lo, hi = db.execute("SELECT MIN(time), MAX(time) FROM searches").fetchone()
    return None if lo is None else (float(lo), float(hi))


def sample(
    db: sqlite3.Connection,
    start: float,
    end: float,
    *,
    max_searches: int = 5_000,
    seed: int = 0,
    sources: Sequence[str] = TRAFFIC,
) -> WindowSample:
    """A uniform sample of up to ``max_searches`` searches of ``sources`` in [start, end).

    The window's id range comes from two index look-ups and ids are drawn from it at
    random, so the cost depends on the sample size, not on the size of the window (ids
    follow time, as searches are appended as they happen). ``total`` is the number of
    matching searches: exact when the whole window was read, else estimated from the
    share of drawn ids that matched. Evaluation runs are not traffic and are left out.
    """
    where, args = _time_filter(start, end)
    first = db.execute(f"SELECT id FROM searches {where} ORDER BY time LIMIT 1", args).fetchone()
    if first is None:
        return _empty_sample()
    (last,) = db.execute(
        f"SELECT id FROM searches {where} ORDER BY time DESC LIMIT 1", args
    ).fetchone()
    lo, hi = min(first[0], last), max(first[0], last)
    n_ids = hi - lo + 1
    wanted = set(sources)
    if n_ids <= 2 * max_searches:
        rows = [r for r in _fetch(db, start, end, lo=lo, hi=hi) if r[8] in wanted]
        total = len(rows)
    else:
        rng = np.random.default_rng(seed)
        pool = rng.permutation(n_ids) + lo
        rows, drawn = [], 0
        while len(rows) < max_searches and drawn < n_ids:
            # Draw in rounds sized by the share of ids that matched so far.
            share = len(rows) / drawn if drawn and rows else 1.0
            more = int((max_searches - len(rows)) / max(share, 0.01) * 1.1) + 16
            ids = np.sort(pool[drawn : drawn + more])
            drawn += len(ids)
            rows += [r for r in _fetch(db, start, end, ids=ids) if r[8] in wanted]
        total = int(round(n_ids * len(rows) / drawn)) if drawn < n_ids else len(rows)
    if len(rows) > max_searches:
        keep = np.random.default_rng(seed + 1).choice(len(rows), max_searches, replace=False)
        rows = [rows[i] for i in np.sort(keep)]
    rows.sort(key=lambda r: r[0])
    return _columns(db, rows, total)


def _fetch(db: sqlite3.Connection, start, end, *, lo=None, hi=None, ids=None) -> list[tuple]:
    cols = (
        "s.id, s.time, s.norm_query, s.mode, s.model, s.in_domain, r.features, "
        "r.schema_id, s.source FROM searches s LEFT JOIN results r ON r.search_id = s.id"
    )
    where, args = _time_filter(start, end, "s.")
    if ids is None:
        return db.execute(
            f"SELECT {cols} {where} AND s.id BETWEEN ? AND ?", (*args, lo, hi)
        ).fetchall()
    rows = []
    for i in range(0, len(ids), SQL_CHUNK):
        chunk = ids[i : i + SQL_CHUNK].tolist()
        marks = ",".join("?" * len(chunk))
        rows += db.execute(
            f"SELECT {cols} {where} AND s.id IN ({marks})", (*args, *chunk)
        ).fetchall()
    return rows


def _columns(db: sqlite3.Connection, rows: list[tuple], total: int) -> WindowSample:
    if not rows:
        return _empty_sample(total)
    schemas = {
        sid: tuple(json.loads(names))
        for sid, names in db.execute("SELECT id, names FROM feature_schemas")
    }
    # Feature rows of the most common schema in the sample (the serving model's).
    sids = [r[7] for r in rows if r[7] is not None]
    names: tuple[str, ...] = ()
    blocks, owners = [], []
    if sids:
        main = max(set(sids), key=sids.count)
        names = schemas[main]
        for i, r in enumerate(rows):
            if r[7] == main and r[6]:
                x = np.frombuffer(r[6], dtype=np.float32).reshape(-1, len(names))
                blocks.append(x)
                owners.append(np.full(len(x), i, dtype=np.int64))
    width = len(names)
    return WindowSample(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        time=np.array([r[1] for r in rows], dtype=np.float64),
        queries=np.array([r[2] for r in rows], dtype=object),
        mode=np.array([r[3] for r in rows], dtype=object),
        model=np.array([r[4] for r in rows], dtype=object),
        in_domain=np.array(
            [np.nan if r[5] is None else float(r[5]) for r in rows], dtype=np.float64
        ),
        features=np.vstack(blocks) if blocks else np.zeros((0, width), np.float32),
        row_search=np.concatenate(owners) if owners else np.zeros(0, np.int64),
        feature_names=names,
        total=total,
    )


def outcomes(
    db: sqlite3.Connection, search_ids: Sequence[int] | np.ndarray, *, k: int = 10
) -> dict:
    """Click outcomes of the given searches (e.g. a window's sample): CTR@k, click MRR.

    CTR@k is the share of searches with a click in the top ``k``; click MRR the mean of
    1 / (position of the first click), 0 for searches without one. ``clicks`` counts the
    linked clicks; with none the rates say nothing (no feedback was imported).
    """
    ids = [int(i) for i in search_ids]
    clicked = clicks = 0
    rr = 0.0
    for i in range(0, len(ids), SQL_CHUNK):
        chunk = ids[i : i + SQL_CHUNK]
        marks = ",".join("?" * len(chunk))
        for first, n in db.execute(
            f"SELECT MIN(position), COUNT(*) FROM clicks WHERE search_id IN ({marks}) "
            f"GROUP BY search_id",
            chunk,
        ):
            clicks += n
            clicked += first <= k
            rr += 1.0 / first
    n = len(ids)
    return {
        "searches": n,
        "clicks": clicks,
        "clicked": clicked,
        f"CTR@{k}": clicked / n if n else None,
        "click_MRR": rr / n if n else None,
    }


def impressions(
    db: sqlite3.Connection,
    start: float,
    end: float,
    *,
    limit: int = 200_000,
    clicked_queries: bool = False,
) -> Iterator[dict]:
    """Logged cli/ui searches in [start, end) as impressions in the click-log format that
    ``ranker.feedback.clicklog.read_click_log`` reads (the newest ``limit``, oldest first).

    With ``clicked_queries`` only searches of queries that drew at least one click in
    the period are kept: other queries teach a click model nothing.
    """
    where, args = _time_filter(start, end, "s.")
    extra, extra_args = "", ()
    if clicked_queries:
        extra = (
            "AND s.norm_query IN (SELECT norm_query FROM clicks "
            "WHERE search_id IS NOT NULL AND time >= ?)"
        )
        extra_args = (args[0],)
    rows = db.execute(
        f"SELECT s.id, s.time, s.query, r.doc_ids, COALESCE(p.first_rank, 1) FROM searches s "
        f"JOIN results r ON r.search_id = s.id LEFT JOIN pages p ON p.search_id = s.id "
        f"{where} AND s.source IN ({TRAFFIC_SQL}) {extra} "
        f"ORDER BY s.id DESC LIMIT ?",
        (*args, *extra_args, limit),
    ).fetchall()
    if not rows:
        return
    lo = min(r[0] for r in rows)
    clicks: dict[int, set[str]] = {}
    for sid, doc in db.execute("SELECT search_id, doc_id FROM clicks WHERE search_id >= ?", (lo,)):
        clicks.setdefault(int(sid), set()).add(doc)
    for sid, when, query, ids, first in reversed(rows):
        shown = json.loads(ids)
        if not shown:
            continue
        yield {
            "impression_id": f"log-{sid}",
            "time": datetime.fromtimestamp(when, tz=UTC).isoformat(),
            "query": query,
            "shown": shown,
            "clicks": [d for d in shown if d in clicks.get(int(sid), ())],
            **({"first_position": int(first)} if first > 1 else {}),
        }


def last_click_id(db: sqlite3.Connection) -> int:
    """The id of the newest imported click (0 when there is none)."""
    return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM clicks").fetchone()[0])


def _time_filter(start, end, prefix: str = "") -> tuple[str, tuple]:
    start = -1e18 if start is None else float(start)
    end = 1e18 if end is None else float(end)
    return f"WHERE {prefix}time >= ? AND {prefix}time < ?", (start, end)


def _empty_sample(total: int = 0) -> WindowSample:
    empty = np.zeros(0, dtype=object)
    return WindowSample(
        ids=np.zeros(0, np.int64),
        time=np.zeros(0),
        queries=empty,
        mode=empty,
        model=empty,
        in_domain=np.zeros(0),
        features=np.zeros((0, 0), np.float32),
        row_search=np.zeros(0, np.int64),
        total=total,
    )
