"""Search over the data stage's document chunks: BM25, dense vectors, or both fused by reciprocal rank fusion.

Each chunk is searched as ``title + "\\n" + text``. The two rankers:

* ``bm25`` — :mod:`bm25s` (Lucene BM25, k1 = 1.5, b = 0.75) over lower-cased, English-stemmed words
  without English stop words. Only chunks sharing a word with the query are returned, so a query of
  stop words or unknown words finds nothing (an empty list, not every chunk at score 0).
* ``dense`` — unit vectors from a local sentence encoder in an exact FAISS inner-product index
  (:mod:`domainkd.retrieval.index`); the score is the cosine similarity.

``hybrid`` fuses each ranker's first ``candidates`` chunks: a chunk at rank r of a list adds
1 / (rrf_k + r) to its score (:func:`reciprocal_rank_fusion`).

Layout of an index directory (the run's ``retrieval/`` folder):

* ``manifest.json`` — per part (``bm25``, ``dense``): its fingerprint, the file holding it, counts,
  build seconds;
* ``bm25-<fingerprint[:16]>/`` — the bm25s index (``BM25.save`` layout);
* ``dense-<fingerprint[:16]>.faiss`` — the chunk vectors' index (vector i = chunk i).

A part's fingerprint covers every chunk's id, title and text plus the part's own settings (the
tokenisation for BM25; the encoder's identity and index settings for dense). Only the parts a
method needs are opened, and a part is built only when no file holds its fingerprint. Part files
are named by fingerprint and written atomically before the manifest names them; files the
manifest no longer names are removed after it is written. A build killed at any point therefore
leaves the previous index in use, or none, never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from domainkd.config import RetrievalMethod
from domainkd.errors import DomainKDError
from domainkd.io import atomic_dir, json_sha256, write_json
from domainkd.retrieval.encoder import (
    DEFAULT_ENCODER,
    SentenceEncoder,
    encoder_directory,
    encoder_files_identity,
    load_encoder,
)
from domainkd.retrieval.index import IndexSettings, VectorIndex, build_index
from domainkd.sources.chunking import Chunk

__all__ = [
    "RETRIEVAL_METHODS",
    "ChunkRetriever",
    "RetrievedChunk",
    "gold_chunk_ids",
    "open_chunk_retriever",
    "reciprocal_rank_fusion",
    "retrieval_recall",
]

RETRIEVAL_METHODS: tuple[str, ...] = get_args(RetrievalMethod)
FORMAT_VERSION = 1
BM25_SETTINGS: dict[str, Any] = {
    "token_pattern": r"(?u)\b\w\w+\b",
    "lower": True,
    "stopwords": "en",
    "stemmer": "english",
    "method": "lucene",
    "k1": 1.5,
    "b": 0.75,
}
"""How chunks and queries are tokenised and scored by BM25 (part of its fingerprint)."""
DENSE_SETTINGS = IndexSettings()
"""The dense index: exact (flat) up to 100k chunks."""
_METHOD_PARTS = {"bm25": ("bm25",), "dense": ("dense",), "hybrid": ("bm25", "dense")}
_PART_FILE = re.compile(r"^\.?(bm25-[0-9a-f]{16}|dense-[0-9a-f]{16}\.faiss)(\..*)?$")
"""Part files and the temporary files of interrupted builds (``.<name>.<random>``)."""

Ranking = list[tuple[int, float]]
"""(chunk index, score) pairs, best first."""


@dataclass(frozen=True)
class RetrievedChunk:
    """One search hit."""

    chunk: Chunk
    score: float
    """BM25 score, cosine similarity, or RRF score, by the retriever's method."""
    rank: int
    """1-based position in the hit list."""


def chunk_search_text(chunk: Chunk) -> str:
    """What both rankers index for a chunk: its section title, a newline, its text."""
    return f"{chunk.title}\n{chunk.text}"


