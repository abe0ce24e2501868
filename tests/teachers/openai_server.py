"""A real OpenAI-compatible server for tests: a small HF model behind ``/v1/chat/completions``.

It binds 127.0.0.1 on a free port, generates with :func:`domainkd.models.generate_texts`, counts
requests per conversation, and can inject faults into a share of the chat requests. Whether a
request is faulted, and how, is drawn from an RNG seeded by (seed, conversation, how many times
that conversation was asked), so the same run meets the same faults whatever the thread order.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from domainkd.models import generate_texts, render_prompt

FAULTS = ("timeout", "429", "500", "truncated", "wrong_shape")
"""Injected faults: sleep past the client's timeout, HTTP 429 (Retry-After: 0), HTTP 500,
a 200 whose JSON body is cut in half, a 200 whose body lacks ``choices``."""


class OpenAIServer:
    """Serve ``model`` under ``model_name``; use as a context manager (starts and stops the server)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_name: str = "tiny",
        fault_rate: float = 0.0,
        seed: int = 0,
        timeout_sleep_s: float = 1.0,
        delay_s: float = 0.0,
    ) -> None:
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self.fault_rate, self.seed = fault_rate, seed
        self.timeout_sleep_s = timeout_sleep_s
        """How long a "timeout" fault sleeps before hanging up; set it above the client's timeout."""
        self.delay_s = delay_s
        """Extra seconds before every completion, to make a job slow enough to kill mid-run."""
        self.fault_kinds: tuple[str, ...] = FAULTS
        """The kinds faults are drawn from (e.g. ``("500",)`` with ``fault_rate`` 1: a server that always fails)."""
        self.unauthorized = False
        """When set, every request gets HTTP 401 whose body echoes the Authorization header."""
        self._http = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._http.app = self
        self._generation = threading.Lock()  # one generation at a time on the shared model
        self._counts = threading.Lock()
        self._seen: Counter[str] = Counter()  # per-conversation requests ever, for the fault draws
        self._serving: threading.Thread | None = None
        self.reset_counts()

    @property
    def base_url(self) -> str:
        """The URL a client puts in ``teacher.base_url``."""
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}/v1"

    def reset_counts(self) -> None:
        """Forget what was asked so far (the fault draws stay, they depend on per-conversation counts)."""
        with self._counts:
            self.requests: Counter[str] = Counter()
            """Chat requests received per conversation (``conversation_key``)."""
            self.served: Counter[str] = Counter()
            """Well-formed answers sent per conversation."""
            self.faults: Counter[str] = Counter()
            """Faults injected, by kind."""
            self.sent: dict[str, str] = {}
            """The content of the last well-formed answer per conversation."""
            self.bodies: list[dict[str, Any]] = []
            """Every chat request body received."""
            self.authorization: list[str | None] = []
            """The Authorization header of every chat request."""
            self.refused = 0
            """Requests answered 401 while ``unauthorized`` was set."""

    def __enter__(self) -> OpenAIServer:
        self._serving = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)
        self._serving.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and free the port (a stopped server is an unreachable one); stopping twice is fine."""
        if self._serving is not None:
            self._http.shutdown()
            self._serving = None
        self._http.server_close()

    def receive(self, body: dict[str, Any], authorization: str | None) -> str | None:
        """Count one chat request; return the fault to inject, or None."""
        key = conversation_key(body["messages"])
        with self._counts:
            self.requests[key] += 1
            self._seen[key] += 1
            self.bodies.append(body)
            self.authorization.append(authorization)
            draw = random.Random(f"{self.seed}:{key}:{self._seen[key]}")
            fault = draw.choice(self.fault_kinds) if draw.random() < self.fault_rate else None
            if fault:
                self.faults[fault] += 1
        return fault

    def refuse(self) -> None:
        """Count one request refused with 401."""
        with self._counts:
            self.refused += 1

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat-completion payload for ``body``, generated by the model (JSON-wrapped in json_object mode)."""
        time.sleep(self.delay_s)
        prompt = render_prompt(self.tokenizer, body["messages"])
        with self._generation:
            text = generate_texts(
                self.model,
                self.tokenizer,
                [prompt],
                max_new_tokens=body.get("max_tokens", 16),
                temperature=body.get("temperature", 0.0),
                top_p=body.get("top_p", 1.0),
                seed=body.get("seed", 0),
            )[0]
        if (body.get("response_format") or {}).get("type") == "json_object":
            text = json.dumps({"answer": text})  # what constrained decoding guarantees: one JSON object
        usage = {"prompt_tokens": self._count(prompt), "completion_tokens": self._count(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": self.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }

    def record_served(self, body: dict[str, Any], text: str) -> None:
        """Count a well-formed answer sent for ``body``'s conversation."""
        key = conversation_key(body["messages"])
        with self._counts:
            self.served[key] += 1
            self.sent[key] = text

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def conversation_key(messages: list[dict[str, str]]) -> str:
    """How the server tells conversations apart (canonical JSON of the messages)."""
    return json.dumps(messages, sort_keys=True, ensure_ascii=False)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops concurrent connects, which then time out
    app: OpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hung up first (it timed out): that is the point of the fault."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # a connection per request, so a stopped server answers nothing more
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        app = self.server.app
        if self.path.rstrip("/") != "/v1/models":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
        elif app.unauthorized:
            self._refuse()
        else:
            self._send(200, {"object": "list", "data": [{"id": app.model_name, "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802
        app = self.server.app
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        if app.unauthorized:
            return self._refuse()
        fault = app.receive(body, self.headers.get("Authorization"))
        if fault == "timeout":
            time.sleep(app.timeout_sleep_s)
            return None  # hang up without an answer
        if fault == "429":
            return self._send(429, {"error": {"message": "injected fault: slow down"}}, {"Retry-After": "0"})
        if fault == "500":
            return self._send(500, {"error": {"message": "injected fault: internal error"}})
        payload = app.complete(body)
        if fault == "truncated":
            data = json.dumps(payload).encode()
            return self._send_bytes(200, data[: len(data) // 2])
        if fault == "wrong_shape":
            return self._send(200, {"result": payload["choices"][0]["message"]["content"]})
        app.record_served(body, payload["choices"][0]["message"]["content"])
        return self._send(200, payload)

    def _refuse(self) -> None:
        """HTTP 401 echoing the credentials, as careless servers do, to prove the client masks them."""
        authorization = self.headers.get("Authorization")
        self.server.app.refuse()
        self._send(401, {"error": {"message": f"invalid credentials: {authorization}"}})

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), headers)

    def _send_bytes(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the test output."""
