"""The ``eval`` stage: every configured system answers the held-out questions; every metric scores them.

Predictions are written per system (``eval/predictions-<system>.jsonl``) with a fingerprint,
so a rerun only regenerates systems whose model, prompt or questions changed; each row keeps
its per-example scores. ``eval/metrics.json`` holds the means with bootstrap confidence
intervals, per-category means, inference cost, and the paired comparisons between systems
(Wilcoxon signed-rank, Holm-corrected per metric). Judge verdicts are kept in
``eval/judge.sqlite`` and never asked twice.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from domainkd.config import RunConfig
from domainkd.errors import DomainKDError
from domainkd.evaluation.knowledge import coverage, reading_split, recall_questions, split_by_coverage
from domainkd.evaluation.metrics import fact_accuracy
from domainkd.evaluation.registry import METRICS, MetricContext, aggregate, score_all
from domainkd.evaluation.statistics import compare_systems, mean_ci
from domainkd.evaluation.prompting import final_answer
from domainkd.evaluation.systems import (
    SYSTEMS, PromptResources, System, build_prompts, checked_answer, context_for, max_new_tokens, model_reference,
    training_note,
)
from domainkd.io import read_jsonl, write_json, write_jsonl
from domainkd.models import generate_texts, load_causal_lm, render_prompt
from domainkd.paths import RunPaths

LOGLIK_METRICS = ("mcq_loglik_accuracy",)


def load_questions(config: RunConfig) -> list[dict[str, Any]]:
    """Evaluation questions, checked for the fields the metrics need (JSONL, or a TeleQnA JSON file)."""
    path = config.eval_questions
    if config.teacher_writes_eval and not path.is_file():
        raise DomainKDError(
            f"no eval.questions file is set and the teacher has not written {path} yet; run `domainkd teach CONFIG` "
            "first (it writes held-out questions there), or set eval.questions to your own JSONL file."
        )
    if path.name.endswith((".json", ".json.gz")):
        from domainkd.evaluation.mcq import read_teleqna

        rows = [question.as_example() for question in read_teleqna(path)]
    else:
        rows = read_jsonl(path)
    if not rows:
        raise DomainKDError(f"evaluation file {path} has no questions; add JSON lines with a question each.")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row.get("question"), str) or row.get("scope", "in") not in ("in", "out"):
            raise DomainKDError(f"{path} line {number} needs a 'question' string and 'scope' of 'in' or 'out'; fix that line.")
        if row.get("scope", "in") == "in" and "answer" not in row:
            raise DomainKDError(f"{path} line {number} is in scope but has no reference 'answer'; add one.")
        if "answer" in row and not isinstance(row["answer"], str):
            raise DomainKDError(
                f"{path} line {number} has an 'answer' of {json.dumps(row['answer'])}, but it must be a string; "
                "quote it (\"answer\": \"...\")."
            )
        row.setdefault("id", f"line{number}")
    ids = Counter(str(row["id"]) for row in rows)
    repeated = [name for name, count in ids.items() if count > 1]
    if repeated:
        raise DomainKDError(f"{path} uses the id {repeated[0]!r} for {ids[repeated[0]]} questions; give each question its own id.")
    return rows[: config.eval.limit] if config.eval.limit else rows


def evaluate(
    config: RunConfig, systems: dict[str, System] | None = None, stage: str = "eval",
    resources: PromptResources | None = None,
) -> dict[str, Any]:
    """Answer with every system, score every metric, compare the systems; write ``<stage>/metrics.json``.

    Args:
        config: the run.
        systems: name -> system; None evaluates the built-in systems named in ``eval.systems``.
        stage: the run subfolder for predictions and metrics (``eval``; ``compare`` for `domainkd compare`).
        resources: chunks, retrievers, encoder and few-shot pool already loaded by the caller (None: load here).
    """
    paths = RunPaths(config.output_dir)
    if systems is None:
        systems = {name: SYSTEMS[name].for_run(config) for name in config.eval.systems}
    questions = load_questions(config)
    resources = resources or PromptResources(config, paths)
    needs_chunks = any(system.strategy.retrieval != "none" for system in systems.values())
    chunks = resources.chunks if paths.chunks.is_file() or needs_chunks else []
    sources = [context_for(question, chunks) if question.get("source") and chunks else None for question in questions]
    judge = _judge(config, paths)
    train_rows = read_jsonl(paths.train_set) if paths.train_set.is_file() else []
    covered = coverage(questions, train_rows, config.refusal_text) if train_rows else None
    recall_sets = {  # closed-book systems are asked questions trained closed-book; readers, those trained with excerpts
        reads: recall_questions(train_rows, config.eval.train_recall, config.train.seed, reads, config.refusal_text)
        for reads in (False, True)
    }
    per_example: dict[str, dict[str, list[float | None]]] = {}
    summaries: dict[str, Any] = {}
    for name, system in systems.items():
        rows = _predictions(name, system, resources, questions, stage)
        context = MetricContext(encoder_reference=config.eval.encoder, judge=judge, sources=sources)
        scores = score_all(config.eval.metrics, rows, questions, context)
        for index, row in enumerate(rows):
            row["scores"] = {metric: values[index] for metric, values in scores.items()}
        write_jsonl(paths.predictions(name, stage), rows)
        per_example[name] = scores
        summaries[name] = {
            "description": system.description + training_note(system.strategy, paths),
            "scores": {metric: _summary(values, context.failures[metric], config) for metric, values in scores.items()},
            "cost": _cost(rows),
        }
        if covered is not None and "fact_accuracy" in scores:
            summaries[name]["knowledge"] = _knowledge(name, system, resources, stage, scores, covered, recall_sets)
        reads = system.strategy.retrieval not in ("none", "gold")  # the oracle's source is given, not retrieved
        reading = reading_split(rows, questions, chunks) if reads and "fact_accuracy" in scores else None
        if reading is not None:
            summaries[name]["reading"] = reading
    significance = config.eval.significance
    metrics = {
        "questions": len(questions),
        "in_scope": sum(row.get("scope", "in") == "in" for row in questions),
        "questions_file": str(config.eval_questions),
        "written_by": "teacher" if any(row.get("written_by") == "teacher" for row in questions) else "user",
        "domain": config.domain.model_dump(),
        "metrics": {
            name: {"higher_is_better": METRICS[name].higher_is_better, "description": METRICS[name].description,
                   "family": METRICS[name].family}
            for name in config.eval.metrics
        },
        "systems": summaries,
        "categories": _categories(per_example, questions),
        "comparisons": compare_systems(
            per_example, {name: METRICS[name].higher_is_better for name in config.eval.metrics},
            alpha=significance.alpha, resamples=significance.resamples, seed=significance.seed,
        ) if len(per_example) > 1 else {},
        "significance": {
            "alpha": significance.alpha, "confidence": significance.confidence, "resamples": significance.resamples,
            "test": "Wilcoxon signed-rank", "correction": "Holm",
        },
    }
    write_json(paths.stage_metrics(stage), metrics)
    return metrics


def _knowledge(
    name: str, system: System, resources: PromptResources, stage: str, scores: dict[str, list[float | None]],
    covered: list[bool | None], recall_sets: dict[bool, list[dict]],
) -> dict[str, Any]:
    """Fact accuracy on covered and not-covered questions; for the students, recall of training questions.

    A student answering closed-book is asked questions it was trained on closed-book; one reading retrieved
    excerpts, questions it was trained on with excerpts. Few-shot and oracle-context systems are not asked.
    """
    knowledge: dict[str, Any] = split_by_coverage(scores["fact_accuracy"], covered)
    strategy = system.strategy
    recall_set = recall_sets[strategy.retrieval != "none"]
    if recall_set and strategy.retrieval != "gold" and strategy.model in ("student", "base_student") and not strategy.few_shot:
        rows = _predictions(f"{name}-train_recall", system, resources, recall_set, stage)
        values = [fact_accuracy(row["prediction"], example) for row, example in zip(rows, recall_set)]
        knowledge["train_recall"] = {"mean": sum(values) / len(values), "n": len(values)}
    return knowledge


def _judge(config: RunConfig, paths: RunPaths) -> Callable | None:
    """(examples, predictions, sources) -> JudgeResult over the configured judge, or None."""
    if config.eval.judge is None or not any(METRICS[name].family == "judge" for name in config.eval.metrics):
        return None
    from domainkd.evaluation.judge import judge_answers
    from domainkd.teachers import AnswerStore, build_teacher

    teacher = build_teacher(config.eval.judge)
    store_path = paths.root / "eval" / "judge.sqlite"
    store_path.parent.mkdir(parents=True, exist_ok=True)

    def judge(examples: list[dict], predictions: list[str], sources: list[str | None]) -> Any:
        with AnswerStore(store_path) as store:
            return judge_answers(teacher, store, examples, predictions, sources, documents=config.domain.documents)

    return judge


def _summary(values: list[float | None], failures: int, config: RunConfig) -> dict[str, Any]:
    significance = config.eval.significance
    low, high = mean_ci(values, confidence=significance.confidence, resamples=significance.resamples, seed=significance.seed)
    return {**aggregate(values), "ci_low": low, "ci_high": high, "failures": failures}


def _cost(rows: list[dict]) -> dict[str, float | None]:
    """Mean seconds (search + generation), answer and prompt tokens per answer (None where not kept)."""
    seconds = [row["seconds"] for row in rows if row.get("seconds") is not None]
    tokens = [row["answer_tokens"] for row in rows if row.get("answer_tokens") is not None]
    prompt_tokens = [row["prompt_tokens"] for row in rows if row.get("prompt_tokens") is not None]
    return {
        "seconds_per_answer": sum(seconds) / len(seconds) if seconds else None,
        "answer_tokens": sum(tokens) / len(tokens) if tokens else None,
        "prompt_tokens": sum(prompt_tokens) / len(prompt_tokens) if prompt_tokens else None,
    }


def _categories(per_example: dict[str, dict[str, list[float | None]]], questions: list[dict]) -> dict[str, Any]:
    """metric -> system -> category -> {mean, n}."""
    labels = [str(question.get("category") or "uncategorised") for question in questions]
    table: dict[str, Any] = defaultdict(dict)
    for system, scores in per_example.items():
        for metric, values in scores.items():
            grouped: dict[str, list[float | None]] = defaultdict(list)
            for label, value in zip(labels, values):
                grouped[label].append(value)
            table[metric][system] = {label: aggregate(group) for label, group in sorted(grouped.items())}
    return dict(table)


def _predictions(name: str, system: System, resources: PromptResources, questions: list[dict], stage: str) -> list[dict]:
    config, paths, strategy = resources.config, resources.paths, system.strategy
    reference = model_reference(strategy, config, paths)
    prompts = build_prompts(strategy, questions, resources)
    tokens = max_new_tokens(strategy, config)
    with_logliks = any(name in LOGLIK_METRICS for name in config.eval.metrics) and any(q.get("options") for q in questions)
    dtype = _dtype(strategy.model, config)
    fingerprint = _fingerprint(reference, prompts.conversations, tokens, with_logliks, strategy.chain_of_thought, paths, dtype)
    cached = paths.predictions(name, stage)
    if cached.is_file():
        rows = read_jsonl(cached)
        if len(rows) == len(questions) and all(row.get("fingerprint") == fingerprint for row in rows):
            return _checked(rows, resources)
    answers = _answer(reference, prompts.conversations, questions, config, tokens, with_logliks, f"{stage}: {name}", dtype)
    rows = []
    for question, answer, retrieved in zip(questions, answers, prompts.retrieved):
        if strategy.chain_of_thought:
            answer["raw"], answer["prediction"] = answer["prediction"], final_answer(answer["prediction"])
        if retrieved:
            answer["retrieved"] = retrieved
            answer["seconds"] = round(answer["seconds"] + prompts.retrieval_seconds, 4)
        rows.append({
            "id": question["id"], "question": question["question"], "reference": question.get("answer"),
            "scope": question.get("scope", "in"), "category": question.get("category"), "source": question.get("source"),
            **answer, "fingerprint": fingerprint,
        })
    write_jsonl(cached, rows)
    return _checked(rows, resources)


def _checked(rows: list[dict], resources: PromptResources) -> list[dict]:
    """Rows whose answers from excerpts the excerpts do not back are refusals (``retrieval.answer_check``).

    The generated answer is kept as ``unchecked`` when it was replaced, so changing the check needs no
    new generation.
    """
    config = resources.config
    by_id = {chunk.chunk_id: chunk for chunk in resources.chunks} if any(row.get("retrieved") for row in rows) else {}
    for row in rows:
        generated = row.pop("unchecked", row["prediction"])
        excerpts = [by_id[chunk_id] for chunk_id in row.get("retrieved") or [] if chunk_id in by_id]
        row["prediction"] = checked_answer(generated, excerpts, config.refusal_text, config.retrieval.answer_check)
        if row["prediction"] != generated:
            row["unchecked"] = generated
    return rows


def _dtype(role: str, config: RunConfig) -> torch.dtype:
    """The teacher answers in the number format it wrote the training data in (``teacher.dtype``); others in float32."""
    from domainkd.teachers.hf import teacher_dtype

    if role == "teacher" and config.teacher.backend == "hf":
        return teacher_dtype(config.teacher.dtype)
    return torch.float32


def _fingerprint(
    reference: str, conversations: list, max_new_tokens: int, with_logliks: bool, chain_of_thought: bool, paths: RunPaths,
    dtype: torch.dtype = torch.float32,
) -> str:
    weights = paths.model / "model.safetensors"
    model_stamp = weights.stat().st_mtime_ns if reference == str(paths.model) and weights.exists() else 0
    parts = [reference, model_stamp, conversations, max_new_tokens]
    parts += (["option log-likelihoods"] if with_logliks else []) + (["chain of thought"] if chain_of_thought else [])
    parts += [str(dtype)] if dtype != torch.float32 else []
    payload = json.dumps(parts, sort_keys=True)  # without the optional parts, the same key as before they existed
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _answer(
    reference: str, conversations: list, questions: list[dict], config: RunConfig, max_new_tokens: int,
    with_logliks: bool, label: str, dtype: torch.dtype = torch.float32,
) -> list[dict[str, Any]]:
    """Each question's generated answer with its cost, and option log-likelihoods for multiple choice."""
    model, tokenizer = load_causal_lm(reference, dtype=dtype)
    if torch.cuda.is_available():
        model.to("cuda")
    answers = _generate(model, tokenizer, conversations, config.eval.batch_size, max_new_tokens, label)
    if with_logliks:
        _add_option_logliks(model, tokenizer, questions, answers, config)
    del model
    gc.collect()
    return answers


