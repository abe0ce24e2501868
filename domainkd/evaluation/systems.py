"""Systems: who answers the evaluation questions, and what their prompt holds.

A system is a model plus a strategy (:class:`~domainkd.config.StrategyConfig`): an instruction
template, few-shot examples chosen by similarity, chain of thought, and what it reads before
the question (nothing, chunks retrieved by BM25 / dense / hybrid search, or the question's own
source document). ``eval.systems`` names the built-in ones below; ``compare.strategies``
defines any others. Every system sees the run's system prompt.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from domainkd.config import RunConfig, StrategyConfig
from domainkd.data.grounding import content_words
from domainkd.errors import DomainKDError
from domainkd.evaluation.prompting import COT_INSTRUCTION, apply_template, nearest_examples, read_pool
from domainkd.paths import RunPaths
from domainkd.sources import Chunk

Example = dict[str, Any]
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class System:
    """One way of answering: what it is, in words, and how."""

    description: str
    strategy: StrategyConfig
    retrieves: bool = False
    """Reads the excerpts the run's configured retriever (``retrieval.method``) finds for the question."""

    def for_run(self, config: RunConfig) -> System:
        """This system with the run's retrieval method filled in where it retrieves."""
        if not self.retrieves:
            return self
        strategy = self.strategy.model_copy(update={"retrieval": config.retrieval.method})
        return System(self.description, strategy, retrieves=True)


SYSTEMS: dict[str, System] = {
    "base_student": System("the student before training", StrategyConfig(model="base_student")),
    "student": System("the student after training", StrategyConfig(model="student")),
    "teacher_closed_book": System("the teacher without the documents", StrategyConfig(model="teacher")),
    "teacher_with_context": System(
        "the teacher reading the source section", StrategyConfig(model="teacher", retrieval="gold")
    ),
    "base_student_with_retrieval": System(
        "the student before training, reading retrieved excerpts", StrategyConfig(model="base_student"), retrieves=True
    ),
    "student_with_retrieval": System(
        "the student after training, reading retrieved excerpts", StrategyConfig(model="student"), retrieves=True
    ),
    "teacher_with_retrieval": System(
        "the teacher reading retrieved excerpts", StrategyConfig(model="teacher"), retrieves=True
    ),
}

MODEL_ROLES = {"base_student": "base student", "student": "distilled student", "teacher": "teacher"}


def model_reference(strategy: StrategyConfig, config: RunConfig, paths: RunPaths) -> str:
    """The model a strategy runs: the run's student (before or after training), its teacher, or any reference."""
    roles = {"base_student": config.student.model, "student": str(paths.model), "teacher": config.teacher.model}
    return roles.get(strategy.model, strategy.model)


def training_note(strategy: StrategyConfig, paths: RunPaths) -> str:
    """How the distilled student a strategy runs was trained, in words (empty for other models or untrained runs)."""
    import json

    if strategy.model != "student" or not paths.train_summary.is_file():
        return ""
    excerpts = json.loads(paths.train_summary.read_text(encoding="utf-8")).get("excerpt_examples", 0)
    if excerpts:
        return f" (trained with retrieved excerpts: {excerpts} RAFT examples)"
    return " (trained closed-book, never shown excerpts)"


def describe(strategy: StrategyConfig, config: RunConfig) -> str:
    """A strategy in words, e.g. ``distilled student + hybrid retrieval (top 3)``."""
    parts = [MODEL_ROLES.get(strategy.model, strategy.model)]
    if strategy.template != "plain":
        parts.append(f"{strategy.template} template" if strategy.template in ("expert", "concise") else "custom template")
    if strategy.few_shot:
        parts.append(f"{strategy.few_shot}-shot (nearest questions)")
    if strategy.chain_of_thought:
        parts.append("chain of thought")
    if strategy.retrieval == "gold":
        parts.append("its source document (oracle)")
    elif strategy.retrieval != "none":
        parts.append(f"{strategy.retrieval} retrieval (top {strategy.top_k or config.retrieval.top_k})")
    return " + ".join(parts)


