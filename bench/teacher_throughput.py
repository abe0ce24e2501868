"""Local teacher throughput: batched generation ÷ one prompt at a time, through the `hf` teacher backend.

Builds the context_qa prompts for the first facts of the embedded handbook and answers them
with the teacher (`domainkd.teachers`, the path `domainkd teach` takes: every prompt handed over
at once, ``batch_size`` sequences decoding together with continuous batching) at each batch
size, greedy. For comparison, ``static`` rows answer the same prompts in fixed batches with
:func:`domainkd.models.generate_texts` (a batch runs until its longest answer ends; what the
teacher did before continuous batching). Reports prompts and generated tokens per second, and
each row's speed-up over batch 1 of the same number format (issue 4's goal: ≥ 4 at batch 8), and
how many answers equal batch 1's (all of them in float32; bf16 rounding differs with the batch
shape, so a few answers drift). Each ``--dtypes`` format is timed on its own: bfloat16 decodes
about twice as fast as float32 on CPUs with native bf16. Last, it times one decode step (median
of 12) over a ``--step-context``-token random context at each batch size: the ceiling batching
can reach is batch size × step(1) / step(batch). Writes JSON and prints a table.

    python bench/teacher_throughput.py --model qwen2.5-coder-0.5b-instruct --prompts 32 --batch-sizes 1 8
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
from domainkd.models import generate_texts, load_tokenizer, render_prompt
from domainkd.sources import chunk_sections, read_documents, split_facts, tokenizer_counter
from domainkd.teachers import build_teacher

HANDBOOK = Path(__file__).resolve().parents[1] / "examples" / "handbook" / "docs"


def question_conversations(model: str, count: int) -> list[list[dict[str, str]]]:
    """The first ``count`` context_qa conversations over the handbook, chunked as the demo does."""
    tokenizer = load_tokenizer(model)
    chunks = chunk_sections(read_documents(HANDBOOK), tokenizer_counter(tokenizer), chunk_tokens=320, overlap_tokens=40)
    facts = [(chunk.title, fact) for chunk in chunks for fact in split_facts(chunk.text)]
    return [teacher_prompts.qa_conversation(title, fact) for title, fact in facts[:count]]


def timed(batching: str, batch_size: int, answers: list[str], seconds: float, teacher) -> dict:
    """One row of the table: throughput of ``answers`` generated in ``seconds``."""
    tokens = sum(teacher._count_tokens(answer) for answer in answers)
    return {"batching": batching, "batch_size": batch_size, "prompts": len(answers), "seconds": round(seconds, 1),
            "prompts_per_second": round(len(answers) / seconds, 3), "generated_tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 2), "answers": answers}


@torch.inference_mode()
def decode_step_ms(model, batch_size: int, context: int, steps: int = 12) -> float:
    """Median milliseconds of one cached decode step for ``batch_size`` rows after a ``context``-token prompt."""
    ids = torch.randint(100, 1000, (batch_size, context), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    cache = model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1).past_key_values
    last, times = ids[:, -1:], []
    for _ in range(steps):
        positions = mask.sum(-1, keepdim=True)
        mask = torch.cat([mask, torch.ones_like(positions)], dim=-1)
        started = time.perf_counter()
        model(input_ids=last, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
        times.append(1000 * (time.perf_counter() - started))
    return round(sorted(times)[steps // 2], 1)


def measure(model: str, dtype: str, conversations, batch_sizes: list[int], static: bool, max_new_tokens: int,
            step_context: int) -> tuple[list[dict], dict[str, float]]:
    """The rows of one number format (speed-ups over its own batch 1) and its decode-step times."""
    teacher = build_teacher(TeacherConfig(model=model, max_new_tokens=max_new_tokens, dtype=dtype))
    teacher.load()
    teacher.generate(conversations[:1], 4)  # warm-up
    runs = []
    for batch_size in batch_sizes:
        teacher.batch_size = batch_size
        start = time.perf_counter()
        answers = [reply.text for reply in teacher.generate(conversations)]
        runs.append(timed("continuous", batch_size, answers, time.perf_counter() - start, teacher))
    for batch_size in [size for size in batch_sizes if size > 1 and static]:
        prompts = [render_prompt(teacher._tokenizer, conversation) for conversation in conversations]
        start, answers = time.perf_counter(), []
        for first in range(0, len(prompts), batch_size):
            answers += generate_texts(teacher._model, teacher._tokenizer, prompts[first : first + batch_size], max_new_tokens)
        runs.append(timed("static", batch_size, answers, time.perf_counter() - start, teacher))
    one = next((run for run in runs if run["batch_size"] == 1), None)
    for run in runs:
        run["dtype"] = dtype
        run["speedup_over_batch_1"] = round(run["prompts_per_second"] / one["prompts_per_second"], 2) if one else None
        run["answers_as_batch_1"] = sum(a == b for a, b in zip(run["answers"], one["answers"])) if one else None
    steps = {str(size): decode_step_ms(teacher._model, size, step_context) for size in batch_sizes}
    return runs, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "float16"],
                        help="teacher number formats to time, each against its own batch 1")
    parser.add_argument("--static", action=argparse.BooleanOptionalAction, default=True, help="also time fixed batches")
    parser.add_argument("--step-context", type=int, default=300, help="context tokens of the decode-step timing")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--output", type=Path, default=Path("bench/results/teacher_throughput.json"))
    args = parser.parse_args()

    conversations = question_conversations(args.model, args.prompts)
    runs, steps = [], {}
    for dtype in args.dtypes:
        dtype_runs, steps[dtype] = measure(args.model, dtype, conversations, args.batch_sizes, args.static,
                                           args.max_new_tokens, args.step_context)
        runs += dtype_runs
    result = {"model": args.model, "prompts": len(conversations), "max_new_tokens": args.max_new_tokens,
              "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
              "decode_step_ms": {"context_tokens": args.step_context, **steps},
              "runs": [{k: v for k, v in run.items() if k != "answers"} for run in runs]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"teacher {args.model}, {len(conversations)} question prompts, greedy, max_new_tokens {args.max_new_tokens}")
    print("| dtype | batching | batch | seconds | prompts/s | generated tok/s | speed-up over its batch 1 | answers as batch 1 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for run in result["runs"]:
        print(f"| {run['dtype']} | {run['batching']} | {run['batch_size']} | {run['seconds']} | {run['prompts_per_second']} | "
              f"{run['tokens_per_second']} | {run['speedup_over_batch_1']} | {run['answers_as_batch_1']}/{run['prompts']} |")
    for dtype, times in steps.items():
        print(f"{dtype}: one decode step after {args.step_context} tokens: "
              + ", ".join(f"batch {b}: {ms} ms" for b, ms in times.items()))
    print(f"JSON: {args.output}")


if __name__ == "__main__":
    main()
