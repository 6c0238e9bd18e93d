"""Ingest readers: a BEIR directory, JSONL, CSV or Parquet file into validated ``Document``s."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainrank.index.errors import InputError
from brainrank.index.jsontext import loads
from brainrank.index.records import Document
from brainrank.index.validation import (
    ID_KEYS,
    RESERVED,
    SEARCHABLE_KEYS,
    TEXT_KEYS,
    TIME_KEYS,
    BadRecord,
    Rules,
    describe,
    ignored_fields,
    to_document,
)

__all__ = [
    "FORMATS",
    "ID_KEYS",
    "RESERVED",
    "TEXT_KEYS",
    "TIME_KEYS",
    "ReadReport",
    "detect_format",
    "read_documents",
    "read_records",
]

FORMATS = ("beir", "jsonl", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_ALLOWED = "a BEIR directory (with corpus.jsonl), .jsonl, .csv or .parquet"
_BOM = b"\xef\xbb\xbf"
_PROGRESS_EVERY = 10_000
_PARQUET_BATCH = 8_192
# 2 GiB: far past any real document, and still fits the C long the csv module stores it in.
_CSV_FIELD_LIMIT = 2**31 - 1

Item = tuple[str, int, "dict[str, Any] | BadRecord"]  # ("line" | "row", number, record)


@dataclass
class ReadReport:
    """What ``read_documents`` found: valid documents, one message per skipped record, files.

    ``dropped`` has one message per numeric field left out of a kept document (NaN, infinite or
    too large for a float); ``truncated`` counts documents whose text was cut to the limit.
    """

    documents: list[Document] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    truncated: int = 0
    # Other fields kept neither as a number nor as a tag: name -> (what the first held, where
    # it was, how many documents had one), for one line per field rather than per document.
    ignored: dict[str, tuple[str, str, int]] = field(default_factory=dict)


def detect_format(path: Path) -> str:
    """Name the format of ``path``: "beir" for a directory, else by suffix (jsonl, csv, parquet)."""
    path = Path(path)
    if path.is_dir():
        return "beir"
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot tell the format of {path}: expected {_ALLOWED}")
    return fmt


def read_documents(
    path: Path | str,
    *,
    skip_bad: bool = False,
    numeric_fields: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
    max_text_chars: int | None = None,
) -> ReadReport:
    """Read and validate every document at ``path``; the first bad record raises unless skip_bad.

    With ``numeric_fields`` exactly those extra fields are read (and must be numbers); without,
    every extra field holding a finite number is kept (the others are counted in ``dropped``).
    ``progress`` receives records read since its last call. A title or body longer than
    ``max_text_chars`` is cut there and counted in ``truncated``. Raises ``InputError`` naming
    file, line and problem.
    """
    if isinstance(path, str) and not path.strip():
        raise InputError(f"no input path given: expected {_ALLOWED}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"input path does not exist: {path}")
    fmt = detect_format(path)
    file = path / "corpus.jsonl" if fmt == "beir" else path
    if fmt == "beir" and not file.is_file():
        raise InputError(f"BEIR directory {path} has no corpus.jsonl")
    reader = _READERS[fmt]
    # CSV cells are all strings, so there numbers and epoch times are parsed from text.
    typed = fmt != "csv"
    report = ReadReport(files=[file])
    rules = Rules(numeric_fields, typed, max_text_chars)
    try:
        _collect(reader(file), file.name, report, skip_bad, rules, progress)
    except OSError as err:
        raise InputError(f"cannot read {file}: {err.strerror or err}") from None
    if not report.documents:
        note = f" ({len(report.skipped)} bad records skipped)" if report.skipped else ""
        raise InputError(f"no documents in {file}{note}")
    return report


def read_records(
    records: Iterable[Mapping[str, Any] | Document],
    *,
    skip_bad: bool = False,
    numeric_fields: Sequence[str] | None = None,
    max_text_chars: int | None = None,
) -> ReadReport:
    """Validate in-memory records (dicts as in a JSONL file, or ``Document``) like a file.

    Errors name the record's position ("record 3"); an empty input is an error.
    """
    items = (
        (
            "record",
            n,
            r
            if isinstance(r, Mapping | Document)
            else BadRecord(f"expected a dict or Document, found {describe(r)}"),
        )
        for n, r in enumerate(records, start=1)
    )
    report = ReadReport(files=[])
    _collect(items, "input", report, skip_bad, Rules(numeric_fields, True, max_text_chars), None)
    if not report.documents:
        note = f" ({len(report.skipped)} bad records skipped)" if report.skipped else ""
        raise InputError(f"no documents given{note}")
    return report


def _collect(items, where, report, skip_bad, rules: Rules, progress) -> None:
    """Validate ``(unit, number, item)`` items into ``report``; duplicates are bad records."""
    first_seen: dict[str, int] = {}
    pending = 0
    for unit, number, item in items:
        pending += 1
        if progress is not None and pending >= _PROGRESS_EVERY:
            progress(pending)
            pending = 0
        try:
            if isinstance(item, BadRecord):
                raise item
            record = _as_record(item) if isinstance(item, Document) else dict(item)
            typed = rules.typed or isinstance(item, Document)
            doc, cut, dropped = to_document(record, rules, typed=typed)
            if doc.doc_id in first_seen:
                seen = first_seen[doc.doc_id]
                raise BadRecord(f'duplicate id "{doc.doc_id}" (first seen on {unit} {seen})')
        except BadRecord as err:
            message = f"{where} {unit} {number}: {err}"
            if not skip_bad:
                raise InputError(message) from None
            report.skipped.append(message)
            continue
        first_seen[doc.doc_id] = number
        report.documents.append(doc)
        report.truncated += cut
        report.dropped += [f"{where} {unit} {number}: {message}" for message in dropped]
        if rules.numeric_fields is None:
            for key, what in ignored_fields(record, doc).items():
                first = report.ignored.get(key)
                report.ignored[key] = (
                    (first[0], first[1], first[2] + 1)
                    if first
                    else (what, f"{where} {unit} {number}", 1)
                )
    if progress is not None and pending:
        progress(pending)


def _as_record(doc: Document) -> dict[str, Any]:
    return {
        "id": doc.doc_id,
        "title": doc.title,
        "text": doc.text,
        "timestamp": doc.timestamp,
        **doc.fields,
        **doc.tags,
    }


def _decoded_lines(file: Path) -> Iterator[tuple[int, str, str | None]]:
    """Yield (line number, text, decoding problem); bytes are decoded per line to blame one."""
    with file.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                text, problem = raw.decode("utf-8"), None
            except UnicodeDecodeError as err:
                text = raw.decode("utf-8", "replace")
                problem = f"invalid UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1})"
            yield number, text, problem


def _jsonl_items(file: Path) -> Iterator[Item]:
    for number, text, problem in _decoded_lines(file):
        if problem is not None:
            yield "line", number, BadRecord(problem)
        elif text.strip():
            try:
                record = loads(text)
            except ValueError as err:  # also too deep, or an integer past the digit limit
                yield "line", number, BadRecord(f"malformed JSON ({err})")
                continue
            if isinstance(record, dict):
                yield "line", number, record
            else:
                found = type(record).__name__
                yield "line", number, BadRecord(f"expected a JSON object, found {found}")


def _csv_items(file: Path) -> Iterator[Item]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    bad_lines: dict[int, str] = {}

    def lines() -> Iterator[str]:
        for number, text, problem in _decoded_lines(file):
            if problem is not None:
                bad_lines[number] = problem
            yield text

    reader = csv.reader(lines())
    header: list[str] | None = None
    start = 1  # a quoted field may span lines; a row is named by the line it starts on
    try:
        for row in reader:
            first, last, start = start, reader.line_num, reader.line_num + 1
            problem = next((bad_lines[n] for n in range(first, last + 1) if n in bad_lines), None)
            if not row and problem is None:
                continue  # blank line
            if header is None:
                if problem is not None:
                    raise InputError(f"{file.name} line {first}: header has {problem}")
                header = [name.strip() for name in row]
                _check_columns(f"{file.name} line {first}", header)
            elif problem is not None:
                yield "line", first, BadRecord(problem)
            elif len(row) != len(header):
                found = f"expected {len(header)} columns, found {len(row)}"
                yield "line", first, BadRecord(found)
            else:
                yield "line", first, dict(zip(header, row, strict=True))
    except csv.Error as err:
        # The csv module cannot resume after a parse error, so this ends the file.
        raise InputError(f"{file.name} line {reader.line_num}: malformed CSV ({err})") from None


def _parquet_items(file: Path) -> Iterator[Item]:
    import pyarrow as pa  # only Parquet input pays for importing pyarrow
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowException, ValueError) as err:
        raise InputError(f"{file} is not a readable Parquet file: {err}") from None
    _check_columns(file.name, parquet.schema_arrow.names)
    number = 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH):
        for record in batch.to_pylist():
            number += 1
            yield "row", number, record


_READERS: dict[str, Callable[[Path], Iterator[Item]]] = {
    "beir": _jsonl_items,
    "jsonl": _jsonl_items,
    "csv": _csv_items,
    "parquet": _parquet_items,
}


def _check_columns(where: str, columns: Sequence[str]) -> None:
    for keys in (ID_KEYS, SEARCHABLE_KEYS):
        if not any(key in columns for key in keys):
            wanted = ", ".join(f'"{key}"' for key in keys)
            raise InputError(
                f"{where}: missing required column: one of {wanted} (found: {', '.join(columns)})"
            )
