"""The student's logits at response positions only.

A causal LM's forward computes logits at every position, but the loss reads only the response
tokens (often a quarter of a batch). The output head is a large share of a small model's
compute (SmolLM2-135M cut to 10 layers: ~40% of the forward FLOPs), so running the decoder,
gathering the response positions' hidden states and applying the head to those alone saves
that share at the others. Models whose head is not a plain projection (final logit
soft-capping, logit scaling) and distributed runs (whose wrapper must see the forward) take
the full forward instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_HEAD_ADJUSTMENTS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def plain_head(model: Any) -> bool:
    """Whether ``model``'s logits are exactly its output embedding applied to its decoder's last hidden state."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _HEAD_ADJUSTMENTS):
        return False
    try:
        return model.get_decoder() is not None and model.get_output_embeddings() is not None
    except (AttributeError, NotImplementedError):
        return False


def response_logits(
    model: torch.nn.Module, student: Any, inputs: dict[str, Tensor], response: Tensor, hidden: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Logits ``(N, V)`` (and last hidden states ``(N, d)`` if ``hidden``) at the ``response (B, T-1)`` positions.

    Args:
        model: the model as the Trainer holds it (possibly wrapped for distributed training).
        student: the same model unwrapped.
        inputs: ``input_ids`` and ``attention_mask`` ``(B, T)``.
        response: which positions' next-token logits are needed (position ``t`` predicts token ``t + 1``).
        hidden: also return the hidden states there.
    """
    if model is student and plain_head(student):
        decoder = student.get_decoder()
        states = decoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        selected = states.last_hidden_state[:, :-1][response]  # (N, d)
        return student.get_output_embeddings()(selected), (selected if hidden else None)
    outputs = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        output_hidden_states=hidden,
        use_cache=False,
    )
    selected = outputs.hidden_states[-1][:, :-1][response] if hidden else None
    return outputs.logits[:, :-1][response], selected
