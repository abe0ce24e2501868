"""Rejection data: questions outside the documents, answered with the refusal sentence.

Two kinds, both needed (trials here: obvious off-topic questions were refused after
training, but handbook-sounding ones got confident invented numbers):

* *plausible* questions about topics a workplace policy handbook often has (off by default: they
  fit only documents about an organisation's staff rules) — each dropped when a word
  of its topic occurs in the user's documents (a refusal next to a real topic teaches the
  student to refuse real questions: trials here refused the mileage rate after training on
  "company car allowance");
* *general* off-topic questions;
* *unanswerable* in-domain questions (``unanswerable_per_chunk``): the teacher writes a question on
  a chunk's topic that the chunk does not answer. One whose content words mostly occur in any
  chunk or record is dropped (probably answered there), and optionally so is one the teacher,
  asked yes/no, says its chunk answers.

Users can add their own out-of-scope questions from a text file (one per line).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from pydantic import Field

from domainkd.config import StrictModel
from domainkd.data import grounding, prompts
from domainkd.data.grounding import words
from domainkd.data.strategies import AskTeacher, Plan, StrategyContext, StrategyOutput, register_strategy
from domainkd.errors import DomainKDError
from domainkd.sources import Chunk, Sources
from domainkd.teachers.base import Messages

Candidate = tuple[str, str, Chunk | None]
"""(question, kind, the chunk it is about or None)."""

# (question, topic word that must not occur in the documents). Half are worded like an
# employee chatting and half like a formal quiz question: if refusals all had one style and
# in-scope questions the other, the student would learn the style instead of the scope.
PLAUSIBLE = [
    ("How many days of jury service leave do we get?", "jury"),
    ("Who do I ask if I want to lease a bicycle through work?", "bicycle"),
    ("When do stock options vest for new employees?", "stock"),
    ("What do I get from the organisation after ten years of service?", "long-service"),
    ("Which form is used to claim dental insurance?", "dental"),
    ("I stare at screens all day; can I get a free eye test?", "eye"),
    ("What is the annual budget for language courses per employee?", "language"),
    ("Is there an allowance for my mobile phone bill?", "mobile"),
    ("What is the number of days of wedding leave granted to staff?", "wedding"),
    ("How many volunteering days can I take each year?", "volunteer"),
    ("What is the referral bonus for recommending a new hire?", "referral"),
    ("How much are the lunch vouchers worth per day?", "voucher"),
    ("Does the organisation pay for public transport passes?", "transport"),
    ("When's the deadline to sign up for the summer party?", "party"),
    ("What is the maximum study leave allowed before an exam?", "exam"),
    ("What is the amount of paid time off granted for donating blood?", "blood"),
    ("What should I wear when I meet clients?", "dress"),
    ("What is the notice period for booking the staff holiday cottage?", "cottage"),
    ("Can I claim my home internet connection as an expense?", "internet"),
    ("In which room is the prayer room located?", "prayer"),
    ("Do I get a day off when I move house?", "moving"),
    ("What is the night bonus rate for working on a public holiday?", "bonus"),
    ("What is the prize for winning the annual photo competition?", "competition"),
    ("How long is the probation period for an apprentice?", "apprentice"),
    ("My grandmother died; how many days of compassionate leave do I get?", "funeral"),
    ("Which insurer covers staff travelling to the United States?", "united"),
    ("What is the size of the annual bonus for the best team?", "bonus"),
]

GENERAL = [
    "What is the capital of Canada?",
    "How do I make pancakes?",
    "Who wrote the novel War and Peace?",
    "What is the square root of 144?",
    "How far is the Moon from the Earth?",
    "Which planet is the largest in the solar system?",
    "How do I sort a dictionary by value in Python?",
    "Who won the Tour de France in 1998?",
    "What is the chemical symbol for gold?",
    "How many strings does a standard guitar have?",
    "What language is spoken in Brazil?",
    "What is the tallest building in the world?",
    "How do you say thank you in Japanese?",
    "When did the Berlin Wall fall?",
    "What is the freezing point of water in Kelvin?",
    "Who painted the Mona Lisa?",
    "How many players are on a basketball team on court?",
    "What is the longest river in Africa?",
    "How do I change a flat bicycle tyre?",
    "What does HTTP stand for?",
]


ANSWERED_OVERLAP = 0.75
"""Default share of a teacher-written question's content words found in one chunk or record that means it may be
answered there."""

Dropped = tuple[Chunk, str, str, str]
"""(chunk, question, teacher reply, reason) of a teacher-written question the checks dropped."""


class RefusalParams(StrictModel):
    """Parameters of the refusal strategy."""

    plausible: bool = False
    """Include workplace-policy questions (jury leave, dental insurance, ...) about topics the documents do not
    mention; for documents about an organisation's staff rules, where such questions sound in scope."""
    general: bool = True
    """Include general off-topic questions."""
    questions_file: Path | None = None
    """Extra out-of-scope questions, one per line (UTF-8 text)."""
    max_examples: int | None = Field(None, ge=1)
    """Keep at most this many, taken in turn from each kind (None: all). Too many refusals
    teach the student to refuse in-scope questions worded unlike its training questions."""
    unanswerable_per_chunk: int = Field(0, ge=0, le=len(prompts.UNANSWERABLE_EXAMPLES))
    """In-domain questions the teacher writes about each chunk that the chunk does not answer (0: none)."""
    max_unanswerable: int | None = Field(None, ge=1)
    """Ask for at most this many, every chunk's first before any chunk's second (None: all)."""
    verify_unanswerable: bool = True
    """Also ask the teacher (yes/no) whether the chunk answers each one, and drop those it says it does."""
    answered_overlap: float = Field(ANSWERED_OVERLAP, gt=0, le=1)
    """Drop an unanswerable question when this share of its content words occurs in one chunk or record."""


