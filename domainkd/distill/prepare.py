"""What the train stage needs for ``train.kd``: vocabularies checked, then the teacher or its top-k store.

Offline (the default) records the teacher's top-k once into ``train/teacher_topk`` and frees
the teacher, so training holds only the student; the store is reused while its inputs (teacher,
training set, k, temperature, ...) are unchanged. Online keeps the teacher in memory.
"""

from __future__ import annotations

import gc
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

from domainkd.config import KDConfig, RunConfig
from domainkd.distill.align import VocabularyMap, align_tokens, token_bytes
from domainkd.distill.dskd import DSKDProjectors
from domainkd.distill.logits_store import META, TopKStore, record_teacher_topk
from domainkd.distill.vocab import check_vocabularies, require_compatible, require_ids_shared, shared_vocab_size
from domainkd.errors import DomainKDError
from domainkd.models import load_causal_lm, load_tokenizer
from domainkd.models.cache import resolve_model, sha256_of
from domainkd.paths import RunPaths
from domainkd.training.collate import response_ids, tokenize_row


def objective_summary(config: RunConfig) -> dict[str, Any]:
    """The summary's record of what the student was trained on."""
    kd = config.train.kd
    if kd is None:
        return {"objective": "sft"}
    return {"objective": "kd", "kd": {**kd.model_dump(mode="json"), "teacher": _kd_teacher(config)}}


def _kd_teacher(config: RunConfig) -> str:
    return config.train.kd.teacher or config.teacher.model


@dataclass
class Distillation:
    """What the train stage needs for KD: the :class:`KDTrainer` arguments and the collator's."""

    trainer_kwargs: dict[str, Any]
    teacher_pad_token_id: int | None = None  # set when batches carry the teacher's own tokenisation


def prepare_distillation(
    config: RunConfig,
    paths: RunPaths,
    student: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    examples: list[dict[str, Any]],
) -> Distillation:
    """Check vocabularies, then load the teacher (online) or record or reuse its store (offline).

    When the teacher's tokenizer differs from the student's, each of ``examples`` gains its
    teacher tokenisation (``teacher_input_ids``, ``teacher_labels``); for ULD and MinED every
    example gains the response positions aligned across the two (``aligned_student``,
    ``aligned_teacher``). ``rows`` are the training set's question/answer records, in the
    order of ``examples``.
    """
    kd = config.train.kd
    relation, teacher_tokenizer, teacher_config = _vocabularies(config, student, tokenizer)
    cross_tokenizer = relation == "different"
    _require_supported(config, cross_tokenizer)
    shared = _shared_size(relation, student, tokenizer, teacher_tokenizer, teacher_config, examples)
    teacher_rows = _teacher_rows(config, paths, rows)
    if cross_tokenizer:
        _add_teacher_tokens(config, teacher_tokenizer, teacher_rows, examples)
    pair_tokenizer = teacher_tokenizer if cross_tokenizer else tokenizer
    vocab_map = VocabularyMap(tokenizer, pair_tokenizer) if kd.loss == "mined" else None
    if kd.loss in ("uld", "mined"):
        _add_alignment(kd.loss, tokenizer, pair_tokenizer, examples, vocab_map)
    kwargs: dict[str, Any] = {
        "kd": kd,
        "shared_vocab_size": shared,
        "cross_tokenizer": cross_tokenizer,
        "pad_token_id": tokenizer.pad_token_id,
    }
    student_rows = student.get_output_embeddings().weight.shape[0]
    if shared is not None and student_rows > shared:
        kwargs["suppressed_tokens"] = list(range(shared, student_rows))
    if kd.loss == "dskd":
        kwargs["projectors"] = _projectors(config, student, teacher_config, cross_tokenizer)
    if kd.loss == "mined":
        kwargs["vocab_map"] = vocab_map
    teacher_pad = _pad_token_id(teacher_tokenizer) if cross_tokenizer else None
    if kd.teacher_logits == "online":
        return Distillation({**kwargs, "teacher": _load_teacher(config, shared)}, teacher_pad)
    teacher_size = shared or teacher_config.get_text_config().vocab_size
    if kd.top_k > teacher_size:
        raise DomainKDError(
            f"train.kd.top_k is {kd.top_k}, more than the teacher's {teacher_size} tokens; lower it "
            "(top_k equal to the vocabulary keeps the whole distribution)."
        )
    fingerprint = {
        "teacher": _kd_teacher(config),
        "train_set_sha256": sha256_of(paths.train_set),
        "student_vocab_size": len(tokenizer),
        "teacher_vocab_size": teacher_size,
        "top_k": kd.top_k,
        "temperature": kd.temperature,
        "max_length": config.train.max_length,
        "system_prompt": config.system_prompt,
        "teacher_tokenisation": "teacher" if cross_tokenizer else "student",
        "hidden_states": kd.loss == "dskd",
        "tail_samples": _tail_samples(kd, config.train.epochs),
        "seed": config.train.seed,
    }
    if kd.teacher_context != "none":  # absent otherwise, so stores recorded before the setting keep their key
        fingerprint["teacher_context"] = kd.teacher_context
    store = _recorded_store(paths.teacher_topk, fingerprint, kd, len(examples))
    if store is None:
        if cross_tokenizer:
            teacher_examples = [_teacher_view(example) for example in examples]
        elif kd.teacher_context != "none":
            teacher_examples = _context_examples(config, tokenizer, teacher_rows, examples)
        else:
            teacher_examples = examples
        pad = teacher_pad if cross_tokenizer else tokenizer.pad_token_id
        store = _record(config, paths, shared, teacher_examples, fingerprint, pad)
    return Distillation({**kwargs, "store": store}, teacher_pad)


