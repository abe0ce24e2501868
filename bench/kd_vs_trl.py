"""White-box KD step time and memory against plain SFT and TRL's GKDTrainer, on the same batches.

Teacher SmolLM2-135M-Instruct; student the same model cut to its first 10 layers. Every method
trains the same student on the same batches of 8 × 128 tokens on this CPU, each in its own
process so that its peak memory is its own:

- ``hf_sft``: the stock Hugging Face Trainer with :class:`PadCollator`, cross-entropy on the
  answers (the model's own loss: logits at every position);
- ``sft``: domainkd's plain SFT (:class:`SFTTrainer`): the same loss from logits computed at the
  answer positions only, as every domainkd trainer does;
- ``kd_offline``: :class:`KDTrainer` against the teacher's top-k, recorded beforehand into a
  :class:`TopKStore` by a separate process (its time is reported, not counted in the step);
- ``kd_online``: :class:`KDTrainer` with the teacher in memory, run at every step;
- ``trl_gkd``: ``trl.experimental.gkd.GKDTrainer`` with the same teacher and student,
  off-policy (``lmbda=0``, ``seq_kd=False``), forward KL (``beta=0``), temperature 1.

KD runs at ``alpha=1``, forward KL only, which is GKD's objective at ``beta=0`` (the first
logged losses of ``kd_online`` and ``trl_gkd`` should agree); KDTrainer computes the
cross-entropy for its log at any alpha, so alpha does not change the cost of a step.

Data: the handbook's held-out pairs, each tokenised as one chat exchange (loss on the answer
only), packed back to back, cycling through the pairs, into sequences of exactly 128 tokens
(the pair cut at the end is dropped). No padding and sequential sampling, so batch ``i`` is
sequences ``8i … 8i+7`` for every method.

Each run takes ``--warmup`` + ``--steps`` optimizer steps, timed from ``on_step_begin`` to
``on_step_end``; the median of the timed steps is reported. Peak RSS is ``ru_maxrss`` of the
method's process after its high-water mark is reset (``/proc/self/clear_refs``) once the
models are loaded: the cut student is loaded whole first, which would otherwise count a
30-layer model in every run. The load peak is reported beside it. The top-k-vs-full gap is
the relative difference of the token-mean forward KL, teacher → untrained student, on the
benchmark batches: top-k plus one tail bucket from the store against the full vocabulary.

    python bench/kd_vs_trl.py --steps 6
    python bench/kd_vs_trl.py --tiny --steps 3   # tiny random Llamas: an end-to-end check in seconds

TRL is needed only here: ``pip install -e '.[bench]'`` (trl 1.16.0).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

BATCH = 8
METHODS = ("hf_sft", "sft", "kd_offline", "kd_online", "trl_gkd")
RATIOS = {  # name: (numerator method, denominator method, measure)
    "kd_offline_over_sft_step": ("kd_offline", "sft", "median_step_seconds"),
    "kd_online_over_sft_step": ("kd_online", "sft", "median_step_seconds"),
    "sft_over_hf_trainer_sft_step": ("sft", "hf_sft", "median_step_seconds"),
    "kd_offline_over_trl_gkd_step": ("kd_offline", "trl_gkd", "median_step_seconds"),
    "kd_online_over_trl_gkd_step": ("kd_online", "trl_gkd", "median_step_seconds"),
    "kd_offline_over_trl_gkd_peak_rss": ("kd_offline", "trl_gkd", "peak_rss_mib"),
    "kd_online_over_trl_gkd_peak_rss": ("kd_online", "trl_gkd", "peak_rss_mib"),
}
GOALS = {  # issue 3; all "at most"
    "kd_offline_over_sft_step": 1.15,
    "kd_offline_over_trl_gkd_step": 0.5,
    "kd_offline_over_trl_gkd_peak_rss": 0.6,
    "topk_with_tail_vs_full_relative_gap": 0.05,  # the offline loss domainkd trains with
}


# --- models and data (method processes) ----------------------------------------------
# torch, transformers and domainkd are imported inside the functions: the parent only spawns
# the method processes and collects their JSON, and stays small.


def tiny_llama(vocab_size: int, seed: int):
    """A random 2-layer Llama (hidden 64), the same weights in every process for the same seed."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        initializer_range=0.3,  # peaked distributions, so the KL values mean something
    )
    return LlamaForCausalLM(config).eval()


