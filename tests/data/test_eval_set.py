"""Teacher-written held-out questions (``eval.questions`` unset): facts, checks, out-of-scope questions."""

from __future__ import annotations

from domainkd.config import config_from_dict
from domainkd.data import grounding, prompts
from domainkd.data.build import _deduplicate
from domainkd.data.eval_set import GENERAL, _candidate_facts, _common_spans, _telling_spans, plan_calls, write_eval_set
from domainkd.sources import Chunk, Sources


def make_chunk(chunk_id, document, title, text):
    return Chunk(chunk_id, document, title, text, 0, len(text), len(text.split()))


TRIAL = make_chunk(
    "trial.md#0", "trial.md", "Ferrovan trial",
    "Ferrovan lowered 28-day mortality to 24 percent in septic shock. The trial was led by Anja Rusk at Kelmont General.",
)
SLEEP = make_chunk(
    "sleep.md#0", "sleep.md", "Night shifts",
    "Nurses on rotating night shifts slept 5.2 hours a day on average. The Halden cohort followed them for 18 months.",
)
QUESTIONS = {
    # fact -> what the fake teacher writes for it
    "Ferrovan lowered 28-day mortality to 24 percent in septic shock.": "My patient is in septic shock; how far does ferrovan bring 28-day mortality down?",
    "The trial was led by Anja Rusk at Kelmont General.": "Who ran the ferrovan study at Kelmont General, Anja Rusk?",  # holds every span
    "Nurses on rotating night shifts slept 5.2 hours a day on average.": "Nurses on rotating night shifts slept how many hours a day on average?",  # copies
    "The Halden cohort followed them for 18 months.": "How long were the night-shift nurses in the Halden group followed?",
}


def _config(**writing):
    return config_from_dict({"domain": {"documents": "biomedical abstracts", "askers": "clinicians"}, "eval": {"writing": writing}})


def fake_teacher(answered="no", vague=()):
    """A scripted teacher: its questions are QUESTIONS; asked whether a text answers a question, it says yes for
    its own in-scope questions (no for those in ``vague``) and ``answered`` for the out-of-scope ones."""
    calls = []

    def ask(conversations, label, max_new_tokens=None):
        calls.append((label, conversations))
        replies = []
        for conversation in conversations:
            system, user = conversation[0]["content"], conversation[-1]["content"]
            if system == prompts.eval_question_system(_config().domain):
                replies.append("Question: " + QUESTIONS[user.split("Fact: ", 1)[1]])
            elif system == prompts.eval_unanswerable_system(_config().domain):
                replies.append("Which dose of ferrovan suits children?" if "Ferrovan" in user else "How did the nurses rate the canteen coffee?")
            else:
                asked = user.rsplit("Question: ", 1)[1]
                replies.append(("no" if asked in vague else "yes") if asked in QUESTIONS.values() else answered)
        return replies

    return ask, calls


def test_key_spans_are_the_names_numbers_and_dates_as_written():
    assert grounding.key_spans("Permits cost 85 euros and are issued by Tomas Brenner on 3 March 2026.") == [
        "85", "Tomas Brenner", "3 March 2026",
    ]
    assert grounding.key_spans("Form HR-22 goes to the desk; form HR-22 again.") == ["HR-22"]
    assert grounding.key_spans("nothing specific here") == []


def test_questions_on_chosen_facts_with_the_spans_left_to_answer():
    ask, calls = fake_teacher()
    rows, rejected = write_eval_set(_config(in_scope=4, out_of_scope=4), Sources([TRIAL, SLEEP]), ask)
    inside = [row for row in rows if row["scope"] == "in"]
    assert {row["question"] for row in inside} == {
        QUESTIONS["Ferrovan lowered 28-day mortality to 24 percent in septic shock."],
        QUESTIONS["The Halden cohort followed them for 18 months."],
    }
    mortality = next(row for row in inside if row["source"] == "trial.md")
    assert mortality["answer"] == "Ferrovan lowered 28-day mortality to 24 percent in septic shock."
    assert mortality["facts"] == ["24"]  # "28-day" is in the question already
    assert all(row["written_by"] == "teacher" and row["chunk_id"] for row in inside)
    reasons = {row["question"]: row["reason"] for row in rejected if row.get("chunk_id")}
    assert reasons[QUESTIONS["The trial was led by Anja Rusk at Kelmont General."]].startswith("question holds every name")
    assert reasons[QUESTIONS["Nurses on rotating night shifts slept 5.2 hours a day on average."]] == "question copies the fact's wording"
    assert len({row["id"] for row in rows}) == len(rows)
    assert [label for label, _ in calls] == [
        "teacher: held-out questions", "teacher: held-out question checks", "teacher: held-out out-of-scope questions",
        "teacher: answered checks",
    ]


def test_a_question_its_fact_does_not_answer_is_dropped():
    vague = QUESTIONS["The Halden cohort followed them for 18 months."]
    ask, _ = fake_teacher(vague=(vague,))
    rows, rejected = write_eval_set(_config(in_scope=4, out_of_scope=0), Sources([TRIAL, SLEEP]), ask)
    assert [row["source"] for row in rows] == ["trial.md"]
    assert {row["question"]: row["reason"] for row in rejected}[vague] == "teacher does not say the fact answers it"


