"""TeleQnA benchmark: multiple-choice accuracy per category and generative metrics against the explanations.

A stratified subset of ../shared/data/teleqna (10,000 real telecom multiple-choice questions)
is answered by each model three ways:

1. option log-likelihood: the option whose text the model finds most likely after the question
   (summed log-probability, and per byte as lm-eval's acc_norm);
2. generated choice: the model is asked for the option number; the answer is parsed;
3. open answer: the bare question (no options); the answer is scored against the question's
   explanation with the ``paper14_no_judge`` preset plus token F1.

Per-example scores are kept, so the models are compared with paired bootstrap intervals and
Wilcoxon signed-rank tests (Holm-corrected). Writes JSON and prints Markdown tables.

    python bench/teleqna.py --models smollm2-135m-instruct qwen2.5-coder-0.5b-instruct --questions 200
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from domainkd.evaluation.mcq import (
    generated_choice_accuracy, loglik_choice, mcq_prompt, option_logliks, parse_option, read_teleqna, stratified_subset,
)
from domainkd.evaluation.registry import METRICS, MetricContext, aggregate, expand_metric_names, score_all
from domainkd.evaluation.statistics import compare_systems, mean_ci
from domainkd.models import chat_messages, generate_texts, load_causal_lm, render_prompt

TELEQNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "teleqna" / "teleqna.json.gz"
SYSTEM_PROMPT = "You are an expert in telecommunications standards and research."
OPEN_INSTRUCTION = "Answer the question in one or two sentences."
GENERATIVE = expand_metric_names(["paper14_no_judge", "token_f1"])


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers, longest prompts batched together."""
    order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))
    answers = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        for index, text in zip(batch, generate_texts(model, tokenizer, [prompts[i] for i in batch], max_new_tokens)):
            answers[index] = text
    return answers


def run_model(name: str, questions, args) -> dict:
    """Every per-example score of one model, with timings."""
    model, tokenizer = load_causal_lm(name)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    logliks = option_logliks(model, tokenizer, questions, batch_size=args.batch_size, system_prompt=SYSTEM_PROMPT)
    timings["loglik_s"] = time.perf_counter() - began

    began = time.perf_counter()
    choice_prompts = [render_prompt(tokenizer, chat_messages(SYSTEM_PROMPT, mcq_prompt(q))) for q in questions]
    choices = generate(model, tokenizer, choice_prompts, 24, args.batch_size)
    timings["choice_generation_s"] = time.perf_counter() - began

    began = time.perf_counter()
    open_prompts = [
        render_prompt(tokenizer, chat_messages(SYSTEM_PROMPT, f"{OPEN_INSTRUCTION}\n\n{q.question}")) for q in questions
    ]
    answers = generate(model, tokenizer, open_prompts, args.max_new_tokens, args.batch_size)
    timings["open_generation_s"] = time.perf_counter() - began
    del model
    gc.collect()

    examples = [q.as_example() for q in questions]
    scores = {
        "mcq_loglik_accuracy": [float(loglik_choice(values, "sum") == q.answer_index) for values, q in zip(logliks, questions)],
        "mcq_loglik_accuracy_bytes": [float(loglik_choice(values, "bytes") == q.answer_index) for values, q in zip(logliks, questions)],
        "mcq_generated_accuracy": [generated_choice_accuracy({"prediction": text}, example) for text, example in zip(choices, examples)],
        "mcq_unparsed_rate": [float(parse_option(text, q.options) is None) for text, q in zip(choices, questions)],
    }
    began = time.perf_counter()
    scores |= score_all(GENERATIVE, [{"prediction": text} for text in answers], examples, MetricContext())
    timings["scoring_s"] = time.perf_counter() - began
    samples = [
        {"id": q.id, "category": q.category, "choice_answer": c, "open_answer": a, "explanation": q.explanation}
        for q, c, a in list(zip(questions, choices, answers))[:5]
    ]
    return {"scores": scores, "timings": {key: round(value, 1) for key, value in timings.items()}, "samples": samples}


def summarise(results: dict, questions) -> dict:
    """Means with 95% CIs overall and per category, and the paired comparisons."""
    categories = sorted({q.category for q in questions})
    summary: dict = {"overall": {}, "by_category": defaultdict(dict)}
    for model, result in results.items():
        summary["overall"][model] = {}
        for metric, values in result["scores"].items():
            low, high = mean_ci(values)
            summary["overall"][model][metric] = {**aggregate(values), "ci_low": low, "ci_high": high}
        for category in categories:
            picked = [i for i, q in enumerate(questions) if q.category == category]
            summary["by_category"][category][model] = {
                metric: aggregate([result["scores"][metric][i] for i in picked])["mean"]
                for metric in ("mcq_loglik_accuracy", "mcq_generated_accuracy")
            }
    directions = {metric: METRICS[metric].higher_is_better if metric in METRICS else metric != "mcq_unparsed_rate"
                  for metric in next(iter(results.values()))["scores"]}
    summary["comparisons"] = compare_systems({m: r["scores"] for m, r in results.items()}, directions) if len(results) > 1 else {}
    summary["by_category"] = dict(summary["by_category"])
    return summary


def tables(summary: dict, questions) -> str:
    """Markdown: overall (mean and CI per metric) and MCQ accuracy per category."""
    models = list(summary["overall"])
    metrics = list(next(iter(summary["overall"].values())))
    lines = ["| metric | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for metric in metrics:
        cells = []
        for model in models:
            entry = summary["overall"][model][metric]
            cells.append("–" if entry["mean"] is None else f"{100 * entry['mean']:.1f} ({100 * entry['ci_low']:.1f}–{100 * entry['ci_high']:.1f})")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    counts = defaultdict(int)
    for q in questions:
        counts[q.category] += 1
    lines += ["", "| category (n) | " + " | ".join(f"{m} loglik / generated" for m in models) + " |", "|---|" + "---:|" * len(models)]
    for category, per_model in summary["by_category"].items():
        cells = [f"{100 * per_model[m]['mcq_loglik_accuracy']:.1f} / {100 * per_model[m]['mcq_generated_accuracy']:.1f}" for m in models]
        lines.append(f"| {category} ({counts[category]}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("bench/results/teleqna.json"))
    args = parser.parse_args()
    if not TELEQNA.is_file():
        sys.exit(f"{TELEQNA} is missing; this benchmark needs the shared TeleQnA file.")

    questions = stratified_subset(read_teleqna(TELEQNA), args.questions, seed=args.seed)
    results = {}
    for name in args.models:
        began = time.perf_counter()
        results[name] = run_model(name, questions, args)
        print(f"{name}: {time.perf_counter() - began:.0f} s {results[name]['timings']}", flush=True)
    summary = summarise(results, questions)
    output = {
        "questions": len(questions), "seed": args.seed, "models": args.models, "max_new_tokens": args.max_new_tokens,
        "chance_accuracy": sum(1 / len(q.options) for q in questions) / len(questions),
        "summary": summary, "timings": {m: r["timings"] for m, r in results.items()},
        "samples": {m: r["samples"] for m, r in results.items()},
        "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2) + "\n")
    print(f"\n{len(questions)} TeleQnA questions (stratified, seed {args.seed}); chance accuracy {100 * output['chance_accuracy']:.1f}%\n")
    print(tables(summary, questions))
    for metric, pairs in summary["comparisons"].items():
        for pair in pairs:
            if pair["significant"]:
                print(f"{metric}: {pair['better']} better (Δ {100 * pair['mean_difference']:+.1f} for {pair['a']} − {pair['b']}, p_holm={pair['p_holm']:.3g})")


if __name__ == "__main__":
    main()
