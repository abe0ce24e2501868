"""Multiple-choice evaluation in the TeleQnA format: read, subsample, score by log-likelihood or by parsing.

Two ways to ask a model a multiple-choice question:

* **log-likelihood** (lm-eval style): the option whose text the model finds most likely after
  the question wins (:func:`option_logliks`, then :func:`loglik_choice`);
* **generation**: the model answers freely and :func:`parse_option` reads which option it named.

Option numbers are 1-based in text ("option 2") and 0-based everywhere in code (``answer_index``).
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from domainkd.errors import DomainKDError
from domainkd.models import chat_messages, render_prompt

Example = dict[str, Any]
LogLik = tuple[float, int, int]
"""One option's (summed log-probability, token count, byte length)."""


@dataclass(frozen=True)
class MCQuestion:
    """One multiple-choice question."""

    id: str
    """Stable identifier ("question 17" in TeleQnA, the row's ``id`` or ``line<N>`` in JSONL)."""
    question: str
    """The question text alone, without the options."""
    options: tuple[str, ...]
    """Option texts in order (2 to 5 in TeleQnA)."""
    answer_index: int
    """0-based index of the correct option."""
    explanation: str = ""
    """Why the answer is right; the reference for generative metrics."""
    category: str = ""
    """Category used for stratified subsets (e.g. "Standards specifications")."""

    def as_example(self) -> Example:
        """The evaluation-example dict the rest of the suite reads.

        ``question`` is the prompt a generating system sees (numbered options and the request for an
        option number); ``stem`` keeps the bare question so :func:`mcq_question` can rebuild this object.
        """
        return {
            "id": self.id,
            "question": mcq_prompt(self),
            "stem": self.question,
            "answer": self.explanation,
            "options": list(self.options),
            "answer_index": self.answer_index,
            "category": self.category,
            "scope": "in",
        }


def mcq_question(example: Example) -> MCQuestion:
    """The multiple-choice question behind an evaluation example (inverse of :meth:`MCQuestion.as_example`)."""
    return MCQuestion(
        id=str(example["id"]),
        question=example.get("stem", example["question"]),
        options=tuple(example["options"]),
        answer_index=int(example["answer_index"]),
        explanation=example.get("answer") or "",
        category=example.get("category") or "",
    )


def numbered_question(question: MCQuestion) -> str:
    """The question text followed by one ``option N: text`` line per option."""
    lines = [f"option {number}: {text}" for number, text in enumerate(question.options, start=1)]
    return "\n".join([question.question, *lines])


def mcq_prompt(question: MCQuestion) -> str:
    """The user message asking for the number of the correct option."""
    return (
        f"{numbered_question(question)}\n\n"
        f"Answer with the number of the correct option (1 to {len(question.options)}), as in \"option 1\"."
    )


# --- reading --------------------------------------------------------------------------------------


def read_teleqna(path: str | Path) -> list[MCQuestion]:
    """Read questions from a TeleQnA JSON object (``.json`` or ``.json.gz``) or from JSON Lines rows.

    TeleQnA: ``{"question 0": {"question", "option 1".."option 5", "answer": "option 2: ...",
    "explanation", "category"}, ...}``. JSONL rows: ``question``, ``options`` (list),
    ``answer_index`` (0-based) or ``answer`` (``"option N: ..."`` or an option's text),
    optional ``id``, ``explanation``, ``category``.

    Raises:
        DomainKDError: missing or empty file, not JSON, or an entry with missing options or
            an answer that is not among its options (one sentence naming file, entry and fix).
    """
    path = Path(path)
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _check_unique([_from_row(path, entry, row) for entry, row in _jsonl_rows(path, text)], path)
    if isinstance(data, dict) and isinstance(data.get("question"), str):  # a one-line JSONL file
        return [_from_row(path, "line 1", data)]
    if isinstance(data, list):
        return _check_unique([_from_row(path, f"item {n}", row) for n, row in enumerate(data, start=1)], path)
    if not isinstance(data, dict):
        raise DomainKDError(f"{path} holds a JSON {type(data).__name__}; give a TeleQnA object or JSON Lines rows.")
    if not data:
        raise DomainKDError(f"{path} holds no questions; give a TeleQnA object with at least one question.")
    return [_from_teleqna_entry(path, str(key), entry) for key, entry in data.items()]


