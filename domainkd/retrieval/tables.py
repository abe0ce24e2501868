"""Existing datasets on disk, read row by row as ``{column: text}`` for a retrieval datastore.

Formats: CSV, JSON Lines and JSON (read by :func:`domainkd.sources.records.read_rows`, with its
one-sentence errors), Parquet (streamed in record batches) and ``datasets`` saved with
``save_to_disk`` (memory-mapped Arrow, every split in turn). Prefer Parquet or ``save_to_disk``
for million-row datasets: they are never held in memory as Python rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainkd.errors import DomainKDError
from domainkd.retrieval.encoder import first_line
from domainkd.sources.records import read_rows

TEXT_SUFFIXES = {".csv", ".jsonl", ".json"}
MAX_VALUE_CHARS = 2000
ARROW_BATCH = 4096


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a datastore."""

    path: Path
    """A .csv / .jsonl / .json / .parquet file, or a folder written by ``Dataset.save_to_disk``."""
    name: str | None = None
    """Its name in the datastore and in ban lists (None: the file name without suffix)."""
    description: str | None = None
    """What the dataset holds, compared with the task instruction (None: name + column names)."""

    @property
    def dataset_name(self) -> str:
        return self.name or (self.path.name if self.path.is_dir() else self.path.stem)


def check_specs(specs: list[DatasetSpec]) -> None:
    """Raise one clear error for a missing dataset, an unsupported file or a repeated name."""
    if not specs:
        raise DomainKDError(
            "no datasets were given to build the datastore from; name at least one file or saved dataset."
        )
    seen: set[str] = set()
    for spec in specs:
        if not spec.path.exists():
            raise DomainKDError(f"dataset {spec.path} does not exist; fix the path.")
        if spec.path.is_file() and spec.path.suffix.lower() not in TEXT_SUFFIXES | {".parquet"}:
            raise DomainKDError(
                f"dataset {spec.path} is not a .csv, .jsonl, .json or .parquet file or a saved dataset folder; convert it."
            )
        if spec.dataset_name in seen:
            raise DomainKDError(f"two datasets are named {spec.dataset_name!r}; give one of them another name.")
        seen.add(spec.dataset_name)


def cell_text(value: Any) -> str:
    """A cell as one line of text: nested values as compact JSON, None and NaN as ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    return " ".join(str(value).split())[:MAX_VALUE_CHARS]


def dataset_rows(spec: DatasetSpec) -> Iterator[dict[str, str]]:
    """Every row of the dataset, in order, as ``{column: text}`` without empty cells (possibly ``{}``).

    Raises:
        DomainKDError: the dataset is unreadable or malformed.
    """
    path = spec.path
    if path.is_dir():
        raw: Iterator[dict[str, Any]] = _saved_dataset_rows(path)
    elif path.suffix.lower() == ".parquet":
        raw = _parquet_rows(path)
    else:
        raw = iter(read_rows(path))
    for row in raw:
        yield {str(column): text for column, value in row.items() if (text := cell_text(value))}


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    from pyarrow import parquet

    try:
        reader = parquet.ParquetFile(path)
        for batch in reader.iter_batches(batch_size=ARROW_BATCH):
            yield from batch.to_pylist()
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise DomainKDError(f"{path} is not a readable Parquet file ({first_line(error)}); re-export it.") from None


def _saved_dataset_rows(path: Path) -> Iterator[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as error:
        raise DomainKDError(
            f"{path} is not a dataset saved with save_to_disk ({first_line(error)}); point at such a folder or a data file."
        ) from None
    splits = [loaded[name] for name in loaded] if isinstance(loaded, datasets.DatasetDict) else [loaded]
    for split in splits:
        for batch in split.iter(batch_size=ARROW_BATCH):
            columns = list(batch)
            yield from (dict(zip(columns, values)) for values in zip(*(batch[column] for column in columns)))


def files_identity(path: Path) -> list[list[Any]]:
    """(relative name, size, mtime_ns) of the file, or of every file under the folder (for fingerprints)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [
        [str(f.relative_to(path)) if path.is_dir() else f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files
    ]
