"""Small file helpers: atomic writes so a killed job never leaves a half-written file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from domainkd.errors import DomainKDError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes it private; give it the mode open() would
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it onto ``path`` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp_dir.chmod(0o755)  # mkdtemp makes it private; a cache or run directory should not be
    try:
        yield tmp_dir
        if path.exists():
            _swap(tmp_dir, path)  # tmp_dir now holds the old contents, removed below
        else:
            os.replace(tmp_dir, path)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)


_RENAME_EXCHANGE = 2  # linux/fs.h


def _swap(new: Path, path: Path) -> None:
    """Exchange two directories in one step, so a kill at any moment leaves ``path`` whole, old or new.

    Linux's renameat2(RENAME_EXCHANGE) swaps them atomically. Elsewhere (or on a filesystem that
    lacks it) the old one is first renamed aside, which leaves an instant with neither at ``path``.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        exchanged = libc.renameat2(-100, os.fsencode(new), -100, os.fsencode(path), _RENAME_EXCHANGE) == 0  # AT_FDCWD
    except (OSError, AttributeError):
        exchanged = False
    if not exchanged:
        aside = new.with_name(new.name + ".old")
        os.replace(path, aside)
        os.replace(new, path)
        os.replace(aside, new)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` as JSON Lines atomically; return how many were written."""
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def json_sha256(obj: Any) -> str:
    """Hex sha256 of ``obj`` as key-sorted JSON: a fingerprint of settings and inputs."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON Lines file, raising one clear sentence for a missing file or a bad line."""
    if not path.is_file():
        raise DomainKDError(f"{path} does not exist; check the path or run the stage that writes it.")
    return parse_jsonl(path, decode_utf8(path, path.read_bytes()))


def parse_jsonl(path: Path, text: str) -> list[dict[str, Any]]:
    """The rows of JSON Lines ``text`` read from ``path``; a bad line is one sentence naming it."""
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: a JSON string may hold U+2028
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DomainKDError(
                f"{path} line {number} is not valid JSON ({error.msg}); fix or remove that line."
            ) from None
        if not isinstance(row, dict):
            raise DomainKDError(f"{path} line {number} is not a JSON object; each line must be one {{...}} row.")
        rows.append(row)
    return rows


def decode_utf8(path: Path, raw: bytes) -> str:
    """``raw`` (the bytes of ``path``) as UTF-8 text, a leading byte-order mark dropped; one sentence when it is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DomainKDError(
            f"{path} is not UTF-8 text (byte {error.start} on line {line}); save it as UTF-8 (e.g. `iconv -f latin1 "
            f"-t utf-8`) and rerun."
        ) from None
