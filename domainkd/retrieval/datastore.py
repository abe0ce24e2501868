"""ReBase datastore: the distinct cell values of existing datasets, embedded and indexed with FAISS, on disk.

Each row of each dataset is flattened to its cells, (dataset, row, column) → text. Each
distinct text of a dataset is one *value* with one unit vector from the local sentence encoder
(a label such as ``entailment`` in 300k rows is indexed once, not 300k times, which kept a few
IVF cells holding most of the vectors), and each dataset has a description vector. Layout of a
store directory (``V`` values, ``C`` cells, ``R`` rows, ``S`` datasets, ``D`` dims):

* ``manifest.json`` — fingerprint of the inputs, counts, encoder, index type, build timings;
* ``meta.sqlite`` — ``datasets`` (name, path, description, columns, row, value and cell counts)
  and ``rows`` (id, dataset, row number, cells as a JSON object);
* ``index.faiss`` — :mod:`domainkd.retrieval.index` over the value vectors (value id = vector
  id; a dataset's values are one id range, so banning a dataset is a range), also their one
  stored copy;
* ``row_starts.npy`` (R+1,) int64 and ``cell_values.npy`` (C,) int64 — row ``r``'s k-th cell
  holds value ``cell_values[row_starts[r] + k]``;
* ``value_row_starts.npy`` (V+1,) int64 and ``value_rows.npy`` (C,) int64 — the rows holding
  value ``v``, ascending, are ``value_rows[value_row_starts[v]:value_row_starts[v+1]]``;
* ``row_datasets.npy`` (R,) int32, ``row_hashes.npy`` (R,) uint64 (equal for rows with
  identical values);
* ``descriptions.npy`` (S, D) float32 — dataset description vectors.

The arrays are memory-mapped, so a million-row store needs no Python object per row. A build
writes into ``.<name>.building-<fingerprint>`` beside the store, committing every batch of
encoded rows (a killed build resumes at the last batch), and renames it onto the store at the
end; a store whose fingerprint (dataset files' sizes and times, names, descriptions, encoder,
index settings) is unchanged is not rebuilt.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from domainkd.errors import DomainKDError
from domainkd.io import atomic_path, json_sha256, write_json
from domainkd.retrieval.encoder import (
    DEFAULT_ENCODER,
    SentenceEncoder,
    encoder_directory,
    encoder_files_identity,
    load_encoder,
)
from domainkd.retrieval.index import IndexSettings, VectorIndex, build_index
from domainkd.retrieval.tables import DatasetSpec, check_specs, dataset_rows, files_identity

FORMAT_VERSION = 2
MEMO_CHARS = 64
"""Texts up to this length (labels, short answers) are encoded once per build and reused across datasets."""
MEMO_SIZE = 200_000
DISTINCT_LIMIT = 2_000_000
"""Distinct texts remembered per dataset (a 64-bit hash each); later new texts always get a value of their own."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets(id INTEGER PRIMARY KEY, name TEXT UNIQUE, path TEXT, description TEXT,
    columns TEXT, first_row INTEGER, rows INTEGER, first_value INTEGER, n_values INTEGER, first_cell INTEGER,
    n_cells INTEGER);
CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, dataset_id INTEGER, row_number INTEGER, fields TEXT);
CREATE TABLE IF NOT EXISTS progress(id INTEGER PRIMARY KEY CHECK (id = 0), dataset INTEGER, rows_read INTEGER,
    next_row INTEGER, next_value INTEGER, next_cell INTEGER, parts INTEGER, encoded INTEGER, encode_seconds REAL,
    flatten_seconds REAL);
INSERT OR IGNORE INTO progress VALUES (0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0);
"""


@dataclass
class Progress:
    """How far the encoding phase of a build got (committed with each batch)."""

    dataset: int
    """Datasets before this one are complete."""
    rows_read: int
    """Rows of the current dataset already stored (empty rows included)."""
    next_row: int
    next_value: int
    next_cell: int
    parts: int
    encoded: int
    """Texts sent to the encoder (repeated short values are encoded once)."""
    encode_seconds: float
    flatten_seconds: float


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset as stored: rows ``first_row:first_row+rows``, values ``first_value:first_value+values``, cells likewise."""

    id: int
    name: str
    path: str
    description: str
    columns: list[str]
    first_row: int
    rows: int
    first_value: int
    values: int
    first_cell: int
    cells: int


