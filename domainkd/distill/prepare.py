"""What the train stage needs for ``train.kd``: vocabularies checked, then the teacher or its top-k store.

Offline (the default) records the teacher's top-k once into ``train/teacher_topk`` and frees
the teacher, so training holds only the student; the store is reused while its inputs (teacher,
training set, k, temperature, ...) are unchanged. Online keeps the teacher in memory.
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

from domainkd.config import KDConfig, RunConfig
from domainkd.distill.logits_store import META, TopKStore, record_teacher_topk
from domainkd.distill.vocab import check_vocabularies, require_compatible, require_ids_shared, shared_vocab_size
from domainkd.errors import DomainKDError
from domainkd.models import load_causal_lm, load_tokenizer
from domainkd.models.cache import resolve_model, sha256_of
from domainkd.paths import RunPaths


def objective_summary(config: RunConfig) -> dict[str, Any]:
    """The summary's record of what the student was trained on."""
    kd = config.train.kd
    if kd is None:
        return {"objective": "sft"}
    return {"objective": "kd", "kd": {**kd.model_dump(mode="json"), "teacher": _kd_teacher(config)}}


def _kd_teacher(config: RunConfig) -> str:
    return config.train.kd.teacher or config.teacher.model


def prepare_distillation(
    config: RunConfig, paths: RunPaths, student: Any, tokenizer: Any, examples: list[dict[str, Any]]
) -> dict[str, Any]:
    """The :class:`KDTrainer` arguments: vocabularies checked first, then the teacher or its top-k store."""
    kd = config.train.kd
    shared, teacher_size = _shared_vocabulary(config, student, tokenizer, examples)
    if kd.teacher_logits == "online":
        return {"kd": kd, "teacher": _load_teacher(config, shared), "shared_vocab_size": shared}
    if kd.top_k > (shared or teacher_size):
        raise DomainKDError(
            f"train.kd.top_k is {kd.top_k}, more than the teacher's {shared or teacher_size} tokens; lower it "
            "(top_k equal to the vocabulary keeps the whole distribution)."
        )
    fingerprint = {
        "teacher": _kd_teacher(config),
        "train_set_sha256": sha256_of(paths.train_set),
        "student_vocab_size": len(tokenizer),
        "teacher_vocab_size": shared or teacher_size,
        "top_k": kd.top_k,
        "temperature": kd.temperature,
        "max_length": config.train.max_length,
        "system_prompt": config.system_prompt,
    }
    store = _recorded_store(paths.teacher_topk, fingerprint, kd, len(examples))
    if store is None:
        store = _record(config, paths, shared, examples, fingerprint, tokenizer.pad_token_id)
    return {"kd": kd, "store": store, "shared_vocab_size": shared}


def _shared_vocabulary(
    config: RunConfig, student: Any, tokenizer: Any, examples: list[dict[str, Any]]
) -> tuple[int | None, int]:
    """Check the KD teacher's vocabulary against the student's from its tokenizer and config alone.

    Returns:
        The logit columns to cut both sides to (``None``: same vocabulary, no cut) and the
        teacher's logits size.
    """
    reference, trust = _kd_teacher(config), config.teacher.trust_remote_code
    teacher_tokenizer = load_tokenizer(reference, trust_remote_code=trust)
    teacher_config = AutoConfig.from_pretrained(resolve_model(reference), trust_remote_code=trust)
    student_size = student.get_output_embeddings().weight.shape[0]
    teacher_size = teacher_config.get_text_config().vocab_size
    relation = check_vocabularies(tokenizer, teacher_tokenizer, student_size, teacher_size)
    require_compatible(relation, config.train.kd.loss)
    if relation == "same":
        return None, teacher_size
    shared = shared_vocab_size(tokenizer, teacher_tokenizer, student_size, teacher_size)
    require_ids_shared(max(max(example["input_ids"]) for example in examples), shared)
    return shared, teacher_size


def _load_teacher(config: RunConfig, shared_size: int | None) -> Any:
    """The KD teacher on the training device, its logits cut to the columns it shares with the student."""
    on_gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if config.train.bf16 and on_gpu else torch.float32
    teacher, _ = load_causal_lm(_kd_teacher(config), dtype=dtype, trust_remote_code=config.teacher.trust_remote_code)
    if shared_size is not None and teacher.get_output_embeddings().weight.shape[0] > shared_size:
        teacher.resize_token_embeddings(shared_size)  # drop padded rows and teacher-only tokens
    return teacher.to("cuda" if on_gpu else "cpu")


def _recorded_store(directory: Path, fingerprint: dict[str, Any], kd: KDConfig, examples: int) -> TopKStore | None:
    """The finished store in ``directory`` if it was recorded for these inputs, so no teacher loads.

    A store of other inputs is removed so it is recorded afresh; an unfinished one of the
    same inputs is left for :func:`record_teacher_topk` to resume.
    """
    if not (directory / META).is_file():
        return None
    store = TopKStore(directory)
    recorded = (store.meta["fingerprint"], store.meta["k"], store.meta["temperature"])
    if recorded != (json.loads(json.dumps(fingerprint)), kd.top_k, kd.temperature):
        print("teacher top-k inputs changed since the store was recorded; recording afresh", flush=True)
        shutil.rmtree(directory)
        return None
    return store if len(store) == examples else None


def _record(
    config: RunConfig,
    paths: RunPaths,
    shared_size: int | None,
    examples: list[dict[str, Any]],
    fingerprint: dict[str, Any],
    pad_token_id: int,
) -> TopKStore:
    """Record the teacher's top-k over the training set, then free the teacher before training."""
    kd = config.train.kd
    teacher = _load_teacher(config, shared_size)
    store = record_teacher_topk(
        teacher,
        examples,
        paths.teacher_topk,
        kd.top_k,
        fingerprint=fingerprint,
        temperature=kd.temperature,
        batch_size=config.train.batch_size,
        pad_token_id=pad_token_id,
    )
    del teacher
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return store
