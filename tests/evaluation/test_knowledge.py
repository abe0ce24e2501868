"""Coverage of the held-out facts by the training answers, and the training questions asked back."""

from __future__ import annotations

from domainkd.evaluation.knowledge import closed_book_answers, coverage, recall_questions, split_by_coverage

TRAIN = [
    {"id": "ex1", "strategy": "context_qa", "question": "How many leave days?", "answer": "Staff get 27 days.", "document": "leave.md"},
    {"id": "ex2", "strategy": "context_qa", "question": "Who issues permits?", "answer": "Tomas Brenner issues them.", "document": "parking.md"},
    {"id": "ex3", "strategy": "refusal", "question": "Capital of Peru?", "answer": "I don't know 27."},
    {"id": "ex4", "strategy": "raft", "question": "Badge cost?", "answer": "15 euros.", "document": "badges.md", "prompt": "Excerpts..."},
    {"id": "ex5", "strategy": "unstructured", "question": None, "text": "Badges cost 15 euros."},
]
QUESTIONS = [
    {"question": "Holiday for full-timers?", "facts": ["27"], "source": "leave.md", "scope": "in"},
    {"question": "Who hands out permits?", "facts": ["Brenner", "Tomas"], "source": "parking.md", "scope": "in"},
    {"question": "Is 27 the permit price?", "facts": ["27"], "source": "parking.md", "scope": "in"},  # 27 only in leave.md
    {"question": "What does a badge cost?", "facts": ["15 euros|EUR 15"], "source": "badges.md", "scope": "in"},
    {"question": "Capital of Peru?", "facts": [], "source": None, "scope": "out"},
]


def test_only_closed_book_answers_count():
    assert [row["id"] for row in closed_book_answers(TRAIN)] == ["ex1", "ex2"]


def test_a_question_is_covered_when_an_answer_from_its_source_states_every_fact():
    # the badge fact is only in a RAFT copy and a passage; the refusal's "27" does not count
    assert coverage(QUESTIONS, TRAIN) == [True, True, False, False, None]
    no_source = [{**QUESTIONS[2], "source": None}]
    assert coverage(no_source, TRAIN) == [True]


def test_split_by_coverage_counts_each_group():
    split = split_by_coverage([1.0, 0.0, 1.0, None, None], [True, True, False, None, None])
    assert split == {"covered": {"mean": 0.5, "n": 2}, "not_covered": {"mean": 1.0, "n": 1}}


def test_recall_questions_are_scored_on_the_specifics_the_answer_adds():
    questions = recall_questions(TRAIN, 10, seed=0)
    by_id = {question["id"]: question for question in questions}
    assert set(by_id) == {"train-ex1", "train-ex2"}
    assert by_id["train-ex1"]["facts"] == ["27"]
    assert by_id["train-ex2"]["facts"] == ["brenner"]  # a capitalised first word is not a checkable term
    assert all(question["scope"] == "in" for question in questions)
    assert len(recall_questions(TRAIN, 1, seed=0)) == 1
    assert recall_questions(TRAIN, 1, seed=0) == recall_questions(TRAIN, 1, seed=0)
