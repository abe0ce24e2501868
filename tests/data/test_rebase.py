import json
import re

import pytest

from domainkd.data.grounding import normalise
from domainkd.data.rebase import (
    _contamination,
    _template_words,
    _ungrounded,
    fit_verdict,
    in_task_format,
    parse_transformed,
    task_labels,
)
from domainkd.retrieval import RetrievedRow
from domainkd.data.strategies import STRATEGIES, StrategyContext, strategy_params, validate_strategy_params
from domainkd.sources import Sources
from tests.retrieval.encoders import CORPUS, build_tiny_encoder

EXAMPLE = {"input": "Question: What is the capital of Italy? Context: Rome is the capital of Italy.", "output": "Rome"}
CAPITALS = [  # (country, capital) rows of the source dataset
    ("France", "Paris"),
    ("Spain", "Madrid"),
    ("Germany", "Berlin"),
    ("Austria", "Vienna"),
    ("Italy", "Rome"),
    ("Gaul", "Paris"),
]
HELD_OUT = "Question: What is the capital of Austria?"
FRANCE = {"capitals#0", "capitals#5"}  # two rows the fake teacher rewrites into one question


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"), CORPUS)


@pytest.fixture()
def params(tmp_path, encoder_dir):
    source = tmp_path / "capitals.jsonl"
    source.write_text("".join(json.dumps({"country": c, "capital": k}) + "\n" for c, k in CAPITALS), encoding="utf-8")
    target = tmp_path / "target.csv"
    target.write_text("input,output\nQuestion: What is the capital of Italy?,Rome\n", encoding="utf-8")
    return {
        "datastore": str(tmp_path / "store"),
        "datasets": [{"path": str(source), "description": "countries and their capitals"}, {"path": str(target)}],
        "encoder": str(encoder_dir),
        "instruction": "Answer the question from the context with a short span.",
        "examples": [EXAMPLE],
        "top_k": 10,
        "ban": ["target"],
    }


def transform_reply(conversation):
    """The fake teacher's JSON for a transform prompt, by the record's country."""
    record = conversation[-1]["content"].split("Record from the dataset")[1]
    country, capital = re.search(r"country: (\w+)\ncapital: (\w+)", record).groups()
    question = f"Question: What is the capital of {country}? Context: {capital} is the capital of {country}."
    replies = {
        "Spain": "",  # the teacher failed or wrote unrepairable JSON
        "Germany": json.dumps({"input": question}),
        "Austria": json.dumps({"input": HELD_OUT, "output": capital}),
        "Italy": json.dumps(EXAMPLE),
    }
    question = question.replace("Gaul", "France")
    default = json.dumps({"reasoning": f"The context names {capital}.", "input": question, "output": capital})
    return replies.get(country, default)


def fake_teacher(fit_replies=None):
    calls = []

    def ask(conversations, label, max_new_tokens=None, expect_json=False):
        calls.append((label, len(conversations), max_new_tokens, expect_json))
        if label == "teacher: rebase transform":
            return [transform_reply(conversation) for conversation in conversations]
        return [fit_replies(conversation[-1]["content"]) for conversation in conversations]

    return ask, calls


def build(params, ask):
    context = StrategyContext(Sources(), ask, "I don't know.", {normalise(HELD_OUT)})
    return STRATEGIES["rebase"].build(context, strategy_params("rebase", params))


def test_rows_are_transformed_and_bad_ones_rejected_with_reasons(params):
    ask, calls = fake_teacher()
    output = build({**params, "grounded": False}, ask)  # Gaul's reply names France, its record does not
    assert calls == [("teacher: rebase transform", 6, 256, True)]  # the banned target row is never retrieved
    [example] = output.examples  # France or Gaul (whichever ranks higher): the other repeats its input
    assert example["question"] == "Question: What is the capital of France? Context: Paris is the capital of France."
    assert (
        example["answer"] == "Paris" and example["variant"] == "transformed"
    )  # no chain of thought: reasoning dropped
    assert example["strategy"] == "rebase" and example["document"] == "capitals" and example["chunk_id"] in FRANCE
    assert -1 <= example["retrieval_score"] <= 1
    reasons = {row["chunk_id"]: row["reason"] for row in output.rejected}
    assert reasons == {
        "capitals#1": "teacher gave no JSON object (failed or unrepairable)",
        "capitals#2": "JSON lacks a text 'input' or 'output'",
        "capitals#3": "same as an evaluation question (contamination)",
        "capitals#4": "copies an example of the prompt",
        (FRANCE - {example["chunk_id"]}).pop(): "duplicate of another transformed example",
    }
    assert all(row["document"] == "capitals" and "teacher_reply" in row for row in output.rejected)


