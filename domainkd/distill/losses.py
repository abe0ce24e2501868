"""White-box distillation losses: pure functions over logits, no model code.

Conventions shared by every function here:

- ``p`` is the teacher distribution, ``q`` the student's. Arguments always come in the
  order ``(student, teacher)``, as in ``F.kl_div(student_logprobs, teacher_logprobs)``.
- Logits have shape ``(..., V)``; a per-token divergence returns ``(...)``, one value in
  nats per position. Both distributions are ``log_softmax(logits / temperature)``,
  computed in at least float32.
- Logits at ``-inf`` (masked-out vocabulary) give probability 0. In ``KL(a ‖ b)`` an entry
  with ``a = 0`` adds exactly 0, value and gradient (never NaN), so entries at ``-inf`` on
  both sides count as absent; ``a > 0`` where ``b = 0`` gives a true ``+inf``.
- Mixtures (JSD, skew KL) follow TRL's GKD: ``m = β·p + (1 − β)·q`` puts weight ``β`` on
  the *teacher*. TRL's ``beta`` is exactly this ``beta`` on ``0 < β < 1``; TRL
  special-cases ``beta=0`` to ``forward_kl`` and ``beta=1`` to ``reverse_kl``, where the
  JSD formula itself is identically 0, so here those endpoints are rejected instead.
- DistiLLM's skew ``λ`` (``skew``) weighs the distribution on the *left* of the KL:
  ``skew_forward_kl = KL(p ‖ λp + (1 − λ)q)`` (TRL's mixture at ``β = λ``) and
  ``skew_reverse_kl = KL(q ‖ λq + (1 − λ)p)`` (TRL's mixture at ``β = 1 − λ``). ``λ = 0``
  gives the plain KL; ``λ = 1`` would be identically 0 and is rejected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100  # label of positions without loss (prompt, padding), here and in domainkd.training.collate
_NEG_INF = -math.inf


# --- shared pieces -------------------------------------------------------------------


def _log_softmax(logits: Tensor, temperature: float) -> Tensor:
    """Log-probabilities at ``temperature``, in float32 (float64 stays float64)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.log_softmax(logits if temperature == 1 else logits / temperature, dim=-1)


def _logsumexp(values: Tensor) -> Tensor:
    """``logsumexp`` over the last dim, -inf for an all -inf row without a NaN gradient."""
    empty = (values == _NEG_INF).all(-1)
    return values.masked_fill(empty[..., None], 0).logsumexp(-1).masked_fill(empty, _NEG_INF)


def _log_mass_outside(logprobs: Tensor, ids: Tensor) -> Tensor:
    """``log Σ_{j ∉ ids} exp(logprobs_j)`` over the last dim (``-inf`` where ``ids`` cover it all).

    Summing the other entries' probabilities takes three passes over the vocabulary where a
    masked logsumexp takes six (the offline KD step's largest cost after the model). Rows where
    that sum underflows (a near-certain prediction, or ids covering everything) take the exact
    masked logsumexp instead, so the value never loses more than float rounding.
    """
    mass = logprobs.exp().scatter(-1, ids, 0.0).sum(-1)  # (...)
    floor = torch.finfo(mass.dtype).tiny * 2.0**40  # far above where the flushed entries' share matters
    log_mass = mass.clamp(min=floor).log()
    underflow = mass < floor
    if underflow.any():
        exact = _logsumexp(logprobs[underflow].scatter(-1, ids[underflow], _NEG_INF))
        log_mass = log_mass.index_put((underflow,), exact)
    return log_mass


def _log_mixture(log_a: Tensor, log_b: Tensor, weight_a: float) -> Tensor:
    """``log(w·a + (1 − w)·b)`` from log-probabilities, entrywise; ``0 ≤ w < 1``."""
    log_weight_a = math.log(weight_a) if weight_a > 0 else _NEG_INF
    return _logsumexp(torch.stack([log_a + log_weight_a, log_b + math.log1p(-weight_a)], dim=-1))


def _kl(log_a: Tensor, log_b: Tensor) -> Tensor:
    """``KL(a ‖ b) = Σ a (log a − log b)`` over the last dim; entries with ``a = 0`` add 0."""
    a_empty = log_a == _NEG_INF
    # Filling both logs (not only the product) keeps -inf − -inf out of forward and backward.
    return (log_a.exp() * (log_a.masked_fill(a_empty, 0) - log_b.masked_fill(a_empty, 0))).sum(-1)


