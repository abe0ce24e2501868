"""White-box KD on the Hugging Face Trainer: the student learns the teacher's distributions.

:class:`KDTrainer` only replaces the Trainer's loss. Each step it runs the student, gets the
teacher's signal at the batch's response positions — the frozen teacher's logits (online)
or its top-k recorded once in a :class:`TopKStore` (offline) — and hands both to a loss from
:data:`KD_LOSSES`. Checkpoints, resume, gradient accumulation and logging stay the Trainer's.

Positions follow the causal-LM convention of :mod:`domainkd.training.collate`: logits at ``t``
predict ``labels[t + 1]``, and the response positions are those where ``labels[:, 1:]`` is not
``IGNORE_INDEX`` — the same positions the store records and the Trainer counts in
``num_items_in_batch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import Trainer

from domainkd.config import KDConfig
from domainkd.distill.logits_store import TopKStore
from domainkd.distill.losses import IGNORE_INDEX, KDLossParts, kd_loss, topk_kd_loss
from domainkd.distill.vocab import cut_to_shared_vocab
from domainkd.errors import DomainKDError
from domainkd.training.collate import PadCollator


@dataclass(frozen=True)
class TeacherTopK:
    """The stored teacher top-k at a batch's ``N`` response positions, in row-major order."""

    ids: Tensor  # (N, k) long
    logprobs: Tensor  # (N, k), at the temperature the store was recorded at
    log_tail: Tensor  # (N,), log of the teacher's mass outside ids


TeacherSignal = Tensor | TeacherTopK  # online: teacher logits (N, V); offline: its stored top-k
KDLoss = Callable[[Tensor, TeacherSignal, Tensor, KDConfig, Tensor | int | None], tuple[Tensor, KDLossParts]]


# --- losses over response positions --------------------------------------------------


def vanilla_kd(
    student_logits: Tensor, teacher: TeacherSignal, labels: Tensor, kd: KDConfig, normaliser: Tensor | int | None
) -> tuple[Tensor, KDLossParts]:
    """``(1 − α)·CE + α·D`` against full teacher logits ``(N, V)`` or a stored top-k.

    Args:
        student_logits: ``(N, V)`` at the response positions.
        teacher: the teacher's logits ``(N, V)`` there, or its :class:`TeacherTopK`.
        labels: ``(N,)`` the tokens the positions predict.
        kd: alpha, temperature, divergence and its parameters, chunk size.
        normaliser: tokens of the whole accumulated batch; ``None``: ``N``.
    """
    settings = {
        "alpha": kd.alpha,
        "temperature": kd.temperature,
        "divergence": kd.divergence,
        "scale_by_temperature_squared": kd.scale_by_temperature_squared,
        "normaliser": normaliser,
        "chunk_size": kd.chunk_size,
        **kd.divergence_params,
    }
    if isinstance(teacher, TeacherTopK):
        return topk_kd_loss(student_logits, teacher.ids, teacher.logprobs, teacher.log_tail, labels, **settings)
    return kd_loss(student_logits, teacher, labels, **settings)


KD_LOSSES: dict[str, KDLoss] = {
    "vanilla": vanilla_kd,
}


# --- batches and the trainer ---------------------------------------------------------


