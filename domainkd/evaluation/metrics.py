"""Answer-level metrics: key facts, SQuAD exact match and F1, multiple choice, the LLM judge, behaviour.

A metric returns a float for the examples it applies to and ``None`` for the others
(e.g. fact accuracy is not defined for out-of-scope questions); averages skip ``None``
and report how many examples counted. The n-gram and embedding metrics live in
``ngram.py`` and ``embedding.py``; all register in :mod:`domainkd.evaluation.registry`.
"""

from __future__ import annotations

import re
import string
from collections import Counter

from domainkd.errors import DomainKDError
from domainkd.evaluation.refusal import is_refusal
from domainkd.evaluation.registry import (
    METRICS,
    Example,
    MetricContext,
    Row,
    aggregate,
    register_example_metric,
    register_metric,
)

__all__ = ["METRICS", "aggregate", "fact_present", "in_scope", "normalise_answer"]


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


def reference_answer(example: Example) -> str | None:
    """The reference answer an in-scope example is scored against (None: not applicable)."""
    answer = example.get("answer")
    return answer if in_scope(example) and isinstance(answer, str) and answer.strip() else None


@register_example_metric("fact_accuracy", "facts", True, "in-scope answers that state every key fact and do not refuse")
def fact_accuracy(prediction: str, example: Example) -> float | None:
    if not in_scope(example):
        return None
    facts = example.get("facts") or []
    if not facts:
        return None
    return float(not is_refusal(prediction) and all(fact_present(fact, prediction) for fact in facts))


@register_example_metric("exact_match", "qa", True, "SQuAD exact match with the reference answer after normalisation (in-scope)")
def exact_match(prediction: str, example: Example) -> float | None:
    reference = reference_answer(example)
    return None if reference is None else float(normalise_answer(prediction) == normalise_answer(reference))


@register_example_metric("token_f1", "qa", True, "SQuAD token F1 against the reference answer (in-scope)")
def token_f1(prediction: str, example: Example) -> float | None:
    reference = reference_answer(example)
    if reference is None:
        return None
    predicted, expected = normalise_answer(prediction).split(), normalise_answer(reference).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not predicted or not expected or common == 0:
        return float(predicted == expected)
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


@register_metric("mcq_loglik_accuracy", "multiple-choice", True, "multiple choice: the option with the highest summed log-likelihood is correct")
def mcq_loglik_accuracy(rows: list[Row], examples: list[Example], context: MetricContext) -> list[float | None]:
    from domainkd.evaluation.mcq import loglik_choice_accuracy

    return [loglik_choice_accuracy(row, example) for row, example in zip(rows, examples)]


@register_metric("mcq_generated_accuracy", "multiple-choice", True, "multiple choice: the option named in the generated answer is correct")
def mcq_generated_accuracy(rows: list[Row], examples: list[Example], context: MetricContext) -> list[float | None]:
    from domainkd.evaluation.mcq import generated_choice_accuracy

    return [generated_choice_accuracy(row, example) for row, example in zip(rows, examples)]


@register_example_metric("refusal_rate", "behaviour", True, "out-of-scope questions answered with a refusal")
def refusal_rate(prediction: str, example: Example) -> float | None:
    return None if in_scope(example) else float(is_refusal(prediction))


@register_example_metric("false_refusal_rate", "behaviour", False, "in-scope questions wrongly refused")
def false_refusal_rate(prediction: str, example: Example) -> float | None:
    return float(is_refusal(prediction)) if in_scope(example) else None


@register_metric(
    "hallucination_rate", "behaviour", False,
    "confident wrong answers: out of scope and not refused, or in scope, not refused and missing a key fact "
    "(or naming a wrong option); in-scope questions with neither facts nor options do not count",
)
def hallucination_rate(rows: list[Row], examples: list[Example], context: MetricContext) -> list[float | None]:
    from domainkd.evaluation.mcq import generated_choice_accuracy

    scores: list[float | None] = []
    for row, example in zip(rows, examples):
        prediction = row["prediction"]
        if is_refusal(prediction):
            scores.append(0.0)
        elif not in_scope(example):
            scores.append(1.0)
        elif example.get("facts"):
            scores.append(1.0 - (fact_accuracy(prediction, example) or 0.0))
        elif example.get("options"):
            scores.append(1.0 - (generated_choice_accuracy(row, example) or 0.0))
        else:
            scores.append(None)
    return scores


JUDGE_DESCRIPTIONS = {
    "judge_correctness": "LLM judge: the answer agrees with the reference answer (1–5 rubric mapped to 0–1)",
    "judge_faithfulness": "LLM judge: every claim of the answer is supported by the source text (1–5 mapped to 0–1)",
    "judge_relevance": "LLM judge: the answer addresses the question asked (1–5 mapped to 0–1)",
    "judge_coherence": "LLM judge: the answer is clear, well-formed and self-consistent (1–5 mapped to 0–1)",
}


def _judged(metric: str) -> None:
    def score_batch(rows: list[Row], examples: list[Example], context: MetricContext) -> list[float | None]:
        if context.judge is None:
            raise DomainKDError(f"metric {metric} needs a judge; set eval.judge in the config or drop the judge metrics.")
        key = ("judge", tuple(row["prediction"] for row in rows))
        if key not in context.cache:
            sources = context.sources or [None] * len(rows)
            context.cache[key] = context.judge(examples, [row["prediction"] for row in rows], sources)
        result = context.cache[key]
        context.failures[metric] = result.failures.get(metric, 0)
        return result.scores[metric]

    register_metric(metric, "judge", True, JUDGE_DESCRIPTIONS[metric])(score_batch)


for _metric in JUDGE_DESCRIPTIONS:
    _judged(_metric)
