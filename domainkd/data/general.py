"""General domain adaptation: a broad instruction set written by the teacher from the domain text.

The first source paper's large "general" set (~15,000 lines). For each chunk the teacher writes
instructions of several kinds (explain, summarise, compare, list steps, define a term, give an
example), one call per instruction so a one-shot example can fix its kind; then it follows
each instruction with the chunk as its only context. Grounding checks drop instructions that
invent names or repeat another one, and answers whose names or numbers are not in the chunk.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from domainkd.config import StrictModel
from domainkd.data import grounding, prompts
from domainkd.data.strategies import Plan, StrategyContext, StrategyOutput, register_strategy
from domainkd.sources import Chunk, Sources

MIN_SUPPORT = 0.5
"""Least share of an answer's content words that must occur in its chunk (explanations add connecting words)."""
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S")


class GeneralParams(StrictModel):
    """Parameters of the general strategy."""

    instructions_per_chunk: int = Field(3, ge=1, le=len(prompts.INSTRUCTION_KINDS))
    """Instructions the teacher writes about each chunk, each of another kind (kinds rotate across chunks)."""
    kinds: list[str] = Field(default_factory=lambda: list(prompts.INSTRUCTION_KINDS), min_length=1)
    """Instruction kinds to use, from explain, summarise, compare, steps, define, example."""
    max_examples: int | None = Field(None, ge=1)
    """Ask for at most this many instructions, every chunk's first before any chunk's second (None: all)."""
    answer_tokens: int = Field(256, ge=16)
    """Most new tokens of each answer; an answer cut off at this limit is dropped."""

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        unknown = [kind for kind in kinds if kind not in prompts.INSTRUCTION_KINDS]
        if unknown:
            known = ", ".join(prompts.INSTRUCTION_KINDS)
            raise ValueError(f"unknown instruction kind {unknown[0]!r}; choose from {known}")
        return list(dict.fromkeys(kinds))


def _requests(chunks: list[Chunk], params: GeneralParams) -> list[tuple[Chunk, str]]:
    """(chunk, kind) to ask for; chunk ``i`` gets kinds ``i*n .. i*n+n-1`` (mod the kinds), slot-major."""
    kinds = params.kinds
    count = min(params.instructions_per_chunk, len(kinds))
    requests = [
        (chunk, kinds[(index * count + slot) % len(kinds)])
        for slot in range(count)
        for index, chunk in enumerate(chunks)
    ]
    return requests[: params.max_examples]


def _source(chunk: Chunk) -> str:
    return f"{chunk.title}\n{chunk.text}"


def _unsupported_term(text: str, source: str) -> str | None:
    """A name or number of ``text`` that ``source`` lacks, or None.

    Terms are taken line by line without list markers: a list line has no full stop to end its
    sentence, and "2." numbers a step rather than stating a fact.
    """
    terms = {term for line in prompts.parse_lines(text) for term in grounding.key_terms(line)}
    invented = terms - set(grounding.words(source)) - grounding.key_terms(source)
    return sorted(invented)[0] if invented else None


def _copies_example(text: str, source: str) -> bool:
    """Whether ``text`` borrows a distinctive word of the one-shot example that ``source`` lacks."""
    return bool((set(grounding.words(text)) & prompts.EXAMPLE_TEXT_WORDS) - set(grounding.words(source)))


def check_instruction(instruction: str, chunk: Chunk) -> str | None:
    """Why a teacher-written instruction is unusable, or None."""
    if not 3 <= len(instruction.split()) <= 40:
        return "instruction length out of range"
    if _copies_example(instruction, _source(chunk)):
        return "instruction copies the prompt's example"
    term = _unsupported_term(instruction, _source(chunk))
    return f"instruction mentions {term!r}, which is not in the source" if term else None


def check_instructed_answer(answer: str, chunk: Chunk) -> str | None:
    """Why an answer to an instruction is unusable, or None: it must be complete and grounded in the chunk."""
    if len(answer.split()) < 2:
        return "answer empty or too short"
    last_line = answer.splitlines()[-1]
    if not answer.endswith((".", "!", "?", ")", '"')) and not _LIST_ITEM.match(last_line):
        return "answer cut off"
    source = _source(chunk)
    if _copies_example(answer, source):
        return "answer copies the prompt's example"
    term = _unsupported_term(answer, source)
    if term:
        return f"answer states {term!r}, which is not in the source"
    content = grounding.content_words(answer)
    if content and len(content & set(grounding.words(source))) / len(content) < MIN_SUPPORT:
        return "answer mostly unsupported by the source"
    return None


@register_strategy("general")
class General:
    Params = GeneralParams

    def plan(self, sources: Sources, params: GeneralParams) -> Plan:
        requests = len(_requests(sources.chunks, params))
        return Plan(
            teacher_calls=2 * requests,
            examples=requests,
            what=f"{requests} teacher-written instructions ({', '.join(params.kinds)}) about "
            f"{len(sources.chunks)} chunks, each answered from its chunk",
        )

    def build(self, context: StrategyContext, params: GeneralParams) -> StrategyOutput:
        output = StrategyOutput()
        requests = _requests(context.chunks, params)
        conversations = [prompts.instruction_conversation(chunk.title, chunk.text, kind) for chunk, kind in requests]
        replies = context.ask(conversations, "teacher: instructions", max_new_tokens=64)
        kept = self._keep_instructions(requests, replies, output)
        conversations = [
            prompts.instructed_answer_conversation(chunk.title, chunk.text, instruction, kind)
            for chunk, kind, instruction in kept
        ]
        answers = context.ask(conversations, "teacher: instructed answers", max_new_tokens=params.answer_tokens)
        for (chunk, kind, instruction), reply in zip(kept, answers):
            base = _base(chunk, kind)
            answer = _clean_answer(reply)
            reason = "teacher request failed" if not reply else check_instructed_answer(answer, chunk)
            if reason:
                output.rejected.append({**base, "question": instruction, "teacher_reply": reply, "reason": reason})
            else:
                output.examples.append({**base, "question": instruction, "answer": answer})
        return output

    @staticmethod
    def _keep_instructions(
        requests: list[tuple[Chunk, str]], replies: list[str], output: StrategyOutput
    ) -> list[tuple[Chunk, str, str]]:
        """(chunk, kind, instruction) for each usable, not yet seen instruction; the rest go to ``output.rejected``."""
        kept, seen = [], set()
        for (chunk, kind), reply in zip(requests, replies):
            instruction = prompts.parse_line(reply, "instruction")
            reason = "teacher request failed" if not reply else check_instruction(instruction, chunk)
            if reason is None and grounding.normalise(instruction) in seen:
                reason = "duplicate instruction"
            if reason:
                output.rejected.append({**_base(chunk, kind), "teacher_reply": reply, "reason": reason})
                continue
            seen.add(grounding.normalise(instruction))
            kept.append((chunk, kind, instruction))
        return kept


def _clean_answer(reply: str) -> str:
    """The reply without surrounding blank space or a leading "Answer:" label."""
    answer = reply.strip()
    return answer[len("answer:") :].strip() if answer.lower().startswith("answer:") else answer


def _base(chunk: Chunk, kind: str) -> dict[str, str]:
    return {
        "strategy": "general",
        "variant": kind,
        "document": chunk.document,
        "chunk_id": chunk.chunk_id,
        "title": chunk.title,
    }
