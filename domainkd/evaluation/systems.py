"""System registry: who answers the evaluation questions, and with what in the prompt.

Every system sees the run's system prompt; only ``teacher_with_context`` also gets the
source text (the gold section for in-scope questions, the most similar chunk for the others,
so that refusing is still a decision it has to make).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from domainkd.data.grounding import content_words
from domainkd.models import chat_messages
from domainkd.sources import Chunk

Example = dict[str, Any]


@dataclass(frozen=True)
class System:
    """One way of answering."""

    description: str
    model: Callable[[Any, Any], str]
    """(RunConfig, RunPaths) -> model reference."""
    with_context: bool = False


SYSTEMS: dict[str, System] = {
    "base_student": System("the student before training", lambda config, paths: config.student.model),
    "student": System("the student after training", lambda config, paths: str(paths.model)),
    "teacher_closed_book": System("the teacher without the documents", lambda config, paths: config.teacher.model),
    "teacher_with_context": System(
        "the teacher reading the source section", lambda config, paths: config.teacher.model, with_context=True
    ),
}


def conversation(system: System, example: Example, system_prompt: str, refusal_text: str, chunks: list[Chunk]) -> list[dict[str, str]]:
    """The messages one system sees for one evaluation question."""
    if not system.with_context:
        return chat_messages(system_prompt, example["question"])
    context = context_for(example, chunks)
    user = (
        f"Handbook text:\n{context}\n\nAnswer the question in one sentence using only the text above. "
        f"If the text does not answer it, reply exactly: {refusal_text}\n\nQuestion: {example['question']}"
    )
    return chat_messages(system_prompt, user)


def excerpt_prompt(question: str, excerpts: Sequence[Chunk], refusal_text: str) -> str:
    """The user turn of a retrieval-augmented answer: numbered excerpts with their sources, then the question."""
    blocks = [f"[{number}] {chunk.document} - {chunk.title}\n{chunk.text.strip()}" for number, chunk in enumerate(excerpts, 1)]
    return (
        "Document excerpts:\n" + "\n\n".join(blocks) + "\n\nAnswer the question in one sentence using only the "
        f"excerpts above. If they do not answer it, reply exactly: {refusal_text}\n\nQuestion: {question}"
    )


def context_for(example: Example, chunks: list[Chunk]) -> str:
    """Gold source text for an in-scope question; the most word-overlapping chunk otherwise."""
    gold = sources_by_name(chunks).get(example.get("source") or "")
    if gold:
        return gold
    question_words = content_words(example["question"])
    best = max(chunks, key=lambda chunk: len(question_words & content_words(chunk.text)))
    return best.text


def sources_by_name(chunks: list[Chunk]) -> dict[str, str]:
    """Source document name -> its text (its chunks joined), for the prompts and the report's per-example table."""
    texts: dict[str, list[str]] = {}
    for chunk in chunks:
        texts.setdefault(chunk.document, []).append(chunk.text)
    return {name: "\n\n".join(parts) for name, parts in texts.items()}
