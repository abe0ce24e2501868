"""The ``train`` stage: fine-tune the student on the teacher's stored answers.

Built on the Hugging Face Trainer, so checkpoints, resume and ``accelerate launch`` work as
users expect. Loss is on response tokens only. ``method: full`` updates all weights (trials
here: it learns facts far better than LoRA on a 135M student); ``method: lora`` trains peft
adapters, saves them, and also saves the merged model.

With ``train.kd`` set the objective is white-box distillation (:mod:`domainkd.distill.trainer`):
the student also matches a teacher's token distributions, read from a top-k store recorded
once into ``train/teacher_topk`` (offline) or from the teacher run at every step (online).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from datasets import Dataset
from transformers import TrainingArguments

from domainkd.config import RunConfig, TrainConfig, dump_config
from domainkd.distill.losses import IGNORE_INDEX
from domainkd.distill.prepare import objective_summary, prepare_distillation
from domainkd.distill.trainer import KDCollator, KDTrainer, detach_projectors
from domainkd.errors import DomainKDError
from domainkd.io import atomic_dir, read_jsonl, write_json
from domainkd.models import load_causal_lm, native_on_cpu
from domainkd.models.cache import sha256_of
from domainkd.paths import RunPaths
from domainkd.training.collate import PadCollator, excerpt_tokens, tokenize_row
from domainkd.training.logits import ResponseTrainer, response_logits
from domainkd.training.schedule import row_kind, training_order


class SFTTrainer(ResponseTrainer):
    """The Trainer with the causal-LM loss computed from logits at response positions only.

    Same loss as the model's own (cross-entropy summed over response tokens, divided by the
    Trainer's ``num_items_in_batch`` or, without it, by this batch's count), but the output
    head runs only where the loss reads it (:func:`~domainkd.training.logits.response_logits`).
    """

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        labels = inputs["labels"][:, 1:]  # (B, T-1): the token each position predicts
        response = labels != IGNORE_INDEX
        frozen = int(inputs["frozen_tokens"].min()) if "frozen_tokens" in inputs else 0  # RAFT excerpts, every row
        logits, _ = response_logits(model, self.accelerator.unwrap_model(model), inputs, response, frozen=frozen)  # (N, V)
        total = torch.nn.functional.cross_entropy(logits.float(), labels[response], reduction="sum")
        loss = total / (num_items_in_batch if num_items_in_batch is not None else response.sum().clamp(min=1))
        loss = self.across_processes(loss, num_items_in_batch)
        return (loss, {"logits": logits}) if return_outputs else loss


def train(config: RunConfig) -> dict[str, Any]:
    """Fine-tune the student on ``teach/train.jsonl``; save ``train/model`` (and ``train/adapter``).

    Rerunning after a kill resumes from the newest checkpoint in ``train/checkpoints``. Under
    ``accelerate launch`` the main process records the teacher store and clears stale
    checkpoints before the others read them, and only it writes the model and summary.
    """
    processes = PartialState(cpu=not torch.cuda.is_available())  # as TrainingArguments(use_cpu=...) will
    paths = RunPaths(config.output_dir)
    if not paths.train_set.is_file():
        raise DomainKDError(f"{paths.train_set} is missing; run `domainkd teach CONFIG` first.")
    model, tokenizer = load_causal_lm(config.student.model, trust_remote_code=config.student.trust_remote_code)
    rows = read_jsonl(paths.train_set)
    examples = _examples(rows, tokenizer, config)
    with processes.main_process_first():
        distillation = None
        if config.train.kd:
            distillation = prepare_distillation(config, paths, model, tokenizer, rows, examples)
        checkpoint = _resumable_checkpoint(config, paths)
    if config.train.method == "lora":
        model = _with_lora(model, config.train)
    model.train()
    if distillation is None:
        trainer_class, collator, kd_arguments = SFTTrainer, PadCollator(tokenizer.pad_token_id), {}
    else:
        collator = KDCollator(tokenizer.pad_token_id, distillation.teacher_pad_token_id)
        trainer_class, kd_arguments = KDTrainer, distillation.trainer_kwargs
    order = training_order([row_kind(row) for row in rows], [len(e["input_ids"]) for e in examples], config.train)
    trainer = trainer_class(
        model=model,
        args=_training_arguments(config.train, paths.checkpoints, len(order), processes.num_processes),
        train_dataset=Dataset.from_list(examples),
        data_collator=collator,
        **kd_arguments,
    )
    trainer.training_order = order
    previous = None  # the summary of the run that wrote the checkpoint (same inputs: other inputs' runs were removed)
    if checkpoint and paths.train_summary.is_file():
        previous = json.loads(paths.train_summary.read_text(encoding="utf-8"))
    started = time.time()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    summary = {
        "method": config.train.method,
        **objective_summary(config),
        "examples": len(examples),
        "excerpt_examples": sum(bool(row.get("prompt")) for row in rows),
        "epochs": config.train.epochs,
        "steps": result.global_step,
        "train_loss": round(result.training_loss, 4),
        "seconds": round(time.time() - started, 1),
        "log": [entry for entry in trainer.state.log_history if "loss" in entry],
    }
    if previous and int(Path(checkpoint).name.split("-")[-1]) == result.global_step == previous.get("steps"):
        summary = previous  # that run had finished and nothing was trained now: its loss and time stand
    if processes.is_main_process:
        _save(trainer.model, tokenizer, config, paths)
        write_json(paths.train_summary, summary)
    processes.wait_for_everyone()
    return summary


def _examples(rows: list[dict[str, Any]], tokenizer: Any, config: RunConfig) -> list[dict[str, Any]]:
    """Tokenised rows, each with its ``index`` in the training set (its key in the teacher top-k store)."""
    if not rows:
        raise DomainKDError("the training set is empty; rerun `domainkd teach` and check teach/rejected.jsonl.")
    prompt, max_length = config.system_prompt, config.train.max_length
    examples, longest, cut = [], 0, 0
    for index, row in enumerate(rows):
        tokens = tokenize_row(tokenizer, prompt, row, 1 << 30)
        longest, cut = max(longest, len(tokens["input_ids"])), cut + (len(tokens["input_ids"]) > max_length)
        examples.append({name: ids[:max_length] for name, ids in tokens.items()} | {"index": index})
        if config.train.detach_excerpts:
            examples[-1]["frozen_tokens"] = min(excerpt_tokens(tokenizer, prompt, row), max_length - 1)
    if cut:
        print(
            f"warning: {cut} of {len(rows)} training examples are longer than train.max_length ({max_length} tokens) "
            f"and lose the end of their answer; the longest needs {longest} (raise train.max_length)", flush=True,
        )
    return examples


def _with_lora(model: Any, train_config: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=train_config.lora_r,
        lora_alpha=train_config.lora_alpha,
        lora_dropout=train_config.lora_dropout,
        target_modules=train_config.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _training_arguments(train_config: TrainConfig, output_dir: Path, samples: int, processes: int = 1) -> TrainingArguments:
    """The Trainer's arguments for one pass over ``samples`` rows of the training order (all epochs in it)."""
    batch = train_config.batch_size * train_config.gradient_accumulation_steps * processes
    total_steps = max(1, -(-samples // batch))
    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=1,  # the training order holds every epoch (domainkd.training.schedule)
        learning_rate=train_config.learning_rate,
        per_device_train_batch_size=train_config.batch_size,
        gradient_accumulation_steps=train_config.gradient_accumulation_steps,
        warmup_steps=int(train_config.warmup_ratio * total_steps),
        weight_decay=train_config.weight_decay,
        lr_scheduler_type="linear",
        logging_steps=max(1, min(10, total_steps // 10)),
        save_steps=train_config.save_steps,
        save_total_limit=2,
        bf16=mixed_precision(train_config),
        use_cpu=not on_gpu,
        optim="adamw_torch",
        seed=train_config.seed,
        report_to="none",
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def mixed_precision(train_config: TrainConfig) -> bool:
    """Whether to train under bfloat16 autocast (``train.bf16``, with ``auto`` resolved for this machine)."""
    if train_config.bf16 != "auto":
        return bool(train_config.bf16)
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(native_on_cpu(torch.bfloat16))


def _resumable_checkpoint(config: RunConfig, paths: RunPaths) -> str | None:
    """The newest checkpoint, if it was trained on the same data, student and settings.

    Checkpoints from other inputs are removed so the run starts afresh instead of
    silently continuing a different training job.
    """
    fingerprint = {
        "train_set_sha256": sha256_of(paths.train_set),
        "student": config.student.model,
        "system_prompt": config.system_prompt,  # part of every tokenised example
        "train": config.train.model_dump(mode="json"),
        "mixed_precision": mixed_precision(config.train),  # `auto` differs between machines
    }
    if config.train.kd and config.train.kd.teacher is None:  # the KD teacher defaults to the run's teacher
        fingerprint["kd_teacher"] = config.teacher.model
    recorded = json.loads(paths.train_inputs.read_text(encoding="utf-8")) if paths.train_inputs.is_file() else None
    if recorded != fingerprint:
        if _checkpoint_folders(paths.checkpoints):
            print("training inputs changed since the last checkpoint; starting afresh", flush=True)
        shutil.rmtree(paths.checkpoints, ignore_errors=True)
        paths.train_summary.unlink(missing_ok=True)  # it described the other inputs' run
    write_json(paths.train_inputs, fingerprint)
    return newest_complete_checkpoint(paths.checkpoints)


def _checkpoint_folders(folder: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every ``checkpoint-N`` folder under ``folder``, newest first."""
    if not folder.is_dir():
        return []
    found = [(int(path.name.split("-")[1]), path) for path in folder.glob("checkpoint-*")
             if path.is_dir() and path.name.split("-")[1].isdigit()]
    return sorted(found, reverse=True)


def newest_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint whose save finished, removing newer ones a kill left half-written.

    transformers writes ``trainer_state.json`` last; a checkpoint counts as complete when that
    file parses and names the folder's step. A kill mid-save leaves the newest folder without it
    (or with it cut short), and resuming from that folder would fail on every rerun.
    """
    for step, path in _checkpoint_folders(folder):
        try:
            state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = None
        if isinstance(state, dict) and state.get("global_step") == step:
            return str(path)
        print(f"checkpoint {path.name} was not saved completely (the run was stopped while saving it); removing it", flush=True)
        shutil.rmtree(path, ignore_errors=True)
    return None


def _save(model: Any, tokenizer: Any, config: RunConfig, paths: RunPaths) -> None:
    """Write the adapter (LoRA) and the full merged model as safetensors, atomically."""
    model.eval()
    detach_projectors(model)
    if config.train.method == "lora":
        with atomic_dir(paths.adapter) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
        model = model.merge_and_unload()
    with atomic_dir(paths.model) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    dump_config(config, paths.root / "train" / "config.yaml")
