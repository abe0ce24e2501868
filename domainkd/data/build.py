"""The ``data`` and ``teach`` stages.

``data``: documents, records and QA sets → ``data/*.jsonl`` with provenance, and what the teacher will be asked.
``teach``: every configured strategy runs with the teacher (answers kept in the run's
SQLite store, so a killed run resumes without asking twice) → ``teach/train.jsonl``, a
JSON Lines file ``datasets.load_dataset("json", ...)`` reads.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict
from typing import Any

from domainkd.config import RunConfig, dump_config
from domainkd.data import grounding
from domainkd.data.strategies import STRATEGIES, StrategyContext, strategy_params
from domainkd.errors import DomainKDError
from domainkd.io import read_jsonl, write_json, write_jsonl
from domainkd.paths import RunPaths
from domainkd.models import load_tokenizer
from domainkd.sources import Chunk, Sources, TokenCounter, load_sources, read_sources, save_sources, tokenizer_counter
from domainkd.teachers import AnswerStore, ask, build_teacher


def prepare_data(config: RunConfig, dry_run: bool = False) -> dict[str, Any]:
    """Read every source into ``data/`` (chunks, records, QA pairs); return a summary.

    The summary includes each strategy's plan (what it would make, the most teacher requests
    ``teach`` would send; answers already stored are not asked again). With ``dry_run``
    nothing is written.
    """
    paths = RunPaths(config.output_dir)
    skipped: dict[str, str] = {}
    sources = configured_sources(config, skipped)
    summary = plan_summary(config, sources, skipped)
    if dry_run:
        summary["already_answered"] = _stored_answers(paths, config)
        return summary
    dump_config(config, paths.config)
    save_sources(sources, paths.chunks.parent)
    write_json(paths.data_summary, summary)
    return summary


def plan_summary(config: RunConfig, sources: Sources, skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """What the sources hold and what ``teach`` would make of them: counts, each strategy's plan, teacher calls."""
    plans = {name: STRATEGIES[name].plan(sources, strategy_params(name, params)) for name, params in config.data.strategies.items()}
    summary = {
        **sources.counts(),
        "documents": len({chunk.document for chunk in sources.chunks}),
        "skipped_documents": skipped or {},
        "tokens": sum(chunk.tokens for chunk in sources.chunks),
        "strategies": {name: asdict(plan) for name, plan in plans.items()},
        "teacher_calls": sum(plan.teacher_calls for plan in plans.values()),
        "examples_at_most": sum(plan.examples for plan in plans.values()),
    }
    if config.teacher_writes_eval and not config.eval_questions.is_file():
        from domainkd.data.eval_set import plan_calls

        calls = plan_calls(sources, config)
        summary["eval_writing"] = {
            "teacher_calls": calls,
            "what": f"up to {config.eval.writing.in_scope} in-scope and {config.eval.writing.out_of_scope} out-of-scope "
            f"held-out questions into {config.eval_questions}",
        }
        summary["teacher_calls"] += calls
    return summary


def configured_sources(config: RunConfig, skipped: dict[str, str] | None = None) -> Sources:
    """The configured documents (chunked by the data tokenizer), records and QA sets."""
    data = config.data
    count_tokens = _token_counter(data.tokenizer or config.student.model, config.student.trust_remote_code)
    sources = read_sources(
        data.documents, data.records, data.qa_sets, count_tokens, data.chunk_tokens, data.chunk_overlap_tokens, skipped
    )
    if data.has_sources and not (sources.chunks or sources.records or sources.qa_pairs):
        raise DomainKDError("the configured sources hold no usable text, record or QA pair; check data.documents, data.records and data.qa_sets.")
    return sources


def _token_counter(reference: str, trust_remote_code: bool) -> TokenCounter:
    """Tokens in each of a batch of texts under ``reference``'s tokenizer, loaded on first use (after the documents are found)."""
    loaded = []

    def count(texts: list[str]) -> list[int]:
        if not loaded:
            loaded.append(tokenizer_counter(load_tokenizer(reference, trust_remote_code=trust_remote_code)))
        return loaded[0](texts)

    return count


def _stored_answers(paths: RunPaths, config: RunConfig) -> int:
    """Answers the configured teacher has stored, under any generation settings (a store copied from another run may
    hold other teachers'; answers stored under other settings, such as another dtype, are asked again by teach)."""
    if not paths.answer_store.is_file():
        return 0
    with AnswerStore(paths.answer_store) as store:
        return store.stats(build_teacher(config.teacher).identity)["answered"]


def load_chunks(paths: RunPaths) -> list[Chunk]:
    """Chunks written by the data stage."""
    return _load(paths).chunks


def _load(paths: RunPaths) -> Sources:
    if not paths.chunks.is_file():
        raise DomainKDError(f"{paths.chunks} is missing; run `domainkd data CONFIG` first.")
    return load_sources(paths.chunks.parent)


