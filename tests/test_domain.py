"""A config for another domain: every prompt names that domain and none of the handbook's words, and a
run without an evaluation file gets teacher-written held-out questions, kept out of training."""

from __future__ import annotations

import json
import re

import pytest

from domainkd import evaluate, prepare_data, report, teach
from domainkd.config import config_from_dict
from domainkd.data import grounding, prompts
from domainkd.evaluation.judge import judge_prompt
from domainkd.evaluation.prompting import TEMPLATES, apply_template
from domainkd.evaluation.systems import excerpt_prompt, source_prompt
from domainkd.io import read_jsonl
from domainkd.paths import RunPaths
from domainkd.teachers.base import Reply

HANDBOOK_WORDS = re.compile(r"\b(handbook|employees?|organi[sz]ations?'?s?|staff|orsolva|colleague'?s? handbook)\b", re.IGNORECASE)
DOMAIN = {"documents": "biomedical abstracts", "askers": "clinicians"}
ABSTRACTS = {
    "ferrovan.md": (
        "# Ferrovan in septic shock\n\nIn a trial of 412 patients at Kelmont General, ferrovan lowered 28-day mortality "
        "to 24 percent. The trial was led by Anja Rusk and ran for 30 months.\n"
    ),
    "night-shifts.md": (
        "# Sleep on night shifts\n\nNurses on rotating night shifts slept 5.2 hours a day on average. The Halden cohort "
        "followed 96 nurses for 18 months.\n"
    ),
}


def reply(conversation) -> str:
    """What a small teacher might write, keyed on the request's system message."""
    system, user = conversation[0]["content"], conversation[-1]["content"]
    title = user.split("\n", 1)[0].removeprefix("Section: ")
    fact = user.split("Fact: ", 1)[-1]
    if system == prompts.qa_system(config_from_dict({"domain": DOMAIN}).domain):
        return f"Question: What do the {title.lower()} results show?\nAnswer: {fact}"
    if system == prompts.eval_question_system(config_from_dict({"domain": DOMAIN}).domain):
        return f"Question: I treat {title.lower()} cases; what should I expect to see, in numbers?"
    if system == prompts.eval_unanswerable_system(config_from_dict({"domain": DOMAIN}).domain):
        return f"Which insurer pays for {title.lower()} care abroad?"
    if "one word: yes or no" in system:  # yes for the held-out questions below, no for the out-of-scope ones
        return "yes" if user.rsplit("Question: ", 1)[-1].startswith("I treat") else "no"
    return f"What does the evidence say on {title.lower()}?"


@pytest.fixture()
def domain_config(tmp_path, tiny_model, monkeypatch):
    docs = tmp_path / "abstracts"
    docs.mkdir()
    for name, text in ABSTRACTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    asked = []

    def generate_stream(self, conversations, max_new_tokens=None, expect_json=False):
        asked.extend(conversations)
        for index, conversation in enumerate(conversations):
            yield index, Reply(reply(conversation))

    import domainkd.teachers.hf as hf

    monkeypatch.setattr(hf.HFTeacher, "generate_stream", generate_stream)
    config = config_from_dict({
        "name": "abstracts",
        "run_dir": str(tmp_path / "run"),
        "domain": DOMAIN,
        "student": {"model": str(tiny_model)},
        "teacher": {"model": str(tiny_model), "batch_size": 4, "max_new_tokens": 16},
        "data": {
            "documents": str(docs),
            "strategies": {
                "context_qa": {"questions_per_fact": 2, "paraphrases_per_question": 1},
                "general": {"instructions_per_chunk": 1},
                "unstructured": {"rewrite": True},
                "refusal": {"unanswerable_per_chunk": 1},
            },
        },
        "train": {"epochs": 1, "batch_size": 8, "max_length": 96},
        "eval": {"systems": ["base_student"], "metrics": ["fact_accuracy", "refusal_rate"], "max_new_tokens": 8,
                 "writing": {"in_scope": 2, "out_of_scope": 3}},
    })
    return config, asked


def test_prompts_of_another_domain_hold_none_of_the_handbooks_words(domain_config):
    config, asked = domain_config
    prepare_data(config)
    teach(config)
    assert asked, "the teacher was never asked"
    sent = "\n".join(message["content"] for conversation in asked for message in conversation)
    assert not HANDBOOK_WORDS.search(sent), HANDBOOK_WORDS.search(sent)
    systems = {conversation[0]["content"] for conversation in asked}
    assert prompts.qa_system(config.domain) in systems and prompts.eval_question_system(config.domain) in systems
    assert "clinicians" in prompts.qa_system(config.domain) and "biomedical abstracts" in prompts.paraphrase_system(config.domain)
    # the student's and the judge's prompts
    question = {"question": "How far does ferrovan lower mortality?", "answer": "To 24 percent."}
    student_facing = [
        config.system_prompt, config.refusal_text,
        *(apply_template(name, question["question"], config.refusal_text, config.domain.documents) for name in TEMPLATES),
        source_prompt(question["question"], ABSTRACTS["ferrovan.md"], config.refusal_text),
        excerpt_prompt(question["question"], [], config.refusal_text),
        *(message["content"] for message in judge_prompt(question, "24 percent.", ABSTRACTS["ferrovan.md"], config.domain.documents)),
    ]
    assert not any(HANDBOOK_WORDS.search(text) for text in student_facing)
    assert "biomedical abstracts" in config.system_prompt and "biomedical abstracts" in apply_template(
        "expert", "q?", config.refusal_text, config.domain.documents
    )


def test_a_run_without_an_eval_file_gets_teacher_written_questions_kept_out_of_training(domain_config):
    config, _ = domain_config
    paths = RunPaths(config.output_dir)
    summary = prepare_data(config)
    assert summary["eval_writing"]["teacher_calls"] > 0
    assert summary["teacher_calls"] == sum(plan["teacher_calls"] for plan in summary["strategies"].values()) + summary["eval_writing"]["teacher_calls"]
    teach(config)
    rows = read_jsonl(paths.written_eval)
    inside = [row for row in rows if row["scope"] == "in"]
    assert len(inside) == 2 and {row["source"] for row in inside} == set(ABSTRACTS)
    assert all(row["written_by"] == "teacher" and row["facts"] for row in inside)
    assert any(row["scope"] == "out" for row in rows)
    trained = [example["question"] for example in read_jsonl(paths.train_set) if example.get("question")]
    asked = [row["question"] for row in rows]
    assert trained and max(grounding.similarity(t, a) for t in trained for a in asked) < config.eval.contamination_similarity

    # the user's edits survive a rerun of teach
    edited = [{**rows[0], "question": "How many patients were in the Kelmont General trial?", "facts": ["412"]}, *rows[1:]]
    paths.written_eval.write_text("".join(json.dumps(row) + "\n" for row in edited), encoding="utf-8")
    teach(config)
    assert read_jsonl(paths.written_eval) == edited

    evaluate(config)
    text = report(config)
    assert "teacher-written" in text and str(paths.written_eval) in text
    assert "Domain: biomedical abstracts, asked about by clinicians." in text
    assert "teacher-written" in paths.report_html.read_text(encoding="utf-8")


def test_evaluating_before_the_teacher_wrote_the_questions_says_what_to_run(domain_config):
    from domainkd.errors import DomainKDError

    config, _ = domain_config
    prepare_data(config)
    with pytest.raises(DomainKDError, match=r"run `domainkd teach CONFIG` first"):
        evaluate(config)
