"""OpenAI-compatible teacher: any ``/v1/chat/completions`` server (vLLM, Ollama, llama.cpp, hosted APIs).

Requests run ``concurrency`` at a time on a thread pool. A timeout, connection error, HTTP 429
or 5xx, or a malformed body is retried with exponential backoff and jitter (a server's
``Retry-After`` is honoured, capped); any other HTTP error fails at once. Either way every
request ends as a :class:`Reply`: answered, or failed with a short reason. The API key, read
from the environment, goes only into the Authorization header and is masked in every reason.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit
from typing import Any

import httpx

from domainkd.config import TeacherConfig
from domainkd.errors import DomainKDError
from domainkd.teachers.base import Messages, Reply, generation_settings, register_teacher

MAX_RETRY_AFTER_S = 60.0
"""Longest wait a server's Retry-After header may impose before a retry."""
MAX_BACKOFF_S = 60.0
"""Longest wait between two attempts when the server gives no Retry-After."""
CONNECT_TIMEOUT_S = 10.0
"""Seconds to open a connection (at most ``timeout_s``): an unreachable host fails fast."""
EXCERPT_CHARS = 200
"""Characters of an error body kept in a failure reason."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Retry:
    """An attempt that failed in a way worth retrying: why, and the server's Retry-After if it sent one."""

    reason: str
    retry_after: float | None = None


