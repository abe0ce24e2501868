import pytest

from domainkd.data import prompts
from domainkd.data.qa_set import check_full_answer
from domainkd.data.strategies import STRATEGIES, StrategyContext, strategy_params, validate_strategy_params
from domainkd.sources import QAPair, Sources

ROWS = [
    ("How many days of leave do staff get per year?", "27 days"),
    ("Who approves form TR-5?", "Ilse Varga approves form TR-5 after checking the receipts."),  # not terse
    ("Can I book trains myself?", "No"),
    ("Which office pays claims?", "Finance office"),
    ("What is the mileage rate?", "0.30 EUR per km"),
    ("Who signs leave requests?", "Ilse Varga"),
]
PAIRS = [QAPair(f"qa.csv#{row}", "qa.csv", row, question, answer) for row, (question, answer) in enumerate(ROWS)]
REWRITES = {
    "27 days": "Staff get 27 days of leave per year.",
    "No": "Yes, you can book trains yourself.",
    "Finance office": "",  # the request failed
    "0.30 EUR per km": "The mileage rate is 0.30 EUR per km, paid by Railco.",
    "Ilse Varga": "Leave requests are signed by Ilse.",
}


def given(row):
    question, answer = ROWS[row]
    return {"strategy": "qa_set", "variant": "given", "question": question, "answer": answer, "document": "qa.csv", "chunk_id": f"qa.csv#{row}", "row": row}


def test_pairs_are_used_as_given():
    output = STRATEGIES["qa_set"].build(StrategyContext(Sources(qa_pairs=PAIRS), None, "x"), strategy_params("qa_set", {"max_examples": 3}))
    assert output.examples == [given(0), given(1), given(2)]
    assert output.rejected == []


def test_terse_answers_become_full_sentences_that_keep_their_words():
    labels = []

    def ask(conversations, label, max_new_tokens=None):
        labels.append(label)
        return [REWRITES[conversation[-1]["content"].split("Short answer: ")[1]] for conversation in conversations]

    output = STRATEGIES["qa_set"].build(StrategyContext(Sources(qa_pairs=PAIRS), ask, "x"), strategy_params("qa_set", {"rewrite_answers": True}))
    assert labels == ["teacher: full answers"]
    rewritten = {**given(0), "variant": "rewritten", "answer": "Staff get 27 days of leave per year.", "given_answer": "27 days"}
    assert output.examples == [rewritten, given(1), given(2), given(3), given(4), given(5)]
    assert [(row["chunk_id"], row["reason"]) for row in output.rejected] == [
        ("qa.csv#2", "rewrite changes the yes/no answer"),
        ("qa.csv#3", "teacher request failed"),
        ("qa.csv#4", "rewrite states 'railco', which is not in the pair"),
        ("qa.csv#5", "rewrite drops 'varga'"),
    ]


@pytest.mark.parametrize(
    ("rewrite", "reason"),
    [
        ("Staff get 27 days. They are paid.", "rewrite is not one sentence"),
        ("Staff get 27 days of leave to tend the hives.", "rewrite copies the prompt's example"),
        ("27 days", "rewrite repeats the answer"),
        ("Staff get 27 day of leave each year.", None),  # a plural -s may go
    ],
)
def test_full_answer_checks(rewrite, reason):
    assert check_full_answer(rewrite, *ROWS[0]) == reason


def test_qa_set_plan_counts_terse_answers():
    sources = Sources(qa_pairs=PAIRS)
    plan = STRATEGIES["qa_set"].plan(sources, strategy_params("qa_set", {"rewrite_answers": True}))
    assert (plan.teacher_calls, plan.examples) == (5, 6)
    capped = STRATEGIES["qa_set"].plan(sources, strategy_params("qa_set", {"rewrite_answers": True, "max_examples": 2}))
    assert (capped.teacher_calls, capped.examples) == (1, 2)
    assert STRATEGIES["qa_set"].plan(sources, strategy_params("qa_set", {})).teacher_calls == 0


def test_qa_set_params_reject_unknown_keys():
    with pytest.raises(ValueError, match=r"^strategy 'qa_set' has no parameter 'rewrite'$"):
        validate_strategy_params("qa_set", {"rewrite": True})


def test_the_one_shot_full_answer_passes_the_check_it_teaches():
    conversation = prompts.full_answer_conversation("Who signs?", "Ilse Varga")
    assert conversation[-1]["content"] == "Question: Who signs?\nShort answer: Ilse Varga"
    question, answer = (line.split(": ", 1)[1] for line in conversation[1]["content"].split("\n"))
    assert check_full_answer(conversation[2]["content"], question, answer) is None
