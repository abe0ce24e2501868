"""Knowledge sources: documents read into sections, cut into chunks and facts with provenance."""

from domainkd.sources.chunking import Chunk, chunk_sections, split_facts
from domainkd.sources.documents import Section, read_documents, split_sections

__all__ = ["Chunk", "Section", "chunk_sections", "read_documents", "split_facts", "split_sections"]
