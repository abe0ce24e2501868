"""Batched generation shared by teachers and evaluation."""

from __future__ import annotations

from typing import Any

import torch

MIN_SHARED_PREFIX = 16
"""Shortest common prompt prefix (tokens) worth encoding once for the whole batch."""


@torch.inference_mode()
def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    share_prefix: bool = True,
) -> list[str]:
    """Generate completions for already-rendered prompts in one batch.

    Prompts built from one template share a long start (system prompt, one-shot example).
    With ``share_prefix`` that start is encoded once and its key/value cache reused by every
    row, which is most of the prompt work for a batch of short questions: each row is laid
    out as ``prefix + padding + own suffix`` and the padding is masked out.
    """
    rows = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    shared = _common_prefix_length(rows) if share_prefix and len(rows) > 1 else 0
    pad_id = tokenizer.pad_token_id
    width = max(len(row) for row in rows) - shared
    input_ids = torch.full((len(rows), shared + width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for index, row in enumerate(rows):
        start = shared + width - (len(row) - shared)  # the row's own suffix ends flush right
        input_ids[index, :shared], input_ids[index, start:] = torch.tensor(row[:shared]), torch.tensor(row[shared:])
        attention_mask[index, :shared] = attention_mask[index, start:] = 1
    input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
    extra: dict[str, Any] = {}
    if shared:
        cache = model(input_ids=input_ids[:1, :shared], use_cache=True).past_key_values
        cache.batch_repeat_interleave(len(rows))
        extra["past_key_values"] = cache
    sampling: dict[str, Any] = {"do_sample": False}
    if temperature > 0:
        torch.manual_seed(seed)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
    output_ids = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad_id,
        top_k=None,
        **sampling,
        **extra,
    )  # (B, prompt_len + new)
    new_ids = output_ids[:, input_ids.shape[1] :]
    return [text.strip() for text in tokenizer.batch_decode(new_ids, skip_special_tokens=True)]


def _common_prefix_length(rows: list[list[int]]) -> int:
    """Tokens all rows start with, leaving each row at least one token of its own; 0 if too short to pay."""
    limit = min(len(row) for row in rows) - 1
    length = 0
    while length < limit and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length if length >= MIN_SHARED_PREFIX else 0