@dataclass(frozen=True)
class StoredRow:
    """One row of the store with its cells."""

    row_id: int
    dataset: str
    row_number: int
    fields: dict[str, str]


def fingerprint(specs: list[DatasetSpec], encoder_identity: dict[str, Any], settings: IndexSettings) -> str:
    """sha256 over what decides a store's content: datasets (files, names, descriptions), encoder, index settings."""
    inputs = {
        "version": FORMAT_VERSION,
        "encoder": encoder_identity,
        "index": settings.build_fields(),
        "datasets": [[str(s.path.resolve()), s.dataset_name, s.description, files_identity(s.path)] for s in specs],
    }
    return json_sha256(inputs)


def read_manifest(path: Path) -> dict[str, Any]:
    """The store's manifest, or {} when ``path`` holds no built store."""
    manifest = path / "manifest.json"
    return json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else {}


def build_datastore(
    path: Path,
    datasets: list[DatasetSpec],
    encoder: str | SentenceEncoder = DEFAULT_ENCODER,
    settings: IndexSettings | None = None,
    batch_values: int = 8192,
    progress: bool = True,
) -> bool:
    """Build the store at ``path`` from ``datasets`` unless it is up to date; return whether it was built.

    Args:
        path: the store directory (created; an existing store there is replaced only at the end).
        datasets: the datasets to flatten and embed, in order.
        encoder: a model reference, or an encoder already loaded (not loaded when the store is up to date).
        settings: how the FAISS index is built (None: the defaults of :class:`IndexSettings`).
        batch_values: values encoded and committed together (a killed build loses at most one batch).
        progress: show a progress bar.

    Raises:
        DomainKDError: a dataset is missing, malformed or empty; the encoder is unknown; ``path`` holds something else.
    """
    check_specs(datasets)
    settings = settings or IndexSettings()
    key = fingerprint(datasets, _encoder_identity(encoder), settings)
    if read_manifest(path).get("fingerprint") == key:
        return False
    _check_replaceable(path)
    work = path.parent / f".{path.name}.building-{key[:16]}"
    for stale in path.parent.glob(f".{path.name}.building-*"):
        if stale != work:
            shutil.rmtree(stale)
    if not (work / "manifest.json").is_file():
        work.mkdir(parents=True, exist_ok=True)
        if (work / "meta.sqlite").is_file() and progress:
            tqdm.write(f"resuming the datastore build in {work}")
        loaded = encoder if isinstance(encoder, SentenceEncoder) else load_encoder(encoder)
        with closing(_connect(work / "meta.sqlite")) as db:
            _encode_datasets(db, work, datasets, loaded, batch_values, progress)
            _finalise(db, work, loaded, settings, key)
    _swap_in(work, path)
    return True


def _encoder_identity(encoder: str | SentenceEncoder) -> dict[str, Any]:
    if isinstance(encoder, SentenceEncoder):
        return encoder.identity()
    return {"reference": encoder, **encoder_files_identity(encoder_directory(encoder))}


def _check_replaceable(path: Path) -> None:
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / "manifest.json").is_file())):
        raise DomainKDError(f"{path} exists and is not a domainkd datastore; choose another datastore directory.")


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA)
    return db


def _read_progress(db: sqlite3.Connection) -> Progress:
    return Progress(*db.execute(f"SELECT {', '.join(Progress.__dataclass_fields__)} FROM progress").fetchone())


def _save_progress(db: sqlite3.Connection, state: Progress) -> None:
    fields = asdict(state)
    db.execute(f"UPDATE progress SET {', '.join(f'{name} = ?' for name in fields)}", list(fields.values()))


