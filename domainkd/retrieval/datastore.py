"""ReBase datastore: every cell of existing datasets embedded and indexed with FAISS, on disk.

Each row of each dataset is flattened to its cells, (dataset, row, column) → value text; each
value gets a unit vector from the local sentence encoder, and each dataset a description
vector. Layout of a store directory (``V`` values, ``R`` rows, ``S`` datasets, ``D`` dims):

* ``manifest.json`` — fingerprint of the inputs, counts, encoder, index type, build timings;
* ``meta.sqlite`` — ``datasets`` (name, path, description, columns, row and value ranges) and
  ``rows`` (id, dataset, row number, cells as a JSON object: a row's k-th cell is its k-th value);
* ``index.faiss`` — :mod:`domainkd.retrieval.index` over the value vectors (value id = vector
  id, a row's values adjacent), also their one stored copy;
* ``row_starts.npy`` (R+1,) int64 — row ``r`` owns values ``row_starts[r]:row_starts[r+1]``;
* ``value_rows.npy`` (V,) int64, ``row_datasets.npy`` (R,) int32, ``row_hashes.npy`` (R,) uint64
  (equal for rows with identical values);
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

FORMAT_VERSION = 1
MEMO_CHARS = 64
"""Values up to this length (labels, short answers) are encoded once per build and reused."""
MEMO_SIZE = 200_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets(id INTEGER PRIMARY KEY, name TEXT UNIQUE, path TEXT, description TEXT,
    columns TEXT, first_row INTEGER, rows INTEGER, first_value INTEGER, n_values INTEGER);
CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, dataset_id INTEGER, row_number INTEGER, fields TEXT);
CREATE TABLE IF NOT EXISTS progress(id INTEGER PRIMARY KEY CHECK (id = 0), dataset INTEGER, rows_read INTEGER,
    next_row INTEGER, next_value INTEGER, parts INTEGER, encoded INTEGER, encode_seconds REAL, flatten_seconds REAL);
INSERT OR IGNORE INTO progress VALUES (0, 0, 0, 0, 0, 0, 0, 0.0, 0.0);
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
    parts: int
    encoded: int
    """Texts sent to the encoder (repeated short values are encoded once)."""
    encode_seconds: float
    flatten_seconds: float


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset as stored: its rows are ``first_row:first_row+rows``, its values ``first_value:first_value+values``."""

    id: int
    name: str
    path: str
    description: str
    columns: list[str]
    first_row: int
    rows: int
    first_value: int
    values: int


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
            rows = itertools.islice(enumerate(dataset_rows(spec)), state.rows_read, None)
            for batch in _batches(rows, batch_values):
                _write_part(db, work, state, dataset_id, batch, columns, encoder, memo)
                bar.update(len(batch))
            _finish_dataset(db, state, dataset_id, spec)


def _start_dataset(db: sqlite3.Connection, state: Progress, dataset_id: int, spec: DatasetSpec) -> list[str]:
    """Record the dataset (once, also on resume); return the columns seen so far."""
    with db:
        db.execute(
            "INSERT OR IGNORE INTO datasets(id, name, path, description, columns, first_row, first_value) "
            "VALUES (?, ?, ?, ?, '[]', ?, ?)",
            (dataset_id, spec.dataset_name, str(spec.path), spec.description, state.next_row, state.next_value),
        )
    return json.loads(db.execute("SELECT columns FROM datasets WHERE id = ?", (dataset_id,)).fetchone()[0])


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
) -> None:
    """Encode one batch of rows into ``parts/part-N.npz``, then commit its rows and the progress together."""
    started = time.perf_counter()
    texts = [value for _, fields in batch for value in fields.values()]
    vectors, encoded, seconds = _encode_values(encoder, texts, memo)  # (n_values, D)
    counts = np.array([len(fields) for _, fields in batch], dtype=np.int64)  # (rows,)
    hashes = np.array([row_hash(fields) for _, fields in batch], dtype=np.uint64)  # (rows,)
    with atomic_path(work / "parts" / f"part-{state.parts:06d}.npz") as tmp, tmp.open("wb") as handle:
        np.savez(handle, vectors=vectors.astype(np.float16), counts=counts, hashes=hashes, dataset=np.int32(dataset_id))
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
        state.next_value += len(texts)
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
    return np.stack([lookup[text] if text in lookup else memo[text] for text in texts]), len(fresh), seconds


