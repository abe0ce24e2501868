"""Seeded tensors the loss tests share."""

import torch

from domainkd.distill import IGNORE_INDEX


def logits(*shape, seed=0, scale=1.0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


def labels_for(shape, vocab, ignored, seed=0):
    labels = torch.randint(vocab, shape, generator=torch.Generator().manual_seed(seed))
    return labels.masked_fill(ignored, IGNORE_INDEX)


def logprobs_of(probs):
    return torch.tensor(probs, dtype=torch.float64).log()
