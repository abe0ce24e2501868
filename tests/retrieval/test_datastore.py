import json

import numpy as np
import pytest
from typer.testing import CliRunner

from domainkd.cli import app
from domainkd.errors import DomainKDError
from domainkd.retrieval import (
    DatasetSpec,
    IndexSettings,
    SentenceEncoder,
    build_datastore,
    open_datastore,
    read_manifest,
)
from tests.retrieval.conftest import write_jsonl

EXPECTED_VALUES = [  # (dataset, first row number, column, text) of every distinct value, in store order
    ("capitals", 0, "question", "What is the capital of France?"),
    ("capitals", 0, "answer", "Paris"),
    ("capitals", 1, "question", "What is the capital of Italy?"),
    ("capitals", 1, "answer", "Rome"),
    # row 2 is empty: skipped, numbering kept; row 3 repeats row 0: its cells point at values 0 and 1
    ("capitals", 4, "question", "What is the capital of Spain?"),
    ("capitals", 4, "answer", "Madrid"),
    ("reviews", 0, "text", "The film was great fun"),
    ("reviews", 0, "rating", "5"),
    ("reviews", 1, "text", "A boring film"),
    ("reviews", 1, "rating", "1"),
    ("nli", 0, "premise", "A man plays a guitar on stage"),
    ("nli", 0, "hypothesis", "A man plays"),
    ("nli", 0, "label", "entailment"),
]


class CountingEncoder(SentenceEncoder):
    """The tiny encoder, counting texts encoded and failing on call number ``fail_on`` (a killed build)."""

    def __init__(self, encoder: SentenceEncoder, fail_on: int | None = None) -> None:
        super().__init__(encoder.reference, encoder.directory, encoder.model)
        self.calls, self.texts, self.fail_on = 0, 0, fail_on

    def encode(self, texts, batch_size=128):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt
        self.texts += len(texts)
        return super().encode(texts, batch_size)