def _encode_datasets(
    db: sqlite3.Connection,
    work: Path,
    specs: list[DatasetSpec],
    encoder: SentenceEncoder,
    batch_values: int,
    progress: bool,
) -> None:
    """Flatten and encode every dataset not yet complete, one committed part per batch of values."""
    (work / "parts").mkdir(exist_ok=True)
    state = _read_progress(db)
    memo: dict[str, np.ndarray] = {}
    with tqdm(desc="datastore rows", unit="row", initial=state.next_row, disable=not progress) as bar:
        for dataset_id in range(state.dataset, len(specs)):
            spec = specs[dataset_id]
            columns = _start_dataset(db, state, dataset_id, spec)
            distinct = _distinct_values(work, state, dataset_id)
            rows = itertools.islice(enumerate(dataset_rows(spec)), state.rows_read, None)
            for batch in _batches(rows, batch_values):
                _write_part(db, work, state, dataset_id, batch, columns, encoder, memo, distinct)
                bar.update(len(batch))
            _finish_dataset(db, state, dataset_id, spec)


def _start_dataset(db: sqlite3.Connection, state: Progress, dataset_id: int, spec: DatasetSpec) -> list[str]:
    """Record the dataset (once, also on resume); return the columns seen so far."""
    with db:
        db.execute(
            "INSERT OR IGNORE INTO datasets(id, name, path, description, columns, first_row, first_value, first_cell) "
            "VALUES (?, ?, ?, ?, '[]', ?, ?, ?)",
            (dataset_id, spec.dataset_name, str(spec.path), spec.description, state.next_row, state.next_value,
             state.next_cell),
        )
    return json.loads(db.execute("SELECT columns FROM datasets WHERE id = ?", (dataset_id,)).fetchone()[0])


def _distinct_values(work: Path, state: Progress, dataset_id: int) -> dict[int, int]:
    """Text hash → value id of the dataset's values so far (read back from its committed parts on resume)."""
    distinct: dict[int, int] = {}
    for number in range(state.parts):
        with np.load(work / "parts" / f"part-{number:06d}.npz") as part:
            if int(part["dataset"]) == dataset_id:
                first = int(part["first_value"])
                for offset, key in enumerate(part["keys"].tolist()):
                    if len(distinct) < DISTINCT_LIMIT:
                        distinct.setdefault(key, first + offset)
    return distinct


