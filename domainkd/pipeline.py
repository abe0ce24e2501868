"""``run``: every stage in order, each reading the previous stage's outputs from the run directory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domainkd.config import RunConfig
from domainkd.data.build import prepare_data, teach
from domainkd.evaluation import evaluate
from domainkd.reporting import report
from domainkd.training import train

STAGES: dict[str, Callable[[RunConfig], Any]] = {
    "data": prepare_data,
    "teach": teach,
    "train": train,
    "eval": evaluate,
    "report": report,
}


def run(config: RunConfig, stages: list[str] | None = None) -> str:
    """Run ``stages`` (default: all) in pipeline order and return the report text.

    Stages whose outputs exist are cheap to repeat: teacher answers come from the answer
    store, training resumes from its last checkpoint, evaluation reuses matching predictions.
    """
    selected = stages or list(STAGES)
    result: Any = None
    for name in STAGES:
        if name in selected:
            print(f"== domainkd {name}", flush=True)
            result = STAGES[name](config)
    return result if isinstance(result, str) else ""