def _tail_samples(kd: KDConfig, epochs: float) -> int:
    """Tail draws the store keeps per token: ``kd.tail_samples`` for each epoch, so no draw is used twice
    (see :meth:`KDTrainer._stored_topk`); they correct the vanilla forward KL only (``tail_correction``)."""
    uses = math.ceil(epochs)
    return kd.tail_samples * uses if kd.loss == "vanilla" and kd.divergence == "forward_kl" else 0


def _require_supported(config: RunConfig, cross_tokenizer: bool) -> None:
    """One sentence for the combinations that cannot work, before any weights load."""
    kd = config.train.kd
    if kd.on_policy_fraction and cross_tokenizer:
        raise DomainKDError(
            "on-policy steps need a teacher with the student's vocabulary (it scores the student's own tokens); "
            "set train.kd.on_policy_fraction: 0 or use a teacher with the student's tokenizer."
        )
    if kd.loss == "dskd" and config.train.method == "lora":
        raise DomainKDError(
            "dskd trains projectors that LoRA checkpoints do not save, so a resumed run would lose them; "
            "use train.method: full with dskd, or another train.kd.loss with LoRA."
        )


def _vocabularies(config: RunConfig, student: Any, tokenizer: Any) -> tuple[str, Any, Any]:
    """The vocabulary relation, from the KD teacher's tokenizer and config alone (no weights loaded)."""
    reference, trust = _kd_teacher(config), config.teacher.trust_remote_code
    teacher_tokenizer = load_tokenizer(reference, trust_remote_code=trust)
    teacher_config = AutoConfig.from_pretrained(resolve_model(reference), trust_remote_code=trust)
    student_size = student.get_output_embeddings().weight.shape[0]
    teacher_size = teacher_config.get_text_config().vocab_size
    relation = check_vocabularies(tokenizer, teacher_tokenizer, student_size, teacher_size)
    require_compatible(relation, config.train.kd.loss)
    return relation, teacher_tokenizer, teacher_config


def _shared_size(
    relation: str, student: Any, tokenizer: Any, teacher_tokenizer: Any, teacher_config: Any, examples: list[dict]
) -> int | None:
    """The logit columns to cut both sides to: ``None`` unless the vocabularies share a prefix."""
    if relation != "same-prefix":
        return None
    student_size = student.get_output_embeddings().weight.shape[0]
    teacher_size = teacher_config.get_text_config().vocab_size
    shared = shared_vocab_size(tokenizer, teacher_tokenizer, student_size, teacher_size)
    require_ids_shared(max(max(example["input_ids"]) for example in examples), shared)
    return shared


def _pad_token_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


