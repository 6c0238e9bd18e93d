"""Property tests on untrusted input: whatever records reach the readers and whatever arguments
reach the CLI, the answer is documents or a clear error, an exit code of 0, 1, 2 or 3, never a
traceback, and a failed command leaves what was stored unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from brainrank.index.errors import InputError
from brainrank.index.readers import read_documents, read_records
from brainrank.ranker.cli.app import app

# --- records ----------------------------------------------------------------------------------

KEYS = [
    "id", "_id", "doc_id", "title", "text", "body", "timestamp", "time", "price", "rating",
    "query", "query_id", "impression_id", "shown", "clicks", "position", "metadata",
]  # fmt: skip
# Lone surrogates (Cs) included: JSON can carry them as escapes.
_text = st.text(st.characters(codec=None), max_size=30)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.just(10**400),
    st.floats(),  # NaN and infinities included
    _text,
    st.sampled_from(["", " ", "2026-10-03T14:22:05Z", "0001-01-01T00:00+02:00", "1e400", "nan"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_records = st.dictionaries(st.sampled_from(KEYS) | _text, _values, max_size=6)
_deep = st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n)


def _line(value) -> str:
    return json.dumps(value)  # ASCII: surrogates and NaN become escapes JSON readers accept


_lines = st.lists(
    st.one_of(
        _records.map(_line),
        _deep.map(lambda d: '{"id": "x", "text": "y", "deep": ' + d + "}"),
        st.just('{"id": ' + "7" * 5000 + ', "text": "x"}'),
        st.text(max_size=40),  # anything at all, even not JSON
    ),
    max_size=6,
)


def _check_documents(documents) -> None:
    for doc in documents:
        for value in (doc.doc_id, doc.title, doc.text):
            value.encode("utf-8")  # storable: no lone surrogates
        assert doc.doc_id.strip() and (doc.title.strip() or doc.text.strip())
        assert all(isinstance(v, float) and math.isfinite(v) for v in doc.fields.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=_lines, skip_bad=st.booleans())
def test_readers_return_valid_documents_or_a_clear_error(tmp_path_factory, lines, skip_bad):
    path = tmp_path_factory.mktemp("r") / "docs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    try:
        report = read_documents(path, skip_bad=skip_bad, max_text_chars=1000)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    _check_documents(report.documents)
    assert all(len(d.text) <= 1000 and len(d.title) <= 1000 for d in report.documents)
    non_blank = sum(1 for line in lines for part in line.splitlines() if part.strip())
    assert len(report.documents) + len(report.skipped) <= non_blank


@settings(max_examples=150, deadline=None)
@given(records=st.lists(_records, max_size=5), skip_bad=st.booleans())
def test_in_memory_records_give_valid_documents_or_a_clear_error(records, skip_bad):
    try:
        report = read_records(records, skip_bad=skip_bad)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    _check_documents(report.documents)
    assert len(report.documents) + len(report.skipped) == len(records)


# --- the command line -------------------------------------------------------------------------

OPTIONS = {
    "search": ["-k", "--mode", "--model", "--json", "--queries", "--run"],
    "eval": ["--queries", "--qrels", "--mode", "--json", "--run-dir", "--model"],
    "ingest": ["--delete", "--skip-bad"],
    "feedback": ["--json"],
    "train": ["--queries", "--qrels", "--clicks", "--scorer", "--loss", "--seed", "--json"],
    "models show": [],
    "models import": ["--no-promote"],
    "monitor": ["--window", "--json"],
}
SPECIAL = [
    "bm25", "hybrid", "learned", "champion", "v1", "-1", "0", "3", "1001",
    "9" * 30, "1e400", "nan", "7d", "", " ", "caf\udcff", "a\x00b", "--", "-",
]  # fmt: skip
# Files that are nearly right, so commands get past parsing: queries, judgments, clicks, docs.
_plausible = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.sampled_from(["q01", "q02", "d001", "new1"]) | _scalars,
            "text": st.sampled_from(["brake pads", "refund", "caf\udcff"]) | _scalars,
        },
        optional={
            "title": _scalars,
            "doc_id": st.sampled_from(["d001", "d008", "nowhere"]) | _scalars,
            "query": st.sampled_from(["brake pads", "refund"]) | _scalars,
            "impression_id": st.sampled_from(["1", 1, 10**30]) | _scalars,
            "time": st.sampled_from([1e9, "2026-10-03T14:22:05Z", 1e300]) | _scalars,
            "position": st.integers(min_value=-5, max_value=10**31) | _scalars,
            "price": _scalars,
        },
    ),
    max_size=4,
).map(lambda rows: "".join(_line(r) + "\n" for r in rows).encode("ascii"))
_qrels = st.lists(
    st.tuples(
        st.sampled_from(["q01", "q02", "x"]),
        st.sampled_from(["d001", "d008", "nowhere"]),
        st.integers(min_value=-(2**70), max_value=2**70),
    ),
    max_size=4,
).map(lambda rows: "".join(f"{q} 0 {d} {g}\n" for q, d, g in rows).encode())
_files = st.one_of(
    st.binary(max_size=100),
    _lines.map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
    _plausible,
    _qrels,
)
_suffix = st.sampled_from([".jsonl", ".jsonl", ".tsv", ".txt", ".csv", ".tar.gz"])
# The arguments each command usually gets, so most runs get past parsing.
BASE = {
    "search": ["TEXT"],
    "eval": ["--queries", "FILE0", "--qrels", "FILE1", "--mode", "bm25"],
    "ingest": ["FILE0"],
    "feedback": ["FILE0"],
    "train": ["--queries", "FILE0", "--qrels", "FILE1"],
    "models show": ["TEXT"],
    "models import": ["FILE0"],
    "monitor": [],
}


@st.composite
def _invocations(draw):
    command = draw(st.sampled_from(sorted(OPTIONS)))
    text = st.text(st.characters(codec=None), max_size=12)
    token = st.one_of(
        st.sampled_from(OPTIONS[command] or ["--json"]),
        st.sampled_from(SPECIAL),
        st.sampled_from(["FILE0", "FILE1", "FOLDER"]),
        text,
    )
    base = BASE[command] if draw(st.integers(0, 4)) else []
    tokens = [draw(text | st.sampled_from(SPECIAL)) if t == "TEXT" else t for t in base]
    tokens += draw(st.lists(token, max_size=4))
    files = draw(st.lists(st.tuples(_files, _suffix), min_size=2, max_size=2))
    return command.split(), tokens, files


def _snapshot(ws: Path) -> dict[str, str]:
    """What the workspace stores, by content; lock files and SQLite's side files aside."""
    out = {}
    for p in sorted(ws.rglob("*")):
        if not p.is_file() or p.name.endswith((".lock", ".holder", "-wal", "-shm", "-journal")):
            continue
        out[str(p.relative_to(ws))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def workspace(sample_config, tmp_path):
    """A copy of the sample workspace that has served searches (so it has a query log)."""
    from brainrank.ranker.feedback.querylog import QueryLog

    shutil.copytree(sample_config.workspace, tmp_path / "ws")
    QueryLog.open(tmp_path / "ws").close()
    return tmp_path / "ws"


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(invocation=_invocations())
def test_the_cli_fails_cleanly_whatever_its_arguments(workspace, tmp_path, invocation):
    command, tokens, files = invocation
    scratch = tmp_path / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "FOLDER").mkdir(parents=True)
    paths = {"FOLDER": str(scratch / "FOLDER")}
    for i, (content, suffix) in enumerate(files):
        path = scratch / f"file{i}{suffix}"
        path.write_bytes(content)
        paths[f"FILE{i}"] = str(path)
    args = [*command, *(paths.get(t, t) for t in tokens), "-w", str(workspace)]
    if command == ["ingest"]:
        # An encoder that cannot load: a valid file gets as far as the index build, then fails,
        # so the test sees whether that failure leaves the store as it was (and stays quick).
        args += ["--encoder", str(scratch / "no-encoder")]
    before = _snapshot(workspace)
    with contextlib.chdir(scratch):  # relative paths in the arguments land in the scratch folder
        res = CliRunner().invoke(app, args, env={"BRAINRANK_CONFIG": ""})
    assert res.exit_code in (0, 1, 2, 3), (args, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), (args, res.exception)
    assert "Traceback" not in res.output, (args, res.output)
    if res.exit_code not in (0, 3):
        assert _snapshot(workspace) == before, (args, res.output)
