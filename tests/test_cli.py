"""The CLI on bad input: one sentence on stderr, exit status 2, nothing half-written."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def domainkd(*args, cwd=None, env=None):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "domainkd.cli", *args], capture_output=True, text=True, cwd=cwd, env=environment, timeout=300
    )


def assert_one_sentence_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_config_file(tmp_path):
    assert_one_sentence_error(domainkd("run", str(tmp_path / "missing.yaml")), "missing.yaml does not exist")


def test_unknown_key(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  epochz: 2\n")
    assert_one_sentence_error(domainkd("train", str(tmp_path / "c.yaml")), "unknown key 'train.epochz'")


def test_empty_document_folder(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "c.yaml").write_text(f"run_dir: {tmp_path / 'run'}\ndata:\n  documents: docs\n")
    result = domainkd("data", str(tmp_path / "c.yaml"))
    assert_one_sentence_error(result, "has no readable .md, .txt, .html or .pdf text")
    assert not (tmp_path / "run" / "data" / "chunks.jsonl").exists()


def test_unknown_model_name(tmp_path, small_docs):
    (tmp_path / "c.yaml").write_text(
        f"run_dir: {tmp_path / 'run'}\nteacher:\n  model: gpt-17-ultra\ndata:\n  documents: {small_docs}\n"
    )
    assert domainkd("data", str(tmp_path / "c.yaml")).returncode == 0
    result = domainkd("teach", str(tmp_path / "c.yaml"))
    assert_one_sentence_error(result, "unknown model 'gpt-17-ultra'", "domainkd models list")
    assert not (tmp_path / "run" / "teach" / "train.jsonl").exists()


def test_data_dry_run_writes_nothing_and_prints_the_plan(tmp_path, small_docs, tiny_model):
    import json

    (tmp_path / "qa.csv").write_text("question,answer\nWhen does parking open?,06:40\n", encoding="utf-8")
    (tmp_path / "c.yaml").write_text(
        f"run_dir: {tmp_path / 'run'}\nstudent:\n  model: {tiny_model}\n"
        f"data:\n  documents: {small_docs}\n  qa_sets: [qa.csv]\n  chunk_tokens: 48\n  chunk_overlap_tokens: 8\n"
    )
    result = domainkd("data", str(tmp_path / "c.yaml"), "--dry-run", "--data-strategy", "context_qa,refusal")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["qa_pairs"] == 1 and summary["chunks"] >= 3
    written = summary["eval_writing"]["teacher_calls"]  # no eval.questions: the teacher writes held-out questions too
    assert summary["strategies"]["context_qa"]["teacher_calls"] + written == summary["teacher_calls"] and written > 0
    assert set(summary["strategies"]) == {"context_qa", "refusal"}
    assert not (tmp_path / "run").exists()
    result = domainkd("data", str(tmp_path / "c.yaml"), "--data-strategy", "refusal")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["strategies"]) == {"refusal"}
    assert (tmp_path / "run" / "data" / "qa_pairs.jsonl").is_file()


def test_a_rebase_only_run_needs_no_documents_but_other_strategies_do(tmp_path, tiny_model):
    import json

    rebase = "{datastore: store, instruction: Answer briefly., examples: [{input: Q, output: A}], top_k: 5}"
    (tmp_path / "c.yaml").write_text(
        f"run_dir: {tmp_path / 'run'}\nstudent:\n  model: {tiny_model}\n"
        f"data:\n  documents: null\n  strategies:\n    rebase: {rebase}\n"
    )
    result = domainkd("data", str(tmp_path / "c.yaml"), "--dry-run")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["chunks"] == 0 and summary["strategies"]["rebase"]["teacher_calls"] == 5
    (tmp_path / "c.yaml").write_text(f"run_dir: {tmp_path / 'run'}\ndata:\n  documents: null\n  strategies: {{refusal: {{}}}}\n")
    assert_one_sentence_error(domainkd("data", str(tmp_path / "c.yaml"), "--dry-run"), "data has no source", "rebase strategy")


def test_unknown_strategy_on_the_command_line(tmp_path, small_docs):
    (tmp_path / "c.yaml").write_text(f"run_dir: {tmp_path / 'run'}\ndata:\n  documents: {small_docs}\n")
    assert_one_sentence_error(domainkd("data", str(tmp_path / "c.yaml"), "--data-strategy", "magic"), "unknown data strategy 'magic'")


def test_malformed_record_file(tmp_path, small_docs):
    (tmp_path / "t.jsonl").write_text('{"a": 1}\n{oops\n')
    (tmp_path / "c.yaml").write_text(f"run_dir: {tmp_path / 'run'}\ndata:\n  documents: null\n  records: [t.jsonl]\n")
    result = domainkd("data", str(tmp_path / "c.yaml"))
    assert_one_sentence_error(result, "t.jsonl line 2 is not valid JSON")
    assert not (tmp_path / "run").exists()


def test_models_fetch_unknown_name():
    assert_one_sentence_error(domainkd("models", "fetch", "nonesuch"), "unknown model 'nonesuch'")


def test_bad_override():
    assert_one_sentence_error(domainkd("run", "examples/handbook/config.yaml", "--set", "epochs", cwd=REPO), "--set 'epochs'")


def test_models_list_shows_every_known_model(tmp_path):
    result = domainkd("models", "list", env={"DOMAINKD_CACHE": str(tmp_path)})
    assert result.returncode == 0
    for name in ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct", "all-minilm-l6-v2"):
        assert name in result.stdout
    assert f"cache: {tmp_path}" in result.stdout


def test_help_lists_every_stage():
    result = domainkd("--help")
    assert result.returncode == 0
    for command in ("run", "data", "teach", "train", "eval", "report", "models"):
        assert command in result.stdout


def test_unknown_command_is_a_usage_error_not_a_traceback():
    result = domainkd("frobnicate")
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr
