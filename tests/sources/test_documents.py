import pytest

from domainkd.errors import DomainKDError
from domainkd.sources import read_documents, split_sections


def test_split_sections_by_heading_with_offsets():
    text = "Intro line.\n# First\nAlpha beta.\n## Second\nGamma delta.\n"
    sections = split_sections("doc.md", text)
    assert [s.title for s in sections] == ["doc", "First", "Second"]
    assert sections[1].text == "Alpha beta."
    assert text[sections[2].start :].startswith("## Second")


def test_heading_without_body_is_dropped():
    assert [s.title for s in split_sections("d.md", "# Empty\n# Full\nText here.\n")] == ["Full"]


def test_bad_files_are_skipped_with_named_warnings(tmp_path):
    (tmp_path / "good.md").write_text("# Good\nSome text.\n")
    (tmp_path / "empty.md").write_text("   \n")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "ignored.pdf").write_bytes(b"%PDF")
    with pytest.warns(UserWarning) as caught:
        sections = read_documents(tmp_path)
    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        "skipped document binary.txt: binary content",
        "skipped document empty.md: empty",
        "skipped document latin1.txt: not UTF-8 text",
    ]
    assert [s.document for s in sections] == ["good.md"]


def test_missing_folder(tmp_path):
    with pytest.raises(DomainKDError, match="does not exist"):
        read_documents(tmp_path / "missing")


def test_folder_without_text(tmp_path):
    (tmp_path / "empty.md").write_text("")
    with pytest.warns(UserWarning), pytest.raises(DomainKDError, match="has no readable .md or .txt text"):
        read_documents(tmp_path)