def max_new_tokens(strategy: StrategyConfig, config: RunConfig) -> int:
    """Answer length bound: the strategy's own, else the eval default (tripled for chain of thought)."""
    if strategy.max_new_tokens is not None:
        return strategy.max_new_tokens
    return config.eval.max_new_tokens * (3 if strategy.chain_of_thought else 1)


@dataclass
class PromptResources:
    """What prompts are built from, loaded once per evaluation and shared by every system."""

    config: RunConfig
    paths: RunPaths
    _chunks: list[Chunk] | None = None
    _retrievers: dict[str, Any] = field(default_factory=dict)
    _pool: list[dict[str, str]] | None = None
    _encoder: Any = None

    @property
    def chunks(self) -> list[Chunk]:
        """The data stage's chunks."""
        if self._chunks is None:
            from domainkd.data.build import load_chunks

            self._chunks = load_chunks(self.paths)
        return self._chunks

    def encoder(self) -> Any:
        """The retrieval sentence encoder (also used to pick few-shot examples)."""
        if self._encoder is None:
            from domainkd.retrieval import load_encoder

            self._encoder = load_encoder(self.config.retrieval.encoder)
        return self._encoder

    def retriever(self, method: str) -> Any:
        """The chunk retriever for ``method``, its index built or reused under the run's retrieval/ folder."""
        if method not in self._retrievers:
            from domainkd.retrieval.chunks import open_chunk_retriever

            settings = self.config.retrieval
            self._retrievers[method] = open_chunk_retriever(
                self.paths.retrieval_index, self.chunks, method, encoder=self.encoder() if method != "bm25" else
                settings.encoder, rrf_k=settings.rrf_k, candidates=settings.candidates,
            )
        return self._retrievers[method]

    def pool(self) -> list[dict[str, str]]:
        """The few-shot pool: `compare.few_shot_pool`, else the run's training set."""
        if self._pool is None:
            self._pool = read_pool(self.config.compare.few_shot_pool or self.paths.train_set)
        return self._pool


@dataclass
class Prompts:
    """One system's conversations for every question, with what retrieval added."""

    conversations: list[Messages]
    retrieved: list[list[str]]
    """Chunk ids each prompt holds (empty without retrieval)."""
    retrieval_seconds: float = 0.0
    """Search time per question."""


def build_prompts(strategy: StrategyConfig, questions: Sequence[Example], resources: PromptResources) -> Prompts:
    """The messages each question is asked with under ``strategy``."""
    config = resources.config
    excerpts: list[list[Chunk]] = [[] for _ in questions]
    seconds = 0.0
    if strategy.retrieval == "gold":
        if not resources.chunks:
            raise DomainKDError(
                "a system that reads the source section (teacher_with_context, or retrieval: gold) needs documents; "
                "set data.documents or drop it from eval.systems."
            )
        excerpts = [gold_excerpts(question, resources.chunks) for question in questions]
    elif strategy.retrieval != "none":
        retriever = resources.retriever(strategy.retrieval)
        began = time.perf_counter()
        hits = retriever.search([q["question"] for q in questions], strategy.top_k or config.retrieval.top_k)
        seconds = (time.perf_counter() - began) / max(1, len(questions))
        excerpts = [[hit.chunk for hit in row] for row in hits]
    shots = [[] for _ in questions]
    if strategy.few_shot:
        encode = resources.encoder().encode
        shots = nearest_examples([q["question"] for q in questions], resources.pool(), strategy.few_shot, encode)
    conversations = [
        _messages(strategy, question["question"], chosen, found, config)
        for question, chosen, found in zip(questions, shots, excerpts)
    ]
    return Prompts(conversations, [[chunk.chunk_id for chunk in found] for found in excerpts], seconds)


