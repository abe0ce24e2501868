"""A FAISS inner-product index over unit vectors, stored on disk: exact when small, IVF when large.

Vector ``i`` of the index is row ``i`` of the vectors it was built from, so any store that keeps
its items in one numbered sequence (datastore values, document chunks) can use it, and the index
is the one stored copy of the vectors: :meth:`VectorIndex.reconstruct` reads them back (exact for
a ``Flat`` codec, 8-bit-rounded for ``SQ8``; gathering 10k of them takes ~3 ms where converting
float16 copies took ~12 ms). An exact
flat index scans every vector per query (≈ 20 ms per 100k 384-d vectors on 2 cores), so above
``flat_limit`` vectors the index is an inverted file (``IndexIVFFlat``): k-means cells trained
on a sample, ``nprobe`` cells scanned per query.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from domainkd.errors import DomainKDError
from domainkd.io import atomic_path

ADD_BATCH = 65_536
SCAN_FACTOR = 4.0
"""An IVF search stops after scanning this many times the vectors of ``nprobe`` average cells.

Cells are scanned nearest first, so on a balanced index the cap never binds; it matters when
repeated values (a label column's ``positive`` in every other row) make a few cells hold tens of
thousands of identical vectors. On the million-row benchmark store (imbalance factor 53.7) it
cut a query's search from 54 to 18 ms with the same rows found."""


@dataclass(frozen=True)
class IndexSettings:
    """How the index is built; ``nprobe`` is only the default at query time."""

    flat_limit: int = 100_000
    """Most vectors indexed exactly (flat); above it, an IVF index."""
    nlist: int | None = None
    """IVF cells (None: about 4·√vectors, at least 16: ≈375 vectors a cell at 2M)."""
    nprobe: int = 16
    """IVF cells scanned per query (more: better recall, slower)."""
    codec: Literal["flat", "sq8"] = "flat"
    """How IVF stores vectors: float32 (``flat``) or 8-bit scalar-quantised (``sq8``, 4x smaller)."""
    train_per_cell: int = 40
    """Training vectors per IVF cell (FAISS wants 30–256)."""

    def build_fields(self) -> dict[str, Any]:
        """The settings that shape the built index (part of a store's fingerprint)."""
        return {
            "flat_limit": self.flat_limit,
            "nlist": self.nlist,
            "codec": self.codec,
            "train_per_cell": self.train_per_cell,
        }


def factory_string(count: int, settings: IndexSettings) -> str:
    """The ``faiss.index_factory`` description for ``count`` vectors, e.g. ``"IVF2048,Flat"``."""
    if count <= settings.flat_limit:
        return "Flat"
    nlist = settings.nlist or max(16, int(4 * math.sqrt(count)))
    nlist = min(nlist, max(1, count // settings.train_per_cell))  # every cell needs training vectors
    return f"IVF{nlist},{'SQ8' if settings.codec == 'sq8' else 'Flat'}"


def build_index(vectors: np.ndarray, path: Path, settings: IndexSettings | None = None) -> str:
    """Index (N, D) unit ``vectors`` (float16 or float32, e.g. a memmap) into ``path``; return the factory string.

    Training uses an evenly spaced sample, so the same vectors give the same index.
    """
    import faiss

    settings = settings or IndexSettings()
    count, dimension = vectors.shape
    if count == 0:
        raise DomainKDError("there are no vectors to index; the datasets hold no text.")
    description = factory_string(count, settings)
    index = faiss.index_factory(dimension, description, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        nlist = faiss.extract_index_ivf(index).nlist
        sample = np.linspace(0, count - 1, min(count, nlist * settings.train_per_cell)).astype(np.int64)
        index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    for start in range(0, count, ADD_BATCH):
        index.add(np.ascontiguousarray(vectors[start : start + ADD_BATCH], dtype=np.float32))
    if not isinstance(index, faiss.IndexFlat):
        faiss.extract_index_ivf(index).make_direct_map(True)  # id -> list position, for reconstruct()
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
    return description


MEMORY_SHARE = 0.25
"""An index file up to this share of the available memory is read into RAM; a larger one is memory-mapped."""


class VectorIndex:
    """A FAISS index read from disk, searched with excluded id ranges.

    Read into memory when it takes at most :data:`MEMORY_SHARE` of the available memory
    (``in_memory=None``), else memory-mapped: pages come in on demand and no RAM copy is made,
    but a fresh process then pays page faults on its first queries (``bench/rebase_datastore.py``
    on the million-row store, fresh process: search and scoring 24.6 ms a query memory-mapped,
    17.4 ms in RAM).
    """

    def __init__(
        self,
        path: Path,
        nprobe: int = IndexSettings.nprobe,
        scan_factor: float = SCAN_FACTOR,
        in_memory: bool | None = None,
    ) -> None:
        import faiss

        if not path.is_file():
            raise DomainKDError(f"vector index {path} does not exist; build the store first.")
        if in_memory is None:
            in_memory = path.stat().st_size <= MEMORY_SHARE * available_memory()
        self.in_memory = in_memory
        self.index = faiss.read_index(str(path), 0 if in_memory else faiss.IO_FLAG_MMAP_IFC)
        self.nprobe = nprobe
        self.ivf = faiss.extract_index_ivf(self.index) if "IVF" in type(self.index).__name__ else None
        self.scan_factor = scan_factor
        """Cap on vectors scanned per query, in average cells of ``nprobe`` (0: no cap; see SCAN_FACTOR)."""

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids``, shape (N, D), float32."""
        return self.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[tuple[int, int]] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best vectors per query, skipping ids in the half-open ``exclude`` ranges.

        Args:
            queries: (Q, D) unit vectors.
            k: hits per query.
            exclude: ``(start, end)`` id ranges never returned (e.g. banned datasets).

        Returns:
            ``(similarities, ids)``, both (Q, k); ids are -1 where fewer than k vectors qualify.
        """
        import faiss

        selector = _excluding(exclude)
        if self.ivf is not None:
            nprobe = min(self.nprobe, self.ivf.nlist)
            max_codes = int(self.scan_factor * nprobe * len(self) / self.ivf.nlist) if self.scan_factor > 0 else 0
            params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe, max_codes=max_codes)
        else:
            params = faiss.SearchParameters(sel=selector)
        k = max(1, min(k, len(self)))
        similarities, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        return similarities, ids


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``; else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _excluding(ranges: Sequence[tuple[int, int]]) -> Any:
    """A FAISS selector accepting every id outside ``ranges`` (None when there is nothing to exclude)."""
    import faiss

    ranges = [(start, end) for start, end in ranges if end > start]
    if not ranges:
        return None
    chosen = faiss.IDSelectorRange(*ranges[0])
    keep = [chosen]  # the SWIG selectors hold raw pointers to each other: keep every part alive
    for start, end in ranges[1:]:
        part = faiss.IDSelectorRange(start, end)
        chosen = faiss.IDSelectorOr(chosen, part)
        keep += [part, chosen]
    selector = faiss.IDSelectorNot(chosen)
    selector.parts = keep
    return selector
