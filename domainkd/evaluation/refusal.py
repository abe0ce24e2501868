"""Decide whether an answer is a refusal ("I don't know") rather than an attempt."""

from __future__ import annotations

import re

_REFUSAL_PATTERNS = [
    r"\bi (?:do not|don't|dont) know\b",
    r"\b(?:not|isn't|is not) (?:covered|mentioned|specified|stated|included|provided|addressed)\b",
    r"\b(?:does not|doesn't|do not|don't) (?:cover|mention|say|specify|contain|include|provide|address)\b",
    r"\bno (?:information|mention|details?)\b",
    r"\b(?:cannot|can't|can not|unable to|not able to) (?:find|answer|say|determine|help with)\b",
    r"\bi(?:'m| am) not sure\b",
    r"\bnot (?:in|part of) (?:the|my|our) (?:handbook|documents?|knowledge)\b",
]
_REFUSAL = re.compile("|".join(_REFUSAL_PATTERNS))


def is_refusal(answer: str) -> bool:
    """True when the answer declines to answer (checked on its first two sentences)."""
    text = answer.lower().replace("’", "'")
    head = " ".join(re.split(r"(?<=[.!?])\s+", text)[:2])
    return bool(_REFUSAL.search(head))
