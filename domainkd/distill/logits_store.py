"""Offline teacher top-k: record once, read per example during training without the teacher.

A store is a directory of flat files, one row per response token, examples back to back:

- ``meta.json``: format version, ``k``, ``vocab_size``, ``bits``, ``temperature``, the caller's
  ``fingerprint`` (teacher identity, training-set hash, ...), ``examples_done``, ``tokens_done``.
  It is replaced atomically after the data files are synced, so it only ever describes
  fully written examples; bytes past what it describes are leftovers of a killed writer.
- ``ids.bin``: token ids bit-packed at ``bits = ceil(log2 V)`` each, ``ceil(k·bits/8)`` bytes a row.
- ``logprobs.f16``: ``(tokens, k)`` float16 log-probabilities at ``temperature``, descending.
- ``log_tail.f16``: ``(tokens,)`` float16 log of the mass outside the top k (``-inf`` when
  ``k = V``); the log, because the mass itself underflows to 0 in float16.
- ``tail_ids.bin`` and ``tail_entropy.f16``: only when ``tail_samples > 0``: ``tail_samples`` ids per
  token drawn from the teacher's distribution over the tokens outside its top k (packed like
  ``ids.bin``), and that distribution's entropy; together they make the top-k forward KL
  unbiased (:func:`domainkd.distill.losses.tail_correction`) for ``2 + tail_samples·bits/8`` more bytes.
- ``offsets.i64``: ``(examples_done + 1,)`` cumulative token counts; example ``i`` is rows
  ``offsets[i]:offsets[i + 1]``.
- ``hidden.f16``: only when ``hidden_size > 0``: ``(tokens, hidden_size)`` float16, the teacher's
  last hidden state (after its final norm) at each position, for losses that project between
  hidden spaces (DSKD). With the teacher's output head (:func:`save_teacher_head`) it also gives
  the teacher's full logits back, up to float16 rounding.

Response tokens follow the causal-LM convention of :mod:`domainkd.training.collate`: token
``t`` (``labels[t] != -100``, ``t ≥ 1``) gets the teacher's distribution from ``logits[t - 1]``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from domainkd.distill.losses import IGNORE_INDEX, sample_tail, topk_from_logits
from domainkd.errors import DomainKDError
from domainkd.io import atomic_path, write_json
from domainkd.models import plain_head

FORMAT_VERSION = 3
META, IDS, LOGPROBS, LOG_TAIL, OFFSETS = "meta.json", "ids.bin", "logprobs.f16", "log_tail.f16", "offsets.i64"
HIDDEN, TEACHER_HEAD, TAIL_IDS, TAIL_ENTROPY = "hidden.f16", "teacher_head.safetensors", "tail_ids.bin", "tail_entropy.f16"
DATA_FILES = (IDS, LOGPROBS, LOG_TAIL, OFFSETS, HIDDEN, TAIL_IDS, TAIL_ENTROPY)
_MATCHED_KEYS = ("format_version", "k", "vocab_size", "bits", "temperature", "hidden_size", "tail_samples", "fingerprint")  # to resume
_META_KEYS = (*_MATCHED_KEYS, "examples_done", "tokens_done")


# --- sizes and bit packing -----------------------------------------------------------


def id_bits(vocab_size: int) -> int:
    """Bits per packed token id: ``max(1, ceil(log2(vocab_size)))``, in exact integer arithmetic."""
    return max(1, (vocab_size - 1).bit_length())


def _row_bytes(k: int, vocab_size: int) -> int:
    return math.ceil(k * id_bits(vocab_size) / 8)


def bytes_per_token(k: int, vocab_size: int, tail_samples: int = 0) -> int:
    """Store bytes per response token: packed ids + ``k`` float16 log-probs + one float16 log tail
    (+ packed tail samples and one float16 tail entropy when ``tail_samples > 0``)."""
    tail = _row_bytes(tail_samples, vocab_size) + 2 if tail_samples else 0
    return _row_bytes(k, vocab_size) + 2 * k + 2 + tail


def pack_ids(ids: np.ndarray, bits: int) -> np.ndarray:
    """Bit-pack token ids, least significant bit first.

    Args:
        ids: ``(n, k)`` integers in ``[0, 2**bits)``, ``bits ≤ 32``.

    Returns:
        ``(n, ceil(k·bits/8))`` uint8, one fixed-width row per token.
    """
    n, k = ids.shape
    as_bytes = np.ascontiguousarray(ids, dtype="<u4").view(np.uint8).reshape(n, k, 4)
    low_bits = np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :bits]  # (n, k, bits)
    return np.packbits(low_bits.reshape(n, k * bits), axis=-1, bitorder="little")


def unpack_ids(packed: np.ndarray, k: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_ids`: ``(n, row_bytes)`` uint8 → ``(n, k)`` int64."""
    n = len(packed)
    low_bits = np.unpackbits(packed, axis=-1, count=k * bits, bitorder="little").reshape(n, k, bits)
    all_bits = np.pad(low_bits, ((0, 0), (0, 0), (0, 32 - bits)))  # (n, k, 32)
    return np.packbits(all_bits, axis=-1, bitorder="little").view("<u4")[..., 0].astype(np.int64)


