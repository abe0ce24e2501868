"""White-box KD on the Hugging Face Trainer: the student learns the teacher's distributions.

:class:`KDTrainer` only replaces the Trainer's loss. Each step it runs the student, gets the
teacher's signal at the batch's response positions — the frozen teacher's logits and hidden
states (online) or what a :class:`TopKStore` recorded once (offline) — gathers both sides
into a :class:`KDBatch` and hands it to a loss from :data:`KD_LOSSES`. Checkpoints, resume,
gradient accumulation and logging stay the Trainer's.

Positions follow the causal-LM convention of :mod:`domainkd.training.collate`: logits at ``t``
predict ``labels[t + 1]``, and the response positions are those where ``labels[:, 1:]`` is not
``IGNORE_INDEX`` — the same positions the store records and the Trainer counts in
``num_items_in_batch``. When the teacher's tokenizer differs, each example also carries its
teacher tokenisation (``teacher_input_ids``, ``teacher_labels``) and, for ULD and MinED, the
pairs of response positions aligned across the two (see :mod:`domainkd.distill.align`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from transformers import GenerationConfig

from domainkd.config import KDConfig
from domainkd.distill.align import VocabularyMap
from domainkd.distill.dskd import LOSS_TERMS as DSKD_TERMS
from domainkd.distill.dskd import DSKDProjectors, cma_dskd_loss, dskd_loss
from domainkd.distill.logits_store import TopKStore
from domainkd.distill.losses import (
    IGNORE_INDEX,
    KDLossParts,
    kd_loss,
    masked_mean,
    mined_kd_loss,
    topk_from_logits,
    topk_kd_loss,
    uld_loss,
)
from domainkd.distill.vocab import cut_to_shared_vocab
from domainkd.errors import DomainKDError
from domainkd.training.collate import PadCollator, response_ids
from domainkd.training.logits import ResponseTrainer, response_logits

PROJECTORS = "kd_projectors"  # attribute of the student holding the DSKD projectors while it trains


@dataclass(frozen=True)
class TeacherTopK:
    """The stored teacher top-k at a batch's ``M`` response positions, in row-major order."""

    ids: Tensor  # (M, k) long
    logprobs: Tensor  # (M, k), at the temperature the store was recorded at
    log_tail: Tensor  # (M,), log of the teacher's mass outside ids
    tail: tuple[Tensor, Tensor] | None = None  # ids drawn from the tail (M, m) and its entropy (M,), if stored

    def __getitem__(self, rows: Tensor) -> TeacherTopK:
        tail = None if self.tail is None else (self.tail[0][rows], self.tail[1][rows])
        return TeacherTopK(self.ids[rows], self.logprobs[rows], self.log_tail[rows], tail)


TeacherSignal = Tensor | TeacherTopK  # online: teacher logits (M, V); offline: its stored top-k


@dataclass(frozen=True)
class KDBatch:
    """Both models at one micro-batch's response positions, flattened row-major.

    Student side has ``N`` positions, teacher side ``M`` (``M = N`` and the same positions when
    the tokenizers agree). ``*_counts (B,)`` say how many belong to each example.
    """

    student_logits: Tensor  # (N, Vs)
    labels: Tensor  # (N,) the tokens the student positions predict
    student_counts: Tensor  # (B,)
    teacher: TeacherSignal  # (M, Vt) logits or the stored top-k
    teacher_labels: Tensor  # (M,)
    teacher_counts: Tensor  # (B,)
    student_hidden: Tensor | None = None  # (N, ds) last hidden states (DSKD)
    teacher_hidden: Tensor | None = None  # (M, dt)
    student_index_embeds: Tensor | None = None  # (N, 2·ds) input ⊕ target token embeddings (CMA)
    teacher_index_embeds: Tensor | None = None  # (M, 2·dt)
    aligned: tuple[Tensor, Tensor] | None = None  # student rows (P,), teacher rows (P,) matched (ULD, MinED)


