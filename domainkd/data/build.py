"""The ``data`` and ``teach`` stages.

``data``: documents → chunks with provenance, and what the teacher will be asked.
``teach``: every configured strategy runs with the teacher (answers kept in the run's
SQLite store, so a killed run resumes without asking twice) → ``teach/train.jsonl``, a
JSON Lines file ``datasets.load_dataset("json", ...)`` reads.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from domainkd.config import RunConfig, dump_config
from domainkd.data import grounding
from domainkd.data.strategies import STRATEGIES, StrategyContext, strategy_params
from domainkd.errors import DomainKDError
from domainkd.io import read_jsonl, write_json, write_jsonl
from domainkd.paths import RunPaths
from domainkd.sources import Chunk, chunk_sections, read_documents
from domainkd.teachers import AnswerStore, ask, build_teacher


def prepare_data(config: RunConfig) -> dict[str, Any]:
    """Read and chunk the documents into ``data/chunks.jsonl``; return a summary.

    The summary includes ``teacher_calls``: how many requests ``teach`` would make
    (fewer if answers are already stored).
    """
    paths = RunPaths(config.output_dir)
    sections = read_documents(config.data.documents)
    chunks = chunk_sections(sections, config.data.chunk_words, config.data.chunk_overlap_words)
    calls = {name: STRATEGIES[name].teacher_calls(chunks, strategy_params(name, params)) for name, params in config.data.strategies.items()}
    summary = {
        "documents": len({section.document for section in sections}),
        "sections": len(sections),
        "chunks": len(chunks),
        "words": sum(len(chunk.text.split()) for chunk in chunks),
        "teacher_calls": calls,
    }
    dump_config(config, paths.config)
    write_jsonl(paths.chunks, (chunk.to_dict() for chunk in chunks))
    write_json(paths.data_summary, summary)
    return summary


def load_chunks(paths: RunPaths) -> list[Chunk]:
    """Chunks written by the data stage."""
    if not paths.chunks.is_file():
        raise DomainKDError(f"{paths.chunks} is missing; run `domainkd data CONFIG` first.")
    return [Chunk(**row) for row in read_jsonl(paths.chunks)]


def teach(config: RunConfig) -> dict[str, Any]:
    """Run every configured strategy with the teacher; write the training set and a summary."""
    paths = RunPaths(config.output_dir)
    chunks = load_chunks(paths)
    teacher = build_teacher(config.teacher)  # loads its model only when an answer is missing
    with AnswerStore(paths.answer_store) as store:

        def ask_teacher(conversations: list, label: str, max_new_tokens: int | None = None) -> list[str]:
            return ask(teacher, conversations, store, label, max_new_tokens)

        context = StrategyContext(chunks, ask_teacher, config.refusal_text, _held_out(config))
        examples, rejected = [], []
        for name, params in config.data.strategies.items():
            output = STRATEGIES[name].build(context, strategy_params(name, params))
            examples += output.examples
            rejected += output.rejected
    examples, dropped = _deduplicate(examples, context.held_out_questions)
    rejected += dropped
    if not examples:
        raise DomainKDError("the teacher produced no usable training example; look at teach/rejected.jsonl for the reasons.")
    for number, example in enumerate(examples):
        example["id"] = f"ex{number:05d}"
    summary = _summary(examples, rejected)
    write_jsonl(paths.train_set, examples)
    write_jsonl(paths.rejected, rejected)
    write_json(paths.teach_summary, summary)
    return summary


def _held_out(config: RunConfig) -> set[str]:
    if not config.eval.questions.is_file():
        return set()
    return {grounding.normalise(row["question"]) for row in read_jsonl(config.eval.questions) if "question" in row}


def _deduplicate(examples: list[dict], held_out: set[str]) -> tuple[list[dict], list[dict]]:
    kept, dropped, seen = [], [], set()
    for example in examples:
        key = grounding.normalise(example["question"])
        if key in held_out:
            dropped.append({**example, "reason": "same as an evaluation question (contamination)"})
        elif key in seen:
            dropped.append({**example, "reason": "duplicate question"})
        else:
            seen.add(key)
            kept.append(example)
    return kept, dropped


def _summary(examples: list[dict], rejected: list[dict]) -> dict[str, Any]:
    return {
        "examples": len(examples),
        "by_strategy": dict(Counter(example["strategy"] for example in examples)),
        "by_variant": dict(Counter(f"{example['strategy']}/{example['variant']}" for example in examples)),
        "rejected": len(rejected),
        "rejected_by_reason": dict(Counter(_reason_kind(row["reason"]) for row in rejected).most_common()),
    }


def _reason_kind(reason: str) -> str:
    """The reason without its specific term: "answer states '30', which ..." -> "answer states"."""
    return re.split(r"\s['\"]", reason)[0]
