"""Prompts the teacher sees. One-shot examples fix the output format for small teachers.

Prompts name the documents and who asks about them from the config's ``domain`` section and
nothing else. The example facts are invented and deliberately unlike any real documents; outputs that copy
their specifics fail the grounding checks because those specifics are not in the source.
"""

from __future__ import annotations

from domainkd.config import DomainConfig
from domainkd.teachers.base import Messages

ANY_DOMAIN = DomainConfig()
"""The domain of a config that names none: "the documents", asked about by "readers"."""


def qa_system(domain: DomainConfig) -> str:
    """The question writer's system message, naming the domain's documents and who asks about them."""
    return (
        f"You write quiz questions for {domain.askers} about facts in {domain.documents}. "
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
    # From here on each style asks from another angle (Physics of LMs 3.1: one phrasing per fact is
    # memorised but not extractable; several angles and both directions make it extractable).
    "reverse": (
        "Question: Who may open the rooftop hives on Block Q between 10:15 and 14:40?\n"
        "Answer: Volunteers may open them at those times, wearing a veil."
    ),
    "detail": (
        "Question: What must volunteers wear when they open the hives on Block Q?\n"
        "Answer: Volunteers must wear a veil when they open the Block Q rooftop hives."
    ),
    "scenario": (
        "Question: It is 15:00 and I am a volunteer on Block Q; can I still open the rooftop hives?\n"
        "Answer: No, volunteers may open the rooftop hives on Block Q only between 10:15 and 14:40."
    ),
    "short": (
        "Question: Block Q rooftop hives: opening hours?\n"
        "Answer: Between 10:15 and 14:40, for volunteers wearing a veil."
    ),
    "formal": (
        "Question: What is the permitted access window for volunteers at the Block Q apiary?\n"
        "Answer: Volunteers are permitted to open the Block Q rooftop hives from 10:15 to 14:40."
    ),
}
REVERSE_STYLES = frozenset({"reverse", "detail"})
"""Styles whose question may hold every specific of the fact: their answer must add a word of the fact instead."""

def paraphrase_system(domain: DomainConfig) -> str:
    """The rewording system message: the question as one of the domain's askers would put it."""
    return (
        f"Rewrite the question the way one of the {domain.askers} would ask a colleague: in the first person, "
        f"with everyday words instead of the terms of {domain.documents} and a different sentence structure. "
        "Keep names, numbers and codes. Do not answer."
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
    "rooftop roof hive hives beehive beehives apiary volunteer volunteers volunteering veil block glaze pottery kiln printer 3d "
    "10:15 14:40 15:00".split()
)
"""Distinctive words of the one-shot examples; an output that adds one copied the example."""


def few_shot(system: str, examples: list[tuple[str, str]], user: str) -> Messages:
    """A system prompt, worked (request, reply) examples as earlier turns, then the request itself."""
    messages: Messages = [{"role": "system", "content": system}]
    for example_request, example_reply in examples:
        messages += [{"role": "user", "content": example_request}, {"role": "assistant", "content": example_reply}]
    return messages + [{"role": "user", "content": user}]


def qa_conversation(title: str, fact: str, style: str = "quiz", domain: DomainConfig = ANY_DOMAIN) -> Messages:
    """Ask for one question/answer pair about ``fact`` from the section ``title``, in a ``QA_STYLES`` style."""
    return few_shot(qa_system(domain), [(_QA_EXAMPLE_USER, QA_STYLES[style])], f"Section: {title}\nFact: {fact}")


def paraphrase_conversation(question: str, variant: int, domain: DomainConfig = ANY_DOMAIN) -> Messages:
    """Ask for one rewording of ``question``; ``variant`` picks the one-shot example."""
    example = PARAPHRASE_EXAMPLES[variant % len(PARAPHRASE_EXAMPLES)]
    return few_shot(paraphrase_system(domain), [example], question)


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


def parse_line(text: str, label: str = "") -> str:
    """The first line of a one-line reply, without list markers, quotes or a leading ``label:``."""
    line = (parse_lines(text) or [""])[0].strip("*").strip()
    if label and line.lower().startswith(label.lower() + ":"):
        line = line[len(label) + 1 :].strip().strip("*").strip().strip('"').strip()
    return line


def parse_yes_no(text: str) -> bool | None:
    """True for a reply opening with "yes", False for "no", None for anything else."""
    first = (text.strip().split() or [""])[0].strip(".,!*\"'").lower()
    return {"yes": True, "no": False}.get(first)


# --- Shared one-shot text for the strategies below: invented, like the example above, and
# rich enough for every instruction kind (a rule, a reason, a contrast, a term, a procedure).
EXAMPLE_SECTION = "Rooftop beehives"
EXAMPLE_TEXT = (
    "Volunteers may open the rooftop hives on Block Q between 10:15 and 14:40 and must wear a veil, "
    "because the bees defend the hive when it is opened. The hives on Block R are opened by the keeper alone. "
    "A frame is a wooden rack that holds the comb. To harvest honey, smoke the hive, lift the frames, "
    "then scrape the comb into a pail."
)
EXAMPLE_TEXT_WORDS = EXAMPLE_WORDS | frozenset(
    "bee bees honey frame frames comb pail smoke keeper wooden rack jars".split()
)
"""Distinctive words of :data:`EXAMPLE_TEXT` and the examples built on it."""


