"""Coverage of the held-out facts by the training answers, and the training questions asked back."""

from __future__ import annotations

from domainkd.evaluation.knowledge import coverage, reading_split, recall_questions, split_by_coverage, training_answers
from domainkd.sources import Chunk

REFUSAL = "I don't know. The handbook does not cover that."
TRAIN = [
    {"id": "ex1", "strategy": "context_qa", "question": "How many leave days?", "answer": "Staff get 27 days.", "document": "leave.md"},
    {"id": "ex2", "strategy": "context_qa", "question": "Who issues permits?", "answer": "Tomas Brenner issues them.", "document": "parking.md"},
    {"id": "ex3", "strategy": "refusal", "question": "Capital of Peru?", "answer": "I don't know 27."},
    {"id": "ex4", "strategy": "raft", "question": "Badge cost?", "answer": "15 euros.", "document": "badges.md", "prompt": "Excerpts..."},
    {"id": "ex5", "strategy": "unstructured", "question": None, "text": "Badges cost 15 euros."},
    {"id": "ex6", "strategy": "raft", "source_strategy": "refusal", "question": "Capital of Chile?", "answer": "I don't know.",
     "prompt": "Excerpts..."},
    {"id": "ex7", "strategy": "raft", "source_strategy": "context_qa", "variant": "without_answer", "question": "Van colour?",
     "answer": REFUSAL, "document": "vans.md", "prompt": "Excerpts..."},
    # a quoted document sentence that sounds like a refusal, and a copy trained to answer from memory: both answer
    {"id": "ex8", "strategy": "raft", "source_strategy": "context_qa", "variant": "with_answer", "question": "Contractors?",
     "answer": "Contractors are not covered by the 27-day rule.", "document": "leave.md", "prompt": "Excerpts..."},
    {"id": "ex9", "strategy": "raft", "source_strategy": "context_qa", "variant": "without_answer", "question": "Vans?",
     "answer": "Vans are white.", "document": "vans.md", "prompt": "Excerpts..."},
]
QUESTIONS = [
    {"question": "Holiday for full-timers?", "facts": ["27"], "source": "leave.md", "scope": "in"},
    {"question": "Who hands out permits?", "facts": ["Brenner", "Tomas"], "source": "parking.md", "scope": "in"},
    {"question": "Is 27 the permit price?", "facts": ["27"], "source": "parking.md", "scope": "in"},  # 27 only in leave.md
    {"question": "What does a badge cost?", "facts": ["15 euros|EUR 15"], "source": "badges.md", "scope": "in"},
    {"question": "Capital of Peru?", "facts": [], "source": None, "scope": "out"},
]


def test_training_answers_leave_out_what_was_trained_to_refuse_and_split_by_excerpts():
    # refusals, their RAFT copies and copies trained to say the refusal answer nothing; passages have no question
    assert [row["id"] for row in training_answers(TRAIN, REFUSAL)] == ["ex1", "ex2", "ex4", "ex8", "ex9"]
    assert [row["id"] for row in training_answers(TRAIN, REFUSAL, excerpts=False)] == ["ex1", "ex2"]
    assert [row["id"] for row in training_answers(TRAIN, REFUSAL, excerpts=True)] == ["ex4", "ex8", "ex9"]
    assert "ex7" in [row["id"] for row in training_answers(TRAIN)]  # without the run's refusal sentence it cannot tell


def test_a_question_is_covered_when_an_answer_from_its_source_states_every_fact():
    # the badge fact is in a RAFT copy's answer: trained with excerpts, it still counts; the refusal's "27" does not
    assert coverage(QUESTIONS, TRAIN, REFUSAL) == [True, True, False, True, None]
    no_source = [{**QUESTIONS[2], "source": None}]
    assert coverage(no_source, TRAIN, REFUSAL) == [True]
    only_passage = [row for row in TRAIN if row["id"] != "ex4"]  # a plain passage is no answer
    assert coverage(QUESTIONS, only_passage, REFUSAL)[3] is False


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


def test_recall_questions_with_excerpts_come_from_the_raft_copies():
    questions = recall_questions(TRAIN, 10, seed=0, excerpts=True, refusal_text=REFUSAL)
    assert sorted((question["id"], tuple(question["facts"])) for question in questions) == [
        ("train-ex4", ("15",)), ("train-ex8", ("27-day",))]  # "Vans are white." adds no checkable specific


def _chunk(chunk_id: str, title: str, text: str) -> Chunk:
    return Chunk(chunk_id=chunk_id, document=chunk_id.split("#")[0], title=title, text=text, start=0, end=len(text), tokens=9)


def test_reading_split_tells_the_readers_misses_from_the_retrievers():
    chunks = [
        _chunk("leave.md#0", "Annual leave", "Full-time staff receive 27 days of leave."),
        _chunk("parking.md#0", "Parking", "Permits are issued by Tomas Brenner at reception."),
        _chunk("parking.md#1", "Parking", "Ask Tomas about visitor spaces."),  # one of the two names only
        _chunk("badges.md#0", "Badges: 15 euros each", "A replacement badge is ordered at reception."),  # fact in the title
    ]
    rows = [
        {"prediction": "27 days.", "retrieved": ["leave.md#0"]},  # held and read: right
        # held (both names in the second excerpt) and answered right, but the check replaced the answer
        {"prediction": REFUSAL, "unchecked": "Tomas Brenner hands them out.", "retrieved": ["badges.md#0", "parking.md#0"]},
        {"prediction": "No, 27 is the leave.", "retrieved": ["parking.md#0", "leave.md#0"]},  # "27" held, stated: right
        {"prediction": "Badges cost 5 euros.", "retrieved": ["leave.md#0", "gone.md#0"]},  # not held; unknown ids skipped
        {"prediction": REFUSAL, "unchecked": "Lima.", "retrieved": ["leave.md#0"]},  # out of scope, stopped by the check
    ]
    assert reading_split(rows, QUESTIONS, chunks) == {
        "excerpts_hold_facts": {"mean": 2 / 3, "n": 3},
        "excerpts_miss_facts": {"mean": 0.0, "n": 1},
        "answer_check": {"in_scope": 1, "in_scope_right": 1, "out_of_scope": 1},
    }
    # the badge fact read in an excerpt's title is held; the answer may use the fact's other wording ("EUR 15")
    rows[3] = {"prediction": "EUR 15.", "retrieved": ["badges.md#0"]}
    assert reading_split(rows, QUESTIONS, chunks)["excerpts_hold_facts"] == {"mean": 0.75, "n": 4}
    # every key fact must be held: an excerpt naming Tomas but not Brenner misses; a wrong answer the check
    # replaced is counted, not as right
    rows[1] = {"prediction": REFUSAL, "unchecked": "Tomas hands them out.", "retrieved": ["parking.md#1"]}
    split = reading_split(rows, QUESTIONS, chunks)
    assert split["excerpts_miss_facts"] == {"mean": 0.0, "n": 1}
    assert split["answer_check"] == {"in_scope": 1, "in_scope_right": 0, "out_of_scope": 1}
    # a question the retriever found nothing for (asked without excerpts) misses its facts
    rows[0] = {"prediction": "27 days."}
    assert reading_split(rows, QUESTIONS, chunks)["excerpts_miss_facts"] == {"mean": 0.5, "n": 2}
    # nothing to report: no in-scope question with key facts and no replaced answer
    assert reading_split([{"prediction": "option 2"}], [{"question": "Which?", "options": ["a", "b"], "scope": "in"}], chunks) is None
