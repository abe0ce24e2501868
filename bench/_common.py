"""Small pieces the benchmarks share: the handbook's held-out pairs and the cut student."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from domainkd.training.collate import tokenize_example

HANDBOOK = Path(__file__).resolve().parents[1] / "examples" / "handbook"


def handbook_examples(tokenizer: PreTrainedTokenizerBase, max_length: int = 256) -> list[dict]:
    """The handbook's held-out (question, answer) pairs, tokenised with loss on the answer only."""
    rows = [json.loads(line) for line in (HANDBOOK / "eval.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return [tokenize_example(tokenizer, None, row["question"], row["answer"], max_length) for row in rows]


def cut_to_first_layers(model: PreTrainedModel, layers: int) -> PreTrainedModel:
    """Keep only the first ``layers`` decoder layers of a Llama-style causal LM, in place.

    A stand-in for a smaller student with the teacher's vocabulary (untrained for the cut).
    """
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    return model