def chunks_hash(chunks: Sequence[Chunk]) -> str:
    """sha256 over every chunk's id, title and text, in order."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(json.dumps([chunk.chunk_id, chunk.title, chunk.text], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


# --- rankers -------------------------------------------------------------------------------------


def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer(BM25_SETTINGS["stemmer"])


def bm25_tokens(texts: Sequence[str]) -> list[list[str]]:
    """Each text as lower-cased, stemmed words of two or more characters, English stop words left out."""
    import bm25s

    return bm25s.tokenize(
        list(texts),
        lower=BM25_SETTINGS["lower"],
        token_pattern=BM25_SETTINGS["token_pattern"],
        stopwords=BM25_SETTINGS["stopwords"],
        stemmer=_stemmer(),
        return_ids=False,
        show_progress=False,
    )


class Bm25Ranker:
    """Lexical ranking by bm25s; zero-score chunks (no word in common with the query) are never returned."""

    name = "bm25"
    suffix = ""
    """The part is a directory ``bm25-<fingerprint[:16]>``."""

    def __init__(self, model: Any) -> None:
        self.model = model
        """The ``bm25s.BM25`` index."""

    @staticmethod
    def fingerprint(chunk_hash: str, encoder: str | SentenceEncoder) -> str:
        """sha256 over the chunks' hash, the tokenisation and scoring settings and the format version."""
        return json_sha256({"part": "bm25", "version": FORMAT_VERSION, "chunks": chunk_hash, "settings": BM25_SETTINGS})

    @classmethod
    def build(
        cls, path: Path, chunks: Sequence[Chunk], encoder: str | SentenceEncoder
    ) -> tuple[Bm25Ranker, dict[str, Any]]:
        """Index the chunks' texts into the directory ``path``; return the ranker and facts for the manifest."""
        import bm25s

        settings = BM25_SETTINGS
        tokens = bm25_tokens([chunk_search_text(chunk) for chunk in chunks])
        if not any(tokens):  # bm25s cannot index an empty vocabulary
            raise DomainKDError(
                "the chunks hold no word BM25 can search (only stop words); use the dense method or add documents."
            )
        model = bm25s.BM25(method=settings["method"], k1=settings["k1"], b=settings["b"])
        model.index(tokens, show_progress=False)
        with atomic_dir(path) as tmp:
            model.save(str(tmp), show_progress=False)
        return cls(model), {"vocabulary": len(model.vocab_dict)}

    @classmethod
    def load(cls, path: Path, encoder: str | SentenceEncoder) -> Bm25Ranker:
        """The index saved in ``path``."""
        import bm25s

        return cls(bm25s.BM25.load(str(path), show_progress=False))

    def rank(self, queries: Sequence[str], depth: int) -> list[Ranking]:
        """The ``depth`` best chunks with a positive score per query; equal scores keep chunk order."""
        rankings = []
        for tokens in bm25_tokens(queries):
            token_ids = self.model.get_tokens_ids(tokens)  # unknown stems are dropped here
            if not token_ids:
                rankings.append([])
                continue
            scores = self.model.get_scores_from_ids(token_ids)  # (N,)
            order = np.argsort(-scores, kind="stable")[:depth]
            rankings.append([(int(i), float(scores[i])) for i in order if scores[i] > 0])
        return rankings