@dataclass
class KDModules:
    """What a loss needs besides the batch: heads, projectors, the cross-vocabulary map."""

    student_head: Tensor | None = None  # (Vs, ds), set each step from the student
    teacher_head: Tensor | None = None  # (Vt, dt), frozen
    teacher_embedding: Tensor | None = None  # (Vt, dt), frozen (CMA)
    projectors: DSKDProjectors | None = None
    vocab_map: VocabularyMap | None = None


KDLoss = Callable[[KDBatch, KDConfig, KDModules, Tensor | int | None], tuple[Tensor, KDLossParts]]


# --- losses over response positions --------------------------------------------------


def _settings(kd: KDConfig, normaliser: Tensor | int | None) -> dict[str, Any]:
    return {
        "alpha": kd.alpha,
        "temperature": kd.temperature,
        "divergence": kd.divergence,
        "scale_by_temperature_squared": kd.scale_by_temperature_squared,
        "normaliser": normaliser,
        "chunk_size": kd.chunk_size,
        **kd.divergence_params,
    }


def _with_ce(
    batch: KDBatch, kd_term: Tensor, alpha: float, normaliser: Tensor | int | None, extra: dict[str, Tensor] | None = None
) -> tuple[Tensor, KDLossParts]:
    """``(1 − α)·CE + α·kd_term`` with CE over every student response position, divided by ``normaliser``.

    ``extra``: the KD loss's own detached terms, logged beside ``ce`` and ``kd``.
    """
    ce_per_token = F.cross_entropy(batch.student_logits.float(), batch.labels, reduction="none")  # (N,)
    valid = batch.labels != IGNORE_INDEX
    ce = masked_mean(ce_per_token, valid, normaliser)
    loss = (1 - alpha) * ce + alpha * kd_term
    return loss, KDLossParts(ce=ce.detach(), kd=kd_term.detach(), tokens=valid.sum(), extra=extra or {})


def vanilla_kd(
    batch: KDBatch, kd: KDConfig, modules: KDModules, normaliser: Tensor | int | None
) -> tuple[Tensor, KDLossParts]:
    """``(1 − α)·CE + α·D`` against full teacher logits ``(N, V)`` or a stored top-k (same vocabulary)."""
    if isinstance(batch.teacher, TeacherTopK):
        top = batch.teacher
        settings = _settings(kd, normaliser)
        return topk_kd_loss(
            batch.student_logits, top.ids, top.logprobs, top.log_tail, batch.labels, teacher_tail=top.tail, **settings
        )
    return kd_loss(batch.student_logits, batch.teacher, batch.labels, **_settings(kd, normaliser))


def dual_space_kd(
    batch: KDBatch, kd: KDConfig, modules: KDModules, normaliser: Tensor | int | None
) -> tuple[Tensor, KDLossParts]:
    """DSKD: ``(1 − α)·CE + α·(t2s CE + D in the student's space + D' in the teacher's space)``.

    ``D`` is ``kd.divergence``, ``D'`` is ``kd.teacher_space_divergence`` (forward KL by default,
    as the DSKD repository). Same vocabulary: the teacher's hidden states at the same
    positions; different vocabularies: cross-model attention between the two tokenisations
    of each example. The teacher's logits come from its hidden states and head when only
    those were stored. DSKD's own terms (``t2s_ce``, ``t2s_kd``, ``s2t_kd``, ``t2s_accuracy``)
    are logged.
    """
    teacher_logits = batch.teacher if isinstance(batch.teacher, Tensor) else None
    common = {
        "divergence": kd.divergence,
        "teacher_space_divergence": kd.teacher_space_divergence,
        "temperature": kd.temperature,
        "scale_by_temperature_squared": kd.scale_by_temperature_squared,
        "normaliser": normaliser,
        "chunk_size": kd.chunk_size,
        **kd.divergence_params,
    }
    if modules.projectors.cross_attention:
        kd_term, parts = cma_dskd_loss(
            student_hidden=batch.student_hidden,
            student_index_embeds=batch.student_index_embeds,
            teacher_hidden=batch.teacher_hidden,
            teacher_index_embeds=batch.teacher_index_embeds,
            teacher_logits=teacher_logits,
            student_logits=batch.student_logits,
            labels=batch.labels,
            teacher_labels=batch.teacher_labels,
            student_counts=batch.student_counts,
            teacher_counts=batch.teacher_counts,
            student_head=modules.student_head,
            teacher_head=modules.teacher_head,
            projectors=modules.projectors,
            **common,
        )
    else:
        kd_term, parts = dskd_loss(
            batch.student_logits,
            batch.student_hidden,
            teacher_logits,
            batch.teacher_hidden,
            batch.labels,
            modules.student_head,
            modules.teacher_head,
            modules.projectors,
            **common,
        )
    extra = {name: parts[name] for name in (*DSKD_TERMS, "t2s_accuracy")}
    return _with_ce(batch, kd_term, kd.alpha, normaliser, extra)


