import pytest

from domainkd.errors import DomainKDError
from domainkd.sources import load_sources


def test_chunks_from_an_older_version_name_the_fix(tmp_path):
    (tmp_path / "chunks.jsonl").write_text('{"id": "a#0", "document": "a.md", "title": "A", "text": "x", "start": 0}\n')
    with pytest.raises(DomainKDError, match="older version of domainkd; run `domainkd data CONFIG` again"):
        load_sources(tmp_path)