def test_examples_out_of_format_naming_what_their_record_lacks_or_copying_a_prompt_example_are_dropped(params):
    replies = {
        "France": {"input": "Question: Which city is the capital of France? Context: France's capital is Paris.", "output": "Lyon"},
        "Spain": {"input": "What is the capital of Spain? Context: Madrid, on the Manzanares, is the capital.", "output": "Madrid"},
        "Germany": {"input": "What is the capital of Italy?", "output": "Rome"},  # the example without its label
        "Austria": {"reasoning": "Habsburg maps pair them.", "input": "Which city is Austria's capital? Context: Vienna is.", "output": "Vienna"},
        "Italy": {"input": "Rome is the capital of Italy.", "output": "Rome"},  # the example's context alone
        "Gaul": {"input": "Question: Which city was the capital of Gaul?", "output": "Paris"},  # no context
    }

    def ask(conversations, label, max_new_tokens=None, expect_json=False):
        countries = [re.search(r"country: (\w+)", c[-1]["content"].split("Record from")[1]).group(1) for c in conversations]
        return [json.dumps(replies[country]) for country in countries]

    output = build({**params, "chain_of_thought": True}, ask)
    assert {row["chunk_id"]: row["reason"] for row in output.rejected} == {
        "capitals#0": "output states 'lyon', which is not in the record",
        "capitals#1": "input states 'manzanares', which is not in the record",
        "capitals#2": "copies an example of the prompt",
        "capitals#4": "copies an example of the prompt",
        "capitals#5": "input lacks the part labelled 'Context:'",
    }
    [kept] = output.examples  # the leading label put back; the reasoning is not checked against the record
    assert kept["question"] == "Question: Which city is Austria's capital? Context: Vienna is."
    assert kept["answer"] == "Habsburg maps pair them.\nAnswer: Vienna"  # "Habsburg" is in no record
    ungrounded = build({**params, "grounded": False}, ask)
    assert {row["chunk_id"] for row in ungrounded.examples} == {"capitals#0", "capitals#1", "capitals#3"}
    assert task_labels(["Premise: A. Hypothesis: B.", "Premise: C. Note: x. Hypothesis: D."]) == ["Premise", "Hypothesis"]


def test_chain_of_thought_keeps_the_reasoning_before_the_answer(params):
    ask, _ = fake_teacher()
    output = build({**params, "chain_of_thought": True}, ask)
    [example] = output.examples
    assert example["answer"] == "The context names Paris.\nAnswer: Paris" and example["variant"] == "transformed+cot"


def test_fit_filter_drops_what_the_teacher_says_no_to(params, tmp_path):
    source = tmp_path / "more.jsonl"
    rows = [("Poland", "Warsaw"), ("Norway", "Oslo"), ("Peru", "Lima")]
    source.write_text("".join(json.dumps({"country": c, "capital": k}) + "\n" for c, k in rows), encoding="utf-8")
    verdicts = {"Poland": "No.", "Norway": "", "Peru": "Maybe", "France": "Yes, it fits."}
    ask, calls = fake_teacher(
        lambda prompt: next(v for country, v in verdicts.items() if f"capital of {country}" in prompt)
    )
    output = build({**params, "datasets": params["datasets"] + [{"path": str(source)}], "fit_filter": True}, ask)
    assert calls[1] == ("teacher: rebase fit check", 4, 4, False)
    assert [e["chunk_id"] for e in output.examples if e["chunk_id"] in FRANCE] == [
        e["chunk_id"] for e in output.examples
    ]
    reasons = {row["chunk_id"]: row["reason"] for row in output.rejected if row["document"] == "more"}
    assert reasons == {
        "more#0": "teacher judged it does not fit the task",
        "more#1": "fit check got no answer from the teacher",
        "more#2": "fit check answer was neither yes nor no",
    }


def test_plan_counts_calls_from_top_k_and_the_built_store(params):
    plan = STRATEGIES["rebase"].plan(Sources(), strategy_params("rebase", {**params, "fit_filter": True}))
    assert (plan.teacher_calls, plan.examples) == (20, 10)
    assert "checked for fit" in plan.what
    build(params, fake_teacher()[0])  # builds the store: 6 rows
    plan = STRATEGIES["rebase"].plan(Sources(), strategy_params("rebase", params))
    assert (plan.teacher_calls, plan.examples) == (6, 6)