class DenseRanker:
    """Semantic ranking: cosine similarity of sentence-encoder vectors, searched exactly with FAISS."""

    name = "dense"
    suffix = ".faiss"
    """The part is a file ``dense-<fingerprint[:16]>.faiss``."""

    def __init__(self, index: VectorIndex, encoder: str | SentenceEncoder) -> None:
        self.index = index
        self._encoder = encoder

    @staticmethod
    def fingerprint(chunk_hash: str, encoder: str | SentenceEncoder) -> str:
        """sha256 over the chunks' hash, the encoder's identity, the index settings and the format version."""
        inputs = {
            "part": "dense",
            "version": FORMAT_VERSION,
            "chunks": chunk_hash,
            "encoder": encoder_identity(encoder),
            "index": DENSE_SETTINGS.build_fields(),
        }
        return json_sha256(inputs)

    @classmethod
    def build(
        cls, path: Path, chunks: Sequence[Chunk], encoder: str | SentenceEncoder
    ) -> tuple[DenseRanker, dict[str, Any]]:
        """Encode the chunks and index their vectors into the file ``path``; return the ranker and manifest facts."""
        loaded = encoder if isinstance(encoder, SentenceEncoder) else load_encoder(encoder)
        vectors = loaded.encode([chunk_search_text(chunk) for chunk in chunks])  # (N, D)
        description = build_index(vectors, path, DENSE_SETTINGS)
        facts = {"encoder": loaded.reference, "dimension": loaded.dimension, "index": description}
        return cls(VectorIndex(path), loaded), facts

    @classmethod
    def load(cls, path: Path, encoder: str | SentenceEncoder) -> DenseRanker:
        """The index in ``path``; the encoder is loaded at the first search."""
        return cls(VectorIndex(path), encoder)

    def encoder(self) -> SentenceEncoder:
        """The query encoder, loaded once."""
        if not isinstance(self._encoder, SentenceEncoder):
            self._encoder = load_encoder(self._encoder)
        return self._encoder

    def rank(self, queries: Sequence[str], depth: int) -> list[Ranking]:
        """The ``depth`` most similar chunks per query (every chunk when there are fewer)."""
        vectors = self.encoder().encode(list(queries))  # (Q, D), encoded in one batch
        similarities, ids = self.index.search(vectors, depth)  # (Q, k), (Q, k)
        return [
            [(int(i), float(s)) for i, s in zip(row_ids, row_similarities) if i >= 0]
            for row_ids, row_similarities in zip(ids, similarities)
        ]


RANKERS: dict[str, type[Bm25Ranker] | type[DenseRanker]] = {"bm25": Bm25Ranker, "dense": DenseRanker}
"""Index parts by name; each has ``name``, ``suffix``, ``fingerprint``, ``build``, ``load`` and ``rank``."""


def encoder_identity(encoder: str | SentenceEncoder) -> dict[str, Any]:
    """What identifies an encoder's vectors, without loading it when given by reference."""
    if isinstance(encoder, SentenceEncoder):
        return encoder.identity()
    return {"reference": encoder, **encoder_files_identity(encoder_directory(encoder))}


# --- fusion and the retriever --------------------------------------------------------------------


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], rrf_k: int, top_k: int) -> Ranking:
    """Fuse ranked lists of item ids: an item at 1-based rank r of a list adds 1 / (rrf_k + r).

    Equal scores are ordered by the item's rank in the first list (absent: after every ranked
    item), then in the next list, and so on, then by item id.

    Args:
        rankings: lists of item ids, best first (e.g. BM25's, then the dense ranker's).
        rrf_k: the fusion constant (60 in the original paper).
        top_k: most items returned.

    Returns:
        (item, fused score) pairs, best first.
    """
    scores: dict[int, float] = {}
    ranks: dict[int, list[float]] = {}
    for list_number, ranking in enumerate(rankings):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (rrf_k + rank)
            ranks.setdefault(item, [float("inf")] * len(rankings))[list_number] = rank
    order = sorted(scores, key=lambda item: (-scores[item], *ranks[item], item))
    return [(item, scores[item]) for item in order[:top_k]]


