"""Context-aware synthetic QA, the first source paper's winning strategy.

For every fact (sentence or list item) of every chunk the teacher writes a question and a
one-sentence answer in each of ``questions_per_fact`` styles (``prompts.QA_STYLES``: quiz,
casual, yes/no check, then from other angles: the other direction, a secondary detail, a
situation, a terse query, formal wording), seeing the section title and the fact. Grounding
checks drop pairs whose specifics are not in the chunk. Each kept question can also be trained
with the source sentence itself as a second answer wording (``fact_answers``), and reworded by
the teacher. Several phrasings of one fact are what lets the student answer a question worded
in a way it never saw (Physics of LMs 3.1; here, held-out fact accuracy rose with the number of
styles: ``bench/specialist_quality.py``).
"""

from __future__ import annotations

from pydantic import Field

from domainkd.config import StrictModel
from domainkd.data import grounding, prompts
from domainkd.data.strategies import Plan, StrategyContext, StrategyOutput, register_strategy
from domainkd.sources import Chunk, Sources, split_facts


class ContextQAParams(StrictModel):
    """Parameters of the context_qa strategy."""

    max_facts_per_chunk: int | None = Field(None, ge=1)
    """Ask about at most this many facts per chunk (None: all of them)."""
    questions_per_fact: int = Field(2, ge=1, le=len(prompts.QA_STYLES))
    """Question/answer pairs the teacher writes per fact, each in another style of ``prompts.QA_STYLES``."""
    paraphrases_per_question: int = Field(0, ge=0, le=3)
    """Reworded copies the teacher writes of each kept question."""
    fact_answers: bool = False
    """Also train each kept question with its source sentence, as written, as the answer: a second wording of
    the answer that always states the fact in full (no teacher call)."""


def _facts(chunks: list[Chunk], limit: int | None) -> list[tuple[Chunk, str]]:
    return [(chunk, fact) for chunk in chunks for fact in split_facts(chunk.text)[:limit]]


def _copied_example(text: str, fact: str) -> bool:
    """Whether ``text`` borrows a distinctive word of the prompts' one-shot examples."""
    return bool((set(grounding.words(text)) & prompts.EXAMPLE_WORDS) - set(grounding.words(fact)))


@register_strategy("context_qa")
class ContextQA:
    Params = ContextQAParams

    def plan(self, sources: Sources, params: ContextQAParams) -> Plan:
        facts = len(_facts(sources.chunks, params.max_facts_per_chunk))
        pairs = facts * params.questions_per_fact
        return Plan(
            teacher_calls=pairs * (1 + params.paraphrases_per_question),
            examples=pairs * (1 + params.paraphrases_per_question + params.fact_answers),
            what=f"{params.questions_per_fact} grounded question/answer {'pair' if params.questions_per_fact == 1 else 'pairs'}"
            f" for each of {facts} facts"
            + (f", each question reworded {params.paraphrases_per_question}x" if params.paraphrases_per_question else ""),
        )

    def build(self, context: StrategyContext, params: ContextQAParams) -> StrategyOutput:
        output = StrategyOutput()
        facts = _facts(context.chunks, params.max_facts_per_chunk)
        styles = list(prompts.QA_STYLES)[: params.questions_per_fact]
        requests = [(chunk, fact, style) for chunk, fact in facts for style in styles]
        replies = context.ask([prompts.qa_conversation(c.title, fact, style, context.domain) for c, fact, style in requests], "teacher: questions")
        pairs = []
        asked: dict[str, set[str]] = {}  # per fact: normalised questions kept so far
        for (chunk, fact, style), reply in zip(requests, replies):
            base = {"strategy": "context_qa", "document": chunk.document, "chunk_id": chunk.chunk_id, "fact": fact}
            parsed = prompts.parse_qa(reply)
            if not reply:
                reason = "teacher request failed"
            else:
                reason = "reply did not parse as Question/Answer" if parsed is None else self._check(parsed, fact, chunk, style)
            seen = asked.setdefault(f"{chunk.chunk_id}\n{fact}", set())
            if reason is None and grounding.normalise(parsed[0]) in seen:
                reason = "question repeats another style's question"
            if reason:
                output.rejected.append({**base, "teacher_reply": reply, "reason": reason})
                continue
            seen.add(grounding.normalise(parsed[0]))
            pairs.append((base, *parsed))
            output.examples.append({**base, "question": parsed[0], "answer": parsed[1], "variant": style})
            if params.fact_answers and grounding.normalise(fact) != grounding.normalise(parsed[1]):
                output.examples.append({**base, "question": parsed[0], "answer": fact, "variant": f"{style}+fact"})
        if params.paraphrases_per_question:
            self._add_paraphrases(context, pairs, params.paraphrases_per_question, output)
        return output

    @staticmethod
    def _check(pair: tuple[str, str], fact: str, chunk: Chunk, style: str) -> str | None:
        question, answer = pair
        if _copied_example(question + " " + answer, fact):
            return "pair copies the prompt's example"
        reverse = style in prompts.REVERSE_STYLES
        source = f"{chunk.title}\n{chunk.text}"  # the teacher is shown the section's title too ("Section: MPL-2.0")
        return grounding.check_question(question, source) or grounding.check_answer(question, answer, fact, source, reverse=reverse)

    @staticmethod
    def _add_paraphrases(context: StrategyContext, pairs: list, count: int, output: StrategyOutput) -> None:
        requests = [(pair, variant) for pair in pairs for variant in range(count)]
        replies = context.ask([prompts.paraphrase_conversation(pair[1], variant, context.domain) for pair, variant in requests], "teacher: rewordings", max_new_tokens=40)
        kept: dict[str, set[str]] = {}
        for ((base, question, answer), _), reply in zip(requests, replies):
            candidate = (prompts.parse_lines(reply) or [""])[0]
            seen = kept.setdefault(question, {grounding.normalise(question)})
            reason = grounding.check_paraphrase(candidate, question, answer)
            if reason is None and _copied_example(candidate, base["fact"]):
                reason = "paraphrase copies the prompt's example"
            if reason is None and grounding.normalise(candidate) in seen:
                reason = "duplicate rewording"
            if reason:
                output.rejected.append({**base, "question": candidate, "reason": reason})
                continue
            seen.add(grounding.normalise(candidate))
            output.examples.append({**base, "question": candidate, "answer": answer, "variant": "paraphrase"})