class IndexedPadCollator(PadCollator):
    """:class:`PadCollator` that also passes each example's dataset ``index`` ``(B,)`` long: its key in the store."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Tensor]:
        batch = super().__call__(features)
        batch["index"] = torch.tensor([feature["index"] for feature in features], dtype=torch.long)  # (B,)
        return batch


class KDTrainer(Trainer):
    """A Trainer whose loss is ``KD_LOSSES[kd.loss]`` against an online teacher or a top-k store.

    Args:
        kd: the distillation settings.
        teacher: the teacher model (online); frozen and moved to the training device here.
        store: the teacher's recorded top-k over the training set (offline); batches must then
            carry each example's ``index`` (see :class:`IndexedPadCollator`).
        shared_vocab_size: logit columns both models share; ``None`` when the vocabularies are the same.
        args, kwargs: as for :class:`transformers.Trainer`.
    """

    def __init__(
        self,
        *args: Any,
        kd: KDConfig,
        teacher: torch.nn.Module | None = None,
        store: TopKStore | None = None,
        shared_vocab_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if (teacher is None) == (store is None):
            raise ValueError("pass exactly one of teacher (online KD) or store (offline KD).")
        if store is not None and store.meta["temperature"] != kd.temperature:
            raise DomainKDError(
                f"{store.directory} was recorded at temperature {store.meta['temperature']}, not train.kd.temperature "
                f"{kd.temperature}; delete it and train again to record it anew."
            )
        self.kd, self.store, self.shared_vocab_size = kd, store, shared_vocab_size
        self.teacher = None if teacher is None else teacher.to(self.args.device).eval().requires_grad_(False)
        self._logged_sums = {"ce": 0.0, "kd": 0.0, "tokens": 0}

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor | tuple[Tensor, Any]:
        """The KD loss of one micro-batch, summed over its response tokens and divided once.

        The divisor is ``num_items_in_batch`` when the Trainer gives it (it does when the
        student's ``forward`` takes ``**kwargs``, as Hugging Face causal LMs do): its count of
        non-ignored ``labels[:, 1:]`` over the whole accumulated batch (transformers 5.23
        counts shifted labels for causal LMs; a test pins this), exactly the positions scored
        here, so the micro-batch losses add up to the accumulated batch's mean and the Trainer
        does not divide by the accumulation steps again. Without it, the divisor is this
        batch's count and the Trainer divides by the steps.
        """
        labels = inputs["labels"][:, 1:]  # (B, T-1): the token each position predicts
        response = labels != IGNORE_INDEX  # (B, T-1)
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        student_logits = cut_to_shared_vocab(outputs.logits[:, :-1], self.shared_vocab_size)[response]  # (N, V)
        teacher = self._teacher_signal(inputs, response)
        loss_fn = KD_LOSSES[self.kd.loss]
        loss, parts = loss_fn(student_logits, teacher, labels[response], self.kd, num_items_in_batch)
        self._add_to_log(parts, num_items_in_batch)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # As in Trainer.compute_loss: the count is summed over processes, whose gradients are averaged.
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def _teacher_signal(self, inputs: dict[str, Tensor], response: Tensor) -> TeacherSignal:
        """The teacher at the ``response`` positions ``(B, T-1)``: logits ``(N, V)`` or stored top-k."""
        if self.teacher is None:
            return self._stored_topk(inputs["index"], response.sum(1))
        with torch.no_grad():
            logits = self.teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        return cut_to_shared_vocab(logits[:, :-1], self.shared_vocab_size)[response]  # (N, V)

    def _stored_topk(self, indices: Tensor, response_counts: Tensor) -> TeacherTopK:
        """The store's rows of examples ``indices (B,)``, concatenated in batch order ``(N, ...)``."""
        rows = [self.store[index] for index in indices.tolist()]
        for index, count, (ids, _, _) in zip(indices.tolist(), response_counts.tolist(), rows):
            if len(ids) != count:
                raise DomainKDError(
                    f"{self.store.directory} holds {len(ids)} teacher tokens for example {index}, which has {count} "
                    "response tokens: the store was written for other inputs; delete it and train again."
                )
        ids, logprobs, log_tail = (torch.cat(parts).to(indices.device) for parts in zip(*rows))
        return TeacherTopK(ids, logprobs, log_tail)

    def _add_to_log(self, parts: KDLossParts, normaliser: Tensor | int | None) -> None:
        if not self.model.training:
            return
        tokens = parts.tokens if normaliser is None else normaliser  # undo the division: sums over tokens
        self._logged_sums["ce"] += float(parts.ce * tokens)
        self._logged_sums["kd"] += float(parts.kd * tokens)
        self._logged_sums["tokens"] += int(parts.tokens)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add ``ce`` and ``kd``, per-token means since the last log (0 without tokens), to each training-loss entry."""
        if "loss" in logs:
            sums, tokens = self._logged_sums, max(self._logged_sums["tokens"], 1)
            logs = {**logs, "ce": round(sums["ce"] / tokens, 4), "kd": round(sums["kd"] / tokens, 4)}
            self._logged_sums = {"ce": 0.0, "kd": 0.0, "tokens": 0}
        super().log(logs, start_time)
