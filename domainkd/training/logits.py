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
    """Base of domainkd's trainers, whose losses read logits at response positions only.

    Set ``training_order`` (row indices over every epoch, :func:`domainkd.training.schedule.training_order`)
    before ``train()``; the Trainer then makes one pass over it in that order.
    """

    training_order: list[int] | None = None

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.training_order is None:
            return super()._get_train_sampler(train_dataset)
        from domainkd.training.schedule import FixedOrder

        return FixedOrder(self.training_order)

    def compute_loss_context_manager(self) -> Any:
        """Mixed precision for the whole loss (the response-only head bypasses accelerate's autocast on forward)."""
        return self.accelerator.autocast()

    def across_processes(self, loss: Tensor, num_items_in_batch: Tensor | int | None) -> Tensor:
        """As in ``Trainer.compute_loss``: a token count summed over processes, whose gradients are averaged."""
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            return loss * self.accelerator.num_processes
        return loss


def response_logits(
    model: torch.nn.Module, student: Any, inputs: dict[str, Tensor], response: Tensor, hidden: bool = False,
    frozen: int = 0,
) -> tuple[Tensor, Tensor | None]:
    """Logits ``(N, V)`` (and last hidden states ``(N, d)`` if ``hidden``) at the ``response (B, T-1)`` positions.

    Args:
        model: the model as the Trainer holds it (possibly wrapped for distributed training).
        student: the same model unwrapped.
        inputs: ``input_ids`` and ``attention_mask`` ``(B, T)``.
        response: which positions' next-token logits are needed (position ``t`` predicts token ``t + 1``).
        hidden: also return the hidden states there.
        frozen: leading positions, unpadded in every row and before any response position, run forward without
            gradient; their keys and values (from the current weights) still feed the later positions.
    """
    if model is student and plain_head(student):
        decoder = student.get_decoder()
        if frozen > 0:
            return _with_frozen_prefix(student, decoder, inputs, response, hidden, frozen)
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


def _with_frozen_prefix(
    student: Any, decoder: Any, inputs: dict[str, Tensor], response: Tensor, hidden: bool, frozen: int
) -> tuple[Tensor, Tensor | None]:
    """:func:`response_logits` with the first ``frozen`` positions encoded under ``no_grad`` into a KV cache.

    A forward without gradient costs about a third of a training forward and backward, and keeps
    no activations; a RAFT example's excerpts are most of its tokens.
    """
    if response[:, :frozen].any():
        raise ValueError("a frozen position predicts a response token; freeze fewer positions")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        prefix = decoder(input_ids=ids[:, :frozen], attention_mask=mask[:, :frozen], use_cache=True)
    states = decoder(  # positions frozen..T-1, attending to the cached prefix
        input_ids=ids[:, frozen:], attention_mask=mask, past_key_values=prefix.past_key_values, use_cache=True
    )
    selected = states.last_hidden_state[:, :-1][response[:, frozen:]]  # (N, d): position t predicts t + 1
    return student.get_output_embeddings()(selected), (selected if hidden else None)
