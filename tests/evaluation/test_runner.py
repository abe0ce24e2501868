"""The eval stage on tiny models: registry metrics, per-example scores, judge failures counted, MCQ log-likelihoods."""

import json

from domainkd.config import TeacherConfig
from domainkd.data.build import prepare_data
from domainkd.evaluation import evaluate
from domainkd.io import read_jsonl
from domainkd.paths import RunPaths


def test_eval_keeps_per_example_scores_cis_categories_and_cost(tiny_config):
    tiny_config.eval.systems = ["base_student", "teacher_closed_book"]
    tiny_config.eval.metrics = ["token_f1", "bleu", "refusal_rate"]
    metrics = evaluate(tiny_config)
    paths = RunPaths(tiny_config.output_dir)
    rows = read_jsonl(paths.predictions("base_student"))
    assert [sorted(row["scores"]) for row in rows] == [["bleu", "refusal_rate", "token_f1"]] * 3
    assert rows[2]["scores"]["token_f1"] is None and rows[2]["scores"]["refusal_rate"] in (0.0, 1.0)
    assert all(row["seconds"] > 0 and row["answer_tokens"] >= 0 for row in rows)
    summary = metrics["systems"]["base_student"]["scores"]["token_f1"]
    assert summary["n"] == 2 and summary["ci_low"] <= summary["mean"] <= summary["ci_high"]
    assert metrics["metrics"]["bleu"]["family"] == "n-gram"
    assert metrics["categories"]["token_f1"]["base_student"].keys() == {"uncategorised"}
    assert metrics["systems"]["base_student"]["cost"]["seconds_per_answer"] > 0
    [pair] = metrics["comparisons"]["token_f1"]  # same model twice: no difference
    assert (pair["a"], pair["b"], pair["mean_difference"], pair["significant"]) == ("base_student", "teacher_closed_book", 0.0, False)


def test_unparseable_judge_replies_are_counted_failures_never_nan(tiny_config, tiny_model):
    tiny_config.eval.systems = ["base_student"]
    tiny_config.eval.judge = TeacherConfig(model=str(tiny_model), max_new_tokens=8)
    tiny_config.eval.metrics = ["token_f1", "judge_correctness", "judge_faithfulness"]
    prepare_data(tiny_config)  # the chunks give faithfulness its source text
    metrics = evaluate(tiny_config)
    scores = metrics["systems"]["base_student"]["scores"]
    assert scores["judge_correctness"] == {"mean": None, "n": 0, "ci_low": None, "ci_high": None, "failures": 2}
    assert scores["judge_faithfulness"]["failures"] == 2  # both in-scope questions have a source section
    assert (RunPaths(tiny_config.output_dir).root / "eval" / "judge.sqlite").is_file()
    assert "NaN" not in RunPaths(tiny_config.output_dir).metrics.read_text()


