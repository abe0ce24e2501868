"""``domainkd compare``: which strategy wins on your questions, before anyone spends GPU hours.

Every strategy of ``compare.strategies`` (the base model as is, prompt crafting, RAG with any
model, the distilled student, the hybrid of student and retrieval, …) answers the same
evaluation questions and is scored by the same metrics, with paired significance tests. The
retrieval methods are measured on their own too (recall@k of each question's gold chunk).
Everything goes to ``RUN_DIR/compare/``: predictions per strategy (reused when nothing they
depend on changed), ``metrics.json`` and ``report.md/.html/.json``.
"""

from __future__ import annotations

from typing import Any

from domainkd.config import RunConfig
from domainkd.errors import DomainKDError
from domainkd.evaluation.runner import evaluate, load_questions
from domainkd.evaluation.systems import PromptResources, System, describe
from domainkd.io import write_json
from domainkd.paths import RunPaths

STAGE = "compare"


def compare(config: RunConfig) -> str:
    """Evaluate every configured strategy, measure retrieval, write the comparison report; return its Markdown."""
    from domainkd.reporting import report

    paths = chunked_run(config)
    check_ready(config, paths)
    systems = {name: System(describe(strategy, config), strategy) for name, strategy in config.compare.strategies.items()}
    resources = PromptResources(config, paths)  # one encoder and one set of retrievers for answers and recall
    metrics = evaluate(config, systems, stage=STAGE, resources=resources)
    metrics["retrieval"] = retrieval_quality(config, resources)
    write_json(paths.stage_metrics(STAGE), metrics)
    return report(config, stage=STAGE)


def check_ready(config: RunConfig, paths: RunPaths) -> None:
    """Fail before any model runs when a strategy needs something the run does not have yet."""
    for name, strategy in config.compare.strategies.items():
        if strategy.model == "student" and not (paths.model / "model.safetensors").is_file():
            raise DomainKDError(
                f"strategy {name!r} uses the distilled student, but {paths.model} holds no trained model; "
                "run `domainkd run CONFIG` (or `domainkd train CONFIG`) first, or drop that strategy."
            )
        pool = config.compare.few_shot_pool or paths.train_set
        if strategy.few_shot and not pool.is_file():
            raise DomainKDError(
                f"strategy {name!r} takes few-shot examples from {pool}, which does not exist; run "
                "`domainkd teach CONFIG` first, set compare.few_shot_pool to a question/answer JSONL, or set few_shot: 0."
            )


def retrieval_quality(config: RunConfig, resources: PromptResources | None = None) -> dict[str, Any]:
    """Method -> recall@k, document recall@k and MRR of the gold chunk over the in-scope questions."""
    from domainkd.retrieval.chunks import RETRIEVAL_METHODS, retrieval_recall

    questions = load_questions(config)
    if not any(question.get("source") for question in questions):
        return {}  # no gold sources to measure against
    resources = resources or PromptResources(config, chunked_run(config))
    return {
        method: retrieval_recall(resources.retriever(method), questions, config.retrieval.recall_at)
        for method in RETRIEVAL_METHODS
    }


def search_chunks(config: RunConfig, query: str, method: str | None = None, top_k: int | None = None) -> list[Any]:
    """The chunks ``query`` retrieves, best first (`domainkd retrieve --query`)."""
    resources = PromptResources(config, chunked_run(config))
    return resources.retriever(method or config.retrieval.method).search([query], top_k or config.retrieval.top_k)[0]


def chunked_run(config: RunConfig) -> RunPaths:
    """The run's paths, its documents read and chunked first when the data stage has not run (no teacher calls)."""
    from domainkd.data.build import prepare_data

    paths = RunPaths(config.output_dir)
    if not paths.chunks.is_file():
        prepare_data(config)
    return paths
