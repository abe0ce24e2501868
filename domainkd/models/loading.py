"""Load a causal LM and its tokenizer from any model reference, and render chat prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from domainkd.errors import DomainKDError
from domainkd.io import atomic_dir
from domainkd.models.cache import resolve_model

# Used only for base models without a chat template (e.g. Gemma-3 base).
_PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}Question: {{ message['content'] }}\n"
    "{% else %}Answer: {{ message['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Answer:{% endif %}"
)


def load_tokenizer(reference: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Tokenizer for ``reference`` with a pad token and a chat template always set."""
    directory = resolve_model(str(reference))
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = _PLAIN_TEMPLATE
    return tokenizer


def load_causal_lm(
    reference: str | Path, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load model and tokenizer (safetensors only) from a reference, converting it once if needed."""
    directory = resolve_model(str(reference))
    model = AutoModelForCausalLM.from_pretrained(
        directory, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    model.eval()
    return model, load_tokenizer(directory, trust_remote_code=trust_remote_code)


def chat_messages(system_prompt: str | None, user: str, assistant: str | None = None) -> list[dict[str, str]]:
    """The message list for one exchange (system prompt optional)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": user})
    if assistant is not None:
        messages.append({"role": "assistant", "content": assistant})
    return messages


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """Render messages up to the start of the assistant's turn, as the model was trained to see them."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


_HEAD_ADJUSTMENTS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def plain_head(model: Any) -> bool:
    """Whether ``model``'s logits are exactly its output embedding applied to its decoder's last hidden state."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _HEAD_ADJUSTMENTS):
        return False
    try:
        return model.get_decoder() is not None and model.get_output_embeddings() is not None
    except (AttributeError, NotImplementedError):
        return False


def keep_first_layers(model: PreTrainedModel, layers: int) -> PreTrainedModel:
    """Cut a decoder-only model to its first ``layers`` decoder layers, in place (config included).

    The usual way to get a smaller student with the teacher's vocabulary (layer dropping, as
    in DistilBERT-style initialisation).
    """
    decoder = model.get_decoder()
    if not hasattr(decoder, "layers") or layers > len(decoder.layers):
        total = len(decoder.layers) if hasattr(decoder, "layers") else "no"
        raise DomainKDError(f"the model has {total} decoder layers, so it cannot keep {layers}; choose fewer.")
    decoder.layers = decoder.layers[:layers]
    text_config = model.config.get_text_config()
    text_config.num_hidden_layers = layers
    if getattr(text_config, "layer_types", None):
        text_config.layer_types = text_config.layer_types[:layers]
    return model


def save_first_layers(reference: str | Path, layers: int, directory: Path, trust_remote_code: bool = False) -> Path:
    """Save a copy of a decoder-only model that keeps only its first ``layers`` decoder layers.

    Written once, atomically, with ``source.json`` naming what it was cut from; an existing
    copy is reused only if it was cut from the same model (see :func:`keep_first_layers`).
    """
    source = {"reference": str(reference), "resolved": str(resolve_model(str(reference))), "layers": layers}
    recorded = directory / "source.json"
    if recorded.is_file() and json.loads(recorded.read_text(encoding="utf-8")) == source:
        return directory
    model, tokenizer = load_causal_lm(reference, trust_remote_code=trust_remote_code)
    keep_first_layers(model, layers)
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps(source), encoding="utf-8")
    return directory


def native_on_cpu(dtype: torch.dtype) -> bool | None:
    """Whether this CPU computes in ``dtype`` natively (bf16: AVX512-BF16 or AMX; fp16: AMX-FP16).

    None when this torch cannot tell.
    """
    if dtype == torch.float32:
        return True
    names = {
        torch.bfloat16: ("_is_avx512_bf16_supported", "_is_amx_tile_supported"),
        torch.float16: ("_is_amx_fp16_supported",),
    }
    probes = [getattr(torch.cpu, name, None) for name in names[dtype]]
    probes = [probe for probe in probes if probe is not None]
    return any(probe() for probe in probes) if probes else None