def _logprobs(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    return _log_softmax(student_logits, temperature), _log_softmax(teacher_logits, temperature)


def _check_skew(skew: float) -> None:
    if not 0 <= skew < 1:
        raise ValueError(f"skew must lie in [0, 1), got {skew}; at 1 the skew KL is identically 0.")


# --- divergences on log-probabilities: (student_logprobs, teacher_logprobs) -> (...) --


def _forward_kl(student_logprobs: Tensor, teacher_logprobs: Tensor) -> Tensor:
    return _kl(teacher_logprobs, student_logprobs)


def _reverse_kl(student_logprobs: Tensor, teacher_logprobs: Tensor) -> Tensor:
    return _kl(student_logprobs, teacher_logprobs)


def _jensen_shannon(student_logprobs: Tensor, teacher_logprobs: Tensor, beta: float = 0.5) -> Tensor:
    if not 0 < beta < 1:
        raise ValueError(
            f"beta must lie in (0, 1), got {beta}; at 0 and 1 the generalised JSD is identically 0 "
            "(TRL's beta=0 and beta=1 are forward_kl and reverse_kl)."
        )
    log_mixture = _log_mixture(teacher_logprobs, student_logprobs, beta)
    return beta * _kl(teacher_logprobs, log_mixture) + (1 - beta) * _kl(student_logprobs, log_mixture)


def _skew_forward_kl(student_logprobs: Tensor, teacher_logprobs: Tensor, skew: float = 0.1) -> Tensor:
    _check_skew(skew)
    return _kl(teacher_logprobs, _log_mixture(teacher_logprobs, student_logprobs, skew))


def _skew_reverse_kl(student_logprobs: Tensor, teacher_logprobs: Tensor, skew: float = 0.1) -> Tensor:
    _check_skew(skew)
    return _kl(student_logprobs, _log_mixture(student_logprobs, teacher_logprobs, skew))


def _total_variation(student_logprobs: Tensor, teacher_logprobs: Tensor) -> Tensor:
    return 0.5 * (teacher_logprobs.exp() - student_logprobs.exp()).abs().sum(-1)


def _adaptive_kl(student_logprobs: Tensor, teacher_logprobs: Tensor, mu: float = 0.5) -> Tensor:
    if not 0 < mu <= 1:
        raise ValueError(f"mu (the teacher mass of the head) must lie in (0, 1], got {mu}.")
    with torch.no_grad():  # the weights are constants, as in Wu et al. (2024)
        teacher_probs, order = teacher_logprobs.exp().sort(dim=-1, descending=True)
        gap = (teacher_probs - student_logprobs.exp().gather(-1, order)).abs()
        # As the authors' code: the tail is where the running mass (this entry included) exceeds mu,
        # and the most likely token is always in the head.
        head = teacher_probs.cumsum(-1) <= mu
        head[..., 0] = True
        gap_head, gap_tail = (gap * head).sum(-1), (gap * ~head).sum(-1)
        total = (gap_head + gap_tail).clamp(min=torch.finfo(gap.dtype).tiny)
    forward, reverse = _forward_kl(student_logprobs, teacher_logprobs), _reverse_kl(student_logprobs, teacher_logprobs)
    return (gap_head / total) * forward + (gap_tail / total) * reverse


_FROM_LOGPROBS: dict[str, Callable[..., Tensor]] = {
    "forward_kl": _forward_kl,
    "reverse_kl": _reverse_kl,
    "jsd": _jensen_shannon,
    "skew_forward_kl": _skew_forward_kl,
    "skew_reverse_kl": _skew_reverse_kl,
    "tvd": _total_variation,
    "adaptive_kl": _adaptive_kl,
}


def _from_logprobs(name: str) -> Callable[..., Tensor]:
    if name not in _FROM_LOGPROBS:
        raise ValueError(f"unknown divergence {name!r}; known: {', '.join(_FROM_LOGPROBS)}.")
    return _FROM_LOGPROBS[name]


# --- public divergences on logits: (student_logits, teacher_logits) -> (...) ---------


def forward_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Forward KL ``KL(p ‖ q) = Σ p (log p − log q)`` per position, in nats (mass-covering).

    Args:
        student_logits: ``(..., V)``, gives ``q``.
        teacher_logits: ``(..., V)``, gives ``p``.
        temperature: > 0, divides both logits.

    Returns:
        ``(...)``, ≥ 0, exactly 0 where the two distributions are equal.
    """
    return _forward_kl(*_logprobs(student_logits, teacher_logits, temperature))


def reverse_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Reverse KL ``KL(q ‖ p)`` per position, in nats (mode-seeking); ``p`` teacher, ``q`` student.

    Shapes and ``temperature`` as in :func:`forward_kl`.
    """
    return _reverse_kl(*_logprobs(student_logits, teacher_logits, temperature))


def jensen_shannon(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0, beta: float = 0.5
) -> Tensor:
    """Generalised JSD ``β·KL(p ‖ m) + (1 − β)·KL(q ‖ m)``, ``m = β·p + (1 − β)·q``, in nats.

    ``p`` is the teacher, ``q`` the student; ``β`` is TRL GKD's ``beta``. ``β = 0.5`` is the
    textbook JSD (at most ``log 2``). As ``β → 0`` it behaves like ``β·KL(p ‖ q)``, as
    ``β → 1`` like ``(1 − β)·KL(q ‖ p)``, and it is identically 0 at both ends.

    Args:
        beta: in ``(0, 1)``; 0 and 1 are rejected (use :func:`forward_kl` / :func:`reverse_kl`).
        Others as in :func:`forward_kl`.
    """
    return _jensen_shannon(*_logprobs(student_logits, teacher_logits, temperature), beta)


def skew_forward_kl(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0, skew: float = 0.1
) -> Tensor:
    """DistiLLM's skew forward KL ``KL(p ‖ λp + (1 − λ)q)`` per position, in nats.

    ``p`` is the teacher, ``q`` the student, ``λ = skew`` weighs ``p`` in the mixture (TRL's
    mixture at ``β = λ``).

    Args:
        skew: ``λ`` in ``[0, 1)``; 0 gives :func:`forward_kl`, 1 (identically 0) is rejected.
        Others as in :func:`forward_kl`.
    """
    return _skew_forward_kl(*_logprobs(student_logits, teacher_logits, temperature), skew)


def skew_reverse_kl(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0, skew: float = 0.1
) -> Tensor:
    """DistiLLM's skew reverse KL ``KL(q ‖ λq + (1 − λ)p)`` per position, in nats.

    ``p`` is the teacher, ``q`` the student, ``λ = skew`` weighs ``q`` in the mixture (TRL's
    mixture at ``β = 1 − λ``).

    Args:
        skew: ``λ`` in ``[0, 1)``; 0 gives :func:`reverse_kl`, 1 (identically 0) is rejected.
        Others as in :func:`forward_kl`.
    """
    return _skew_reverse_kl(*_logprobs(student_logits, teacher_logits, temperature), skew)


def total_variation(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Total variation distance ``0.5·Σ |p − q|`` per position, in ``[0, 1]`` (a probability, not nats).

    Symmetric in ``p`` (teacher) and ``q`` (student). Shapes and ``temperature`` as in :func:`forward_kl`.
    """
    return _total_variation(*_logprobs(student_logits, teacher_logits, temperature))


def adaptive_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0, mu: float = 0.5) -> Tensor:
    """Adaptive KL (Wu et al. 2024) per position, in nats: ``w_head·KL(p ‖ q) + w_tail·KL(q ‖ p)``.

    The head is the teacher's most likely tokens whose running mass (each included) stays
    within ``mu``, and always the most likely one; the tail the rest. This follows Wu et al.'s
    code (``cum_sum > mu`` is the tail, the first entry forced into the head): the token that
    crosses ``mu`` is in the tail, where "the smallest set holding ``mu``" would put it in the head; ``g = Σ |p − q|`` over each part and ``w_head = g_head / (g_head + g_tail)``,
    ``w_tail = g_tail / (g_head + g_tail)`` (both detached; 0 when ``p = q``). ``p`` is the
    teacher, ``q`` the student.

    Args:
        mu: head mass in ``(0, 1]``. Others as in :func:`forward_kl`.
    """
    return _adaptive_kl(*_logprobs(student_logits, teacher_logits, temperature), mu)


DIVERGENCES: dict[str, Callable[..., Tensor]] = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "jsd": jensen_shannon,
    "skew_forward_kl": skew_forward_kl,
    "skew_reverse_kl": skew_reverse_kl,
    "tvd": total_variation,
    "adaptive_kl": adaptive_kl,
}


def divergence(
    name: str, student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0, **params: float
) -> Tensor:
    """The divergence registered as ``name`` in :data:`DIVERGENCES`, per position ``(...)``.

    ``params`` are that divergence's own (``beta``, ``skew``, ``mu``). Raises ``ValueError``
    listing the known names for an unknown one.
    """
    return _from_logprobs(name)(*_logprobs(student_logits, teacher_logits, temperature), **params)


def divergence_from_logprobs(name: str, student_logprobs: Tensor, teacher_logprobs: Tensor, **params: float) -> Tensor:
    """Like :func:`divergence` but on normalised log-probabilities ``(..., K)`` (no temperature)."""
    return _from_logprobs(name)(student_logprobs, teacher_logprobs, **params)


# --- reduction and the KD objective --------------------------------------------------


def masked_mean(values: Tensor, mask: Tensor, normaliser: int | float | Tensor | None = None) -> Tensor:
    """Sum of ``values`` where ``mask`` is true, divided by ``normaliser`` or the mask count.

    Pass as ``normaliser`` the valid-token count of the whole gradient-accumulated batch, and
    summing the micro-batch results equals the big batch's mean. A zero count gives 0 with
    the graph kept. Masked entries may hold NaN (they are replaced, not multiplied by 0),
    but a NaN upstream of them still reaches the gradient: clean inputs first.

    Args:
        values: ``(...)``.
        mask: ``(...)``, bool or 0/1.
        normaliser: number of tokens to divide by; defaults to ``mask.sum()``.
    """
    mask = mask.bool()
    count = torch.as_tensor(mask.sum() if normaliser is None else normaliser, device=values.device)
    return torch.where(mask, values, 0).sum() / count.clamp(min=1)


@dataclass(frozen=True)
class KDLossParts:
    """The detached terms of :func:`kd_loss`, for logging."""

    ce: Tensor  # cross-entropy on the labels, same normalisation as the loss
    kd: Tensor  # the divergence term (τ²-scaled when asked), same normalisation
    tokens: Tensor  # valid tokens in this (micro-)batch
    extra: dict[str, Tensor] = field(default_factory=dict)  # a loss's own terms (DSKD's), same normalisation


def _token_losses(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    temperature: float,
    divergence_fn: Callable[..., Tensor],
    params: dict[str, float],
) -> tuple[Tensor, Tensor]:
    """Per-position CE and divergence ``(N,)`` of flat ``(N, V)`` logits; masked positions give 0."""
    valid = (labels != IGNORE_INDEX)[:, None]  # (N, 1)
    # Zeroed, garbage (NaN, inf) at padded positions reaches neither the value nor the gradient.
    student_logits = torch.where(valid, student_logits, 0)
    teacher_logits = torch.where(valid, teacher_logits, 0)
    ce = F.nll_loss(_log_softmax(student_logits, 1.0), labels, ignore_index=IGNORE_INDEX, reduction="none")
    kd = divergence_fn(_log_softmax(student_logits, temperature), _log_softmax(teacher_logits, temperature), **params)
    return ce, kd


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    alpha: float = 0.5,
    temperature: float = 1.0,
    divergence: str = "forward_kl",
    scale_by_temperature_squared: bool = False,
    normaliser: int | Tensor | None = None,
    chunk_size: int | None = None,
    **params: float,
) -> tuple[Tensor, KDLossParts]:
    """Vanilla KD ``(1 − α)·CE + α·D(p_teacher^τ, q_student^τ)`` averaged over response tokens.

    CE is at temperature 1 on ``labels``; ``D`` is the registered divergence (teacher ``p``,
    student ``q``) at ``temperature``, times ``τ²`` if ``scale_by_temperature_squared`` (keeps
    its gradient scale independent of ``τ``, as in Hinton et al.). Both terms are summed
    over the positions whose label is not ``IGNORE_INDEX`` and divided once by
    ``normaliser`` (see :func:`masked_mean`).

    Args:
        student_logits: ``(..., V)``; logits at ignored positions may be garbage.
        teacher_logits: ``(..., V)``, same vocabulary as the student.
        labels: ``(...)`` long, already aligned with the logits (no shift here), ``-100`` ignored.
        alpha: weight of the divergence, in ``[0, 1]``.
        temperature: > 0, for the divergence only.
        divergence: a name in :data:`DIVERGENCES`; ``params`` are its own (``beta``, ...).
        normaliser: valid tokens of the whole accumulated batch; defaults to this batch's.
        chunk_size: if set, positions are processed ``chunk_size`` at a time and each chunk
            is recomputed in backward (activation checkpointing), so only one chunk's float32
            intermediates live at once. The result equals the unchunked one.

    Returns:
        The scalar loss and its detached parts.
    """
    divergence_fn = _from_logprobs(divergence)
    token_losses = partial(_token_losses, temperature=temperature, divergence_fn=divergence_fn, params=params)
    inputs = (student_logits.flatten(0, -2), teacher_logits.flatten(0, -2))  # (N, V) each
    scale = temperature**2 if scale_by_temperature_squared else 1.0
    return _combine(token_losses, inputs, labels.flatten(), alpha, scale, normaliser, chunk_size)


def _combine(
    token_losses: Callable[..., tuple[Tensor, Tensor]],
    inputs: tuple[Tensor, ...],
    labels: Tensor,
    alpha: float,
    kd_scale: float,
    normaliser: int | Tensor | None,
    chunk_size: int | None,
) -> tuple[Tensor, KDLossParts]:
    """``(1 − α)·CE + α·kd_scale·D`` from per-position losses of ``inputs`` (each ``(N, ...)``) and ``labels (N,)``."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha (the weight of the divergence) must lie in [0, 1], got {alpha}.")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}.")
    if chunk_size is None:
        ce, kd = token_losses(*inputs, labels)
    else:  # each chunk recomputed in backward: one chunk's float32 (chunk, V) intermediates at a time
        chunks = zip(*(part.split(chunk_size) for part in (*inputs, labels)))
        pieces = [checkpoint(token_losses, *chunk, use_reentrant=False) for chunk in chunks]
        ce, kd = (torch.cat(parts) for parts in zip(*pieces))  # (N,) each
    mask = labels != IGNORE_INDEX
    ce, kd = masked_mean(ce, mask, normaliser), masked_mean(kd, mask, normaliser) * kd_scale
    loss = (1 - alpha) * ce + alpha * kd
    return loss, KDLossParts(ce=ce.detach(), kd=kd.detach(), tokens=mask.sum())


