"""The order the training examples are seen in: which epochs hold which examples, shuffled and grouped by length.

Three kinds of training-set rows take part:

* ``qa`` — a question and its answer, asked closed-book (refusals included);
* ``passage`` — a plain text, loss on every token (documents, fact restatements);
* ``excerpt`` — a question asked with retrieved excerpts in its prompt (RAFT copies), several
  times the length of a ``qa`` row, so training them in fewer epochs saves most of their cost.

``mixed`` trains every row in every epoch. ``qa_first`` is pre-instruction-tuning (Jiang et al.,
ACL 2024): the first ``qa_first_epochs`` epochs train the question/answer rows alone, the rest
train passages and question/answer rows together. Excerpt rows take part in the last
``excerpt_epochs`` epochs (all of them when unset). Within an epoch the rows are shuffled (seeded
by the epoch) and grouped into batches of similar length, as the Hugging Face Trainer's
``group_by_length`` does; a fractional last epoch takes the start of its shuffled order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices

from domainkd.config import TrainConfig

KINDS = ("qa", "passage", "excerpt")


def row_kind(row: dict[str, Any]) -> str:
    """``excerpt`` (a RAFT copy), ``passage`` (plain text) or ``qa``."""
    if row.get("prompt"):
        return "excerpt"
    if row.get("question") is None and row.get("text"):
        return "passage"
    return "qa"


def epoch_rows(kinds: Sequence[str], epoch: int, train: TrainConfig) -> list[int]:
    """Indices of the rows trained in ``epoch`` (0-based) under ``train``'s schedule."""
    epochs = math.ceil(train.epochs)
    active = {"qa"}
    if train.schedule == "mixed" or epoch >= train.qa_first_epochs:
        active.add("passage")
    if train.excerpt_epochs is None or epoch >= epochs - train.excerpt_epochs:
        active.add("excerpt")
    return [index for index, kind in enumerate(kinds) if kind in active]


def training_order(kinds: Sequence[str], lengths: Sequence[int], train: TrainConfig) -> list[int]:
    """Row indices in the order they are trained, every epoch after the other.

    Args:
        kinds: each row's kind (:func:`row_kind`).
        lengths: each row's token count (batches group similar lengths).
        train: epochs, schedule, batch size and seed.
    """
    batch = train.batch_size * train.gradient_accumulation_steps
    order: list[int] = []
    for epoch in range(math.ceil(train.epochs)):
        rows = epoch_rows(kinds, epoch, train)
        if not rows:
            continue
        generator = torch.Generator().manual_seed(train.seed * 1_000_003 + epoch)
        grouped = get_length_grouped_indices([lengths[i] for i in rows], batch, generator=generator)
        share = min(1.0, train.epochs - epoch)  # the last epoch may be a fraction of one
        order += [rows[i] for i in grouped[: max(1, round(share * len(rows)))]]
    return order


class FixedOrder(Sampler[int]):
    """A sampler yielding a precomputed order (deterministic, so a resumed run skips exactly what was trained)."""

    def __init__(self, order: Sequence[int]) -> None:
        self.order = list(order)

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)
