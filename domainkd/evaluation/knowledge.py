"""Memorised wording or knowledge? Held-out accuracy split by coverage, beside recall of the training questions.

A student can fail a held-out question for two reasons: its fact was never in the training data
(*not covered*: a data problem), or it was, and the student does not recall it when asked in other
words (a learning problem). And a student that answers its own training questions but not the
held-out ones memorised wording, not knowledge. So the report shows, per system:

* fact accuracy on the in-scope questions whose every key fact occurs in the answer of some
  training example from the question's source document (*covered*), and on the rest; the example
  may be asked closed-book or with excerpts (a RAFT copy): either way the student was trained to
  state the fact;
* *train-question recall*: fact accuracy on a seeded sample of the training questions themselves,
  asked in their training wording, scored on the specifics (numbers, names, codes) their training
  answer adds to the question. A closed-book system is asked questions it was trained on
  closed-book; a system reading excerpts, questions it was trained on with excerpts (it retrieves
  its own, as for any question).

And a system that answers from retrieved excerpts can miss because the excerpts did not hold the
answer (a retrieval or chunking problem) or because it did not read them right (a reading
problem). :func:`reading_split` tells them apart: fact accuracy where the excerpts held every key
fact and where they did not, and how many answers the answer check (``retrieval.answer_check``)
replaced with the refusal sentence, in scope (and how many of those stated every key fact) and out
of scope.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from domainkd.data.grounding import key_terms, words
from domainkd.evaluation.metrics import fact_accuracy, fact_present, in_scope
from domainkd.sources import Chunk

Example = dict[str, Any]


def training_answers(
    train_rows: Sequence[dict[str, Any]], refusal_text: str = "", excerpts: bool | None = None
) -> list[dict[str, Any]]:
    """The question/answer training rows that answer: refusal examples, their RAFT copies and copies trained to
    say the refusal sentence are left out (by how they were made, not by their wording: a document sentence may
    say "not covered").

    Args:
        train_rows: the training set.
        refusal_text: the run's refusal sentence (RAFT copies whose excerpts leave the answer out may be trained to
            say it); empty: no row is left out for its answer.
        excerpts: only rows asked closed-book (False), only RAFT copies asked with excerpts (True), or both (None).
    """
    refusal = refusal_text.strip()
    return [
        row for row in train_rows
        if row.get("question") and isinstance(row.get("answer"), str)
        and "refusal" not in (row.get("strategy"), row.get("source_strategy"))
        and not (refusal and row["answer"].strip() == refusal)
        and (excerpts is None or bool(row.get("prompt")) == excerpts)
    ]


def coverage(
    questions: Sequence[Example], train_rows: Sequence[dict[str, Any]], refusal_text: str = ""
) -> list[bool | None]:
    """Per question: whether its facts are in some training answer (None: out of scope or without facts).

    A training answer (:func:`training_answers`), closed-book or with excerpts, counts when it comes from the
    question's ``source`` document (or either has no document) and states every key fact of the question.
    """
    answers = training_answers(train_rows, refusal_text)
    covered: list[bool | None] = []
    for question in questions:
        facts = question.get("facts") or []
        if not in_scope(question) or not facts:
            covered.append(None)
            continue
        source = question.get("source")
        pool = [row["answer"] for row in answers if not source or not row.get("document") or row["document"] == source]
        covered.append(any(all(fact_present(fact, answer) for fact in facts) for answer in pool))
    return covered


def recall_questions(
    train_rows: Sequence[dict[str, Any]], count: int, seed: int = 0, excerpts: bool = False, refusal_text: str = ""
) -> list[Example]:
    """Up to ``count`` training questions as evaluation examples, their facts the specifics the answer adds.

    Args:
        train_rows: the training set.
        count: how many to sample (seeded).
        seed: the sample's seed.
        excerpts: sample the questions trained with excerpts (RAFT copies) instead of the closed-book ones.
        refusal_text: the run's refusal sentence (see :func:`training_answers`).
    """
    candidates = []
    for row in training_answers(train_rows, refusal_text, excerpts):
        asked = set(words(row["question"]))
        specifics = sorted(term for term in key_terms(row["answer"]) if term not in asked)
        if specifics:
            candidates.append((row, specifics))
    chosen = random.Random(seed).sample(candidates, min(count, len(candidates)))
    return [
        {
            "id": f"train-{row.get('id', number)}", "question": row["question"], "answer": row["answer"],
            "facts": specifics, "source": row.get("document"), "category": "training question", "scope": "in",
        }
        for number, (row, specifics) in enumerate(chosen)
    ]


def split_by_coverage(scores: Sequence[float | None], covered: Sequence[bool | None]) -> dict[str, dict[str, Any]]:
    """Mean and count of ``scores`` over the covered and the not-covered questions."""
    groups: dict[str, list[float]] = {"covered": [], "not_covered": []}
    for score, is_covered in zip(scores, covered):
        if score is not None and is_covered is not None:
            groups["covered" if is_covered else "not_covered"].append(score)
    return {name: _mean_and_count(values) for name, values in groups.items()}


def reading_split(rows: Sequence[dict[str, Any]], questions: Sequence[Example], chunks: Sequence[Chunk]) -> dict[str, Any] | None:
    """Retrieval or reading: a reading system's in-scope fact accuracy split by whether its excerpts held every key fact.

    A fact is *held* when its text (any ``|`` alternative) occurs in the title or text of some excerpt the system
    read, whichever document it came from: a short fact ("27") may be held by an excerpt about something else.

    Args:
        rows: the predictions of a system that reads retrieved excerpts, in question order; ``retrieved`` holds the
            ids of the chunks it read (none when the retriever found nothing: every fact missed) and ``unchecked``
            the answer the answer check replaced.
        questions: the evaluation questions.
        chunks: the run's chunks (the excerpts are looked up by id).

    Returns:
        ``{"excerpts_hold_facts": {"mean", "n"}, "excerpts_miss_facts": {"mean", "n"}, "answer_check": {"in_scope",
        "in_scope_right", "out_of_scope"}}``: the two groups cover the in-scope questions with key facts; the check
        counts every replaced answer, ``in_scope_right`` those that stated every key fact. None when there is
        nothing to report (no in-scope question with key facts and no replaced answer).
    """
    by_id = {chunk.chunk_id: chunk for chunk in chunks}
    groups: dict[str, list[float]] = {"excerpts_hold_facts": [], "excerpts_miss_facts": []}
    check = {"in_scope": 0, "in_scope_right": 0, "out_of_scope": 0}
    for row, question in zip(rows, questions):
        replaced = row.get("unchecked")
        scope = "in_scope" if in_scope(question) else "out_of_scope"
        check[scope] += replaced is not None
        accuracy = fact_accuracy(row["prediction"], question)
        if accuracy is None:
            continue
        read = "\n".join(f"{by_id[i].title}\n{by_id[i].text}" for i in row.get("retrieved") or [] if i in by_id)
        held = all(fact_present(fact, read) for fact in question["facts"])
        groups["excerpts_hold_facts" if held else "excerpts_miss_facts"].append(accuracy)
        check["in_scope_right"] += replaced is not None and fact_accuracy(replaced, question) == 1.0
    if not any(groups.values()) and not any(check.values()):
        return None
    return {**{name: _mean_and_count(values) for name, values in groups.items()}, "answer_check": check}


def _mean_and_count(values: list[float]) -> dict[str, Any]:
    return {"mean": sum(values) / len(values) if values else None, "n": len(values)}
