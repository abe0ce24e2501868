"""Cut sections into token-sized chunks with overlap and character offsets, and chunks into single facts."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from tqdm.auto import tqdm

from domainkd.sources.documents import Section

PROGRESS_CHARS = 2_000_000
"""Documents of more characters than this show a progress bar while they are chunked."""

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9\"'(])")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
# A full stop after these ends a title or abbreviation, not a sentence ("the hydrologist Dr. Ana Reyes").
_ABBREVIATIONS = frozenset("dr prof mr mrs ms mx st no nos fig approx capt rev sr jr vs e.g i.e etc cf".split())


@dataclass(frozen=True)
class Chunk:
    """Up to ``chunk_tokens`` tokens of one section; ``text == document_text[start:end]``."""

    chunk_id: str
    document: str
    title: str
    text: str
    start: int
    end: int
    tokens: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class _Unit:
    """A line (or, for an over-long line, a sentence or word run) of a section, with offsets in it."""

    start: int
    end: int
    tokens: int


def chunk_sections(
    sections: list[Section], count_tokens: Callable[[str], int], chunk_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    """Chunks in document order; a section of at most ``chunk_tokens`` tokens stays whole.

    Windows end at line boundaries where possible (then sentence, then word boundaries) and
    repeat about ``overlap_tokens`` tokens of the previous window. Identical chunk texts
    (e.g. a boilerplate footer repeated across files) are kept once.

    Args:
        sections: sections from :func:`read_documents`.
        count_tokens: tokens in a text under the tokenizer that sizes the chunks.
        chunk_tokens: largest chunk.
        overlap_tokens: tokens repeated between consecutive windows of one section.
    """
    chunks: list[Chunk] = []
    seen: set[str] = set()
    total = sum(len(section.text) for section in sections)
    progress = tqdm(total=total, desc="chunking", unit="char", unit_scale=True, disable=total < PROGRESS_CHARS)
    for section in sections:
        for start, end, tokens in _windows(section.text, count_tokens, chunk_tokens, overlap_tokens, progress.update):
            text = section.text[start:end]
            key = " ".join(text.split()).lower()
            if key in seen:
                continue
            seen.add(key)
            begin, finish = section.start + start, section.start + end
            chunks.append(Chunk(f"{section.document}#{begin}-{finish}", section.document, section.title, text, begin, finish, tokens))
    progress.close()
    return chunks


def _windows(
    text: str, count_tokens: Callable[[str], int], size: int, overlap: int, advance: Callable[[int], object]
) -> list[tuple[int, int, int]]:
    """(start, end, tokens) of each window over ``text``; ``advance`` is told of each stretch of characters done."""
    total = count_tokens(text)
    if total <= size:
        advance(len(text))
        return [(0, len(text), total)]
    windows: list[tuple[int, int, int]] = []
    current: list[_Unit] = []
    held = 0  # tokens in current
    done = 0  # characters passed to advance
    for unit in _units(text, count_tokens, size):
        if current and held + unit.tokens > size:
            windows.append((current[0].start, current[-1].end, held))
            current = _tail(current, overlap, size - unit.tokens)
            held = sum(u.tokens for u in current)
        current.append(unit)
        held += unit.tokens
        advance(unit.end - done)
        done = unit.end
    if current:
        windows.append((current[0].start, current[-1].end, held))
    advance(len(text) - done)
    return windows


def _units(text: str, count_tokens: Callable[[str], int], size: int) -> list[_Unit]:
    """Non-blank lines; a line over ``size`` tokens is cut into sentences, a sentence over it into word runs."""
    units = []
    for line in _spans(text, r"[^\n]+"):
        units += _fit(text, line, count_tokens, size, [r"\S.*?(?:[.!?;](?=\s)|$)", r"\S+"])
    return units


def _fit(text: str, span: tuple[int, int], count_tokens: Callable[[str], int], size: int, patterns: list[str]) -> list[_Unit]:
    start, end = span
    piece = text[start:end]
    if not piece.strip():
        return []
    tokens = count_tokens(piece)
    if tokens <= size or not patterns:
        return [_Unit(start, end, tokens)]
    parts = [(start + a, start + b) for a, b in _spans(piece, patterns[0])]
    if len(parts) <= 1 and len(patterns) > 1:
        return _fit(text, span, count_tokens, size, patterns[1:])
    if patterns[0] == r"\S+":  # word runs: pack words greedily up to the limit
        return _pack_words(text, parts, count_tokens, size)
    return [unit for part in parts for unit in _fit(text, part, count_tokens, size, patterns[1:])]


def _pack_words(text: str, words: list[tuple[int, int]], count_tokens: Callable[[str], int], size: int) -> list[_Unit]:
    """Runs of whole words of at most ``size`` tokens (a lone longer word is its own run).

    Each run is found by galloping then bisecting over how many words it takes, so a run costs
    O(log size) counts of at most about ``size`` tokens: linear in the text, where adding one word
    at a time and re-counting the growing run was quadratic (a 4.9 MB line took minutes).
    """
    units: list[_Unit] = []
    first = 0
    while first < len(words):
        start = words[first][0]

        def tokens(last: int) -> int:  # tokens of the run words[first..last]
            return count_tokens(text[start : words[last][1]])

        fits, step = first, 1  # words[first..fits] fit (a single word always goes in)
        while fits + step < len(words) and tokens(fits + step) <= size:
            fits, step = fits + step, step * 2
        over = min(fits + step, len(words))  # the first count known not to fit, or past the end
        while over - fits > 1:
            middle = (fits + over) // 2
            if tokens(middle) <= size:
                fits = middle
            else:
                over = middle
        units.append(_Unit(start, words[fits][1], tokens(fits)))
        first = fits + 1
    return units


def _spans(text: str, pattern: str) -> list[tuple[int, int]]:
    return [match.span() for match in re.finditer(pattern, text) if match.group().strip()]


def _tail(units: list[_Unit], overlap: int, room: int) -> list[_Unit]:
    """Trailing units of a window holding about ``overlap`` tokens (never more than ``room``), to repeat."""
    kept: list[_Unit] = []
    count = 0
    for unit in reversed(units):
        if count >= overlap or count + unit.tokens > room:
            break
        kept.insert(0, unit)
        count += unit.tokens
    return kept


def split_facts(text: str) -> list[str]:
    """Sentences and list items of a chunk; a list item carries its lead-in line for context."""
    facts: list[str] = []
    lead_in = ""
    for block in re.split(r"\n\s*\n", text):
        for line in block.splitlines():
            stripped = line.strip()
            if not stripped:
                continue
            if _BULLET.match(stripped):
                item = _BULLET.sub("", stripped).rstrip(";,")
                facts.append(f"{lead_in} {item}".strip() if lead_in else item)
                continue
            sentences = _sentences(stripped)
            lead_in = sentences[-1].rstrip(":") + ":" if sentences and sentences[-1].endswith(":") else ""
            facts.extend(s for s in sentences if not s.endswith(":"))
    return [fact for fact in facts if len(fact.split()) >= 4]


def _sentences(line: str) -> list[str]:
    """Sentences of one line, not split after a title such as "Dr." or "Prof."."""
    sentences: list[str] = []
    for piece in (piece.strip() for piece in _SENTENCE_END.split(line)):
        if not piece:
            continue
        last_word = sentences[-1].rsplit(None, 1)[-1].lower().rstrip(".") if sentences else ""
        if last_word in _ABBREVIATIONS and sentences[-1].endswith("."):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences
