"""Systems and strategies: what each prompt holds (templates, few-shot turns, chain of thought, excerpts, gold)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from domainkd.config import StrategyConfig, config_from_dict
from domainkd.data.build import load_chunks, prepare_data
from domainkd.errors import DomainKDError
from domainkd.sources import Chunk
from domainkd.evaluation.prompting import COT_INSTRUCTION
from domainkd.evaluation.runner import load_questions
from domainkd.evaluation.systems import (
    SYSTEMS, PromptResources, build_prompts, describe, max_new_tokens, model_reference, source_prompt,
)
from domainkd.paths import RunPaths


class WordEncoder:
    """A stand-in sentence encoder: bag of the words of a fixed vocabulary, unit length."""

    words = ("holiday", "leave", "days", "parking", "permits", "badge")

    def encode(self, texts):
        rows = np.array([[text.lower().count(word) for word in self.words] for text in texts], dtype=np.float32)
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


@pytest.fixture()
def resources(tiny_config):
    prepare_data(tiny_config)
    paths = RunPaths(tiny_config.output_dir)
    pool = [
        {"question": "How many leave days are there?", "answer": "27 days."},
        {"question": "Who issues parking permits?", "answer": "Tomas Brenner."},
        {"question": "What does a badge cost?", "answer": "15 euros."},
    ]
    paths.train_set.parent.mkdir(parents=True, exist_ok=True)
    paths.train_set.write_text("".join(json.dumps(row) + "\n" for row in pool), encoding="utf-8")
    shared = PromptResources(tiny_config, paths)
    shared._encoder = WordEncoder()
    return shared


def test_plain_strategy_is_system_prompt_then_question(resources) -> None:
    questions = load_questions(resources.config)
    prompts = build_prompts(StrategyConfig(), questions, resources)
    assert prompts.conversations[0] == [
        {"role": "system", "content": resources.config.system_prompt},
        {"role": "user", "content": questions[0]["question"]},
    ]
    assert prompts.retrieved == [[], [], []]


def test_few_shot_turns_come_from_the_nearest_pool_questions(resources) -> None:
    questions = load_questions(resources.config)
    strategy = StrategyConfig(template="expert", few_shot=1, chain_of_thought=True)
    conversation = build_prompts(strategy, questions, resources).conversations[1]  # "Who hands out parking permits?"
    assert [turn["role"] for turn in conversation] == ["system", "user", "assistant", "user"]
    assert "Who issues parking permits?" in conversation[1]["content"]
    assert conversation[2]["content"] == "Answer: Tomas Brenner."  # chain of thought: shots end as answer lines
    assert conversation[3]["content"].endswith(COT_INSTRUCTION) and "reply exactly:" in conversation[3]["content"]


def test_gold_strategy_keeps_the_teacher_with_context_prompt(resources) -> None:
    questions = load_questions(resources.config)
    prompts = build_prompts(SYSTEMS["teacher_with_context"].strategy, questions, resources)
    chunks = load_chunks(resources.paths)
    leave = "\n\n".join(chunk.text for chunk in chunks if chunk.document == "01-leave.md")
    assert prompts.conversations[0][-1]["content"] == source_prompt(questions[0]["question"], leave, resources.config.refusal_text)
    assert prompts.retrieved[0] == [chunk.chunk_id for chunk in chunks if chunk.document == "01-leave.md"]


def test_gold_strategy_without_documents_says_to_set_them_or_drop_the_system(resources) -> None:
    resources._chunks = []  # a run whose only source is a ReBase datastore
    with pytest.raises(DomainKDError) as error:
        build_prompts(SYSTEMS["teacher_with_context"].strategy, load_questions(resources.config), resources)
    assert "needs documents" in str(error.value) and "eval.systems" in str(error.value)


def test_bm25_strategy_puts_the_retrieved_chunk_in_the_prompt(resources) -> None:
    questions = load_questions(resources.config)
    prompts = build_prompts(StrategyConfig(retrieval="bm25", top_k=1), questions, resources)
    parking = prompts.conversations[1][-1]["content"]
    assert parking.startswith("Document excerpts:\n[1] 02-parking.md") and "Tomas Brenner" in parking
    assert parking.endswith("Question: Who hands out parking permits?")
    assert prompts.retrieved[1][0].startswith("02-parking.md") and prompts.retrieval_seconds > 0
    assert (resources.paths.retrieval_index / "manifest.json").is_file()


def test_models_descriptions_and_lengths(tiny_config) -> None:
    paths = RunPaths(tiny_config.output_dir)
    assert model_reference(StrategyConfig(model="student"), tiny_config, paths) == str(paths.model)
    assert model_reference(StrategyConfig(model="teacher"), tiny_config, paths) == tiny_config.teacher.model
    assert model_reference(StrategyConfig(model="/models/other"), tiny_config, paths) == "/models/other"
    hybrid = StrategyConfig(model="student", retrieval="hybrid")
    assert describe(hybrid, tiny_config) == "distilled student + hybrid retrieval (top 3)"
    crafted = StrategyConfig(template="expert", few_shot=3, chain_of_thought=True)
    assert describe(crafted, tiny_config) == "base student + expert template + 3-shot (nearest questions) + chain of thought"
    assert max_new_tokens(crafted, tiny_config) == 3 * tiny_config.eval.max_new_tokens
    assert max_new_tokens(StrategyConfig(max_new_tokens=5, chain_of_thought=True), tiny_config) == 5


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ({"retrieval": "bm25", "template": "expert"}, "set template: plain"),
        ({"template": "no placeholder"}, "containing {question}"),
        ({"retrieval": "sparse"}, "retrieval"),
        ({"few_shot": 40}, "few_shot"),
        ({"shots": 2}, "unknown key"),
    ],
)
def test_bad_strategies_are_one_sentence_config_errors(strategy: dict, message: str) -> None:
    with pytest.raises(DomainKDError, match=message):
        config_from_dict({"compare": {"strategies": {"mine": strategy}}})


def test_strategy_names_must_be_file_safe() -> None:
    with pytest.raises(DomainKDError, match="names files"):
        config_from_dict({"compare": {"strategies": {"../escape": {}}}})


def test_checked_answers_become_the_refusal_when_the_excerpts_do_not_back_them():
    from domainkd.evaluation.systems import checked_answer

    excerpts = [Chunk("leave.md#0", "leave.md", "Annual Leave", "Staff get 27 days of leave.", 0, 27, 8)]
    assert checked_answer("Staff get 27 days.", excerpts, "No idea.", 0.5) == "Staff get 27 days."
    assert checked_answer("Staff get 30 days.", excerpts, "No idea.", 0.5) == "No idea."
    assert checked_answer("Staff get 30 days.", excerpts, "No idea.", None) == "Staff get 30 days."  # check off
    assert checked_answer("Staff get 30 days.", [], "No idea.", 0.5) == "Staff get 30 days."  # closed-book
    assert checked_answer("I don't know.", excerpts, "No idea.", 0.5) == "I don't know."
