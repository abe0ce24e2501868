"""Everything a run knows: document chunks, structured records and existing QA pairs, read once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from domainkd.errors import DomainKDError
from domainkd.io import read_jsonl, write_jsonl
from domainkd.sources.chunking import Chunk, TokenCounter, chunk_sections
from domainkd.sources.documents import read_documents
from domainkd.sources.records import QAPair, Record, read_qa_pairs, read_records


@dataclass
class Sources:
    """The run's knowledge, each item with its provenance (file, row or character offsets)."""

    chunks: list[Chunk] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    qa_pairs: list[QAPair] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"chunks": len(self.chunks), "records": len(self.records), "qa_pairs": len(self.qa_pairs)}


_FILES = {"chunks": ("chunks.jsonl", Chunk), "records": ("records.jsonl", Record), "qa_pairs": ("qa_pairs.jsonl", QAPair)}


def read_sources(
    documents: Path | None,
    records: list[Path],
    qa_sets: list[Path],
    count_tokens: TokenCounter,
    chunk_tokens: int,
    overlap_tokens: int,
    skipped: dict[str, str] | None = None,
) -> Sources:
    """Read and chunk every configured source (a missing or unusable one is one clear error).

    ``skipped`` (if given) receives document name → reason for each unusable document.
    """
    chunks = []
    if documents is not None:
        chunks = chunk_sections(read_documents(documents, skipped), count_tokens, chunk_tokens, overlap_tokens)
    return Sources(chunks, read_records(records), read_qa_pairs(qa_sets))


def save_sources(sources: Sources, folder: Path) -> None:
    """Write one JSON Lines file per kind into ``folder`` (the data stage's output)."""
    for kind, (name, _) in _FILES.items():
        write_jsonl(folder / name, (item.to_dict() for item in getattr(sources, kind)))


def load_sources(folder: Path) -> Sources:
    """Read what :func:`save_sources` wrote; a kind whose file is absent is empty."""
    loaded = {}
    for kind, (name, item_type) in _FILES.items():
        path = folder / name
        try:
            loaded[kind] = [item_type(**row) for row in read_jsonl(path)] if path.is_file() else []
        except TypeError:  # fields added or renamed since the file was written
            raise DomainKDError(
                f"{path} was written by an older version of domainkd; run `domainkd data CONFIG` again to rewrite it."
            ) from None
    return Sources(**loaded)
