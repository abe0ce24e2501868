"""Evaluation: systems answer held-out questions; metrics from a registry score them."""

from domainkd.evaluation import embedding, metrics, ngram  # noqa: F401 - importing registers the metrics
from domainkd.evaluation.refusal import is_refusal
from domainkd.evaluation.registry import METRICS, PRESETS, Metric, MetricContext, register_metric
from domainkd.evaluation.runner import evaluate, load_questions
from domainkd.evaluation.systems import SYSTEMS, System

__all__ = [
    "METRICS", "PRESETS", "SYSTEMS", "Metric", "MetricContext", "System",
    "evaluate", "is_refusal", "load_questions", "register_metric",
]
