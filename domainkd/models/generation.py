"""Batched generation shared by teachers and evaluation."""

from __future__ import annotations

from typing import Any

import torch


@torch.inference_mode()
def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """Generate completions for already-rendered prompts in one left-padded batch."""
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    sampling: dict[str, Any] = {"do_sample": False}
    if temperature > 0:
        torch.manual_seed(seed)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
    output_ids = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        top_k=None,
        **sampling,
    )  # (B, prompt_len + new)
    new_ids = output_ids[:, batch["input_ids"].shape[1] :]
    return [text.strip() for text in tokenizer.batch_decode(new_ids, skip_special_tokens=True)]
