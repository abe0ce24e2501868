"""Read a folder of domain documents (text, Markdown, HTML, PDF) into sections, with clear errors for unusable input.

HTML is turned into Markdown-like text (headings kept as ``#`` lines, list items as ``-``),
PDF into its pages' text; character offsets of sections and chunks refer to that text.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from domainkd.errors import DomainKDError

TEXT_SUFFIXES = {".md", ".markdown", ".txt"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
DOCUMENT_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
MAX_DOCUMENT_BYTES = {"text": 5_000_000, "html": 20_000_000, "pdf": 100_000_000}
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Section:
    """A titled part of one document; ``start`` is the character offset of ``text`` in the document's text."""

    document: str
    title: str
    text: str
    start: int


def read_documents(folder: Path, skipped: dict[str, str] | None = None) -> list[Section]:
    """Every section of every document under ``folder`` (sorted by path).

    Empty, binary, non-UTF-8, unreadable and oversized files are skipped, each with a named
    warning; ``skipped`` (if given) receives file name → reason for counting.

    Raises:
        DomainKDError: the folder is missing or yields no usable text.
    """
    if not folder.is_dir():
        raise DomainKDError(f"document folder {folder} does not exist; set data.documents to a folder of documents.")
    sections = []
    for path in folder_files(folder, DOCUMENT_SUFFIXES, skipped):
        name = path.relative_to(folder).as_posix()
        found, problem = _read_sections(path, name)
        if problem:
            warnings.warn(f"skipped document {name}: {problem}", stacklevel=2)
            if skipped is not None:
                skipped[name] = problem
        sections += found
    if not sections:
        raise DomainKDError(
            f"document folder {folder} has no readable .md, .txt, .html or .pdf text; add documents there or point data.documents elsewhere."
        )
    return sections


def folder_files(folder: Path, suffixes: set[str], skipped: dict[str, str] | None = None) -> list[Path]:
    """The files under ``folder`` with one of ``suffixes``, sorted, none from outside it.

    The rule for links: a symlinked file is read when its target lies inside ``folder`` and
    skipped, with a warning naming it, when the target is elsewhere (a link to /etc/passwd puts
    nothing in the chunks); a symlinked folder is never searched, with a warning, so every file
    read is one of the folder's own. ``skipped`` (if given) receives name → reason.
    """
    root = folder.resolve()
    files = []
    for directory, folders, names in os.walk(folder, followlinks=False):
        base = Path(directory)
        for linked in sorted(name for name in folders if (base / name).is_symlink()):
            _skip(skipped, (base / linked).relative_to(folder).as_posix(), "a symbolic link to a folder, which is not followed")
        for name in names:
            path = base / name
            if path.suffix.lower() not in suffixes or not path.is_file():
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                _skip(skipped, path.relative_to(folder).as_posix(), f"a symbolic link to {path.resolve()}, outside {folder}")
                continue
            files.append(path)
    return sorted(files)


def _skip(skipped: dict[str, str] | None, name: str, problem: str) -> None:
    warnings.warn(f"skipped {name}: {problem}", stacklevel=3)
    if skipped is not None:
        skipped[name] = problem


def _read_sections(path: Path, name: str) -> tuple[list[Section], str | None]:
    suffix = path.suffix.lower()
    kind = "pdf" if suffix in PDF_SUFFIXES else "html" if suffix in HTML_SUFFIXES else "text"
    if path.stat().st_size > MAX_DOCUMENT_BYTES[kind]:
        return [], f"larger than {MAX_DOCUMENT_BYTES[kind] // 1_000_000} MB"
    if kind == "pdf":
        return _pdf_sections(path, name)
    raw = path.read_bytes()
    text, problem = _decode(raw)
    if problem:
        return [], problem
    if kind == "html":
        text = html_to_text(text)
        if not text.strip():
            return [], "no visible text"
    sections = split_sections(name, text)
    return (sections, None) if sections else ([], "only headings, no text under them")


def _decode(raw: bytes) -> tuple[str, str | None]:
    if b"\x00" in raw[:8192]:
        return "", "binary content"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "", "not UTF-8 text"
    if not text.strip():
        return "", "empty"
    return text, None


def split_sections(document: str, text: str) -> list[Section]:
    """Split Markdown at headings; text before the first heading is titled by the file name."""
    sections: list[Section] = []
    title, body_start, offset = Path(document).stem, 0, 0
    for line in text.splitlines(keepends=True):
        match = _HEADING.match(line.strip())
        if match:
            _append(sections, document, title, text[body_start:offset], body_start)
            title, body_start = match.group(2), offset + len(line)
        offset += len(line)
    _append(sections, document, title, text[body_start:], body_start)
    return sections


def _append(sections: list[Section], document: str, title: str, body: str, start: int) -> None:
    stripped = body.strip()
    if stripped:
        sections.append(Section(document=document, title=title, text=stripped, start=start + body.index(stripped[0])))


def _pdf_sections(path: Path, name: str) -> tuple[list[Section], str | None]:
    """One section per page with text, titled "<file> page N"; offsets index the pages' text joined by blank lines."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            return [], "encrypted PDF"
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, OSError) as error:
        return [], f"not a readable PDF ({str(error).strip() or type(error).__name__})"
    sections, offset = [], 0
    for number, page in enumerate(pages, start=1):
        _append(sections, name, f"{Path(name).stem} page {number}", page, offset)
        offset += len(page) + 2
    if not sections:
        return [], "no extractable text (a scanned PDF needs OCR first)"
    return sections, None


_SKIPPED_TAGS = {"script", "style", "noscript", "template", "head", "nav", "footer", "svg"}
_BLOCK_TAGS = {"p", "div", "section", "article", "main", "br", "tr", "table", "ul", "ol", "dl", "dt", "dd", "pre", "blockquote", "hr"}


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page, as Markdown-like lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skipping = 0
        self.heading = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._break()
            self.heading = int(tag[1])
        elif tag == "li":
            self._break()
            self.current.append("- ")
        elif tag in ("td", "th") and self.current:
            self.current.append(" | ")
        elif tag in _BLOCK_TAGS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in _BLOCK_TAGS or tag == "li":
            self._break()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.current.append(data)

    def _break(self) -> None:
        line = " ".join("".join(self.current).split())
        if line and line != "-":
            self.lines.append(f"{'#' * self.heading} {line}" if self.heading else line)
            if self.heading:
                self.lines.append("")
        self.current, self.heading = [], 0


def html_to_text(html: str) -> str:
    """Visible text of ``html``: headings as ``#`` lines, list items as ``- `` lines, scripts and navigation dropped."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    extractor._break()
    return "\n".join(extractor.lines).strip() + "\n"