def test_a_prebuilt_store_is_used_without_datasets(params):
    build(params, fake_teacher()[0])
    output = build({key: value for key, value in params.items() if key != "datasets"}, fake_teacher()[0])
    assert len(output.examples) == 1 and output.examples[0]["chunk_id"] in FRANCE


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="parameter 'instruction'"):
        validate_strategy_params("rebase", {"datastore": "store", "examples": [EXAMPLE]})
    with pytest.raises(ValueError, match="parameter 'examples'"):
        validate_strategy_params("rebase", {"datastore": "store", "instruction": "x", "examples": []})
    with pytest.raises(ValueError, match="has no parameter 'topk'"):
        validate_strategy_params("rebase", {"datastore": "store", "instruction": "x", "examples": [EXAMPLE], "topk": 3})
    filled = validate_strategy_params("rebase", {"datastore": "store", "instruction": "x", "examples": [EXAMPLE]})
    assert filled["encoder"] == "all-minilm-l6-v2" and filled["top_k"] == 100 and filled["fit_filter"] is False


def test_reply_parsing():
    assert parse_transformed('{"input": " q ", "output": "a", "reasoning": "r"}', chain_of_thought=False) == (
        {"question": "q", "answer": "a", "variant": "transformed"},
        None,
    )
    assert (
        parse_transformed('{"input": "q", "output": "a", "reasoning": " "}', chain_of_thought=True)[0]["variant"]
        == "transformed"
    )
    assert parse_transformed("[1, 2]", chain_of_thought=False) == (None, "JSON lacks a text 'input' or 'output'")
    assert (
        parse_transformed('{"input": "q", "output": 3}', chain_of_thought=False)[1]
        == "JSON lacks a text 'input' or 'output'"
    )
    assert parse_transformed("not json", chain_of_thought=False) == (None, "teacher reply is not JSON")
    assert (
        fit_verdict("YES") is None and fit_verdict("**No**, it does not") == "teacher judged it does not fit the task"
    )


def _row(**fields):
    return RetrievedRow(0, "nli", 0, fields, 0.5, 0.5, 0.5, 0.5)


def test_grounding_allows_the_task_format_and_labels_but_not_an_example_answer():
    nli = strategy_params("rebase", {
        "datastore": "store", "instruction": "Label the pair.",
        "examples": [
            {"input": "Premise: A man sleeps.\nHypothesis: A man rests.", "output": "Entailment"},
            {"input": "Premise: Kids play.\nHypothesis: Kids are asleep.", "output": "Contradiction"},
            {"input": "Premise: It rains.\nHypothesis: Rain falls.", "output": "Entailment"},
        ],
    })
    template = _template_words(nli)
    row = _row(text="A cyclist crosses the Kettle bridge.", label="0")
    pair = {"question": "Premise: A cyclist crosses the Kettle bridge.\nHypothesis: Someone crosses a bridge.", "answer": "Entailment"}
    assert _ungrounded(pair, row, template) is None  # "Hypothesis" mid-line and a label two examples use
    assert _ungrounded({**pair, "answer": "Neutral"}, row, template) == "output states 'neutral', which is not in the record"
    summary = {"question": pair["question"], "answer": "However, the cyclist crosses the Kettle bridge."}
    assert _ungrounded(summary, row, template) is None  # a long output's first word is not checked
    qa = strategy_params("rebase", {"datastore": "store", "instruction": "Answer.", "examples": [EXAMPLE]})
    capital = _row(country="Gaul", capital="Lutetia")
    assert _ungrounded({"question": "Question: Capital of Gaul? Context: Lutetia.", "answer": "Rome"}, capital, _template_words(qa)) == (
        "output states 'rome', which is not in the record"  # one example's answer is no label
    )


def test_copies_evaluation_questions_and_labels_are_matched_as_written():
    held_out = "Which city is Austria's capital? Context: Vienna is."
    assert _contamination(normalise(held_out), set(), set(), {normalise(held_out)}).startswith("same as an evaluation")
    shown = {normalise("Write a haiku about autumn")}
    assert _contamination(normalise("Write a haiku about autumn leaves in Kyoto at dusk"), set(), shown, set()) is None
    assert _contamination(normalise("Write a haiku about autumn, please"), set(), shown, set()) == "copies an example of the prompt"
    labels = ["Question", "Context"]
    assert in_task_format("QUESTION: Who? Context: Ann.", labels) == ("QUESTION: Who? Context: Ann.", None)
    assert in_task_format("Who? Context: Ann.", labels) == ("Question: Who? Context: Ann.", None)
