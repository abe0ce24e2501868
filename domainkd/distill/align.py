"""Token alignment across tokenizers, for the cross-tokenizer KD baselines (MinED, ULD).

When teacher and student tokenize differently (Qwen2.5 teacher, SmolLM2 student), the same
answer text becomes two token sequences of different lengths and ids. Two questions follow:

- which student position should learn from which teacher position: :func:`align_tokens`,
  the tokens of both sides that start at the same place in the text (so both distributions
  condition on the same prefix);
- which student token stands for a teacher token: :class:`VocabularyMap`, the student token
  whose text is closest by edit distance (MinED's map).

Both work on surface bytes or texts (:func:`token_bytes`, :func:`token_texts`), in which the
tokenizers' own spellings of spaces and bytes (GPT-2's ``Ġ``/``Ċ`` byte stand-ins,
sentencepiece's ``▁``) are undone.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from functools import cache

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

_SENTENCEPIECE_SPACE = "\u2581"  # '▁'
_SENTENCEPIECE_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # byte-fallback tokens such as <0x0A>


# --- token texts ------------------------------------------------------------------------


@cache
def _byte_stand_ins() -> dict[int, str]:
    """GPT-2's ``bytes_to_unicode`` as a ``str.translate`` table: stand-in code point → the byte as a char.

    Byte-level BPE spells byte ``b`` with a printable character: itself for the printable
    Latin-1 bytes, ``chr(256 + n)`` for the others in order (space → ``Ġ``, newline → ``Ċ``).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    table = {byte: chr(byte) for byte in printable}
    table.update({256 + n: chr(byte) for n, byte in enumerate(others)})
    return table


def _byte_level_bytes(token: str) -> bytes:
    """The bytes a byte-level BPE token stands for."""
    stand_ins = _byte_stand_ins()
    try:
        return token.translate(stand_ins).encode("latin-1")
    except UnicodeEncodeError:  # a character outside the stand-in alphabet: its own UTF-8 bytes
        return b"".join(
            stand_ins[ord(char)].encode("latin-1") if ord(char) in stand_ins else char.encode() for char in token
        )


def _sentencepiece_bytes(token: str) -> bytes:
    """The bytes of a sentencepiece-style token: ``▁`` is a space, ``<0xNN>`` a byte."""
    byte = _SENTENCEPIECE_BYTE.fullmatch(token)
    if byte:
        return bytes([int(byte.group(1), 16)])
    return token.replace(_SENTENCEPIECE_SPACE, " ").encode()


def _is_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer spells its tokens with GPT-2's byte stand-ins (SmolLM2, Qwen2.5, Llama 3)."""
    if hasattr(tokenizer, "byte_decoder"):  # slow GPT-2-style tokenizers
        return True
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = backend.decoder if backend is not None else None
    return decoder is not None and b'"ByteLevel"' in decoder.__getstate__()


