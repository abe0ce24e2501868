import dataclasses

import numpy as np
import pytest

from domainkd.errors import DomainKDError
from domainkd.retrieval import (
    QueryVectors,
    TaskExample,
    build_datastore,
    encode_query,
    open_datastore,
    read_examples,
    rebase_scores,
    retrieve,
    search_rows,
)
from domainkd.retrieval.query import format_rows
from tests.retrieval.conftest import write_jsonl

ITALY = TaskExample("What is the capital of Italy?", "Rome")


def test_score_is_the_mean_of_best_input_best_output_and_description():
    query = QueryVectors(
        instruction=np.array([1.0, 0.0, 0.0]),
        inputs=np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),  # two example inputs
        outputs=np.array([[0.0, 1.0, 0.0]]),
    )
    values = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],  # row 0: one value is an input, the other the output
            [0.6, 0.8, 0.0],  # row 1: one value, half-way
            [0.0, 0.0, 1.0],
            [0.0, -1.0, 0.0],
            [0.0, 0.6, 0.8],  # row 2: the second input; best output 0.6
        ]
    )
    scores = rebase_scores(values, np.array([0, 2, 3, 6]), query, description_similarity=np.array([0.3, 0.9, -0.3]))
    np.testing.assert_allclose(scores.best_input, [1.0, 0.6, 1.0])
    np.testing.assert_allclose(scores.best_output, [1.0, 0.8, 0.6])
    np.testing.assert_allclose(scores.score, [(1 + 1 + 0.3) / 3, (0.6 + 0.8 + 0.9) / 3, (1 + 0.6 - 0.3) / 3], rtol=1e-6)


@pytest.fixture()
def store(tmp_path, small_datasets, tiny_encoder):
    build_datastore(tmp_path / "store", small_datasets, tiny_encoder, progress=False)
    return open_datastore(tmp_path / "store")


def test_the_row_holding_both_example_texts_comes_first_with_its_exact_score(store, tiny_encoder):
    rows = retrieve(store, tiny_encoder, "Name the capital city of a country.", [ITALY], top_k=10)
    assert rows[0].chunk_id == "capitals#1" and rows[0].fields == {
        "question": "What is the capital of Italy?",
        "answer": "Rome",
    }
    assert rows[0].best_input == pytest.approx(1.0, abs=2e-3) and rows[0].best_output == pytest.approx(1.0, abs=2e-3)
    [instruction, description] = tiny_encoder.encode(
        ["Name the capital city of a country.", store.datasets[0].description]
    )
    assert rows[0].description == pytest.approx(float(instruction @ description), abs=1e-5)
    assert rows[0].score == pytest.approx((rows[0].best_input + rows[0].best_output + rows[0].description) / 3)
    assert [row.score for row in rows] == sorted((row.score for row in rows), reverse=True)


def test_identical_rows_come_once_and_banned_datasets_never(store, tiny_encoder):
    rows = retrieve(store, tiny_encoder, "Name the capital.", [ITALY], top_k=10)
    assert len(rows) == 6  # 7 rows, capitals#3 repeats capitals#0
    assert {row.chunk_id for row in rows} >= {"capitals#0", "reviews#0", "nli#0"} and "capitals#3" not in {
        row.chunk_id for row in rows
    }
    rows = retrieve(store, tiny_encoder, "Name the capital.", [ITALY], top_k=10, ban=["capitals", "nli", "squad"])
    assert [row.dataset for row in rows] == ["reviews", "reviews"]
    assert retrieve(store, tiny_encoder, "x", [ITALY], top_k=10, ban=["capitals", "reviews", "nli"]) == []
    assert len(retrieve(store, tiny_encoder, "x", [ITALY], top_k=2)) == 2


def test_candidates_come_from_the_index_only(store, tiny_encoder):
    query = encode_query(tiny_encoder, "Name the capital.", [ITALY])
    rows = search_rows(store, query, top_k=10, candidate_k=1)  # the nearest value of the input and of the output
    assert [row.chunk_id for row in rows] == ["capitals#1"]