def teach(config: RunConfig) -> dict[str, Any]:
    """Run every configured strategy with the teacher; write the training set and a summary."""
    paths = RunPaths(config.output_dir)
    sources = _load(paths)
    teacher = build_teacher(config.teacher)  # loads its model only when an answer is missing
    with AnswerStore(paths.answer_store) as store:

        def ask_teacher(conversations: list, label: str, max_new_tokens: int | None = None, expect_json: bool = False) -> list[str]:
            return ask(teacher, conversations, store, label, max_new_tokens, expect_json=expect_json,
                       max_failed_share=config.teacher.max_failed_share)

        rejected = _write_eval_set(config, sources, ask_teacher)
        held_out = _held_out(config)
        context = StrategyContext(sources, ask_teacher, config.refusal_text, set(held_out), config.domain)
        examples = []
        for name, params in config.data.strategies.items():
            output = STRATEGIES[name].build(context, strategy_params(name, params))
            examples += output.examples
            rejected += output.rejected
        teacher_stats = store.stats(teacher.identity)
    examples, dropped = _deduplicate(examples, held_out, config.eval.contamination_similarity)
    rejected += dropped
    if not examples:
        raise DomainKDError("the teacher produced no usable training example; look at teach/rejected.jsonl for the reasons.")
    if config.data.raft is not None:
        examples = _with_excerpt_copies(config, paths, examples, sources)
    for number, example in enumerate(examples):
        example["id"] = f"ex{number:05d}"
    summary = {**_summary(examples, rejected), "teacher": teacher_stats}
    write_jsonl(paths.train_set, examples)
    write_jsonl(paths.rejected, rejected)
    write_json(paths.teach_summary, summary)
    return summary


def _with_excerpt_copies(config: RunConfig, paths: RunPaths, examples: list[dict], sources: Sources) -> list[dict]:
    """The examples with their RAFT copies, excerpts found by the run's retriever (``data.raft``)."""
    from domainkd.data.raft import raft_examples
    from domainkd.evaluation.systems import PromptResources

    if not sources.chunks:
        raise DomainKDError("data.raft needs document chunks to retrieve excerpts from; set data.documents or drop data.raft.")
    retriever = PromptResources(config, paths).retriever(config.retrieval.method)
    return raft_examples(examples, sources.chunks, retriever.search, config)


def _write_eval_set(config: RunConfig, sources: Sources, ask_teacher: Any) -> list[dict]:
    """Have the teacher write the held-out questions when the config names none and none are written yet;
    return the candidates it dropped (for rejected.jsonl)."""
    path = config.eval_questions
    if not config.teacher_writes_eval or path.is_file():
        return []
    from domainkd.data.eval_set import write_eval_set

    rows, rejected = write_eval_set(config, sources, ask_teacher)
    if not any(row["scope"] == "in" for row in rows):
        rejected_path = RunPaths(config.output_dir).rejected
        write_jsonl(rejected_path, rejected)
        raise DomainKDError(
            f"the teacher wrote no usable held-out question about the documents (the reasons are in {rejected_path}); "
            "set eval.questions to a JSONL file of your own questions."
        )
    write_jsonl(path, rows)
    return rejected


def _held_out(config: RunConfig) -> dict[str, str]:
    """Normalised evaluation question -> the question as written, never to be trained on."""
    if not config.eval_questions.is_file():
        return {}
    rows = read_jsonl(config.eval_questions)
    return {grounding.normalise(row["question"]): row["question"] for row in rows if isinstance(row.get("question"), str)}


def _contaminated(
    question: str, key: str, held_out: dict[str, str], asked_words: list[tuple[str, set[str]]], similarity: float | None
) -> str | None:
    """Why a training question is too close to an evaluation question (``asked_words``: each one with its content
    words), or None."""
    if key in held_out:
        return "same as an evaluation question (contamination)"
    if similarity is not None and question:
        words_of_question = grounding.content_words(question)
        for asked, words_of_asked in asked_words:
            if grounding.jaccard(words_of_question, words_of_asked) >= similarity:
                return f"shares {similarity:.0%} or more of its content words with the evaluation question {asked!r} (contamination)"
    return None


def _deduplicate(examples: list[dict], held_out: dict[str, str], similarity: float | None = None) -> tuple[list[dict], list[dict]]:
    """Examples without contamination, repeats, or a question already asked about another fact.

    A question may come back with another wording of its answer when it is about the same fact
    (``context_qa``'s ``fact_answers``); about another fact (or with no fact to tell), it is a
    duplicate question whose two answers would contradict each other. A question identical to an
    evaluation question, or sharing ``similarity`` of its content words with one, is contamination.
    """
    kept, dropped, seen, asked_about = [], [], set(), {}
    asked_words = [(asked, grounding.content_words(asked)) for asked in held_out.values()]  # once, not per example
    for example in examples:
        key = grounding.normalise(example.get("question") or example.get("text") or "")
        about = example.get("fact") or example.get("answer")
        contamination = _contaminated(example.get("question") or "", key, held_out, asked_words, similarity)
        if contamination:
            dropped.append({**example, "reason": contamination})
        elif (key, grounding.normalise(example.get("answer") or "")) in seen or (not example.get("question") and key in asked_about):
            dropped.append({**example, "reason": "duplicate question" if example.get("question") else "duplicate passage"})
        elif key in asked_about and asked_about[key] != about:
            dropped.append({**example, "reason": "duplicate question"})
        else:
            seen.add((key, grounding.normalise(example.get("answer") or "")))
            asked_about.setdefault(key, about)
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
