"""Cut sections into chunks that fit a prompt, and chunks into single facts."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from domainkd.sources.documents import Section

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9\"'(])")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
# A full stop after these ends a title or abbreviation, not a sentence ("the hydrologist Dr. Ana Reyes").
_ABBREVIATIONS = frozenset("dr prof mr mrs ms mx st no nos fig approx capt rev sr jr vs e.g i.e etc cf".split())


@dataclass(frozen=True)
class Chunk:
    """Up to ``chunk_words`` words of one section, with provenance."""

    chunk_id: str
    document: str
    title: str
    text: str
    start: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def chunk_sections(sections: list[Section], chunk_words: int, overlap_words: int) -> list[Chunk]:
    """Chunks in document order; a section no longer than ``chunk_words`` stays whole.

    Identical chunk texts (e.g. a boilerplate footer repeated across files) are kept once.
    """
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for section in sections:
        for index, text in enumerate(_windows(section.text, chunk_words, overlap_words)):
            key = " ".join(text.split()).lower()
            if key in seen:
                continue
            seen.add(key)
            chunks.append(Chunk(f"{section.document}#{section.start}-{index}", section.document, section.title, text, section.start))
    return chunks


def _windows(text: str, size: int, overlap: int) -> list[str]:
    lines = text.splitlines()
    words_per_line = [len(line.split()) for line in lines]
    if sum(words_per_line) <= size:
        return [text]
    windows, current, count = [], [], 0
    for line, words in zip(lines, words_per_line):
        if current and count + words > size:
            windows.append("\n".join(current).strip())
            current, count = _tail(current, overlap)
        current.append(line)
        count += words
    if current:
        windows.append("\n".join(current).strip())
    return [window for window in windows if window]


def _tail(lines: list[str], overlap: int) -> tuple[list[str], int]:
    """Trailing lines of a window holding about ``overlap`` words, to repeat in the next."""
    kept, count = [], 0
    for line in reversed(lines):
        if count >= overlap:
            break
        kept.insert(0, line)
        count += len(line.split())
    return kept, count


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
