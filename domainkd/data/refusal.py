"""Rejection data: questions outside the documents, answered with the refusal sentence.

Two kinds, both needed (trials here: obvious off-topic questions were refused after
training, but handbook-sounding ones got confident invented numbers):

* *plausible* questions in the voice of an employee about topics a policy handbook often
  has — each dropped when its topic phrase occurs in the user's documents;
* *general* off-topic questions.

Users can add their own out-of-scope questions from a text file (one per line).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from domainkd.config import StrictModel
from domainkd.data.grounding import normalise
from domainkd.data.strategies import StrategyContext, StrategyOutput, register_strategy
from domainkd.errors import DomainKDError
from domainkd.sources import Chunk

# (question, topic phrase that must not occur in the documents)
PLAUSIBLE = [
    ("How many days of jury service leave do we get?", "jury"),
    ("What is the monthly allowance for a company car?", "company car"),
    ("Who approves a bicycle leasing application?", "leasing"),
    ("When do stock options vest for new employees?", "stock option"),
    ("How much is the long-service award after ten years?", "long-service"),
    ("Which form do I use to claim dental insurance?", "dental"),
    ("How often are free eye tests offered to screen users?", "eye test"),
    ("What is the budget for language courses per employee?", "language course"),
    ("How much is the mobile phone allowance each month?", "phone allowance"),
    ("How many days of wedding leave can staff take?", "wedding"),
    ("How many volunteering days does each employee get per year?", "volunteer"),
    ("What is the referral bonus for recommending a new hire?", "referral"),
    ("How much are the lunch vouchers worth per day?", "voucher"),
    ("Does the organisation pay for public transport passes?", "transport pass"),
    ("What is the deadline to sign up for the summer party?", "party"),
    ("How many days of study leave are allowed before an exam?", "study leave"),
    ("Who do I contact about the employee share scheme?", "share scheme"),
    ("How many hours of blood donation leave are granted?", "blood donation"),
    ("What is the dress code for client meetings?", "dress code"),
    ("How much notice is needed to book the staff holiday cottage?", "cottage"),
    ("What is the maximum reimbursement for a home internet connection?", "internet connection"),
    ("Which room is the prayer room in?", "prayer"),
    ("How many days of moving-house leave do employees get?", "moving"),
    ("What is the bonus paid for working on a public holiday at night?", "night bonus"),
    ("Who signs off on a request for a standing desk?", "standing desk"),
    ("What discount do staff get at the partner fitness studio?", "fitness"),
    ("How long is the probation period for interns?", "intern"),
    ("What is the allowance for buying work shoes?", "shoe"),
    ("How many days of compassionate leave are given for a grandparent's funeral?", "funeral"),
    ("Which insurer covers staff travelling to the United States?", "united states"),
    ("What is the policy on using personal laptops for email?", "personal laptop"),
    ("How much is the annual bonus for the best team?", "best team"),
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


@register_strategy("refusal")
class Refusal:
    Params = RefusalParams

    def teacher_calls(self, chunks: list[Chunk], params: RefusalParams) -> int:
        return 0  # the target is the fixed refusal sentence

    def build(self, context: StrategyContext, params: RefusalParams) -> StrategyOutput:
        output = StrategyOutput()
        corpus = " " + normalise(" ".join(chunk.text for chunk in context.chunks)) + " "
        candidates: list[tuple[str, str]] = []
        if params.plausible:
            for question, topic in PLAUSIBLE:
                if f" {normalise(topic)}" in corpus:
                    output.rejected.append({"strategy": "refusal", "question": question, "reason": f"documents mention {topic!r}"})
                else:
                    candidates.append((question, "plausible"))
        if params.general:
            candidates += [(question, "general") for question in GENERAL]
        if params.questions_file is not None:
            candidates += [(question, "user") for question in _read_questions(params.questions_file)]
        output.examples = [
            {"strategy": "refusal", "question": q, "answer": context.refusal_text, "variant": kind, "document": None, "chunk_id": None}
            for q, kind in candidates
        ]
        return output


def _read_questions(path: Path) -> list[str]:
    if not path.is_file():
        raise DomainKDError(f"refusal questions file {path} does not exist; fix data.strategies.refusal.questions_file.")
    questions = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not questions:
        raise DomainKDError(f"refusal questions file {path} is empty; put one out-of-scope question per line.")
    return questions
