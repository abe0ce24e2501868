import pytest

from domainkd.errors import DomainKDError
from domainkd.sources import read_documents, split_sections


def test_split_sections_by_heading_with_offsets():
    text = "Intro line.\n# First\nAlpha beta.\n## Second\nGamma delta.\n"
    sections = split_sections("doc.md", text)
    assert [s.title for s in sections] == ["doc", "First", "Second"]
    assert sections[1].text == "Alpha beta."
    assert all(text[s.start : s.start + len(s.text)] == s.text for s in sections)


def test_heading_without_body_is_dropped():
    assert [s.title for s in split_sections("d.md", "# Empty\n# Full\nText here.\n")] == ["Full"]


def test_bad_files_are_skipped_with_named_warnings(tmp_path):
    (tmp_path / "good.md").write_text("# Good\nSome text.\n")
    (tmp_path / "empty.md").write_text("   \n")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (tmp_path / "scripts.html").write_text("<html><script>var x = 1;</script></html>")
    (tmp_path / "ignored.docx").write_bytes(b"PK")
    skipped = {}
    with pytest.warns(UserWarning) as caught:
        sections = read_documents(tmp_path, skipped)
    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        "skipped document binary.txt: binary content",
        "skipped document broken.pdf: not a readable PDF (Stream has ended unexpectedly)",
        "skipped document empty.md: empty",
        "skipped document latin1.txt: not UTF-8 text",
        "skipped document scripts.html: no visible text",
    ]
    assert len(skipped) == 5
    assert [s.document for s in sections] == ["good.md"]


def test_oversized_file_is_skipped(tmp_path, monkeypatch):
    from domainkd.sources import documents

    monkeypatch.setitem(documents.MAX_DOCUMENT_BYTES, "text", 10)
    (tmp_path / "big.md").write_text("# Big\nThis text is longer than ten bytes.\n")
    (tmp_path / "ok.txt").write_text("short")
    with pytest.warns(UserWarning, match="skipped document big.md: larger than"):
        assert [s.document for s in read_documents(tmp_path)] == ["ok.txt"]


def test_html_headings_lists_and_tables_without_scripts_or_navigation(tmp_path):
    (tmp_path / "p.html").write_text(
        "<html><head><title>T</title><script>var a = 1;</script></head><body><nav>Home | About</nav>"
        "<h1>Parking &amp; Badges</h1><p>The car park opens at <b>06:40</b>.</p>"
        "<ul><li>Permits cost 85 euros</li><li>Issued by Tomas</li></ul>"
        "<table><tr><th>Item</th><th>Cost</th></tr><tr><td>Badge</td><td>15</td></tr></table>"
        "<h2>Security</h2><p>Report lost badges.</p><footer>(c) 2026</footer></body></html>",
        encoding="utf-8",
    )
    sections = read_documents(tmp_path)
    assert [s.title for s in sections] == ["Parking & Badges", "Security"]
    assert sections[0].text == "The car park opens at 06:40.\n- Permits cost 85 euros\n- Issued by Tomas\nItem | Cost\nBadge | 15"
    assert sections[1].text == "Report lost badges."
    assert not any("var a" in s.text or "Home" in s.text or "2026" in s.text for s in sections)


def test_pdf_pages_become_sections_with_offsets(tmp_path):
    from tests.sources.pdf import write_pdf

    write_pdf(tmp_path / "rules.pdf", [["Badge rules", "Lost badges cost 15 euros."], [], ["Parking opens at 06:40."]])
    sections = read_documents(tmp_path)
    assert [s.title for s in sections] == ["rules page 1", "rules page 3"]
    assert "Lost badges cost 15 euros." in sections[0].text
    assert sections[1].text == "Parking opens at 06:40."
    assert sections[1].start > sections[0].start + len(sections[0].text)


def test_pdf_without_text_is_skipped(tmp_path):
    from tests.sources.pdf import write_pdf

    write_pdf(tmp_path / "scan.pdf", [[]])
    (tmp_path / "ok.md").write_text("Some text.")
    with pytest.warns(UserWarning, match="scan.pdf: no extractable text"):
        read_documents(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DomainKDError, match="does not exist"):
        read_documents(tmp_path / "missing")


def test_folder_without_text(tmp_path):
    (tmp_path / "empty.md").write_text("")
    with pytest.warns(UserWarning), pytest.raises(DomainKDError, match="has no readable .md, .txt, .html or .pdf text"):
        read_documents(tmp_path)
