"""Tests for the ingest readers: every format, every error message, and a JSONL round trip."""

from __future__ import annotations

import csv
import json
import os
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainrank.index.errors import InputError
from brainrank.index.readers import RESERVED, ReadReport, detect_format, read_documents
from brainrank.index.records import Document

DATASETS = Path(
    os.environ.get(
        "BRAINRANK_DATASETS", Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
    )
)


def write_jsonl(path: Path, records: list[dict | str]) -> Path:
    """Write one line per record; a str is written verbatim (to plant broken lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as stream:
        csv.writer(stream).writerows(rows)
    return path


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        read_documents(path, **kwargs)
    return str(caught.value)


# --- formats -------------------------------------------------------------------------------


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(tmp_path) == "beir"
    assert detect_format(tmp_path / "a.jsonl") == "jsonl"
    assert detect_format(tmp_path / "a.CSV") == "csv"
    assert detect_format(tmp_path / "a.parquet") == "parquet"
    with pytest.raises(InputError, match=r"notes\.txt.*\.jsonl, \.csv or \.parquet"):
        detect_format(tmp_path / "notes.txt")


def test_beir_directory_reads_corpus_and_ignores_metadata(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Aspirin", "text": "Reduces fever.", "metadata": {"year": 1}},
            {"_id": "d2", "title": "", "text": "No title here."},
        ],
    )
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "not a document"}])
    report = read_documents(tmp_path)
    assert isinstance(report, ReadReport)
    assert report.files == [tmp_path / "corpus.jsonl"]
    assert report.skipped == []
    assert report.documents == [
        Document("d1", "Aspirin", "Reduces fever."),
        Document("d2", "", "No title here."),
    ]


def test_beir_directory_without_corpus_names_the_directory(tmp_path: Path) -> None:
    message = error_of(tmp_path)
    assert str(tmp_path) in message and "corpus.jsonl" in message


def test_jsonl_field_aliases(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"id": 7, "body": "integer id becomes a string"},
            {"doc_id": "x", "title": "T", "contents": "contents is text too"},
        ],
    )
    docs = read_documents(str(path)).documents
    assert docs == [
        Document("7", "", "integer id becomes a string"),
        Document("x", "T", "contents is text too"),
    ]


def test_csv_with_quoted_newlines_and_a_huge_field(tmp_path: Path) -> None:
    huge = "word " * 100_000  # 500 KB, past the csv module's default 128 KiB field limit
    path = write_csv(
        tmp_path / "docs.csv",
        [
            ["id", "title", "text", "rating", "category"],
            ["a", "Two\nlines", "first", "4.5", "news"],
            ["b", "", huge, "", "3"],
            ["c", "", "last", "1", "x"],
        ],
    )
    docs = read_documents(path).documents
    assert [d.doc_id for d in docs] == ["a", "b", "c"]
    assert docs[0].title == "Two\nlines"
    assert docs[1].text == huge
    # CSV cells are strings: those that parse as numbers become fields, the rest tags.
    assert docs[0].fields == {"rating": 4.5} and docs[0].tags == {"category": "news"}
    assert docs[1].fields == {"category": 3.0} and docs[1].tags == {}
    assert docs[2].tags == {"category": "x"}


def test_parquet_in_batches_with_typed_columns(tmp_path: Path) -> None:
    n = 20_000  # more than one read batch
    table = pa.table(
        {
            "doc_id": pa.array(range(n), pa.int64()),
            "text": [f"document {i}" for i in range(n)],
            "published": pa.array(
                [datetime(2024, 1, 1) + timedelta(hours=i) for i in range(n)], pa.timestamp("s")
            ),
            "price": [i / 2 for i in range(n)],
            "in_stock": [True] * n,
        }
    )
    path = tmp_path / "docs.parquet"
    pq.write_table(table, path, row_group_size=5_000)
    calls: list[int] = []
    docs = read_documents(path, progress=calls.append).documents
    assert len(docs) == n and sum(calls) == n and len(calls) >= 2
    assert docs[3] == Document(
        "3", "", "document 3", datetime(2024, 1, 1, 3, tzinfo=UTC), {"price": 1.5},
        {"in_stock": "true"},
    )  # fmt: skip


def test_decimals_are_numbers_booleans_tags_and_other_fields_are_named(tmp_path: Path) -> None:
    from decimal import Decimal

    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "title": ["Blue kettle", "Red kettle", "Green kettle"],
            "price": pa.array([Decimal("19.99"), None, Decimal("7.50")], pa.decimal128(10, 2)),
            "in_stock": [True, False, None],
            "sizes": [["s"], ["m", "l"], None],
            "blurb": ["x" * 300, "short", None],
        }
    )
    path = tmp_path / "shop.parquet"
    pq.write_table(table, path)
    report = read_documents(path)
    assert [d.fields for d in report.documents] == [{"price": 19.99}, {}, {"price": 7.5}]
    assert [d.tags for d in report.documents] == [
        {"in_stock": "true"},
        {"in_stock": "false", "blurb": "short"},
        {},
    ]
    assert report.ignored == {
        "sizes": ("a list", "shop.parquet row 1", 2),
        "blurb": ("a string of 300 characters (tags hold up to 200)", "shop.parquet row 1", 1),
    }
    assert report.dropped == []
    jsonl = tmp_path / "shop.jsonl"
    jsonl.write_text('{"id": "d", "text": "x", "specs": {"w": 2}, "ok": true}\n')
    report = read_documents(jsonl)
    assert report.documents[0].tags == {"ok": "true"}
    assert report.ignored == {"specs": ("an object", "shop.jsonl line 1", 1)}


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "a"], "text": ["x", None, "y"]}), path)
    assert error_of(path).startswith("docs.parquet row 2: missing text")
    report = read_documents(path, skip_bad=True)
    assert [d.text for d in report.documents] == ["x"]
    assert report.skipped == [
        'docs.parquet row 2: missing text (expected "title" or one of "text", "body", "contents")',
        'docs.parquet row 3: duplicate id "a" (first seen on row 1)',
    ]


def test_parquet_missing_column_and_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["a"], "name": ["no searchable text"]}), path)
    message = error_of(path, skip_bad=True)
    assert message.startswith("docs.parquet: missing required column")
    assert '"title", "text"' in message and "found: id, name" in message
    path.write_bytes(b"not parquet at all")
    assert "not a readable Parquet file" in error_of(path)


# --- errors, one per kind --------------------------------------------------------------------

GOOD = '{"_id": "ok1", "text": "fine"}'

JSONL_ERRORS = [
    ('{"_id": "d1", "text": "x"', "malformed JSON"),
    ('["d1", "x"]', "expected a JSON object, found list"),
    ('{"title": "t", "text": "x"}', "missing id"),
    ('{"_id": "  ", "text": "x"}', "missing id"),
    ('{"_id": 1.5, "text": "x"}', "id must be a string or integer, found float"),
    ('{"_id": "d1"}', 'missing text (expected "title" or one of "text", "body", "contents")'),
    ('{"_id": "d1", "text": " \\t "}', "empty text"),
    ('{"_id": "d1", "title": " ", "text": ""}', "empty text"),
    ('{"_id": "d1", "text": 3}', "text must be a string, found int"),
    ('{"_id": "d1", "text": "x", "title": 3}', "title must be a string, found int"),
    ('{"_id": "d1", "text": "x", "date": "yesterday"}', 'unparseable timestamp "yesterday"'),
    ('{"_id": "d1", "text": "x", "time": 1e20}', "unparseable timestamp 1e+20"),
    ('{"_id": "d1", "text": "x", "time": "1700000000"}', 'unparseable timestamp "1700000000"'),
    ('{"_id": "ok1", "text": "again"}', 'duplicate id "ok1" (first seen on line 1)'),
]


@pytest.mark.parametrize(("line", "problem"), JSONL_ERRORS)
def test_jsonl_error_names_file_line_and_problem(tmp_path: Path, line: str, problem: str) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", [GOOD, "", line, GOOD.replace("ok1", "ok2")])
    message = error_of(path)
    assert message.startswith("docs.jsonl line 3: ")  # the blank line 2 still counts
    assert problem in message
    report = read_documents(path, skip_bad=True)
    assert [d.doc_id for d in report.documents] == ["ok1", "ok2"]
    assert report.skipped == [message]


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(GOOD.encode() + b'\n{"_id": "d2", "text": "caf\xe9"}\n')
    assert error_of(path) == "docs.jsonl line 2: invalid UTF-8 (byte 0xe9 at byte 27)"


def test_declared_numeric_field_must_be_a_number(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", [{"_id": "d1", "text": "x", "price": "cheap"}])
    message = error_of(path, numeric_fields=["price"])
    assert message == 'docs.jsonl line 1: field "price" must be a finite number, found "cheap"'


def test_csv_errors_name_the_physical_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_bytes(b'id,text\na,"spans\ntwo lines"\n\nb,x,extra\nc,\nd,caf\xe9\na,dup\ne,fine\n')
    message = error_of(path)
    assert message == "docs.csv line 5: expected 2 columns, found 3"
    report = read_documents(path, skip_bad=True)
    assert [d.doc_id for d in report.documents] == ["a", "e"]
    assert report.skipped == [
        message,
        "docs.csv line 6: empty text: no title or body",
        "docs.csv line 7: invalid UTF-8 (byte 0xe9 at byte 6)",
        'docs.csv line 8: duplicate id "a" (first seen on line 2)',
    ]


def test_csv_missing_required_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "docs.csv", [["name", "text"], ["a", "x"]])
    message = error_of(path, skip_bad=True)
    assert message == (
        'docs.csv line 1: missing required column: one of "_id", "id", "doc_id" (found: name, text)'
    )


def test_skip_bad_keeps_first_duplicate_and_counts(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"_id": "d1", "text": "first"},
            "{broken",
            {"_id": "d1", "text": "second"},
            {"_id": "d2", "text": ""},
            {"_id": "d3", "text": "third"},
        ],
    )
    report = read_documents(path, skip_bad=True)
    assert [(d.doc_id, d.text) for d in report.documents] == [("d1", "first"), ("d3", "third")]
    assert len(report.skipped) == 3
    assert [m.split(":")[0] for m in report.skipped] == [
        "docs.jsonl line 2",
        "docs.jsonl line 3",
        "docs.jsonl line 4",
    ]


def test_no_valid_documents_raises_even_with_skip_bad(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", [{"_id": "d1", "text": ""}, "", "{"])
    assert error_of(path, skip_bad=True) == f"no documents in {path} (2 bad records skipped)"
    (tmp_path / "empty.csv").write_text("")
    assert error_of(tmp_path / "empty.csv") == f"no documents in {tmp_path / 'empty.csv'}"


def test_empty_and_missing_paths(tmp_path: Path) -> None:
    assert "no input path given" in error_of("")  # type: ignore[arg-type]
    missing = tmp_path / "nope.jsonl"
    assert error_of(missing) == f"input path does not exist: {missing}"


# --- values ----------------------------------------------------------------------------------

TIMESTAMPS = [
    ("2024-03-01T12:30:00Z", datetime(2024, 3, 1, 12, 30, tzinfo=UTC)),
    ("2024-03-01T14:30:00+02:00", datetime(2024, 3, 1, 12, 30, tzinfo=UTC)),
    ("2024-03-01T12:30:00", datetime(2024, 3, 1, 12, 30, tzinfo=UTC)),  # naive means UTC
    ("2024-03-01 12:30:00.250", datetime(2024, 3, 1, 12, 30, 0, 250_000, tzinfo=UTC)),
    ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
    (1_709_296_200, datetime(2024, 3, 1, 12, 30, tzinfo=UTC)),
    (1_709_296_200.5, datetime(2024, 3, 1, 12, 30, 0, 500_000, tzinfo=UTC)),
]


@pytest.mark.parametrize(("value", "expected"), TIMESTAMPS)
def test_timestamp_variants(tmp_path: Path, value: object, expected: datetime) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", [{"_id": "d", "text": "x", "timestamp": value}])
    stamp = read_documents(path).documents[0].timestamp
    assert stamp == expected and stamp.tzinfo == UTC


def test_timestamp_aliases_and_csv_epoch(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "docs.csv",
        [["id", "text", "published"], ["a", "x", "1709296200"], ["b", "y", " "], ["c", "z", ""]],
    )
    docs = read_documents(path).documents
    assert docs[0].timestamp == datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    assert docs[1].timestamp is None and docs[2].timestamp is None
    offset = timezone(timedelta(hours=-5))
    path = write_jsonl(
        tmp_path / "docs.jsonl", [{"_id": "d", "text": "x", "time": "2024-03-01T07:30:00-05:00"}]
    )
    assert read_documents(path).documents[0].timestamp == datetime(2024, 3, 1, 7, 30, tzinfo=offset)


def test_numeric_fields_detected_and_declared(tmp_path: Path) -> None:
    record = {
        "_id": "d1",
        "text": "x",
        "rating": 4,
        "price": 9.5,
        "category": "news",
        "brand": "  Voltra ",
        "blank": "   ",
        "url": "https://example.com/" + "x" * 200,
        "flag": True,
        "metadata": {"year": 2020},
    }
    path = write_jsonl(tmp_path / "docs.jsonl", [record])
    report = read_documents(path)
    found = report.documents[0]
    assert found.fields == {"rating": 4.0, "price": 9.5}
    # Short strings are tags (trimmed), booleans too; blank ones and those over 200 characters
    # are not, and the long one is named (BEIR's metadata object is expected and is not).
    assert found.tags == {"category": "news", "brand": "Voltra", "flag": "true"}
    assert list(report.ignored) == ["url"]
    declared = read_documents(path, numeric_fields=["price", "stock"]).documents[0]
    assert declared.fields == {"price": 9.5}  # rating not declared, stock missing
    assert declared.tags == {}  # declared fields are exactly what is read


def test_bom_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    # A BOM, CRLF endings, a blank and a whitespace-only line, no newline at the end.
    path.write_bytes(
        b'\xef\xbb\xbf{"_id": "d1", "text": "x"}\r\n\r\n   \n{"_id": "d2", "text": "y"}'
    )
    assert [d.doc_id for d in read_documents(path).documents] == ["d1", "d2"]
    path = tmp_path / "docs.csv"
    path.write_bytes(b"\xef\xbb\xbfid,text\r\n\r\na,x\r\n")
    assert read_documents(path).documents == [Document("a", "", "x")]


def test_progress_reports_every_record(tmp_path: Path) -> None:
    records = [{"_id": str(i), "text": "t"} for i in range(25_001)]
    path = write_jsonl(tmp_path / "docs.jsonl", records)
    calls: list[int] = []
    read_documents(path, progress=calls.append)
    assert calls == [10_000, 10_000, 5_001]


# --- property and real data ------------------------------------------------------------------

_chars = st.characters(blacklist_categories=("Cs",))  # lone surrogates cannot be UTF-8
_visible = st.text(_chars, min_size=1).filter(str.strip)
_field_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: name not in RESERVED
)
_documents = st.builds(
    Document,
    doc_id=_visible,
    title=st.text(_chars),
    text=_visible,
    timestamp=st.none() | st.datetimes(timezones=st.just(UTC)),
    fields=st.dictionaries(_field_names, st.floats(allow_nan=False, allow_infinity=False)),
    tags=st.dictionaries(
        st.from_regex(r"[A-Z][A-Z0-9]{0,6}", fullmatch=True),
        st.text(_chars, min_size=1, max_size=40).filter(lambda v: v.strip() == v and v),
    ),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_documents, min_size=1, max_size=8, unique_by=lambda d: d.doc_id))
def test_jsonl_round_trip(tmp_path: Path, docs: list[Document]) -> None:
    path = tmp_path / "round_trip.jsonl"
    rows = []
    for doc in docs:
        row = {"_id": doc.doc_id, "title": doc.title, "text": doc.text, **doc.fields, **doc.tags}
        if doc.timestamp is not None:
            row["timestamp"] = doc.timestamp.isoformat()
        rows.append(row)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assert read_documents(path).documents == docs


def test_reads_real_scifact_corpus() -> None:
    corpus = DATASETS / "scifact"
    if not (corpus / "corpus.jsonl").is_file():
        pytest.skip(f"SciFact not found at {corpus} (set BRAINRANK_DATASETS to its parent)")
    started = time.perf_counter()
    report = read_documents(corpus)
    seconds = time.perf_counter() - started
    assert len(report.documents) == 5_183 and report.skipped == []
    print(f"read SciFact ({len(report.documents)} documents) in {seconds:.2f} s")
