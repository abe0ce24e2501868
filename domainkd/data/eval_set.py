"""Held-out questions the teacher writes when the config names no ``eval.questions`` file.

A user with only documents still gets a fair test. The facts are chosen (``eval.writing.seed``)
before any training example is built, one per chunk until every chunk has one; for each the teacher
writes a question in a style no training prompt uses (a person asking about their own situation),
and the reference answer is the fact sentence itself. The key facts scored by ``fact_accuracy`` are
the fact's names, numbers and dates the question does not already hold. Out-of-scope questions are
teacher-written questions on a chunk's topic that no chunk answers (checked by word overlap and a
yes/no question to the teacher, as for the refusal strategy), then general off-topic ones.

Training examples too close to any of these questions are dropped by ``teach``
(``eval.contamination_similarity``). Everything lands in ``eval.jsonl`` in the run directory,
each row marked ``"written_by": "teacher"``, for the user to review and edit: a file that is
already there is kept as it is.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from typing import Any

from domainkd.config import RunConfig
from domainkd.data import grounding, prompts
from domainkd.data.grounding import words
from domainkd.data.refusal import ANSWERED_OVERLAP, source_vocabularies, unanswerable_questions
from domainkd.data.strategies import AskTeacher
from domainkd.sources import Chunk, Sources, split_facts

WRITTEN_BY = "teacher"
"""The ``written_by`` mark of every row this module writes; reports name such sets teacher-written."""

MAX_SPANS = 3
"""Facts with more names and numbers than this are not asked about: one question rarely needs them all."""

COPY_SIMILARITY = 0.7
"""A question sharing this share of its content words with its fact copies the fact's wording."""

COMMON_SHARE = 0.1
"""A name or number in more than this share of the chunks (and in at least 3) tells no fact apart ("License" in
a licence, "Institute" in a handbook): it is not a key fact, and a fact needs another one to be asked about."""

_SENTENCE = re.compile(r"^[A-Z0-9\"'(\[]")
_RULE = re.compile(r"[-=_*#~]{3,}")

GENERAL = [
    "What is the boiling point of water at sea level in Fahrenheit?",
    "Who composed the Four Seasons?",
    "How many moons does Mars have?",
    "What is the best way to store fresh basil?",
    "Which ocean lies between Africa and Australia?",
    "How do I reset a forgotten Wi-Fi router password?",
    "In what year did the first human land on the Moon?",
    "What is the plural of cactus?",
]
"""Off-topic held-out questions, none of them in the refusal strategy's training list."""


ROUNDS = 3
"""Rounds of requests for in-scope questions; each asks about half as many facts again as are still missing."""


def plan_calls(sources: Sources, config: RunConfig) -> int:
    """The most teacher requests :func:`write_eval_set` sends for these sources (a question and a check per fact)."""
    candidates = _candidate_facts(sources.chunks, _common_spans(sources.chunks), config.eval.writing.seed)
    asked = min(len(candidates), ROUNDS * _asked(config.eval.writing.in_scope))
    return 2 * asked + 2 * min(len(sources.chunks), _teacher_out_of_scope(config))


def write_eval_set(config: RunConfig, sources: Sources, ask: AskTeacher) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(held-out questions, rejected candidates with a ``reason``) for the run's chunks; nothing is written here."""
    writing = config.eval.writing
    rejected: list[dict[str, Any]] = []
    common = _common_spans(sources.chunks)
    candidates = _candidate_facts(sources.chunks, common, writing.seed)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(ROUNDS):
        if len(rows) >= writing.in_scope or not candidates:
            break
        asked = _asked(writing.in_scope - len(rows))
        batch, candidates = candidates[:asked], candidates[asked:]
        rows += _in_scope(config, batch, common, ask, seen, rejected)
    rows = rows[: writing.in_scope]
    rows += _out_of_scope(config, sources, ask, seen, rejected)
    for number, row in enumerate(rows, start=1):
        row["id"] = f"{'w' if row['scope'] == 'in' else 'o'}{number:03d}"
    return rows, rejected


def _asked(missing: int) -> int:
    """Facts to ask about for ``missing`` questions: half as many again, for the questions the checks drop."""
    return math.ceil(1.5 * missing)


