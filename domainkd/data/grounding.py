"""Cheap, deterministic checks that a teacher's question or answer is supported by its source.

Small teachers invent places, change numbers and answer questions they were asked to
reword; these checks drop such outputs and say why.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’&.:/,-]*[A-Za-z0-9]|[A-Za-z0-9]")
STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being do does did "
    "have has had i you he she it we they me my your our their its this that these those what which who whom "
    "whose when where why how can could may might must shall should will would not no yes there here than then "
    "so such any all each every some many much more most other into over under about after before up down out "
    "off again once also only just very per via please tell know need get i'm i've i'd i'll".split()
)


def _term(token: str) -> str:
    """Lower case, thousands separators and possessive endings removed."""
    token = token.lower().replace(",", "").replace("’", "'")
    return token[:-2] if token.endswith("'s") else token


def words(text: str) -> list[str]:
    """Lower-cased word tokens; numbers keep inner separators (``2,400``, ``09:45``, ``HR-22``)."""
    return [_term(token) for token in _WORD.findall(text)]


def key_terms(text: str, sentence_starts: bool = False) -> set[str]:
    """Checkable tokens: anything with a digit, and capitalised words not opening a sentence.

    With ``sentence_starts`` a capitalised first word counts too (short answers such as "Lyon").
    """
    terms: set[str] = set()
    for sentence in re.split(r"(?<=[.!?:;])\s+", text):
        tokens = _WORD.findall(sentence)
        for position, token in enumerate(tokens):
            has_digit = any(char.isdigit() for char in token)
            capitalised = (position > 0 or sentence_starts) and token[0].isupper() and token.lower() not in STOPWORDS
            if has_digit or capitalised:
                terms.add(_term(token).rstrip(".:"))
    return terms


def key_spans(text: str) -> list[str]:
    """The names, numbers and dates of ``text`` as written: runs of adjacent :func:`key_terms` tokens
    ("Tomas Brenner", "3 March 2026", "HR-22"), in order, each once."""
    spans: list[str] = []
    for sentence in re.split(r"(?<=[.!?:;])\s+", text):
        run: list[re.Match[str]] = []
        for position, match in enumerate([*_WORD.finditer(sentence), None]):
            token = match.group() if match else ""
            key = bool(token) and (
                any(char.isdigit() for char in token) or (position > 0 and token[0].isupper() and token.lower() not in STOPWORDS)
            )
            adjacent = bool(run) and key and not sentence[run[-1].end() : match.start()].strip()
            if run and not adjacent:
                span = sentence[run[0].start() : run[-1].end()].rstrip(".:,")
                if span not in spans:
                    spans.append(span)
                run = []
            if key:
                run.append(match)
    return spans


def similarity(first: str, second: str) -> float:
    """Jaccard overlap of the two texts' content words (0 when either has none)."""
    return jaccard(content_words(first), content_words(second))


def jaccard(first: set[str], second: set[str]) -> float:
    """Shared words over all words of two word sets (0 when either is empty)."""
    return len(first & second) / len(first | second) if first and second else 0.0


def content_words(text: str) -> set[str]:
    """Words that carry meaning (no stopwords, no one-letter tokens)."""
    return {word for word in words(text) if word not in STOPWORDS and len(word) > 1}


def check_question(question: str, source: str) -> str | None:
    """Why ``question`` is unusable, or None: it must be a question whose specifics are in ``source``."""
    if not question.endswith("?"):
        return "not a question"
    if not 4 <= len(question.split()) <= 40:
        return "question length out of range"
    invented = key_terms(question) - set(words(source)) - key_terms(source)
    if invented:
        return f"question mentions {sorted(invented)[0]!r}, which is not in the source"
    return None


def check_answer(question: str, answer: str, fact: str, source: str, reverse: bool = False) -> str | None:
    """Why ``answer`` is unusable, or None.

    The answer must be short, its specifics must appear in ``source``, most of its content
    words must too, and where ``fact`` holds specifics the answer must add one of them that
    the question did not already contain (it answers, rather than echoes, the question).
    With ``reverse`` (a question asked from the other side, holding the specifics: "who may open
    the hives between 10:15 and 14:40?") it must add a content word of ``fact`` instead.
    """
    if not answer or not 2 <= len(answer.split()) <= 60:
        return "answer empty or too long"
    source_words = set(words(source))
    invented = key_terms(answer) - source_words - key_terms(source)
    if invented:
        return f"answer states {sorted(invented)[0]!r}, which is not in the source"
    answer_content = content_words(answer)
    if answer_content and len(answer_content & source_words) / len(answer_content) < 0.6:
        return "answer mostly unsupported by the source"
    if reverse:
        if not (content_words(fact) & content_words(answer)) - set(words(question)):
            return "answer adds no word of the fact"
        return None
    fact_terms = key_terms(fact)
    if fact_terms and not (fact_terms & set(words(answer))) - set(words(question)):
        return "answer adds none of the fact's specifics"
    return None


def check_paraphrase(paraphrase: str, question: str, answer: str) -> str | None:
    """Why a reworded question is unusable, or None: a different question, same specifics, no answer."""
    if not paraphrase.endswith("?"):
        return "paraphrase is not a question"
    if normalise(paraphrase) == normalise(question):
        return "paraphrase repeats the question"
    if words(paraphrase)[-3:] == words(question)[-3:] and content_words(paraphrase) == content_words(question):
        return "paraphrase changes only small words"
    paraphrase_words = set(words(paraphrase))
    invented = key_terms(paraphrase) - set(words(question))
    if invented:
        return f"paraphrase adds {sorted(invented)[0]!r}"
    leaked = (key_terms(answer) - set(words(question))) & paraphrase_words
    if leaked:
        return "paraphrase contains the answer"
    if content_words(question) and not content_words(paraphrase) & content_words(question):
        return "paraphrase drifted from the question"
    return None


def normalise(text: str) -> str:
    """Lower-case words joined by single spaces (for duplicate and contamination checks)."""
    return " ".join(words(text))


def answer_supported(answer: str, source: str, min_share: float) -> bool:
    """Whether ``source`` backs ``answer``: every name and number of it occurs there, and ``min_share`` of its
    content words do (a word counts with or without a plural -s)."""
    source_words = set(words(source))
    if key_terms(answer) - source_words - key_terms(source):
        return False
    forms = {form for word in source_words for form in (word, word.removesuffix("s"), word + "s")}
    content = content_words(answer)
    return not content or sum(word in forms for word in content) >= min_share * len(content)