def test_every_cell_is_a_value_with_its_vector(tmp_path, small_datasets, tiny_encoder):
    assert build_datastore(tmp_path / "store", small_datasets, tiny_encoder, progress=False)
    store = open_datastore(tmp_path / "store")
    assert [store.value(v) for v in range(len(store.index))] == EXPECTED_VALUES
    assert len(store) == 7 and list(store.row_starts) == [0, 2, 4, 6, 8, 10, 12, 15]
    assert list(store.cell_values) == [0, 1, 2, 3, 0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert list(store.rows_holding(np.array([1, 7]), per_value=8)) == [0, 2, 4]  # "Paris": rows 0 and 3 (ids 0, 2)
    assert list(store.rows_holding(np.array([1]), per_value=1)) == [0]  # the first row of a shared value
    cells, starts = store.row_cells(np.array([2, 6]))
    assert list(cells) == [0, 1, 10, 11, 12] and list(starts) == [0, 2, 5]
    vectors = store.index.reconstruct(np.arange(13))  # (V, D), float16-rounded
    np.testing.assert_allclose(vectors, tiny_encoder.encode([text for *_, text in EXPECTED_VALUES]), atol=2e-3)
    assert store.row_hashes[0] == store.row_hashes[2] != store.row_hashes[1]  # capitals rows 0 and 3 are identical
    described = {d.name: d.description for d in store.datasets}
    assert described == {
        "capitals": "capitals: a dataset with columns question, answer",
        "reviews": "film reviews with star ratings",
        "nli": "nli: a dataset with columns premise, hypothesis, label",
    }
    np.testing.assert_allclose(store.descriptions, tiny_encoder.encode(list(described.values())), atol=1e-5)
    manifest = read_manifest(tmp_path / "store")
    assert manifest["index"] == "Flat" and manifest["build"]["values"] == 13 and manifest["build"]["cells"] == 15
    assert manifest["build"]["encoded_texts"] == 13  # "Paris" and the France question are encoded once
    assert [(d.first_value, d.values, d.first_cell, d.cells) for d in store.datasets] == [
        (0, 6, 0, 8), (6, 4, 8, 4), (10, 3, 12, 3)
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["capitals.jsonl", "nli.parquet", "reviews.csv", "store"]
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [
        "cell_values.npy", "descriptions.npy", "index.faiss", "manifest.json", "meta.sqlite",
        "row_datasets.npy", "row_hashes.npy", "row_starts.npy", "value_row_starts.npy", "value_rows.npy",
    ]  # fmt: skip


def test_unchanged_inputs_are_not_rebuilt_and_changed_ones_are(tmp_path, small_datasets, tiny_encoder):
    store = tmp_path / "store"
    assert build_datastore(store, small_datasets, tiny_encoder, progress=False)
    first = read_manifest(store)["fingerprint"]
    assert not build_datastore(
        store, small_datasets, tiny_encoder.reference, progress=False
    )  # by reference: not even loaded
    reviews = small_datasets[1].path
    reviews.write_text(reviews.read_text(encoding="utf-8") + "Fine,3\n", encoding="utf-8")
    assert build_datastore(store, small_datasets, tiny_encoder, progress=False)
    assert read_manifest(store)["fingerprint"] != first and len(open_datastore(store)) == 8
    described = [small_datasets[0], DatasetSpec(small_datasets[1].path, description="other words"), small_datasets[2]]
    assert build_datastore(store, described, tiny_encoder, progress=False)


def test_killed_build_leaves_the_old_store_and_resumes_where_it_stopped(tmp_path, small_datasets, tiny_encoder):
    store = tmp_path / "store"
    build_datastore(store, small_datasets[:1], tiny_encoder, progress=False)
    old = read_manifest(store)
    killed = CountingEncoder(tiny_encoder, fail_on=3)
    with pytest.raises(KeyboardInterrupt):
        build_datastore(store, small_datasets, killed, batch_values=2, progress=False)
    assert read_manifest(store) == old and len(open_datastore(store)) == 4  # the old store is untouched
    [work] = [p for p in tmp_path.iterdir() if p.name.startswith(".store.building-")]
    assert not (work / "manifest.json").exists()

    resumed = CountingEncoder(tiny_encoder)
    assert build_datastore(store, small_datasets, resumed, batch_values=2, progress=False)
    fresh = CountingEncoder(tiny_encoder)
    build_datastore(tmp_path / "fresh", small_datasets, fresh, batch_values=2, progress=False)
    assert killed.texts == 4  # two committed parts: capitals rows 0 and 1
    # row 3 repeats row 0: the dataset's distinct values are read back from the committed parts, so nothing is
    # encoded twice and the resumed store is the fresh one
    assert killed.texts + resumed.texts == fresh.texts
    a, b = open_datastore(store), open_datastore(tmp_path / "fresh")
    assert [a.value(v) for v in range(13)] == [b.value(v) for v in range(13)] == EXPECTED_VALUES
    np.testing.assert_array_equal(a.cell_values, b.cell_values)
    np.testing.assert_array_equal(a.index.reconstruct(np.arange(13)), b.index.reconstruct(np.arange(13)))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_ivf_store_above_the_flat_limit(tmp_path, small_datasets, tiny_encoder):
    build_datastore(
        tmp_path / "store",
        small_datasets,
        tiny_encoder,
        IndexSettings(flat_limit=4, nlist=2, train_per_cell=4),
        progress=False,
    )
    store = open_datastore(tmp_path / "store", nprobe=2)
    assert read_manifest(tmp_path / "store")["index"] == "IVF2,Flat"
    _, ids = store.index.search(store.index.reconstruct(np.array([6, 10])), k=1)
    assert list(ids[:, 0]) == [6, 10]


def test_bad_inputs_are_one_clear_error(tmp_path, small_datasets, tiny_encoder):
    empty = write_jsonl(tmp_path / "empty.jsonl", [{}, {"a": None}])
    broken = tmp_path / "broken.csv"
    broken.write_text('a,b\n1,2\n"3,4\n', encoding="utf-8")
    cases = [
        ([DatasetSpec(tmp_path / "missing.csv")], tiny_encoder, "does not exist"),
        ([DatasetSpec(empty)], tiny_encoder, "has no non-empty rows"),
        ([DatasetSpec(broken)], tiny_encoder, "line 3 has 1 fields but the header has 2"),
        (small_datasets, "no-such-encoder", "unknown model 'no-such-encoder'"),
    ]
    for specs, encoder, message in cases:
        with pytest.raises(DomainKDError, match=message):
            build_datastore(tmp_path / "store", specs, encoder, progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(DomainKDError, match="is not a domainkd datastore"):
        build_datastore(tmp_path / "notes", small_datasets, tiny_encoder, progress=False)
    with pytest.raises(DomainKDError, match="is not a built datastore"):
        open_datastore(tmp_path / "notes")


def test_cli_builds_then_queries(tmp_path, small_datasets, tiny_encoder):
    runner = CliRunner()
    paths = [str(spec.path) for spec in small_datasets]
    args = [
        "datastore",
        "build",
        str(tmp_path / "store"),
        *paths,
        "--encoder",
        tiny_encoder.reference,
        "--description",
        "nli=sentence pairs",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout[result.stdout.index("{") :])["build"]["rows"] == 7
    examples = write_jsonl(tmp_path / "examples.jsonl", [{"input": "What is the capital of Italy?", "output": "Rome"}])
    args = [
        "datastore",
        "query",
        str(tmp_path / "store"),
        "--instruction",
        "Name the capital.",
        "--examples",
        str(examples),
        "--top-k",
        "2",
    ]
    result = runner.invoke(app, args + ["--ban", "reviews"])
    assert result.exit_code == 0, result.output
    assert "capitals#1" in result.stdout.splitlines()[1]  # the row holding both example texts comes first
    result = runner.invoke(app, ["datastore", "build", str(tmp_path / "s2"), *paths, "--description", "squad=x"])
    assert isinstance(result.exception, DomainKDError) and "not a dataset here" in str(result.exception)
