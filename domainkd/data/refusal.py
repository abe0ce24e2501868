"""Rejection data: questions outside the documents, answered with the refusal sentence.

Two kinds, both needed (trials here: obvious off-topic questions were refused after
training, but handbook-sounding ones got confident invented numbers):

* *plausible* questions about topics a policy handbook often has — each dropped when a word
  of its topic occurs in the user's documents (a refusal next to a real topic teaches the
  student to refuse real questions: trials here refused the mileage rate after training on
  "company car allowance");
* *general* off-topic questions.

Users can add their own out-of-scope questions from a text file (one per line).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from pydantic import Field

from domainkd.config import StrictModel
from domainkd.data.grounding import words
from domainkd.data.strategies import StrategyContext, StrategyOutput, register_strategy
from domainkd.errors import DomainKDError
from domainkd.sources import Chunk

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


class RefusalParams(StrictModel):
    """Parameters of the refusal strategy."""

    plausible: bool = True
    """Include handbook-sounding questions about topics the documents do not mention."""
    general: bool = True
    """Include general off-topic questions."""
    questions_file: Path | None = None
    """Extra out-of-scope questions, one per line (UTF-8 text)."""
    max_examples: int | None = Field(None, ge=1)
    """Keep at most this many, taken in turn from each kind (None: all). Too many refusals
    teach the student to refuse in-scope questions worded unlike its training questions."""


@register_strategy("refusal")
class Refusal:
    Params = RefusalParams

    def teacher_calls(self, chunks: list[Chunk], params: RefusalParams) -> int:
        return 0  # the target is the fixed refusal sentence

    def build(self, context: StrategyContext, params: RefusalParams) -> StrategyOutput:
        output = StrategyOutput()
        vocabulary = {word for chunk in context.chunks for word in words(chunk.text)}
        candidates: list[tuple[str, str]] = []
        if params.plausible:
            for question, topic in PLAUSIBLE:
                if any(_forms(word) & vocabulary for word in words(topic)):
                    output.rejected.append({"strategy": "refusal", "question": question, "reason": f"documents mention {topic!r}"})
                else:
                    candidates.append((question, "plausible"))
        if params.general:
            candidates += [(question, "general") for question in GENERAL]
        if params.questions_file is not None:
            candidates += [(question, "user") for question in _read_questions(params.questions_file)]
        output.examples = [
            {"strategy": "refusal", "question": q, "answer": context.refusal_text, "variant": kind, "document": None, "chunk_id": None}
            for q, kind in _take_in_turn(candidates, params.max_examples)
        ]
        return output


def _take_in_turn(candidates: list[tuple[str, str]], limit: int | None) -> list[tuple[str, str]]:
    """Up to ``limit`` candidates, alternating between kinds so each keeps its share."""
    by_kind: dict[str, list[tuple[str, str]]] = {}
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
