"""Every YAML snippet of the documentation parses, and every config fragment in it is a valid config.

A snippet is a partial config: it is deep-merged into a minimal valid config and validated by the
same function that validates a config file (`config_from_dict`, strict pydantic models that reject
unknown keys and bad values, strategy parameters included), so a misspelled key in the docs fails
here. A snippet that is not meant as a config is listed in NOT_CONFIG with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from domainkd.config import RunConfig, UniqueKeyLoader, config_from_dict, deep_merge
from domainkd.errors import DomainKDError

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]

MINIMAL: dict[str, Any] = {"name": "docs", "data": {"documents": "docs"}, "eval": {"questions": "eval.jsonl"}}
"""The smallest config a user writes (the README's own-documents step); every other value is a default.

A fuller base (the handbook config) would make correct snippets fail: its `train.detach_excerpts`
refuses any `train.kd`, and its strategies would be merged with a snippet's instead of replaced by
them as they are in a real file."""

NOT_CONFIG: dict[tuple[str, str], str] = {}
"""(page relative to the repository, a line found in exactly one of its snippets) -> why that snippet is not
a config fragment. Empty: every YAML snippet of the docs is a config fragment today."""

_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int  # of the opening fence, 1-based
    text: str

    def has_line(self, wanted: str) -> bool:
        return any(line.strip() == wanted.strip() for line in self.text.splitlines())


def _excluded(snippet: Snippet) -> bool:
    return any(page == snippet.page and snippet.has_line(line) for page, line in NOT_CONFIG)


def _yaml_snippets(path: Path) -> list[Snippet]:
    """The ```yaml blocks of a Markdown page, dedented (blocks inside list items are indented)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    snippets, index = [], 0
    while index < len(lines):
        opening = _OPEN.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = (opening["info"].split() or [""])[0].lower()
        body, index = [], index + 1
        start = index
        while index < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[index]):
            body.append(lines[index][len(indent):] if lines[index].startswith(indent) else lines[index].lstrip())
            index += 1
        index += 1  # the closing fence
        if language in ("yaml", "yml"):
            snippets.append(Snippet(str(path.relative_to(REPO)), start, "\n".join(body) + "\n"))
    return snippets


SNIPPETS = [snippet for page in PAGES if page.is_file() for snippet in _yaml_snippets(page)]


def validate_fragment(fragment: dict[str, Any], source: str = "snippet") -> RunConfig:
    """The fragment merged into MINIMAL, validated as a config file's contents are."""
    return config_from_dict(deep_merge(MINIMAL, fragment), source=source)


def test_the_pages_have_snippets():
    assert (REPO / "README.md").is_file()
    assert len(SNIPPETS) >= 10, [f"{snippet.page}:{snippet.line}" for snippet in SNIPPETS]


def test_the_minimal_config_is_valid():
    assert validate_fragment({}).name == "docs"


@pytest.mark.parametrize(
    "fragment",
    [
        {"train": {"epoch": 1}},
        {"teacher": {"bach_size": 4}},
        {"data": {"strategies": {"context_qa": {"questions_per_fakt": 2}}}},
        {"compare": {"strategies": {"rag": {"model": "base_student", "retreival": "bm25"}}}},
        {"rebase": {"datastore": "store"}},
    ],
)
def test_a_misspelled_key_fails(fragment):
    with pytest.raises(DomainKDError, match="unknown key|has no parameter"):
        validate_fragment(fragment)


def test_every_exclusion_names_one_snippet():
    for page, line in NOT_CONFIG:
        matches = [snippet for snippet in SNIPPETS if snippet.page == page and snippet.has_line(line)]
        assert len(matches) == 1, f"{page}: {line!r} matches {len(matches)} snippets; name a line of exactly one"


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda snippet: f"{snippet.page}:{snippet.line}")
def test_snippet(snippet):
    try:
        value = yaml.load(snippet.text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as error:
        pytest.fail(f"{snippet.page}:{snippet.line}: not valid YAML: {error}")
    if _excluded(snippet):
        return
    assert isinstance(value, dict), f"{snippet.page}:{snippet.line}: a config fragment is a mapping of sections"
    try:
        validate_fragment(value, source=f"{snippet.page}:{snippet.line}")
    except DomainKDError as error:
        pytest.fail(str(error))
