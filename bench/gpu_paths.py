"""Do the GPU code paths run? bf16 teacher, bf16 autocast training, RAFT with detached excerpts, LoRA and KD on CUDA.

Tiny random-initialised models (built here, the same as the tests build), so it needs no model
files and fits a short lease of a GPU machine; it checks that each path runs where CI never can
(no GPU there) and records what it did: the dtype each model ran in, steps, loss, seconds. Real-size
figures need the real weights on the GPU machine. Writes ``bench/results/gpu_paths.json`` (or
``--output``) and prints a Markdown table; exits non-zero when a path fails.

    python bench/gpu_paths.py [--output DIR/gpu_paths.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from domainkd import evaluate, prepare_data, teach, train  # noqa: E402
from domainkd.config import config_from_dict  # noqa: E402
from domainkd.paths import RunPaths  # noqa: E402
from tests.conftest import build_tiny_model  # noqa: E402

DOCS = {
    "leave.md": "# Annual Leave\n\nFull-time staff receive 27 days of annual leave. Requests go through form HR-22.\n\n"
    "- short requests need 6 days' notice;\n- longer requests need 19 days' notice.\n",
    "parking.md": "# Parking\n\nThe car park opens at 06:40. Permits cost 85 euros a year and are issued by Tomas Brenner.\n",
    "security.md": "# Security\n\nLost badges are reported on extension 4190 within 2 hours. Replacement badges cost 15 euros.\n",
}
QUESTIONS = [
    {"id": "q1", "question": "How much holiday do full-timers get?", "answer": "27 days.", "facts": ["27"], "scope": "in"},
    {"id": "q2", "question": "Who hands out parking permits?", "answer": "Tomas Brenner.", "facts": ["Brenner"], "scope": "in"},
    {"id": "o1", "question": "What is the capital of Peru?", "answer": "I don't know.", "facts": [], "scope": "out"},
]


def _case(work: Path, name: str, student: Path, teacher: Path, train_settings: dict[str, Any],
          data: dict[str, Any] | None = None, systems: list[str] | None = None) -> dict[str, Any]:
    raw = {
        "name": name, "run_dir": str(work / name),
        "student": {"model": str(student)},
        "teacher": {"model": str(teacher), "batch_size": 8, "max_new_tokens": 24, "dtype": "auto"},
        "data": {"documents": str(work / "docs"), "chunk_tokens": 48, "chunk_overlap_tokens": 8,
                 "strategies": {"context_qa": {"paraphrases_per_question": 0}, "refusal": {"max_examples": 4}},
                 **(data or {})},
        "train": {"epochs": 2, "batch_size": 4, "max_length": 256, "save_steps": 1000, "bf16": "auto", **train_settings},
        "eval": {"questions": str(work / "eval.jsonl"), "systems": systems or ["student"], "max_new_tokens": 8,
                 "batch_size": 4, "train_recall": 4,  # metrics that need no model files (METEOR needs WordNet)
                 "metrics": ["fact_accuracy", "token_f1", "rouge_l", "refusal_rate", "false_refusal_rate"]},
        "retrieval": {"method": "bm25", "top_k": 2},
    }
    config = config_from_dict(raw, source=f"gpu_paths {name}")
    began = time.perf_counter()
    prepare_data(config)
    teach(config)
    summary = train(config)
    metrics = evaluate(config)
    paths = RunPaths(config.output_dir)
    assert (paths.model / "model.safetensors").is_file(), "no model saved"
    assert math.isfinite(summary["train_loss"]), f"loss {summary['train_loss']}"
    return {
        "case": name, "steps": summary["steps"], "train_loss": summary["train_loss"],
        "seconds": round(time.perf_counter() - began, 1),
        "systems": sorted(metrics["systems"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "gpu_paths.json")
    args = parser.parse_args(argv)
    from domainkd.teachers.hf import teacher_dtype
    from domainkd.training.sft import mixed_precision

    work = Path(tempfile.mkdtemp(prefix="gpu-paths-"))
    (work / "docs").mkdir()
    for name, text in DOCS.items():
        (work / "docs" / name).write_text(text, encoding="utf-8")
    (work / "eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in QUESTIONS), encoding="utf-8")
    corpus = list(DOCS.values()) + ["Question: What is it? Answer: It is 27 days. I don't know. The handbook does not cover that."] * 3
    student = build_tiny_model(work / "student", corpus)
    teacher = build_tiny_model(work / "teacher", corpus, hidden_size=64)  # same tokenizer (same corpus and size)
    cases = [
        ("sft_bf16", {}, None, ["student"]),
        ("raft_detached", {"detach_excerpts": True, "excerpt_epochs": 1},
         {"raft": {"share": 1.0, "keep_closed_book": False, "without_gold": 0.0}}, ["student", "student_with_retrieval"]),
        ("lora_bf16", {"method": "lora"}, None, ["student"]),
        ("kd_offline_vanilla", {"kd": {"teacher_logits": "offline", "loss": "vanilla", "top_k": 16}}, None, ["student"]),
        ("kd_online_dskd_gkd", {"kd": {"teacher_logits": "online", "loss": "dskd", "on_policy_fraction": 0.5}}, None,
         ["student"]),
        ("kd_context", {"kd": {"teacher_logits": "offline", "loss": "vanilla", "teacher_context": "source", "top_k": 16}},
         None, ["student"]),
    ]
    from domainkd.config import TrainConfig

    results, failed = [], 0
    for name, settings, data, systems in cases:
        try:
            results.append(_case(work, name, student, teacher, settings, data, systems))
        except Exception as error:  # record and go on: the table says which path broke
            failed += 1
            results.append({"case": name, "error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()[-3000:]})
        print(json.dumps({key: value for key, value in results[-1].items() if key != "trace"}), flush=True)
    record = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "teacher_dtype_auto": str(teacher_dtype("auto")),
        "train_precision_auto": str(mixed_precision(TrainConfig(bf16="auto"))),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"device {record['machine']['cuda']}, teacher auto = {record['teacher_dtype_auto']}, "
          f"training auto = {record['train_precision_auto']}")
    print("| case | steps | train loss | seconds | result |\n|---|---:|---:|---:|---|")
    for row in results:
        print(f"| {row['case']} | {row.get('steps', '–')} | {row.get('train_loss', '–')} | {row.get('seconds', '–')} | "
              f"{row.get('error', 'ok')[:120]} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