def text_key(text: str) -> int:
    """64-bit hash of a cell's text (two distinct texts share one with odds ~1e-7 in a 2M-value dataset)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _batches(
    rows: Iterator[tuple[int, dict[str, str]]], batch_values: int
) -> Iterator[list[tuple[int, dict[str, str]]]]:
    """Consecutive non-empty (row number, fields) rows, cut once a batch holds ``batch_values`` values."""
    batch: list[tuple[int, dict[str, str]]] = []
    values = 0
    for number, fields in rows:
        if not fields:
            continue
        batch.append((number, fields))
        values += len(fields)
        if values >= batch_values:
            yield batch
            batch, values = [], 0
    if batch:
        yield batch


def _write_part(
    db: sqlite3.Connection,
    work: Path,
    state: Progress,
    dataset_id: int,
    batch: list[tuple[int, dict[str, str]]],
    columns: list[str],
    encoder: SentenceEncoder,
    memo: dict[str, np.ndarray],
    distinct: dict[int, int],
) -> None:
    """Encode one batch of rows into ``parts/part-N.npz``, then commit its rows and the progress together.

    A cell whose text the dataset already holds points at that value; only new texts are encoded.
    """
    started = time.perf_counter()
    texts = [value for _, fields in batch for value in fields.values()]
    cells = np.empty(len(texts), dtype=np.int64)  # (n_cells,) value id of each cell
    new_texts: list[str] = []
    new_keys: list[int] = []
    for position, text in enumerate(texts):
        key = text_key(text)
        value = distinct.get(key)
        if value is None:
            value = state.next_value + len(new_texts)
            new_texts.append(text)
            new_keys.append(key)
            if len(distinct) < DISTINCT_LIMIT:
                distinct[key] = value
        cells[position] = value
    vectors, encoded, seconds = _encode_values(encoder, new_texts, memo)  # (n_new, D)
    counts = np.array([len(fields) for _, fields in batch], dtype=np.int64)  # (rows,)
    hashes = np.array([row_hash(fields) for _, fields in batch], dtype=np.uint64)  # (rows,)
    part = {
        "vectors": vectors.astype(np.float16),
        "keys": np.array(new_keys, dtype=np.uint64),
        "first_value": np.int64(state.next_value),
        "cells": cells,
        "counts": counts,
        "hashes": hashes,
        "dataset": np.int32(dataset_id),
    }
    with atomic_path(work / "parts" / f"part-{state.parts:06d}.npz") as tmp, tmp.open("wb") as handle:
        np.savez(handle, **part)
    columns += [name for name in dict.fromkeys(c for _, fields in batch for c in fields) if name not in columns]
    rows = [
        (state.next_row + i, dataset_id, number, json.dumps(fields, ensure_ascii=False))
        for i, (number, fields) in enumerate(batch)
    ]
    with db:
        db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)", rows)
        db.execute(
            "UPDATE datasets SET columns = ? WHERE id = ?", (json.dumps(columns, ensure_ascii=False), dataset_id)
        )
        state.rows_read = batch[-1][0] + 1
        state.next_row += len(batch)
        state.next_value += len(new_texts)
        state.next_cell += len(texts)
        state.parts += 1
        state.encoded += encoded
        state.encode_seconds += seconds
        state.flatten_seconds += time.perf_counter() - started
        _save_progress(db, state)


def _encode_values(
    encoder: SentenceEncoder, texts: list[str], memo: dict[str, np.ndarray]
) -> tuple[np.ndarray, int, float]:
    """Vectors of ``texts`` (N, D), each distinct text encoded once; short ones remembered across batches.

    Returns:
        The vectors, how many texts went to the encoder, and the seconds it took.
    """
    fresh = list(dict.fromkeys(text for text in texts if text not in memo))
    started = time.perf_counter()
    vectors = encoder.encode(fresh)  # (U, D)
    seconds = time.perf_counter() - started
    lookup = dict(zip(fresh, vectors))
    for text, vector in lookup.items():
        if len(text) <= MEMO_CHARS and len(memo) < MEMO_SIZE:
            memo[text] = vector
    if not texts:
        return np.zeros((0, encoder.dimension), dtype=np.float32), 0, seconds
    return np.stack([lookup[text] if text in lookup else memo[text] for text in texts]), len(fresh), seconds


def row_hash(fields: dict[str, str]) -> int:
    """64-bit hash of a row's values in order (rows with identical content share it)."""
    digest = hashlib.blake2b("\x1f".join(fields.values()).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _finish_dataset(db: sqlite3.Connection, state: Progress, dataset_id: int, spec: DatasetSpec) -> None:
    first_row, first_value, first_cell = db.execute(
        "SELECT first_row, first_value, first_cell FROM datasets WHERE id = ?", (dataset_id,)
    ).fetchone()
    if state.next_row == first_row:
        raise DomainKDError(f"dataset {spec.path} has no non-empty rows; remove it or fill it.")
    with db:
        counts = (state.next_row - first_row, state.next_value - first_value, state.next_cell - first_cell, dataset_id)
        db.execute("UPDATE datasets SET rows = ?, n_values = ?, n_cells = ? WHERE id = ?", counts)
        state.dataset, state.rows_read = dataset_id + 1, 0
        _save_progress(db, state)


def _finalise(db: sqlite3.Connection, work: Path, encoder: SentenceEncoder, settings: IndexSettings, key: str) -> None:
    """Join the parts into memory-mappable arrays, embed the descriptions, build the index, write the manifest."""
    state = _read_progress(db)
    started = time.perf_counter()
    _join_parts(work, state, encoder.dimension)
    descriptions = _describe_datasets(db)
    np.save(work / "descriptions.npy", encoder.encode(descriptions))  # (S, D)
    joined = time.perf_counter()
    description = build_index(np.load(work / "vectors.npy", mmap_mode="r"), work / "index.faiss", settings)
    (work / "vectors.npy").unlink()  # the index holds the vectors now
    build = {
        "rows": state.next_row,
        "values": state.next_value,
        "cells": state.next_cell,
        "datasets": len(descriptions),
        "encoded_texts": state.encoded,
        "encode_seconds": round(state.encode_seconds, 2),
        "flatten_seconds": round(state.flatten_seconds, 2),
        "join_seconds": round(joined - started, 2),
        "index_seconds": round(time.perf_counter() - joined, 2),
    }
    manifest = {
        "format": FORMAT_VERSION,
        "fingerprint": key,
        "encoder": encoder.reference,
        "dimension": encoder.dimension,
        "index": description,
        "nprobe": settings.nprobe,
        "rows_per_dataset": dict(db.execute("SELECT name, rows FROM datasets ORDER BY id").fetchall()),
        "build": build,
    }
    write_json(work / "manifest.json", manifest)  # first: a build killed after this line only needs the rename
    shutil.rmtree(work / "parts")


def _join_parts(work: Path, state: Progress, dimension: int) -> None:
    """Concatenate the parts into ``vectors.npy`` and the row/value arrays, streaming one part's vectors at a time."""
    vectors = np.lib.format.open_memmap(
        work / "vectors.npy", mode="w+", dtype=np.float16, shape=(state.next_value, dimension)
    )
    cells, counts, hashes, datasets = [], [], [], []
    value = 0
    for number in range(state.parts):
        with np.load(work / "parts" / f"part-{number:06d}.npz") as part:
            vectors[value : value + len(part["vectors"])] = part["vectors"]
            value += len(part["vectors"])
            cells.append(part["cells"])
            counts.append(part["counts"])
            hashes.append(part["hashes"])
            datasets.append(np.full(len(part["counts"]), part["dataset"], dtype=np.int32))
    vectors.flush()
    del vectors
    row_counts, cell_values = np.concatenate(counts), np.concatenate(cells)  # (R,), (C,)
    np.save(work / "row_starts.npy", np.concatenate([[0], np.cumsum(row_counts)]).astype(np.int64))
    np.save(work / "cell_values.npy", cell_values)
    cell_rows = np.repeat(np.arange(len(row_counts), dtype=np.int64), row_counts)  # (C,)
    np.save(work / "value_rows.npy", cell_rows[np.argsort(cell_values, kind="stable")])  # grouped by value, rows ascending
    per_value = np.bincount(cell_values, minlength=state.next_value)  # (V,)
    np.save(work / "value_row_starts.npy", np.concatenate([[0], np.cumsum(per_value)]).astype(np.int64))
    np.save(work / "row_hashes.npy", np.concatenate(hashes))
    np.save(work / "row_datasets.npy", np.concatenate(datasets))


def _describe_datasets(db: sqlite3.Connection) -> list[str]:
    """Each dataset's description, derived from its name and columns when none was given (stored back)."""
    descriptions = []
    with db:
        for dataset_id, name, description, columns in db.execute(
            "SELECT id, name, description, columns FROM datasets ORDER BY id"
        ).fetchall():
            if not description:
                description = f"{name.replace('_', ' ').replace('-', ' ')}: a dataset with columns {', '.join(json.loads(columns))}"
                db.execute("UPDATE datasets SET description = ? WHERE id = ?", (description, dataset_id))
            descriptions.append(description)
    return descriptions


def _swap_in(work: Path, path: Path) -> None:
    """Rename the finished build onto ``path``, removing a previous store only after."""
    shutil.rmtree(work / "parts", ignore_errors=True)
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        os.replace(path, old)
    os.replace(work, path)
    if old.exists():
        shutil.rmtree(old)


class Datastore:
    """A built store opened for queries: arrays memory-mapped, the index in RAM when it fits (see
    :class:`~domainkd.retrieval.index.VectorIndex`; ``in_memory`` forces either), text read on demand."""

    def __init__(self, path: Path, nprobe: int | None = None, in_memory: bool | None = None) -> None:
        self.path = path
        self.manifest = read_manifest(path)
        if not self.manifest:
            raise DomainKDError(
                f"{path} is not a built datastore; build it with `domainkd datastore build` or give the strategy its datasets."
            )
        if self.manifest.get("format") != FORMAT_VERSION:
            raise DomainKDError(
                f"{path} was built by an older domainkd (datastore format {self.manifest.get('format')}, now {FORMAT_VERSION}); "
                "rebuild it with `domainkd datastore build` (the same command skips an up-to-date store)."
            )

        def load(name: str) -> np.ndarray:
            return np.load(path / f"{name}.npy", mmap_mode="r")

        self.row_starts, self.cell_values = load("row_starts"), load("cell_values")  # (R+1,), (C,)
        self.value_row_starts, self.value_rows = load("value_row_starts"), load("value_rows")  # (V+1,), (C,)
        self.row_datasets, self.row_hashes = load("row_datasets"), load("row_hashes")  # (R,), (R,)
        self.descriptions = np.load(path / "descriptions.npy")  # (S, D)
        self.index = VectorIndex(path / "index.faiss", nprobe or self.manifest["nprobe"], in_memory=in_memory)
        query = (
            "SELECT id, name, path, description, columns, first_row, rows, first_value, n_values, first_cell, n_cells "
            "FROM datasets ORDER BY id"
        )
        with closing(self._db()) as db:
            self.datasets = [DatasetInfo(*row[:4], json.loads(row[4]), *row[5:]) for row in db.execute(query)]

    @property
    def encoder_reference(self) -> str:
        """The model reference the store's vectors came from (queries must use the same encoder)."""
        return self.manifest["encoder"]

    def __len__(self) -> int:
        """Number of rows."""
        return len(self.row_datasets)

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path / 'meta.sqlite'}?mode=ro", uri=True)

    def value_ranges(self, names: list[str]) -> list[tuple[int, int]]:
        """Half-open value-id ranges of the named datasets (names not in the store are ignored)."""
        return [(d.first_value, d.first_value + d.values) for d in self.datasets if d.name in set(names)]

    def rows(self, row_ids: list[int]) -> list[StoredRow]:
        """The rows with these ids, in the same order."""
        if not row_ids:
            return []
        query = f"SELECT id, dataset_id, row_number, fields FROM rows WHERE id IN ({','.join('?' * len(row_ids))})"
        with closing(self._db()) as db:
            found = {row[0]: row for row in db.execute(query, row_ids)}
        return [StoredRow(i, self.datasets[found[i][1]].name, found[i][2], json.loads(found[i][3])) for i in row_ids]

    def rows_holding(self, value_ids: np.ndarray, per_value: int) -> np.ndarray:
        """Sorted ids of the rows holding any of ``value_ids``, at most the first ``per_value`` rows of each value."""
        starts = self.value_row_starts[value_ids]
        ends = np.minimum(self.value_row_starts[value_ids + 1], starts + per_value)
        return np.unique(self.value_rows[_spans(starts, ends)])

    def row_cells(self, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The value ids of the rows' cells ``(C,)``, row ``i``'s at ``starts[i]:starts[i+1]`` of ``starts (R+1,)``."""
        begins, ends = self.row_starts[row_ids], self.row_starts[row_ids + 1]
        return self.cell_values[_spans(begins, ends)], np.concatenate([[0], np.cumsum(ends - begins)])

    def value(self, value_id: int) -> tuple[str, int, str, str]:
        """(dataset, row number, column, text) of one value, at the first row holding it."""
        row_id = int(self.value_rows[self.value_row_starts[value_id]])
        row = self.rows([row_id])[0]
        cells = self.cell_values[self.row_starts[row_id] : self.row_starts[row_id + 1]]
        column, text = list(row.fields.items())[int(np.flatnonzero(cells == value_id)[0])]
        return row.dataset, row.row_number, column, text


def _spans(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenated ranges ``starts[i]:ends[i]``, as one int64 array of positions."""
    counts = np.asarray(ends - starts, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])  # (n+1,)
    return np.arange(offsets[-1], dtype=np.int64) + np.repeat(np.asarray(starts, dtype=np.int64) - offsets[:-1], counts)


def open_datastore(path: Path, nprobe: int | None = None, in_memory: bool | None = None) -> Datastore:
    """Open the built store at ``path`` for queries (``in_memory``: None decides by the index's size)."""
    return Datastore(path, nprobe, in_memory)
