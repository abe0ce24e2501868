"""The handbook's held-out pairs, shared by the benchmarks (the cut student: domainkd.models.keep_first_layers)."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from domainkd.training.collate import tokenize_example

HANDBOOK = Path(__file__).resolve().parents[1] / "examples" / "handbook"


def handbook_examples(tokenizer: PreTrainedTokenizerBase, max_length: int = 256) -> list[dict]:
    """The handbook's held-out (question, answer) pairs, tokenised with loss on the answer only."""
    rows = [json.loads(line) for line in (HANDBOOK / "eval.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return [tokenize_example(tokenizer, None, row["question"], row["answer"], max_length) for row in rows]
