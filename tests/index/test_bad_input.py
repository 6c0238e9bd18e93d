"""Input that used to crash, vanish silently or be refused wrongly: each is now a clear error (a
skipped, counted record under skip_bad), a counted note, or accepted."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brainrank.index.errors import InputError
from brainrank.index.readers import read_documents, read_records

GOOD = {"id": "good", "title": "Fine", "text": "a fine document"}
SURROGATE = '{"id": "s1", "text": "caf\\ud800e"}'  # a JSON escape no UTF-8 text can hold
HUGE_ID = '{"id": ' + "9" * 5000 + ', "text": "x"}'
DEEP = '{"id": "deep", "text": "x", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"


def write_lines(path: Path, lines: list[str | dict]) -> Path:
    text = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (SURROGATE, "text is not valid Unicode (lone surrogate \\ud800 at character 4)"),
        ('{"id": "caf\\udc80", "text": "x"}', "id is not valid Unicode"),
        ('{"id": "t", "title": "\\udfff", "text": "x"}', "title is not valid Unicode"),
        (HUGE_ID, "malformed JSON (Exceeds the limit"),
        (DEEP, "malformed JSON (nested too deeply)"),
    ],
    ids=["surrogate-text", "surrogate-id", "surrogate-title", "huge-int-id", "deep-json"],
)
def test_crashing_records_are_clear_errors_and_skipped_under_skip_bad(tmp_path, line, problem):
    path = write_lines(tmp_path / "docs.jsonl", [GOOD, line])
    with pytest.raises(InputError) as info:
        read_documents(path)
    assert str(info.value).startswith("docs.jsonl line 2: ") and problem in str(info.value)
    report = read_documents(path, skip_bad=True)
    assert [d.doc_id for d in report.documents] == ["good"]
    assert report.skipped == [str(info.value)]


def test_in_memory_records_get_the_same_checks():
    records = [GOOD, {"id": 10**400, "text": "x"}, {"id": "s", "text": "\ud800"}]
    report = read_records(records, skip_bad=True)
    assert [d.doc_id for d in report.documents] == ["good"]
    assert "record 2: id is an integer of 1329 bits" in report.skipped[0]
    assert "record 3: text is not valid Unicode" in report.skipped[1]


def test_non_finite_and_out_of_range_fields_are_dropped_and_counted(tmp_path):
    lines = [
        '{"id": "a", "text": "x", "price": NaN, "rating": 4.5}',
        '{"id": "b", "text": "x", "price": Infinity}',
        '{"id": "c", "text": "x", "price": 1e400, "stock": ' + "9" * 400 + "}",
        '{"id": "d", "text": "x", "price": 3}',
    ]
    report = read_documents(write_lines(tmp_path / "docs.jsonl", lines))
    assert [d.fields for d in report.documents] == [{"rating": 4.5}, {}, {}, {"price": 3.0}]
    assert report.dropped == [
        'docs.jsonl line 1: field "price" dropped: nan is not a finite number',
        'docs.jsonl line 2: field "price" dropped: inf is not a finite number',
        'docs.jsonl line 3: field "price" dropped: inf is not a finite number',
        'docs.jsonl line 3: field "stock" dropped: an integer of 1329 bits is not a finite number',
    ]
    csv = tmp_path / "docs.csv"
    csv.write_text("id,text,price\na,x,nan\nb,y,2.5\n")
    report = read_documents(csv)
    assert [d.fields for d in report.documents] == [{}, {"price": 2.5}]
    assert report.dropped == [
        'docs.csv line 2: field "price" dropped: "nan" is not a finite number'
    ]
    with pytest.raises(InputError, match='field "price" must be a finite number, found inf'):
        read_documents(write_lines(tmp_path / "d.jsonl", lines[1:2]), numeric_fields=["price"])


def test_a_title_is_searchable_text(tmp_path):
    lines = [
        {"id": "t1", "title": "Stainless steel kettle"},
        {"id": "t2", "title": "Garden hose", "text": ""},
        {"id": "t3", "title": "Lamp", "text": None},
        {"id": "e1", "title": " ", "text": " "},
        {"id": "e2"},
    ]
    report = read_documents(write_lines(tmp_path / "docs.jsonl", lines), skip_bad=True)
    assert [(d.doc_id, d.title, d.text) for d in report.documents] == [
        ("t1", "Stainless steel kettle", ""),
        ("t2", "Garden hose", ""),
        ("t3", "Lamp", ""),
    ]
    assert report.documents[0].full_text.strip() == "Stainless steel kettle"
    assert report.skipped == [
        "docs.jsonl line 4: empty text: no title or body",
        'docs.jsonl line 5: missing text (expected "title" or one of "text", "body", "contents")',
    ]
    csv = tmp_path / "catalogue.csv"
    csv.write_text("id,title\nsku1,Blue mug\nsku2,Red mug\n")
    assert [d.title for d in read_documents(csv).documents] == ["Blue mug", "Red mug"]


def test_long_text_is_cut_to_the_limit_and_counted(tmp_path):
    lines = [
        {"id": "big", "title": "T" * 50, "text": "word " * 2_000_000},  # 10 MB
        {"id": "small", "text": "short"},
    ]
    path = write_lines(tmp_path / "docs.jsonl", lines)
    started = time.perf_counter()
    report = read_documents(path, max_text_chars=1000)
    assert time.perf_counter() - started < 20
    big, small = report.documents
    assert (len(big.text), big.title, small.text) == (1000, "T" * 50, "short")
    assert report.truncated == 1
    assert read_documents(path).truncated == 0  # no limit given: nothing cut
    with pytest.raises(InputError, match="max_text_chars must be at least 1"):
        read_documents(path, max_text_chars=0)


def test_ingest_config_sets_the_limit(tmp_path):
    from brainrank.index.errors import BrainrankError
    from brainrank.ranker.config import load_config

    (tmp_path / "c.toml").write_text("[ingest]\nmax_text_chars = 500\n")
    assert load_config(tmp_path / "c.toml", env={}).ingest.max_text_chars == 500
    assert load_config(env={}).ingest.max_text_chars == 200_000
    (tmp_path / "c.toml").write_text("[ingest]\nmax_text_chars = 0\n")
    with pytest.raises(BrainrankError, match=r"\[ingest\]: max_text_chars must be at least 1"):
        load_config(tmp_path / "c.toml", env={})


def test_skip_bad_ingest_survives_every_crashing_record(tmp_path, encoder):
    """Through the CLI and the real indexes: bad records are skipped and counted, title-only
    and huge documents are ingested (the huge one cut), and searching finds them."""
    from brainrank.ranker.cli.app import app

    lines = [
        GOOD,
        SURROGATE,
        HUGE_ID,
        DEEP,
        {"id": "kettle", "title": "Stainless steel kettle"},
        {"id": "big", "title": "Encyclopedia", "text": "volume " * 3_000_000},  # 21 MB
        {"id": "priced", "text": "priced item", "price": float("nan")},
    ]
    docs = write_lines(tmp_path / "docs.jsonl", lines)
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "brainrank.toml").write_text("[ingest]\nmax_text_chars = 20000\n")
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(docs), "--skip-bad", "-w", str(tmp_path / "ws")])
    assert res.exit_code == 0, res.output
    assert "4 added" in res.output and "3 skipped" in res.output and "1 truncated" in res.output
    assert "truncated 1 documents to [ingest] max_text_chars = 20000" in res.output
    assert 'field "price" dropped' in res.output and "Traceback" not in res.output
    res = runner.invoke(
        app, ["search", "kettle", "--json", "--mode", "bm25", "-w", str(tmp_path / "ws")]
    )
    assert json.loads(res.stdout.splitlines()[-1])["hits"][0]["id"] == "kettle"
    from brainrank.index.workspace import Workspace

    store = Workspace(tmp_path / "ws").open_store()
    try:
        assert len(store.get(["big"])["big"].text) == 20_000
    finally:
        store.close()
