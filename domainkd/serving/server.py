"""``domainkd serve``: the trained student behind an OpenAI-compatible HTTP API.

One model, one generation at a time (a single lock); up to ``max_concurrency`` requests are
admitted (generating or waiting for the lock) and the next gets HTTP 429 with ``Retry-After``.
Every error, including unknown routes and wrong methods, has OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` so OpenAI clients raise their usual
exceptions. With retrieval on, the last user turn becomes the evaluation's excerpt prompt
(:func:`domainkd.evaluation.systems.excerpt_prompt`) and the answer lists its sources.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from transformers import TextIteratorStreamer

from domainkd.errors import DomainKDError
from domainkd.serving.completion import (
    Generated,
    Prompt,
    Retrieval,
    build_prompt,
    conversation,
    generate,
    sampling_for,
    streamable_prefix,
)
from domainkd.serving.protocol import (
    APIError,
    ChatRequest,
    chunk_object,
    completion_object,
    model_object,
    parse_chat_request,
    usage,
)

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1
"""Seconds a client told 429 should wait before retrying."""


@dataclass(frozen=True)
class ServerSettings:
    """What the app needs besides the model: its name, limits, the run's prompts, the API key."""

    model_name: str
    """The name clients put in ``model``; any other name gets 404."""
    system_prompt: str
    """Prepended as the system message when a request has none (the student was trained with it)."""
    api_key: str | None = None
    """Bearer key every ``/v1`` request must carry; None serves without authentication."""
    max_concurrency: int = 4
    """Requests admitted at once (generating or waiting for the model); more get HTTP 429."""
    max_request_bytes: int = 65536
    """Largest request body; larger ones get HTTP 413."""
    max_tokens_limit: int = 512
    """Largest ``max_tokens`` a request may ask for, and the default when it asks for none."""

    def __post_init__(self) -> None:
        for name in ("max_concurrency", "max_request_bytes", "max_tokens_limit"):
            if getattr(self, name) < 1:
                raise DomainKDError(f"{name.replace('_', '-')} is {getattr(self, name)}; use a positive number.")
        if not self.model_name.strip():
            raise DomainKDError("the model name is empty; pass --model-name with a name clients will use.")


