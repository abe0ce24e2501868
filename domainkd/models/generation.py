"""Batched generation shared by teachers and evaluation."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
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
    input_ids, attention_mask = _layout(rows, shared, pad_id, model.device)
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


def _layout(rows: list[list[int]], shared: int, pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask ``(B, T)`` of rows laid out as ``shared prefix + padding + own suffix``."""
    width = max(len(row) for row in rows) - shared
    input_ids = torch.full((len(rows), shared + width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for index, row in enumerate(rows):
        start = shared + width - (len(row) - shared)  # the row's own suffix ends flush right
        input_ids[index, :shared], input_ids[index, start:] = torch.tensor(row[:shared]), torch.tensor(row[shared:])
        mask[index, :shared] = mask[index, start:] = 1
    return input_ids.to(device), mask.to(device)


def _common_prefix_length(rows: list[list[int]]) -> int:
    """Tokens all rows start with, leaving each row at least one token of its own; 0 if too short to pay."""
    limit = min(len(row) for row in rows) - 1
    length = 0
    while length < limit and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length if length >= MIN_SHARED_PREFIX else 0


@dataclass
class _Batch:
    """The sequences decoding together: one row each of the cache, mask and token lists."""

    cache: Any  # transformers DynamicCache, (B, heads, T, head_dim) per layer
    mask: torch.Tensor  # (B, T) long, 0 at padding
    last: torch.Tensor  # (B,) long, the token each row feeds next
    prompts: list[int]  # (B,) index of each row's prompt
    generated: list[list[int]]  # (B,) tokens written so far, the last one included


@torch.inference_mode()
def generate_stream(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    slots: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> Iterator[tuple[int, str]]:
    """Completions of already-rendered prompts as each one ends: ``(prompt index, text)``, in finishing order.

    Continuous batching: up to ``slots`` sequences decode together, and a sequence that ends
    frees its slot for the next waiting prompt at once, so a batch never idles until its
    longest answer is done (with :func:`generate_texts`, a batch of 8 answers of 10–64 tokens
    runs 64 steps for all 8). Newcomers are prefilled together and joined to the running
    batch by left-padding the shorter side's key/value cache. The start all prompts share is
    encoded once, as in :func:`generate_texts`. Greedy unless ``temperature > 0`` (then
    nucleus sampling with ``top_p`` from a generator seeded with ``seed``).

    Models whose cache is not plain per-layer key/value tensors (sliding-window or recurrent
    layers) are answered with :func:`generate_texts`, ``slots`` prompts at a time.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if not prompts:
        return
    probe = DynamicCache(config=model.config)
    if not all(type(layer) is DynamicLayer for layer in probe.layers):
        for first in range(0, len(prompts), slots):
            texts = generate_texts(model, tokenizer, prompts[first : first + slots], max_new_tokens, temperature, top_p, seed)
            yield from enumerate(texts, start=first)
        return
    rows = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    shared = _common_prefix_length(rows) if len(rows) > 1 else 0
    prefix = model(input_ids=torch.tensor([rows[0][:shared]], device=model.device), use_cache=True).past_key_values if shared else None
    stops = _stop_ids(model, tokenizer)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    waiting = list(range(len(prompts)))
    batch: _Batch | None = None
    while waiting or batch is not None:
        free = slots - (0 if batch is None else len(batch.prompts))
        if waiting and free > 0:
            chosen, waiting = waiting[:free], waiting[free:]
            newcomers = _prefill(model, [rows[i] for i in chosen], chosen, shared, prefix, tokenizer.pad_token_id)
            newcomers.last = _choose(newcomers.last, temperature, top_p, generator)  # (G,) first tokens from logits
            newcomers.generated = [[token] for token in newcomers.last.tolist()]
            batch = newcomers if batch is None else _join(batch, newcomers)
        else:
            positions = batch.mask.sum(-1, keepdim=True)  # (B, 1): real tokens so far, the next one's position
            batch.mask = torch.cat([batch.mask, torch.ones_like(positions)], dim=-1)
            logits = model(
                input_ids=batch.last[:, None], attention_mask=batch.mask, position_ids=positions,
                past_key_values=batch.cache, use_cache=True,
            ).logits[:, -1]  # fmt: skip
            batch.last = _choose(logits, temperature, top_p, generator)
            for tokens, token in zip(batch.generated, batch.last.tolist()):
                tokens.append(token)
        done = [row for row, tokens in enumerate(batch.generated) if tokens[-1] in stops or len(tokens) >= max_new_tokens]
        for row in done:  # end tokens are special tokens: decoding skips them, as after `generate`
            yield batch.prompts[row], tokenizer.decode(batch.generated[row], skip_special_tokens=True).strip()
        if done:
            batch = _drop(batch, [row for row in range(len(batch.prompts)) if row not in done])


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end a sequence: the generation config's end ids, else the tokenizer's."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    return set(configured if isinstance(configured, list) else [configured]) - {None}


def _prefill(model: Any, rows: list[list[int]], prompts: list[int], shared: int, prefix: Any, pad_id: int) -> _Batch:
    """Encode new prompts (laid out as ``prefix + padding + own suffix``); ``last`` holds their next-token logits."""
    from transformers import DynamicCache

    input_ids, mask = _layout(rows, shared, pad_id, model.device)
    if shared:
        cache = copy.deepcopy(prefix)
        cache.batch_repeat_interleave(len(rows))
    else:
        cache = DynamicCache(config=model.config)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (G, T): padding does not advance the position
    logits = model(
        input_ids=input_ids[:, shared:], attention_mask=mask, position_ids=positions[:, shared:],
        past_key_values=cache, use_cache=True, logits_to_keep=1,
    ).logits[:, -1]  # fmt: skip
    return _Batch(cache, mask, logits, prompts, [])


def _choose(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """Next tokens (B,) from (B, V) logits: the argmax, or a nucleus sample at ``temperature``."""
    if temperature <= 0:
        return logits.argmax(-1)
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    if top_p < 1:
        ordered, order = probabilities.sort(dim=-1, descending=True)
        outside = ordered.cumsum(-1) - ordered > top_p  # tokens after the nucleus is full
        probabilities = torch.zeros_like(probabilities).scatter(-1, order, ordered.masked_fill(outside, 0.0))
    return torch.multinomial(probabilities, 1, generator=generator)[:, 0]


def _left_pad(batch: _Batch, length: int) -> None:
    """Pad the batch's cache and mask on the left (masked out) to ``length`` positions."""
    extra = length - batch.mask.shape[1]
    if extra <= 0:
        return
    batch.mask = torch.nn.functional.pad(batch.mask, (extra, 0))
    for layer in batch.cache.layers:
        layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, extra, 0))
        layer.values = torch.nn.functional.pad(layer.values, (0, 0, extra, 0))


def _join(running: _Batch, newcomers: _Batch) -> _Batch:
    """One batch of both (the shorter left-padded to the longer)."""
    length = max(running.mask.shape[1], newcomers.mask.shape[1])
    _left_pad(running, length)
    _left_pad(newcomers, length)
    for mine, theirs in zip(running.cache.layers, newcomers.cache.layers):
        mine.keys, mine.values = torch.cat([mine.keys, theirs.keys]), torch.cat([mine.values, theirs.values])
    return _Batch(
        running.cache,
        torch.cat([running.mask, newcomers.mask]),
        torch.cat([running.last, newcomers.last]),
        running.prompts + newcomers.prompts,
        running.generated + newcomers.generated,
    )


def _drop(batch: _Batch, keep: list[int]) -> _Batch | None:
    """The batch without its finished rows, and without the leading columns that are padding in every row left."""
    if not keep:
        return None
    index = torch.tensor(keep, device=batch.mask.device)
    batch.cache.batch_select_indices(index)
    mask = batch.mask[index]
    unused = int(mask.any(0).long().argmax())  # leading all-padding columns
    if unused:
        for layer in batch.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, unused:], layer.values[:, :, unused:]
    return _Batch(
        batch.cache, mask[:, unused:], batch.last[index], [batch.prompts[i] for i in keep], [batch.generated[i] for i in keep]
    )
