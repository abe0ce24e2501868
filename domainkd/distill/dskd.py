"""Dual-Space Knowledge Distillation (Zhang et al., EMNLP 2024; github.com/songmzhang/DSKD).

DSKD distils in both models' output spaces through learned linear projectors:

- **student space**: teacher hidden states projected to the student (``t2s``) and read out by
  the student's head give a teacher distribution over the student vocabulary; ``t2s_ce``
  (cross-entropy on the labels) trains the projector, ``t2s_kd = D(student ‖ t2s)`` trains
  the student against it (detached);
- **teacher space**: student hidden states projected to the teacher (``s2t``) and read out by
  the teacher's head are trained towards the teacher's own distribution, ``s2t_kd``.

:func:`dskd_loss` is the repo's ``DualSpaceKD`` (same vocabulary, positions aligned one to
one); :func:`cma_dskd_loss` is ``DualSpaceKDWithCMA`` (different vocabularies), where a
cross-model attention between the two tokenisations of each example replaces the one-to-one
alignment. Both return only the KD part; the caller mixes in the student's own CE.

Conventions, as in :mod:`domainkd.distill.losses`: inputs are already gathered at response
positions and flattened over the batch; ``D`` is :func:`~domainkd.distill.losses.divergence`
with arguments ``(student, teacher)``; every term is summed over positions and divided once
by ``normaliser`` (the student tokens of the whole accumulated batch), so micro-batch losses
add up to the full batch's. Both heads are frozen here (detached, as in the repo); gradients
reach the projectors, ``student_logits`` and ``student_hidden`` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from domainkd.distill import losses
from domainkd.distill.losses import IGNORE_INDEX, masked_mean

Term = tuple[Tensor, Tensor]  # per-position values (n,) and the positions that count (n,) bool
LOSS_TERMS = ("t2s_ce", "t2s_kd", "s2t_kd")


class DSKDProjectors(nn.Module):
    """The learned projectors of DSKD, one ``nn.Linear`` each (with bias), as in the repo.

    ``t2s``: teacher hidden ``d_t`` → student ``d_s``; ``s2t``: student ``d_s`` → teacher ``d_t``;
    with ``cross_attention`` also ``query``: student index embeddings ``2·d_s`` → ``2·d_t``
    (the repo's ``projector_config.json``: ``t-s``, ``s-t``, ``2s-2t``).

    Initialisation is PyTorch's default for ``nn.Linear`` (Kaiming-uniform weights, bias
    uniform in ``±1/√fan_in``), which is what the repo uses; the repo trains the projectors
    in their own optimiser group at lr ``1e-3`` (``--projector-lr``). Its checkpoints name
    the weights ``t2s.0.weight`` (``nn.Sequential``); here they are ``t2s.weight``.
    """

    def __init__(self, student_hidden: int, teacher_hidden: int, cross_attention: bool = False) -> None:
        super().__init__()
        if student_hidden < 1 or teacher_hidden < 1:
            raise ValueError(f"hidden sizes must be ≥ 1, got student {student_hidden} and teacher {teacher_hidden}.")
        self.cross_attention = cross_attention
        self.t2s = nn.Linear(teacher_hidden, student_hidden)
        self.s2t = nn.Linear(student_hidden, teacher_hidden)
        self.query = nn.Linear(2 * student_hidden, 2 * teacher_hidden) if cross_attention else None


@dataclass(frozen=True)
class _Setup:
    """What every position's loss needs besides its own tensors."""

    student_head: Tensor  # (Vs, ds), detached
    teacher_head: Tensor  # (Vt, dt), detached
    projectors: DSKDProjectors
    divergence: str  # student space, t2s_kd
    teacher_space_divergence: str  # s2t_kd
    temperature: float
    params: dict[str, float] = field(default_factory=dict)
    kd_scale: float = 1.0  # τ² on t2s_kd and s2t_kd when asked

    @property
    def teacher_space_params(self) -> dict[str, float]:
        return self.params if self.teacher_space_divergence == self.divergence else {}


