"""Prompts the teacher sees. One-shot examples fix the output format for small teachers.

The example facts are invented and deliberately unlike any real handbook; outputs that copy
their specifics fail the grounding checks because those specifics are not in the source.
"""

from __future__ import annotations

from domainkd.teachers.base import Messages

QA_SYSTEM = (
    "You write quiz questions for employees about facts in their organisation's handbook. "
    "Reply in exactly two lines: 'Question: ...' then 'Answer: ...'. The answer is one short sentence."
)
_QA_EXAMPLE_USER = (
    "Section: Rooftop beehives\n"
    "Fact: Volunteers may open the rooftop hives on Block Q only between 10:15 and 14:40, wearing a veil."
)
# One example reply per question style. Asking for a question about the *fact* in another
# style gives differently-worded questions even from a 0.5B teacher, which mostly copies a
# question it is asked to reword. Users ask casually ("can I", "do I have to"); a student that
# saw only quiz-style questions treats casual ones as unknown.
QA_STYLES = {
    "quiz": (
        "Question: During which hours may volunteers open the rooftop hives on Block Q?\n"
        "Answer: Volunteers may open the rooftop hives on Block Q between 10:15 and 14:40."
    ),
    "casual": (
        "Question: I'm volunteering on Block Q; what time can I open the hives up on the roof?\n"
        "Answer: You can open the rooftop hives on Block Q between 10:15 and 14:40."
    ),
    "check": (
        "Question: Is there a time window for opening the beehives on the Block Q roof?\n"
        "Answer: Yes, volunteers may open them only between 10:15 and 14:40."
    ),
}

PARAPHRASE_SYSTEM = (
    "Rewrite the question the way an employee would ask a colleague: in the first person, with "
    "everyday words instead of the handbook's terms and a different sentence structure. Keep names, "
    "numbers and codes. Do not answer."
)
# One example per rewording variant: with greedy decoding, a different example is what makes
# the second and third rewordings differ from the first. Users ask casually ("can I", "do I
# have to"); a student that saw only quiz-style questions treats casual ones as unknown.
PARAPHRASE_EXAMPLES = [
    (
        "During which hours may volunteers open the rooftop hives on Block Q?",
        "When am I allowed to open the beehives up on the Block Q roof?",
    ),
    (
        "Which form is used to order spare glaze for the pottery kiln?",
        "If I run out of glaze for the kiln, what form do I fill in?",
    ),
    (
        "How many hours of notice are needed to reserve the 3D printer?",
        "How far ahead do I have to book the 3D printer?",
    ),
]
EXAMPLE_WORDS = frozenset(
    "rooftop roof hive hives beehive beehives volunteer volunteers volunteering veil block glaze pottery kiln printer 3d 10:15 14:40".split()
)
"""Distinctive words of the one-shot examples; an output that adds one copied the example."""


def qa_conversation(title: str, fact: str, style: str = "quiz") -> Messages:
    """Ask for one question/answer pair about ``fact`` from the section ``title``, in a ``QA_STYLES`` style."""
    return [
        {"role": "system", "content": QA_SYSTEM},
        {"role": "user", "content": _QA_EXAMPLE_USER},
        {"role": "assistant", "content": QA_STYLES[style]},
        {"role": "user", "content": f"Section: {title}\nFact: {fact}"},
    ]


def paraphrase_conversation(question: str, variant: int) -> Messages:
    """Ask for one rewording of ``question``; ``variant`` picks the one-shot example."""
    example_question, example_rewording = PARAPHRASE_EXAMPLES[variant % len(PARAPHRASE_EXAMPLES)]
    return [
        {"role": "system", "content": PARAPHRASE_SYSTEM},
        {"role": "user", "content": example_question},
        {"role": "assistant", "content": example_rewording},
        {"role": "user", "content": question},
    ]


def parse_qa(text: str) -> tuple[str, str] | None:
    """(question, answer) from a 'Question: ... / Answer: ...' reply, or None if it does not parse."""
    question = answer = None
    for line in text.splitlines():
        stripped = line.strip().strip("*").strip()
        lowered = stripped.lower()
        if lowered.startswith("question:") and question is None:
            question = stripped.split(":", 1)[1].strip().strip("*").strip()
        elif lowered.startswith("answer:") and answer is None and question is not None:
            answer = stripped.split(":", 1)[1].strip().strip("*").strip()
    if question and answer:
        return question, answer
    return None


def parse_lines(text: str) -> list[str]:
    """Non-empty lines with list markers and quotes removed."""
    import re

    lines = []
    for line in text.splitlines():
        cleaned = re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", line).strip().strip('"').strip()
        if cleaned:
            lines.append(cleaned)
    return lines