def load_teacher(args: argparse.Namespace, tokenizer):
    from domainkd.models import load_causal_lm

    return tiny_llama(len(tokenizer), args.seed) if args.tiny else load_causal_lm(args.model)[0]


def load_student(args: argparse.Namespace, tokenizer):
    from domainkd.models import keep_first_layers

    return keep_first_layers(load_teacher(args, tokenizer), student_layers(args))


def student_layers(args: argparse.Namespace) -> int:
    return 1 if args.tiny else args.student_layers


def packed_sequences(examples: list[dict], count: int, length: int) -> list[dict]:
    """``count`` sequences of exactly ``length`` tokens: tokenised exchanges back to back, cycling through them."""
    sequences, next_example = [], 0
    for index in range(count):
        input_ids, labels = [], []
        while len(input_ids) < length:
            example = examples[next_example % len(examples)]
            input_ids, labels = input_ids + example["input_ids"], labels + example["labels"]
            next_example += 1
        sequences.append({"input_ids": input_ids[:length], "labels": labels[:length], "index": index})
    return sequences


def benchmark_data(args: argparse.Namespace):
    """The tokenizer and the ``BATCH × (warmup + steps)`` training sequences, the same in every process."""
    from _common import handbook_examples

    from domainkd.models import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    examples = handbook_examples(tokenizer, max_length=args.length)
    return tokenizer, packed_sequences(examples, BATCH * (args.warmup + args.steps), args.length)


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def reset_peak_rss() -> bool:
    """Reset this process's resident high-water mark to its current RSS (Linux ≥ 4.0); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- the teacher's store and the top-k gap -------------------------------------------


def record_store(args: argparse.Namespace) -> dict:
    """Record the teacher's top-k for the benchmark data into ``args.store_dir``; measure the top-k-vs-full gap."""
    import torch

    from domainkd.config import KDConfig
    from domainkd.distill import record_teacher_topk

    tokenizer, data = benchmark_data(args)
    teacher = load_teacher(args, tokenizer)
    started = time.perf_counter()
    tail_samples = KDConfig().tail_samples  # what `domainkd train` records for the forward KL
    store = record_teacher_topk(
        teacher, data, args.store_dir, args.k, fingerprint={"bench": "kd_vs_trl"}, batch_size=BATCH, progress=False,
        tail_samples=tail_samples,
    )
    seconds = time.perf_counter() - started
    tokens = store.meta["tokens_done"]
    return {
        "k": args.k, "vocab_size": store.meta["vocab_size"], "bytes_per_token": store.bytes_per_token,
        "record_seconds": round(seconds, 2), "response_tokens": tokens,
        "response_tokens_per_batch": round(tokens / (len(data) / BATCH), 1), "threads": torch.get_num_threads(),
        **topk_gap(teacher, load_student(args, tokenizer), store, data),
    }


def topk_gap(teacher, student, store, data: list[dict]) -> dict:
    """Token-mean forward KL teacher → student at the response positions: full vocabulary vs the store's top-k."""
    import torch

    from domainkd.distill import IGNORE_INDEX, forward_kl, topk_divergence
    from domainkd.training.collate import PadCollator

    full, topk, corrected = 0.0, 0.0, 0.0
    with torch.inference_mode():
        for start in range(0, len(data), BATCH):
            batch = PadCollator(0)(data[start : start + BATCH])  # all rows the same length: no padding
            response = batch["labels"][:, 1:] != IGNORE_INDEX  # (B, T-1)
            teacher_logits = teacher(input_ids=batch["input_ids"]).logits[:, :-1][response]  # (N, V)
            student_logits = student(input_ids=batch["input_ids"]).logits[:, :-1][response]  # (N, V)
            ids, logprobs, log_tail = (torch.cat(part) for part in zip(*(store[i] for i in batch_indices(start, data))))
            full += forward_kl(student_logits, teacher_logits).sum().item()
            topk += topk_divergence(student_logits, ids, logprobs, log_tail).sum().item()
            tails = [store.tail(i) for i in batch_indices(start, data)]
            tail = () if tails[0] is None else tuple(torch.cat(part) for part in zip(*tails))
            corrected += topk_divergence(student_logits, ids, logprobs, log_tail, "forward_kl", 1.0, *tail).sum().item()
    tokens = store.meta["tokens_done"]
    return {
        "mean_full_forward_kl": round(full / tokens, 4),
        "mean_topk_forward_kl": round(topk / tokens, 4),
        "topk_vs_full_relative_gap": round(abs(topk - full) / full, 4),
        "tail_samples": store.meta["tail_samples"],
        "topk_with_tail_vs_full_relative_gap": round(abs(corrected - full) / full, 4),
    }


