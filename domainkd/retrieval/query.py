"""ReBase retrieval: the datastore rows most like a task, given its instruction and a few examples.

A row's score is the mean of three cosine similarities (ReBase, arXiv 2407.05463):
the best of any of its values to any example input, the best to any example output, and its
dataset's description to the instruction. Candidates come from the FAISS index (the
``candidate_k`` nearest values of every example input and output, and the rows holding them);
each candidate row is then scored exactly from its stored vectors. Banned datasets (the target
dataset itself) are never searched; rows with identical values are returned once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from domainkd.errors import DomainKDError
from domainkd.retrieval.datastore import Datastore, StoredRow
from domainkd.retrieval.encoder import SentenceEncoder
from domainkd.sources.records import read_rows

MIN_CANDIDATES = 512
"""Least nearest values fetched per example text: on a 200k-row store 256 found 76% of the exact top 100, 512
found 97% (12 ms a search), 1000 99% (20 ms)."""
ROWS_PER_VALUE = 64
"""Most rows one candidate value brings in (the first ones): a label shared by 300k rows says little about which of
them fit, and rows holding it are still found through their other values."""


@dataclass(frozen=True)
class TaskExample:
    """One input/output example of the target task."""

    input: str
    output: str


@dataclass(frozen=True)
class QueryVectors:
    """The encoded task: unit vectors of its instruction, example inputs and example outputs."""

    instruction: np.ndarray  # (D,)
    inputs: np.ndarray  # (I, D)
    outputs: np.ndarray  # (O, D)


@dataclass(frozen=True)
class RowScores:
    """Per-row ReBase scores and their three parts, each (R,)."""

    score: np.ndarray
    best_input: np.ndarray
    best_output: np.ndarray
    description: np.ndarray


@dataclass(frozen=True)
class RetrievedRow(StoredRow):
    """A datastore row chosen for the task, with its score and the score's parts."""

    score: float
    best_input: float
    best_output: float
    description: float

    @property
    def chunk_id(self) -> str:
        """Provenance ``<dataset>#<row number>``."""
        return f"{self.dataset}#{self.row_number}"


def encode_query(encoder: SentenceEncoder, instruction: str, examples: list[TaskExample]) -> QueryVectors:
    """Encode the instruction and the examples' inputs and outputs in one batch.

    Raises:
        DomainKDError: there is no example or the instruction is empty.
    """
    if not instruction.strip() or not examples:
        raise DomainKDError("a ReBase query needs a task instruction and at least one input/output example.")
    count = len(examples)
    vectors = encoder.encode([instruction] + [e.input for e in examples] + [e.output for e in examples])  # (1+2E, D)
    return QueryVectors(vectors[0], vectors[1 : 1 + count], vectors[1 + count :])


def rebase_scores(
    value_vectors: np.ndarray,
    row_starts: np.ndarray,
    query: QueryVectors,
    description_similarity: np.ndarray,
    cells: np.ndarray | None = None,
) -> RowScores:
    """ReBase scores of R rows whose cells are consecutive runs.

    Args:
        value_vectors: (V, D) unit vectors; without ``cells``, cell ``c`` is ``value_vectors[c]``.
        row_starts: (R+1,) offsets into the cells, ``row_starts[0] == 0``, each row's run non-empty.
        query: the encoded task.
        description_similarity: (R,) similarity of each row's dataset description to the instruction.
        cells: (C,) index into ``value_vectors`` of each cell, when rows share values (each scored once).

    Returns:
        score = (best_input + best_output + description) / 3, each (R,).
    """
    value_vectors = np.asarray(value_vectors, dtype=np.float32)
    starts = np.asarray(row_starts[:-1], dtype=np.int64)  # (R,)
    to_input = (value_vectors @ query.inputs.T).max(axis=1)  # (V,)
    to_output = (value_vectors @ query.outputs.T).max(axis=1)  # (V,)
    if cells is not None:
        to_input, to_output = to_input[cells], to_output[cells]  # (C,)
    best_input = np.maximum.reduceat(to_input, starts)  # (R,)
    best_output = np.maximum.reduceat(to_output, starts)  # (R,)
    description = np.asarray(description_similarity, dtype=np.float32)
    return RowScores((best_input + best_output + description) / 3, best_input, best_output, description)


def candidate_rows(store: Datastore, query: QueryVectors, candidate_k: int, ban: Sequence[str]) -> np.ndarray:
    """Ids of rows holding one of the ``candidate_k`` nearest values of any example input or output, sorted."""
    queries = np.concatenate([query.inputs, query.outputs])  # (I+O, D)
    _, value_ids = store.index.search(queries, candidate_k, exclude=store.value_ranges(ban))  # (I+O, k)
    return store.rows_holding(np.unique(value_ids[value_ids >= 0]), ROWS_PER_VALUE)


