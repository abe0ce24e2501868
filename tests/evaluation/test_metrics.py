import pytest

from domainkd.evaluation.metrics import METRICS, aggregate, fact_present, normalise_answer
from domainkd.evaluation.refusal import is_refusal

IN = {"question": "q", "answer": "Staff get 27 days of leave.", "facts": ["27 days|twenty-seven days"], "scope": "in"}
OUT = {"question": "q", "answer": "I don't know.", "facts": [], "scope": "out"}


def score(name, prediction, example):
    return METRICS[name].score(prediction, example)


def test_fact_present_whole_words_and_alternatives():
    assert fact_present("27 days|twenty-seven days", "You get twenty-seven days.")
    assert fact_present("2,400|2400", "Above 2,400 euros.")
    assert fact_present("09:45", "call before 09.45")
    assert not fact_present("27", "You get 270 days.")
    assert not fact_present("Varga", "Ask Vargas.")


def test_fact_accuracy():
    assert score("fact_accuracy", "Staff receive 27 days per year.", IN) == 1.0
    assert score("fact_accuracy", "Staff receive 25 days.", IN) == 0.0
    assert score("fact_accuracy", "I don't know, maybe 27 days.", IN) == 0.0  # a refusal is not an answer
    assert score("fact_accuracy", "anything", OUT) is None
    two = {**IN, "facts": ["27", "HR-22"]}
    assert score("fact_accuracy", "27 days, form HR-22.", two) == 1.0
    assert score("fact_accuracy", "27 days.", two) == 0.0


def test_token_f1_hand_computed():
    # prediction tokens: staff get 27 days ; reference: staff get 27 days of leave -> P=4/4, R=4/6
    assert score("token_f1", "Staff get 27 days!", IN) == pytest.approx(2 * 1 * (4 / 6) / (1 + 4 / 6))
    assert score("token_f1", "Nothing matches here", IN) == 0.0
    assert score("token_f1", "x", OUT) is None


def test_normalise_answer_squad_style():
    assert normalise_answer("The  Cat, an apple!") == "cat apple"


def test_rouge_l_identical_and_disjoint():
    assert score("rouge_l", IN["answer"], IN) == pytest.approx(1.0)
    assert score("rouge_l", "zebra", IN) == 0.0


def test_refusal_metrics():
    assert score("refusal_rate", "I don't know. The handbook does not cover that.", OUT) == 1.0
    assert score("refusal_rate", "Canberra.", OUT) == 0.0
    assert score("refusal_rate", "I don't know.", IN) is None
    assert score("false_refusal_rate", "I don't know.", IN) == 1.0
    assert METRICS["false_refusal_rate"].higher_is_better is False


@pytest.mark.parametrize(
    "answer",
    ["I don't know.", "I do not know that.", "The handbook does not cover pets.", "That is not mentioned in the handbook.",
     "I'm not sure.", "I cannot find that information.", "There is no information about it."],
)
def test_is_refusal_positive(answer):
    assert is_refusal(answer)


@pytest.mark.parametrize("answer", ["Staff get 27 days.", "You know the form is HR-22.", "Call extension 4190 now."])
def test_is_refusal_negative(answer):
    assert not is_refusal(answer)


def test_aggregate_skips_none():
    assert aggregate([1.0, None, 0.0]) == {"mean": 0.5, "n": 2}
    assert aggregate([None]) == {"mean": None, "n": 0}
