"""Loading a trained run into the server app, and running it with uvicorn (``domainkd serve``)."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import torch
from fastapi import FastAPI

from domainkd.config import RunConfig, load_config
from domainkd.errors import DomainKDError
from domainkd.models import load_causal_lm
from domainkd.paths import RunPaths
from domainkd.serving.completion import Retrieval
from domainkd.serving.server import ServerSettings, create_app

RETRIEVAL_METHODS = ("none", "bm25", "dense", "hybrid")
"""Choices of ``--retrieval``."""


def app_for_run(
    run_dir: Path,
    model_name: str | None = None,
    api_key_env: str = "DOMAINKD_API_KEY",
    retrieval: str = "none",
    top_k: int | None = None,
    max_concurrency: int = 4,
    max_request_bytes: int = 65536,
    max_tokens_limit: int = 512,
) -> tuple[FastAPI, ServerSettings]:
    """Load a trained run (its config, ``train/model``, optionally its retriever) into an app.

    Args:
        run_dir: The run directory (holds config.yaml and train/model).
        model_name: Name clients use; default the run's name.
        api_key_env: Environment variable holding the API key; unset or empty serves without one.
        retrieval: ``none`` or a method of ``domainkd.retrieval.chunks`` (bm25, dense, hybrid).
        top_k: Excerpts per prompt; default the run's ``retrieval.top_k``.

    Raises:
        DomainKDError: missing run, config or model, or a bad option (one sentence).
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):  # never echo it: it may be the key itself
        raise DomainKDError("--api-key-env must name an environment variable such as DOMAINKD_API_KEY, not hold the key.")
    config, paths = load_run(run_dir)
    settings = ServerSettings(
        model_name=model_name or config.name, system_prompt=config.system_prompt,
        api_key=os.environ.get(api_key_env) or None, max_concurrency=max_concurrency,
        max_request_bytes=max_request_bytes, max_tokens_limit=max_tokens_limit,
    )
    chunk_retrieval = open_retrieval(config, paths, retrieval, top_k)
    model, tokenizer = load_causal_lm(paths.model, trust_remote_code=False)
    if torch.cuda.is_available():
        model.to("cuda")
    return create_app(model, tokenizer, settings, chunk_retrieval), settings


def load_run(run_dir: Path) -> tuple[RunConfig, RunPaths]:
    """The run's resolved config and paths, checking that it has a trained model."""
    paths = RunPaths(Path(run_dir))
    if not paths.root.is_dir():
        raise DomainKDError(f"run directory {paths.root} does not exist; pass the run_dir of a trained run.")
    if not paths.config.is_file():
        raise DomainKDError(f"{paths.config} is missing; run `domainkd data CONFIG` and `domainkd train CONFIG` first.")
    config = load_config(paths.config)
    if not any(paths.model.glob("*.safetensors")):
        raise DomainKDError(f"{paths.model} has no safetensors weights; run `domainkd train CONFIG` first.")
    return config, paths


def open_retrieval(config: RunConfig, paths: RunPaths, method: str, top_k: int | None) -> Retrieval | None:
    """The run's chunk retriever for ``method``, or None for ``none``."""
    if method not in RETRIEVAL_METHODS:
        raise DomainKDError(f"unknown retrieval {method!r}; choose from {', '.join(RETRIEVAL_METHODS)}.")
    if top_k is not None and top_k < 1:
        raise DomainKDError(f"--top-k is {top_k}; use a positive number of excerpts.")
    if method == "none":
        return None
    from domainkd.data.build import load_chunks
    from domainkd.retrieval.chunks import open_chunk_retriever

    settings = config.retrieval
    retriever = open_chunk_retriever(
        index_dir=paths.retrieval_index, chunks=load_chunks(paths), method=method,
        encoder=settings.encoder, rrf_k=settings.rrf_k, candidates=settings.candidates,
    )
    return Retrieval(
        retriever=retriever, top_k=top_k or settings.top_k, refusal_text=config.refusal_text,
        answer_check=settings.answer_check,
    )


def serve(
    run_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    api_key_env: str = "DOMAINKD_API_KEY",
    retrieval: str = "none",
    top_k: int | None = None,
    max_concurrency: int = 4,
    max_request_bytes: int = 65536,
    max_tokens_limit: int = 512,
) -> None:
    """Load a trained run and serve it on ``host:port`` until interrupted (other arguments: :func:`app_for_run`)."""
    import uvicorn

    app, settings = app_for_run(
        run_dir, model_name=model_name, api_key_env=api_key_env, retrieval=retrieval, top_k=top_k,
        max_concurrency=max_concurrency, max_request_bytes=max_request_bytes, max_tokens_limit=max_tokens_limit,
    )
    if settings.api_key is None and not _is_loopback(host):
        print(f"warning: serving on {host} without an API key, so anyone who can reach it can use it; set {api_key_env}.", flush=True)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving model {settings.model_name!r} at http://{shown}:{port}/v1", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
