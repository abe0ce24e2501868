"""`domainkd compare` end to end on the tiny model: every strategy answers, is scored, compared and reported."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from domainkd.cli import app
from domainkd.compare import compare
from domainkd.config import dump_config
from domainkd.errors import DomainKDError
from domainkd.io import read_jsonl
from domainkd.paths import RunPaths

STRATEGIES = {
    "base": {"model": "base_student"},
    "crafted": {"model": "base_student", "template": "expert", "few_shot": 2, "chain_of_thought": True},
    "rag": {"model": "base_student", "retrieval": "bm25", "top_k": 1},
    "distilled": {"model": "student"},
    "hybrid": {"model": "student", "retrieval": "hybrid", "top_k": 2},
}
POOL = [
    {"question": "How many days of leave do staff get?", "answer": "27 days."},
    {"question": "Who issues parking permits?", "answer": "Tomas Brenner."},
    {"question": "What is the capital of France?", "answer": "I don't know. The handbook does not cover that."},
]


@pytest.fixture()
def ready(tiny_config, tiny_model):
    """A run with a 'trained' student (the tiny model itself) and a training set for few-shot examples."""
    tiny_config.compare = tiny_config.compare.model_validate({"strategies": STRATEGIES})
    tiny_config.eval.metrics = ["fact_accuracy", "token_f1", "refusal_rate"]
    paths = RunPaths(tiny_config.output_dir)
    shutil.copytree(tiny_model, paths.model)
    paths.train_set.parent.mkdir(parents=True, exist_ok=True)
    paths.train_set.write_text("".join(json.dumps(row) + "\n" for row in POOL), encoding="utf-8")
    return tiny_config


def test_compare_runs_every_strategy_and_reports_winners_cost_and_retrieval(ready, monkeypatch) -> None:
    text = compare(ready)
    paths = RunPaths(ready.output_dir)
    metrics = json.loads((paths.root / "compare" / "metrics.json").read_text(encoding="utf-8"))
    assert list(metrics["systems"]) == list(STRATEGIES)
    assert metrics["systems"]["hybrid"]["description"] == "distilled student + hybrid retrieval (top 2)"
    costs = {name: entry["cost"] for name, entry in metrics["systems"].items()}
    assert costs["rag"]["prompt_tokens"] > costs["base"]["prompt_tokens"]  # the excerpt is in the prompt
    assert costs["crafted"]["prompt_tokens"] > costs["base"]["prompt_tokens"]  # so are the shots
    rag_rows = read_jsonl(paths.predictions("rag", "compare"))
    assert rag_rows[1]["retrieved"][0].startswith("02-parking.md")  # "Who hands out parking permits?"
    assert all("raw" in row for row in read_jsonl(paths.predictions("crafted", "compare")))
    assert set(metrics["comparisons"]) == {"fact_accuracy", "token_f1", "refusal_rate"}
    assert set(metrics["retrieval"]) == {"bm25", "dense", "hybrid"}
    for entry in metrics["retrieval"].values():
        assert entry["questions"] == 2 and set(entry["recall_at"]) == {"1", "3", "5", "10"}
        assert entry["recall_at"]["10"] == 1.0  # three documents: everything is within 10
    for heading in ("## Winner per metric", "## Inference cost", "## Retrieval", "## Significant differences"):
        assert heading in text
    html = (paths.root / "compare" / "report.html").read_text(encoding="utf-8")
    assert "Winner per metric" in html and "tokens per answer" in html and "recall@1" in html
    assert (paths.root / "compare" / "report.json").is_file() and not paths.report.exists()  # eval's report untouched

    def no_generation(*args, **kwargs):
        raise AssertionError("a rerun with nothing changed must not generate")

    monkeypatch.setattr("domainkd.evaluation.runner._answer", no_generation)
    assert compare(ready) == text


def test_compare_stops_before_any_model_when_the_student_or_pool_is_missing(tiny_config, tiny_model) -> None:
    tiny_config.compare = tiny_config.compare.model_validate({"strategies": {"distilled": {"model": "student"}}})
    with pytest.raises(DomainKDError, match="holds no trained model; run `domainkd run CONFIG`"):
        compare(tiny_config)
    tiny_config.compare = tiny_config.compare.model_validate({"strategies": {"shots": {"few_shot": 2}}})
    with pytest.raises(DomainKDError, match="set few_shot: 0"):
        compare(tiny_config)
    assert not (RunPaths(tiny_config.output_dir).root / "compare").exists()


def test_cli_compare_narrows_strategies_and_rejects_unknown_ones(ready, tmp_path) -> None:
    config_path = tmp_path / "config.yaml"
    dump_config(ready, config_path)
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(config_path), "--answer-strategy", "nonesuch"])
    message = "--answer-strategy 'nonesuch' is not in compare.strategies; choose from base, crafted"
    assert result.exit_code != 0 and message in str(result.exception)
    result = runner.invoke(app, ["compare", str(config_path), "--answer-strategy", "base,rag"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((RunPaths(ready.output_dir).root / "compare" / "metrics.json").read_text(encoding="utf-8"))
    assert list(metrics["systems"]) == ["base", "rag"]


def test_cli_retrieve_shows_hits_and_recall(tiny_config, tmp_path) -> None:
    config_path = tmp_path / "config.yaml"
    dump_config(tiny_config, config_path)
    runner = CliRunner()
    result = runner.invoke(app, ["retrieve", str(config_path), "--query", "parking permit cost", "--retrieval", "bm25", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("1. ") and "02-parking.md" in result.output and "85 euros" in result.output
    result = runner.invoke(app, ["retrieve", str(config_path), "--retrieval", "none", "--query", "x"])
    assert str(result.exception) == "--retrieval 'none' is unknown; choose from bm25, dense, hybrid."
    result = runner.invoke(app, ["retrieve", str(config_path)])
    assert result.exit_code == 0, result.output
    rows = {line.split(" | ")[0].strip("| "): line for line in result.output.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"bm25", "dense", "hybrid"} and "recall@10" in rows["method"]