# --- top-k teacher (offline logits store) --------------------------------------------


def topk_from_logits(teacher_logits: Tensor, k: int, temperature: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """What a logits store keeps of the teacher: its ``k`` most likely tokens and the rest's mass.

    Args:
        teacher_logits: ``(..., V)``.
        k: in ``[1, V]``.
        temperature: > 0; the stored log-probabilities are at this temperature.

    Returns:
        ``ids (..., k)`` long, ``logprobs (..., k)`` (float32, descending) and ``log_tail (...)``
        = ``log(1 − Σ top-k p)`` from a logsumexp over the other entries, ``-inf`` when ``k = V``.
    """
    if not 1 <= k <= teacher_logits.shape[-1]:
        raise ValueError(f"k must lie in [1, {teacher_logits.shape[-1]}] (the vocabulary size), got {k}.")
    logprobs = _log_softmax(teacher_logits, temperature)
    top_logprobs, top_ids = logprobs.topk(k, dim=-1)
    return top_ids, top_logprobs, _logsumexp(logprobs.scatter(-1, top_ids, _NEG_INF))


def sample_tail(
    teacher_logits: Tensor,
    teacher_topk_ids: Tensor,
    teacher_log_tail: Tensor,
    samples: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """What a store keeps of the teacher's tail (the tokens outside its top k) to estimate the KL there.

    With ``p̃ = p / p_T`` the teacher's distribution renormalised over the tail, it draws
    ``samples`` ids from ``p̃`` (with replacement) and computes ``H(p̃)`` exactly; the forward KL's
    within-tail term ``p_T · KL(p̃ ‖ q̃)`` is then estimated without bias (:func:`tail_correction`).

    Args:
        teacher_logits: ``(N, V)``.
        teacher_topk_ids: ``(N, k)`` long, the ids kept as the top k.
        teacher_log_tail: ``(N,)`` log of the mass outside them.
        samples: ids to draw per position, ≥ 1.
        temperature: > 0, as for the top k.
        generator: for reproducible draws.

    Returns:
        ``tail_ids (N, samples)`` long and ``tail_entropy (N,)`` float32 (0 where the tail is empty).
    """
    if samples < 1:
        raise ValueError(f"samples must be ≥ 1, got {samples}.")
    logprobs = _log_softmax(teacher_logits, temperature)  # (N, V)
    tail_logprobs = logprobs.scatter(-1, teacher_topk_ids, _NEG_INF) - teacher_log_tail[..., None]  # log p̃, (N, V)
    empty = ~torch.isfinite(teacher_log_tail)  # k = V: no tail, any draw is weighted by p_T = 0
    tail_logprobs = torch.where(empty[..., None], torch.zeros_like(tail_logprobs), tail_logprobs)
    probabilities = tail_logprobs.exp()  # (N, V)
    entropy = -(probabilities * tail_logprobs.masked_fill(probabilities == 0, 0.0)).sum(-1)  # (N,)
    tail_ids = torch.multinomial(probabilities, samples, replacement=True, generator=generator)  # (N, samples)
    return tail_ids, entropy.masked_fill(empty, 0.0)


def tail_correction(
    student_logprobs: Tensor, student_log_tail: Tensor, teacher_log_tail: Tensor, tail_ids: Tensor, tail_entropy: Tensor
) -> Tensor:
    """Unbiased estimate of ``p_T · KL(p̃ ‖ q̃)``, what the forward KL on ``k + 1`` buckets leaves out.

    ``KL(p ‖ q) = KL over (top k + one bucket) + p_T · KL(p̃ ‖ q̃)`` (the chain rule, ``~`` for
    distributions renormalised over the tail); with ``j ~ p̃``, ``KL(p̃ ‖ q̃) = −H(p̃) − E[log q̃_j]``.
    Per position the estimate can be below 0; its mean, and its gradient, are unbiased.

    Args:
        student_logprobs: ``(N, V)`` log q at the temperature of the store.
        student_log_tail: ``(N,)`` log q_T, the student's mass outside the teacher's top k.
        teacher_log_tail: ``(N,)`` log p_T.
        tail_ids: ``(N, m)`` ids drawn from p̃ (:func:`sample_tail`).
        tail_entropy: ``(N,)`` H(p̃).

    Returns:
        ``(N,)``.
    """
    has_tail = torch.isfinite(teacher_log_tail)  # k = V leaves no tail: nothing to correct (and no inf in grads)
    student_log_tail = torch.where(has_tail, student_log_tail, torch.zeros_like(student_log_tail))
    student_tail = student_logprobs.gather(-1, tail_ids) - student_log_tail[..., None]  # log q̃_j, (N, m)
    estimate = teacher_log_tail.exp() * (-student_tail.mean(-1) - tail_entropy)
    return torch.where(has_tail, estimate, torch.zeros_like(estimate))


def _repeats(ids: Tensor) -> Tensor:
    """``(..., k)`` bool: true at every entry whose id already appears earlier in its row."""
    sorted_ids, order = ids.sort(dim=-1, stable=True)
    repeated = torch.zeros_like(sorted_ids, dtype=torch.bool)
    repeated[..., 1:] = sorted_ids[..., 1:] == sorted_ids[..., :-1]
    return torch.zeros_like(repeated).scatter(-1, order, repeated)


def topk_divergence(
    student_logits: Tensor,
    teacher_topk_ids: Tensor,
    teacher_topk_logprobs: Tensor,
    teacher_log_tail: Tensor,
    divergence_name: str = "forward_kl",
    temperature: float = 1.0,
    teacher_tail_ids: Tensor | None = None,
    teacher_tail_entropy: Tensor | None = None,
    **params: float,
) -> Tensor:
    """A divergence against a stored top-k teacher, on ``k + 1`` buckets, per position.

    Both distributions collapse to the teacher's top-k tokens plus one bucket for all other
    tokens: the student's is ``log_softmax(student_logits / τ)`` gathered at the ids plus a
    logsumexp over the rest; the teacher's is the stored top-k log-probabilities plus
    ``teacher_log_tail``. ``τ`` applies to the student only: the teacher's values are at the
    temperature they were recorded at (see :func:`topk_from_logits`), which should be the
    same. With ``k = V`` this equals the full-vocabulary divergence.

    An id listed twice in a row counts once: the student's mass at it fills its first entry
    and later entries are empty (``-inf``), so the teacher's mass of a repeated id belongs at
    its first entry too (:func:`merge_duplicate_ids`).

    The bucketed divergence is a lower bound (10% below the full forward KL on real SmolLM2
    outputs at k = 64); with the teacher's tail samples and tail entropy the forward KL adds
    :func:`tail_correction`, which makes it unbiased.

    Args:
        student_logits: ``(..., V)``, gives ``q``.
        teacher_topk_ids: ``(..., k)`` long.
        teacher_topk_logprobs: ``(..., k)``, gives ``p``.
        teacher_log_tail: ``(...)``, log of the teacher's mass outside the ids (``-inf`` if none).
        divergence_name: a name in :data:`DIVERGENCES`; ``params`` are its own.
        temperature: > 0, applied to the student logits.
        teacher_tail_ids, teacher_tail_entropy: ``(..., m)`` and ``(...)`` from :func:`sample_tail`,
            or None; only the forward KL takes them.

    Returns:
        ``(...)``, in the divergence's units.
    """
    return _topk_divergence(
        _log_softmax(student_logits, temperature),
        teacher_topk_ids,
        teacher_topk_logprobs,
        teacher_log_tail,
        divergence_name,
        teacher_tail_ids,
        teacher_tail_entropy,
        **params,
    )


def _topk_divergence(
    student_logprobs: Tensor,
    teacher_topk_ids: Tensor,
    teacher_topk_logprobs: Tensor,
    teacher_log_tail: Tensor,
    divergence_name: str,
    teacher_tail_ids: Tensor | None = None,
    teacher_tail_entropy: Tensor | None = None,
    **params: float,
) -> Tensor:
    """:func:`topk_divergence` from the student's log-probabilities (already at its temperature)."""
    student_tail = _log_mass_outside(student_logprobs, teacher_topk_ids)  # (...)
    student_topk = student_logprobs.gather(-1, teacher_topk_ids).masked_fill(_repeats(teacher_topk_ids), _NEG_INF)
    student_buckets = torch.cat([student_topk, student_tail[..., None]], dim=-1)
    teacher_buckets = torch.cat([teacher_topk_logprobs, teacher_log_tail[..., None]], dim=-1).to(student_buckets.dtype)
    bucketed = divergence_from_logprobs(divergence_name, student_buckets, teacher_buckets, **params)
    if teacher_tail_ids is None:
        return bucketed
    if divergence_name != "forward_kl":
        raise ValueError(f"tail samples correct the forward KL only, not {divergence_name}; record the store without them.")
    log_tail = teacher_log_tail.to(student_logprobs.dtype)
    return bucketed + tail_correction(student_logprobs, student_tail, log_tail, teacher_tail_ids, teacher_tail_entropy)


def _topk_token_losses(
    student_logits: Tensor,
    teacher_topk_ids: Tensor,
    teacher_topk_logprobs: Tensor,
    teacher_log_tail: Tensor,
    *tail_and_labels: Tensor,
    temperature: float,
    divergence_name: str,
    params: dict[str, float],
) -> tuple[Tensor, Tensor]:
    """Per-position CE at temperature 1 and top-k divergence ``(N,)`` of ``(N, V)`` student logits.

    ``tail_and_labels`` is ``(labels,)`` or ``(tail_ids, tail_entropy, labels)``.
    """
    *tail, labels = tail_and_labels
    valid = labels != IGNORE_INDEX  # (N,)
    # Zeroed, garbage (NaN, inf, a padding id) at ignored positions reaches neither the value nor the gradient.
    student_logits = torch.where(valid[:, None], student_logits, 0)
    teacher_topk_ids = torch.where(valid[:, None], teacher_topk_ids, 0)
    teacher_topk_logprobs = torch.where(valid[:, None], teacher_topk_logprobs, 0)
    teacher_log_tail = torch.where(valid, teacher_log_tail, 0)
    if tail:
        tail_ids, tail_entropy = tail
        tail = [torch.where(valid[:, None], tail_ids, 0), torch.where(valid, tail_entropy, 0)]
    logprobs = _log_softmax(student_logits, 1.0)  # (N, V), shared with the divergence at τ = 1
    ce = F.nll_loss(logprobs, labels, ignore_index=IGNORE_INDEX, reduction="none")
    student_logprobs = logprobs if temperature == 1 else _log_softmax(student_logits, temperature)
    kd = _topk_divergence(
        student_logprobs, teacher_topk_ids, teacher_topk_logprobs, teacher_log_tail, divergence_name, *tail, **params
    )
    return ce, kd


def topk_kd_loss(
    student_logits: Tensor,
    teacher_topk_ids: Tensor,
    teacher_topk_logprobs: Tensor,
    teacher_log_tail: Tensor,
    labels: Tensor,
    alpha: float = 0.5,
    temperature: float = 1.0,
    divergence: str = "forward_kl",
    scale_by_temperature_squared: bool = False,
    normaliser: int | Tensor | None = None,
    chunk_size: int | None = None,
    teacher_tail: tuple[Tensor, Tensor] | None = None,
    **params: float,
) -> tuple[Tensor, KDLossParts]:
    """:func:`kd_loss` against a stored top-k teacher: ``D`` on ``k + 1`` buckets (:func:`topk_divergence`).

    Args:
        student_logits: ``(N, V)`` at the response positions.
        teacher_topk_ids, teacher_topk_logprobs, teacher_log_tail: the teacher's stored top-k
            at the same positions, ``(N, k)``, ``(N, k)``, ``(N,)``, at the recording temperature.
        labels: ``(N,)`` long, the tokens the positions predict.
        teacher_tail: ``(tail_ids (N, m), tail_entropy (N,))`` from :func:`sample_tail` to make the
            forward KL unbiased, or None.
        Others as in :func:`kd_loss` (``temperature`` applies to the student only).

    Returns:
        The scalar loss and its detached parts.
    """
    _from_logprobs(divergence)
    token_losses = partial(_topk_token_losses, temperature=temperature, divergence_name=divergence, params=params)
    inputs = (student_logits, teacher_topk_ids, teacher_topk_logprobs, teacher_log_tail, *(teacher_tail or ()))
    scale = temperature**2 if scale_by_temperature_squared else 1.0
    return _combine(token_losses, inputs, labels, alpha, scale, normaliser, chunk_size)


# --- cross-tokenizer baselines: ULD and MinED ------------------------------------------
#
# Teacher and student tokenize differently, so the caller first pairs response positions
# (ULD: the i-th token of each side; MinED: domainkd.distill.align.align_tokens) and gives
# the losses below the teacher's distribution at the paired positions as a top-k.


def uld_distance(
    student_logits: Tensor, teacher_logprobs: Tensor, teacher_log_tail: Tensor, temperature: float = 1.0
) -> Tensor:
    """Universal Logit Distillation's distance (Boizard et al. 2024): L1 between the sorted distributions.

    With ``s_(i)`` the student's probabilities and ``t_(i)`` the teacher's, both sorted
    descending, ULD is ``Σ_i |s_(i) − t_(i)|``, the smaller vocabulary zero-padded: it needs
    no token correspondence at all. Against a teacher top-k this is
    ``Σ_{i<k} |s_(i) − t_(i)| + |(1 − Σ_{i<k} s_(i)) − tail_t|``, which by the triangle
    inequality is a lower bound of the full ULD and equals it when ``k`` covers the teacher's
    vocabulary (``tail_t = 0``); ``k`` may exceed the student's vocabulary (zero-padded).

    Args:
        student_logits: ``(..., Vs)``.
        teacher_logprobs: ``(..., k)``, the teacher's ``k`` largest log-probabilities (any order).
        teacher_log_tail: ``(...)``, log of the teacher's remaining mass (``-inf`` when ``k`` is its vocabulary).
        temperature: > 0, applied to the student logits; the teacher's values are at the
            temperature they were recorded at, which should be the same.

    Returns:
        ``(...)``, in ``[0, 2]`` (a probability distance, not nats).
    """
    k = teacher_logprobs.shape[-1]
    student_sorted = _log_softmax(student_logits, temperature).sort(dim=-1, descending=True).values  # (..., Vs)
    if student_sorted.shape[-1] < k:  # zero-pad the smaller vocabulary
        student_sorted = F.pad(student_sorted, (0, k - student_sorted.shape[-1]), value=_NEG_INF)
    student_head, student_tail = student_sorted[..., :k].exp(), _logsumexp(student_sorted[..., k:]).exp()
    teacher_sorted = teacher_logprobs.to(student_sorted.dtype).sort(dim=-1, descending=True).values
    teacher_head, teacher_tail = teacher_sorted.exp(), teacher_log_tail.to(student_sorted.dtype).exp()
    return (student_head - teacher_head).abs().sum(-1) + (student_tail - teacher_tail).abs()


def _uld_token_losses(
    student_logits: Tensor, teacher_logprobs: Tensor, teacher_log_tail: Tensor, labels: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """Per-position CE at temperature 1 and ULD distance ``(N,)``; masked positions give 0."""
    valid = labels != IGNORE_INDEX  # (N,)
    # Zeroed, garbage (NaN, inf) at padded positions reaches neither the value nor the gradient.
    student_logits = torch.where(valid[:, None], student_logits, 0)
    teacher_logprobs = torch.where(valid[:, None], teacher_logprobs, 0)
    teacher_log_tail = torch.where(valid, teacher_log_tail, 0)
    ce = F.nll_loss(_log_softmax(student_logits, 1.0), labels, ignore_index=IGNORE_INDEX, reduction="none")
    return ce, uld_distance(student_logits, teacher_logprobs, teacher_log_tail, temperature)


def uld_loss(
    student_logits: Tensor,
    teacher_logprobs: Tensor,
    teacher_log_tail: Tensor,
    labels: Tensor,
    *,
    alpha: float,
    temperature: float = 1.0,
    normaliser: int | Tensor | None = None,
    scale_by_temperature_squared: bool = False,
    chunk_size: int | None = None,
) -> tuple[Tensor, KDLossParts]:
    """ULD KD ``(1 − α)·CE + α·ULD`` averaged over response tokens (:func:`uld_distance`).

    Positions are already paired by the caller: ULD pairs the i-th response token of the
    student with the i-th of the teacher, whatever their texts. CE, normalisation, chunking
    and the parts are as in :func:`kd_loss`.

    Args:
        student_logits: ``(N, Vs)`` at the paired student positions.
        teacher_logprobs: ``(N, k)``, the teacher's ``k`` largest log-probabilities at the paired
            teacher positions (``k`` may be its whole vocabulary, of any size).
        teacher_log_tail: ``(N,)``, log of the teacher's mass outside them (``-inf`` if none).
        labels: ``(N,)`` long, the student tokens the positions predict, ``-100`` ignored.
        alpha: weight of the ULD term, in ``[0, 1]``.
        temperature: > 0, applied to the student logits for the ULD term.
        normaliser: valid tokens of the whole accumulated batch; defaults to this batch's.
        scale_by_temperature_squared: multiply the ULD term by ``τ²``.
        chunk_size: as in :func:`kd_loss`.

    Returns:
        The scalar loss and its detached parts.
    """
    token_losses = partial(_uld_token_losses, temperature=temperature)
    inputs = (student_logits, teacher_logprobs, teacher_log_tail)
    scale = temperature**2 if scale_by_temperature_squared else 1.0
    return _combine(token_losses, inputs, labels, alpha, scale, normaliser, chunk_size)


def merge_duplicate_ids(ids: Tensor, logprobs: Tensor) -> tuple[Tensor, Tensor]:
    """Sum the mass of ids listed more than once in a row, at their first entry.

    Mapping a teacher top-k into the student's vocabulary can send several teacher tokens
    to one student token. The first entry of each id gets the logsumexp of all its entries;
    later ones get ``-inf`` and keep pointing at the same id, which :func:`topk_divergence`
    then counts as absent on both sides.

    Args:
        ids: ``(..., k)`` long.
        logprobs: ``(..., k)``.

    Returns:
        ``ids`` unchanged and the merged ``(..., k)`` log-probabilities, at least float32 (no
        longer sorted).
    """
    sorted_ids, order = ids.sort(dim=-1, stable=True)  # stable: each id's first entry leads its run
    sorted_logprobs = logprobs.to(torch.promote_types(logprobs.dtype, torch.float32)).gather(-1, order)
    leads = torch.ones_like(sorted_ids, dtype=torch.bool)
    leads[..., 1:] = sorted_ids[..., 1:] != sorted_ids[..., :-1]
    group = leads.cumsum(-1) - 1  # (..., k): index of each entry's run
    peak = torch.full_like(sorted_logprobs, _NEG_INF).scatter_reduce(-1, group, sorted_logprobs, "amax")
    peak = peak.masked_fill(peak == _NEG_INF, 0)  # a finite shift for runs of -inf only
    mass = torch.zeros_like(sorted_logprobs).scatter_add(-1, group, (sorted_logprobs - peak.gather(-1, group)).exp())
    merged = (mass.log() + peak).gather(-1, group).masked_fill(~leads, _NEG_INF)
    return ids, torch.empty_like(merged).scatter(-1, order, merged)


def mined_kd_loss(
    student_logits: Tensor,
    teacher_ids: Tensor,
    teacher_logprobs: Tensor,
    teacher_log_tail: Tensor,
    labels: Tensor,
    *,
    alpha: float,
    temperature: float,
    divergence: str,
    normaliser: int | Tensor | None = None,
    scale_by_temperature_squared: bool = False,
    chunk_size: int | None = None,
    **divergence_params: float,
) -> tuple[Tensor, KDLossParts]:
    """MinED KD: :func:`topk_kd_loss` against a teacher top-k mapped into the student's vocabulary.

    The teacher's top-k ids have been replaced by their closest student tokens
    (:class:`domainkd.distill.align.VocabularyMap`) at positions paired by minimum edit
    distance (:func:`domainkd.distill.align.align_tokens`). Teacher tokens sent to one
    student token are merged (:func:`merge_duplicate_ids`); the teacher's tail mass, whatever
    student tokens it would map to, meets the student's mass outside the mapped ids in one bucket.

    Args:
        student_logits: ``(N, Vs)`` at the paired student positions.
        teacher_ids: ``(N, k)`` long, student token ids, possibly repeated within a row.
        teacher_logprobs: ``(N, k)``, the teacher's log-probabilities of the original tokens.
        teacher_log_tail: ``(N,)``, log of the teacher's mass outside them.
        labels: ``(N,)`` long, the student tokens the positions predict, ``-100`` ignored.
        Others as in :func:`topk_kd_loss`; ``divergence_params`` are the divergence's own.

    Returns:
        The scalar loss and its detached parts.
    """
    teacher_ids, teacher_logprobs = merge_duplicate_ids(teacher_ids, teacher_logprobs)
    return topk_kd_loss(
        student_logits,
        teacher_ids,
        teacher_logprobs,
        teacher_log_tail,
        labels,
        alpha=alpha,
        temperature=temperature,
        divergence=divergence,
        scale_by_temperature_squared=scale_by_temperature_squared,
        normaliser=normaliser,
        chunk_size=chunk_size,
        **divergence_params,
    )