# --- general: the teacher writes an instruction of one kind about a chunk, then follows it.
INSTRUCTION_SYSTEM = (
    "You write one instruction a reader could give about the text, of the asked kind. "
    "Reply with the instruction only, on one line. Do not answer it."
)
INSTRUCTED_ANSWER_SYSTEM = (
    "Follow the instruction using only facts from the text. Keep names, numbers and codes exactly as written. "
    "Reply with the answer only, in at most five sentences."
)
# kind -> (what the instruction asks for, example instruction, example answer). A one-shot
# example per kind is what makes a small teacher write that kind rather than one favourite.
INSTRUCTION_KINDS = {
    "explain": (
        "an explanation of why or how something is done",
        "Explain why volunteers must wear a veil at the rooftop hives.",
        "Volunteers must wear a veil because the bees defend the hive when it is opened.",
    ),
    "summarise": (
        "a short summary",
        "Summarise the rules for the rooftop hives.",
        "Volunteers may open the Block Q hives between 10:15 and 14:40 wearing a veil, while only the keeper "
        "opens the Block R hives. Honey is harvested by smoking the hive, lifting the frames and scraping the "
        "comb into a pail.",
    ),
    "compare": (
        "a comparison of two things in the text",
        "Compare who may open the hives on Block Q and on Block R.",
        "Volunteers may open the hives on Block Q between 10:15 and 14:40, while the hives on Block R are "
        "opened by the keeper alone.",
    ),
    "steps": (
        "the steps of a procedure, as a numbered list",
        "List the steps for harvesting honey from a rooftop hive.",
        "1. Smoke the hive.\n2. Lift the frames.\n3. Scrape the comb into a pail.",
    ),
    "define": (
        "the definition of a term used in the text",
        "Define the term frame as it is used for the rooftop hives.",
        "A frame is a wooden rack that holds the comb.",
    ),
    "example": (
        "a concrete example of a rule in the text",
        "Give an example of when volunteers may open a hive on Block Q.",
        "For example, volunteers wearing a veil may open a hive on Block Q at 10:15.",
    ),
}


def instruction_conversation(title: str, text: str, kind: str) -> Messages:
    """Ask for one instruction of ``kind`` (a key of :data:`INSTRUCTION_KINDS`) about a section's text."""
    asks_for, example_instruction, _ = INSTRUCTION_KINDS[kind]
    example = (f"Section: {EXAMPLE_SECTION}\nText: {EXAMPLE_TEXT}\nKind: {asks_for}", example_instruction)
    return few_shot(INSTRUCTION_SYSTEM, [example], f"Section: {title}\nText: {text}\nKind: {asks_for}")


def instructed_answer_conversation(title: str, text: str, instruction: str, kind: str) -> Messages:
    """Ask the teacher to follow ``instruction`` with the section's text as its only source."""
    _, example_instruction, example_answer = INSTRUCTION_KINDS[kind]
    example = (f"Section: {EXAMPLE_SECTION}\nText: {EXAMPLE_TEXT}\nInstruction: {example_instruction}", example_answer)
    return few_shot(INSTRUCTED_ANSWER_SYSTEM, [example], f"Section: {title}\nText: {text}\nInstruction: {instruction}")


# --- unstructured: a passage rewritten as one explanatory paragraph.
PASSAGE_REWRITE_SYSTEM = (
    "Rewrite the text as one clear explanatory paragraph for a newcomer. Keep every name, number and code "
    "exactly as written. Add no facts. Reply with the paragraph only."
)
_PASSAGE_EXAMPLE = (
    "- Block Q hives: volunteers, 10:15 to 14:40, veil required\n- Block R hives: keeper only",
    "Volunteers may open the hives on Block Q between 10:15 and 14:40 and must wear a veil there, "
    "while the hives on Block R are opened only by the keeper.",
)


def passage_rewrite_conversation(passage: str) -> Messages:
    """Ask for ``passage`` rewritten as one explanatory paragraph with the same names and numbers."""
    return few_shot(PASSAGE_REWRITE_SYSTEM, [_PASSAGE_EXAMPLE], passage)


# --- structured: a templated question about a record reworded, with a one-sentence answer.
VERBALISE_SYSTEM = (
    "Reword the template question the way a person would naturally ask it, then answer it in one sentence "
    "using the fact. Reply in exactly two lines: 'Question: ...' then 'Answer: ...'."
)
_VERBALISE_EXAMPLE = (
    "Fact: The opening time of Block Q hives is 10:15.\nTemplate: What is the opening time of Block Q hives?",
    "Question: When do the Block Q hives open?\nAnswer: The Block Q hives open at 10:15.",
)


