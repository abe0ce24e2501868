"""Embedding metrics against the reference answer: BERTScore P/R/F1 and sentence-embedding cosine.

Both use a local sentence encoder (``eval.encoder``, default all-MiniLM-L6-v2 from its
offline package), never a download. BERTScore follows Zhang et al. (2020): contextual
token embeddings of the answer and the reference (the encoder's last layer, special
tokens excluded), each token greedily matched to its most similar token on the other
side by cosine; precision averages over the answer's tokens, recall over the
reference's, F1 is their harmonic mean. No idf weighting and no baseline rescaling, so
values differ from the paper's RoBERTa-large BERTScore (with MiniLM, unrelated sentences score about 0.1–0.3); compare systems,
not absolute values. The cosine metric compares the encoder's pooled sentence vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from domainkd.evaluation.metrics import reference_answer
from domainkd.evaluation.registry import Example, MetricContext, Row, register_metric

BATCH_SIZE = 64


def greedy_match(candidate: torch.Tensor, reference: torch.Tensor) -> tuple[float, float, float]:
    """BERTScore (P, R, F1) of two token-embedding matrices.

    Args:
        candidate: (Lc, D) token embeddings of the answer.
        reference: (Lr, D) token embeddings of the reference.
    """
    if len(candidate) == 0 or len(reference) == 0:
        return 0.0, 0.0, 0.0
    candidate = torch.nn.functional.normalize(candidate.float(), dim=-1)
    reference = torch.nn.functional.normalize(reference.float(), dim=-1)
    similarity = candidate @ reference.T  # (Lc, Lr)
    precision = similarity.max(dim=1).values.mean().item()
    recall = similarity.max(dim=0).values.mean().item()
    f1 = 0.0 if precision + recall <= 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f1


@dataclass(frozen=True)
class TextEmbedding:
    """What the encoder makes of one text."""

    tokens: torch.Tensor
    """(L, D) last-layer token embeddings, special and padding tokens removed."""
    sentence: torch.Tensor
    """(D,) the encoder's pooled, normalised sentence vector."""


@torch.no_grad()
def embed_texts(encoder: object, texts: list[str], cache: dict[str, TextEmbedding] | None = None) -> list[TextEmbedding]:
    """One encoder pass over the distinct texts not in ``cache`` (sentence-transformers sorts them by length)."""
    cache = {} if cache is None else cache
    model = encoder.model  # type: ignore[attr-defined]
    special = torch.tensor(sorted(model.tokenizer.all_special_ids))
    missing = list(dict.fromkeys(text for text in texts if text not in cache))
    if missing:
        outputs = model.encode(missing, output_value=None, batch_size=BATCH_SIZE, show_progress_bar=False)
        for text, output in zip(missing, outputs):
            keep = output["attention_mask"].bool() & ~torch.isin(output["input_ids"], special)  # (L,)
            cache[text] = TextEmbedding(output["token_embeddings"][keep].float(), output["sentence_embedding"].float())
    return [cache[text] for text in texts]


def bertscore(encoder: object, predictions: list[str], references: list[str], cache: dict | None = None) -> list[tuple[float, float, float]]:
    """BERTScore (P, R, F1) of each prediction against its reference."""
    cache = {} if cache is None else cache
    candidate, reference = embed_texts(encoder, predictions, cache), embed_texts(encoder, references, cache)
    return [greedy_match(c.tokens, r.tokens) for c, r in zip(candidate, reference)]


def _scored_pairs(rows: list[Row], examples: list[Example]) -> tuple[list[int], list[str], list[str]]:
    """Positions with a reference, their predictions and references."""
    positions = [i for i, example in enumerate(examples) if reference_answer(example) is not None]
    return positions, [rows[i]["prediction"] for i in positions], [reference_answer(examples[i]) or "" for i in positions]


def _bertscore_part(part: int):  # noqa: ANN202 - returns a registry batch function
    def score_batch(rows: list[Row], examples: list[Example], context: MetricContext) -> list[float | None]:
        positions, predictions, references = _scored_pairs(rows, examples)
        key = ("bertscore", context.encoder_reference, tuple(predictions), tuple(references))
        if key not in context.cache:
            context.cache[key] = bertscore(context.encoder(), predictions, references, _embeddings(context))
        scores: list[float | None] = [None] * len(rows)
        for position, triple in zip(positions, context.cache[key]):
            scores[position] = triple[part]
        return scores

    return score_batch


@register_metric("embedding_cosine", "embedding", True, "cosine similarity of the answer's and the reference's sentence embeddings")
def embedding_cosine(rows: list[Row], examples: list[Example], context: MetricContext) -> list[float | None]:
    positions, predictions, references = _scored_pairs(rows, examples)
    scores: list[float | None] = [None] * len(rows)
    if positions:
        cache = _embeddings(context)
        candidate = embed_texts(context.encoder(), predictions, cache)
        reference = embed_texts(context.encoder(), references, cache)
        for position, c, r in zip(positions, candidate, reference):
            scores[position] = float(torch.nn.functional.cosine_similarity(c.sentence, r.sentence, dim=0))
    return scores


def _embeddings(context: MetricContext) -> dict[str, TextEmbedding]:
    """The context's text → embedding cache (shared by BERTScore and the cosine metric)."""
    return context.cache.setdefault(("embeddings", context.encoder_reference), {})


register_metric("bertscore_precision", "embedding", True, "BERTScore precision (local encoder, greedy token matching)")(_bertscore_part(0))
register_metric("bertscore_recall", "embedding", True, "BERTScore recall (local encoder, greedy token matching)")(_bertscore_part(1))
register_metric("bertscore_f1", "embedding", True, "BERTScore F1 (local encoder, greedy token matching)")(_bertscore_part(2))