def _generate(
    model: Any, tokenizer: Any, conversations: list, batch_size: int, max_new_tokens: int, label: str
) -> list[dict[str, Any]]:
    prompts = [render_prompt(tokenizer, messages) for messages in conversations]
    order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))  # similar lengths batch together
    answers: list[dict[str, Any]] = [{} for _ in prompts]
    for start in tqdm(range(0, len(order), batch_size), desc=label, unit="batch"):
        batch = order[start : start + batch_size]
        began = time.perf_counter()
        texts = generate_texts(model, tokenizer, [prompts[i] for i in batch], max_new_tokens)
        seconds = (time.perf_counter() - began) / len(batch)  # batched: each answer's share of the batch time
        for index, text in zip(batch, texts):
            answers[index] = {
                "prediction": text, "seconds": round(seconds, 4),
                "answer_tokens": len(tokenizer(text, add_special_tokens=False)["input_ids"]),
                "prompt_tokens": len(tokenizer(prompts[index], add_special_tokens=False)["input_ids"]),
            }
    return answers


def _add_option_logliks(model: Any, tokenizer: Any, questions: list[dict], answers: list[dict], config: RunConfig) -> None:
    from domainkd.evaluation.mcq import mcq_question, option_logliks

    positions = [index for index, question in enumerate(questions) if question.get("options")]
    logliks = option_logliks(
        model, tokenizer, [mcq_question(questions[i]) for i in positions],
        batch_size=config.eval.batch_size, system_prompt=config.system_prompt,
    )
    for position, values in zip(positions, logliks):
        answers[position]["option_logliks"] = [list(value) for value in values]