class Gate:
    """Admission control in front of the single model lock (used from the event loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.admitted = 0
        self.model = asyncio.Lock()

    def admit(self) -> Ticket:
        """Admit one request, or refuse it with 429 when ``limit`` are already admitted."""
        if self.admitted >= self.limit:
            raise APIError(
                429, f"the server is busy with {self.admitted} requests; retry in {RETRY_AFTER_S} s.",
                kind="rate_limit_error", code="rate_limit_exceeded", headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.admitted += 1
        return Ticket(self)


class Ticket:
    """One admitted request: holds the model lock while its work runs in a worker thread.

    ``release`` may be called early (client gone, task cancelled): it then waits for the running
    work to finish before freeing the model, so two generations never share it.
    """

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.holding = self.released = False
        self.work: asyncio.Future | None = None

    async def hold_model(self) -> None:
        """Wait for the model lock."""
        await self.gate.model.acquire()
        self.holding = True

    def start(self, function: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Run ``function(*args)`` in a worker thread; await the returned future (shielded) for its result."""
        self.work = asyncio.get_running_loop().run_in_executor(None, partial(function, *args))
        return self.work

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` in a worker thread and return its result."""
        return await asyncio.shield(self.start(function, *args))

    def release(self) -> None:
        """Free the model and the admission slot, once the running work (if any) is done; idempotent."""
        if self.work is not None and not self.work.done():
            self.work.add_done_callback(lambda _: self.release())
            return
        if self.released:
            return
        self.released = True
        if self.holding:
            self.gate.model.release()
        self.gate.admitted -= 1


@dataclass
class _State:
    """What the routes share."""

    model: Any
    tokenizer: Any
    settings: ServerSettings
    retrieval: Retrieval | None
    gate: Gate
    created: int
    context_tokens: int | None


def create_app(model: Any, tokenizer: Any, settings: ServerSettings, retrieval: Retrieval | None = None) -> FastAPI:
    """The ASGI app serving an already-loaded model.

    Args:
        model: A causal LM in eval mode, on its device.
        tokenizer: Its tokenizer, with a chat template and a pad token.
        settings: Name, limits, system prompt and API key.
        retrieval: Retriever and excerpt count for retrieval-augmented answers; None answers closed-book.
    """
    state = _State(
        model, tokenizer, settings, retrieval, Gate(settings.max_concurrency), int(time.time()),
        getattr(getattr(model, "config", None), "max_position_embeddings", None),
    )
    app = FastAPI(title="domainkd", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gate = state.gate  # admitted requests, for observation
    app.add_exception_handler(APIError, _api_error_response)
    app.add_exception_handler(StarletteHTTPException, _http_error_response)
    app.add_exception_handler(Exception, _unexpected_error_response)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        _authenticate(request, settings.api_key)
        return {"object": "list", "data": [model_object(settings.model_name, state.created)]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str, request: Request) -> dict[str, Any]:
        _authenticate(request, settings.api_key)
        _check_model_name(name, settings.model_name)
        return model_object(settings.model_name, state.created)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        _authenticate(request, settings.api_key)
        chat = parse_chat_request(await _read_body(request, settings.max_request_bytes), settings.max_tokens_limit)
        _check_model_name(chat.model, settings.model_name)
        return await _complete(state, chat)

    return app


async def _complete(state: _State, chat: ChatRequest) -> Response:
    """Admit, wait for the model, build the prompt, then answer in one body or as a stream."""
    ticket = state.gate.admit()
    handed_over = False
    try:
        await ticket.hold_model()
        messages = conversation(chat, state.settings.system_prompt)
        prompt = await ticket.run(build_prompt, state.tokenizer, messages, state.retrieval, state.context_tokens)
        if chat.stream:
            events = _stream(state, chat, prompt, ticket)
            first = await anext(events)  # started, so its `finally` (which releases the ticket) always runs
            handed_over = True
            return StreamingResponse(_prepend(first, events), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        generated = await _generate(ticket, state, chat, prompt)
        return JSONResponse(
            completion_object(
                f"chatcmpl-{uuid.uuid4().hex}", state.settings.model_name, generated.text, generated.finish_reason,
                usage(len(prompt.input_ids), generated.completion_tokens), prompt.sources,
            )
        )
    finally:
        if not handed_over:
            ticket.release()


async def _generate(ticket: Ticket, state: _State, chat: ChatRequest, prompt: Prompt) -> Generated:
    """Generate in a worker thread; a failure becomes a 500 with no internals in it."""
    try:
        return await ticket.run(generate, state.model, state.tokenizer, prompt, sampling_for(chat, state.settings.max_tokens_limit))
    except Exception:
        logger.exception("generation failed")
        raise _generation_failed() from None


def _generation_failed() -> APIError:
    """The 500 a client sees when generation raised (details go to the server log only)."""
    return APIError(500, "generation failed on the server; see its log.", kind="server_error", code="generation_failed")


async def _stream(state: _State, chat: ChatRequest, prompt: Prompt, ticket: Ticket) -> AsyncIterator[str]:
    """Server-sent events: the role, content pieces as decoded, the finish reason, (usage), ``[DONE]``.

    Text that could be the start of a stop string is held back until it is known not to be one,
    so the pieces concatenate to exactly the non-streamed answer.
    """
    completion_id, created, name = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), state.settings.model_name
    cancel = threading.Event()
    streamer = TextIteratorStreamer(state.tokenizer, skip_prompt=True, skip_special_tokens=True)
    sampling = sampling_for(chat, state.settings.max_tokens_limit)
    sources = {"domainkd_sources": prompt.sources} if prompt.sources is not None else None
    try:
        yield _event(chunk_object(completion_id, name, created, {"role": "assistant", "content": ""}, extra=sources))
        work = ticket.start(_generate_streaming, state, prompt, sampling, streamer, cancel)
        received = sent = ""
        while (piece := await asyncio.to_thread(next, streamer, None)) is not None:
            received += piece
            ready = streamable_prefix(received, sampling.stops)
            if len(ready) > len(sent) and prompt.checked is None:  # a checked answer goes out whole, once checked
                yield _event(chunk_object(completion_id, name, created, {"content": ready[len(sent) :]}))
                sent = ready
        try:
            generated = await asyncio.shield(work)
        except Exception:
            logger.exception("generation failed")
            yield _event(_generation_failed().body())  # headers are sent: the error travels as an event
            return
        if not generated.text.startswith(sent):
            logger.warning("streamed text diverged from the decoded completion %s", completion_id)
        elif len(generated.text) > len(sent):
            yield _event(chunk_object(completion_id, name, created, {"content": generated.text[len(sent) :]}))
        yield _event(chunk_object(completion_id, name, created, {}, finish_reason=generated.finish_reason))
        if chat.stream_options is not None and chat.stream_options.include_usage:
            token_usage = usage(len(prompt.input_ids), generated.completion_tokens)
            yield _event(chunk_object(completion_id, name, created, None, extra={"usage": token_usage}))
        yield "data: [DONE]\n\n"
    finally:
        cancel.set()  # a client that went away stops the generation at the next token
        ticket.release()


def _generate_streaming(state: _State, prompt: Prompt, sampling: Any, streamer: TextIteratorStreamer, cancel: threading.Event) -> Generated:
    """:func:`generate` feeding ``streamer``; ends the stream even when generation fails, so readers never hang."""
    try:
        return generate(state.model, state.tokenizer, prompt, sampling, streamer=streamer, cancel=cancel)
    except BaseException:
        streamer.end()
        raise


async def _prepend(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    yield first
    async for item in rest:
        yield item


def _event(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _authenticate(request: Request, api_key: str | None) -> None:
    """401 unless the request carries ``Authorization: Bearer <api_key>`` (when a key is set)."""
    if api_key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
        raise APIError(
            401, "missing or wrong API key; send it as `Authorization: Bearer <key>`.",
            kind="authentication_error", code="invalid_api_key",
        )


def _check_model_name(requested: str, served: str) -> None:
    if requested != served:
        raise APIError(
            404, f"model {requested!r} is not served here; use {served!r} (see GET /v1/models).",
            kind="not_found_error", param="model", code="model_not_found",
        )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 over ``limit`` bytes (declared or actually sent) and 400 if not JSON-typed."""
    too_large = APIError(413, f"the request body is over {limit} bytes; send a smaller one.", code="request_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_large if declared.isdigit() else APIError(400, "the Content-Length header is not a number.")
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise APIError(400, f"the body is sent as {content_type!r}; send JSON with Content-Type: application/json.")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def _api_error_response(request: Request, error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _http_error_response(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """Routing errors (404 unknown route, 405 wrong method) in OpenAI's shape."""
    messages = {
        404: f"there is no route {request.url.path}; use /v1/models or /v1/chat/completions.",
        405: f"{request.method} is not allowed on {request.url.path}; use {(error.headers or {}).get('Allow', 'another method')}.",
    }
    message = messages.get(error.status_code, f"{error.detail}.")
    kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
    return JSONResponse(
        APIError(error.status_code, message, kind=kind).body(), status_code=error.status_code, headers=error.headers
    )


async def _unexpected_error_response(request: Request, error: Exception) -> JSONResponse:
    logger.error("unexpected server error", exc_info=error)
    return JSONResponse(APIError(500, "the server failed; see its log.", kind="server_error").body(), status_code=500)
