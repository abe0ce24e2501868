"""Teacher generation speed on the demo's question prompts: batch size and shared-prefix caching.

Builds the context_qa prompts for the first facts of the embedded handbook, generates with
the given teacher at each batch size, with and without encoding the shared prompt start once,
and reports prompts per second. Writes JSON and prints a table.

    python bench/teacher_throughput.py --model qwen2.5-coder-0.5b-instruct --prompts 64 --batch-sizes 32
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from domainkd.data import prompts as teacher_prompts
from domainkd.models import generate_texts, load_causal_lm, render_prompt
from domainkd.sources import chunk_sections, read_documents, split_facts

HANDBOOK = Path(__file__).resolve().parents[1] / "examples" / "handbook" / "docs"


def question_prompts(tokenizer, count: int) -> list[str]:
    chunks = chunk_sections(read_documents(HANDBOOK), chunk_words=220, overlap_words=30)
    facts = [(chunk.title, fact) for chunk in chunks for fact in split_facts(chunk.text)]
    return [render_prompt(tokenizer, teacher_prompts.qa_conversation(title, fact)) for title, fact in facts[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--output", type=Path, default=Path("bench/results/teacher_throughput.json"))
    args = parser.parse_args()

    model, tokenizer = load_causal_lm(args.model)
    prompts = question_prompts(tokenizer, args.prompts)
    rows = []
    for batch_size in args.batch_sizes:
        for share_prefix in (False, True):
            start = time.perf_counter()
            answers = []
            for first in range(0, len(prompts), batch_size):
                batch = prompts[first : first + batch_size]
                answers += generate_texts(model, tokenizer, batch, args.max_new_tokens, share_prefix=share_prefix)
            seconds = time.perf_counter() - start
            rows.append({"batch_size": batch_size, "share_prefix": share_prefix, "prompts": len(prompts),
                         "seconds": round(seconds, 1), "prompts_per_second": round(len(prompts) / seconds, 2),
                         "answers": answers})
    same = all(a["answers"] == b["answers"] for a, b in zip(rows[::2], rows[1::2]))
    result = {"model": args.model, "max_new_tokens": args.max_new_tokens, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "identical_answers": same,
              "runs": [{k: v for k, v in row.items() if k != "answers"} for row in rows]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"teacher {args.model}, {len(prompts)} question prompts, max_new_tokens {args.max_new_tokens}")
    print("| batch | shared prefix | seconds | prompts/s |\n|---:|---|---:|---:|")
    for row in result["runs"]:
        print(f"| {row['batch_size']} | {'yes' if row['share_prefix'] else 'no'} | {row['seconds']} | {row['prompts_per_second']} |")
    print(f"same answers with and without the shared prefix: {same}; JSON: {args.output}")


if __name__ == "__main__":
    main()
