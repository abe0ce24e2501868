"""End to end on tiny random models: every stage, files on disk, resumable reruns."""

import json

import pytest
from safetensors.torch import load_file

from domainkd import evaluate, prepare_data, report, run, teach, train
from domainkd.errors import DomainKDError
from domainkd.io import read_jsonl
from domainkd.paths import RunPaths
from domainkd.training.sft import _resumable_checkpoint


def test_every_stage_end_to_end(tiny_config, capsys):
    text = run(tiny_config)
    paths = RunPaths(tiny_config.output_dir)

    chunks = read_jsonl(paths.chunks)
    assert [chunk["document"] for chunk in chunks] == ["01-leave.md", "02-parking.md", "03-security.md"]

    examples = read_jsonl(paths.train_set)
    assert examples, "refusal examples at least"
    assert all({"id", "question", "answer", "strategy", "chunk_id", "document"} <= set(e) for e in examples)
    from datasets import load_dataset

    assert len(load_dataset("json", data_files=str(paths.train_set), split="train")) == len(examples)
    summary = json.loads(paths.teach_summary.read_text())
    assert summary["examples"] == len(examples)
    assert summary["rejected"] == len(read_jsonl(paths.rejected))

    weights = load_file(paths.model / "model.safetensors")
    assert weights, "merged model saved as safetensors"
    assert (paths.model / "tokenizer.json").is_file()

    metrics = json.loads(paths.metrics.read_text())
    assert set(metrics["systems"]) == {"base_student", "student", "teacher_closed_book", "teacher_with_context"}
    assert metrics["systems"]["student"]["scores"]["fact_accuracy"]["n"] == 2
    assert metrics["systems"]["student"]["scores"]["refusal_rate"]["n"] == 1
    for system in metrics["systems"]:
        rows = read_jsonl(paths.predictions(system))
        assert [row["id"] for row in rows] == ["q1", "q2", "o1"]
        assert all("prediction" in row and "scores" in row for row in rows)

    assert "| system | fact_accuracy ↑" in text
    assert "| student |" in text
    assert paths.report.read_text() == text
    assert {"bleu", "meteor", "bertscore_f1", "hallucination_rate"} <= set(metrics["metrics"])
    assert metrics["comparisons"]["token_f1"][0].keys() >= {"a", "b", "p_holm", "significant"}
    assert "## Significant differences" in text
    page = paths.report_html.read_text()
    assert page.count("<svg") >= 3 and "Per-example" in page
    assert json.loads(paths.report_json.read_text()) == metrics


def test_rerun_reuses_answers_checkpoints_and_predictions(tiny_config, monkeypatch):
    run(tiny_config)
    paths = RunPaths(tiny_config.output_dir)
    stored = paths.answer_store.stat().st_size
    predictions = paths.predictions("student").read_text()

    import domainkd.teachers.hf as hf

    def no_generation(self, conversations, max_new_tokens=None):
        raise AssertionError("teacher asked again")

    monkeypatch.setattr(hf.HFTeacher, "generate", no_generation)
    teach(tiny_config)  # everything comes from the store
    import domainkd.evaluation.runner as runner

    monkeypatch.setattr(runner, "_generate", lambda *a, **k: pytest.fail("evaluation regenerated"))
    evaluate(tiny_config)
    assert paths.predictions("student").read_text() == predictions
    assert paths.answer_store.stat().st_size >= stored


def test_lora_training_saves_adapter_and_merged_model(tiny_config):
    tiny_config.train.method = "lora"
    tiny_config.train.lora_r = 4
    prepare_data(tiny_config)
    teach(tiny_config)
    summary = train(tiny_config)
    paths = RunPaths(tiny_config.output_dir)
    assert summary["method"] == "lora" and summary["steps"] >= 1
    assert (paths.adapter / "adapter_model.safetensors").is_file()
    merged = load_file(paths.model / "model.safetensors")
    assert not any("lora" in name for name in merged)


def test_training_resumes_from_last_checkpoint(tiny_config):
    tiny_config.train.epochs = 2
    tiny_config.train.save_steps = 1
    prepare_data(tiny_config)
    teach(tiny_config)
    first = train(tiny_config)
    paths = RunPaths(tiny_config.output_dir)
    checkpoints = sorted(paths.checkpoints.glob("checkpoint-*"))
    assert checkpoints
    written = {path.name: path.stat().st_mtime_ns for path in paths.checkpoints.glob("checkpoint-*")}
    again = train(tiny_config)  # resumes at the final checkpoint: no further steps
    assert {path.name: path.stat().st_mtime_ns for path in paths.checkpoints.glob("checkpoint-*")} == written
    assert again == first and again["train_loss"] > 0  # the finished run's loss and time stand, not 0.0
    assert json.loads(paths.train_summary.read_text(encoding="utf-8")) == first


