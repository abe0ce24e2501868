import torch

from domainkd.models import load_tokenizer
from domainkd.training.collate import IGNORE_INDEX, PadCollator, tokenize_example


def test_labels_cover_only_the_response(tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    example = tokenize_example(tokenizer, "Be brief.", "How many days?", "27 days.", max_length=256)
    ids, labels = example["input_ids"], example["labels"]
    assert len(ids) == len(labels)
    first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    prompt_text = tokenizer.decode(ids[:first])
    assert prompt_text.endswith("<|im_start|>assistant\n")
    assert labels[first:] == ids[first:]
    assert tokenizer.decode(ids[first:]) == "27 days.<|im_end|>"


def test_truncation_keeps_ids_and_labels_aligned(tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    example = tokenize_example(tokenizer, None, "Question " * 50, "Answer.", max_length=20)
    assert len(example["input_ids"]) == len(example["labels"]) == 20


def test_pad_collator_masks_padding():
    batch = PadCollator(pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["input_ids"].dtype == torch.long


def test_plain_passages_train_on_every_token(tiny_model):
    from domainkd.training.collate import tokenize_row

    tokenizer = load_tokenizer(tiny_model)
    row = {"question": None, "answer": None, "text": "Permits cost 85 euros a year."}
    tokens = tokenize_row(tokenizer, "system", row, max_length=64)
    assert tokens["labels"] == tokens["input_ids"]
    assert tokens["input_ids"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(tokens["input_ids"], skip_special_tokens=True).strip() == row["text"]
    exchange = tokenize_row(tokenizer, "system", {"question": "Cost?", "answer": "85 euros."}, max_length=64)
    assert exchange == tokenize_example(tokenizer, "system", "Cost?", "85 euros.", 64)
    assert len(tokenize_row(tokenizer, None, {"text": "word " * 200}, max_length=16)["input_ids"]) == 16


def test_excerpt_tokens_end_before_the_instruction_and_the_answer(tiny_model):
    from domainkd.evaluation.systems import excerpt_prompt
    from domainkd.sources import Chunk
    from domainkd.training.collate import excerpt_tokens, tokenize_row

    tokenizer = load_tokenizer(tiny_model)
    chunk = Chunk("leave.md#0", "leave.md", "Annual Leave", "Full-time staff receive 27 days of annual leave.", 0, 48, 11)
    row = {"question": "How many days?", "answer": "27 days.", "prompt": excerpt_prompt("How many days?", [chunk], "No idea.")}
    frozen = excerpt_tokens(tokenizer, "Be brief.", row)
    tokens = tokenize_row(tokenizer, "Be brief.", row, 512)
    first_response = next(i for i, label in enumerate(tokens["labels"]) if label != IGNORE_INDEX)
    assert 0 < frozen < first_response
    head = tokenizer.decode(tokens["input_ids"][:frozen])
    assert "27 days of annual leave" in head and "Answer the question" not in head
    assert excerpt_tokens(tokenizer, "Be brief.", {"question": "How many days?", "answer": "27 days."}) == 0
    batch = PadCollator(0)([{**tokens, "frozen_tokens": frozen}, {**tokens, "frozen_tokens": frozen - 3}])
    assert batch["frozen_tokens"].tolist() == [frozen, frozen - 3]
