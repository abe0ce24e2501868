"""Structured knowledge (table rows, knowledge-graph triples) and existing QA sets, with provenance.

Files: CSV, JSON Lines, JSON (a list of objects, or an object holding one such list) and
Parquet. Every row becomes a :class:`Record` whose values are text; a row whose columns
look like a triple (subject/predicate or relation/object, head/relation/tail,
entity/attribute/value) is marked as one. QA sets are the same files with a question and an
answer column.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from domainkd.errors import DomainKDError
from domainkd.io import decode_utf8, parse_jsonl
from domainkd.sources.documents import folder_files

RECORD_SUFFIXES = {".csv", ".jsonl", ".json", ".parquet"}
TRIPLE_COLUMNS = (
    ("subject", "predicate", "object"),
    ("subject", "relation", "object"),
    ("head", "relation", "tail"),
    ("entity", "attribute", "value"),
)
QUESTION_COLUMNS = ("question", "query", "prompt", "instruction", "input")
ANSWER_COLUMNS = ("answer", "response", "output", "completion", "target")
MAX_VALUE_CHARS = 2000


@dataclass(frozen=True)
class Record:
    """One row of a structured file; ``fields`` keeps the file's column order, values as text."""

    record_id: str
    source: str
    row: int
    fields: dict[str, str]
    triple: bool = False
    """Whether the row is a (subject, predicate, object)-style fact."""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class QAPair:
    """A question and its answer from an existing QA set."""

    pair_id: str
    source: str
    row: int
    question: str
    answer: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def record_files(paths: list[Path]) -> list[Path]:
    """The record files named by ``paths`` (files, or folders searched recursively), sorted.

    Raises:
        DomainKDError: a path is missing or a named file has an unsupported suffix.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += folder_files(path, RECORD_SUFFIXES)
        elif path.is_file():
            if path.suffix.lower() not in RECORD_SUFFIXES:
                raise DomainKDError(f"{path} is not a .csv, .jsonl, .json or .parquet file; convert it or remove it from the config.")
            files.append(path)
        else:
            raise DomainKDError(f"{path} does not exist; fix the path in the config's data section.")
    return files


def read_records(paths: list[Path]) -> list[Record]:
    """Every row of every record file, empty rows skipped with a counted warning."""
    records: list[Record] = []
    for path in record_files(paths):
        empty = 0
        for row_number, row in enumerate(read_rows(path)):
            fields = {str(key): _text(value) for key, value in row.items() if _text(value)}
            if not fields:
                empty += 1
                continue
            name = path.as_posix()
            records.append(Record(f"{name}#{row_number}", name, row_number, fields, _is_triple(fields)))
        if empty:
            warnings.warn(f"skipped {empty} empty rows in {path}", stacklevel=2)
    return records


def read_qa_pairs(paths: list[Path]) -> list[QAPair]:
    """Question/answer pairs from QA-set files; rows missing either side are skipped with a counted warning.

    Raises:
        DomainKDError: a file has no recognisable question or answer column.
    """
    pairs: list[QAPair] = []
    for path in record_files(paths):
        rows = read_rows(path)
        question_key, answer_key = _qa_columns(path, rows)
        incomplete = 0
        asked: Counter[str] = Counter()
        for row_number, row in enumerate(rows):
            question, answer = _text(row.get(question_key)), _text(row.get(answer_key))
            if not question or not answer:
                incomplete += 1
                continue
            asked[" ".join(question.split()).casefold()] += 1
            if asked[" ".join(question.split()).casefold()] > 1:
                continue
            pairs.append(QAPair(f"{path.as_posix()}#{row_number}", path.as_posix(), row_number, question, answer))
        if incomplete:
            warnings.warn(f"skipped {incomplete} rows without both a question and an answer in {path}", stacklevel=2)
        repeated = sum(count > 1 for count in asked.values())
        if repeated:  # two answers to one question would teach the student to contradict itself
            warnings.warn(
                f"{path} asks {repeated} question{'s' if repeated > 1 else ''} more than once; kept its first answer "
                "each time (merge or reword the repeats)", stacklevel=2,
            )
    return pairs


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of one CSV / JSONL / JSON / Parquet file as dicts.

    Raises:
        DomainKDError: the file is empty, binary where text is expected, or malformed (with the line).
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet_rows(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise DomainKDError(f"{path} is empty; add rows or remove it from the config.")
    if b"\x00" in raw[:8192]:
        raise DomainKDError(f"{path} is binary, not {suffix[1:].upper()} text; export it as UTF-8 text.")
    text = decode_utf8(path, raw)
    if suffix == ".csv":
        return _csv_rows(path, text)
    if suffix == ".jsonl":
        return parse_jsonl(path, text)
    return _json_rows(path, text)


MAX_CSV_CELL_BYTES = 5_000_000
"""Largest CSV cell read (the csv module's default stops at 128 KiB); as large as a text document may be."""


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_CELL_BYTES))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header or not any(name.strip() for name in header):
            raise DomainKDError(f"{path} has no header row; the first CSV line must name the columns.")
        rows = []
        for values in reader:
            if not values:  # a blank line
                continue
            if len(values) != len(header):
                raise DomainKDError(
                    f"{path} line {reader.line_num} has {len(values)} fields but the header has {len(header)}; fix the quoting or the row."
                )
            rows.append(dict(zip((name.strip() for name in header), values)))
    except csv.Error as error:  # a cell over the limit, a NUL byte, an unterminated quote in strict dialects
        raise DomainKDError(
            f"{path} line {reader.line_num} is not readable CSV ({error}); fix that row (cells may hold at most "
            f"{MAX_CSV_CELL_BYTES // 1_000_000} MB)."
        ) from None
    return rows


def _json_rows(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DomainKDError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); fix the file.") from None
    if isinstance(data, dict):
        lists = [value for value in data.values() if isinstance(value, list)]
        data = lists[0] if len(lists) == 1 else None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise DomainKDError(f"{path} must hold a list of objects (or an object with one such list); reshape the file.")
    return data


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as parquet

    try:
        return parquet.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise DomainKDError(f"{path} is not a readable Parquet file ({type(error).__name__}); re-export it.") from None


def _text(value: Any) -> str:
    """A cell as one line of text; nested values as compact JSON; None and NaN as ''."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    return " ".join(str(value).split())[:MAX_VALUE_CHARS]


def _is_triple(fields: dict[str, str]) -> bool:
    names = {name.lower() for name in fields}
    return any(set(columns) <= names for columns in TRIPLE_COLUMNS)


def _qa_columns(path: Path, rows: list[dict[str, Any]]) -> tuple[str, str]:
    names = {str(name).lower(): str(name) for row in rows[:50] for name in row}
    question = next((names[name] for name in QUESTION_COLUMNS if name in names), None)
    answer = next((names[name] for name in ANSWER_COLUMNS if name in names and names[name] != question), None)
    if question is None or answer is None:
        raise DomainKDError(
            f"{path} has no question/answer columns (found {', '.join(sorted(names)) or 'none'}); "
            f"name them one of {'/'.join(QUESTION_COLUMNS)} and {'/'.join(ANSWER_COLUMNS)}."
        )
    return question, answer