def test_changed_training_inputs_start_afresh(tiny_config, capsys):
    prepare_data(tiny_config)
    teach(tiny_config)
    train(tiny_config)
    paths = RunPaths(tiny_config.output_dir)
    last_old_write = max(path.stat().st_mtime_ns for path in paths.checkpoints.glob("checkpoint-*"))
    tiny_config.train.learning_rate = 1e-3
    _resumable_checkpoint(tiny_config, paths)  # what train() does first: the old run's summary goes too
    assert not paths.train_summary.exists() and not paths.checkpoints.exists()
    assert "training inputs changed since the last checkpoint; starting afresh" in capsys.readouterr().out
    train(tiny_config)
    tiny_config.system_prompt = "Another assistant."  # in every tokenised example, so in the fingerprint
    _resumable_checkpoint(tiny_config, paths)
    assert "starting afresh" in capsys.readouterr().out
    train(tiny_config)
    new = sorted(paths.checkpoints.glob("checkpoint-*"))
    assert new and all(path.stat().st_mtime_ns > last_old_write for path in new)


def test_stages_need_their_inputs(tiny_config):
    with pytest.raises(DomainKDError, match="run `domainkd data CONFIG` first"):
        teach(tiny_config)
    with pytest.raises(DomainKDError, match="run `domainkd teach CONFIG` first"):
        train(tiny_config)
    with pytest.raises(DomainKDError, match="run `domainkd eval CONFIG` first"):
        report(tiny_config)


def test_every_source_and_strategy_through_teach_and_train(tiny_config, tmp_path):
    """Documents, a table, knowledge-graph triples and a QA set, through every teacher-free and teacher strategy."""
    (tmp_path / "rooms.csv").write_text("room,floor,capacity\nAtlas,2,12\nBoreal,3,8\n", encoding="utf-8")
    (tmp_path / "kg.jsonl").write_text(
        json.dumps({"subject": "Form HR-22", "predicate": "purpose", "object": "leave requests"}) + "\n", encoding="utf-8"
    )
    (tmp_path / "qa.csv").write_text("question,answer\nWho issues parking permits?,Tomas Brenner\n", encoding="utf-8")
    strategies = {
        "context_qa": {"questions_per_fact": 1},
        "general": {"instructions_per_chunk": 1},
        "unstructured": {"rewrite": True},
        "structured": {"verbalise": True, "keep_template": True},
        "qa_set": {},
        "refusal": {"max_examples": 5},
    }
    config = tiny_config.model_copy(deep=True)
    config.data.records = [tmp_path / "rooms.csv", tmp_path / "kg.jsonl"]
    config.data.qa_sets = [tmp_path / "qa.csv"]
    config.data.strategies = strategies
    summary = prepare_data(config)
    assert (summary["records"], summary["qa_pairs"]) == (3, 1)
    assert summary["strategies"]["structured"]["examples"] >= 5  # 2 rooms x 2 columns + 1 triple
    result = teach(config)
    paths = RunPaths(config.output_dir)
    examples, rejected = read_jsonl(paths.train_set), read_jsonl(paths.rejected)
    by_strategy = {e["strategy"] for e in examples}
    assert {"unstructured", "structured", "qa_set", "refusal"} <= by_strategy  # those keep raw/template forms
    assert any(e["strategy"] == "structured" and e["answer"] == "The capacity of Atlas is 12." for e in examples)
    assert all(e["chunk_id"] for e in examples if e["strategy"] in ("structured", "qa_set", "unstructured"))
    assert result["examples"] == len(examples) and all(r["reason"] for r in rejected)
    assert any(e.get("text") and e.get("question") is None for e in examples)
    summary = train(config)
    assert summary["examples"] == len(examples)


def test_dry_run_counts_only_the_configured_teachers_stored_answers(tiny_config):
    from domainkd.teachers import AnswerStore

    mine = f"hf:{tiny_config.teacher.model}"
    with AnswerStore(RunPaths(tiny_config.output_dir).answer_store) as store:  # e.g. copied from a run with another teacher
        store.put_many([
            {"key": f"k{n}", "teacher": teacher, "settings": {}, "prompt": [], "answer": "A"}
            for n, teacher in enumerate([mine, "hf:qwen2.5-coder-1.5b-instruct", "hf:qwen2.5-coder-1.5b-instruct"])
        ] + [{"key": "failed", "teacher": mine, "settings": {}, "prompt": [], "error": "timeout"}])
    assert prepare_data(tiny_config, dry_run=True)["already_answered"] == 1