def _aligned_teacher_topk(batch: KDBatch, kd: KDConfig, rows: Tensor) -> TeacherTopK:
    """The teacher's distribution at ``rows`` as a top-k: stored, or the whole sorted distribution online."""
    if isinstance(batch.teacher, TeacherTopK):
        return batch.teacher[rows]
    logits = batch.teacher[rows]
    k = logits.shape[-1] if kd.loss == "uld" else min(kd.top_k, logits.shape[-1])
    return TeacherTopK(*topk_from_logits(logits, k, kd.temperature))


def universal_logit_kd(
    batch: KDBatch, kd: KDConfig, modules: KDModules, normaliser: Tensor | int | None
) -> tuple[Tensor, KDLossParts]:
    """ULD: ``(1 − α)·CE + α·‖sort(p_student) − sort(p_teacher)‖₁``, i-th response token with i-th."""
    student_rows, teacher_rows = batch.aligned
    teacher = _aligned_teacher_topk(batch, kd, teacher_rows)
    kd_term, _ = uld_loss(
        batch.student_logits[student_rows],
        teacher.logprobs,
        teacher.log_tail,
        batch.labels[student_rows],
        alpha=1.0,
        temperature=kd.temperature,
        normaliser=batch.labels.numel() if normaliser is None else normaliser,
        scale_by_temperature_squared=kd.scale_by_temperature_squared,
        chunk_size=kd.chunk_size,
    )
    return _with_ce(batch, kd_term, kd.alpha, normaliser)


def min_edit_distance_kd(
    batch: KDBatch, kd: KDConfig, modules: KDModules, normaliser: Tensor | int | None
) -> tuple[Tensor, KDLossParts]:
    """MinED: the divergence at edit-distance-aligned positions, teacher tokens mapped to the closest student's."""
    student_rows, teacher_rows = batch.aligned
    teacher = _aligned_teacher_topk(batch, kd, teacher_rows)
    settings = {**_settings(kd, batch.labels.numel() if normaliser is None else normaliser), "alpha": 1.0}
    kd_term, _ = mined_kd_loss(
        batch.student_logits[student_rows],
        modules.vocab_map(teacher.ids.cpu()).to(teacher.ids.device),
        teacher.logprobs,
        teacher.log_tail,
        batch.labels[student_rows],
        **settings,
    )
    return _with_ce(batch, kd_term, kd.alpha, normaliser)


KD_LOSSES: dict[str, KDLoss] = {
    "vanilla": vanilla_kd,
    "dskd": dual_space_kd,
    "uld": universal_logit_kd,
    "mined": min_edit_distance_kd,
}
NEEDS_HIDDEN_STATES = {"dskd"}


# --- batches -------------------------------------------------------------------------