def _setup(
    student_head: Tensor,
    teacher_head: Tensor,
    projectors: DSKDProjectors,
    divergence: str,
    teacher_space_divergence: str,
    temperature: float,
    params: dict[str, float],
    scale_by_temperature_squared: bool = False,
) -> _Setup:
    """The checked shared arguments, heads detached (frozen, as in the repo)."""
    for name in (divergence, teacher_space_divergence):
        if name not in losses.DIVERGENCES:
            raise ValueError(f"unknown divergence {name!r}; known: {', '.join(losses.DIVERGENCES)}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    heads = (student_head.detach(), teacher_head.detach())
    scale = temperature**2 if scale_by_temperature_squared else 1.0
    return _Setup(*heads, projectors, divergence, teacher_space_divergence, temperature, params, scale)


# --- shared pieces -------------------------------------------------------------------


def _float(values: Tensor) -> Tensor:
    """``values`` in at least float32."""
    return values.to(torch.promote_types(values.dtype, torch.float32))


def _project(projector: nn.Linear, hidden: Tensor) -> Tensor:
    """``projector(hidden)`` ``(n, d_out)``, computed in the projector's dtype."""
    return projector(hidden.to(projector.weight.dtype))


def _read_out(hidden: Tensor, head: Tensor) -> Tensor:
    """Logits ``(n, V)`` of ``hidden (n, d)`` through a frozen ``head (V, d)``, in the head's dtype.

    The matmul stays in the head's dtype (as in the repo) so a bf16 head is never copied to
    float32; the divergences and CE promote the logits themselves.
    """
    return hidden.to(head.dtype) @ head.T


def _zero_invalid(valid: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Rows of ``(n, ...)`` tensors at ``~valid (n,)`` set to 0, so garbage there (NaN, inf) goes nowhere."""
    return tuple(torch.where(valid[:, None], values, 0) for values in tensors)


def _t2s_terms(
    student_logits: Tensor, t2s_logits: Tensor, labels: Tensor, setup: _Setup
) -> tuple[Tensor, Tensor, Tensor]:
    """Student-space terms per position ``(n,)``: ``t2s_ce``, ``t2s_kd``, and whether ``t2s`` argmax is the label.

    ``t2s_ce`` trains the projector only (the head is frozen, the teacher side has no
    gradient); ``t2s_kd = D(student ‖ t2s)`` trains the student only (``t2s`` detached).
    """
    t2s_ce = F.cross_entropy(_float(t2s_logits), labels, ignore_index=IGNORE_INDEX, reduction="none")
    t2s_kd = losses.divergence(
        setup.divergence, student_logits, t2s_logits.detach(), setup.temperature, **setup.params
    )
    return t2s_ce, setup.kd_scale * t2s_kd, t2s_logits.detach().argmax(-1) == labels


def _s2t_term(s2t_logits: Tensor, teacher_logits: Tensor, setup: _Setup) -> Tensor:
    """Teacher-space ``s2t_kd = D(s2t ‖ teacher)`` per position ``(m,)``, the teacher as target."""
    return setup.kd_scale * losses.divergence(
        setup.teacher_space_divergence, s2t_logits, teacher_logits, setup.temperature, **setup.teacher_space_params
    )


def _reduce(
    terms: dict[str, Term], t2s_correct: Term, tokens: Tensor, normaliser: int | float | Tensor | None
) -> tuple[Tensor, dict[str, Tensor]]:
    """``Σ`` of the terms' sums divided once by ``normaliser`` (default ``tokens``), and the detached parts."""
    normaliser = tokens if normaliser is None else normaliser
    means = {name: masked_mean(values, mask, normaliser) for name, (values, mask) in terms.items()}
    loss = sum(means[name] for name in LOSS_TERMS)
    parts = {name: mean.detach() for name, mean in means.items()}
    parts["t2s_accuracy"] = masked_mean(t2s_correct[0].to(loss.dtype), t2s_correct[1], normaliser).detach()
    parts["tokens"] = tokens
    return loss, parts


# --- same vocabulary -----------------------------------------------------------------


def _dskd_token_losses(
    student_logits: Tensor,
    student_hidden: Tensor,
    teacher_logits: Tensor | None,
    teacher_hidden: Tensor,
    labels: Tensor,
    setup: _Setup,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-position ``t2s_ce``, ``t2s_kd``, ``s2t_kd`` and t2s correctness ``(n,)``; masked positions give 0."""
    valid = labels != IGNORE_INDEX
    student_logits, student_hidden, teacher_hidden = _zero_invalid(
        valid, student_logits, student_hidden, teacher_hidden
    )
    if teacher_logits is None:
        teacher_logits = _read_out(teacher_hidden, setup.teacher_head)  # (n, Vt)
    else:
        (teacher_logits,) = _zero_invalid(valid, teacher_logits)
    t2s_logits = _read_out(_project(setup.projectors.t2s, teacher_hidden), setup.student_head)  # (n, Vs)
    t2s_ce, t2s_kd, t2s_correct = _t2s_terms(student_logits, t2s_logits, labels, setup)
    s2t_logits = _read_out(_project(setup.projectors.s2t, student_hidden), setup.teacher_head)  # (n, Vt)
    return t2s_ce, t2s_kd, _s2t_term(s2t_logits, teacher_logits, setup), t2s_correct


def _chunked(
    token_losses: Callable[..., tuple[Tensor, ...]], inputs: tuple[Tensor | None, ...], chunk_size: int | None
) -> tuple[Tensor, ...]:
    """``token_losses(*inputs)``, or chunk by chunk over the rows with each chunk recomputed in backward.

    ``inputs`` are ``(n, ...)`` or ``None`` (passed to every chunk as is).
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}.")
    rows = inputs[-1].shape[0]
    if chunk_size is None or rows <= chunk_size:
        return token_losses(*inputs)
    starts = range(0, rows, chunk_size)
    chunks = (tuple(None if x is None else x[start : start + chunk_size] for x in inputs) for start in starts)
    pieces = [checkpoint(token_losses, *chunk, use_reentrant=False) for chunk in chunks]
    return tuple(torch.cat(parts) for parts in zip(*pieces))


def dskd_loss(
    student_logits: Tensor,
    student_hidden: Tensor,
    teacher_logits: Tensor | None,
    teacher_hidden: Tensor,
    labels: Tensor,
    student_head: Tensor,
    teacher_head: Tensor,
    projectors: DSKDProjectors,
    *,
    divergence: str = "forward_kl",
    temperature: float = 1.0,
    normaliser: int | float | Tensor | None = None,
    chunk_size: int | None = None,
    teacher_space_divergence: str = "forward_kl",
    scale_by_temperature_squared: bool = False,
    **divergence_params: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DSKD for a shared vocabulary (the repo's ``DualSpaceKD``): ``t2s_ce + t2s_kd + s2t_kd``.

    - ``t2s_logits = t2s(teacher_hidden) @ student_headᵀ``; ``t2s_ce = CE(t2s_logits, labels)``;
      ``t2s_kd = D(student_logits ‖ t2s_logits.detach())``;
    - ``s2t_logits = s2t(student_hidden) @ teacher_headᵀ``; ``s2t_kd = D'(s2t_logits ‖ teacher_logits)``.

    ``D`` is ``divergence`` (with ``divergence_params``), ``D'`` is ``teacher_space_divergence``,
    forward KL by default because the repo always uses forward KL there; it gets
    ``divergence_params`` only if it is the same divergence. Both are at ``temperature``, CE
    at 1. Each term is summed over the positions whose label is not ``IGNORE_INDEX`` and
    divided once by ``normaliser``.

    Memory: ``t2s_logits (N, Vs)`` and ``s2t_logits (N, Vt)`` plus their float32
    log-softmaxes live until backward, unless ``chunk_size`` is set.

    Args:
        student_logits: ``(N, Vs)``, the student's logits at the response positions.
        student_hidden: ``(N, d_s)``, the student's last hidden state there (post final norm,
            HF ``hidden_states[-1]``), the input of its head.
        teacher_logits: ``(N, Vt)`` at the same positions, or ``None`` for
            ``teacher_hidden @ teacher_headᵀ`` (an offline store of teacher hidden states;
            HF Llama/Qwen ``lm_head(hidden_states[-1])`` are the logits).
        teacher_hidden: ``(N, d_t)``, the teacher's last hidden state.
        labels: ``(N,)`` long, the tokens the positions predict; ``IGNORE_INDEX`` counts nowhere.
        student_head: ``(Vs, d_s)`` output-embedding weight, frozen here.
        teacher_head: ``(Vt, d_t)`` output-embedding weight, frozen here (no bias, as Llama/Qwen).
        projectors: their ``t2s`` and ``s2t`` are used.
        divergence: a name in :data:`~domainkd.distill.losses.DIVERGENCES`, for ``t2s_kd``.
        temperature: > 0, for both divergences.
        normaliser: student tokens of the whole accumulated batch; defaults to this batch's.
        chunk_size: if set, positions go ``chunk_size`` at a time, each chunk recomputed in
            backward (activation checkpointing); the result equals the unchunked one.
        teacher_space_divergence: a name in ``DIVERGENCES``, for ``s2t_kd``.
        scale_by_temperature_squared: multiply ``t2s_kd`` and ``s2t_kd`` by ``τ²`` (not ``t2s_ce``).
        divergence_params: ``divergence``'s own (``beta``, ``skew``, ``mu``).

    Returns:
        The scalar KD loss and its detached parts: ``t2s_ce``, ``t2s_kd``, ``s2t_kd`` (each with
        the loss's normalisation, so they sum to it), ``t2s_accuracy`` (share of positions
        whose ``t2s`` argmax is the label, same normalisation) and ``tokens``.
    """
    setup = _setup(
        student_head, teacher_head, projectors, divergence, teacher_space_divergence, temperature, divergence_params,
        scale_by_temperature_squared,
    )
    inputs = (
        student_logits,
        student_hidden,
        None if teacher_logits is None else teacher_logits.detach(),
        teacher_hidden.detach(),
        labels,
    )
    t2s_ce, t2s_kd, s2t_kd, t2s_correct = _chunked(partial(_dskd_token_losses, setup=setup), inputs, chunk_size)
    valid = labels != IGNORE_INDEX
    terms = {"t2s_ce": (t2s_ce, valid), "t2s_kd": (t2s_kd, valid), "s2t_kd": (s2t_kd, valid)}
    return _reduce(terms, (t2s_correct, valid), valid.sum(), normaliser)


# --- different vocabularies: cross-model attention ------------------------------------


def _divided_by_std(values: Tensor, valid: Tensor) -> Tensor:
    """``values (m, d)`` over the (unbiased) std of all entries of its ``valid (m,)`` rows, in ≥ float32.

    Left as is where that std is undefined (fewer than 2 entries) or 0.
    """
    values = _float(values)
    kept = values[valid]
    if kept.numel() < 2:
        return values
    std = kept.std()
    return values / torch.where(std > 0, std, 1)


def _attend(align: Tensor, pairs: Tensor) -> Tensor:
    """Row softmax of ``align (n, m)`` over the columns where ``pairs (n, m)`` holds.

    A row without any such column gets uniform weights (finite, and dropped by the caller).
    """
    empty = ~pairs.any(-1, keepdim=True)  # (n, 1)
    return align.masked_fill(~pairs, -math.inf).masked_fill(empty, 0).softmax(-1)


def _cma_attention(
    student_hidden: Tensor,
    student_index_embeds: Tensor,
    labels: Tensor,
    teacher_hidden: Tensor,
    teacher_index_embeds: Tensor,
    teacher_labels: Tensor,
    setup: _Setup,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One example's cross-model attention: the attended hidden states ``t2s (n, ds)`` at its student
    positions and ``s2t (m, dt)`` at its teacher positions, and which of each had anything to attend to."""
    student_valid, teacher_valid = labels != IGNORE_INDEX, teacher_labels != IGNORE_INDEX
    student_hidden, student_index_embeds = _zero_invalid(student_valid, student_hidden, student_index_embeds)
    teacher_hidden, teacher_index_embeds = _zero_invalid(teacher_valid, teacher_hidden, teacher_index_embeds)
    teacher_size = teacher_hidden.shape[-1]
    keys = _divided_by_std(teacher_index_embeds, teacher_valid)  # (m, 2·dt)
    values_in = _divided_by_std(teacher_hidden, teacher_valid) + _divided_by_std(
        teacher_index_embeds[:, teacher_size:], teacher_valid
    )  # (m, dt): normalised hidden + normalised target-token embedding, as in the repo
    queries = _float(_project(setup.projectors.query, student_index_embeds))  # (n, 2·dt)
    align = queries @ keys.T.to(queries.dtype) / math.sqrt(2 * teacher_size)  # (n, m)
    pairs = student_valid[:, None] & teacher_valid[None, :]  # (n, m)
    t2s_hidden = _attend(align, pairs) @ _float(_project(setup.projectors.t2s, values_in))  # (n, ds)
    s2t_hidden = _attend(align.T, pairs.T) @ _float(_project(setup.projectors.s2t, student_hidden))  # (m, dt)
    return t2s_hidden, s2t_hidden, pairs.any(1), pairs.any(0)


def _cma_student_rows(student_logits: Tensor, t2s_hidden: Tensor, labels: Tensor, setup: _Setup) -> tuple[Tensor, ...]:
    """``t2s_ce``, ``t2s_kd`` and t2s correctness ``(n,)`` from attended teacher states, row by row."""
    (student_logits, t2s_hidden) = _zero_invalid(labels != IGNORE_INDEX, student_logits, t2s_hidden)
    return _t2s_terms(student_logits, _read_out(t2s_hidden, setup.student_head), labels, setup)


def _cma_teacher_rows(
    s2t_hidden: Tensor, teacher_logits: Tensor | None, teacher_hidden: Tensor, teacher_labels: Tensor, setup: _Setup
) -> tuple[Tensor]:
    """``s2t_kd (m,)`` from attended student states against the teacher's distribution, row by row."""
    valid = teacher_labels != IGNORE_INDEX
    s2t_hidden, teacher_hidden = _zero_invalid(valid, s2t_hidden, teacher_hidden)
    if teacher_logits is None:
        teacher_logits = _read_out(teacher_hidden, setup.teacher_head)  # (m, Vt)
    else:
        (teacher_logits,) = _zero_invalid(valid, teacher_logits)
    return (_s2t_term(_read_out(s2t_hidden, setup.teacher_head), teacher_logits, setup),)


def _check_cma_inputs(
    student_counts: Tensor, teacher_counts: Tensor, rows: tuple[int, int], teacher_index_size: int, teacher_size: int
) -> None:
    """Raise on counts that do not describe the rows, or index embeddings that are not ``2·d_t`` wide."""
    if student_counts.shape != teacher_counts.shape or student_counts.dim() != 1:
        shapes = f"{tuple(student_counts.shape)} and {tuple(teacher_counts.shape)}"
        raise ValueError(f"student_counts and teacher_counts must both be (B,), got {shapes}.")
    sums = (int(student_counts.sum()), int(teacher_counts.sum()))
    if sums != rows:
        raise ValueError(f"the counts sum to {sums} (student, teacher) positions but the inputs hold {rows}.")
    if teacher_index_size != 2 * teacher_size:
        raise ValueError(f"teacher_index_embeds must be 2·d_t = {2 * teacher_size} wide, got {teacher_index_size}.")


def _split_examples(tensors: tuple[Tensor | None, ...], counts: Tensor) -> list[tuple[Tensor | None, ...]]:
    """Per example, the rows of each ``(rows, ...)`` tensor (``None`` stays ``None``); no examples give one empty."""
    sizes = counts.tolist() or [0]
    split = [[None] * len(sizes) if x is None else x.split(sizes) for x in tensors]
    return list(zip(*split))


def cma_dskd_loss(
    student_logits: Tensor,
    student_hidden: Tensor,
    student_index_embeds: Tensor,
    labels: Tensor,
    student_counts: Tensor,
    teacher_logits: Tensor | None,
    teacher_hidden: Tensor,
    teacher_index_embeds: Tensor,
    teacher_labels: Tensor,
    teacher_counts: Tensor,
    student_head: Tensor,
    teacher_head: Tensor,
    projectors: DSKDProjectors,
    *,
    divergence: str = "forward_kl",
    temperature: float = 1.0,
    normaliser: int | float | Tensor | None = None,
    chunk_size: int | None = None,
    teacher_space_divergence: str = "forward_kl",
    scale_by_temperature_squared: bool = False,
    **divergence_params: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DSKD across vocabularies with cross-model attention (the repo's ``DualSpaceKDWithCMA``).

    Per example ``b`` (``n`` student and ``m`` teacher response positions; attention never
    leaves the example):

    - ``K = tea_index / std``, ``V_t = t2s(tea_hidden / std + tea_target_embeds / std)``,
      each std its own tensor's (see below); ``Q = query(stu_index)``;
      ``align = Q Kᵀ / √(2·d_t)`` ``(n, m)``;
    - ``t2s_logits = softmax(align) V_t @ student_headᵀ``; ``t2s_ce = CE(t2s_logits, labels)``;
      ``t2s_kd = D(student_logits ‖ t2s_logits.detach())`` only where ``t2s_logits``'
      argmax is the label (the repo's accuracy mask);
    - ``s2t_logits = softmax(alignᵀ) s2t(student_hidden) @ teacher_headᵀ``;
      ``s2t_kd = D'(s2t_logits ‖ teacher_logits)`` at the teacher positions.

    All three sums (the ``s2t_kd`` one over teacher positions) are divided by the same
    ``normaliser``, a *student* token count, as the repo does; so micro-batch losses still
    add up exactly to the full batch's. ``D``, ``D'``, ``temperature`` as in :func:`dskd_loss`.

    Differences from the repo: the std is the unbiased std of the example's valid
    positions (the repo takes it over the whole padded batch tensor, prompt and padding
    included), so an example's terms do not depend on its batch-mates; the repo's extra
    teacher temperature on ``t2s_logits`` (``--teacher-temperature``) is not offered.
    Both embeddings are detached (as in the repo), so only ``query`` learns from ``align``.

    Memory: the attention goes example by example (``n × m`` each); the read-outs through the
    heads keep ``(N, Vs)`` and ``(M, Vt)`` logits (and float32 log-softmaxes) alive until
    backward, unless ``chunk_size`` is set: then ``chunk_size`` rows of each side at a time,
    each chunk recomputed in backward (the result equals the unchunked one).

    Args:
        student_logits: ``(N, Vs)``, ``N = Σ student_counts``, examples one after another.
        student_hidden: ``(N, d_s)``, the student's last hidden state (input of its head).
        student_index_embeds: ``(N, 2·d_s)``, ``concat(embedding of the input token at the
            position, embedding of the target token it predicts)`` (student input embeddings).
        labels: ``(N,)`` long, the student's target tokens; ``IGNORE_INDEX`` counts nowhere.
        student_counts: ``(B,)`` long, student positions per example.
        teacher_logits: ``(M, Vt)``, or ``None`` for ``teacher_hidden @ teacher_headᵀ``.
        teacher_hidden: ``(M, d_t)``, ``M = Σ teacher_counts``.
        teacher_index_embeds: ``(M, 2·d_t)``, as ``student_index_embeds`` for the teacher.
        teacher_labels: ``(M,)`` long, the teacher's target tokens.
        teacher_counts: ``(B,)`` long, teacher positions per example.
        student_head: ``(Vs, d_s)``, frozen here.
        teacher_head: ``(Vt, d_t)``, frozen here.
        projectors: built with ``cross_attention=True``.
        divergence, temperature, teacher_space_divergence, scale_by_temperature_squared,
            divergence_params: as in :func:`dskd_loss`.
        normaliser: student tokens of the whole accumulated batch; defaults to this batch's.
        chunk_size: rows per chunk of the read-outs, as in :func:`dskd_loss`.

    Returns:
        The scalar KD loss and its detached parts, as in :func:`dskd_loss`.
    """
    if projectors.query is None:
        raise ValueError("cma_dskd_loss needs projectors built with cross_attention=True (a query projector).")
    rows = (labels.shape[0], teacher_labels.shape[0])
    _check_cma_inputs(student_counts, teacher_counts, rows, teacher_index_embeds.shape[-1], teacher_hidden.shape[-1])
    setup = _setup(
        student_head, teacher_head, projectors, divergence, teacher_space_divergence, temperature, divergence_params,
        scale_by_temperature_squared,
    )
    teacher_logits, teacher_hidden, teacher_index_embeds = (
        None if x is None else x.detach() for x in (teacher_logits, teacher_hidden, teacher_index_embeds)
    )
    students = _split_examples((student_hidden, student_index_embeds.detach(), labels), student_counts)
    teachers = _split_examples((teacher_hidden, teacher_index_embeds, teacher_labels), teacher_counts)
    attended = [_cma_attention(*student, *teacher, setup=setup) for student, teacher in zip(students, teachers)]
    t2s_hidden, s2t_hidden, t2s_counts, s2t_counts = (torch.cat(parts) for parts in zip(*attended))
    t2s_ce, t2s_kd, t2s_correct = _chunked(
        partial(_cma_student_rows, setup=setup), (student_logits, t2s_hidden, labels), chunk_size
    )
    (s2t_kd,) = _chunked(
        partial(_cma_teacher_rows, setup=setup), (s2t_hidden, teacher_logits, teacher_hidden, teacher_labels), chunk_size
    )
    terms = {
        "t2s_ce": (t2s_ce, t2s_counts),
        "t2s_kd": (t2s_kd, t2s_counts & t2s_correct),  # the repo's accuracy mask
        "s2t_kd": (s2t_kd, s2t_counts),
    }
    return _reduce(terms, (t2s_correct, t2s_counts), (labels != IGNORE_INDEX).sum(), normaliser)