def batch_indices(start: int, data: list[dict]) -> list[int]:
    return [row["index"] for row in data[start : start + BATCH]]


# --- one trainer per method ----------------------------------------------------------


def training_settings(args: argparse.Namespace, output_dir: str) -> dict:
    """TrainingArguments shared by every method."""
    return {
        "output_dir": output_dir, "max_steps": args.warmup + args.steps, "per_device_train_batch_size": BATCH,
        "learning_rate": 1e-5, "use_cpu": True, "bf16": False, "save_strategy": "no", "report_to": "none",
        "logging_steps": 1, "disable_tqdm": True, "dataloader_num_workers": 0, "seed": args.seed,
        "remove_unused_columns": False, "train_sampling_strategy": "sequential", "optim": "adamw_torch",
    }


def sft_trainer(args, tokenizer, data, output_dir, stock: bool = False):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from domainkd.training.collate import PadCollator
    from domainkd.training.sft import SFTTrainer

    return (Trainer if stock else SFTTrainer)(
        model=load_student(args, tokenizer), args=TrainingArguments(**training_settings(args, output_dir)),
        train_dataset=Dataset.from_list(data), data_collator=PadCollator(tokenizer.pad_token_id),
    )


def kd_trainer(args, tokenizer, data, output_dir, online: bool):
    from datasets import Dataset
    from transformers import TrainingArguments

    from domainkd.config import KDConfig
    from domainkd.distill import TopKStore
    from domainkd.distill.trainer import KDCollator, KDTrainer

    kd = KDConfig(alpha=args.alpha, top_k=args.k, teacher_logits="online" if online else "offline")
    teacher_signal = {"teacher": load_teacher(args, tokenizer)} if online else {"store": TopKStore(args.store_dir)}
    return KDTrainer(
        model=load_student(args, tokenizer), args=TrainingArguments(**training_settings(args, output_dir)),
        train_dataset=Dataset.from_list(data), data_collator=KDCollator(tokenizer.pad_token_id),
        kd=kd, **teacher_signal,
    )


def trl_gkd_trainer(args, tokenizer, data, output_dir):
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from domainkd.training.collate import PadCollator

    config = GKDConfig(
        **training_settings(args, output_dir),
        gradient_checkpointing=False,  # SFTConfig turns it on by default; off as for the other methods
        lmbda=0.0, beta=0.0, temperature=1.0, seq_kd=False, max_length=args.length,
    )
    return GKDTrainer(  # our collator: batches of input_ids / attention_mask / labels, nothing re-tokenised
        model=load_student(args, tokenizer), teacher_model=load_teacher(args, tokenizer), args=config,
        train_dataset=Dataset.from_list(data), data_collator=PadCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
    )


TRAINERS = {
    "hf_sft": partial(sft_trainer, stock=True),
    "sft": sft_trainer,
    "kd_offline": partial(kd_trainer, online=False),
    "kd_online": partial(kd_trainer, online=True),
    "trl_gkd": trl_gkd_trainer,
}


