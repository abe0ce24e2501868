"""Prompt crafting without training: instruction templates, few-shot examples chosen by similarity, chain of thought.

These are the survey's "prompt crafting" family (../shared/BRIEF.md §3). Few-shot examples
come from a pool of question/answer pairs (by default the training set the teacher wrote),
the ``k`` whose questions are nearest the asked one by sentence-encoder cosine, never the
asked question itself. With chain of thought the model reasons first and ends with a line
``Answer: ...``; only that line is scored, the reasoning is kept as ``raw``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from domainkd.errors import DomainKDError
from domainkd.io import read_jsonl

TEMPLATES: dict[str, str] = {
    "plain": "{question}",
    "expert": (
        "Answer this question about {documents} in one sentence, naming the exact figure, "
        "person, place or rule. If you do not know the answer, reply exactly: {refusal_text}\n\nQuestion: {question}"
    ),
    "concise": "Answer in as few words as possible; if you are not sure, reply exactly: {refusal_text}\n\n{question}",
}
"""Named instruction templates; a custom template is any text with {question} (and optionally {refusal_text}
and {documents}, the config's ``domain.documents``)."""

COT_INSTRUCTION = (
    "\n\nThink it through step by step in a few short sentences, then give the final answer on a last line "
    "starting with 'Answer:'."
)

_ANSWER_LINE = re.compile(r"^\s*\**\s*(?:final\s+)?answer\s*\**\s*:\s*\**\s*(.*)$", re.IGNORECASE | re.MULTILINE)


def apply_template(template: str, question: str, refusal_text: str, documents: str = "the documents") -> str:
    """The user turn for ``question`` under a named or custom template; ``documents`` names the domain's documents."""
    text = TEMPLATES.get(template, template)
    return text.replace("{refusal_text}", refusal_text).replace("{documents}", documents).replace("{question}", question)


def final_answer(text: str) -> str:
    """The text after the last ``Answer:`` line of a chain-of-thought reply; its last non-empty line otherwise."""
    found = [match.group(1).strip() for match in _ANSWER_LINE.finditer(text) if match.group(1).strip()]
    if found:
        return found[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def read_pool(path: Path) -> list[dict[str, str]]:
    """Question/answer pairs for few-shot examples from a JSONL file (extra fields are ignored).

    A RAFT copy (a row with a ``prompt``) counts with its bare question when its answer is its source example's
    (variants ``with_answer`` and ``refusal``), so a run trained on excerpt prompts only still has a pool; one
    whose gold excerpt was left out (``without_answer``) may answer with the refusal and does not count.
    """
    if not path.is_file():
        raise DomainKDError(
            f"few-shot pool {path} does not exist; run `domainkd teach CONFIG` first, set compare.few_shot_pool "
            "to a JSONL file of question/answer pairs, or set few_shot: 0."
        )
    pairs = [
        {"question": row["question"].strip(), "answer": row["answer"].strip()}
        for row in read_jsonl(path)
        if isinstance(row.get("question"), str) and isinstance(row.get("answer"), str) and row["question"].strip()
        and (not row.get("prompt") or row.get("variant") in ("with_answer", "refusal"))
    ]
    if not pairs:
        raise DomainKDError(f"few-shot pool {path} has no rows with a question and an answer string; add some.")
    return list({pair["question"].casefold(): pair for pair in pairs}.values())  # one answer per question


def nearest_examples(
    questions: Sequence[str], pool: Sequence[dict[str, str]], k: int, encode: Any
) -> list[list[dict[str, str]]]:
    """For each question the ``k`` pool pairs with the most similar questions, most similar first.

    Args:
        questions: the questions being asked.
        pool: candidate examples, each with ``question`` and ``answer``.
        k: examples per question.
        encode: texts -> (N, D) unit vectors (a sentence encoder's ``encode``).
    """
    if k == 0 or not questions:
        return [[] for _ in questions]
    similarity = encode(list(questions)) @ encode([pair["question"] for pair in pool]).T  # (Q, P)
    asked = [question.strip().casefold() for question in questions]
    chosen: list[list[dict[str, str]]] = []
    for row, question in zip(similarity, asked):
        order = np.argsort(-row, kind="stable")
        picks = [pool[i] for i in order if pool[i]["question"].casefold() != question][:k]  # never the question itself
        chosen.append(picks)
    return chosen