class KDCollator(PadCollator):
    """:class:`PadCollator` plus what KD needs of each example.

    Adds ``index (B,)`` (the example's key in the store), and when examples carry a teacher
    tokenisation, ``teacher_input_ids``/``teacher_labels``/``teacher_attention_mask`` ``(B, Tt)``
    padded with ``teacher_pad_token_id``; when they carry aligned response positions
    (``aligned_student``, ``aligned_teacher``: local indices), ``aligned_student_rows`` and
    ``aligned_teacher_rows`` ``(P,)``: the same pairs as rows of the flattened batch.
    """

    def __init__(self, pad_token_id: int, teacher_pad_token_id: int | None = None) -> None:
        super().__init__(pad_token_id)
        self.teacher = None if teacher_pad_token_id is None else PadCollator(teacher_pad_token_id)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Tensor]:
        batch = super().__call__(features)
        batch["index"] = torch.tensor([feature["index"] for feature in features], dtype=torch.long)  # (B,)
        if self.teacher is not None and "teacher_input_ids" in features[0]:
            teacher_features = [
                {"input_ids": feature["teacher_input_ids"], "labels": feature["teacher_labels"]} for feature in features
            ]
            batch.update({f"teacher_{name}": value for name, value in self.teacher(teacher_features).items()})
        if "aligned_student" in features[0]:
            batch["aligned_student_rows"], batch["aligned_teacher_rows"] = self._aligned_rows(features)
        return batch

    @staticmethod
    def _aligned_rows(features: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        student_rows, teacher_rows, student_offset, teacher_offset = [], [], 0, 0
        for feature in features:
            student_rows += [student_offset + index for index in feature["aligned_student"]]
            teacher_rows += [teacher_offset + index for index in feature["aligned_teacher"]]
            student_offset += len(response_ids(feature["labels"]))
            teacher_offset += len(response_ids(feature.get("teacher_labels", feature["labels"])))
        return torch.tensor(student_rows, dtype=torch.long), torch.tensor(teacher_rows, dtype=torch.long)


# --- the trainer ---------------------------------------------------------------------


class KDTrainer(ResponseTrainer):
    """A Trainer whose loss is ``KD_LOSSES[kd.loss]`` against an online teacher or a top-k store.

    Args:
        kd: the distillation settings.
        teacher: the teacher model (online); frozen and moved to the training device here.
        store: the teacher's recorded top-k over the training set (offline); batches must then
            carry each example's ``index`` (see :class:`KDCollator`). DSKD needs a store that
            also keeps hidden states and the teacher's head.
        shared_vocab_size: logit columns both models share; ``None`` when the vocabularies are
            the same or different (different: the batches carry the teacher's own tokenisation).
        cross_tokenizer: the teacher's tokenizer differs from the student's.
        projectors: DSKD's learned projectors; attached to the student so the optimizer,
            checkpoints and ``accelerate`` treat them as its parameters (removed before saving).
        vocab_map: teacher id → closest student id (MinED).
        pad_token_id: the student's pad id, for the batches of on-policy steps.
        suppressed_tokens: student ids the teacher has no logit for, never sampled on on-policy steps.
        args, kwargs: as for :class:`transformers.Trainer`.
    """

    def __init__(
        self,
        *args: Any,
        kd: KDConfig,
        teacher: torch.nn.Module | None = None,
        store: TopKStore | None = None,
        shared_vocab_size: int | None = None,
        cross_tokenizer: bool = False,
        projectors: DSKDProjectors | None = None,
        vocab_map: VocabularyMap | None = None,
        pad_token_id: int | None = None,
        suppressed_tokens: list[int] | None = None,
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
        if kd.loss == "dskd" and projectors is None:
            raise ValueError("the dskd loss needs its projectors.")
        if kd.loss == "dskd" and store is not None and not store.meta["hidden_size"]:
            raise DomainKDError(
                f"{store.directory} keeps no teacher hidden states, which dskd needs; delete it and train again."
            )
        self.kd, self.store, self.shared_vocab_size = kd, store, shared_vocab_size
        self.cross_tokenizer = cross_tokenizer
        self.teacher = None if teacher is None else teacher.to(self.args.device).eval().requires_grad_(False)
        self.modules = KDModules(vocab_map=vocab_map)
        if projectors is not None:
            self.model.add_module(PROJECTORS, projectors.to(self.args.device))
            self.modules.teacher_head, self.modules.teacher_embedding = self._teacher_weights()
        self.pad_token_id = pad_token_id
        if kd.on_policy_fraction and pad_token_id is None:
            raise ValueError("on-policy steps need the student's pad_token_id.")
        self.suppressed_tokens = suppressed_tokens or []
        self._logged_sums = {"ce": 0.0, "kd": 0.0, "tokens": 0}

    def _teacher_weights(self) -> tuple[Tensor, Tensor]:
        """The teacher's frozen output head and input embedding ``(Vt, dt)``, cut to the shared columns."""
        if self.teacher is not None:
            head, embedding = self.teacher.get_output_embeddings().weight, self.teacher.get_input_embeddings().weight
        else:
            weights = self.store.teacher_head()
            head, embedding = weights["output"], weights["embedding"]
        rows = slice(None, self.shared_vocab_size)
        return head[rows].detach().to(self.args.device), embedding.detach().to(self.args.device)

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

        On an on-policy step (a share ``kd.on_policy_fraction`` of optimizer steps, drawn from
        the seed and the step number, so a resumed run draws the same) every micro-batch's answers
        are first replaced by ones the student samples and trained on the divergence alone (no CE on
        the student's own tokens); each is then averaged over its own tokens and weighted
        ``1 / accumulation steps``.
        """
        wrapped = isinstance(model, DistributedDataParallel)
        if wrapped and hasattr(model.module, PROJECTORS) and not model.static_graph:
            # The projectors are trained outside the student's forward; DDP handles that with a static graph.
            model._set_static_graph()
        on_policy = model.training and self._on_policy_step()
        if on_policy:
            counted_by_trainer, num_items_in_batch = num_items_in_batch, None
            inputs = self._student_samples(model, inputs)
        student = self.accelerator.unwrap_model(model)
        hidden = self.kd.loss in NEEDS_HIDDEN_STATES
        labels = inputs["labels"][:, 1:]  # (B, T-1): the token each position predicts
        response = labels != IGNORE_INDEX  # (B, T-1)
        student_logits, student_hidden = response_logits(model, student, inputs, response, hidden)  # (N, V), (N, ds)
        batch = KDBatch(
            student_logits=self._shared(student_logits),
            labels=labels[response],
            student_counts=response.sum(1),
            student_hidden=student_hidden,
            **self._teacher_side(inputs, response, hidden),
        )
        self.modules.projectors = getattr(student, PROJECTORS, None)
        if self.modules.projectors is not None:
            self.modules.student_head = student.get_output_embeddings().weight[: self.shared_vocab_size].detach()
            if self.modules.projectors.cross_attention:
                batch = replace(batch, **self._index_embeds(student, inputs, response, batch))
        # On the student's own samples the divergence alone trains (GKD, TRL's GKDTrainer): the CE term would
        # raise the likelihood of whatever the student sampled.
        kd = self.kd.model_copy(update={"alpha": 1.0}) if on_policy else self.kd
        loss, parts = KD_LOSSES[self.kd.loss](batch, kd, self.modules, num_items_in_batch)
        self._add_to_log(parts, num_items_in_batch)
        if on_policy and counted_by_trainer is not None:  # the Trainer will not divide by the accumulation steps
            loss = loss / self.current_gradient_accumulation_steps
        loss = self.across_processes(loss, num_items_in_batch)
        return (loss, {"logits": student_logits}) if return_outputs else loss

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, with DSKD's projectors in their own group at ``kd.projector_learning_rate``."""
        optimizer = super().create_optimizer(model)
        projectors = getattr(self.model, PROJECTORS, None)
        if projectors is None or self.kd.projector_learning_rate is None:
            return optimizer
        moved = {id(parameter) for parameter in projectors.parameters()}
        for group in optimizer.param_groups:
            group["params"] = [parameter for parameter in group["params"] if id(parameter) not in moved]
        optimizer.add_param_group(
            {"params": list(projectors.parameters()), "lr": self.kd.projector_learning_rate, "weight_decay": 0.0}
        )
        return optimizer

    def _on_policy_step(self) -> bool:
        fraction = self.kd.on_policy_fraction
        return bool(fraction) and random.Random(f"{self.args.seed}:{self.state.global_step}").random() < fraction

    def _shared(self, logits: Tensor) -> Tensor:
        return cut_to_shared_vocab(logits, self.shared_vocab_size)

    def _teacher_view(self, inputs: dict[str, Tensor], response: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The teacher's ``input_ids``, ``attention_mask``, ``labels`` (its own tokenisation when it differs)
        and its response positions ``(B, Tt-1)``."""
        if not self.cross_tokenizer:
            return inputs, response
        teacher_inputs = {name: inputs[f"teacher_{name}"] for name in ("input_ids", "attention_mask", "labels")}
        return teacher_inputs, teacher_inputs["labels"][:, 1:] != IGNORE_INDEX

    def _teacher_side(self, inputs: dict[str, Tensor], response: Tensor, hidden: bool) -> dict[str, Any]:
        """The :class:`KDBatch` fields of the teacher, and the aligned rows when the batch carries them."""
        teacher_inputs, teacher_response = self._teacher_view(inputs, response)
        teacher_labels = teacher_inputs["labels"][:, 1:]
        side = {"teacher_labels": teacher_labels[teacher_response], "teacher_counts": teacher_response.sum(1)}
        if "aligned_student_rows" in inputs:
            side["aligned"] = (inputs["aligned_student_rows"], inputs["aligned_teacher_rows"])
        if self.teacher is None:
            side["teacher"] = self._stored_topk(inputs["index"], side["teacher_counts"])
            if hidden:
                side["teacher_hidden"] = torch.cat([self.store.hidden(i) for i in inputs["index"].tolist()]).to(
                    response.device
                )
            return side
        with torch.no_grad():
            outputs = self.teacher(
                input_ids=teacher_inputs["input_ids"],
                attention_mask=teacher_inputs["attention_mask"],
                output_hidden_states=hidden,
            )
        side["teacher"] = self._shared(outputs.logits[:, :-1])[teacher_response]  # (M, Vt)
        if hidden:
            side["teacher_hidden"] = outputs.hidden_states[-1][:, :-1][teacher_response]  # (M, dt)
        return side

    def _index_embeds(
        self, student: torch.nn.Module, inputs: dict[str, Tensor], response: Tensor, batch: KDBatch
    ) -> dict[str, Tensor]:
        """Cross-model attention's keys: each position's input-token and target-token embeddings, both sides."""
        with torch.no_grad():
            student_embed = student.get_input_embeddings()
            student_index = torch.cat(
                [student_embed(inputs["input_ids"][:, :-1][response]), student_embed(batch.labels)], -1
            )  # (N, 2·ds)
            teacher_inputs, teacher_response = self._teacher_view(inputs, response)
            table = self.modules.teacher_embedding
            teacher_index = torch.cat(
                [
                    F.embedding(teacher_inputs["input_ids"][:, :-1][teacher_response], table),
                    F.embedding(batch.teacher_labels, table),
                ],
                -1,
            )  # (M, 2·dt)
        return {"student_index_embeds": student_index, "teacher_index_embeds": teacher_index}

    def _stored_topk(self, indices: Tensor, response_counts: Tensor) -> TeacherTopK:
        """The store's rows of examples ``indices (B,)``, concatenated in batch order ``(M, ...)``.

        A store keeps ``kd.tail_samples`` tail draws per token for each epoch; epoch ``e`` uses the
        ``e``-th set, so no draw is used twice and the student cannot fit its tail to a few fixed ids
        (fitting free logits to 8 draws reused at every step left a true KL of 0.115 nats/token where
        fresh draws left 0.011, ``bench/tail_estimator.py``). A store whose draws are not a multiple of
        ``kd.tail_samples`` uses all of them every epoch.
        """
        rows = [self.store[index] for index in indices.tolist()]
        for index, count, (ids, _, _) in zip(indices.tolist(), response_counts.tolist(), rows):
            if len(ids) != count:
                raise DomainKDError(
                    f"{self.store.directory} holds {len(ids)} teacher tokens for example {index}, which has {count} "
                    "response tokens: the store was written for other inputs; delete it and train again."
                )
        ids, logprobs, log_tail = (torch.cat(parts).to(indices.device) for parts in zip(*rows))
        tails = [self.store.tail(index) for index in indices.tolist()]
        tail = None if tails[0] is None else tuple(torch.cat(parts).to(indices.device) for parts in zip(*tails))
        if tail is not None:
            tail = (self._this_epochs_draws(tail[0]), tail[1])
        return TeacherTopK(ids, logprobs, log_tail, tail)

    def _this_epochs_draws(self, tail_ids: Tensor) -> Tensor:
        """The columns of ``tail_ids (M, draws)`` that belong to the current epoch (all, if they do not divide)."""
        per_epoch, draws = self.kd.tail_samples, tail_ids.shape[1]
        if not per_epoch or draws % per_epoch or draws == per_epoch:
            return tail_ids
        epoch = int(self.state.epoch or 0) % (draws // per_epoch)
        return tail_ids[:, epoch * per_epoch : (epoch + 1) * per_epoch]

    # --- on-policy steps (GKD) ---

    def _student_samples(self, model: torch.nn.Module, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch with each answer replaced by one the student samples at temperature 1 from the same prompt."""
        student = self.accelerator.unwrap_model(model)
        labels, input_ids = inputs["labels"], inputs["input_ids"]
        prompt_lengths = torch.where(
            (labels != IGNORE_INDEX).any(1), (labels != IGNORE_INDEX).int().argmax(1), inputs["attention_mask"].sum(1)
        ).tolist()
        width = max(prompt_lengths)
        prompts = torch.full((len(prompt_lengths), width), self.pad_token_id, dtype=torch.long, device=input_ids.device)
        prompt_mask = torch.zeros_like(prompts)
        for row, length in enumerate(prompt_lengths):  # left-padded, as generation wants
            prompts[row, width - length :], prompt_mask[row, width - length :] = input_ids[row, :length], 1
        eos = student.generation_config.eos_token_id
        settings = GenerationConfig(  # the student's own distribution: every truncation the model's defaults set, off
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            min_p=0.0,
            typical_p=1.0,
            repetition_penalty=1.0,
            max_new_tokens=self.kd.on_policy_max_new_tokens,
            pad_token_id=self.pad_token_id,
            eos_token_id=eos,
            suppress_tokens=self.suppressed_tokens or None,
        )
        student.eval()
        with torch.no_grad():
            sampled = student.generate(input_ids=prompts, attention_mask=prompt_mask, generation_config=settings)
        sampled = sampled[:, width:]
        student.train()
        stops = set(eos if isinstance(eos, list) else [eos])
        features = []
        for row, length in enumerate(prompt_lengths):
            answer = sampled[row].tolist()
            ends = [position for position, token in enumerate(answer) if token in stops]
            answer = answer[: ends[0] + 1] if ends else answer
            prompt = input_ids[row, :length].tolist()
            features.append({"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * length + answer})
        batch = PadCollator(self.pad_token_id)(features)
        return {name: value.to(input_ids.device) for name, value in batch.items()}

    # --- logging ---

    def _add_to_log(self, parts: KDLossParts, normaliser: Tensor | int | None) -> None:
        if not self.model.training:
            return
        tokens = parts.tokens if normaliser is None else normaliser  # undo the division: sums over tokens
        for name, value in {"ce": parts.ce, "kd": parts.kd, **parts.extra}.items():
            self._logged_sums[name] = self._logged_sums.get(name, 0.0) + float(value * tokens)
        self._logged_sums["tokens"] += int(parts.tokens)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add ``ce``, ``kd`` and the loss's own terms (DSKD's), per-token means since the last log (0 without
        tokens), to each training-loss entry."""
        if "loss" in logs:
            sums, tokens = self._logged_sums, max(self._logged_sums["tokens"], 1)
            logs = {**logs, **{name: round(total / tokens, 4) for name, total in sums.items() if name != "tokens"}}
            self._logged_sums = {"ce": 0.0, "kd": 0.0, "tokens": 0}
        super().log(logs, start_time)


def detach_projectors(model: torch.nn.Module) -> None:
    """Remove the DSKD projectors from a trained student, so it saves as the plain model it is."""
    if hasattr(model, PROJECTORS):
        delattr(model, PROJECTORS)
