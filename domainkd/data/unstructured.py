"""Unstructured knowledge injection: the domain text itself as plain language-model lines.

The first source paper's "unstructured" sets (500–2,000 lines of raw documents). Each chunk is
cut into passages of whole lines (an over-long line at sentence ends); each passage becomes a
``text`` example with no question, as written (``raw``) and/or rewritten by the teacher as one
explanatory paragraph (``rewritten``). A rewriting must keep every name and number of its
passage and add none, or it is dropped.

Two rule-based variants need no teacher (Physics of LMs 3.1: a fact seen in one form is memorised
but hard to extract; the same facts in several orders and framings make it extractable):
``permuted`` copies of each passage with its sentences in another order, and ``fact_frame``
passages restating each single fact (sentence or list item) in a frame naming its section.
"""

from __future__ import annotations

import itertools
import random
import re

from pydantic import Field, model_validator

from domainkd.config import StrictModel
from domainkd.data import grounding, prompts
from domainkd.data.strategies import Plan, StrategyContext, StrategyOutput, register_strategy
from domainkd.sources import Chunk, Sources, split_facts

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


FACT_FRAMES = (
    "{title}: {fact}",
    "From the section \"{title}\": {fact}",
    "{fact} (This is in the section {title}.)",
    "A note on {title}. {fact}",
)
"""Rule-based frames restating one fact; the section title ties it to its topic."""


class UnstructuredParams(StrictModel):
    """Parameters of the unstructured strategy."""

    passage_words: int = Field(120, ge=10)
    """Largest passage, in words; passages are whole lines of one chunk (a longer line is cut at sentence ends)."""
    min_words: int = Field(8, ge=1)
    """Drop passages shorter than this (lone headings, stray lines)."""
    raw: bool = True
    """Keep each passage as written (variant ``raw``)."""
    rewrite: bool = False
    """Also have the teacher rewrite each passage as one explanatory paragraph (variant ``rewritten``)."""
    max_passages: int | None = Field(None, ge=1)
    """Use at most this many passages, taken in turn from each document (None: all); one example per variant each."""
    permutations: int = Field(0, ge=0, le=8)
    """Copies of each passage of two or more sentences with its sentences shuffled (variant ``permuted``; no teacher)."""
    fact_frames: int = Field(0, ge=0, le=len(FACT_FRAMES))
    """Each fact of each chunk restated alone in this many frames naming its section (variant ``fact_frame``;
    no teacher)."""

    @model_validator(mode="after")
    def _one_variant(self) -> UnstructuredParams:
        if not (self.raw or self.rewrite or self.permutations or self.fact_frames):
            raise ValueError("turn on raw, rewrite, permutations or fact_frames, or the strategy makes nothing")
        return self


def split_passages(text: str, passage_words: int) -> list[str]:
    """``text``'s non-blank lines packed into passages of at most ``passage_words`` words.

    A line over the limit is cut at sentence ends (rejoined with spaces where they share a
    passage); a single sentence over it stays whole.
    """
    passages: list[str] = []
    size = 0
    for line in text.splitlines():
        for index, piece in enumerate(_pieces(line.strip(), passage_words)):
            words = len(piece.split())
            if not passages or size + words > passage_words:
                passages.append(piece)
                size = words
            else:
                passages[-1] += (" " if index else "\n") + piece
                size += words
    return passages


def _pieces(line: str, passage_words: int) -> list[str]:
    if not line:
        return []
    if len(line.split()) <= passage_words:
        return [line]
    return [sentence for sentence in _SENTENCE_END.split(line) if sentence]


def _passages(chunks: list[Chunk], params: UnstructuredParams, output: StrategyOutput) -> list[tuple[Chunk, str]]:
    """(chunk, passage) pairs to use; short and repeated ones (chunk overlaps) go to ``output.rejected``."""
    kept, seen = [], set()
    for chunk in chunks:
        for passage in split_passages(chunk.text, params.passage_words):
            key = grounding.normalise(passage)
            reason = None
            if len(passage.split()) < params.min_words:
                reason = "passage too short"
            elif key in seen:
                reason = "duplicate passage"
            if reason:
                output.rejected.append({**_base(chunk, "raw"), "text": passage, "reason": reason})
                continue
            seen.add(key)
            kept.append((chunk, passage))
    return _in_turn(kept, params.max_passages)


def _in_turn(passages: list[tuple[Chunk, str]], limit: int | None) -> list[tuple[Chunk, str]]:
    """Up to ``limit`` passages, taking one from each document in turn so every document keeps a share."""
    if limit is None:
        return passages
    by_document: dict[str, list[tuple[Chunk, str]]] = {}
    for item in passages:
        by_document.setdefault(item[0].document, []).append(item)
    interleaved = [item for group in itertools.zip_longest(*by_document.values()) for item in group if item is not None]
    return interleaved[:limit]


def _key_terms(passage: str) -> set[str]:
    """Names and numbers of a passage, line by line without list markers.

    A heading or list line has no full stop to end its sentence, and "2." numbers a step rather than stating a fact.
    """
    return {term for line in prompts.parse_lines(passage) for term in grounding.key_terms(line)}


