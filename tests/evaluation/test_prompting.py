"""Prompt crafting: templates, chain-of-thought answer extraction, the few-shot pool and nearest examples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from domainkd.errors import DomainKDError
from domainkd.evaluation.prompting import TEMPLATES, apply_template, final_answer, nearest_examples, read_pool


def test_named_and_custom_templates_fill_question_and_refusal() -> None:
    assert apply_template("plain", "Who signs?", "IDK") == "Who signs?"
    expert = apply_template("expert", "Who signs?", "IDK")
    assert expert.endswith("Question: Who signs?") and "reply exactly: IDK" in expert
    assert apply_template("Q: {question} (else {refusal_text})", "Who?", "no idea") == "Q: Who? (else no idea)"
    assert set(TEMPLATES) == {"plain", "expert", "concise"}


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Leave is in days.\nStaff get 27.\nAnswer: 27 days.", "27 days."),
        ("Answer: first\nThinking again.\nFinal answer: second", "second"),
        ("**Answer:** Tomas Brenner", "Tomas Brenner"),
        ("reasoning only\n\nno marker here", "no marker here"),
        ("", ""),
    ],
)
def test_final_answer_takes_the_last_answer_line(reply: str, answer: str) -> None:
    assert final_answer(reply) == answer


def test_read_pool_keeps_question_answer_rows_once(tmp_path) -> None:
    path = tmp_path / "train.jsonl"
    rows = [
        {"question": "Who signs?", "answer": "Ilse.", "strategy": "context_qa"},
        {"question": "who signs?", "answer": "Ilse Varga."},  # same question: one answer kept
        {"question": "", "answer": "x"},
        {"text": "raw passage"},
        {"question": "When?", "answer": "Monday."},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    pool = read_pool(path)
    assert [pair["question"] for pair in pool] == ["who signs?", "When?"]
    assert pool[0]["answer"] == "Ilse Varga."


def test_a_run_trained_on_excerpt_prompts_only_has_a_pool_without_its_refused_gold_less_copies(tmp_path) -> None:
    path = tmp_path / "train.jsonl"
    prompt = "Document excerpts:\n[1] a.md - A\n..."
    rows = [
        {"strategy": "raft", "variant": "with_answer", "question": "Who signs?", "answer": "Ilse Varga.", "prompt": prompt},
        {"strategy": "raft", "variant": "refusal", "question": "Capital of Peru?", "answer": "I don't know.", "prompt": prompt},
        {"strategy": "raft", "variant": "without_answer", "question": "When?", "answer": "I don't know.", "prompt": prompt},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert read_pool(path) == [
        {"question": "Who signs?", "answer": "Ilse Varga."}, {"question": "Capital of Peru?", "answer": "I don't know."},
    ]


def test_read_pool_errors_name_the_fix(tmp_path) -> None:
    with pytest.raises(DomainKDError, match="domainkd teach"):
        read_pool(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "no pairs"}) + "\n", encoding="utf-8")
    with pytest.raises(DomainKDError, match="no rows with a question"):
        read_pool(empty)


def test_nearest_examples_rank_by_cosine_and_skip_the_question_itself() -> None:
    vectors = {"leave?": [1, 0], "holiday?": [0.9, 0.1], "parking?": [0, 1], "permits?": [0.1, 0.9]}

    def encode(texts):
        rows = np.array([vectors[text] for text in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    pool = [{"question": q, "answer": q.upper()} for q in ("parking?", "holiday?", "leave?", "permits?")]
    chosen = nearest_examples(["leave?", "parking?"], pool, 2, encode)
    assert [pair["question"] for pair in chosen[0]] == ["holiday?", "permits?"]  # "leave?" itself is never shown
    assert [pair["question"] for pair in chosen[1]] == ["permits?", "holiday?"]
    assert nearest_examples(["leave?"], pool, 0, encode) == [[]]
