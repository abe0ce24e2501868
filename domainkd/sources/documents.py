"""Read a folder of domain documents into sections, with clear errors for unusable input."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from domainkd.errors import DomainKDError

TEXT_SUFFIXES = {".md", ".markdown", ".txt"}
MAX_DOCUMENT_BYTES = 5_000_000
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Section:
    """A titled part of one document; ``start`` is its character offset in the file."""

    document: str
    title: str
    text: str
    start: int


def read_documents(folder: Path) -> list[Section]:
    """Every section of every text/Markdown file under ``folder`` (sorted by path).

    Empty, binary, non-UTF-8 and oversized files are skipped with a named warning.

    Raises:
        DomainKDError: the folder is missing or yields no usable text.
    """
    if not folder.is_dir():
        raise DomainKDError(f"document folder {folder} does not exist; set data.documents to a folder of .md or .txt files.")
    files = sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES)
    sections = [section for path in files for section in _read_sections(path, folder)]
    if not sections:
        raise DomainKDError(
            f"document folder {folder} has no readable .md or .txt text; add documents there or point data.documents elsewhere."
        )
    return sections


def _read_sections(path: Path, root: Path) -> list[Section]:
    name = path.relative_to(root).as_posix()
    raw = path.read_bytes()
    problem = _problem(raw)
    if problem:
        warnings.warn(f"skipped document {name}: {problem}", stacklevel=2)
        return []
    return split_sections(name, raw.decode("utf-8"))


def _problem(raw: bytes) -> str | None:
    if len(raw) > MAX_DOCUMENT_BYTES:
        return f"larger than {MAX_DOCUMENT_BYTES // 1_000_000} MB"
    if b"\x00" in raw[:8192]:
        return "binary content"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    if not text.strip():
        return "empty"
    return None


def split_sections(document: str, text: str) -> list[Section]:
    """Split Markdown at headings; text before the first heading is titled by the file name."""
    sections: list[Section] = []
    title, start, body_lines = Path(document).stem, 0, []
    offset = 0
    for line in text.splitlines(keepends=True):
        match = _HEADING.match(line.strip())
        if match:
            _append(sections, document, title, body_lines, start)
            title, start, body_lines = match.group(2), offset, []
        else:
            body_lines.append(line)
        offset += len(line)
    _append(sections, document, title, body_lines, start)
    return sections


def _append(sections: list[Section], document: str, title: str, lines: list[str], start: int) -> None:
    body = "".join(lines).strip()
    if body:
        sections.append(Section(document=document, title=title, text=body, start=start))