def _read_text(path: Path) -> str:
    """The file's text, un-gzipped when it starts with the gzip magic bytes."""
    if not path.is_file():
        raise DomainKDError(f"multiple-choice file {path} does not exist; check the path.")
    raw = path.read_bytes()
    try:
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DomainKDError(f"{path} is not readable UTF-8 (or gzip of it): {error}; re-export the file.") from error
    if not text.strip():
        raise DomainKDError(f"{path} is empty; give a TeleQnA JSON object or JSON Lines questions.")
    return text


def _jsonl_rows(path: Path, text: str) -> list[tuple[str, Any]]:
    """(entry name, parsed row) per non-blank line, or one sentence naming the first line that is not JSON."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as error:
            raise DomainKDError(
                f"{path} is neither a JSON object nor JSON Lines (line {number}: {error.msg}); fix that line."
            ) from error
    return rows


def _from_teleqna_entry(path: Path, key: str, entry: Any) -> MCQuestion:
    """One question from a TeleQnA ``"question N": {...}`` entry."""
    if not isinstance(entry, dict):
        raise DomainKDError(f"{path} entry {key!r} is not an object; give it 'question', 'option 1'.. and 'answer'.")
    return _question(path, key, key, entry, _numbered_options(path, key, entry))


def _numbered_options(path: Path, key: str, entry: dict) -> list[Any]:
    """The values of ``"option 1"``, ``"option 2"``, ... in order, refusing gaps."""
    options = []
    while f"option {len(options) + 1}" in entry:
        options.append(entry[f"option {len(options) + 1}"])
    stray = sorted(name for name in entry if re.fullmatch(r"option \d+", name) and int(name[7:]) > len(options))
    if stray:
        raise DomainKDError(
            f"{path} entry {key!r} has {stray[0]!r} without 'option {len(options) + 1}'; "
            "number its options from 1 without gaps."
        )
    return options


def _from_row(path: Path, entry: str, row: Any) -> MCQuestion:
    """One question from a JSONL row with an ``options`` list (or TeleQnA's ``"option N"`` keys)."""
    if not isinstance(row, dict):
        raise DomainKDError(f"{path} {entry} is not a JSON object; give each question as an object.")
    identifier = row.get("id") if row.get("id") is not None else entry.replace(" ", "")
    options = row["options"] if "options" in row else _numbered_options(path, entry, row)  # TeleQnA keys per line
    return _question(path, entry, str(identifier), row, options)


def _question(path: Path, entry: str, identifier: str, row: dict, options: Any) -> MCQuestion:
    """Validate the shared fields and build the question."""
    where = f"{path} entry {entry!r}"
    if not isinstance(row.get("question"), str) or not row["question"].strip():
        raise DomainKDError(f"{where} has no 'question' text; add the question string.")
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise DomainKDError(f"{where} needs at least two option strings; add its missing options.")
    answer_index = _answer_index(where, row, options)
    return MCQuestion(
        id=identifier,
        question=row["question"],
        options=tuple(options),
        answer_index=answer_index,
        explanation=str(row.get("explanation") or ""),
        category=str(row.get("category") or ""),
    )


def _answer_index(where: str, row: dict, options: list[str]) -> int:
    """0-based answer from ``answer_index`` or from ``answer`` ("option N: ..." or an option's exact text)."""
    if "answer_index" in row:
        index = row["answer_index"]
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(options):
            return index
        raise DomainKDError(
            f"{where} has answer_index {index!r}, not among its {len(options)} options; use 0 to {len(options) - 1}."
        )
    answer = row.get("answer")
    if isinstance(answer, str):
        numbered = re.match(r"\s*option\s*(\d+)\b", answer, re.IGNORECASE)
        if numbered and 1 <= int(numbered.group(1)) <= len(options):
            return int(numbered.group(1)) - 1
        same = [i for i, option in enumerate(options) if option.strip().casefold() == answer.strip().casefold()]
        if not numbered and len(same) == 1:
            return same[0]
    raise DomainKDError(
        f"{where} has answer {answer!r}, which is not among its {len(options)} options; "
        f"write it as 'option N: text' with N from 1 to {len(options)}."
    )


def _check_unique(questions: list[MCQuestion], path: Path) -> list[MCQuestion]:
    """The questions, or one sentence naming the first repeated id (or saying there are none)."""
    if not questions:
        raise DomainKDError(f"{path} holds no questions; give at least one.")
    seen: set[str] = set()
    for question in questions:
        if question.id in seen:
            raise DomainKDError(f"{path} uses id {question.id!r} twice; give every question its own id.")
        seen.add(question.id)
    return questions


# --- stratified subsets ---------------------------------------------------------------------------


def stratified_subset(questions: Sequence[MCQuestion], size: int, seed: int = 0) -> list[MCQuestion]:
    """A ``size``-question sample with each category in proportion, in the input's order.

    Quotas are rounded by largest remainder so they sum to exactly ``size``; when ``size`` is at
    least the number of categories every category gets at least one. The same seed gives the
    same sample.
    """
    if size < 1:
        raise DomainKDError(f"a multiple-choice subset needs a size of at least 1, not {size}; raise it.")
    if size >= len(questions):
        return list(questions)
    groups: dict[str, list[int]] = {}
    for position, question in enumerate(questions):
        groups.setdefault(question.category, []).append(position)
    quotas = _category_quotas({category: len(members) for category, members in groups.items()}, size)
    rng = random.Random(seed)
    chosen = [position for category, members in groups.items() for position in rng.sample(members, quotas[category])]
    return [questions[position] for position in sorted(chosen)]


def _category_quotas(counts: dict[str, int], size: int) -> dict[str, int]:
    """Largest-remainder quotas summing to ``size`` (``size`` < total), at least 1 each when possible."""
    total = sum(counts.values())
    # exact share = size * count / total, kept as integers (quota, remainder / total) to round exactly
    quotas = {category: size * count // total for category, count in counts.items()}
    remainders = {category: size * count % total for category, count in counts.items()}
    by_remainder = sorted(counts, key=lambda category: (-remainders[category], -counts[category]))
    for category in by_remainder[: size - sum(quotas.values())]:
        quotas[category] += 1
    if size >= len(counts):
        for category in [c for c in counts if quotas[c] == 0]:
            donors = [c for c in counts if quotas[c] > 1]
            donor = max(donors, key=lambda c: quotas[c] * total - size * counts[c])  # the most over-served
            quotas[donor] -= 1
            quotas[category] = 1
    return quotas


# --- log-likelihood scoring -----------------------------------------------------------------------


@torch.no_grad()
def option_logliks(
    model: Any,
    tokenizer: Any,
    questions: Sequence[MCQuestion],
    batch_size: int = 8,
    device: torch.device | str | None = None,
    system_prompt: str | None = None,
) -> list[list[LogLik]]:
    """Per question and option, the log-probability of ``" " + option`` after the chat-rendered prompt.

    The prompt is :func:`mcq_prompt` rendered with the model's chat template up to the assistant's
    turn. All options of ``batch_size`` questions share one left-padded forward pass; only the
    last ``max option tokens + 1`` positions get logits, and only option positions are
    log-softmaxed (fp32). ``tokenizer.padding_side`` is not used.

    Args:
        model: causal LM (in eval mode) accepting ``position_ids`` and ``logits_to_keep``.
        tokenizer: its tokenizer, with a chat template.
        questions: the questions to score.
        batch_size: questions per forward pass (so up to 5x as many rows).
        device: where to run; the model's device when None.
        system_prompt: optional system message before the question.

    Returns:
        ``[[(sum_logprob, option_tokens, option_bytes), ...per option], ...per question]``.
    """
    device = torch.device(device) if device is not None else model.device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    results: list[list[LogLik]] = []
    for start in range(0, len(questions), batch_size):
        batch = questions[start : start + batch_size]
        rows = [row for question in batch for row in _option_rows(tokenizer, question, system_prompt)]
        sums = _continuation_logprobs(model, rows, pad_id, device)
        texts = [option for question in batch for option in question.options]
        scored = iter(
            (total, len(option_ids), len(f" {text}".encode("utf-8")))
            for total, (_, option_ids), text in zip(sums, rows, texts)
        )
        results.extend([next(scored) for _ in question.options] for question in batch)
    return results


def _option_rows(tokenizer: Any, question: MCQuestion, system_prompt: str | None) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, option ids) per option.

    The option's tokens are those of ``prompt + " " + option`` past the prompt's own tokens, so a
    tokenizer that marks word starts (SentencePiece) sees the text as it would continue; if the
    boundary merges into the prompt's last token, the option is encoded on its own instead.
    """
    prompt = render_prompt(tokenizer, chat_messages(system_prompt, mcq_prompt(question)))
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if not prompt_ids:
        raise DomainKDError("the chat template rendered an empty prompt; give the tokenizer a chat template.")
    rows = []
    for option in question.options:
        whole = tokenizer(f"{prompt} {option}", add_special_tokens=False)["input_ids"]
        option_ids = whole[len(prompt_ids) :]
        if whole[: len(prompt_ids)] != prompt_ids or not option_ids:
            option_ids = tokenizer(f" {option}", add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids, option_ids))
    return rows


def _continuation_logprobs(
    model: Any, rows: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device
) -> list[float]:
    """Summed log-probability of each row's continuation given its prompt, in one left-padded pass.

    Left padding puts every row's continuation at the end, so ``logits_to_keep`` cuts the logits
    to the positions that can predict a continuation token; explicit ``position_ids`` keep each
    row's positions as if it were unpadded (models with absolute positions need this).
    """
    width = max(len(prompt) + len(option) for prompt, option in rows)
    keep = max(len(option) for _, option in rows) + 1  # the last prompt token predicts the first option token
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for index, (prompt, option) in enumerate(rows):
        input_ids[index, width - len(prompt) - len(option) :] = torch.tensor(prompt + option)
        attention_mask[index, width - len(prompt) - len(option) :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    input_ids, attention_mask, position_ids = input_ids.to(device), attention_mask.to(device), position_ids.to(device)
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=keep
    ).logits  # (B, keep, V): positions width-keep .. width-1
    predictors, targets = logits[:, :-1], input_ids[:, width - keep + 1 :]  # (B, keep-1, V), (B, keep-1)
    option_lengths = torch.tensor([len(option) for _, option in rows], device=device)
    offsets = torch.arange(keep - 1, device=device)
    is_option = offsets.unsqueeze(0) >= (keep - 1 - option_lengths).unsqueeze(1)  # (B, keep-1)
    logprobs = predictors[is_option].float().log_softmax(-1)  # (N, V), N = option tokens in the batch
    token_logprobs = logprobs.gather(-1, targets[is_option].unsqueeze(-1)).squeeze(-1)  # (N,)
    row_of_token = torch.arange(len(rows), device=device).unsqueeze(1).expand_as(is_option)[is_option]
    sums = torch.zeros(len(rows), device=device).index_add_(0, row_of_token, token_logprobs)
    return sums.tolist()


_NORMALISERS: dict[str, Callable[[float, int, int], float]] = {
    "sum": lambda total, tokens, size: total,
    "mean": lambda total, tokens, size: total / max(tokens, 1),
    "bytes": lambda total, tokens, size: total / max(size, 1),  # lm-eval's acc_norm
}


def loglik_choice(logliks: Sequence[Sequence[float]], normalise: str = "sum") -> int:
    """0-based index of the best option by summed, per-token ("mean") or per-byte ("bytes") log-probability.

    Args:
        logliks: one ``(sum_logprob, tokens, bytes)`` per option (tuples or JSON lists).
        normalise: "sum", "mean" or "bytes".

    Returns:
        The best option's index; ties go to the lowest index.
    """
    if normalise not in _NORMALISERS:
        names = ", ".join(_NORMALISERS)
        raise DomainKDError(f"unknown log-likelihood normalisation {normalise!r}; use one of {names}.")
    if not logliks:
        raise DomainKDError("no option log-likelihoods to choose from; score the question's options first.")
    score = _NORMALISERS[normalise]
    scores = [score(float(total), int(tokens), int(size)) for total, tokens, size in logliks]
    return max(range(len(scores)), key=scores.__getitem__)  # max keeps the first of equal scores


# --- parsing generated answers --------------------------------------------------------------------

_NUMBER_END = r"(?!\w|[.,:]\d|[\-–]\w)"  # not part of 3GPP, 5G, 3.5, 2-5 or 5-qubit
_NUMBER_CUES = (
    re.compile(rf"\boption\s*(?:number\s*|no\.?\s*|#\s*)?[:\-]?\s*[(\[]?(\d+){_NUMBER_END}", re.IGNORECASE),
    re.compile(
        rf"\b(?:answer|choice)\s*(?:is\s*|would be\s*)?[:\-]?\s*[*_]*[(\[]?(\d+){_NUMBER_END}"
        r"(?=[*_)\]]*[ \t]*(?:$|[\n.,;:!)(\-–]))",  # "the answer is 3 dB" names a value, not option 3
        re.IGNORECASE,
    ),
)
# "3", "(3)", "3: text" at the very start
_LEADING_NUMBER = re.compile(r"^[\s*_#>]*[(\[]?(\d+)(?!\w)[*_]*(?:\s*$|[)\]]|\s*[:.](?!\d)|\s*[\-–](?!\S))")
# what may precede an option's text: "the correct answer is", "option 2:", "(2)"; never a bare "option"
_CUE_PREFIX = re.compile(
    r"(?:(?:the\s+)?(?:correct\s+|right\s+|best\s+)?"
    r"(?:(?:answer|choice)\s*(?:is|would be)?|option\s*(?:is|would be|:))\s*[:\-]?\s*)?"
    r"(?:(?:option\s*)?[(\[]?\d+[)\]]?[*_]*\s*[:.\-–)]?\s*)?"
)
_CUE_END = (" ", ":", ".", ")", "]", "-", "–")


def parse_option(text: str, options: Sequence[str]) -> int | None:
    """0-based index of the option a generated answer picks, or None when it names none or several.

    Reads "option 3", "Option 3:", "3)", "(3)", "the answer is 3", a bare leading number, or an
    answer that is exactly one option's text (case- and space-insensitive), possibly after such a
    cue. Numbers count only within 1..len(options) and not inside a longer token (3GPP, 5G, 3.5).
    Every option the answer points at must agree: "option 2: <text of option 3>" is None.
    """
    reproduced = _reproduced_option(text, options)
    if reproduced is None:
        named = _named_numbers(text, (*_NUMBER_CUES, _LEADING_NUMBER))
    elif reproduced[1]:  # only the cue is searched: an option's own text ("Both option 1 and option 2") is no cue
        named = _named_numbers(reproduced[1], (*_NUMBER_CUES, _LEADING_NUMBER))
    else:  # a bare "2" may mean option 2 as well as the option that reads "2"
        named = _named_numbers(text, (_LEADING_NUMBER,))
    picked = {number - 1 for number in named if 1 <= number <= len(options)}
    if reproduced:
        picked.add(reproduced[0])
    return picked.pop() if len(picked) == 1 else None


def _named_numbers(text: str, patterns: Sequence[re.Pattern]) -> list[int]:
    """Every number one of ``patterns`` names as an option in ``text``."""
    return [int(match.group(1)) for pattern in patterns for match in pattern.finditer(text)]


def _reproduced_option(text: str, options: Sequence[str]) -> tuple[int, str] | None:
    """(index, cue prefix) when the answer is one option's text, alone or after an "option N:"-like cue.

    Of several options that fit ("2 ms" also ends with option "ms") the longest text wins.
    """
    answer = _comparable(text)
    found = []  # (text length, index, prefix)
    for index, option in enumerate(options):
        target = _comparable(option)
        if not target or not answer.endswith(target):
            continue
        prefix = answer[: len(answer) - len(target)]
        if not prefix or (prefix.endswith(_CUE_END) and _CUE_PREFIX.fullmatch(prefix)):
            found.append((len(target), index, prefix))
    longest = [(index, prefix) for length, index, prefix in found if length == max(found)[0]]
    return longest[0] if len(longest) == 1 else None


def _comparable(text: str) -> str:
    """Lower case, single spaces, no surrounding quotes, emphasis or final full stop."""
    return re.sub(r"^[\s*_\"'`]+|[\s*_\"'`.]+$", "", " ".join(text.casefold().split()))


# --- per-example scores (registered as metrics by the lead) ---------------------------------------


def generated_choice_accuracy(prediction_row: dict[str, Any], example: Example) -> float | None:
    """1.0 when the generated answer names the right option (unparsed counts as wrong); None without options."""
    if not example.get("options"):
        return None
    return float(parse_option(prediction_row["prediction"], example["options"]) == example["answer_index"])


def loglik_choice_accuracy(prediction_row: dict[str, Any], example: Example) -> float | None:
    """1.0 when the option with the highest summed log-probability is right; None without options or logliks."""
    if not example.get("options") or prediction_row.get("option_logliks") is None:
        return None
    return float(loglik_choice(prediction_row["option_logliks"], "sum") == example["answer_index"])