def _teacher_rows(config: RunConfig, paths: RunPaths, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training rows as the teacher reads them: with their source chunk first under ``teacher_context``."""
    if config.train.kd.teacher_context == "none":
        return rows
    from domainkd.data.build import load_chunks
    from domainkd.evaluation.systems import excerpt_prompt

    chunks = {chunk.chunk_id: chunk for chunk in load_chunks(paths)}
    teacher_rows = []
    for row in rows:
        source = chunks.get(row.get("chunk_id") or "")
        if row.get("question") and not row.get("prompt") and source is not None:
            row = {**row, "prompt": excerpt_prompt(row["question"], [source], config.refusal_text)}
        teacher_rows.append(row)
    return teacher_rows


def _context_examples(
    config: RunConfig, tokenizer: Any, teacher_rows: list[dict[str, Any]], examples: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The teacher's tokenisation (the student's tokenizer) of rows that hold their source; answers never cut."""
    teacher_examples = []
    for row, example in zip(teacher_rows, examples, strict=True):
        tokens = tokenize_row(tokenizer, config.system_prompt, row, 1 << 30)
        if response_ids(tokens["labels"])[: len(response_ids(example["labels"]))] != response_ids(example["labels"]):
            raise DomainKDError(f"training example {example['index']} tokenises its answer differently after its source; "
                                "use a tokenizer without context-dependent merges or set train.kd.teacher_context: none.")
        cut = len(tokens["input_ids"]) - (len(response_ids(tokens["labels"])) - len(response_ids(example["labels"])))
        teacher_examples.append({"input_ids": tokens["input_ids"][:cut], "labels": tokens["labels"][:cut]})
    return teacher_examples


def _add_teacher_tokens(config: RunConfig, teacher_tokenizer: Any, rows: list[dict], examples: list[dict]) -> None:
    """Give each example the teacher's chat-formatted tokenisation of the same exchange (``rows`` as the teacher reads them)."""
    reads_source = config.train.kd.teacher_context != "none"  # a source chunk must not push the answer past the limit
    max_length = config.train.max_length + (1 << 20) * reads_source
    for row, example in zip(rows, examples, strict=True):
        tokens = tokenize_row(teacher_tokenizer, config.system_prompt, row, max_length)
        example["teacher_input_ids"], example["teacher_labels"] = tokens["input_ids"], tokens["labels"]


def _add_alignment(
    loss: str, tokenizer: Any, teacher_tokenizer: Any, examples: list[dict], vocab_map: VocabularyMap | None
) -> None:
    """Pair student and teacher response positions: i-th with i-th (ULD), or (MinED) tokens that start
    at the same place in the answer where the teacher's token maps to the student's (``vocab_map``)."""
    for example in examples:
        student_ids = response_ids(example["labels"])
        teacher_ids = response_ids(example.get("teacher_labels", example["labels"]))
        if loss == "uld":
            pairs = [(index, index) for index in range(min(len(student_ids), len(teacher_ids)))]
        else:
            pairs = align_tokens(token_bytes(tokenizer, student_ids), token_bytes(teacher_tokenizer, teacher_ids))
            mapped = vocab_map(torch.tensor([teacher_ids[j] for _, j in pairs], dtype=torch.long)).tolist()
            pairs = [(i, j) for (i, j), student_id in zip(pairs, mapped) if student_ids[i] == student_id]
        example["aligned_student"] = [student for student, _ in pairs]
        example["aligned_teacher"] = [teacher for _, teacher in pairs]


def _teacher_view(example: dict[str, Any]) -> dict[str, Any]:
    return {"input_ids": example["teacher_input_ids"], "labels": example["teacher_labels"]}


def _projectors(config: RunConfig, student: Any, teacher_config: Any, cross_tokenizer: bool) -> DSKDProjectors:
    """DSKD's projectors, initialised from the training seed."""
    with torch.random.fork_rng():
        torch.manual_seed(config.train.seed)
        return DSKDProjectors(
            student.config.get_text_config().hidden_size,
            teacher_config.get_text_config().hidden_size,
            cross_attention=cross_tokenizer,
        )


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
    try:
        store = TopKStore(directory)
    except DomainKDError as error:  # an older store format, or a store damaged outside a write
        print(f"{error} Recording afresh.", flush=True)
        shutil.rmtree(directory)
        return None
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
        hidden=fingerprint["hidden_states"],
        tail_samples=fingerprint["tail_samples"],
        seed=config.train.seed,
    )
    del teacher
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return store