def check_rewrite(rewrite: str, passage: str) -> str | None:
    """Why a rewriting of ``passage`` is unusable, or None: complete, every name and number kept, none added."""
    if len(rewrite.split()) < 2:
        return "rewrite empty"
    if not rewrite.endswith((".", "!", "?", ")", '"')):
        return "rewrite cut off"
    rewrite_words, source_words = set(grounding.words(rewrite)), set(grounding.words(passage))
    if (rewrite_words & prompts.EXAMPLE_TEXT_WORDS) - source_words:
        return "rewrite copies the prompt's example"
    passage_terms = _key_terms(passage)
    dropped = passage_terms - rewrite_words
    if dropped:
        return f"rewrite drops {sorted(dropped)[0]!r}"
    invented = grounding.key_terms(rewrite) - source_words - passage_terms
    if invented:
        return f"rewrite states {sorted(invented)[0]!r}, which is not in the source"
    return None


@register_strategy("unstructured")
class Unstructured:
    Params = UnstructuredParams

    def plan(self, sources: Sources, params: UnstructuredParams) -> Plan:
        passages = len(_passages(sources.chunks, params, StrategyOutput()))
        variants = [name for name, on in (("raw", params.raw), ("rewritten", params.rewrite)) if on]
        if params.permutations:
            variants.append(f"{params.permutations} permuted")
        frames = len(_fact_frames(sources.chunks, params.fact_frames))
        what = f"{passages} passages of up to {params.passage_words} words as plain text ({', '.join(variants) or 'none'})"
        return Plan(
            teacher_calls=passages if params.rewrite else 0,
            examples=passages * (params.raw + params.rewrite + params.permutations) + frames,
            what=what + (f", {frames} restated facts" if frames else ""),
        )

    def build(self, context: StrategyContext, params: UnstructuredParams) -> StrategyOutput:
        output = StrategyOutput()
        passages = _passages(context.chunks, params, output)
        rewrites = [""] * len(passages)
        if params.rewrite:
            conversations = [prompts.passage_rewrite_conversation(passage) for _, passage in passages]
            limit = 2 * params.passage_words + 64  # a paragraph may be longer than terse source lines
            rewrites = context.ask(conversations, "teacher: passage rewrites", max_new_tokens=limit)
        for (chunk, passage), reply in zip(passages, rewrites):
            if params.raw:
                output.examples.append({**_base(chunk, "raw"), "text": passage})
            if params.rewrite:
                self._add_rewrite(chunk, passage, reply, output)
            for text in permuted(passage, params.permutations):
                output.examples.append({**_base(chunk, "permuted"), "text": text, "passage": passage})
        for chunk, fact, text in _fact_frames(context.chunks, params.fact_frames):
            output.examples.append({**_base(chunk, "fact_frame"), "text": text, "fact": fact})
        return output

    @staticmethod
    def _add_rewrite(chunk: Chunk, passage: str, reply: str, output: StrategyOutput) -> None:
        rewrite = reply.strip()
        reason = "teacher request failed" if not reply else check_rewrite(rewrite, passage)
        if reason:
            output.rejected.append({**_base(chunk, "rewritten"), "text": rewrite, "passage": passage, "reason": reason})
        else:
            output.examples.append({**_base(chunk, "rewritten"), "text": rewrite, "passage": passage})


def permuted(passage: str, copies: int) -> list[str]:
    """Up to ``copies`` distinct reorderings of the passage's sentences (list items count as sentences)."""
    units = [piece for line in passage.splitlines() for piece in _pieces(line.strip(), 0)]
    if len(units) < 2:
        return []
    rng = random.Random(grounding.normalise(passage))  # the same copies on every run
    texts, seen = [], {tuple(units)}
    for _ in range(8 * copies):
        if len(texts) == copies:
            break
        order = rng.sample(units, len(units))
        if tuple(order) not in seen:
            seen.add(tuple(order))
            texts.append(" ".join(order))
    return texts


def _fact_frames(chunks: list[Chunk], frames: int) -> list[tuple[Chunk, str, str]]:
    """(chunk, fact, restatement) for each distinct fact of the chunks in each of the first ``frames`` frames."""
    restated, seen = [], set()
    for chunk in chunks:
        for fact in split_facts(chunk.text):
            if grounding.normalise(fact) in seen:
                continue  # a fact in the overlap of two chunks
            seen.add(grounding.normalise(fact))
            sentence = fact if fact.endswith((".", "!", "?")) else fact + "."
            restated += [(chunk, fact, frame.format(title=chunk.title, fact=sentence)) for frame in FACT_FRAMES[:frames]]
    return restated


def _base(chunk: Chunk, variant: str) -> dict[str, object]:
    return {
        "strategy": "unstructured",
        "variant": variant,
        "question": None,
        "answer": None,
        "document": chunk.document,
        "chunk_id": chunk.chunk_id,
        "title": chunk.title,
    }

