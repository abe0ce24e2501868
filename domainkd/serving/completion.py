"""One chat completion on the loaded student: the prompt it sees, generation, stop strings, finish reason.

Everything here is blocking and runs in a worker thread while the server holds its one model
lock; :mod:`domainkd.serving.server` does the HTTP side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from domainkd.evaluation.systems import checked_answer, excerpt_prompt
from domainkd.models import render_prompt
from domainkd.serving.protocol import APIError, ChatRequest, ROLES


class ChunkSearcher(Protocol):
    """What ``domainkd.retrieval.chunks.open_chunk_retriever`` returns."""

    def search(self, queries: list[str], top_k: int) -> list[list[Any]]:
        """Per query, its best chunks (objects with ``.chunk``, ``.score``, ``.rank``), best first."""
        ...


@dataclass(frozen=True)
class Retrieval:
    """Retrieval-augmented answers: the retriever and how many excerpts go into each prompt."""

    retriever: ChunkSearcher
    top_k: int
    refusal_text: str
    answer_check: float | None = None
    """The run's ``retrieval.answer_check``: an answer the excerpts do not back becomes ``refusal_text``."""


@dataclass(frozen=True)
class Prompt:
    """A request turned into the student's input."""

    input_ids: list[int]
    sources: list[dict[str, Any]] | None
    """Retrieved excerpts (document, title, chunk_id, score), or None without retrieval."""
    checked: Callable[[str], str] | None = None
    """The answer as sent: the refusal sentence where the excerpts do not back it (None: no check). With a
    check, a streamed answer is sent whole when it is finished."""


@dataclass(frozen=True)
class Sampling:
    """How to decode one completion."""

    max_new_tokens: int
    temperature: float = 0.0
    """0 means greedy."""
    top_p: float = 1.0
    seed: int | None = None
    stops: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Generated:
    """A finished completion."""

    text: str
    finish_reason: str
    """``stop`` (end of turn or a stop string) or ``length`` (ran into ``max_new_tokens``)."""
    completion_tokens: int


def sampling_for(request: ChatRequest, default_max_tokens: int) -> Sampling:
    """The decoding settings a request asks for."""
    return Sampling(
        max_new_tokens=request.token_limit(default_max_tokens),
        temperature=request.temperature or 0.0,
        top_p=request.top_p or 1.0,
        seed=request.seed,
        stops=request.stops,
    )


def conversation(request: ChatRequest, system_prompt: str) -> list[dict[str, str]]:
    """The request's messages for the chat template, the run's system prompt first when none is given."""
    messages = [{"role": ROLES[message.role], "content": message.content} for message in request.messages]
    if not any(message["role"] == "system" for message in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def build_prompt(tokenizer: Any, messages: list[dict[str, str]], retrieval: Retrieval | None, context_tokens: int | None) -> Prompt:
    """Retrieve excerpts for the last user turn (if on), render the chat template and tokenise.

    Raises:
        APIError: 400 when the prompt alone fills the model's context.
    """
    sources, checked = None, None
    if retrieval is not None:
        question = messages[-1]["content"]
        hits = retrieval.retriever.search([question], retrieval.top_k)[0]
        excerpts = [hit.chunk for hit in hits]
        messages = [*messages[:-1], {"role": "user", "content": excerpt_prompt(question, excerpts, retrieval.refusal_text)}]
        if retrieval.answer_check is not None:
            checked = partial(checked_answer, excerpts=excerpts, refusal_text=retrieval.refusal_text, min_share=retrieval.answer_check)
        sources = [
            {"document": hit.chunk.document, "title": hit.chunk.title, "chunk_id": hit.chunk.chunk_id, "score": float(hit.score)}
            for hit in hits
        ]
    input_ids = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
    if context_tokens is not None and len(input_ids) >= context_tokens:
        raise APIError(
            400, f"the prompt has {len(input_ids)} tokens, which fills the model's context of {context_tokens}; "
            "send shorter messages.", param="messages", code="context_length_exceeded",
        )
    return Prompt(input_ids=input_ids, sources=sources, checked=checked)


@torch.inference_mode()
def generate(
    model: Any, tokenizer: Any, prompt: Prompt, sampling: Sampling, streamer: Any = None, cancel: threading.Event | None = None
) -> Generated:
    """Generate one completion (batch of one), stopping early at a stop string or when ``cancel`` is set.

    Args:
        streamer: Optional transformers streamer fed the new tokens as they come.
        cancel: Set it from another thread to end generation at the next token.
    """
    input_ids = torch.tensor([prompt.input_ids], device=model.device)  # (1, T)
    criteria = StoppingCriteriaList([_Cancelled(cancel or threading.Event())])
    if sampling.stops:
        criteria.append(_StopStrings(tokenizer, sampling.stops, input_ids.shape[1]))
    decoding: dict[str, Any] = {"do_sample": False}
    if sampling.temperature > 0:
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)  # safe: callers hold the model lock
        decoding = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p}
    output_ids = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=sampling.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        top_k=None,
        stopping_criteria=criteria,
        streamer=streamer,
        **decoding,
    )  # (1, T + new)
    generated = finish(tokenizer, output_ids[0, input_ids.shape[1] :].tolist(), sampling, end_token_ids(model, tokenizer))
    if prompt.checked is not None:
        generated = replace(generated, text=prompt.checked(generated.text))
    return generated


def finish(tokenizer: Any, new_ids: list[int], sampling: Sampling, end_ids: set[int]) -> Generated:
    """Decode new tokens, cut at the first stop string, and say why generation ended."""
    text, stopped = cut_at_stop(tokenizer.decode(new_ids, skip_special_tokens=True), sampling.stops)
    ended = stopped or bool(new_ids and new_ids[-1] in end_ids) or len(new_ids) < sampling.max_new_tokens
    return Generated(text=text, finish_reason="stop" if ended else "length", completion_tokens=len(new_ids))


def end_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end the assistant's turn (the generation config's and the tokenizer's EOS)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    return {token for token in ids | {tokenizer.eos_token_id} if token is not None}


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to its first stop string, and whether one was found."""
    positions = [text.find(stop) for stop in stops if stop in text]
    return (text[: min(positions)], True) if positions else (text, False)


def streamable_prefix(text: str, stops: list[str]) -> str:
    """The part of ``text`` safe to send now: before any stop string, holding back a possible stop's start."""
    text, stopped = cut_at_stop(text, stops)
    if stopped:
        return text
    for held in range(min(len(text), max((len(stop) for stop in stops), default=1) - 1), 0, -1):
        if any(stop.startswith(text[-held:]) for stop in stops):
            return text[:-held]
    return text


class _Cancelled(StoppingCriteria):
    """Stops generation once ``event`` is set (the client went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class _StopStrings(StoppingCriteria):
    """Stops generation once the new text contains a stop string."""

    def __init__(self, tokenizer: Any, stops: list[str], prompt_length: int) -> None:
        self.tokenizer, self.stops, self.prompt_length = tokenizer, stops, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        found = [any(stop in text for stop in self.stops) for text in texts]
        return torch.tensor(found, dtype=torch.bool, device=input_ids.device)
