"""``domainkd export``: the trained student as a plain Hugging Face model directory.

The export loads with ``AutoModelForCausalLM.from_pretrained(OUT_DIR)`` and
``AutoTokenizer.from_pretrained(OUT_DIR)`` alone: safetensors weights (a LoRA adapter is merged
into its base first), config, generation config, tokenizer with its chat template, and a
README.md model card. It is written to a temporary directory, reloaded there with plain
transformers and checked against the source's logits on a probe prompt before it is renamed
into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from domainkd.config import RunConfig, load_config
from domainkd.errors import DomainKDError
from domainkd.io import atomic_dir
from domainkd.models import chat_messages, load_causal_lm, render_prompt
from domainkd.paths import RunPaths

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Choices of ``--dtype``."""

TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 2e-2}
"""Largest logit difference (absolute and relative) the reload check accepts, per dtype."""

PROBE_QUESTION = "What does the documentation say about this topic?"
"""The user turn of the probe prompt on which source and export must give the same logits."""

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def export_model(run_dir: Path, out_dir: Path, dtype: str = "float32", force: bool = False) -> Path:
    """Write the run's trained student to ``out_dir`` as a standalone transformers model.

    Args:
        run_dir: A trained run (``train/model``, or only ``train/adapter`` for LoRA).
        out_dir: Destination; must be empty or absent unless ``force``.
        dtype: ``float32``, ``bfloat16`` or ``float16`` weights.
        force: Replace a non-empty ``out_dir``.

    Returns:
        ``out_dir``.

    Raises:
        DomainKDError: missing run or model, a non-empty destination, or an export whose
            logits differ from the source's (one sentence each).
    """
    if dtype not in DTYPES:
        raise DomainKDError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}.")
    config, paths = _read_run(Path(run_dir))
    out_dir = Path(out_dir)
    _check_destination(out_dir, paths, force)
    model, tokenizer, method = load_trained(config, paths)
    model.to(DTYPES[dtype])
    probe_ids = tokenizer(render_prompt(tokenizer, chat_messages(config.system_prompt, PROBE_QUESTION)), add_special_tokens=False)["input_ids"]
    expected = probe_logits(model, probe_ids)  # (T, V), in the export's dtype
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(config, method, dtype, _student_scores(paths)), encoding="utf-8")
        del model
        verify_export(tmp, probe_ids, expected, DTYPES[dtype])
    return out_dir


def load_trained(config: RunConfig, paths: RunPaths) -> tuple[Any, Any, str]:
    """The trained student in float32 on CPU, its tokenizer, and how it was trained (for the card).

    ``train/model`` when present; otherwise ``train/adapter`` merged into ``student.model``.
    """
    if any(paths.model.glob("*.safetensors")):
        model, tokenizer = load_causal_lm(paths.model, dtype=torch.float32, trust_remote_code=False)
        return model, tokenizer, _method(config)
    if (paths.adapter / "adapter_config.json").is_file():
        from peft import PeftModel

        base, tokenizer = load_causal_lm(config.student.model, dtype=torch.float32, trust_remote_code=config.student.trust_remote_code)
        merged = PeftModel.from_pretrained(base, paths.adapter).merge_and_unload()
        merged.eval()
        return merged, tokenizer, _method(config) if config.train.method == "lora" else "LoRA adapter, merged into the base weights"
    raise DomainKDError(f"{paths.root} has neither {paths.model} nor a LoRA adapter in {paths.adapter}; run `domainkd train CONFIG` first.")


@torch.inference_mode()
def probe_logits(model: Any, input_ids: list[int]) -> torch.Tensor:
    """Logits of ``model`` on one token sequence, shape (T, V), on CPU."""
    ids = torch.tensor([input_ids], device=model.device)  # (1, T)
    return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].cpu()


def verify_export(directory: Path, probe_ids: list[int], expected: torch.Tensor, dtype: torch.dtype) -> None:
    """Reload ``directory`` with plain transformers and check weights format, dtype, tokenizer and logits.

    Raises:
        DomainKDError: the first check that fails, as one sentence.
    """
    pickled = sorted(path.name for path in directory.rglob("*") if path.suffix in PICKLE_SUFFIXES)
    if pickled or not any(directory.glob("*.safetensors")):
        raise DomainKDError(f"the export wrote {pickled or 'no safetensors weights'}; report this as a domainkd bug.")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if not tokenizer.chat_template:
        raise DomainKDError("the exported tokenizer lost its chat template; report this as a domainkd bug.")
    model = AutoModelForCausalLM.from_pretrained(directory, dtype="auto", use_safetensors=True)
    model.eval()
    if model.dtype != dtype:
        raise DomainKDError(f"the export reloads as {model.dtype}, not {dtype}; report this as a domainkd bug.")
    tolerance = TOLERANCE[dtype]
    actual = probe_logits(model, probe_ids)
    if actual.shape != expected.shape or not torch.allclose(actual.float(), expected.float(), atol=tolerance, rtol=tolerance):
        gap = (actual.float() - expected.float()).abs().max().item() if actual.shape == expected.shape else "a shape mismatch"
        raise DomainKDError(f"the reloaded export's logits differ from the source's (max gap {gap}); nothing was written.")