@register_teacher("openai")
class OpenAITeacher:
    """Chat completions from an OpenAI-compatible server, ``concurrency`` requests at a time."""

    def __init__(self, config: TeacherConfig) -> None:
        self.config = config
        self.identity = f"openai:{redacted_url(config.base_url)}:{config.model}"  # no credentials in keys or logs
        self.batch_size = max(config.batch_size, config.concurrency)  # a batch keeps every connection busy
        self._client: httpx.Client | None = None
        self._api_key = ""

    def __repr__(self) -> str:
        return f"OpenAITeacher({self.identity!r})"

    def settings(self) -> dict[str, Any]:
        """Request settings that decide the answer."""
        return {**generation_settings(self.config), "json_mode": self.config.json_mode}

    def load(self) -> None:
        """Open the connection pool and check once that a server answers at ``base_url``.

        Raises:
            DomainKDError: nothing answers there, or it refuses the API key (one sentence with the fix).
        """
        if self._client is not None:
            return
        self._api_key = os.environ.get(self.config.api_key_env, "")
        client = httpx.Client(
            base_url=self.config.base_url,
            headers={"Authorization": f"Bearer {self._api_key}"} if self._api_key else {},
            timeout=httpx.Timeout(self.config.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.config.timeout_s)),
            limits=httpx.Limits(max_connections=self.config.concurrency),
        )
        try:
            self._probe(client)
        except DomainKDError:
            client.close()
            raise
        self._client = client

    def generate(
        self, conversations: list[Messages], max_new_tokens: int | None = None, expect_json: bool = False
    ) -> list[Reply]:
        """Answer each conversation, ``concurrency`` requests in flight; failures come back as failed replies.

        With ``expect_json`` (and config ``json_mode``) the server is asked for a JSON object.
        """
        self.load()
        limit = max_new_tokens or self.config.max_new_tokens
        bodies = [self._body(conversation, limit, expect_json) for conversation in conversations]
        if not bodies:
            return []
        with ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(bodies))) as pool:
            return list(pool.map(self._complete, bodies))

    def close(self) -> None:
        """Close the connection pool (a later :meth:`generate` opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _probe(self, client: httpx.Client) -> None:
        """GET ``/models`` once: unreachable or refusing the key is fatal; a missing model is a warning."""
        base_url = redacted_url(self.config.base_url)
        try:
            response = client.get("/models")
        except httpx.HTTPError as error:
            raise DomainKDError(
                f"no OpenAI-compatible server answers at {base_url} ({self._describe(error)}); start one there "
                f"(e.g. `vllm serve MODEL --port 8000`) or set teacher.base_url to where it listens."
            ) from None
        if response.status_code in (401, 403):
            raise DomainKDError(
                f"the server at {base_url} refused the API key (HTTP {response.status_code}); "
                f"set the environment variable {self.config.api_key_env} to a valid key."
            )
        if response.is_success:
            self._warn_if_not_served(response)

    def _warn_if_not_served(self, response: httpx.Response) -> None:
        """Log when the server's model list lacks the configured model (some servers serve any name)."""
        try:
            served = [entry["id"] for entry in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            return
        if served and self.config.model not in served:
            logger.warning(
                "%s lists the models %s but not %r; requests will name %r anyway",
                redacted_url(self.config.base_url), ", ".join(map(str, served[:5])), self.config.model, self.config.model,
            )

    def _body(self, conversation: Messages, max_new_tokens: int, expect_json: bool) -> dict[str, Any]:
        """The JSON body of one chat-completion request."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": conversation,
            "max_tokens": max_new_tokens,
            "temperature": self.config.temperature,
        }
        if self.config.temperature > 0:
            body.update(top_p=self.config.top_p, seed=self.config.seed)
        if expect_json and self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def _complete(self, body: dict[str, Any]) -> Reply:
        """One request to its end: retried while the failure is transient and retries remain."""
        outcome = self._attempt(body)
        for attempt in range(self.config.max_retries):
            if isinstance(outcome, Reply):
                return outcome
            logger.debug("teacher request failed (%s); retrying", outcome.reason)
            time.sleep(self._backoff(attempt, outcome.retry_after))
            outcome = self._attempt(body)
        if isinstance(outcome, Reply):
            return outcome
        retries = f" (after {self.config.max_retries} retries)" if self.config.max_retries else ""
        return Reply(None, error=outcome.reason + retries)

    def _attempt(self, body: dict[str, Any]) -> Reply | _Retry:
        """Send one request: a reply (answered or failed for good) or a transient failure to retry."""
        assert self._client is not None, "load() opens the client"
        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            return _Retry(f"timeout: no complete answer within {self.config.timeout_s:g} s")
        except httpx.HTTPError as error:
            return _Retry(f"connection error: {self._describe(error)}")
        if response.status_code == 429 or response.status_code >= 500:
            return _Retry(f"HTTP {response.status_code}: {self._excerpt(response)}", _retry_after(response))
        if not response.is_success:
            return Reply(None, error=f"HTTP {response.status_code}: {self._excerpt(response)}")
        return self._read(response)

    def _read(self, response: httpx.Response) -> Reply | _Retry:
        """The answer and token counts of a 2xx response; a body of the wrong form is retried."""
        try:
            payload = response.json()
        except ValueError:
            return _Retry(f"malformed response: the body is not JSON ({self._excerpt(response)})")
        text = _message_content(payload)
        if text is None:
            return _Retry(f"malformed response: no choices[0].message.content ({self._excerpt(response)})")
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        return Reply(
            text.strip(),
            prompt_tokens=_token_count(usage, "prompt_tokens"),
            completion_tokens=_token_count(usage, "completion_tokens"),
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry ``attempt`` (0-based): the server's Retry-After, else jittered doubling."""
        if retry_after is not None:
            return retry_after
        delay = min(self.config.retry_backoff_s * 2**attempt, MAX_BACKOFF_S)
        return delay * random.uniform(0.5, 1.0)  # jitter spreads retries of a burst of failures apart

    def _excerpt(self, response: httpx.Response) -> str:
        """The start of a body on one line, the API key masked (before cutting, so no part of it survives)."""
        text = self._mask(" ".join(response.text.split()))
        if not text:
            return "(empty body)"
        return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."

    def _describe(self, error: httpx.HTTPError) -> str:
        """A transport error as ``Type: message``, the API key masked."""
        message = self._mask(str(error))
        return f"{type(error).__name__}: {message}" if message else type(error).__name__

    def _mask(self, text: str) -> str:
        """``text`` with the API key and any credentials of ``base_url`` replaced by ``***``."""
        secrets = [self._api_key, *_url_credentials(self.config.base_url)]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def redacted_url(url: str) -> str:
    """``url`` with its user and password (``http://user:KEY@host``) shown as ``***``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _url_credentials(url: str) -> list[str]:
    """The userinfo of ``url`` and its parts, as they may appear in a transport error's text."""
    netloc = urlsplit(url).netloc
    if "@" not in netloc:
        return []
    userinfo = netloc.rsplit("@", 1)[0]
    return [userinfo, *(part for part in userinfo.split(":") if len(part) >= 4)]


def _message_content(payload: Any) -> str | None:
    """``choices[0].message.content`` when the payload has that shape and it is text."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _token_count(usage: dict[str, Any], name: str) -> int | None:
    """A non-negative integer count from the ``usage`` field, or None."""
    value = usage.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header (seconds or an HTTP date) in seconds, capped at :data:`MAX_RETRY_AFTER_S`."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
