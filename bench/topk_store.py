"""Offline teacher top-k store on real outputs: bytes per token and how close top-k KD is to full KD.

Teacher SmolLM2-135M-Instruct; student the same model cut to its first layers (an untrained
stand-in for a smaller student with the same vocabulary) or any model with that vocabulary. For the handbook's held-out
question/reference pairs it records the teacher's top-k (and ``--tail-samples`` draws from its
tail) into a store, then compares per example the forward KL computed from the store — top-k +
one tail bucket alone, and with the tail-sample correction — with the forward KL over the full
vocabulary, and with the naive reconstruction that spreads the tail mass uniformly over the
other tokens. Writes JSON and prints a table.

    python bench/topk_store.py --k 64
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from _common import handbook_examples
from domainkd.distill import forward_kl, record_teacher_topk, topk_divergence
from domainkd.models import keep_first_layers, load_causal_lm
from domainkd.training.collate import IGNORE_INDEX


def uniform_tail_kl(teacher_logprobs: torch.Tensor, ids: torch.Tensor, logprobs: torch.Tensor, log_tail: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ p̂) per position, p̂ = stored top-k plus the tail mass spread evenly over the other tokens."""
    vocab = teacher_logprobs.shape[-1]
    rebuilt = (log_tail - math.log(vocab - ids.shape[-1]))[:, None].expand(-1, vocab).clone()
    rebuilt.scatter_(-1, ids, logprobs)
    return (teacher_logprobs.exp() * (teacher_logprobs - rebuilt)).sum(-1)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--student", default=None, help="student model reference (default: the teacher cut to --student-layers)")
    parser.add_argument("--student-layers", type=int, default=10)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--tail-samples", type=int, default=8, help="ids drawn from the teacher's tail per token (0: none)")
    parser.add_argument("--output", type=Path, default=Path("bench/results/topk_store.json"))
    args = parser.parse_args()

    teacher, tokenizer = load_causal_lm(args.model)
    student, _ = load_causal_lm(args.student or args.model)
    if args.student is None:
        keep_first_layers(student, args.student_layers)
    data = handbook_examples(tokenizer)
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        store = record_teacher_topk(
            teacher, data, directory, args.k, fingerprint={"bench": args.model}, progress=False, tail_samples=args.tail_samples
        )
        seconds = time.perf_counter() - started
        tokens = store.meta["tokens_done"]
        on_disk = sum(path.stat().st_size for path in Path(directory).iterdir() if path.name != "meta.json")
        full, topk, corrected, uniform = [], [], [], []
        for index, example in enumerate(data):
            input_ids = torch.tensor([example["input_ids"]])
            response = torch.tensor(example["labels"][1:]) != IGNORE_INDEX  # (T-1,)
            teacher_logits = teacher(input_ids=input_ids).logits[0, :-1][response]  # (n, V)
            student_logits = student(input_ids=input_ids).logits[0, :-1][response]  # (n, V)
            ids, logprobs, log_tail = store[index]
            full.append(forward_kl(student_logits, teacher_logits).mean().item())
            topk.append(topk_divergence(student_logits, ids, logprobs, log_tail).mean().item())
            tail = store.tail(index) or ()
            corrected.append(topk_divergence(student_logits, ids, logprobs, log_tail, "forward_kl", 1.0, *tail).mean().item())
            uniform.append(uniform_tail_kl(torch.log_softmax(teacher_logits.float(), -1), ids, logprobs, log_tail).mean().item())
    relative = [abs(t - f) / f for t, f in zip(topk, full)]
    relative_corrected = [(t - f) / f for t, f in zip(corrected, full)]
    result = {
        "teacher": args.model, "student": args.student or f"{args.model} first {args.student_layers} layers", "k": args.k,
        "vocab_size": store.meta["vocab_size"], "examples": len(data), "response_tokens": tokens,
        "bytes_per_token": store.bytes_per_token, "bytes_on_disk_per_token": round(on_disk / tokens, 1),
        "record_seconds": round(seconds, 1),
        "mean_full_forward_kl": round(sum(full) / len(full), 4), "mean_topk_forward_kl": round(sum(topk) / len(topk), 4),
        "tail_samples": args.tail_samples,
        "mean_relative_difference_topk_bucket_only": round(sum(relative) / len(relative), 4),
        "max_relative_difference_topk_bucket_only": round(max(relative), 4),
        "mean_topk_with_tail_forward_kl": round(sum(corrected) / len(corrected), 4),
        "mean_signed_relative_difference_with_tail": round(sum(relative_corrected) / len(relative_corrected), 4),
        "mean_abs_relative_difference_with_tail": round(sum(map(abs, relative_corrected)) / len(relative_corrected), 4),
        "max_abs_relative_difference_with_tail": round(max(map(abs, relative_corrected)), 4),
        "mean_uniform_tail_reconstruction_kl": round(sum(uniform) / len(uniform), 4),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("| measure | value |\n|---|---:|")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    print(f"JSON: {args.output}")


if __name__ == "__main__":
    main()
