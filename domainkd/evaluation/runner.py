"""The ``eval`` stage: every configured system answers the held-out questions; metrics per system.

Predictions are written per system (``eval/predictions-<system>.jsonl``) with a fingerprint,
so a rerun only recomputes systems whose model, prompt or questions changed.
"""

from __future__ import annotations

import gc
import hashlib
import json
from typing import Any

import torch
from tqdm.auto import tqdm

from domainkd.config import RunConfig
from domainkd.data.build import load_chunks
from domainkd.errors import DomainKDError
from domainkd.evaluation.metrics import METRICS, aggregate
from domainkd.evaluation.systems import SYSTEMS, conversation
from domainkd.io import read_jsonl, write_json, write_jsonl
from domainkd.models import generate_texts, load_causal_lm, render_prompt
from domainkd.paths import RunPaths


def load_questions(config: RunConfig) -> list[dict[str, Any]]:
    """Evaluation questions, checked for the fields the metrics need."""
    rows = read_jsonl(config.eval.questions)
    if not rows:
        raise DomainKDError(f"evaluation file {config.eval.questions} has no questions; add JSON lines with a question each.")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row.get("question"), str) or row.get("scope", "in") not in ("in", "out"):
            raise DomainKDError(
                f"{config.eval.questions} line {number} needs a 'question' string and 'scope' of 'in' or 'out'; fix that line."
            )
        if row.get("scope", "in") == "in" and not isinstance(row.get("answer"), str):
            raise DomainKDError(f"{config.eval.questions} line {number} is in scope but has no reference 'answer'; add one.")
        row.setdefault("id", f"line{number}")
    return rows[: config.eval.limit] if config.eval.limit else rows


def evaluate(config: RunConfig) -> dict[str, Any]:
    """Answer with every system, score every metric; write ``eval/metrics.json`` and return it."""
    paths = RunPaths(config.output_dir)
    questions = load_questions(config)
    chunks = load_chunks(paths)
    results: dict[str, Any] = {}
    for name in config.eval.systems:
        predictions = _predictions(name, config, paths, questions, chunks)
        results[name] = {
            metric: aggregate([row["scores"][metric] for row in predictions]) for metric in config.eval.metrics
        }
    metrics = {
        "questions": len(questions),
        "in_scope": sum(row.get("scope", "in") == "in" for row in questions),
        "metrics": {name: {"higher_is_better": METRICS[name].higher_is_better, "description": METRICS[name].description} for name in config.eval.metrics},
        "systems": {name: {"description": SYSTEMS[name].description, "scores": scores} for name, scores in results.items()},
    }
    write_json(paths.metrics, metrics)
    return metrics


def _predictions(name: str, config: RunConfig, paths: RunPaths, questions: list[dict], chunks: list) -> list[dict]:
    system = SYSTEMS[name]
    model_reference = system.model(config, paths)
    conversations = [conversation(system, q, config.system_prompt, config.refusal_text, chunks) for q in questions]
    fingerprint = _fingerprint(model_reference, conversations, config.eval.max_new_tokens, paths)
    cached = paths.predictions(name)
    if cached.is_file():
        rows = read_jsonl(cached)
        if rows and all(row.get("fingerprint") == fingerprint for row in rows) and len(rows) == len(questions):
            return _scored(rows, questions, config)
    answers = _generate(model_reference, conversations, config, label=f"eval: {name}")
    rows = [
        {"id": q["id"], "question": q["question"], "reference": q.get("answer"), "scope": q.get("scope", "in"),
         "category": q.get("category"), "source": q.get("source"), "prediction": a, "fingerprint": fingerprint}
        for q, a in zip(questions, answers)
    ]
    rows = _scored(rows, questions, config)
    write_jsonl(cached, rows)
    return rows


def _scored(rows: list[dict], questions: list[dict], config: RunConfig) -> list[dict]:
    by_id = {question["id"]: question for question in questions}
    for row in rows:
        example = by_id[row["id"]]
        row["facts"] = example.get("facts", [])
        row["scores"] = {metric: METRICS[metric].score(row["prediction"], example) for metric in config.eval.metrics}
    return rows


def _fingerprint(model_reference: str, conversations: list, max_new_tokens: int, paths: RunPaths) -> str:
    weights = paths.model / "model.safetensors"
    model_stamp = weights.stat().st_mtime_ns if model_reference == str(paths.model) and weights.exists() else 0
    payload = json.dumps([model_reference, model_stamp, conversations, max_new_tokens], sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _generate(model_reference: str, conversations: list, config: RunConfig, label: str) -> list[str]:
    model, tokenizer = load_causal_lm(model_reference)
    if torch.cuda.is_available():
        model.to("cuda")
    prompts = [render_prompt(tokenizer, messages) for messages in conversations]
    order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))
    answers: list[str] = [""] * len(prompts)
    size = config.eval.batch_size
    for start in tqdm(range(0, len(order), size), desc=label, unit="batch"):
        batch = order[start : start + size]
        for index, text in zip(batch, generate_texts(model, tokenizer, [prompts[i] for i in batch], config.eval.max_new_tokens)):
            answers[index] = text
    del model
    gc.collect()
    return answers
