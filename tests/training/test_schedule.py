"""The training order: which epochs hold which rows, and batches of similar length."""

from __future__ import annotations

from collections import Counter

import pytest

from domainkd.config import TrainConfig
from domainkd.errors import DomainKDError
from domainkd.training.schedule import row_kind, training_order

KINDS = ["qa"] * 20 + ["passage"] * 10 + ["excerpt"] * 6
LENGTHS = [30 + (index * 7) % 50 for index in range(20)] + [120] * 10 + [400] * 6


def epochs_of(order: list[int], rows: int, batch_rows: list[int]) -> list[set[int]]:
    """Split ``order`` into consecutive epochs of the given sizes."""
    split, start = [], 0
    for size in batch_rows:
        split.append(set(order[start : start + size]))
        start += size
    assert start == len(order)
    return split


def test_row_kinds():
    assert row_kind({"question": "Q?", "answer": "A."}) == "qa"
    assert row_kind({"question": None, "text": "A passage."}) == "passage"
    assert row_kind({"question": "Q?", "answer": "A.", "prompt": "Document excerpts: ... Question: Q?"}) == "excerpt"


def test_mixed_trains_every_row_once_per_epoch():
    order = training_order(KINDS, LENGTHS, TrainConfig(epochs=3, batch_size=4))
    assert Counter(order) == {index: 3 for index in range(len(KINDS))}
    first, second, third = epochs_of(order, len(KINDS), [36, 36, 36])
    assert first == second == third == set(range(36))
    assert order[:36] != order[36:72]  # each epoch is shuffled anew


def test_qa_first_keeps_passages_out_of_the_first_epochs():
    train = TrainConfig(epochs=4, batch_size=4, schedule="qa_first", qa_first_epochs=2)
    order = training_order(KINDS, LENGTHS, train)
    epochs = epochs_of(order, len(KINDS), [26, 26, 36, 36])
    passages = set(range(20, 30))
    assert not epochs[0] & passages and not epochs[1] & passages
    assert passages <= epochs[2] and passages <= epochs[3]


def test_excerpt_rows_take_part_in_the_last_epochs_only():
    order = training_order(KINDS, LENGTHS, TrainConfig(epochs=3, batch_size=4, excerpt_epochs=1))
    counts = Counter(order)
    assert all(counts[index] == 1 for index in range(30, 36))
    assert all(counts[index] == 3 for index in range(30))
    assert set(order[-36:]) == set(range(36))


def test_a_fractional_epoch_takes_part_of_one():
    order = training_order(KINDS, LENGTHS, TrainConfig(epochs=1.5, batch_size=4))
    assert len(order) == 36 + 18
    assert set(order[:36]) == set(range(36))


def test_batches_group_similar_lengths_and_the_order_is_seeded():
    kinds, lengths = ["qa"] * 100 + ["excerpt"] * 100, [40] * 100 + [400] * 100
    train = TrainConfig(epochs=1, batch_size=4)
    order = training_order(kinds, lengths, train)
    batches = [order[start : start + 4] for start in range(0, 200, 4)]
    mixed = sum(len({lengths[i] for i in batch}) > 1 for batch in batches)
    assert mixed <= 5  # at most one mixed batch per mega-batch of 48 rows
    assert training_order(kinds, lengths, train) == order
    assert training_order(kinds, lengths, TrainConfig(epochs=1, batch_size=4, seed=1)) != order


def test_schedule_settings_are_checked():
    from domainkd.config import config_from_dict

    with pytest.raises(DomainKDError, match="qa_first_epochs"):
        config_from_dict({"train": {"epochs": 2, "schedule": "qa_first", "qa_first_epochs": 2}})
    with pytest.raises(DomainKDError, match="excerpt_epochs"):
        config_from_dict({"train": {"epochs": 2, "excerpt_epochs": 3}})


def test_auto_mixed_precision_follows_the_hardware(monkeypatch):
    import domainkd.training.sft as sft

    monkeypatch.setattr(sft.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sft, "native_on_cpu", lambda dtype: True)
    assert sft.mixed_precision(TrainConfig(bf16="auto")) is True
    monkeypatch.setattr(sft, "native_on_cpu", lambda dtype: None)  # this torch cannot tell: stay in float32
    assert sft.mixed_precision(TrainConfig(bf16="auto")) is False
    assert sft.mixed_precision(TrainConfig(bf16=True)) is True and sft.mixed_precision(TrainConfig()) is False