# --- layout shared by writer and reader ----------------------------------------------


def _new_meta(
    k: int, vocab_size: int, temperature: float, fingerprint: dict[str, Any], hidden_size: int = 0, tail_samples: int = 0
) -> dict[str, Any]:
    if not 1 <= k <= vocab_size:
        raise ValueError(f"k must lie in [1, {vocab_size}] (the vocabulary size), got {k}.")
    if not 2 <= vocab_size <= 2**32:
        raise ValueError(f"vocab_size must lie in [2, 2**32], got {vocab_size}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    if hidden_size < 0:
        raise ValueError(f"hidden_size must be ≥ 0 (0: no hidden states), got {hidden_size}.")
    if tail_samples < 0:
        raise ValueError(f"tail_samples must be ≥ 0 (0: none), got {tail_samples}.")
    return {
        "format_version": FORMAT_VERSION,
        "k": k,
        "vocab_size": vocab_size,
        "bits": id_bits(vocab_size),
        "temperature": float(temperature),
        "hidden_size": hidden_size,
        "tail_samples": tail_samples,
        "fingerprint": json.loads(json.dumps(fingerprint)),  # as it reads back from meta.json
        "examples_done": 0,
        "tokens_done": 0,
    }


def _expected_sizes(meta: dict[str, Any]) -> dict[str, int]:
    """Bytes each data file holds for the examples ``meta`` describes."""
    tokens, k, samples = meta["tokens_done"], meta["k"], meta["tail_samples"]
    return {
        TAIL_IDS: tokens * _row_bytes(samples, meta["vocab_size"]),
        TAIL_ENTROPY: tokens * 2 * bool(samples),
        IDS: tokens * _row_bytes(k, meta["vocab_size"]),
        LOGPROBS: tokens * k * 2,
        LOG_TAIL: tokens * 2,
        OFFSETS: (meta["examples_done"] + 1) * 8,
        HIDDEN: tokens * meta["hidden_size"] * 2,
    }


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META
    if not path.is_file():
        raise DomainKDError(
            f"{directory} is not a top-k logits store ({META} is missing); record the teacher's top-k there first."
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or not set(_META_KEYS) <= meta.keys():
        raise DomainKDError(
            f"{path} is not a valid store description; delete {directory} and record the teacher's top-k again."
        )
    if meta["format_version"] != FORMAT_VERSION:
        raise DomainKDError(
            f"{directory} has store format {meta['format_version']!r}, this code reads {FORMAT_VERSION}; "
            "delete it and record the teacher's top-k again."
        )
    return meta


def _check_sizes(directory: Path, meta: dict[str, Any]) -> None:
    """Raise if a data file is shorter than ``meta`` says (longer is a killed writer's leftover)."""
    for name, size in _expected_sizes(meta).items():
        actual = (directory / name).stat().st_size if (directory / name).exists() else -1
        if actual < size:
            raise DomainKDError(
                f"{directory / name} holds {max(actual, 0)} bytes but {META} describes {size}: the store is "
                "incomplete or corrupt; delete the directory and record the teacher's top-k again."
            )


def _to_numpy(values: Tensor | np.ndarray) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)


# --- writer --------------------------------------------------------------------------


class TopKStoreWriter:
    """Append examples' teacher top-k to a store directory, resuming a matching earlier run.

    Opening a directory whose ``meta.json`` has the same ``k``, ``vocab_size``,
    ``temperature`` and ``fingerprint`` resumes it: the data files are cut back to what the
    meta describes and :attr:`examples_done` says where to continue. Other inputs raise a
    :class:`DomainKDError` unless ``reset=True``, which wipes the directory first.

    Use as a context manager (closing flushes), or call :meth:`append`, :meth:`flush` and
    :meth:`close` yourself. Appended examples count in ``meta.json`` only once flushed.

    Args:
        directory: the store directory (created if missing).
        k: top-k size, in ``[1, vocab_size]``.
        vocab_size: the teacher's logits dimension.
        temperature: the temperature the log-probabilities are recorded at.
        fingerprint: JSON-serialisable identity of the inputs (teacher, training-set hash, ...).
        hidden_size: the teacher's hidden size to also store its last hidden states; 0: none.
        tail_samples: ids drawn from the teacher's tail to keep per token (with its entropy); 0: none.
        flush_every: flush after this many appended examples.
        reset: wipe an existing directory instead of resuming it.
    """

    def __init__(
        self,
        directory: str | Path,
        k: int,
        vocab_size: int,
        temperature: float = 1.0,
        fingerprint: dict[str, Any] | None = None,
        flush_every: int = 64,
        reset: bool = False,
        hidden_size: int = 0,
        tail_samples: int = 0,
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be ≥ 1, got {flush_every}.")
        self.directory = Path(directory)
        self.flush_every = flush_every
        self.meta = _new_meta(k, vocab_size, temperature, fingerprint or {}, hidden_size, tail_samples)
        if reset and self.directory.exists():
            shutil.rmtree(self.directory)
        if (self.directory / META).is_file():
            self._resume()
        else:
            self._create()
        self._files = {name: (self.directory / name).open("ab") for name in DATA_FILES}
        self._unflushed = 0

    @property
    def examples_done(self) -> int:
        """Examples appended so far (flushed or not)."""
        return self.meta["examples_done"]

    def _create(self) -> None:
        # Data files without a meta are a writer killed before its first meta; dot files are temporaries.
        names = [path.name for path in self.directory.iterdir()] if self.directory.exists() else []
        if any(name not in (*DATA_FILES, TEACHER_HEAD) and not name.startswith(".") for name in names):
            raise DomainKDError(
                f"{self.directory} exists and is not a top-k logits store; delete it or choose another directory."
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in (IDS, LOGPROBS, LOG_TAIL, HIDDEN, TAIL_IDS, TAIL_ENTROPY):
            (self.directory / name).write_bytes(b"")
        (self.directory / OFFSETS).write_bytes(np.zeros(1, dtype="<i8").tobytes())
        write_json(self.directory / META, self.meta)  # last: until here, the directory counts as empty

    def _resume(self) -> None:
        stored = _read_meta(self.directory)
        differing = [key for key in _MATCHED_KEYS if stored[key] != self.meta[key]]
        if differing:
            raise DomainKDError(
                f"{self.directory} holds a top-k store written for other inputs (different {', '.join(differing)}); "
                "delete it, pass reset=True, or use a new run directory."
            )
        _check_sizes(self.directory, stored)
        for name, size in _expected_sizes(stored).items():
            os.truncate(self.directory / name, size)  # drop rows a killed writer left half-written
        self.meta = stored

    def append(
        self,
        ids: Tensor | np.ndarray,
        logprobs: Tensor | np.ndarray,
        log_tail: Tensor | np.ndarray,
        hidden: Tensor | np.ndarray | None = None,
        tail: tuple[Tensor | np.ndarray, Tensor | np.ndarray] | None = None,
    ) -> None:
        """Add one example's top-k (``n`` response tokens, ``n`` may be 0).

        Args:
            ids: ``(n, k)`` token ids in ``[0, vocab_size)``.
            logprobs: ``(n, k)`` log-probabilities.
            log_tail: ``(n,)`` log of the mass outside the ids.
            hidden: ``(n, hidden_size)`` the teacher's last hidden states; required exactly when
                the store has a ``hidden_size``.
            tail: ``(tail_ids (n, tail_samples), tail_entropy (n,))``; required exactly when the
                store has ``tail_samples``.
        """
        self._append_tail(len(ids), tail)
        ids, logprobs, log_tail = _to_numpy(ids), _to_numpy(logprobs), _to_numpy(log_tail)
        n, k = len(ids), self.meta["k"]
        if ids.shape != (n, k) or logprobs.shape != (n, k) or log_tail.shape != (n,):
            raise ValueError(
                f"expected shapes ({n}, {k}), ({n}, {k}), ({n},); got {ids.shape}, {logprobs.shape}, {log_tail.shape}."
            )
        hidden_size = self.meta["hidden_size"]
        if (hidden is None) != (hidden_size == 0):
            raise ValueError(f"this store keeps hidden states of size {hidden_size}; pass hidden exactly when > 0.")
        if hidden is not None:
            hidden = _to_numpy(hidden)
            if hidden.shape != (n, hidden_size):
                raise ValueError(f"expected hidden of shape ({n}, {hidden_size}), got {hidden.shape}.")
            self._files[HIDDEN].write(hidden.astype("<f2").tobytes())
        if n and not (0 <= ids.min() and ids.max() < self.meta["vocab_size"]):
            raise ValueError(f"token ids must lie in [0, {self.meta['vocab_size']}), got [{ids.min()}, {ids.max()}].")
        self._files[IDS].write(pack_ids(ids, self.meta["bits"]).tobytes())
        self._files[LOGPROBS].write(logprobs.astype("<f2").tobytes())
        self._files[LOG_TAIL].write(log_tail.astype("<f2").tobytes())
        self.meta["tokens_done"] += n
        self.meta["examples_done"] += 1
        self._files[OFFSETS].write(np.array([self.meta["tokens_done"]], dtype="<i8").tobytes())
        self._unflushed += 1
        if self._unflushed >= self.flush_every:
            self.flush()

    def _append_tail(self, n: int, tail: tuple[Tensor | np.ndarray, Tensor | np.ndarray] | None) -> None:
        samples = self.meta["tail_samples"]
        if (tail is None) != (samples == 0):
            raise ValueError(f"this store keeps {samples} tail samples per token; pass tail exactly when > 0.")
        if tail is None:
            return
        tail_ids, entropy = _to_numpy(tail[0]), _to_numpy(tail[1])
        if tail_ids.shape != (n, samples) or entropy.shape != (n,):
            raise ValueError(f"expected tail shapes ({n}, {samples}), ({n},); got {tail_ids.shape}, {entropy.shape}.")
        self._files[TAIL_IDS].write(pack_ids(tail_ids, self.meta["bits"]).tobytes())
        self._files[TAIL_ENTROPY].write(entropy.astype("<f2").tobytes())

    def flush(self) -> None:
        """Sync the data files to disk, then atomically record them in ``meta.json``."""
        for handle in self._files.values():
            handle.flush()
            os.fsync(handle.fileno())
        write_json(self.directory / META, self.meta)
        self._unflushed = 0

    def close(self) -> None:
        """Flush and close the files."""
        if not self._files:
            return
        self.flush()
        for handle in self._files.values():
            handle.close()
        self._files = {}

    def __enter__(self) -> TopKStoreWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- reader --------------------------------------------------------------------------


class TopKStore:
    """Read-only, memory-mapped view of a store: ``store[i]`` is example ``i``'s teacher top-k.

    Only what ``meta.json`` describes is read, so a store can be read while a writer appends.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.meta = _read_meta(self.directory)
        _check_sizes(self.directory, self.meta)
        k, tokens = self.meta["k"], self.meta["tokens_done"]
        self._offsets = np.fromfile(self.directory / OFFSETS, dtype="<i8", count=len(self) + 1)
        if self._offsets[0] != 0 or self._offsets[-1] != tokens or (np.diff(self._offsets) < 0).any():
            raise DomainKDError(
                f"{self.directory / OFFSETS} disagrees with {META}: the store is corrupt; "
                "delete the directory and record the teacher's top-k again."
            )
        row_bytes = _row_bytes(k, self.meta["vocab_size"])
        self._ids = self._map(IDS, np.uint8, (tokens, row_bytes))
        self._logprobs = self._map(LOGPROBS, "<f2", (tokens, k))
        self._log_tail = self._map(LOG_TAIL, "<f2", (tokens,))
        self._hidden = self._map(HIDDEN, "<f2", (tokens, self.meta["hidden_size"]))
        samples = self.meta["tail_samples"]
        self._tail_ids = self._map(TAIL_IDS, np.uint8, (tokens, _row_bytes(samples, self.meta["vocab_size"])))
        self._tail_entropy = self._map(TAIL_ENTROPY, "<f2", (tokens * bool(samples),))

    def _map(self, name: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        if math.prod(shape) == 0:  # numpy cannot map zero bytes
            return np.empty(shape, dtype=dtype)
        return np.memmap(self.directory / name, dtype=dtype, mode="r", shape=shape)

    @property
    def bytes_per_token(self) -> int:
        """Store bytes per response token (see :func:`bytes_per_token`)."""
        return bytes_per_token(self.meta["k"], self.meta["vocab_size"], self.meta["tail_samples"])

    def __len__(self) -> int:
        return self.meta["examples_done"]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        """Example ``index``'s ``ids (n, k)`` long, ``logprobs (n, k)`` and ``log_tail (n,)`` float32."""
        if not 0 <= index < len(self):
            raise IndexError(f"example {index} is out of range for a store of {len(self)} examples.")
        start, end = self._offsets[index], self._offsets[index + 1]
        ids = unpack_ids(np.asarray(self._ids[start:end]), self.meta["k"], self.meta["bits"])
        logprobs = self._logprobs[start:end].astype(np.float32)
        log_tail = self._log_tail[start:end].astype(np.float32)
        return torch.from_numpy(ids), torch.from_numpy(logprobs), torch.from_numpy(log_tail)

    def tail(self, index: int) -> tuple[Tensor, Tensor] | None:
        """Example ``index``'s ``tail_ids (n, tail_samples)`` long and ``tail_entropy (n,)`` float32; None if not kept."""
        if not self.meta["tail_samples"]:
            return None
        if not 0 <= index < len(self):
            raise IndexError(f"example {index} is out of range for a store of {len(self)} examples.")
        start, end = self._offsets[index], self._offsets[index + 1]
        tail_ids = unpack_ids(np.asarray(self._tail_ids[start:end]), self.meta["tail_samples"], self.meta["bits"])
        return torch.from_numpy(tail_ids), torch.from_numpy(self._tail_entropy[start:end].astype(np.float32))

    def hidden(self, index: int) -> Tensor:
        """Example ``index``'s teacher hidden states ``(n, hidden_size)`` float32 (the store must keep them)."""
        if not self.meta["hidden_size"]:
            raise DomainKDError(f"{self.directory} keeps no teacher hidden states; record it with a hidden_size.")
        if not 0 <= index < len(self):
            raise IndexError(f"example {index} is out of range for a store of {len(self)} examples.")
        start, end = self._offsets[index], self._offsets[index + 1]
        return torch.from_numpy(self._hidden[start:end].astype(np.float32))

    def teacher_head(self) -> dict[str, Tensor]:
        """The teacher's ``output`` head ``(V, d)`` and input ``embedding`` ``(V, d)`` saved with the store, float32."""
        path = self.directory / TEACHER_HEAD
        if not path.is_file():
            raise DomainKDError(f"{path} is missing; delete {self.directory} and record the teacher again.")
        weights = {name: tensor.float() for name, tensor in load_file(path).items()}
        return {"embedding": weights["output"], **weights}


def save_teacher_head(directory: str | Path, model: torch.nn.Module, vocab_size: int | None = None) -> None:
    """Save the teacher's output head and input embedding (first ``vocab_size`` rows) next to a store.

    Offline DSKD needs them to map hidden states to logits and tokens to embeddings. Float16,
    one matrix when the two are tied; written atomically; plain unbiased heads only.
    """
    head = model.get_output_embeddings()
    if getattr(head, "bias", None) is not None or not plain_head(model):
        raise DomainKDError(
            "the KD teacher's logits are not a plain projection of its hidden states (head bias, soft-capping or "
            "scaling), which offline DSKD needs; set train.kd.teacher_logits: online."
        )
    rows, embedding = slice(None, vocab_size), model.get_input_embeddings().weight
    weights = {"output": head.weight[rows].detach().to(torch.float16).cpu().clone()}
    if embedding.data_ptr() != head.weight.data_ptr():  # tied heads (SmolLM2, small Qwens) are stored once
        weights["embedding"] = embedding[rows].detach().to(torch.float16).cpu().clone()
    with atomic_path(Path(directory) / TEACHER_HEAD) as tmp:
        save_file(weights, str(tmp))


# --- recording -----------------------------------------------------------------------


def _right_pad(rows: list[list[int]], value: int) -> Tensor:
    return pad_sequence([torch.tensor(row, dtype=torch.long) for row in rows], batch_first=True, padding_value=value)


@torch.inference_mode()
def _teacher_topk_batch(
    model: torch.nn.Module,
    examples: Sequence[dict[str, Any]],
    k: int,
    temperature: float = 1.0,
    pad_token_id: int = 0,
    hidden: bool = False,
    tail_samples: int = 0,
    seeds: Sequence[int] = (),
) -> list[tuple[Tensor, ...]]:
    """The teacher's top-k at each example's response tokens, from one right-padded forward.

    Args:
        model: a Hugging Face causal LM (accepts ``logits_to_keep``).
        examples: dicts with ``input_ids`` and ``labels`` (``-100`` on the prompt, not shifted).
        k: top-k size.
        temperature: > 0, for the log-probabilities.
        pad_token_id: any valid id; padded positions are masked and never read.
        hidden: also return the last hidden states ``(n, d)``.
        tail_samples: also draw this many tail ids per token (:func:`sample_tail`), example ``i``
            with a generator seeded by ``seeds[i]``, so a resumed recording draws the same.

    Returns:
        Per example ``(ids (n, k), logprobs (n, k), log_tail (n,))`` as from :func:`topk_from_logits`,
        then ``hidden (n, d)`` when asked, then ``(tail_ids (n, m), tail_entropy (n,))`` when asked.
    """
    input_ids = _right_pad([example["input_ids"] for example in examples], pad_token_id)  # (B, T)
    labels = _right_pad([example["labels"] for example in examples], IGNORE_INDEX)  # (B, T)
    attention_mask = _right_pad([[1] * len(example["input_ids"]) for example in examples], 0)  # (B, T)
    predicts = labels[:, 1:] != IGNORE_INDEX  # (B, T-1): logits at t predict the response token at t+1
    counts = predicts.sum(1).tolist()
    rows, positions = predicts.nonzero(as_tuple=True)  # row-major: each example's tokens in order
    if len(rows) == 0:
        empty = (torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k), torch.zeros(0))
        empty += (torch.zeros(0, model.config.get_text_config().hidden_size),) if hidden else ()
        empty += ((torch.zeros(0, tail_samples, dtype=torch.long), torch.zeros(0)),) if tail_samples else ()
        return [empty] * len(examples)
    first = int(positions.min())  # no logits needed before the earliest response token of the batch
    device = model.device
    outputs = model(  # logits (B, T - first, V), freed as soon as the response rows are copied out
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        logits_to_keep=input_ids.shape[1] - first,
        output_hidden_states=hidden,
    )
    response_logits = outputs.logits[rows.to(device), (positions - first).to(device)]  # (N, V)
    top = topk_from_logits(response_logits, k, temperature)
    parts = [part.cpu() for part in top]
    if hidden:
        parts.append(outputs.hidden_states[-1][rows.to(device), positions.to(device)].float().cpu())  # (N, d)
    per_example = list(zip(*(part.split(counts) for part in parts)))
    if tail_samples:
        logits, ids, log_tail = (part.split(counts) for part in (response_logits, top[0], top[2]))
        for index, seed in enumerate(seeds):
            generator = torch.Generator(device=device).manual_seed(seed)
            tail = sample_tail(logits[index], ids[index], log_tail[index], tail_samples, temperature, generator)
            per_example[index] += (tuple(part.cpu() for part in tail),)
    del outputs
    return per_example


def record_teacher_topk(
    model: torch.nn.Module,
    examples: Sequence[dict[str, Any]],
    directory: str | Path,
    k: int,
    *,
    fingerprint: dict[str, Any],
    temperature: float = 1.0,
    batch_size: int = 8,
    pad_token_id: int = 0,
    flush_every: int = 64,
    progress: bool = True,
    hidden: bool = False,
    tail_samples: int = 0,
    seed: int = 0,
) -> TopKStore:
    """Record the teacher's top-k for every response token of ``examples`` into ``directory``.

    Resumes a store with the same ``k``, ``temperature``, vocabulary and ``fingerprint``,
    computing only the examples it lacks; ``examples`` must then be the same list (in order)
    the store was started on, which ``fingerprint`` should pin down (e.g. its sha256).

    Args:
        model: the teacher, a Hugging Face causal LM, in eval mode on its device.
        examples: dicts with ``input_ids`` and ``labels``, as from ``tokenize_example``.
        directory: the store directory.
        k: top-k size, in ``[1, V]``.
        fingerprint: JSON-serialisable identity of teacher and data, checked on resume.
        temperature: > 0, for the recorded log-probabilities.
        batch_size: examples per teacher forward.
        pad_token_id: any valid id; padded positions are masked and never read.
        flush_every: examples between durable checkpoints of the store.
        progress: show a progress bar.
        hidden: also keep the teacher's last hidden states (and save its output head and
            embedding, :func:`save_teacher_head`), as DSKD needs.
        tail_samples: also keep this many ids drawn from the teacher's tail per token, and the
            tail's entropy, for an unbiased top-k forward KL; 0: none.
        seed: seeds the tail draws (example ``i`` draws from ``seed`` and ``i``).

    Returns:
        The finished store, opened for reading.
    """
    vocab_size = model.get_output_embeddings().weight.shape[0]
    hidden_size = model.config.get_text_config().hidden_size if hidden else 0
    with TopKStoreWriter(
        directory, k, vocab_size, temperature, fingerprint, flush_every, hidden_size=hidden_size, tail_samples=tail_samples
    ) as writer:
        if writer.examples_done > len(examples):
            raise DomainKDError(
                f"{directory} already holds {writer.examples_done} examples but only {len(examples)} were given; "
                "pass the full training set or record into a new directory."
            )
        if hidden:
            save_teacher_head(directory, model)  # before any example: a finished store always has its head
        todo = examples[writer.examples_done :]
        with tqdm(total=len(todo), desc="teacher top-k", unit="example", disable=not progress or not todo) as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                first = writer.examples_done
                seeds = [seed * 1_000_003 + first + offset for offset in range(len(batch))]
                for parts in _teacher_topk_batch(model, batch, k, temperature, pad_token_id, hidden, tail_samples, seeds):
                    writer.append(*parts[:3], hidden=parts[3] if hidden else None, tail=parts[-1] if tail_samples else None)
                bar.update(len(batch))
    return TopKStore(directory)