class ChunkRetriever:
    """Chunks and the opened index parts their method needs; see :func:`open_chunk_retriever`."""

    def __init__(
        self, method: str, chunks: list[Chunk], rankers: dict[str, Any], rebuilt: bool, rrf_k: int, candidates: int
    ) -> None:
        self.method = method
        self.chunks = chunks
        self.rankers = rankers
        """Part name → ranker (``Bm25Ranker``, ``DenseRanker``)."""
        self.rebuilt = rebuilt
        """Whether opening it built any part (False when every part was read from disk)."""
        self.rrf_k = rrf_k
        self.candidates = candidates

    def search(self, queries: Sequence[str], top_k: int) -> list[list[RetrievedChunk]]:
        """The best chunks for each query, best first.

        Args:
            queries: question texts (encoded together for the dense part).
            top_k: most hits per query; fewer when there are fewer chunks, or, for ``bm25``,
                fewer chunks sharing a word with the query.
        """
        if top_k < 1:
            raise DomainKDError(f"top_k is {top_k}; ask for at least one chunk per query.")
        if isinstance(queries, str):
            raise DomainKDError("search takes a list of queries, not one string; pass [query].")
        if not queries:
            return []
        if self.method == "hybrid":
            rankings = self._fused(queries, top_k)
        else:
            rankings = self.rankers[self.method].rank(queries, top_k)
        return [
            [RetrievedChunk(self.chunks[item], score, rank) for rank, (item, score) in enumerate(ranking, start=1)]
            for ranking in rankings
        ]

    def _fused(self, queries: Sequence[str], top_k: int) -> list[Ranking]:
        """RRF of BM25 and dense, each searched ``candidates`` deep (at least ``top_k``)."""
        depth = max(self.candidates, top_k)
        lexical = self.rankers["bm25"].rank(queries, depth)
        semantic = self.rankers["dense"].rank(queries, depth)
        return [
            reciprocal_rank_fusion([[item for item, _ in bm25], [item for item, _ in dense]], self.rrf_k, top_k)
            for bm25, dense in zip(lexical, semantic)
        ]


def open_chunk_retriever(
    index_dir: Path,
    chunks: Sequence[Chunk],
    method: str = "hybrid",
    encoder: str | SentenceEncoder = DEFAULT_ENCODER,
    rrf_k: int = 60,
    candidates: int = 50,
) -> ChunkRetriever:
    """Open (building what is missing or stale) the index of ``chunks`` in ``index_dir`` for ``method``.

    Args:
        index_dir: the index directory (created), e.g. the run's ``retrieval/`` folder.
        chunks: the data stage's chunks; hits refer to them by position.
        method: one of :data:`RETRIEVAL_METHODS`.
        encoder: the dense part's sentence encoder, by reference or loaded (by reference it is
            loaded only to build the part or at the first dense search).
        rrf_k: the reciprocal rank fusion constant of ``hybrid``.
        candidates: depth of each list ``hybrid`` fuses.

    Raises:
        DomainKDError: no chunks, an unknown method, or an encoder that cannot be found.
    """
    if method not in _METHOD_PARTS:
        raise DomainKDError(f"retrieval method {method!r} is unknown; use one of {', '.join(RETRIEVAL_METHODS)}.")
    if not chunks:
        raise DomainKDError(
            "there are no document chunks to search; add documents to data.documents and run "
            "`domainkd data CONFIG` first."
        )
    chunks = list(chunks)
    manifest = _read_manifest(index_dir)
    chunk_hash = chunks_hash(chunks)
    rankers, rebuilt = {}, False
    for name in _METHOD_PARTS[method]:
        rankers[name], built = _open_part(index_dir, manifest, RANKERS[name], chunks, chunk_hash, encoder)
        rebuilt = rebuilt or built
    return ChunkRetriever(method, chunks, rankers, rebuilt, rrf_k, candidates)


def _read_manifest(index_dir: Path) -> dict[str, Any]:
    """The index directory's manifest; a fresh one when it is absent, unreadable or of another format."""
    path = index_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        manifest = {}
    if manifest.get("format") != FORMAT_VERSION or not isinstance(manifest.get("parts"), dict):
        manifest = {"format": FORMAT_VERSION, "parts": {}}
    return manifest


