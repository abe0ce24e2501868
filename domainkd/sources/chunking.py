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


TokenCounter = Callable[[list[str]], list[int]]
"""Tokens in each of a batch of texts (one call per batch, so a fast tokenizer's batch encoding does the work)."""



CHARS_PER_TOKEN_LIMIT = 64
"""No tokenizer in use puts more characters than this in one token, so a text of over
``chunk_tokens × CHARS_PER_TOKEN_LIMIT`` characters is cut without being counted whole
(counting a 5 MB line takes seconds, and it would be cut anyway)."""


def tokenizer_counter(tokenizer: Callable[..., dict]) -> TokenCounter:
    """A :data:`TokenCounter` from a Hugging Face tokenizer (special tokens not counted).

    A fast tokenizer is called through its Rust backend's batch encoding, which counts the
    same tokens as ``tokenizer(texts)`` at a third of the cost for many short texts.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        return lambda texts: [len(encoding.ids) for encoding in backend.encode_batch(texts, add_special_tokens=False)]
    return lambda texts: [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


_LINE = r"[^\n]+"
_SENTENCE = r"\S.*?(?:[.!?;](?=\s)|$)"
_WORD = r"\S+"


@dataclass(frozen=True)
class _Unit:
    """A line (or, for an over-long line, a sentence or word run) of a section, with offsets in it."""

    start: int
    end: int
    tokens: int


def chunk_sections(
    sections: list[Section], count_tokens: TokenCounter, chunk_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    """Chunks in document order; a section of at most ``chunk_tokens`` tokens stays whole.

    Windows end at line boundaries where possible (then sentence, then word boundaries) and
    repeat about ``overlap_tokens`` tokens of the previous window. Identical chunk texts
    (e.g. a boilerplate footer repeated across files) are kept once. The tokenizer is called
    a fixed number of times per section, each time on a batch, so the work is linear in the text.

    Args:
        sections: sections from :func:`read_documents`.
        count_tokens: tokens in each of a list of texts under the tokenizer that sizes the chunks.
        chunk_tokens: largest chunk.
        overlap_tokens: tokens repeated between consecutive windows of one section.
    """
    found: list[tuple[Section, int, int, int | None]] = []  # section, start, end, tokens (None: to count)
    seen: set[str] = set()
    total = sum(len(section.text) for section in sections)
    progress = tqdm(total=total, desc="chunking", unit="char", unit_scale=True, disable=total < PROGRESS_CHARS)
    longest = chunk_tokens * CHARS_PER_TOKEN_LIMIT
    countable = [section.text for section in sections if len(section.text) <= longest]
    whole = iter(count_tokens(countable) if countable else [])
    for section in sections:
        tokens = next(whole) if len(section.text) <= longest else chunk_tokens + 1
        if tokens <= chunk_tokens:
            windows = [(0, len(section.text), tokens)]
        else:
            units = _units(section.text, count_tokens, chunk_tokens)
            windows = [(start, end, None) for start, end in _windows(section.text, units, chunk_tokens, overlap_tokens)]
        progress.update(len(section.text))
        for start, end, tokens in windows:
            key = " ".join(section.text[start:end].split()).lower()
            if key not in seen:
                seen.add(key)
                found.append((section, start, end, tokens))
    progress.close()
    uncounted = [section.text[start:end] for section, start, end, tokens in found if tokens is None]
    counted = iter(count_tokens(uncounted) if uncounted else [])
    chunks = []
    for section, start, end, tokens in found:
        begin, finish = section.start + start, section.start + end
        chunk_id = f"{section.document}#{begin}-{finish}"
        tokens = next(counted) if tokens is None else tokens
        chunks.append(Chunk(chunk_id, section.document, section.title, section.text[start:end], begin, finish, tokens))
    return chunks


def _windows(text: str, units: list[_Unit], size: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of each window packing consecutive ``units`` of ``text`` up to ``size`` tokens.

    What joins two units (a space, or line breaks) is counted as a token per line break (at least
    one): tokenizers seldom merge across it, so the sum bounds the window's own count, which the
    caller then counts.
    """
    windows: list[tuple[int, int]] = []
    current: list[_Unit] = []
    held = 0  # tokens in current, joins included
    for unit in units:
        join = max(1, text.count("\n", current[-1].end, unit.start)) if current else 0
        if current and held + join + unit.tokens > size:
            windows.append((current[0].start, current[-1].end))
            current = _tail(text, current, unit, overlap, size)
            current.append(unit)
            held = _held(text, current)
            continue
        held += join + unit.tokens
        current.append(unit)
    if current:
        windows.append((current[0].start, current[-1].end))
    return windows


def _held(text: str, units: list[_Unit]) -> int:
    """Tokens of consecutive ``units``, a token per line break (at least one) joining them."""
    joins = sum(max(1, text.count("\n", a.end, b.start)) for a, b in zip(units, units[1:]))
    return sum(unit.tokens for unit in units) + joins