def row_hash(fields: dict[str, str]) -> int:
    """64-bit hash of a row's values in order (rows with identical content share it)."""
    digest = hashlib.blake2b("\x1f".join(fields.values()).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _finish_dataset(db: sqlite3.Connection, state: Progress, dataset_id: int, spec: DatasetSpec) -> None:
    first_row, first_value = db.execute(
        "SELECT first_row, first_value FROM datasets WHERE id = ?", (dataset_id,)
    ).fetchone()
    if state.next_row == first_row:
        raise DomainKDError(f"dataset {spec.path} has no non-empty rows; remove it or fill it.")
    with db:
        counts = (state.next_row - first_row, state.next_value - first_value, dataset_id)
        db.execute("UPDATE datasets SET rows = ?, n_values = ? WHERE id = ?", counts)
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
    """Concatenate the parts into ``vectors.npy`` and the row arrays, streaming one part at a time."""
    vectors = np.lib.format.open_memmap(
        work / "vectors.npy", mode="w+", dtype=np.float16, shape=(state.next_value, dimension)
    )
    counts, hashes, datasets = [], [], []
    value = 0
    for number in range(state.parts):
        with np.load(work / "parts" / f"part-{number:06d}.npz") as part:
            vectors[value : value + len(part["vectors"])] = part["vectors"]
            value += len(part["vectors"])
            counts.append(part["counts"])
            hashes.append(part["hashes"])
            datasets.append(np.full(len(part["counts"]), part["dataset"], dtype=np.int32))
    vectors.flush()
    del vectors
    row_counts = np.concatenate(counts)  # (R,)
    np.save(work / "row_starts.npy", np.concatenate([[0], np.cumsum(row_counts)]).astype(np.int64))
    np.save(work / "value_rows.npy", np.repeat(np.arange(len(row_counts), dtype=np.int64), row_counts))
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
    """A built store opened for queries: arrays memory-mapped, the index memory-mapped, text read on demand."""

    def __init__(self, path: Path, nprobe: int | None = None) -> None:
        self.path = path
        self.manifest = read_manifest(path)
        if not self.manifest:
            raise DomainKDError(
                f"{path} is not a built datastore; build it with `domainkd datastore build` or give the strategy its datasets."
            )

        def load(name: str) -> np.ndarray:
            return np.load(path / f"{name}.npy", mmap_mode="r")

        self.row_starts, self.value_rows = load("row_starts"), load("value_rows")  # (R+1,), (V,)
        self.row_datasets, self.row_hashes = load("row_datasets"), load("row_hashes")  # (R,), (R,)
        self.descriptions = np.load(path / "descriptions.npy")  # (S, D)
        self.index = VectorIndex(path / "index.faiss", nprobe or self.manifest["nprobe"])
        query = "SELECT id, name, path, description, columns, first_row, rows, first_value, n_values FROM datasets ORDER BY id"
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

    def value(self, value_id: int) -> tuple[str, int, str, str]:
        """(dataset, row number, column, text) of one value."""
        row_id = int(self.value_rows[value_id])
        row = self.rows([row_id])[0]
        column, text = list(row.fields.items())[value_id - int(self.row_starts[row_id])]
        return row.dataset, row.row_number, column, text


def open_datastore(path: Path, nprobe: int | None = None) -> Datastore:
    """Open the built store at ``path`` for queries."""
    return Datastore(path, nprobe)