def _in_scope(
    config: RunConfig, candidates: list[tuple[Chunk, str]], common: set[str], ask: AskTeacher, seen: set[str],
    rejected: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Held-out questions on ``candidates`` (chunk, fact) that pass the checks, the teacher's yes/no one last."""
    conversations = [prompts.eval_question_conversation(chunk.title, fact, config.domain) for chunk, fact in candidates]
    replies = ask(conversations, "teacher: held-out questions", max_new_tokens=64) if conversations else []
    rows: list[dict[str, Any]] = []
    for (chunk, fact), reply in zip(candidates, replies):
        question = _question_of(reply)
        facts = [span for span in _telling_spans(fact, common) if not set(words(span)) <= set(words(question))]
        reason = _check_question(question, fact, chunk, facts, reply) or ("duplicate question" if grounding.normalise(question) in seen else None)
        if reason:
            rejected.append(_rejected(chunk, question, reply, reason))
            continue
        seen.add(grounding.normalise(question))
        rows.append({
            "question": question, "answer": fact, "facts": facts, "source": chunk.document, "chunk_id": chunk.chunk_id,
            "scope": "in", "category": "teacher-written", "written_by": WRITTEN_BY,
        })
    return _answered_by_their_fact(rows, ask, rejected)


def _question_of(reply: str) -> str:
    """The question of a reply: its lines, without the ``Question:`` label, up to the first that ends with "?"
    (small teachers put the situation on one line and the question on the next)."""
    lines = prompts.parse_lines(reply)
    if not lines:
        return ""
    lines[0] = prompts.parse_line(lines[0], "question")
    kept = []
    for line in lines:
        kept.append(line)
        if line.endswith("?"):
            break
    return " ".join(kept)


def _teacher_out_of_scope(config: RunConfig) -> int:
    """Out-of-scope questions asked of the teacher; a third of them (rounded down) are general ones instead."""
    wanted = config.eval.writing.out_of_scope
    return wanted - min(wanted // 3, len(GENERAL))


def _common_spans(chunks: list[Chunk]) -> set[str]:
    """Lower-cased names and numbers found in more than COMMON_SHARE of the chunks (and in at least 3)."""
    counts = Counter(span.lower() for chunk in chunks for span in set(grounding.key_spans(chunk.text)))
    return {span for span, count in counts.items() if count >= 3 and count > COMMON_SHARE * len(chunks)}


def _telling_spans(fact: str, common: set[str]) -> list[str]:
    """The fact's names, numbers and dates that are not common to the documents."""
    return [span for span in grounding.key_spans(fact) if span.lower() not in common]


def _whole_sentence(fact: str) -> bool:
    """Whether ``fact`` reads as a sentence or list item: it opens like one, is 6 to 60 words, holds no rule line
    (a plain-text heading's underline) and was not cut by a chunk boundary."""
    return bool(_SENTENCE.match(fact)) and 6 <= len(fact.split()) <= 60 and not _RULE.search(fact)


def _candidate_facts(chunks: list[Chunk], common: set[str], seed: int) -> list[tuple[Chunk, str]]:
    """(chunk, fact) of whole sentences with 1 to MAX_SPANS telling names or numbers (not in ``common``), every
    chunk's first before any chunk's second."""
    rng = random.Random(seed)
    per_chunk = []
    for chunk in chunks:
        facts = [
            fact for fact in split_facts(chunk.text)
            if _whole_sentence(fact) and 1 <= len(_telling_spans(fact, common)) <= MAX_SPANS
        ]
        rng.shuffle(facts)
        per_chunk.append((chunk, facts))
    rng.shuffle(per_chunk)
    deepest = max((len(facts) for _, facts in per_chunk), default=0)
    return [(chunk, facts[depth]) for depth in range(deepest) for chunk, facts in per_chunk if depth < len(facts)]


def _check_question(question: str, fact: str, chunk: Chunk, facts: list[str], reply: str) -> str | None:
    """Why a teacher-written held-out question is unusable, or None."""
    if not reply:
        return "teacher request failed"
    reason = grounding.check_question(question, f"{chunk.title}\n{chunk.text}")
    if reason:
        return reason
    if (set(words(question)) & prompts.EXAMPLE_TEXT_WORDS) - set(words(f"{chunk.title}\n{chunk.text}")):
        return "question copies the prompt's example"
    if not facts:
        return "question holds every name and number of its fact (nothing left to answer)"
    if grounding.similarity(question, fact) >= COPY_SIMILARITY:
        return "question copies the fact's wording"
    return None


def _answered_by_their_fact(
    rows: list[dict[str, Any]], ask: AskTeacher, rejected: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The questions the teacher, asked yes/no, says their fact sentence answers (a vague question is dropped)."""
    checks = [prompts.answered_conversation(row["answer"], row["question"]) for row in rows]
    verdicts = ask(checks, "teacher: held-out question checks", max_new_tokens=4) if checks else []
    kept = []
    for row, verdict in zip(rows, verdicts):
        if prompts.parse_yes_no(verdict) is True:
            kept.append(row)
        else:
            rejected.append({
                "strategy": "eval", "document": row["source"], "chunk_id": row["chunk_id"], "question": row["question"],
                "teacher_reply": verdict, "reason": "teacher does not say the fact answers it",
            })
    return kept


def _out_of_scope(
    config: RunConfig, sources: Sources, ask: AskTeacher, seen: set[str], rejected: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Teacher-written questions no chunk answers, then general ones, up to ``eval.writing.out_of_scope``."""
    wanted = config.eval.writing.out_of_scope
    chunks = list(sources.chunks)
    random.Random(config.eval.writing.seed).shuffle(chunks)
    chunks = chunks[: _teacher_out_of_scope(config)]
    requests = [(chunk, prompts.eval_unanswerable_conversation(chunk.title, chunk.text, config.domain)) for chunk in chunks]
    vocabularies = source_vocabularies(sources)
    kept, dropped = unanswerable_questions(
        ask, vocabularies, requests, "teacher: held-out out-of-scope questions", seen, ANSWERED_OVERLAP, verify=True
    )
    rejected += [_rejected(*entry) for entry in dropped]
    rows = [_out_row(question, config.refusal_text, chunk.document) for question, chunk in kept]
    vocabulary = {word for _, chunk_words in vocabularies for word in chunk_words}
    for question in GENERAL:
        if len(rows) >= wanted:
            break
        if grounding.content_words(question) & vocabulary:
            rejected.append({"strategy": "eval", "question": question, "reason": "documents use a word of this general question"})
        else:
            rows.append(_out_row(question, config.refusal_text, None))
    return rows[:wanted]


def _out_row(question: str, refusal_text: str, topic_document: str | None) -> dict[str, Any]:
    return {
        "question": question, "answer": refusal_text, "facts": [], "source": None, "topic_document": topic_document,
        "scope": "out", "category": "teacher-written" if topic_document else "general", "written_by": WRITTEN_BY,
    }


def _rejected(chunk: Chunk, question: str, reply: str, reason: str) -> dict[str, str]:
    return {
        "strategy": "eval", "document": chunk.document, "chunk_id": chunk.chunk_id, "question": question,
        "teacher_reply": reply, "reason": reason,
    }