def model_card(config: RunConfig, method: str, dtype: str, scores: dict[str, float | None] | None) -> str:
    """README.md of the export: what it is, how it was made, how it scored, how to load it."""
    base = config.student.model
    front = ["---", "library_name: transformers", "tags: [domainkd, distillation]"]
    if re.fullmatch(r"[\w.-]+/[\w.-]+", base):
        front.append(f"base_model: {base}")
    lines = [
        *front, "---", "", f"# {config.name}", "",
        "A domain specialist distilled with domainkd: a small student fine-tuned on a teacher's answers about a document collection.", "",
        f"- Base model: `{base}`",
        f"- Teacher: `{config.teacher.model}`",
        f"- Run: `{config.name}`",
        f"- Training method: {method}",
        f"- Weights: {dtype}, safetensors", "",
        "Use the system prompt the student was trained with:", "", "```text", config.system_prompt, "```", "",
    ]
    if scores:
        lines += ["## Evaluation (student, held-out questions)", "", "| metric | mean |", "|---|---|"]
        lines += [f"| {metric} | {'n/a' if mean is None else f'{mean:.3f}'} |" for metric, mean in scores.items()]
        lines.append("")
    lines += ["## Usage", "", "```python", *_usage_code(config.system_prompt), "```", ""]
    return "\n".join(lines)


def _usage_code(system_prompt: str) -> list[str]:
    return [
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        f"messages = [{{\"role\": \"system\", \"content\": {json.dumps(system_prompt)}}}, {{\"role\": \"user\", \"content\": \"...\"}}]",
        'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)',
        "output = model.generate(**inputs, max_new_tokens=128, do_sample=False)",
        'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
    ]


def _method(config: RunConfig) -> str:
    """How the student was trained, in words."""
    train = config.train
    if train.method == "lora":
        described = f"LoRA (r={train.lora_r}, alpha={train.lora_alpha}), merged into the base weights"
    else:
        described = "full fine-tuning"
    if train.kd is not None:
        described += f", white-box distillation ({train.kd.loss} loss, {train.kd.divergence}, alpha {train.kd.alpha})"
    else:
        described += " on the teacher's answers (SFT)"
    return f"{described}, {train.epochs:g} epoch{'' if train.epochs == 1 else 's'}"


def _student_scores(paths: RunPaths) -> dict[str, float | None] | None:
    """Metric → mean of the trained student in ``eval/metrics.json``, or None without one."""
    if not paths.metrics.is_file():
        return None
    try:
        student = json.loads(paths.metrics.read_text(encoding="utf-8"))["systems"]["student"]["scores"]
        return {metric: summary.get("mean") for metric, summary in student.items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None  # an old or partial metrics file: the card simply has no scores


def _read_run(run_dir: Path) -> tuple[RunConfig, RunPaths]:
    """The run's config (the one training used, ``train/config.yaml``, when present) and paths."""
    paths = RunPaths(run_dir)
    if not paths.root.is_dir():
        raise DomainKDError(f"run directory {paths.root} does not exist; pass the run_dir of a trained run.")
    trained_with = paths.root / "train" / "config.yaml"
    source = trained_with if trained_with.is_file() else paths.config
    if not source.is_file():
        raise DomainKDError(f"{paths.config} is missing; run `domainkd data CONFIG` and `domainkd train CONFIG` first.")
    return load_config(source), paths


def _check_destination(out_dir: Path, paths: RunPaths, force: bool) -> None:
    """Refuse a destination that is a file, holds the run, or is non-empty without ``force``."""
    out, run = out_dir.resolve(), paths.root.resolve()
    if out == run or out in run.parents or (run / "train") in (out, *out.parents):
        raise DomainKDError(f"{out_dir} would overwrite the run itself; export to a folder outside {run / 'train'}.")
    if out.exists() and not out.is_dir():
        raise DomainKDError(f"{out_dir} is a file; pass a folder for the export.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise DomainKDError(f"{out_dir} is not empty; choose another folder or pass --force to replace it.")
