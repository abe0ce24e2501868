"""Loading a trained run into the server app, and running it with uvicorn (``domainkd serve``)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import torch
from fastapi import FastAPI

from domainkd.config import RetrievalChoice, RunConfig, ServeConfig, load_config
from domainkd.errors import DomainKDError
from domainkd.models import load_causal_lm
from domainkd.paths import RunPaths
from domainkd.serving.completion import Retrieval
from domainkd.serving.server import ServerSettings, create_app


def app_for_run(run_dir: Path, serve_config: ServeConfig | None = None) -> tuple[FastAPI, ServerSettings]:
    """Load a trained run (its config, ``train/model``, optionally its retriever) into an app.

    Args:
        run_dir: The run directory (holds config.yaml and train/model).
        serve_config: How to serve it; None uses the run's ``serve`` section.

    Raises:
        DomainKDError: missing run, config or model (one sentence).
    """
    config, paths = load_run(run_dir)
    serve_config = serve_config or config.serve
    settings = ServerSettings(
        model_name=serve_config.model_name or config.name, system_prompt=config.system_prompt,
        api_key=os.environ.get(serve_config.api_key_env) or None, max_concurrency=serve_config.max_concurrency,
        max_request_bytes=serve_config.max_request_bytes, max_tokens_limit=serve_config.max_tokens_limit,
    )
    chunk_retrieval = open_retrieval(config, paths, serve_config.retrieval, serve_config.top_k)
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


def open_retrieval(config: RunConfig, paths: RunPaths, method: RetrievalChoice, top_k: int | None) -> Retrieval | None:
    """The run's chunk retriever for ``method`` (checked by :class:`ServeConfig`), or None for ``none``."""
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


def serve(run_dir: Path, serve_config: ServeConfig | None = None) -> None:
    """Load a trained run and serve it on ``serve_config``'s host and port until interrupted.

    Args:
        run_dir: The run directory (holds config.yaml and train/model).
        serve_config: How to serve it; None uses the run's ``serve`` section.
    """
    import uvicorn

    serve_config = serve_config or load_run(run_dir)[0].serve
    app, settings = app_for_run(run_dir, serve_config)
    host, port = serve_config.host, serve_config.port
    if settings.api_key is None and not _is_loopback(host):
        print(
            f"warning: serving on {host} without an API key, so anyone who can reach it can use it; "
            f"set {serve_config.api_key_env}.", flush=True,
        )
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
