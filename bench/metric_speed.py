"""Scoring speed of the metric preset without the judge: seconds to score N answers on this CPU.

Answers and references are real telecom text: each TeleQnA question's correct option is the
answer, its explanation the reference (../shared/data/teleqna; without it, the handbook's
reference answers paired with shuffled ones). Times every metric of ``paper14_no_judge``
plus exact match, token F1 and the behaviour metrics through the registry (the path
``domainkd eval`` takes), after loading the encoder and WordNet once (load times reported
apart). Issue 5's goal: ≤ 60 s for 1,000 answers. Writes JSON and prints a table.

    python bench/metric_speed.py --answers 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import torch

from domainkd.evaluation.registry import PRESETS, MetricContext, expand_metric_names, score_all

REPO = Path(__file__).resolve().parents[1]
TELEQNA = REPO.parent / "shared" / "data" / "teleqna" / "teleqna.json.gz"
METRICS = expand_metric_names(["paper14_no_judge", "exact_match", "token_f1", "behaviour"])


def answer_pairs(count: int) -> tuple[list[dict], list[dict], str]:
    """``count`` (row, example) pairs of real text and where they came from."""
    if TELEQNA.is_file():
        from domainkd.evaluation.mcq import read_teleqna, stratified_subset

        questions = stratified_subset(read_teleqna(TELEQNA), count)
        rows = [{"prediction": q.options[q.answer_index]} for q in questions]
        examples = [{"question": q.question, "answer": q.explanation, "scope": "in"} for q in questions]
        return rows, examples, "TeleQnA: correct option vs explanation"
    handbook = [json.loads(line) for line in (REPO / "examples/handbook/eval.jsonl").read_text().splitlines() if line]
    examples = [handbook[i % len(handbook)] for i in range(count)]
    answers = [example.get("answer") or "I don't know." for example in examples]
    random.Random(0).shuffle(answers)
    return [{"prediction": answer} for answer in answers], examples, "handbook: shuffled reference answers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=Path("bench/results/metric_speed.json"))
    args = parser.parse_args()

    rows, examples, source = answer_pairs(args.answers)
    context = MetricContext()
    began = time.perf_counter()
    context.encoder()
    encoder_load = time.perf_counter() - began
    began = time.perf_counter()
    from domainkd.evaluation.wordnet import load_wordnet

    load_wordnet()
    wordnet_load = time.perf_counter() - began

    per_metric: dict[str, float] = {}
    began = time.perf_counter()
    means: dict[str, float | None] = {}
    for metric in METRICS:
        start = time.perf_counter()
        scores = score_all([metric], rows, examples, context)[metric]
        per_metric[metric] = time.perf_counter() - start
        valid = [score for score in scores if score is not None]
        means[metric] = sum(valid) / len(valid) if valid else None
    total = time.perf_counter() - began

    result = {
        "answers": len(rows), "source": source, "metrics": METRICS, "preset": list(PRESETS["paper14_no_judge"]),
        "seconds_total": round(total, 2), "goal_seconds": 60.0, "met": total <= 60.0,
        "seconds_per_metric": {name: round(value, 3) for name, value in per_metric.items()},
        "means": means, "encoder_load_s": round(encoder_load, 2), "wordnet_load_s": round(wordnet_load, 2),
        "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(rows)} answers ({source}); encoder load {encoder_load:.1f} s, WordNet load {wordnet_load:.1f} s")
    print(f"{'metric':22} {'seconds':>8} {'mean':>7}")
    for name in METRICS:
        mean = "–" if means[name] is None else f"{means[name]:.3f}"
        print(f"{name:22} {per_metric[name]:8.2f} {mean:>7}")
    print(f"{'total':22} {total:8.2f}   (goal ≤ 60 s: {'met' if total <= 60 else 'NOT met'})")


if __name__ == "__main__":
    main()
