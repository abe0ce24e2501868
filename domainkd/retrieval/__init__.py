"""Dense retrieval: a local sentence encoder, FAISS indexes on disk, and the ReBase datastore of existing datasets."""

from domainkd.retrieval.chunks import (
    RETRIEVAL_METHODS,
    ChunkRetriever,
    RetrievedChunk,
    gold_chunk_ids,
    open_chunk_retriever,
    reciprocal_rank_fusion,
    retrieval_recall,
)
from domainkd.retrieval.datastore import (
    DatasetInfo,
    Datastore,
    StoredRow,
    build_datastore,
    open_datastore,
    read_manifest,
)
from domainkd.retrieval.encoder import DEFAULT_ENCODER, SentenceEncoder, load_encoder
from domainkd.retrieval.index import IndexSettings, VectorIndex, build_index
from domainkd.retrieval.query import (
    QueryVectors,
    RetrievedRow,
    TaskExample,
    encode_query,
    format_rows,
    read_examples,
    rebase_scores,
    retrieve,
    search_rows,
)
from domainkd.retrieval.tables import DatasetSpec, dataset_rows

__all__ = [
    "DEFAULT_ENCODER",
    "RETRIEVAL_METHODS",
    "ChunkRetriever",
    "DatasetInfo",
    "DatasetSpec",
    "Datastore",
    "IndexSettings",
    "QueryVectors",
    "RetrievedChunk",
    "RetrievedRow",
    "SentenceEncoder",
    "StoredRow",
    "TaskExample",
    "VectorIndex",
    "build_datastore",
    "build_index",
    "dataset_rows",
    "encode_query",
    "format_rows",
    "gold_chunk_ids",
    "load_encoder",
    "open_chunk_retriever",
    "open_datastore",
    "read_examples",
    "read_manifest",
    "rebase_scores",
    "reciprocal_rank_fusion",
    "retrieval_recall",
    "retrieve",
    "search_rows",
]