def token_bytes(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[bytes]:
    """The bytes each token stands for, so that joined they are the decoded text's UTF-8.

    Byte-level BPE tokens (SmolLM2, Qwen2.5) are mapped back to their bytes (``Ġ`` is a
    space, ``Ċ`` a newline); sentencepiece's ``▁`` becomes a space and its ``<0xNN>`` byte
    tokens their byte. Added tokens (``<|im_end|>``) are their text as written; ids the
    tokenizer does not know are ``b""``.

    Args:
        tokenizer: a Hugging Face tokenizer.
        ids: ``(n,)`` token ids.

    Returns:
        ``n`` byte strings.
    """
    ids = [int(token_id) for token_id in ids]
    added = {token_id: token.content for token_id, token in tokenizer.added_tokens_decoder.items()}
    spell = _byte_level_bytes if _is_byte_level(tokenizer) else _sentencepiece_bytes
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return [added[token_id].encode() if token_id in added else spell(token or "") for token_id, token in zip(ids, tokens)]


def token_texts(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[str]:
    """Each token's surface text, as it reads in the decoded string (:func:`token_bytes`, decoded).

    A token holding only part of a multi-byte character reads ``�`` (one per broken
    sequence) instead of failing. Texts are taken token by token, so unlike
    ``tokenizer.decode`` no space is dropped or cleaned up.
    """
    return [piece.decode("utf-8", errors="replace") for piece in token_bytes(tokenizer, ids)]


# --- edit distances ---------------------------------------------------------------------


def _trim_common(a: str, b: str) -> tuple[str, str]:
    """``a`` and ``b`` without their common prefix and suffix (which cost nothing to edit)."""
    limit = min(len(a), len(b))
    start = 0
    while start < limit and a[start] == b[start]:
        start += 1
    end = 0
    while end < limit - start and a[-1 - end] == b[-1 - end]:
        end += 1
    return a[start : len(a) - end], b[start : len(b) - end]


def levenshtein(a: str, b: str, bound: int | None = None) -> int:
    """Character edit distance between ``a`` and ``b``: unit-cost insertions, deletions, substitutions.

    With ``bound``, the work stops as soon as the distance is sure to exceed ``bound``, and
    ``bound + 1`` is returned instead.
    """
    a, b = _trim_common(a, b)
    if len(a) < len(b):
        a, b = b, a
    if bound is not None and len(a) - len(b) > bound:
        return bound + 1
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        if bound is not None and min(current) > bound:  # a row's minimum never decreases further down
            return bound + 1
        previous = current
    return previous[-1]


def _nearest(text: str, candidates: list[tuple[int, str]]) -> int:
    """The id of the candidate ``(id, text)`` closest to ``text`` by edit distance, ties to the lower id."""
    # Near lengths first: an early close match bounds (and so cuts short) the later comparisons.
    candidates = sorted(candidates, key=lambda entry: (abs(len(entry[1]) - len(text)), entry[0]))
    best_distance, best_id = len(text) + max(len(entry[1]) for entry in candidates) + 1, -1
    for candidate_id, candidate_text in candidates:
        distance = levenshtein(text, candidate_text, bound=best_distance)
        if (distance, candidate_id) < (best_distance, best_id):
            best_distance, best_id = distance, candidate_id
    return best_id


# --- sequence alignment (MinED) ---------------------------------------------------------


_WHITESPACE = b" \t\n\r\x0b\x0c"


def align_tokens(student_pieces: Sequence[str | bytes], teacher_pieces: Sequence[str | bytes]) -> list[tuple[int, int]]:
    """Pair the tokens of two tokenizations of one text that start at the same place in it.

    A student position predicts its token from the text before it, and so does a teacher
    position: only where the two tokens start at the same place do the two distributions
    condition on the same prefix, and only then is the teacher's a target for the student's.
    FuseLLM's and DSKD's MinED instead pair tokens by a minimum edit distance between the two
    sequences (DTW), which pairs ``"7"`` with ``" 27"`` (``[" 2", "7"]`` against ``[" 27"]``) and
    the largest piece of a split word with the whole (``"believ"`` with ``"unbelievable"``):
    the student would learn the teacher's next token after a different prefix. Here a token
    pairs with the other side's token that starts at the same non-whitespace byte (so
    ``" hello"`` pairs with ``"hello"``) when one's text, leading whitespace aside, equals or
    begins the other's: the same token, or the first piece of a word the other side keeps
    whole. A token of whitespace only pairs with an identical one at the same place. The
    caller keeps a pair only where the teacher's token maps to the student's (see
    :class:`VocabularyMap`); every other position learns from its label alone. ``O(n + m)``.

    Args:
        student_pieces: ``n`` surface texts or bytes of the student's tokens (:func:`token_bytes`:
            bytes keep a character split across tokens at its true width).
        teacher_pieces: ``m`` of the teacher's, of the same kind.

    Returns:
        The pairs ``(student position, teacher position)``, strictly increasing in both.
    """
    student, teacher = _placed(student_pieces), _placed(teacher_pieces)
    at_start = {}  # (start, whitespace-only text, repeat) or (start,) → teacher position
    for j, (start, content, raw, repeat) in enumerate(teacher):
        at_start.setdefault((start, raw, repeat) if not content else (start,), j)
    pairs = []
    for i, (start, content, raw, repeat) in enumerate(student):
        j = at_start.get((start, raw, repeat) if not content else (start,))
        if j is None:
            continue
        other = teacher[j][1]
        if content == other or (content and other and (other.startswith(content) or content.startswith(other))):
            pairs.append((i, j))
    return pairs


def _placed(pieces: Sequence[str | bytes]) -> list[tuple[int, bytes, bytes, int]]:
    """Each token's (start among the text's non-whitespace bytes, text without leading whitespace,
    its whole text, how many whitespace-only tokens of that text came before it at that start)."""
    placed, start, repeats = [], 0, defaultdict(int)
    for piece in pieces:
        raw = piece.encode() if isinstance(piece, str) else bytes(piece)
        content = raw.lstrip(_WHITESPACE)
        repeat = 0
        if not content:
            repeat = repeats[start, raw]
            repeats[start, raw] += 1
        placed.append((start, content, raw, repeat))
        start += len(raw) - sum(raw.count(byte) for byte in _WHITESPACE)
    return placed


# --- vocabulary mapping -----------------------------------------------------------------


def _bucket(text: str) -> str:
    """The prefix a token is filed under: its first character, or two when that is a space."""
    return text[:2] if text.startswith(" ") else text[:1]


class VocabularyMap:
    """Teacher token ids → the student token id whose surface text is closest (MinED's vocabulary map).

    An exact text match wins (the lowest student id among equal texts). Otherwise the closest
    by :func:`levenshtein`, ties to the lower id, among a few candidates rather than the whole
    vocabulary: the student tokens of length within ±2 that share the text's first character
    (the space and the next character for a text starting with a space), those that share the
    first character after it (so ``".overlay"`` finds ``"overlay"``), and the student's first
    token when it tokenizes the text itself (a prefix of it; for a character the student spells
    in bytes, its first byte). Only texts with none of these (empty ones) go to the student's
    unknown token, or id 0 when it has none. Only ids actually asked for are mapped, once each
    (about a millisecond apiece), so a 150k-token teacher costs nothing up front.

    Args:
        student_tokenizer: the student's tokenizer; every id below ``len(student_tokenizer)``
            is a candidate.
        teacher_tokenizer: the teacher's tokenizer.
    """

    def __init__(self, student_tokenizer: PreTrainedTokenizerBase, teacher_tokenizer: PreTrainedTokenizerBase) -> None:
        self._student_tokenizer, self._teacher_tokenizer = student_tokenizer, teacher_tokenizer
        self._student_texts = token_texts(student_tokenizer, range(len(student_tokenizer)))
        self._student_ids: dict[str, int] = {}  # surface text → lowest student id
        self._buckets: dict[tuple[str, int], list[int]] = defaultdict(list)  # (prefix, length) → student ids
        for student_id, text in enumerate(self._student_texts):
            if text not in self._student_ids:
                self._student_ids[text] = student_id
                self._buckets[_bucket(text), len(text)].append(student_id)
        unknown = student_tokenizer.unk_token_id
        self._fallback_id = unknown if unknown is not None else 0
        self._mapped: dict[int, int] = {}  # teacher id → student id, filled on demand

    def _candidates(self, text: str) -> set[int]:
        """Student ids worth comparing with a teacher text that has no exact match."""
        lengths = range(len(text) - 2, len(text) + 3)
        candidates = {
            student_id
            for prefix in {_bucket(text), _bucket(text[1:])}
            for length in lengths
            for student_id in self._buckets.get((prefix, length), ())
        }
        return candidates | set(self._student_tokenizer.encode(text, add_special_tokens=False)[:1])

    def closest(self, text: str) -> int:
        """The student token id for a teacher token of surface text ``text``."""
        if text in self._student_ids:
            return self._student_ids[text]
        candidates = self._candidates(text)
        if not candidates:
            return self._fallback_id
        return _nearest(text, [(student_id, self._student_texts[student_id]) for student_id in candidates])

    def __call__(self, teacher_ids: Tensor) -> Tensor:
        """Map ``teacher_ids (...)`` to student ids ``(...)`` long, on the same device."""
        unique, inverse = torch.unique(teacher_ids, return_inverse=True)
        unique = unique.tolist()
        missing = [teacher_id for teacher_id in unique if teacher_id not in self._mapped]
        for teacher_id, text in zip(missing, token_texts(self._teacher_tokenizer, missing)):
            self._mapped[teacher_id] = self.closest(text)
        student_ids = torch.tensor([self._mapped[teacher_id] for teacher_id in unique], dtype=torch.long)
        return student_ids.to(teacher_ids.device)[inverse]
