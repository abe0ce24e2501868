"""Turn (question, answer) examples into token ids with loss on the answer tokens only, and plain passages into ids with loss on every token."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from domainkd.distill.losses import IGNORE_INDEX
from domainkd.models import chat_messages, render_prompt


def tokenize_example(
    tokenizer: PreTrainedTokenizerBase, system_prompt: str | None, question: str, answer: str, max_length: int
) -> dict[str, list[int]]:
    """Chat-formatted ids of one exchange; labels are ``IGNORE_INDEX`` on the prompt part.

    The full text is the chat template applied to the whole exchange; the prompt is the same
    template up to the start of the assistant turn, so label masking follows the template
    exactly (including the end-of-turn token, which the student must learn to emit).
    """
    prompt = render_prompt(tokenizer, chat_messages(system_prompt, question))
    full = tokenizer.apply_chat_template(chat_messages(system_prompt, question, answer), tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently inside the full conversation")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(full[len(prompt) :].rstrip("\n"), add_special_tokens=False)["input_ids"]
    input_ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def tokenize_text(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> dict[str, list[int]]:
    """Ids of a plain passage (no chat template), loss on every token, ending with the end-of-text token."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and tokenizer.bos_token_id != tokenizer.eos_token_id:
        ids = [tokenizer.bos_token_id, *ids]
    if tokenizer.eos_token_id is not None:
        ids = [*ids, tokenizer.eos_token_id]
    ids = ids[:max_length]
    return {"input_ids": ids, "labels": list(ids)}


def tokenize_row(tokenizer: PreTrainedTokenizerBase, system_prompt: str | None, row: dict[str, Any], max_length: int) -> dict[str, list[int]]:
    """A training-set row: a (question, answer) exchange, or a plain ``text`` passage (knowledge injection).

    A row with a ``prompt`` (a RAFT copy: excerpts, instructions and the question) is asked with that
    user turn instead of the bare question.
    """
    if row.get("question") is None and row.get("text"):
        return tokenize_text(tokenizer, row["text"], max_length)
    return tokenize_example(tokenizer, system_prompt, row.get("prompt") or row["question"], row["answer"], max_length)


def excerpt_tokens(tokenizer: PreTrainedTokenizerBase, system_prompt: str | None, row: dict[str, Any]) -> int:
    """Tokens from the start of a RAFT row up to the end of its excerpts (0 for other rows).

    They may run forward without gradient (``train.detach_excerpts``); one token short of the
    boundary, since text tokenised alone can end in a token the whole prompt splits otherwise.
    """
    from domainkd.evaluation.systems import EXCERPT_INSTRUCTION

    if not row.get("prompt") or EXCERPT_INSTRUCTION not in row["prompt"]:
        return 0
    rendered = render_prompt(tokenizer, chat_messages(system_prompt, row["prompt"]))
    head = rendered[: rendered.rindex(EXCERPT_INSTRUCTION)]
    return max(0, len(tokenizer(head, add_special_tokens=False)["input_ids"]) - 1)


def response_ids(labels: list[int]) -> list[int]:
    """The tokens an unpadded example's response positions predict: labels after the first that are not ignored.

    Position ``t`` predicts ``labels[t + 1]``, so these are the rows a KD loss and the teacher
    store see for the example, in order.
    """
    return [label for label in labels[1:] if label != IGNORE_INDEX]


class PadCollator:
    """Right-pad a list of tokenised examples into a batch."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(feature["input_ids"]) for feature in features)
        input_ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(features), length), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros((len(features), length), dtype=torch.long)  # (B, T)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[row, :n] = torch.tensor(feature["input_ids"])
            labels[row, :n] = torch.tensor(feature["labels"])
            attention_mask[row, :n] = 1
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        if all("frozen_tokens" in feature for feature in features):  # (B,): leading tokens without gradient
            batch["frozen_tokens"] = torch.tensor([feature["frozen_tokens"] for feature in features])
        return batch
