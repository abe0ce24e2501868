"""Evaluation: systems answer held-out questions; metrics from a registry score them."""

from domainkd.evaluate.metrics import METRICS, Metric, register_metric
from domainkd.evaluate.refusal import is_refusal
from domainkd.evaluate.runner import evaluate, load_questions
from domainkd.evaluate.systems import SYSTEMS, System

__all__ = ["METRICS", "SYSTEMS", "Metric", "System", "evaluate", "is_refusal", "load_questions", "register_metric"]
