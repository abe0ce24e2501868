"""The OpenAI chat-completions wire format: request validation, error bodies and response objects.

Requests are validated by pydantic models in strict mode (``"5"`` is not a number, ``true``
is not an integer); fields this server does not use (``user``, ``presence_penalty``, ...) are
ignored, as OpenAI-compatible servers usually do, except those whose answer it could not
honour (``n`` > 1, ``logprobs``, ``tools``), which are refused with HTTP 400.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
"""Accepted message roles → the role the chat template sees (OpenAI's `developer` is a system message)."""

MAX_STOP_STRINGS = 4
"""OpenAI's limit on ``stop`` strings."""


class APIError(Exception):
    """An HTTP error answered in OpenAI's shape; ``message`` is one sentence."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class WireModel(BaseModel):
    """Base of request models: strict types, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class Message(WireModel):
    """One chat message; list-of-parts content is joined into one string here."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str

    @field_validator("content", mode="before")
    @classmethod
    def _join_text_parts(cls, content: Any) -> Any:
        if isinstance(content, list):
            return "\n".join(_part_text(part) for part in content)
        if not isinstance(content, str):
            raise ValueError("content must be a string or a list of text parts")
        return content


class StreamOptions(WireModel):
    """Options of a streamed answer."""

    include_usage: bool = False
    """Send one more chunk, with no choices, carrying the token usage."""


class ChatRequest(WireModel):
    """A ``POST /v1/chat/completions`` body, as far as this server reads it."""

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    """Newer name of ``max_tokens``; wins when both are given."""
    temperature: float | None = Field(None, ge=0, le=2)
    """0 or absent means greedy decoding (how the student was evaluated), unlike OpenAI's default of 1."""
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    logprobs: bool | None = None
    tools: list[Any] | None = None

    @field_validator("stop", mode="after")
    @classmethod
    def _check_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOP_STRINGS or any(not text for text in stops):
            raise ValueError(f"stop takes at most {MAX_STOP_STRINGS} non-empty strings")
        return stop

    @field_validator("n", mode="after")
    @classmethod
    def _check_n(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError("this server returns one choice per request; leave n at 1")
        return n

    @field_validator("logprobs", mode="after")
    @classmethod
    def _check_logprobs(cls, logprobs: bool | None) -> bool | None:
        if logprobs:
            raise ValueError("this server does not return log-probabilities; leave logprobs unset")
        return logprobs

    @field_validator("tools", mode="after")
    @classmethod
    def _check_tools(cls, tools: list[Any] | None) -> list[Any] | None:
        if tools:
            raise ValueError("this server does not call tools; leave tools unset")
        return tools

    @property
    def stops(self) -> list[str]:
        """The stop strings as a list (possibly empty)."""
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def token_limit(self, default: int) -> int:
        """``max_completion_tokens``, else ``max_tokens``, else ``default``."""
        return self.max_completion_tokens or self.max_tokens or default


def _part_text(part: Any) -> str:
    """The text of one content part; anything but ``{"type": "text", "text": str}`` is refused."""
    if not isinstance(part, dict) or part.get("type") != "text":
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        raise ValueError(f"content part of type {kind!r} is not supported; send text parts only")
    if not isinstance(part.get("text"), str):
        raise ValueError("a text content part needs a string `text`")
    return part["text"]


def parse_chat_request(body: bytes, max_tokens_limit: int) -> ChatRequest:
    """Validate a raw request body.

    Args:
        body: The HTTP body as received.
        max_tokens_limit: Largest ``max_tokens`` a request may ask for.

    Raises:
        APIError: 400 with one sentence naming the first problem.
    """
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f" at line {error.lineno} column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
        raise APIError(400, f"the request body is not valid JSON{where}; send a JSON object.") from None
    if not isinstance(raw, dict):
        raise APIError(400, "the request body must be a JSON object with `model` and `messages`.")
    try:
        request = ChatRequest.model_validate(raw)
    except ValidationError as error:
        raise _one_sentence(error) from None
    if request.messages[-1].role != "user":
        raise APIError(400, "the last message must come from the user; this server answers a user turn.", param="messages")
    if request.token_limit(1) > max_tokens_limit:
        raise APIError(
            400, f"max_tokens is {request.token_limit(1)}, over this server's limit of {max_tokens_limit}; ask for fewer.",
            param="max_tokens",
        )
    return request


def _one_sentence(error: ValidationError) -> APIError:
    """The first validation problem as a 400 whose ``param`` is its dotted location."""
    first = error.errors()[0]
    location = [str(part) for part in first["loc"] if not str(part).startswith("function-")]
    param = ".".join(location) or None
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        return APIError(400, f"the request lacks `{param}`; add it.", param=param)
    return APIError(400, f"bad value for `{param}`: {message[:1].lower()}{message[1:]}.", param=param)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The ``usage`` object of a completion."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def completion_object(
    completion_id: str, model_name: str, text: str, finish_reason: str, token_usage: dict[str, int],
    sources: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """A ``chat.completion``; ``domainkd_sources`` lists the retrieved excerpts when retrieval is on."""
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": token_usage,
    }
    if sources is not None:
        body["domainkd_sources"] = sources
    return body


def chunk_object(
    completion_id: str, model_name: str, created: int, delta: dict[str, str] | None,
    finish_reason: str | None = None, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta=None`` gives the usage-only chunk (no choices)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
    body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name, "choices": choices}
    return {**body, **(extra or {})}


def model_object(name: str, created: int) -> dict[str, Any]:
    """One entry of ``GET /v1/models``."""
    return {"id": name, "object": "model", "created": created, "owned_by": "domainkd"}