def _units(text: str, count_tokens: TokenCounter, size: int) -> list[_Unit]:
    """Non-blank lines in order; a line over ``size`` tokens is cut into sentences, a sentence over it into word runs.

    Each level is counted in one batch: all lines, then the sentences of every over-long line. A
    span of over ``size × CHARS_PER_TOKEN_LIMIT`` characters is taken as over ``size`` uncounted.
    """
    units: list[_Unit] = []
    too_long: list[tuple[int, int]] = []  # spans to cut into word runs
    spans = _spans(text, _LINE)
    longest = size * CHARS_PER_TOKEN_LIMIT
    for last_level in (False, True):
        split: list[tuple[int, int]] = []
        countable = [text[a:b] for a, b in spans if b - a <= longest]
        counts = iter(count_tokens(countable) if countable else [])
        for start, end in spans:
            tokens = next(counts) if end - start <= longest else size + 1
            if tokens <= size:
                units.append(_Unit(start, end, tokens))
                continue
            sentences = [] if last_level else [(start + a, start + b) for a, b in _spans(text[start:end], _SENTENCE)]
            if len(sentences) > 1:
                split += sentences
            else:
                too_long.append((start, end))
        spans = split
    units += _pack_words(text, too_long, count_tokens, size)
    return sorted(units, key=lambda unit: unit.start)


def _pack_words(text: str, spans: list[tuple[int, int]], count_tokens: TokenCounter, size: int) -> list[_Unit]:
    """Runs of whole words of at most ``size`` tokens covering each span (a lone longer word is its own run).

    Each distinct word is counted once with the space before it (one batch), runs are packed greedily on the
    sum of those counts, and every run is then counted as a whole (one batch): sub-word tokenizers
    seldom merge across a space, so the sums are nearly exact, and a run the sum underestimated is
    cut again on its true counts. Linear in the text, where re-counting a run after each added word
    was quadratic (a 4.9 MB line took minutes).
    """
    runs: list[list[tuple[int, int]]] = []  # each run: its words' (start, end)
    words = [[(start + a, start + b) for a, b in _spans(text[start:end], _WORD)] for start, end in spans]
    pieces = [text[(line[i - 1][1] if i else line[0][0]) : word[1]] for line in words for i, word in enumerate(line)]
    distinct = list(dict.fromkeys(pieces))  # text repeats its words: each distinct one is counted once
    counted = dict(zip(distinct, count_tokens(distinct) if distinct else []))
    estimates = iter([counted[piece] for piece in pieces])
    for line in words:
        run: list[tuple[int, int]] = []
        held = 0
        for word in line:
            tokens = next(estimates)
            if run and held + tokens > size:
                runs.append(run)
                run, held = [], 0
            run.append(word)
            held += tokens
        runs.append(run)
    counts = count_tokens([text[run[0][0] : run[-1][1]] for run in runs]) if runs else []
    units: list[_Unit] = []
    for run, tokens in zip(runs, counts):
        if tokens <= size or len(run) == 1:
            units.append(_Unit(run[0][0], run[-1][1], tokens))
            continue
        for drop in range(1, min(4, len(run))):  # most misses are a token or two: the run's first word, bare
            tokens = count_tokens([text[run[0][0] : run[-1 - drop][1]]])[0]
            if tokens <= size:
                units.append(_Unit(run[0][0], run[-1 - drop][1], tokens))
                units += _bisect_words(text, run[-drop:], count_tokens, size)
                break
        else:
            units += _bisect_words(text, run, count_tokens, size)
    return units


def _bisect_words(text: str, words: list[tuple[int, int]], count_tokens: TokenCounter, size: int) -> list[_Unit]:
    """Runs of at most ``size`` tokens over ``words``, each found by galloping then bisecting on true counts."""
    units: list[_Unit] = []
    first = 0
    while first < len(words):
        start = words[first][0]

        def tokens(last: int) -> int:  # tokens of the run words[first..last]
            return count_tokens([text[start : words[last][1]]])[0]

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


def _tail(text: str, units: list[_Unit], following: _Unit, overlap: int, size: int) -> list[_Unit]:
    """Trailing units of a window holding about ``overlap`` tokens, to repeat before ``following``
    (never so many that they and ``following`` exceed ``size``)."""
    kept: list[_Unit] = []
    for unit in reversed(units):
        if _held(text, kept) >= overlap or _held(text, [unit, *kept, following]) > size:
            break
        kept.insert(0, unit)
    return kept


def split_facts(text: str) -> list[str]:
    """Sentences and list items of a chunk; a list item carries its lead-in line for context.

    Lines of one paragraph or one list item are joined first, so a hard-wrapped plain-text
    paragraph gives whole sentences; a heading (``#``) or table row (``|``) line stands alone.
    """
    facts: list[str] = []
    lead_in = ""
    for block in re.split(r"\n\s*\n", text):
        pieces: list[tuple[bool, list[str]]] = []  # (is a list item, its lines)
        for line in block.splitlines():
            stripped = line.strip()
            if not stripped:
                continue
            if _BULLET.match(stripped):
                pieces.append((True, [_BULLET.sub("", stripped)]))
            elif pieces and not stripped.startswith(("#", "|")) and not pieces[-1][1][-1].startswith(("#", "|")):
                pieces[-1][1].append(stripped)  # a wrapped line continues its paragraph or item
            else:
                pieces.append((False, [stripped]))
        for is_item, lines in pieces:
            joined = " ".join(lines)
            if is_item:
                item = joined.rstrip(";,")
                facts.append(f"{lead_in} {item}".strip() if lead_in else item)
                continue
            sentences = _sentences(joined)
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