def test_facts_are_whole_sentences_and_their_key_facts_tell_chunks_apart():
    heading = make_chunk("h.md#0", "h.md", "h", "Mozilla Public License Version 2.0\n==================================")
    cut = make_chunk("c.md#1", "c.md", "c", "and conversions to other media types made by Kelmont in 2019 count too.")
    licence = [
        make_chunk(f"l{n}.md#0", f"l{n}.md", "Terms", f"The License lets You copy the Work within {n + 30} days of Release {n}.")
        for n in range(5)
    ]
    chunks = [heading, cut, *licence]
    facts = [fact for _, fact in _candidate_facts(chunks, _common_spans(chunks), 0)]
    assert len(facts) == 5 and all(fact.startswith("The License lets") for fact in facts)  # no heading, no cut fact
    common = _common_spans([heading, cut, *licence])
    assert {"license", "work"} <= common and "31" not in common
    assert _telling_spans(licence[1].text, common) == ["31", "Release 1"]


def test_out_of_scope_questions_are_checked_and_topped_up_with_general_ones():
    ask, _ = fake_teacher()
    rows, rejected = write_eval_set(_config(in_scope=1, out_of_scope=4), Sources([TRIAL, SLEEP]), ask)
    outside = [row for row in rows if row["scope"] == "out"]
    assert len(outside) == 4
    teacher_written = [row for row in outside if row["category"] == "teacher-written"]
    assert {row["question"] for row in teacher_written} == {"Which dose of ferrovan suits children?", "How did the nurses rate the canteen coffee?"}
    assert [row["question"] for row in outside if row["category"] == "general"] == GENERAL[:2]
    assert all(row["answer"] == _config().refusal_text and row["facts"] == [] for row in outside)
    # a teacher that says the text answers its own question: those go, general ones fill the gap
    ask, _ = fake_teacher(answered="yes")
    rows, rejected = write_eval_set(_config(in_scope=1, out_of_scope=4), Sources([TRIAL, SLEEP]), ask)
    assert [row["category"] for row in rows if row["scope"] == "out"] == ["general"] * 4
    assert sum(row["reason"].startswith("teacher says the text answers it") for row in rejected) == 2


def test_every_chunk_gets_a_question_before_any_gets_a_second():
    chunks = [
        make_chunk(f"d{n}.md#0", f"d{n}.md", f"Part {n}", f"Unit {n} opens its doors at 0{n}:00. Unit {n} closes its doors at 1{n}:30. Unit {n} holds {n}0 beds in all.")
        for n in range(1, 6)
    ]

    def ask(conversations, label, max_new_tokens=None):
        if label == "teacher: held-out questions":
            return [f"Question: {c[-1]['content'].split('Fact: ')[1].split(' ', 2)[1]} - when can I go in there, roughly?" for c in conversations]
        return ["yes" if label == "teacher: held-out question checks" else "no"] * len(conversations)

    config = _config(in_scope=5, out_of_scope=0)
    rows, _ = write_eval_set(config, Sources(chunks), ask)
    assert sorted(row["source"] for row in rows) == [f"d{n}.md" for n in range(1, 6)]
    again, _ = write_eval_set(config, Sources(chunks), ask)
    assert again == rows  # the seed fixes the choice
    other, _ = write_eval_set(_config(in_scope=5, out_of_scope=0, seed=1), Sources(chunks), ask)
    assert [row["answer"] for row in other] != [row["answer"] for row in rows]
    assert plan_calls(Sources(chunks), config) == 30  # all 15 facts (at most 3 rounds of 1.5 x 5) asked and checked


def test_training_questions_close_to_an_evaluation_question_are_dropped():
    asked = "Who hands out the parking permits at the front desk?"
    held_out = {grounding.normalise(asked): asked}
    rows = [
        {"question": "Who hands out the parking permits at the desk?", "answer": "Tomas Brenner."},  # 5 of 6 words
        {"question": "Which person issues permits for parking?", "answer": "Tomas Brenner."},  # reworded: kept
    ]
    kept, dropped = _deduplicate(rows, held_out, similarity=0.8)
    assert kept == rows[1:]
    assert dropped[0]["reason"].startswith("shares 80% or more of its content words with the evaluation question")
    kept, dropped = _deduplicate(rows, held_out, similarity=None)
    assert kept == rows and dropped == []


def test_a_two_line_question_is_read_whole_and_missing_questions_are_asked_for_again():
    chunks = [
        make_chunk(f"d{n}.md#0", f"d{n}.md", f"Part {n}", f"Unit {n} opens its doors at 0{n}:00. Unit {n} closes its doors at 1{n}:30.")
        for n in range(1, 5)
    ]
    rounds = []

    def ask(conversations, label, max_new_tokens=None):
        if label != "teacher: held-out questions":
            return ["yes" if label == "teacher: held-out question checks" else "no"] * len(conversations)
        rounds.append(len(conversations))
        if len(rounds) == 1:  # the first round: statements, not questions
            return ["Question: I work there." for _ in conversations]
        return [f"Question: I start in unit {c[-1]['content'].split('Unit ')[1][0]} soon.\nWhen may I go in?" for c in conversations]

    rows, rejected = write_eval_set(_config(in_scope=2, out_of_scope=0), Sources(chunks), ask)
    assert rounds == [3, 3]  # 1.5 x 2 facts, then 1.5 x the 2 still missing
    assert rows[0]["question"].endswith("soon. When may I go in?") and len(rows) == 2
    assert sum(row["reason"] == "not a question" for row in rejected) == 3
