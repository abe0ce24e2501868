"""Evaluation: systems answer held-out questions; metrics from a registry score them."""

from domainkd.evaluation.metrics import METRICS, Metric, register_metric
from domainkd.evaluation.refusal import is_refusal
from domainkd.evaluation.runner import evaluate, load_questions
from domainkd.evaluation.systems import SYSTEMS, System

__all__ = ["METRICS", "SYSTEMS", "Metric", "System", "evaluate", "is_refusal", "load_questions", "register_metric"]