def test_multiple_choice_questions_get_option_logliks(tiny_config, tmp_path):
    teleqna = {
        f"question {i}": {
            "question": f"Which badge fee applies in case {i}?",
            "option 1": "15 euros", "option 2": "85 euros", "option 3": "27 days",
            "answer": "option 1: 15 euros", "explanation": "Replacement badges cost 15 euros.", "category": "Security",
        }
        for i in range(3)
    }
    questions = tmp_path / "mcq.json"
    questions.write_text(json.dumps(teleqna), encoding="utf-8")
    tiny_config.eval.questions = questions
    tiny_config.eval.systems = ["base_student"]
    tiny_config.eval.metrics = ["multiple_choice", "hallucination_rate"]
    metrics = evaluate(tiny_config)
    rows = read_jsonl(RunPaths(tiny_config.output_dir).predictions("base_student"))
    assert all(len(row["option_logliks"]) == 3 and all(value[0] < 0 for value in row["option_logliks"]) for row in rows)
    loglik = metrics["systems"]["base_student"]["scores"]["mcq_loglik_accuracy"]
    assert loglik["n"] == 3 and loglik["mean"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert metrics["categories"]["mcq_generated_accuracy"]["base_student"].keys() == {"Security"}


def test_answers_from_excerpts_are_checked_and_a_new_check_needs_no_new_generation(tiny_config, monkeypatch):
    import domainkd.evaluation.runner as runner

    prepare_data(tiny_config)
    tiny_config.eval.systems = ["base_student_with_retrieval", "teacher_with_context"]
    tiny_config.eval.metrics = ["fact_accuracy", "refusal_rate"]
    answers = {"How much holiday do full-timers get?": "Full-time staff receive 27 days.",
               "Who hands out parking permits?": "Permits come from Maria Lopez.",  # a name no excerpt holds
               "What is the capital of Peru?": "Lima is the capital of Peru."}
    generated = []

    def fake_answer(reference, conversations, questions, config, max_new_tokens, with_logliks, label, dtype):
        generated.append(label)
        return [{"prediction": answers[q["question"]], "seconds": 0.1, "answer_tokens": 5, "prompt_tokens": 50} for q in questions]

    monkeypatch.setattr(runner, "_answer", fake_answer)
    metrics = evaluate(tiny_config)
    rows = {row["id"]: row for row in read_jsonl(RunPaths(tiny_config.output_dir).predictions("base_student_with_retrieval"))}
    assert rows["q1"]["prediction"] == "Full-time staff receive 27 days." and "unchecked" not in rows["q1"]
    assert rows["q2"]["prediction"] == tiny_config.refusal_text
    assert rows["q2"]["unchecked"] == "Permits come from Maria Lopez."
    assert rows["o1"]["prediction"] == tiny_config.refusal_text  # the excerpts say nothing of Lima
    assert metrics["systems"]["base_student_with_retrieval"]["scores"]["refusal_rate"]["mean"] == 1.0
    reading = metrics["systems"]["base_student_with_retrieval"]["reading"]
    # q1's excerpts held 27 and it was stated; q2 was refused by the check (Brenner held or not, it scores 0)
    assert reading["answer_check"] == {"in_scope": 1, "in_scope_right": 0, "out_of_scope": 1}
    assert reading["excerpts_hold_facts"]["n"] + reading["excerpts_miss_facts"]["n"] == 2
    assert reading["excerpts_hold_facts"] == {"mean": 0.5, "n": 2}  # the small documents fit in 3 excerpts
    assert "reading" not in metrics["systems"]["teacher_with_context"]  # the oracle is given its source
    tiny_config.retrieval.answer_check = None
    evaluate(tiny_config)
    rows = {row["id"]: row for row in read_jsonl(RunPaths(tiny_config.output_dir).predictions("base_student_with_retrieval"))}
    assert rows["q2"]["prediction"] == "Permits come from Maria Lopez." and "unchecked" not in rows["q2"]
    assert len(generated) == 2  # one generation per system: the second evaluation reused the generated answers


def test_the_teacher_answers_in_its_configured_number_format_and_the_students_in_float32(tiny_config, monkeypatch):
    import torch

    import domainkd.evaluation.runner as runner

    prepare_data(tiny_config)
    tiny_config.eval.systems = ["base_student", "teacher_with_context"]
    tiny_config.eval.metrics = ["fact_accuracy"]
    tiny_config.teacher.dtype = "bfloat16"
    loaded = {}
    original = runner.load_causal_lm

    def recording(reference, dtype=torch.float32, trust_remote_code=False):
        model, tokenizer = original(reference, dtype=dtype)
        loaded.setdefault(len(loaded), (reference, dtype, next(model.parameters()).dtype))
        return model, tokenizer

    monkeypatch.setattr(runner, "load_causal_lm", recording)
    evaluate(tiny_config)
    assert sorted(str(entry[2]) for entry in loaded.values()) == ["torch.bfloat16", "torch.float32"]
    fingerprints = {}
    for system in ("base_student", "teacher_with_context"):
        fingerprints[system] = read_jsonl(RunPaths(tiny_config.output_dir).predictions(system))[0]["fingerprint"]
    tiny_config.teacher.dtype = "float32"  # another number format: the teacher's answers are generated again
    loaded.clear()
    evaluate(tiny_config)
    assert [entry[2] for entry in loaded.values()] == [torch.float32]
    teacher_rows = read_jsonl(RunPaths(tiny_config.output_dir).predictions("teacher_with_context"))
    assert teacher_rows[0]["fingerprint"] != fingerprints["teacher_with_context"]


def test_students_are_asked_back_the_training_questions_of_their_own_kind(tiny_config, monkeypatch):
    import domainkd.evaluation.runner as runner
    from domainkd.io import write_jsonl

    prepare_data(tiny_config)
    paths = RunPaths(tiny_config.output_dir)
    write_jsonl(paths.train_set, [
        {"id": "ex1", "strategy": "context_qa", "question": "How long is the leave allowance?",
         "answer": "Full-time staff receive 27 days.", "document": "01-leave.md"},
        {"id": "ex2", "strategy": "raft", "source_strategy": "context_qa", "variant": "with_answer",
         "question": "Who issues the permits?", "answer": "Permits are issued by Tomas Brenner.",
         "document": "02-parking.md", "prompt": "Document excerpts: ..."},
        {"id": "ex3", "strategy": "raft", "source_strategy": "refusal", "variant": "refusal",
         "question": "What is the capital of Chile?", "answer": tiny_config.refusal_text, "prompt": "Document excerpts: ..."},
    ])
    tiny_config.eval.systems = ["base_student", "base_student_with_retrieval"]
    tiny_config.eval.metrics = ["fact_accuracy"]
    tiny_config.retrieval.answer_check = None
    asked: dict[str, list[str]] = {}

    def fake_answer(reference, conversations, questions, config, max_new_tokens, with_logliks, label, dtype):
        asked[label] = [question["question"] for question in questions]
        return [{"prediction": "Tomas Brenner, 27 days.", "seconds": 0.1, "answer_tokens": 5, "prompt_tokens": 50}
                for _ in questions]

    monkeypatch.setattr(runner, "_answer", fake_answer)
    metrics = evaluate(tiny_config)
    recall = {label: questions for label, questions in asked.items() if "train_recall" in label}
    [closed_book] = [questions for label, questions in recall.items() if "base_student-train_recall" in label]
    [reading] = [questions for label, questions in recall.items() if "base_student_with_retrieval-train_recall" in label]
    assert (closed_book, reading) == (["How long is the leave allowance?"], ["Who issues the permits?"])
    for system in ("base_student", "base_student_with_retrieval"):
        knowledge = metrics["systems"][system]["knowledge"]
        # q1's 27 is in a closed-book answer, q2's Brenner only in a RAFT copy's: both covered
        assert knowledge["covered"] == {"mean": 1.0, "n": 2} and knowledge["not_covered"]["n"] == 0
        assert knowledge["train_recall"] == {"mean": 1.0, "n": 1}
