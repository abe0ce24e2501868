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
from transformers import Trainer

from domainkd.models import plain_head


class ResponseTrainer(Trainer):
    """Base of domainkd's trainers, whose losses read logits at response positions only."""

    def compute_loss_context_manager(self) -> Any:
        """Mixed precision for the whole loss (the response-only head bypasses accelerate's autocast on forward)."""
        return self.accelerator.autocast()

    def across_processes(self, loss: Tensor, num_items_in_batch: Tensor | int | None) -> Tensor:
        """As in ``Trainer.compute_loss``: a token count summed over processes, whose gradients are averaged."""
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            return loss * self.accelerator.num_processes
        return loss


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
