"""Fixtures of the retrieval tests: the tiny offline encoder and a few small datasets in every format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domainkd.retrieval import DatasetSpec, SentenceEncoder
from tests.retrieval.encoders import tiny_encoder_at

CAPITALS = [
    {"question": "What is the capital of France?", "answer": "Paris"},
    {"question": "What is the capital of Italy?", "answer": "Rome"},
    {},
    {"question": "What is the capital of France?", "answer": "Paris"},
    {"question": "What is the capital of Spain?", "answer": "Madrid", "note": None},
]
REVIEWS = "text,rating\nThe film was great fun,5\nA boring film,1\n"


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> SentenceEncoder:
    """The tiny random BERT sentence encoder (32-d), loaded through ``load_encoder``."""
    return tiny_encoder_at(tmp_path_factory.mktemp("tiny-encoder"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture()
def small_datasets(tmp_path: Path) -> list[DatasetSpec]:
    """capitals (JSONL, one empty row, one duplicate row), reviews (CSV), nli (Parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "reviews.csv").write_text(REVIEWS, encoding="utf-8")
    nli = {"premise": ["A man plays a guitar on stage"], "hypothesis": ["A man plays"], "label": ["entailment"]}
    pq.write_table(pa.table(nli), tmp_path / "nli.parquet")
    return [
        DatasetSpec(write_jsonl(tmp_path / "capitals.jsonl", CAPITALS)),
        DatasetSpec(tmp_path / "reviews.csv", description="film reviews with star ratings"),
        DatasetSpec(tmp_path / "nli.parquet"),
    ]
