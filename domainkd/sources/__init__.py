"""Knowledge sources: documents cut into chunks and facts, structured records and QA sets, with provenance."""

from domainkd.sources.chunking import Chunk, TokenCounter, chunk_sections, split_facts, tokenizer_counter
from domainkd.sources.collection import Sources, load_sources, read_sources, save_sources
from domainkd.sources.documents import Section, read_documents, split_sections
from domainkd.sources.records import QAPair, Record, read_qa_pairs, read_records

__all__ = [
    "Chunk",
    "QAPair",
    "Record",
    "Section",
    "Sources",
    "TokenCounter",
    "chunk_sections",
    "load_sources",
    "read_documents",
    "read_qa_pairs",
    "read_records",
    "read_sources",
    "save_sources",
    "split_facts",
    "split_sections",
    "tokenizer_counter",
]
