"""Knowledge sources: documents cut into chunks and facts, structured records and QA sets, with provenance."""

from domainkd.sources.chunking import Chunk, chunk_sections, split_facts
from domainkd.sources.collection import Sources, load_sources, read_sources, save_sources
from domainkd.sources.documents import Section, read_documents, split_sections
from domainkd.sources.records import QAPair, Record, read_qa_pairs, read_records

__all__ = [
    "Chunk",
    "QAPair",
    "Record",
    "Section",
    "Sources",
    "chunk_sections",
    "load_sources",
    "read_documents",
    "read_qa_pairs",
    "read_records",
    "read_sources",
    "save_sources",
    "split_facts",
    "split_sections",
]