def test_query_needs_the_store_encoder_an_instruction_and_examples(store, tiny_encoder):
    other = dataclasses.replace(tiny_encoder, reference="all-minilm-l6-v2")
    with pytest.raises(DomainKDError, match="was built with the encoder"):
        retrieve(store, other, "Name the capital.", [ITALY], top_k=3)
    with pytest.raises(DomainKDError, match="needs a task instruction and at least one"):
        retrieve(store, tiny_encoder, "Name the capital.", [], top_k=3)
    with pytest.raises(DomainKDError, match="needs a task instruction"):
        retrieve(store, tiny_encoder, " ", [ITALY], top_k=3)


def test_read_examples(tmp_path):
    path = write_jsonl(
        tmp_path / "examples.jsonl", [{"input": "a", "output": "b"}, {"input": "c", "output": "d", "note": 1}]
    )
    assert read_examples(path) == [TaskExample("a", "b"), TaskExample("c", "d")]
    with pytest.raises(DomainKDError, match="needs text 'input' and 'output'"):
        read_examples(write_jsonl(tmp_path / "bad.jsonl", [{"question": "a", "answer": "b"}]))
    with pytest.raises(DomainKDError, match="does not exist"):
        read_examples(tmp_path / "missing.jsonl")


def test_format_rows_shows_scores_and_provenance(store, tiny_encoder):
    table = format_rows(retrieve(store, tiny_encoder, "Name the capital.", [ITALY], top_k=1), width=30)
    header, line = table.splitlines()
    assert header.split() == ["score", "input", "output", "descr", "row"]
    assert line.endswith("capitals#1  question: What is the capital…")  # 30 characters


def test_rows_sharing_values_score_like_rows_with_copies():
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(4, 8))
    distinct /= np.linalg.norm(distinct, axis=1, keepdims=True)
    query = QueryVectors(distinct[0], distinct[1:3], distinct[3:])
    cells, starts = np.array([0, 3, 2, 3, 1, 1, 2]), np.array([0, 2, 4, 7])  # value 3 shared by rows 0 and 1
    shared = rebase_scores(distinct, starts, query, np.zeros(3), cells=cells)
    copied = rebase_scores(distinct[cells], starts, query, np.zeros(3))
    np.testing.assert_allclose(shared.score, copied.score, rtol=1e-6)


def test_a_value_shared_by_many_rows_brings_a_bounded_number_of_them(tmp_path, tiny_encoder, monkeypatch):
    from domainkd.retrieval import DatasetSpec
    from domainkd.retrieval import query as rebase

    monkeypatch.setattr(rebase, "ROWS_PER_VALUE", 5)
    rows = [{"text": f"sentence number {i} about topic {i % 7}", "label": "yes"} for i in range(60)]
    build_datastore(tmp_path / "store", [DatasetSpec(write_jsonl(tmp_path / "votes.jsonl", rows))], tiny_encoder,
                    progress=False)  # fmt: skip
    store = open_datastore(tmp_path / "store")
    assert len(store.index) == 61  # 60 texts and one "yes"
    query = encode_query(tiny_encoder, "Label the sentence.", [TaskExample("sentence number 42 about topic 0", "yes")])
    found = search_rows(store, query, top_k=60, candidate_k=1)  # nearest value: the input's text, the output's "yes"
    assert {row.row_number for row in found} == {0, 1, 2, 3, 4, 42}  # "yes" brings its first 5 rows, the text row 42
    assert found[0].row_number == 42 and found[0].score == pytest.approx(
        (1 + 1 + found[0].description) / 3, abs=2e-3
    )


def test_a_store_of_an_older_format_asks_for_a_rebuild(store):
    manifest = store.path / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"format": 2', '"format": 1'))
    with pytest.raises(DomainKDError, match="built by an older domainkd .* rebuild it with `domainkd datastore build`"):
        open_datastore(store.path)