def _open_part(
    index_dir: Path,
    manifest: dict[str, Any],
    ranker_type: type[Bm25Ranker] | type[DenseRanker],
    chunks: list[Chunk],
    chunk_hash: str,
    encoder: str | SentenceEncoder,
) -> tuple[Any, bool]:
    """Load one part whose fingerprint matches the manifest, else build it and record it there."""
    fingerprint = ranker_type.fingerprint(chunk_hash, encoder)
    path = index_dir / f"{ranker_type.name}-{fingerprint[:16]}{ranker_type.suffix}"
    entry = manifest["parts"].get(ranker_type.name, {})
    if entry.get("fingerprint") == fingerprint and path.exists():
        return ranker_type.load(path, encoder), False
    started = time.perf_counter()
    ranker, facts = ranker_type.build(path, chunks, encoder)
    manifest["parts"][ranker_type.name] = {
        "fingerprint": fingerprint,
        "path": path.name,
        "chunks": len(chunks),
        **facts,
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    write_json(index_dir / "manifest.json", manifest)
    _remove_unlisted(index_dir, manifest)
    return ranker, True


def _remove_unlisted(index_dir: Path, manifest: dict[str, Any]) -> None:
    """Delete part files (and leftovers of killed builds) that the manifest does not name."""
    listed = {entry.get("path") for entry in manifest["parts"].values()}
    for path in index_dir.iterdir():
        if _PART_FILE.match(path.name) and path.name not in listed:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


# --- gold chunks and recall@k --------------------------------------------------------------------


def gold_chunk_ids(example: dict[str, Any], chunks: Sequence[Chunk]) -> set[str]:
    """Ids of the chunks that answer an in-scope example: its source document's chunks holding every fact.

    When no chunk of the source holds all the facts (they are spread over chunks), every chunk of
    the source counts. Out-of-scope examples and examples without a source have none.
    """
    from domainkd.evaluation.metrics import fact_present  # here: evaluation imports this module

    source = example.get("source")
    if example.get("scope", "in") == "out" or not source:
        return set()
    document = [chunk for chunk in chunks if chunk.document == source]
    facts = example.get("facts") or []
    holding = {chunk.chunk_id for chunk in document if all(fact_present(fact, chunk.text) for fact in facts)}
    return holding or {chunk.chunk_id for chunk in document}


def retrieval_recall(
    retriever: ChunkRetriever, questions: Sequence[dict[str, Any]], ks: Sequence[int] = (1, 3, 5, 10)
) -> dict[str, Any]:
    """Recall@k of gold chunks and of source documents, and MRR, over questions with gold chunks.

    Args:
        retriever: the opened retriever (its method is reported).
        questions: evaluation examples (``question``, ``source``, ``facts``, ``scope``).
        ks: cut-offs; one search ``max(ks)`` deep serves them all.

    Returns:
        ``{"method", "questions", "recall_at": {"1": share, ...}, "document_recall_at": {...}, "mrr"}``;
        MRR counts 1/rank of the first gold chunk, 0 when it is not within ``max(ks)``. With no
        question to score, ``questions`` is 0, the two tables are empty and ``mrr`` is None.
    """
    cutoffs = sorted(set(ks))
    if not cutoffs or cutoffs[0] < 1:
        raise DomainKDError(f"recall cut-offs {list(ks)} must be whole numbers of at least 1; use e.g. [1, 3, 5, 10].")
    scored = [(question, gold) for question in questions if (gold := gold_chunk_ids(question, retriever.chunks))]
    report: dict[str, Any] = {"method": retriever.method, "questions": len(scored)}
    if not scored:
        return {**report, "recall_at": {}, "document_recall_at": {}, "mrr": None}
    hit_lists = retriever.search([question["question"] for question, _ in scored], cutoffs[-1])
    gold_ranks = [_first_rank(hits, gold) for hits, (_, gold) in zip(hit_lists, scored)]
    document_ranks = [_first_document_rank(hits, question["source"]) for hits, (question, _) in zip(hit_lists, scored)]
    return {
        **report,
        "recall_at": {str(k): _share_within(gold_ranks, k) for k in cutoffs},
        "document_recall_at": {str(k): _share_within(document_ranks, k) for k in cutoffs},
        "mrr": sum(1.0 / rank for rank in gold_ranks if rank) / len(scored),
    }


def _first_rank(hits: list[RetrievedChunk], chunk_ids: set[str]) -> int | None:
    """Rank of the first hit among ``chunk_ids``, None when there is none."""
    return next((hit.rank for hit in hits if hit.chunk.chunk_id in chunk_ids), None)


def _first_document_rank(hits: list[RetrievedChunk], document: str) -> int | None:
    """Rank of the first hit from ``document``, None when there is none."""
    return next((hit.rank for hit in hits if hit.chunk.document == document), None)


def _share_within(ranks: list[int | None], k: int) -> float:
    return sum(1 for rank in ranks if rank is not None and rank <= k) / len(ranks)