@register_strategy("refusal")
class Refusal:
    Params = RefusalParams

    def plan(self, sources: Sources, params: RefusalParams) -> Plan:
        requests = len(_unanswerable_requests(sources.chunks, params))
        candidates = len(self._candidates(sources, params, StrategyOutput())) + requests
        count = min(candidates, params.max_examples or candidates)
        written = f" (up to {requests} teacher-written questions their chunk does not answer)" if requests else ""
        return Plan(
            teacher_calls=requests * (2 if params.verify_unanswerable else 1),
            examples=count,
            what=f"{count} out-of-scope questions{written} answered with the refusal sentence",
        )

    def build(self, context: StrategyContext, params: RefusalParams) -> StrategyOutput:
        output = StrategyOutput()
        candidates = self._candidates(context.sources, params, output)
        candidates += _unanswerable(context, params, {grounding.normalise(c[0]) for c in candidates}, output)
        output.examples = [
            {
                "strategy": "refusal",
                "question": question,
                "answer": context.refusal_text,
                "variant": kind,
                "document": chunk.document if chunk else None,
                "chunk_id": chunk.chunk_id if chunk else None,
            }
            for question, kind, chunk in _take_in_turn(candidates, params.max_examples)
        ]
        return output

    @staticmethod
    def _candidates(sources: Sources, params: RefusalParams, output: StrategyOutput) -> list[Candidate]:
        """The fixed candidates (no chunk); plausible questions whose topic the sources mention go to ``output.rejected``."""
        vocabulary = {word for chunk in sources.chunks for word in words(chunk.text)}
        vocabulary |= {word for record in sources.records for value in record.fields.values() for word in words(value)}
        candidates: list[Candidate] = []
        if params.plausible:
            for question, topic in PLAUSIBLE:
                if any(_forms(word) & vocabulary for word in words(topic)):
                    output.rejected.append({"strategy": "refusal", "question": question, "reason": f"documents mention {topic!r}"})
                else:
                    candidates.append((question, "plausible", None))
        if params.general:
            candidates += [(question, "general", None) for question in GENERAL]
        if params.questions_file is not None:
            candidates += [(question, "user", None) for question in _read_questions(params.questions_file)]
        return candidates


def _unanswerable_requests(chunks: list[Chunk], params: RefusalParams) -> list[tuple[Chunk, int]]:
    """(chunk, example variant) to ask for, slot-major so a cap spreads over the chunks."""
    requests = [(chunk, variant) for variant in range(params.unanswerable_per_chunk) for chunk in chunks]
    return requests[: params.max_unanswerable]


def _unanswerable(
    context: StrategyContext, params: RefusalParams, seen: set[str], output: StrategyOutput
) -> list[Candidate]:
    """Teacher-written questions their chunk does not answer that pass the checks.

    Questions in ``seen`` (normalised) are dropped as duplicates; every dropped one goes to ``output.rejected``.
    """
    requests = [
        (chunk, prompts.unanswerable_conversation(chunk.title, chunk.text, variant))
        for chunk, variant in _unanswerable_requests(context.chunks, params)
    ]
    vocabularies = source_vocabularies(context.sources)
    kept, dropped = unanswerable_questions(
        context.ask, vocabularies, requests, "teacher: unanswerable questions", seen, params.answered_overlap,
        params.verify_unanswerable,
    )
    output.rejected += [_rejected(*entry) for entry in dropped]
    return [(question, "unanswerable", chunk) for question, chunk in kept]


