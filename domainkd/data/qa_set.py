"""Existing question/answer sets as training examples, terse answers optionally made full sentences.

A pair is used as given (variant ``given``). With ``rewrite_answers`` the teacher turns each
terse answer ("27 days") into one full sentence; the rewriting must keep every content word
of the original answer (and a yes/no), add no name or number, and stay one sentence, or the
given pair is kept instead. Full-sentence answers teach the student to answer in sentences
like the other strategies' examples do.
"""

from __future__ import annotations

import re

from pydantic import Field

from domainkd.config import StrictModel
from domainkd.data import grounding, prompts
from domainkd.data.strategies import Plan, StrategyContext, StrategyOutput, register_strategy
from domainkd.sources import QAPair, Sources


class QASetParams(StrictModel):
    """Parameters of the qa_set strategy."""

    max_examples: int | None = Field(None, ge=1)
    """Use at most this many pairs, in file order (None: all)."""
    rewrite_answers: bool = False
    """Have the teacher rewrite terse answers as one full sentence (variant ``rewritten``)."""
    terse_words: int = Field(5, ge=1)
    """An answer of at most this many words counts as terse."""


def _is_terse(pair: QAPair, params: QASetParams) -> bool:
    return params.rewrite_answers and len(pair.answer.split()) <= params.terse_words


def _forms(word: str) -> set[str]:
    """The word with and without a plural -s."""
    return {word, word + "s", word.removesuffix("s")}


def check_full_answer(rewrite: str, question: str, answer: str) -> str | None:
    """Why a full-sentence rewriting of the terse ``answer`` is unusable, or None."""
    if len(rewrite.split()) < 2:
        return "rewrite empty"
    if len(rewrite.split()) > 60 or len(re.split(r"(?<=[.!?])\s+", rewrite)) > 1:
        return "rewrite is not one sentence"
    rewrite_words, pair_words = set(grounding.words(rewrite)), set(grounding.words(f"{question} {answer}"))
    if (rewrite_words & prompts.EXAMPLE_TEXT_WORDS) - pair_words:
        return "rewrite copies the prompt's example"
    dropped = sorted(word for word in grounding.content_words(answer) if not _forms(word) & rewrite_words)
    if dropped:
        return f"rewrite drops {dropped[0]!r}"
    verdict = grounding.normalise(answer).split(" ")[0]
    if verdict in ("yes", "no") and grounding.normalise(rewrite).split(" ")[0] != verdict:
        return "rewrite changes the yes/no answer"
    invented = grounding.key_terms(rewrite) - pair_words - grounding.key_terms(f"{question} {answer}")
    if invented:
        return f"rewrite states {sorted(invented)[0]!r}, which is not in the pair"
    if grounding.normalise(rewrite) == grounding.normalise(answer):
        return "rewrite repeats the answer"
    return None


@register_strategy("qa_set")
class QASet:
    Params = QASetParams

    def plan(self, sources: Sources, params: QASetParams) -> Plan:
        pairs = sources.qa_pairs[: params.max_examples]
        rewrites = sum(_is_terse(pair, params) for pair in pairs)
        return Plan(
            teacher_calls=rewrites,
            examples=len(pairs),
            what=f"{len(pairs)} existing question/answer pairs"
            + (f", {rewrites} terse answers rewritten as full sentences" if params.rewrite_answers else ""),
        )

    def build(self, context: StrategyContext, params: QASetParams) -> StrategyOutput:
        output = StrategyOutput()
        pairs = context.sources.qa_pairs[: params.max_examples]
        terse = [pair for pair in pairs if _is_terse(pair, params)]
        conversations = [prompts.full_answer_conversation(pair.question, pair.answer) for pair in terse]
        replies = context.ask(conversations, "teacher: full answers", max_new_tokens=96) if terse else []
        reply_of = dict(zip((pair.pair_id for pair in terse), replies))
        for pair in pairs:
            given = _given(pair)
            if pair.pair_id not in reply_of:
                output.examples.append(given)
                continue
            reply = reply_of[pair.pair_id]
            rewrite = prompts.parse_line(reply, "answer")
            reason = "teacher request failed" if not reply else check_full_answer(rewrite, pair.question, pair.answer)
            if reason:
                output.rejected.append({**given, "variant": "rewritten", "answer": rewrite, "reason": reason})
                output.examples.append(given)
            else:
                rewritten = {**given, "variant": "rewritten", "answer": rewrite, "given_answer": pair.answer}
                output.examples.append(rewritten)
        return output


def _given(pair: QAPair) -> dict[str, object]:
    return {
        "strategy": "qa_set",
        "variant": "given",
        "question": pair.question,
        "answer": pair.answer,
        "document": pair.source,
        "chunk_id": pair.pair_id,
        "row": pair.row,
    }
