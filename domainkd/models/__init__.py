"""Model references: known offline sources, sha256-verified conversion to a safetensors cache, loading."""

from domainkd.models.generation import generate_stream, generate_texts
from domainkd.models.cache import cache_dir, is_cached, resolve_model
from domainkd.models.loading import (
    chat_messages,
    keep_first_layers,
    load_causal_lm,
    load_tokenizer,
    native_on_cpu,
    plain_head,
    render_prompt,
    save_first_layers,
)
from domainkd.models.sources import KNOWN_MODELS, PackagedModel

__all__ = [
    "KNOWN_MODELS",
    "PackagedModel",
    "cache_dir",
    "chat_messages",
    "generate_stream",
    "generate_texts",
    "is_cached",
    "keep_first_layers",
    "load_causal_lm",
    "load_tokenizer",
    "native_on_cpu",
    "plain_head",
    "render_prompt",
    "resolve_model",
    "save_first_layers",
]
