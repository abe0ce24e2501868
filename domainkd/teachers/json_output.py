"""Read one JSON object out of a teacher's answer, repairing the usual slips of small models.

Repair policy, tried in order until the object parses: the answer as written; the inside of
its first Markdown code fence; typographic double quotes made straight; trailing commas
before ``}`` or ``]`` removed. In each form the first balanced ``{...}`` is taken, so prose
before or after the object does not matter.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_NO_OBJECT = "no '{' in the answer"
_SMART_DOUBLE_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"'})


def parse_json_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The first JSON object in ``text``, repaired if need be.

    Args:
        text: the teacher's answer.

    Returns:
        ``(object, None)`` on success, or ``(None, reason)`` with a short reason such as
        ``"no '{' in the answer"`` when no repair yields an object.
    """
    reason = _NO_OBJECT
    for candidate in _candidates(text):
        span, problem = first_balanced_object(candidate)
        if span is not None:
            parsed, problem = _loads_object(span)
            if parsed is not None:
                return parsed, None
        if problem != _NO_OBJECT:  # keep the reason from the latest form that had an object to parse
            reason = problem
    return None, reason


def first_balanced_object(text: str) -> tuple[str | None, str]:
    """The text of the first ``{...}`` whose braces balance (braces inside strings ignored), or why none."""
    start = text.find("{")
    if start < 0:
        return None, _NO_OBJECT
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(text)):
        character = text[index]
        if escaped:
            escaped = False
        elif in_string and character == "\\":
            escaped = True
        elif character == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif character in "{}":
            depth += 1 if character == "{" else -1
            if depth == 0:
                return text[start : index + 1], ""
    return None, "the object is cut off (its braces never close)"


def _candidates(text: str) -> list[str]:
    """Forms of the answer to try, least repaired first, without repeats."""
    fenced = _FENCE.search(text)
    bodies = [text] + ([fenced.group(1)] if fenced else [])
    forms = []
    for body in bodies:
        straight = body.translate(_SMART_DOUBLE_QUOTES)
        forms += [body, straight, _TRAILING_COMMA.sub(r"\1", straight)]
    return list(dict.fromkeys(forms))


def _loads_object(span: str) -> tuple[dict[str, Any] | None, str]:
    """Parse ``span`` (raw newlines inside strings allowed); a non-object value is a failure."""
    try:
        value = json.loads(span, strict=False)
    except json.JSONDecodeError as error:
        return None, f"{error.msg} at character {error.pos}"
    if not isinstance(value, dict):
        return None, f"expected an object, found {type(value).__name__}"
    return value, ""
