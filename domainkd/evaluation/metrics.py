"""Metric registry: name → per-example scoring function, with direction and scope declared.

A metric returns a float for the examples it applies to and ``None`` for the others
(e.g. fact accuracy is not defined for out-of-scope questions); averages skip ``None``
and report how many examples counted.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from domainkd.evaluation.refusal import is_refusal

Example = dict[str, Any]


@dataclass(frozen=True)
class Metric:
    """One registered metric."""

    name: str
    score: Callable[[str, Example], float | None]
    """(prediction, example) -> score in [0, 1], or None when it does not apply."""
    higher_is_better: bool
    description: str


METRICS: dict[str, Metric] = {}


def register_metric(name: str, higher_is_better: bool, description: str) -> Callable:
    """Decorator adding a scoring function to :data:`METRICS`."""

    def add(function: Callable[[str, Example], float | None]) -> Callable[[str, Example], float | None]:
        METRICS[name] = Metric(name, function, higher_is_better, description)
        return function

    return add


def in_scope(example: Example) -> bool:
    return example.get("scope", "in") == "in"


def normalise_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(" " if char in string.punctuation else char for char in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _fact_form(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def fact_present(fact: str, prediction: str) -> bool:
    """Whether any ``|``-separated alternative of ``fact`` occurs as whole words in ``prediction``."""
    padded = f" {_fact_form(prediction)} "
    return any(f" {_fact_form(alternative)} " in padded for alternative in fact.split("|") if alternative.strip())


@register_metric("fact_accuracy", True, "in-scope answers that state every key fact and do not refuse")
def fact_accuracy(prediction: str, example: Example) -> float | None:
    if not in_scope(example):
        return None
    facts = example.get("facts") or []
    if not facts:
        return None
    return float(not is_refusal(prediction) and all(fact_present(fact, prediction) for fact in facts))


@register_metric("token_f1", True, "SQuAD token F1 against the reference answer (in-scope)")
def token_f1(prediction: str, example: Example) -> float | None:
    if not in_scope(example):
        return None
    predicted, reference = normalise_answer(prediction).split(), normalise_answer(example["answer"]).split()
    common = sum((Counter(predicted) & Counter(reference)).values())
    if not predicted or not reference or common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(reference)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


@register_metric("rouge_l", True, "ROUGE-L F-measure against the reference answer (in-scope)")
def rouge_l(prediction: str, example: Example) -> float | None:
    if not in_scope(example):
        return None
    return _rouge_scorer().score(example["answer"], prediction)["rougeL"].fmeasure


@register_metric("refusal_rate", True, "out-of-scope questions answered with a refusal")
def refusal_rate(prediction: str, example: Example) -> float | None:
    return None if in_scope(example) else float(is_refusal(prediction))


@register_metric("false_refusal_rate", False, "in-scope questions wrongly refused")
def false_refusal_rate(prediction: str, example: Example) -> float | None:
    return float(is_refusal(prediction)) if in_scope(example) else None


def aggregate(scores: list[float | None]) -> dict[str, float | int | None]:
    """Mean over the examples a metric applies to, with the count (None-safe)."""
    valid = [score for score in scores if score is not None]
    return {"mean": sum(valid) / len(valid) if valid else None, "n": len(valid)}