def score_rows(store: Datastore, rows: np.ndarray, query: QueryVectors) -> RowScores:
    """Exact ReBase scores of ``rows`` (sorted ids) from the stored value vectors, each distinct value scored once."""
    cells, local_starts = store.row_cells(rows)  # (C,), (R+1,)
    values, cell_index = np.unique(cells, return_inverse=True)  # (V,), (C,)
    description = store.descriptions[store.row_datasets[rows]] @ query.instruction  # (R,)
    return rebase_scores(store.index.reconstruct(values), local_starts, query, description, cell_index)


def search_rows(
    store: Datastore, query: QueryVectors, top_k: int, ban: Sequence[str] = (), candidate_k: int | None = None
) -> list[RetrievedRow]:
    """The ``top_k`` best rows for an encoded task, best first, duplicates (identical values) removed.

    Args:
        store: the opened datastore.
        query: the encoded task (same encoder as the store).
        top_k: rows to return at most.
        ban: dataset names never returned (the target dataset: contamination).
        candidate_k: nearest values fetched per example input/output (None: max(512, 2·top_k)).
    """
    if len(store) == 0:
        return []
    rows = candidate_rows(store, query, candidate_k or max(MIN_CANDIDATES, 2 * top_k), list(ban))
    if len(rows) == 0:
        return []
    with _blas_controller().limit(limits=1, user_api="blas"):
        scores = score_rows(store, rows, query)
    chosen = best_distinct(rows, scores.score, store.row_hashes, top_k)
    stored = store.rows([int(rows[p]) for p in chosen])
    parts = (scores.score, scores.best_input, scores.best_output, scores.description)
    return [
        RetrievedRow(row.row_id, row.dataset, row.row_number, row.fields, *(float(part[p]) for part in parts))
        for row, p in zip(stored, chosen)
    ]


def best_distinct(row_ids: np.ndarray, scores: np.ndarray, row_hashes: np.ndarray, top_k: int) -> list[int]:
    """Positions in ``row_ids`` of the ``top_k`` best scores, best first (ties by row id), one row per content hash.

    Args:
        row_ids: (R,) datastore row ids.
        scores: (R,) their scores.
        row_hashes: the store's (all rows,) content hashes; rows with identical values share one.
        top_k: positions to return at most.
    """
    chosen: list[int] = []
    seen: set[int] = set()
    for position in np.lexsort((row_ids, -scores)):
        content = int(row_hashes[row_ids[position]])
        if content not in seen:
            seen.add(content)
            chosen.append(int(position))
        if len(chosen) == top_k:
            break
    return chosen


@cache
def _blas_controller() -> Any:
    """threadpoolctl's controller (a dependency of sentence-transformers).

    The scoring products are small; run multi-threaded, OpenBLAS threads keep spinning for
    ~0.1 s afterwards and made the next query's encoding 2x slower on 2 cores.
    """
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def retrieve(
    store: Datastore,
    encoder: SentenceEncoder,
    instruction: str,
    examples: list[TaskExample],
    top_k: int,
    ban: Sequence[str] = (),
    candidate_k: int | None = None,
) -> list[RetrievedRow]:
    """Encode the task and return its ``top_k`` rows (see :func:`search_rows`).

    Raises:
        DomainKDError: the encoder is not the one the store was built with.
    """
    if encoder.reference != store.encoder_reference:
        raise DomainKDError(
            f"the datastore {store.path} was built with the encoder {store.encoder_reference!r}, not {encoder.reference!r}; "
            "query it with the same encoder or rebuild it."
        )
    return search_rows(store, encode_query(encoder, instruction, examples), top_k, ban, candidate_k)


def read_examples(path: Path) -> list[TaskExample]:
    """Task examples from a CSV / JSONL / JSON file with ``input`` and ``output`` columns.

    Raises:
        DomainKDError: the file is missing, malformed or lacks those columns.
    """
    if not path.is_file():
        raise DomainKDError(f"examples file {path} does not exist; fix the path.")
    rows = read_rows(path)
    if not all(isinstance(row.get("input"), str) and isinstance(row.get("output"), str) for row in rows):
        raise DomainKDError(f"every row of {path} needs text 'input' and 'output' fields; fix the examples file.")
    return [TaskExample(row["input"], row["output"]) for row in rows]


def format_rows(rows: list[RetrievedRow], width: int = 100) -> str:
    """A plain-text table of retrieved rows: score, its parts, provenance and the row's values."""
    lines = [f"{'score':>6} {'input':>6} {'output':>6} {'descr':>6}  row"]
    for row in rows:
        text = " | ".join(f"{column}: {value}" for column, value in row.fields.items())
        text = text if len(text) <= width else text[: width - 1] + "…"
        lines.append(
            f"{row.score:6.3f} {row.best_input:6.3f} {row.best_output:6.3f} {row.description:6.3f}  {row.chunk_id}  {text}"
        )
    return "\n".join(lines)
