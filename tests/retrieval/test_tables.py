import math

import pytest

from domainkd.errors import DomainKDError
from domainkd.retrieval import DatasetSpec, dataset_rows
from domainkd.retrieval.tables import cell_text, check_specs


def test_every_format_gives_rows_of_text_cells(small_datasets):
    capitals, reviews, nli = (list(dataset_rows(spec)) for spec in small_datasets)
    assert capitals[0] == {"question": "What is the capital of France?", "answer": "Paris"}
    assert capitals[2] == {} and capitals[4] == {"question": "What is the capital of Spain?", "answer": "Madrid"}
    assert reviews == [{"text": "The film was great fun", "rating": "5"}, {"text": "A boring film", "rating": "1"}]
    assert nli == [{"premise": "A man plays a guitar on stage", "hypothesis": "A man plays", "label": "entailment"}]


def test_saved_dataset_splits_are_read_in_turn(tmp_path):
    import datasets

    splits = {
        "train": datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}),
        "test": datasets.Dataset.from_dict({"text": ["c"], "label": [1]}),
    }
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "saved"))
    spec = DatasetSpec(tmp_path / "saved")
    assert spec.dataset_name == "saved"
    assert list(dataset_rows(spec)) == [
        {"text": "a", "label": "0"},
        {"text": "b", "label": "1"},
        {"text": "c", "label": "1"},
    ]


def test_cell_text():
    assert cell_text(None) == "" and cell_text(math.nan) == ""
    assert cell_text({"a": [1, 2]}) == '{"a": [1, 2]}'
    assert cell_text("  two\n lines ") == "two lines"
    assert cell_text(0) == "0"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no datasets were given"),
        ({"data.txt": "x"}, "is not a .csv, .jsonl, .json or .parquet file"),
        ({"a/data.csv": "x\n1\n", "b/data.csv": "x\n1\n"}, "two datasets are named 'data'"),
    ],
)
def test_bad_dataset_lists_are_one_clear_error(tmp_path, files, message):
    specs = []
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
        specs.append(DatasetSpec(tmp_path / name))
    with pytest.raises(DomainKDError, match=message):
        check_specs(specs)


def test_unreadable_files_are_one_clear_error(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DomainKDError, match="is not a readable Parquet file"):
        list(dataset_rows(DatasetSpec(tmp_path / "bad.parquet")))
    (tmp_path / "folder").mkdir()
    with pytest.raises(DomainKDError, match="is not a dataset saved with save_to_disk"):
        list(dataset_rows(DatasetSpec(tmp_path / "folder")))
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n', encoding="utf-8")
    with pytest.raises(DomainKDError, match="line 2 is not valid JSON"):
        list(dataset_rows(DatasetSpec(tmp_path / "bad.jsonl")))