def verbalise_conversation(fact: str, template_question: str) -> Messages:
    """Ask for a natural wording of ``template_question`` and a one-sentence answer stating ``fact``."""
    return few_shot(VERBALISE_SYSTEM, [_VERBALISE_EXAMPLE], f"Fact: {fact}\nTemplate: {template_question}")


# --- qa_set: a terse answer rewritten as one full sentence.
FULL_ANSWER_SYSTEM = (
    "Rewrite the short answer as one full sentence that answers the question. Keep its words, names and "
    "numbers. Add nothing else. Reply with the sentence only."
)
_FULL_ANSWER_EXAMPLE = (
    "Question: When may volunteers open the Block Q hives?\nShort answer: 10:15 to 14:40",
    "Volunteers may open the Block Q hives from 10:15 to 14:40.",
)


def full_answer_conversation(question: str, answer: str) -> Messages:
    """Ask for the terse ``answer`` to ``question`` as one full sentence."""
    return few_shot(FULL_ANSWER_SYSTEM, [_FULL_ANSWER_EXAMPLE], f"Question: {question}\nShort answer: {answer}")


# --- refusal: in-domain questions a section does not answer, and a yes/no check of that.
UNANSWERABLE_SYSTEM = (
    "Write one question on the topic of the text that the text does NOT answer: something a reader might "
    "ask next. Reply with the question only, on one line."
)
# One example per variant: with greedy decoding, a different example is what makes the
# second and third questions about one section differ from the first.
UNANSWERABLE_EXAMPLES = [
    "How many jars of honey do the rooftop hives give each year?",
    "Who pays for a new veil if mine tears?",
    "What training must volunteers complete before opening the hives?",
]
ANSWERED_SYSTEM = "Say whether the text answers the question. Reply with one word: yes or no."
_ANSWERED_EXAMPLES = [
    ("When may volunteers open the Block Q hives?", "yes"),
    (UNANSWERABLE_EXAMPLES[0], "no"),
]


def unanswerable_conversation(title: str, text: str, variant: int) -> Messages:
    """Ask for one on-topic question that the section's text does not answer; ``variant`` picks the example."""
    example_question = UNANSWERABLE_EXAMPLES[variant % len(UNANSWERABLE_EXAMPLES)]
    example = (f"Section: {EXAMPLE_SECTION}\nText: {EXAMPLE_TEXT}", example_question)
    return few_shot(UNANSWERABLE_SYSTEM, [example], f"Section: {title}\nText: {text}")


def answered_conversation(text: str, question: str) -> Messages:
    """Ask whether ``text`` answers ``question`` (reply "yes" or "no"; read it with :func:`parse_yes_no`)."""
    examples = [(f"Text: {EXAMPLE_TEXT}\nQuestion: {asked}", verdict) for asked, verdict in _ANSWERED_EXAMPLES]
    return few_shot(ANSWERED_SYSTEM, examples, f"Text: {text}\nQuestion: {question}")


# --- held-out questions (``eval.questions`` unset): asked the way a user would ask, in a wording no
# training prompt uses, so a student that only memorised its training questions does not pass.
def eval_question_system(domain: DomainConfig) -> str:
    """The held-out question writer's system message."""
    return (
        f"You write one question that one of the {domain.askers} might ask about {domain.documents}, whose answer "
        "is the given fact. Put it in your own words, as that person would ask about their own situation, not in "
        "the fact's wording. Do not include the answer. Reply with the question only, on one line."
    )


_EVAL_QUESTION_EXAMPLE = (
    _QA_EXAMPLE_USER,
    "Question: I'm helping out with the bees on Block Q this afternoon; until what time am I still allowed to open them?",
)


def eval_question_conversation(title: str, fact: str, domain: DomainConfig = ANY_DOMAIN) -> Messages:
    """Ask for one held-out question whose answer is ``fact`` (read it with ``parse_line(reply, "question")``)."""
    return few_shot(eval_question_system(domain), [_EVAL_QUESTION_EXAMPLE], f"Section: {title}\nFact: {fact}")


def eval_unanswerable_system(domain: DomainConfig) -> str:
    """The system message for held-out questions the documents do not answer."""
    return (
        f"Write one question one of the {domain.askers} might ask on the topic of the text that the text does NOT "
        "answer: a detail it leaves out. Reply with the question only, on one line."
    )


_EVAL_UNANSWERABLE_EXAMPLE = "Is there a waiting list for volunteers who want their own hive?"


def eval_unanswerable_conversation(title: str, text: str, domain: DomainConfig = ANY_DOMAIN) -> Messages:
    """Ask for one held-out question on the section's topic that its text does not answer."""
    example = (f"Section: {EXAMPLE_SECTION}\nText: {EXAMPLE_TEXT}", _EVAL_UNANSWERABLE_EXAMPLE)
    return few_shot(eval_unanswerable_system(domain), [example], f"Section: {title}\nText: {text}")
