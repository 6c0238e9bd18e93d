"""The query log on real SQLite files: records, windows, feedback, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest

from brainrank.index.errors import InputError
from brainrank.index.records import Hit
from brainrank.ranker.feedback.clicklog import read_click_log
from brainrank.ranker.feedback.querylog import QueryLog
from brainrank.ranker.retrieval.result import SearchResult

NAMES = ("fused", "dense", "coverage")


def result(query: str, ids: list[str], mode: str = "learned", model: str | None = "v0001", **more):
    """A SearchResult as the search path makes it (``features``, ``query_vector``... in more)."""
    hits = [Hit(d, r, 1.0 / r) for r, d in enumerate(ids, start=1)]
    learned = mode == "learned"
    if more.get("features") is not None:
        more.setdefault("feature_names", NAMES)
    return SearchResult(
        query,
        mode,
        hits,
        latency_ms=12.5,
        model=model if learned else None,
        in_domain=True if learned else None,
        **more,
    )


def features(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, len(NAMES))).astype(np.float32)


def test_record_round_trip(tmp_path):
    with QueryLog(tmp_path / "q.sqlite") as log:
        x = features(3)
        res = result("Brake  Pads", ["d1", "d2", "d3"])
        res.features, res.feature_names = x, NAMES
        sid = log.record(res, time=1000.0)
        log.record(result("refund", ["d9"], mode="bm25", model=None), time=1001.0)
        assert res.impression_id == str(sid)
        sample = log.sample(0, 2000)
    assert sample.total == 2 and len(sample) == 2
    assert sample.queries.tolist() == ["brake pads", "refund"]
    assert sample.mode.tolist() == ["learned", "bm25"]
    assert sample.feature_names == NAMES
    np.testing.assert_array_equal(sample.features, x)  # float32 blobs come back bit-exact
    assert sample.row_search.tolist() == [0, 0, 0]
    assert sample.in_domain[0] == 1.0 and np.isnan(sample.in_domain[1])


def test_record_checks_feature_shape(tmp_path):
    with QueryLog(tmp_path / "q.sqlite") as log:
        with pytest.raises(ValueError, match="expected \\(2, 3\\)"):
            log.record(result("q", ["a", "b"], features=features(3)))


def test_sample_window_and_cap(tmp_path):
    with QueryLog(tmp_path / "q.sqlite") as log:
        for i in range(300):
            log.record(result(f"q{i % 7}", ["a", "b"], features=features(2, i)), time=float(i))
        log.record(result("eval query", ["a"]), source="eval", time=150.5)
        assert log.count(100, 200) == 100  # traffic only
        assert log.count(100, 200, sources=("cli", "eval")) == 101
        full = log.sample(100, 200)
        assert len(full) == 100 and full.time.min() >= 100 and full.time.max() < 200
        assert "eval query" not in full.queries  # evaluation is not traffic
        assert full.total == 100
        capped = log.sample(0, 300, max_searches=50, seed=3)
        assert len(capped) == 50 and len(set(capped.ids.tolist())) == 50
        assert capped.features.shape == (100, 3)
        # Drawn ids: 300 searches + 1 evaluation run in the range, about 300 estimated.
        assert 250 <= capped.total <= 350
        assert log.sample(300, 400).total == 0


def _writer(path: str, worker: int, n: int) -> None:
    with QueryLog(path) as log:
        x = features(10, worker)
        for i in range(n):
            log.record(result(f"w{worker} q{i}", [f"d{j}" for j in range(10)], features=x))


def test_two_concurrent_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / "logs" / "querylog.sqlite"
    QueryLog(path).close()
    n = 150
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, n)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with QueryLog(path) as log:
        sample = log.sample(None, None, max_searches=10 * n)
    assert len(sample) == 2 * n
    assert set(sample.queries) == {f"w{w} q{i}" for w in range(2) for i in range(n)}
    assert sample.features.shape == (2 * n * 10, 3)


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_feedback_by_impression_and_by_query(tmp_path):
    with QueryLog(tmp_path / "q.sqlite") as log:
        a = log.record(result("brake pads", ["d1", "d2", "d3"]), time=1000.0)
        log.record(result("refund", ["d7", "d8"]), time=2000.0)
        clicks = _write_jsonl(
            tmp_path / "clicks.jsonl",
            [
                {"impression_id": str(a), "doc_id": "d2", "time": 1010},
                {"query": "Refund ", "doc_id": "d8", "position": 2, "time": "1970-01-01T00:33:30Z"},
                {"query": "never searched", "doc_id": "d1", "time": 5000},
            ],
        )
        first = log.import_feedback(clicks)
        again = log.import_feedback(clicks)
        outcomes = log.outcomes(log.sample(0, 3000).ids, k=1)
    assert (first.imported, first.unmatched, first.duplicates) == (3, 1, 0)
    assert (again.imported, again.duplicates) == (0, 3)  # importing twice adds nothing
    # Nor does it once a search logged since matches a click that matched none before.
    with QueryLog(tmp_path / "q.sqlite") as log:
        log.record(result("never searched", ["d1"]), time=4990.0)
        third = log.import_feedback(clicks)
    assert (third.imported, third.duplicates) == (0, 3)
    # Two searches, clicks at positions 2 and 2: none in the top 1, MRR (1/2 + 1/2) / 2.
    assert outcomes["searches"] == 2 and outcomes["CTR@1"] == 0.0
    assert outcomes["click_MRR"] == pytest.approx((1 / 2 + 1 / 2) / 2)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"query": "q", "doc_id": "d1"', "line 2: not valid JSON .*at column 30"),  # not 1
        (
            {"doc_id": "d1", "time": 5},
            "line 2: a click needs an impression_id or a non-empty query",
        ),
        ({"impression_id": "1", "doc_id": "zz", "time": 5}, "line 2: doc_id 'zz' was not shown"),
        ({"impression_id": "99", "doc_id": "d1", "time": 5}, "line 2: impression_id '99' is not"),
        ({"query": "q", "doc_id": "d1", "time": "2026-01-01"}, "line 2: time '2026-01-01' has no"),
        (
            {"impression_id": "1", "doc_id": "d1", "time": float("nan")},
            "line 2: time must be a fin",
        ),
        ({"impression_id": "1", "doc_id": "d1", "time": 5, "position": 0}, "line 2: position"),
        ({"impression_id": "1", "doc_id": "d1", "time": 5, "position": 2}, "disagrees"),
    ],
)
def test_bad_feedback_names_file_and_line_and_imports_nothing(tmp_path, line, message):
    with QueryLog(tmp_path / "q.sqlite") as log:
        log.record(result("q", ["d1", "d2"]), time=1.0)
        good = {"impression_id": "1", "doc_id": "d1", "time": 2}
        path = _write_jsonl(tmp_path / "fb.jsonl", [good, line])
        with pytest.raises(InputError, match=message) as info:
            log.import_feedback(path)
        assert str(info.value).startswith("fb.jsonl line 2:")
        assert log.outcomes([1], k=10)["clicks"] == 0


def test_a_later_page_is_logged_at_its_ranks(tmp_path):
    """The second page of a search: clicks on it land at ranks 3 and 4, its impression says
    where it starts, and it adds no feature rows (the monitors compare first pages)."""
    with QueryLog(tmp_path / "q.sqlite") as log:
        log.record(result("brake pads", ["d1", "d2"], features=features(2)), time=100.0)
        page = result("brake pads", ["d3", "d4"], features=features(2))
        page.hits = [Hit(h.doc_id, h.rank + 2, h.score) for h in page.hits]
        page.offset = 2
        b = log.record(page, time=101.0)
        clicks = [
            {"impression_id": b, "doc_id": "d4", "time": 102},
            {"impression_id": b, "doc_id": "d3", "time": 103, "position": 3},
        ]
        _write_jsonl(tmp_path / "fb.jsonl", clicks)
        assert log.import_feedback(tmp_path / "fb.jsonl").imported == 2
        bad = [{"impression_id": b, "doc_id": "d3", "time": 104, "position": 1}]
        _write_jsonl(tmp_path / "bad.jsonl", bad)
        with pytest.raises(InputError, match="showed 'd3' at position 3"):
            log.import_feedback(tmp_path / "bad.jsonl")
        # A click by query text finds the page too.
        _write_jsonl(tmp_path / "q.jsonl", [{"query": "brake pads", "doc_id": "d4", "time": 105}])
        log.import_feedback(tmp_path / "q.jsonl")
        outcomes = log.outcomes([int(b)], k=10)
        rows = list(log.impressions(0, 1000))
        sample = log.sample(0, 1000)
    assert outcomes["click_MRR"] == pytest.approx(1 / 3)  # its first click is at rank 3
    assert [r.get("first_position", 1) for r in rows] == [1, 3]
    assert sample.row_search.tolist() == [0, 0]  # the first page's two rows only
    _write_jsonl(tmp_path / "imp.jsonl", rows)
    assert [i.first_position for i in read_click_log(tmp_path / "imp.jsonl")] == [1, 3]


def test_a_filtered_search_is_logged_with_its_conditions_and_no_feature_rows(tmp_path):
    """Its candidates were drawn from the documents that met the filters, not as training's
    lists were, so its feature rows would read as drift; its clicks still count."""
    import sqlite3

    with QueryLog(tmp_path / "q.sqlite") as log:
        log.record(result("brake pads", ["d1", "d2"], features=features(2)), time=100.0)
        narrowed = result("brake pads", ["d2", "d5"], features=features(2, seed=1))
        narrowed.filters = ("price < 30", "category in (parts, 'a, b')")
        b = log.record(narrowed, time=101.0)
        _write_jsonl(tmp_path / "fb.jsonl", [{"impression_id": b, "doc_id": "d5", "time": 102}])
        assert log.import_feedback(tmp_path / "fb.jsonl").imported == 1
        sample = log.sample(0, 1000)
        outcomes = log.outcomes([int(b)], k=10)
    assert len(sample) == 2 and sample.row_search.tolist() == [0, 0]  # the unfiltered rows
    assert outcomes["click_MRR"] == pytest.approx(1 / 2)
    with sqlite3.connect(tmp_path / "q.sqlite") as db:
        rows = db.execute("SELECT search_id, conditions FROM filtered").fetchall()
    assert rows == [(int(b), json.dumps(list(narrowed.filters)))]


def test_impressions_export_is_a_click_log(tmp_path):
    with QueryLog(tmp_path / "q.sqlite") as log:
        a = log.record(result("brake pads", ["d1", "d2"]), time=100.0)
        log.record(result("brake pads", ["d2", "d1"]), time=200.0)
        log.record(result("no clicks ever", ["d5"]), time=300.0)
        _write_jsonl(tmp_path / "fb.jsonl", [{"impression_id": a, "doc_id": "d2", "time": 101}])
        log.import_feedback(tmp_path / "fb.jsonl")
        rows = list(log.impressions(0, 1000, clicked_queries=True))
    _write_jsonl(tmp_path / "imp.jsonl", rows)
    imps = read_click_log(tmp_path / "imp.jsonl")
    assert [(i.query, i.shown, sorted(i.clicks)) for i in imps] == [
        ("brake pads", ("d1", "d2"), ["d2"]),
        ("brake pads", ("d2", "d1"), []),
    ]


def test_query_vectors_cache(tmp_path):
    with QueryLog(tmp_path / "q.sqlite") as log:
        v = np.arange(4, dtype=np.float32)
        log.record(result("Brake pads", ["d1"], query_vector=v, encoder="enc1"))
        log.store_vectors(["refund"], np.ones((1, 4), np.float32), "enc1")
        got = log.vectors(["brake pads", "refund", "unknown"], "enc1")
        assert log.vectors(["brake pads"], "enc2") == {}
    assert sorted(got) == ["brake pads", "refund"]
    np.testing.assert_array_equal(got["brake pads"], v)


def test_unknown_source_is_rejected(tmp_path):
    with pytest.raises(InputError, match="unknown query-log source 'batch'"):
        QueryLog(tmp_path / "q.sqlite", source="batch")


def test_served_searches_cache_their_query_vector_for_the_query_monitor(tmp_path, engine):
    log = QueryLog(tmp_path / "q.sqlite")
    log.record(engine.search("  Laptop won't  turn on ", k=3, mode="hybrid"))
    log.record(engine.search("car parts", k=3, mode="bm25"))
    fingerprint = engine.generation.vectors.encoder.fingerprint
    with log:
        cached = log.vectors(["laptop won't turn on", "car parts"], fingerprint)
    expected = engine.encoder.encode(["  Laptop won't  turn on "])[0]
    np.testing.assert_allclose(cached["laptop won't turn on"], expected, atol=1e-5)
    assert "car parts" not in cached  # keyword mode never embeds the query


# ----- a damaged log never blocks a search (issue 12, item 5) -----------------------------------


def _damaged_log(tmp_path):
    """A log of 300 searches whose pages past the first have garbage headers."""
    path = tmp_path / "logs" / "querylog.sqlite"
    with QueryLog(path) as log:
        for i in range(300):
            log.record(result(f"query number {i} " * 5, ["d1"], mode="bm25", model=None))
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for start in range(2 * page, len(data), page):
        data[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_log_is_one_error_naming_the_file_and_the_repair(tmp_path):
    from brainrank.index.errors import BrainrankError

    path = _damaged_log(tmp_path)
    with pytest.raises(BrainrankError) as info:  # on the old code: sqlite3.DatabaseError
        with QueryLog(path) as log:
            log.record(result("hello", ["d1"], mode="bm25", model=None))
    message = str(info.value)
    assert str(path) in message and "brainrank check --repair" in message


def test_the_service_warns_once_counts_every_failure_and_recovers_after_repair(tmp_path, caplog):
    from brainrank.ranker.feedback.store import check_file, set_aside
    from brainrank.ranker.serve.searchlog import ServiceLog

    path = _damaged_log(tmp_path)
    failures = []
    service = ServiceLog(path, on_failure=lambda: failures.append(1))
    with caplog.at_level("WARNING", logger="brainrank.serve"):
        for _ in range(3):
            res = result("gift card", ["d1"], mode="bm25", model=None)
            service.record(res)
            assert res.impression_id is None  # answered, not logged
    warnings = [r for r in caplog.records if "not logged" in r.getMessage()]
    assert len(failures) == 3 and len(warnings) == 1  # the old code warned three times
    assert "check --repair" in warnings[0].getMessage()
    assert check_file(path) is not None
    aside = set_aside(path)
    assert aside.name.startswith("querylog.sqlite.corrupt-") and not path.exists()
    res = result("gift card", ["d1"], mode="bm25", model=None)
    service.record(res)  # a new log, without restarting the service
    assert res.impression_id == "1" and check_file(path) is None
    service.close()