def time_method(args: argparse.Namespace) -> dict:
    """Train ``args.method`` for warm-up + timed steps; step times, losses and peak RSS of this process."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_step_begin(self, *_, **__) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, *_, **__) -> None:
            self.seconds.append(time.perf_counter() - self.started)

    tokenizer, data = benchmark_data(args)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = TRAINERS[args.method](args, tokenizer, data, output_dir)
        trainer.add_callback(timer)
        load_peak, reset = peak_rss_mib(), reset_peak_rss()
        trainer.train()
    timed = timer.seconds[args.warmup :]
    return {
        "median_step_seconds": round(statistics.median(timed), 3),
        "step_seconds": [round(seconds, 3) for seconds in timer.seconds],
        "peak_rss_mib": peak_rss_mib(), "peak_rss_reset_after_load": reset, "load_peak_rss_mib": load_peak,
        "losses": [float(f"{entry['loss']:.6g}") for entry in trainer.state.log_history if "loss" in entry],
        "threads": torch.get_num_threads(),
    }


# --- the parent: one process per method, ratios, table -------------------------------


def run_in_process(method: str, work: Path) -> dict:
    """Run this script with ``--method`` in a fresh interpreter; its JSON result, or the error it ended with."""
    output = work / f"{method}.json"
    command = [sys.executable, __file__, *sys.argv[1:], "--method", method,
               "--store-dir", str(work / "store"), "--method-output", str(output)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        lines = (completed.stderr or completed.stdout).strip().splitlines() or [f"exit status {completed.returncode}"]
        print(f"{method} failed:\n" + "\n".join(lines[-15:]), file=sys.stderr)
        return {"error": lines[-1]}
    return json.loads(output.read_text(encoding="utf-8"))


def ratios(methods: dict[str, dict]) -> dict[str, float | None]:
    values = {}
    for name, (numerator, denominator, measure) in RATIOS.items():
        top, bottom = methods.get(numerator, {}).get(measure), methods.get(denominator, {}).get(measure)
        values[name] = round(top / bottom, 3) if top is not None and bottom else None
    return values


def print_tables(result: dict) -> None:
    print("| method | median step s | all steps s | peak RSS MiB | first loss |\n|---|---:|---|---:|---:|")
    for name, row in result["methods"].items():
        if "error" in row:
            print(f"| {name} | failed: {row['error']} | | | |")
            continue
        first_loss = row["losses"][0] if row["losses"] else "-"
        print(f"| {name} | {row['median_step_seconds']} | {row['step_seconds']} | {row['peak_rss_mib']} | {first_loss} |")
    store = result["store"]
    measures = {**result["ratios"], "store_bytes_per_token": store.get("bytes_per_token"),
                "store_record_seconds": store.get("record_seconds"),
                "topk_vs_full_relative_gap": store.get("topk_vs_full_relative_gap"),
                "topk_with_tail_vs_full_relative_gap": store.get("topk_with_tail_vs_full_relative_gap")}
    print("\n| measure | value | goal | met |\n|---|---:|---:|---|")
    for name, value in measures.items():
        goal = GOALS.get(name)
        met = "" if goal is None else "n/a" if value is None else "yes" if value <= goal else "no"
        print(f"| {name} | {value if value is not None else 'n/a'} | {'' if goal is None else f'≤ {goal}'} | {met} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="teacher; the student is its first layers")
    parser.add_argument("--student-layers", type=int, default=10)
    parser.add_argument("--k", type=int, default=64, help="teacher tokens kept per position in the store")
    parser.add_argument("--alpha", type=float, default=1.0, help="KD weight of the divergence (1: forward KL only, as GKD at beta=0)")
    parser.add_argument("--length", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="tiny random Llamas (hidden 64, 2 → 1 layers) for a quick check")
    parser.add_argument("--output", type=Path, default=None, help="default bench/results/kd_vs_trl[_tiny].json")
    parser.add_argument("--method", choices=("record", *METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--store-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--method-output", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.method is not None:  # a method process: measure one thing, write its JSON
        result = record_store(args) if args.method == "record" else time_method(args)
        args.method_output.write_text(json.dumps(result) + "\n", encoding="utf-8")
        return
    methods = list(METHODS)
    trl_version = importlib.metadata.version("trl") if importlib.util.find_spec("trl") else None
    if trl_version is None:
        print("TRL is not installed, so the trl_gkd rows are skipped; install it with `pip install -e '.[bench]'`.")
        methods.remove("trl_gkd")
    with tempfile.TemporaryDirectory() as work:
        store = run_in_process("record", Path(work))
        timings = {method: run_in_process(method, Path(work)) for method in methods}
    result = {
        "teacher": "tiny random Llama (hidden 64, 2 layers)" if args.tiny else args.model,
        "student": f"the teacher's first {student_layers(args)} layer(s)", "tiny": args.tiny,
        "batch_size": BATCH, "sequence_length": args.length, "warmup_steps": args.warmup, "timed_steps": args.steps,
        "alpha": args.alpha, "trl_version": trl_version, "machine": platform.processor() or platform.machine(),
        "store": store, "methods": timings, "ratios": ratios(timings), "goals_at_most": GOALS,
    }
    output = args.output or Path(f"bench/results/kd_vs_trl{'_tiny' if args.tiny else ''}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"teacher {result['teacher']}, student {result['student']}, batch {BATCH} × {args.length} tokens, "
          f"{args.warmup} warm-up + {args.steps} timed steps, {store.get('threads')} threads, trl {trl_version}")
    if args.tiny:
        print("tiny random models: the goals apply to the real SmolLM2 pair only")
    print_tables(result)
    print(f"JSON: {output}")
    if any("error" in row for row in (store, *timings.values())):
        sys.exit(1)


if __name__ == "__main__":
    main()
