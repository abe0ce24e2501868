"""White-box distillation: divergences between student and teacher logits, and the KD loss."""

from domainkd.distill.losses import (
    DIVERGENCES,
    IGNORE_INDEX,
    KDLossParts,
    adaptive_kl,
    divergence,
    divergence_from_logprobs,
    forward_kl,
    jensen_shannon,
    kd_loss,
    masked_mean,
    reverse_kl,
    skew_forward_kl,
    skew_reverse_kl,
    topk_divergence,
    topk_from_logits,
    total_variation,
)

__all__ = [
    "DIVERGENCES",
    "IGNORE_INDEX",
    "KDLossParts",
    "adaptive_kl",
    "divergence",
    "divergence_from_logprobs",
    "forward_kl",
    "jensen_shannon",
    "kd_loss",
    "masked_mean",
    "reverse_kl",
    "skew_forward_kl",
    "skew_reverse_kl",
    "topk_divergence",
    "topk_from_logits",
    "total_variation",
]
