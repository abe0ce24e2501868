"""Local teacher throughput: batched generation ÷ one prompt at a time, through the `hf` teacher backend.

Builds the context_qa prompts for the first facts of the embedded handbook and answers them
with the teacher (`domainkd.teachers`, the path `domainkd teach` takes) at each batch size,
greedy. Reports prompts and generated tokens per second, and each batch size's speed-up over
batch 1 (issue 4's goal: ≥ 4 at batch 8). Writes JSON and prints a table.

    python bench/teacher_throughput.py --model qwen2.5-coder-0.5b-instruct --prompts 16 --batch-sizes 1 8
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from domainkd.config import TeacherConfig
from domainkd.data import prompts as teacher_prompts
from domainkd.models import load_tokenizer
from domainkd.sources import chunk_sections, read_documents, split_facts
from domainkd.teachers import build_teacher

HANDBOOK = Path(__file__).resolve().parents[1] / "examples" / "handbook" / "docs"


def question_conversations(model: str, count: int) -> list[list[dict[str, str]]]:
    """The first ``count`` context_qa conversations over the handbook, chunked as the demo does."""
    tokenizer = load_tokenizer(model)
    count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    chunks = chunk_sections(read_documents(HANDBOOK), count_tokens, chunk_tokens=320, overlap_tokens=40)
    facts = [(chunk.title, fact) for chunk in chunks for fact in split_facts(chunk.text)]
    return [teacher_prompts.qa_conversation(title, fact) for title, fact in facts[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--output", type=Path, default=Path("bench/results/teacher_throughput.json"))
    args = parser.parse_args()

    conversations = question_conversations(args.model, args.prompts)
    teacher = build_teacher(TeacherConfig(model=args.model, max_new_tokens=args.max_new_tokens))
    teacher.load()
    teacher.generate(conversations[:1], 4)  # warm-up
    runs = []
    for batch_size in args.batch_sizes:
        start, replies = time.perf_counter(), []
        for first in range(0, len(conversations), batch_size):
            replies += teacher.generate(conversations[first : first + batch_size])
        seconds = time.perf_counter() - start
        tokens = sum(reply.completion_tokens or 0 for reply in replies)
        runs.append({"batch_size": batch_size, "prompts": len(replies), "seconds": round(seconds, 1),
                     "prompts_per_second": round(len(replies) / seconds, 3), "generated_tokens": tokens,
                     "tokens_per_second": round(tokens / seconds, 2), "answers": [reply.text for reply in replies]})
    one = next((run for run in runs if run["batch_size"] == 1), None)
    for run in runs:
        run["speedup_over_batch_1"] = round(run["prompts_per_second"] / one["prompts_per_second"], 2) if one else None
    same = len({tuple(run["answers"]) for run in runs}) == 1
    result = {"model": args.model, "max_new_tokens": args.max_new_tokens, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "identical_answers_across_batch_sizes": same,
              "runs": [{k: v for k, v in run.items() if k != "answers"} for run in runs]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"teacher {args.model}, {len(conversations)} question prompts, greedy, max_new_tokens {args.max_new_tokens}")
    print("| batch | seconds | prompts/s | generated tok/s | speed-up over batch 1 |\n|---:|---:|---:|---:|---:|")
    for run in result["runs"]:
        print(f"| {run['batch_size']} | {run['seconds']} | {run['prompts_per_second']} | {run['tokens_per_second']} | "
              f"{run['speedup_over_batch_1']} |")
    print(f"same answers at every batch size: {same}; JSON: {args.output}")


if __name__ == "__main__":
    main()
