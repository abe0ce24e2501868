"""Logits at response positions only: the same numbers as the full forward, and the same SFT loss."""

import pytest
import torch
from transformers import TrainingArguments

from domainkd.models import load_causal_lm
from domainkd.training.collate import PadCollator, tokenize_example
from domainkd.models import plain_head
from domainkd.training.logits import response_logits
from domainkd.training.sft import SFTTrainer

EXCHANGES = [
    ("How many days of annual leave do full-time staff get?", "Full-time staff receive 27 days of annual leave."),
    ("When does the car park open?", "The car park opens at 06:40."),
]


@pytest.fixture(scope="module")
def batch_and_model(tiny_model):
    model, tokenizer = load_causal_lm(tiny_model)
    examples = [tokenize_example(tokenizer, "Be brief.", question, answer, 96) for question, answer in EXCHANGES]
    return PadCollator(tokenizer.pad_token_id)(examples), model


def test_response_logits_equal_the_full_forward(batch_and_model):
    batch, model = batch_and_model
    response = batch["labels"][:, 1:] != -100
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        logits, hidden = response_logits(model, model, batch, response, hidden=True)
    assert plain_head(model) and logits.shape == (int(response.sum()), model.config.vocab_size)
    torch.testing.assert_close(logits, full.logits[:, :-1][response], atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden, full.hidden_states[-1][:, :-1][response], atol=1e-5, rtol=0)


def test_a_wrapped_model_takes_the_full_forward(batch_and_model):
    batch, model = batch_and_model
    response = batch["labels"][:, 1:] != -100
    calls = []
    wrapper = torch.nn.Module()
    wrapper.forward = lambda **kwargs: calls.append(kwargs) or model(**kwargs)
    with torch.no_grad():
        logits, _ = response_logits(wrapper, model, batch, response)
        direct, _ = response_logits(model, model, batch, response)
    assert len(calls) == 1 and calls[0]["use_cache"] is False
    torch.testing.assert_close(logits, direct, atol=1e-5, rtol=0)


def test_soft_capped_or_scaled_heads_are_not_plain(batch_and_model):
    _, model = batch_and_model
    config = model.config
    try:
        config.final_logit_softcapping = 30.0
        assert not plain_head(model)
    finally:
        config.final_logit_softcapping = None
    assert plain_head(model)


def test_sft_trainer_loss_is_the_models_own(tmp_path, batch_and_model):
    batch, model = batch_and_model
    trainer = SFTTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    with torch.no_grad():
        expected = model(**batch).loss
        torch.testing.assert_close(trainer.compute_loss(model, batch), expected, atol=1e-5, rtol=0)
        tokens = int((batch["labels"][:, 1:] != -100).sum())
        summed = trainer.compute_loss(model, batch, num_items_in_batch=2 * tokens)
    torch.testing.assert_close(summed, expected / 2, atol=1e-5, rtol=0)


def test_a_frozen_prefix_gives_the_same_logits_and_no_gradient_from_its_positions(batch_and_model):
    batch, model = batch_and_model
    response = batch["labels"][:, 1:] != -100
    frozen = int(response.float().argmax(1).min())  # every row's prompt is at least this long
    assert frozen > 4
    embedded = []  # (rows, positions) embedded per call, and whether autograd tracks them
    handle = model.get_input_embeddings().register_forward_hook(
        lambda module, args, output: embedded.append((tuple(output.shape[:2]), output.requires_grad))
    )
    try:
        full, _ = response_logits(model, model, batch, response)
        split, _ = response_logits(model, model, batch, response, frozen=frozen)
    finally:
        handle.remove()
    torch.testing.assert_close(split, full, atol=1e-5, rtol=0)
    rows, length = batch["input_ids"].shape
    assert embedded == [((rows, length), True), ((rows, frozen), False), ((rows, length - frozen), True)]
    split.logsumexp(-1).sum().backward()  # the answer positions still train every weight through the cache
    assert all(parameter.grad is not None for parameter in model.parameters())
    model.zero_grad()
    with pytest.raises(ValueError, match="freeze fewer"):
        response_logits(model, model, batch, response, frozen=frozen + 20)