def unanswerable_questions(
    ask: AskTeacher, vocabularies: list[tuple[str, set[str]]], requests: list[tuple[Chunk, Messages]], label: str,
    seen: set[str], overlap: float, verify: bool,
) -> tuple[list[tuple[str, Chunk]], list[Dropped]]:
    """Ask the teacher for questions their chunk does not answer; return (question, chunk) of those that pass the
    checks and the dropped ones, in the order they were dropped.

    Args:
        ask: the run's ask-the-teacher function.
        vocabularies: every chunk's and record's words (:func:`source_vocabularies`), for :func:`check_unanswerable`.
        requests: (chunk, the conversation asking for a question about it that it does not answer).
        label: the progress label of the requests.
        seen: normalised questions already taken; a question in it is a duplicate, a kept one is added.
        overlap: ``answered_overlap`` of :func:`check_unanswerable`.
        verify: also ask the teacher (yes/no) whether the chunk answers each question, and drop those it says it does.
    """
    if not requests:
        return [], []
    replies = ask([conversation for _, conversation in requests], label, max_new_tokens=48)
    kept: list[tuple[str, Chunk]] = []
    dropped: list[Dropped] = []
    for (chunk, _), reply in zip(requests, replies):
        question = prompts.parse_line(reply, "question")
        reason = "teacher request failed"
        if reply:
            reason = check_unanswerable(question, chunk, vocabularies, overlap)
        if reason is None and grounding.normalise(question) in seen:
            reason = "duplicate question"
        if reason:
            dropped.append((chunk, question, reply, reason))
            continue
        seen.add(grounding.normalise(question))
        kept.append((question, chunk))
    if verify:
        kept = _not_answered(ask, kept, dropped)
    return kept, dropped


def source_vocabularies(sources: Sources) -> list[tuple[str, set[str]]]:
    """(chunk or record id, its words) for every chunk and record."""
    vocabularies = [(chunk.chunk_id, set(words(f"{chunk.title}\n{chunk.text}"))) for chunk in sources.chunks]
    for record in sources.records:
        text = " ".join(f"{name} {value}" for name, value in record.fields.items())
        vocabularies.append((record.record_id, set(words(text))))
    return vocabularies


def check_unanswerable(
    question: str, chunk: Chunk, vocabularies: list[tuple[str, set[str]]], overlap: float
) -> str | None:
    """Why a teacher-written question that ``chunk`` should not answer is unusable, or None.

    It must be a question on the chunk's topic (sharing a content word with it) whose content
    words do not mostly (``overlap`` or more) occur in any one chunk or record.
    """
    if not question.endswith("?"):
        return "not a question"
    if not 4 <= len(question.split()) <= 40:
        return "question length out of range"
    chunk_words = set(words(f"{chunk.title}\n{chunk.text}"))
    if (set(words(question)) & prompts.EXAMPLE_TEXT_WORDS) - chunk_words:
        return "question copies the prompt's example"
    content = grounding.content_words(question)
    if not any(_forms(word) & chunk_words for word in content):
        return "question is off the chunk's topic"
    for source_id, vocabulary in vocabularies:
        if sum(bool(_forms(word) & vocabulary) for word in content) >= overlap * len(content):
            return f"question may be answered by {source_id!r}"
    return None


def _not_answered(
    ask: AskTeacher, kept: list[tuple[str, Chunk]], dropped: list[Dropped]
) -> list[tuple[str, Chunk]]:
    """The questions the teacher, asked yes/no, says their chunk does not answer; the others go to ``dropped``."""
    conversations = [prompts.answered_conversation(chunk.text, question) for question, chunk in kept]
    replies = ask(conversations, "teacher: answered checks", max_new_tokens=4)
    survivors = []
    for (question, chunk), reply in zip(kept, replies):
        reason = _check_verdict(reply)
        if reason:
            dropped.append((chunk, question, reply, reason))
        else:
            survivors.append((question, chunk))
    return survivors


def _check_verdict(reply: str) -> str | None:
    """Why the yes/no check drops its question, or None when the teacher says the text does not answer it."""
    if not reply:
        return "teacher request failed"
    verdict = prompts.parse_yes_no(reply)
    if verdict is None:
        return "check reply was not yes or no"
    return "teacher says the text answers it" if verdict else None


def _rejected(chunk: Chunk, question: str, reply: str, reason: str) -> dict[str, str]:
    return {
        "strategy": "refusal",
        "variant": "unanswerable",
        "document": chunk.document,
        "chunk_id": chunk.chunk_id,
        "question": question,
        "teacher_reply": reply,
        "reason": reason,
    }


def _take_in_turn(candidates: list[Candidate], limit: int | None) -> list[Candidate]:
    """Up to ``limit`` candidates, alternating between kinds so each keeps its share."""
    by_kind: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        by_kind.setdefault(candidate[1], []).append(candidate)
    interleaved = [c for group in itertools.zip_longest(*by_kind.values()) for c in group if c is not None]
    return interleaved[:limit]


def _forms(word: str) -> set[str]:
    """The word with and without a plural -s."""
    return {word, word + "s", word.removesuffix("s")}


def _read_questions(path: Path) -> list[str]:
    if not path.is_file():
        raise DomainKDError(f"refusal questions file {path} does not exist; fix data.strategies.refusal.questions_file.")
    questions = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not questions:
        raise DomainKDError(f"refusal questions file {path} is empty; put one out-of-scope question per line.")
    return questions
