"""The metric registry: name → batch scoring function, with family and direction declared.

Every metric scores a whole system's answers at once (embedding and judge metrics batch
their model calls) and returns one score per example: a float, or ``None`` where the metric
does not apply (fact accuracy on an out-of-scope question) or its judgement failed. Failures
are counted in :attr:`MetricContext.failures`, so an average never hides them.

Presets name metric lists: ``paper14`` is the second source paper's three families
(6 n-gram, 4 embedding, 4 LLM-judged); ``paper14_no_judge`` drops the judge.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from domainkd.config import DEFAULT_ENCODER

Example = dict[str, Any]
Row = dict[str, Any]
"""One system's answer to one example: at least ``prediction`` (text); MCQ rows also ``option_logliks``."""
BatchScore = Callable[[list[Row], list[Example], "MetricContext"], list[float | None]]

FAMILIES = ("facts", "qa", "n-gram", "embedding", "judge", "multiple-choice", "behaviour")


@dataclass
class MetricContext:
    """What metrics may need beyond the answers: an encoder, a judge, source texts; loaded lazily.

    One context scores one system; ``failures`` counts, per metric, the examples whose
    score could not be computed (e.g. the judge's reply did not parse).
    """

    encoder_reference: str = DEFAULT_ENCODER
    """Sentence encoder for the embedding metrics (a known name or a local directory)."""
    judge: Callable[[list[Example], list[str], list[str | None]], Any] | None = None
    """(examples, predictions, source texts) -> JudgeResult; None when no judge is configured."""
    sources: list[str | None] | None = None
    """Source text per example (for faithfulness), aligned with the rows."""
    failures: Counter[str] = field(default_factory=Counter)
    cache: dict[Any, Any] = field(default_factory=dict)
    """Results shared by metrics computed together (BERTScore P/R/F1, the judge's scores)."""

    def encoder(self) -> Any:
        """The loaded sentence encoder (one per reference per process)."""
        return _load_encoder(self.encoder_reference)


_ENCODERS: dict[str, Any] = {}


def _load_encoder(reference: str) -> Any:
    if reference not in _ENCODERS:
        from domainkd.retrieval.encoder import load_encoder

        _ENCODERS[reference] = load_encoder(reference, device="cpu")
    return _ENCODERS[reference]


@dataclass(frozen=True)
class Metric:
    """One registered metric."""

    name: str
    family: str
    higher_is_better: bool
    description: str
    score_batch: BatchScore

    def score(self, prediction: str, example: Example, context: MetricContext | None = None) -> float | None:
        """The score of a single answer (convenience over :attr:`score_batch`)."""
        return self.score_batch([{"prediction": prediction}], [example], context or MetricContext())[0]


METRICS: dict[str, Metric] = {}

PRESETS: dict[str, tuple[str, ...]] = {
    "paper14_no_judge": (
        "bleu", "chrf", "rouge_1", "rouge_2", "rouge_l", "meteor",
        "bertscore_precision", "bertscore_recall", "bertscore_f1", "embedding_cosine",
    ),
    "paper14": (
        "bleu", "chrf", "rouge_1", "rouge_2", "rouge_l", "meteor",
        "bertscore_precision", "bertscore_recall", "bertscore_f1", "embedding_cosine",
        "judge_correctness", "judge_faithfulness", "judge_relevance", "judge_coherence",
    ),
    "behaviour": ("refusal_rate", "false_refusal_rate", "hallucination_rate"),
    "multiple_choice": ("mcq_loglik_accuracy", "mcq_generated_accuracy"),
}


def register_metric(name: str, family: str, higher_is_better: bool, description: str) -> Callable[[BatchScore], BatchScore]:
    """Decorator adding a batch scoring function ``(rows, examples, context) -> scores`` to :data:`METRICS`."""
    if family not in FAMILIES:
        raise ValueError(f"metric family {family!r} is not one of {FAMILIES}")

    def add(function: BatchScore) -> BatchScore:
        METRICS[name] = Metric(name, family, higher_is_better, description, function)
        return function

    return add


def register_example_metric(name: str, family: str, higher_is_better: bool, description: str) -> Callable:
    """Decorator for a metric defined one answer at a time: ``(prediction, example) -> score``."""

    def add(function: Callable[[str, Example], float | None]) -> Callable[[str, Example], float | None]:
        def score_batch(rows: list[Row], examples: list[Example], context: MetricContext) -> list[float | None]:
            return [function(row["prediction"], example) for row, example in zip(rows, examples)]

        register_metric(name, family, higher_is_better, description)(score_batch)
        return function

    return add


def expand_metric_names(names: list[str]) -> list[str]:
    """Metric and preset names → metric names, presets expanded in place, duplicates dropped."""
    expanded: list[str] = []
    for name in names:
        for metric in PRESETS.get(name, (name,)):
            if metric not in expanded:
                expanded.append(metric)
    return expanded


def score_all(metric_names: list[str], rows: list[Row], examples: list[Example], context: MetricContext) -> dict[str, list[float | None]]:
    """Per-example scores of every named metric for one system's answers."""
    scores: dict[str, list[float | None]] = {}
    for name in metric_names:
        values = METRICS[name].score_batch(rows, examples, context)
        if len(values) != len(rows):
            raise RuntimeError(f"metric {name} returned {len(values)} scores for {len(rows)} answers")
        scores[name] = values
    return scores


def aggregate(scores: list[float | None]) -> dict[str, float | int | None]:
    """Mean over the examples a metric applies to, with the count (None-safe)."""
    valid = [score for score in scores if score is not None]
    return {"mean": sum(valid) / len(valid) if valid else None, "n": len(valid)}