def _messages(
    strategy: StrategyConfig, question: str, shots: list[dict[str, str]], excerpts: list[Chunk], config: RunConfig
) -> Messages:
    messages: Messages = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
    for shot in shots:
        messages.append({"role": "user", "content": apply_template(strategy.template, shot["question"], config.refusal_text, config.domain.documents)})
        reply = f"Answer: {shot['answer']}" if strategy.chain_of_thought else shot["answer"]
        messages.append({"role": "assistant", "content": reply})
    if strategy.retrieval == "gold":
        user = source_prompt(question, "\n\n".join(chunk.text for chunk in excerpts), config.refusal_text)
    elif excerpts:
        user = excerpt_prompt(question, excerpts, config.refusal_text)
    else:
        user = apply_template(strategy.template, question, config.refusal_text, config.domain.documents)
    if strategy.chain_of_thought:
        user += COT_INSTRUCTION
    messages.append({"role": "user", "content": user})
    return messages


EXCERPT_INSTRUCTION = "\n\nAnswer the question in one sentence using only the excerpts above."
"""Where the excerpts of :func:`excerpt_prompt` end and the instruction and question begin."""


def excerpt_prompt(question: str, excerpts: Sequence[Chunk], refusal_text: str) -> str:
    """The user turn of a retrieval-augmented answer: numbered excerpts with their sources, then the question."""
    blocks = [f"[{number}] {chunk.document} - {chunk.title}\n{chunk.text.strip()}" for number, chunk in enumerate(excerpts, 1)]
    return (
        "Document excerpts:\n" + "\n\n".join(blocks) + EXCERPT_INSTRUCTION
        + f" If they do not answer it, reply exactly: {refusal_text}\n\nQuestion: {question}"
    )


def checked_answer(answer: str, excerpts: Sequence[Chunk], refusal_text: str, min_share: float | None) -> str:
    """``answer``, or the refusal sentence when the excerpts it was given do not back it.

    Small readers copy the question into a confident answer ("Yes, the Institute offers free flu
    vaccinations") when the excerpts do not hold it. An answer naming a name or number the excerpts
    lack, or whose content words are mostly not in them, is replaced (``retrieval.answer_check``);
    refusals and ``min_share`` None pass unchanged.
    """
    from domainkd.data.grounding import answer_supported
    from domainkd.evaluation.refusal import is_refusal

    if min_share is None or not excerpts or is_refusal(answer):
        return answer
    source = "\n".join(f"{chunk.title}\n{chunk.text}" for chunk in excerpts)
    return answer if answer_supported(answer, source, min_share) else refusal_text


def source_prompt(question: str, source_text: str, refusal_text: str) -> str:
    """The user turn of the oracle system that reads the question's own source document."""
    return (
        f"Source text:\n{source_text}\n\nAnswer the question in one sentence using only the text above. "
        f"If the text does not answer it, reply exactly: {refusal_text}\n\nQuestion: {question}"
    )


def gold_excerpts(example: Example, chunks: list[Chunk]) -> list[Chunk]:
    """The chunks of an in-scope question's source document; the most word-overlapping chunk otherwise."""
    own = [chunk for chunk in chunks if chunk.document == example.get("source")]
    if own:
        return own
    question_words = content_words(example["question"])
    return [max(chunks, key=lambda chunk: len(question_words & content_words(chunk.text)))]


def context_for(example: Example, chunks: list[Chunk]) -> str:
    """Gold source text for an in-scope question; the most word-overlapping chunk otherwise."""
    return "\n\n".join(chunk.text for chunk in gold_excerpts(example, chunks))


def sources_by_name(chunks: list[Chunk]) -> dict[str, str]:
    """Source document name -> its text (its chunks joined), for the prompts and the report's per-example table."""
    texts: dict[str, list[str]] = {}
    for chunk in chunks:
        texts.setdefault(chunk.document, []).append(chunk.text)
    return {name: "\n\n".join(parts) for name, parts in texts.items()}
