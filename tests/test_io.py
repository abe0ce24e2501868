import os

import pytest

from domainkd.io import atomic_path, read_jsonl, write_json, write_jsonl


def test_atomic_files_get_the_usual_mode(tmp_path):
    write_json(tmp_path / "summary.json", {"a": 1})
    (tmp_path / "plain.txt").write_text("x")
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "rows.jsonl"
    write_jsonl(target, [{"n": 1}])
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert read_jsonl(target) == [{"n": 1}]
    assert os.listdir(tmp_path) == ["rows.jsonl"]
