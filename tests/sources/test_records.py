import json

import pytest

from domainkd.errors import DomainKDError
from domainkd.sources import read_qa_pairs, read_records


def test_csv_jsonl_json_and_parquet_rows_with_provenance(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "rooms.csv").write_text("room,floor,capacity\nAtlas,2,12\n,,\nBoreal,3,\n", encoding="utf-8")
    (tmp_path / "kg.jsonl").write_text(
        json.dumps({"subject": "Form HR-22", "predicate": "used for", "object": "leave requests"}) + "\n\n", encoding="utf-8"
    )
    (tmp_path / "staff.json").write_text(json.dumps({"staff": [{"name": "Ana", "role": {"team": "HR"}}]}), encoding="utf-8")
    pq.write_table(pa.table({"item": ["badge"], "price": [15.0], "note": [None]}), tmp_path / "prices.parquet")
    with pytest.warns(UserWarning, match="skipped 1 empty rows"):
        records = read_records([tmp_path])
    by_source = {record.source.rsplit("/", 1)[-1]: record for record in records}
    assert [r.fields for r in records if r.source.endswith("rooms.csv")] == [
        {"room": "Atlas", "floor": "2", "capacity": "12"},
        {"room": "Boreal", "floor": "3"},
    ]
    assert by_source["kg.jsonl"].triple and not by_source["staff.json"].triple
    assert by_source["staff.json"].fields == {"name": "Ana", "role": '{"team": "HR"}'}
    assert by_source["prices.parquet"].fields == {"item": "badge", "price": "15.0"}
    rooms = [r for r in records if r.source.endswith("rooms.csv")]
    assert [r.row for r in rooms] == [0, 2] and rooms[1].record_id.endswith("rooms.csv#2")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.jsonl", '{"a": 1}\n{"a": \n', "bad.jsonl line 2 is not valid JSON"),
        ("list.jsonl", "[1, 2]\n", "line 1 is not a JSON object"),
        ("bad.csv", 'a,b\n1,"two\nlines"\n3,4,5\n', "line 4 has 3 fields but the header has 2"),
        ("empty.csv", "  \n", "is empty"),
        ("shape.json", '{"a": 1}', "must hold a list of objects"),
        ("broken.json", "[{]", "is not valid JSON"),
    ],
)
def test_malformed_files_are_one_clear_error(tmp_path, name, content, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DomainKDError, match=message):
        read_records([tmp_path / name])


def test_binary_non_utf8_missing_and_unsupported_files(tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"a,b\x00\x01")
    (tmp_path / "latin.csv").write_bytes("a\ncaf\xe9\n".encode("latin-1"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nope")
    (tmp_path / "notes.docx").write_bytes(b"PK")
    for path, message in [
        ("bin.csv", "is binary"),
        ("latin.csv", "not UTF-8"),
        ("bad.parquet", "not a readable Parquet file"),
        ("notes.docx", "is not a .csv, .jsonl, .json or .parquet file"),
        ("missing.csv", "does not exist"),
    ]:
        with pytest.raises(DomainKDError, match=message):
            read_records([tmp_path / path])


def test_qa_sets_find_their_columns_and_skip_incomplete_rows(tmp_path):
    (tmp_path / "qa.csv").write_text("Question,Answer\nWhen does parking open?,06:40\nNo answer here,\n", encoding="utf-8")
    (tmp_path / "qa.jsonl").write_text(json.dumps({"instruction": "Badge cost?", "output": "15 euros"}) + "\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="skipped 1 rows without both"):
        pairs = read_qa_pairs([tmp_path / "qa.csv", tmp_path / "qa.jsonl"])
    assert [(p.question, p.answer, p.row) for p in pairs] == [("When does parking open?", "06:40", 0), ("Badge cost?", "15 euros", 0)]
    (tmp_path / "other.csv").write_text("x,y\n1,2\n", encoding="utf-8")
    with pytest.raises(DomainKDError, match="no question/answer columns"):
        read_qa_pairs([tmp_path / "other.csv"])
