"""RAFT copies: excerpts from the retriever, the answer's chunk in or out, refusals with excerpts."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from domainkd.config import RaftConfig, config_from_dict
from domainkd.data.raft import answer_chunks, raft_candidates, raft_examples
from domainkd.evaluation.systems import excerpt_prompt
from domainkd.sources import Chunk


def chunk(chunk_id: str, text: str) -> Chunk:
    return Chunk(chunk_id, chunk_id.split("#")[0], chunk_id.split("#")[0].title(), text, 0, len(text), len(text.split()))


CHUNKS = [
    chunk("leave.md#0", "Staff get 27 days of leave per year."),
    chunk("leave.md#1", "Staff get 27 days of leave per year. Carry-over needs the COO."),  # overlap: same fact
    chunk("parking.md#0", "Permits cost 85 euros."),
    chunk("badges.md#0", "Lost badges are reported within 2 hours."),
    chunk("travel.md#0", "Trips abroad need form TR-4."),
]
QA = {
    "strategy": "context_qa", "variant": "quiz", "question": "How many days of leave?", "answer": "27 days.",
    "fact": "Staff get 27 days of leave per year.", "chunk_id": "leave.md#0", "document": "leave.md",
}
REFUSAL = {"strategy": "refusal", "variant": "general", "question": "What is the capital of Peru?", "answer": "No idea."}


def copies_of(examples, *args):
    """The excerpt copies alone (the originals come first in what raft_examples returns)."""
    return raft_examples(examples, *args)[len(examples):]


@dataclass
class Hit:
    chunk: Chunk


def searcher(order: list[str]):
    """A retriever returning the chunks in ``order`` for every question; records the depths asked for."""
    by_id = {c.chunk_id: c for c in CHUNKS}
    depths = []

    def search(questions, top_k):
        depths.append(top_k)
        return [[Hit(by_id[i]) for i in order[:top_k]] for _ in questions]

    return search, depths


def config(**raft):
    return config_from_dict({
        "refusal_text": "No idea.", "data": {"documents": "docs", "raft": raft}, "retrieval": {"top_k": 2},
    })


def test_answer_chunks_are_every_chunk_holding_the_fact():
    assert answer_chunks(QA, CHUNKS) == {"leave.md#0", "leave.md#1"}
    assert answer_chunks({**QA, "fact": None}, CHUNKS) == {"leave.md#0"}
    assert answer_chunks(REFUSAL, CHUNKS) == set()


def test_candidates_are_document_qa_and_refusals():
    record_qa = {"strategy": "structured", "question": "Capacity of Atlas?", "answer": "12.", "chunk_id": None}
    passage = {"strategy": "unstructured", "text": "Staff get 27 days.", "chunk_id": "leave.md#0"}
    copy = {**QA, "prompt": "Document excerpts: ..."}
    rows = [QA, REFUSAL, record_qa, passage, copy]
    assert raft_candidates(rows, RaftConfig()) == [QA, REFUSAL]
    assert raft_candidates(rows, RaftConfig(refusals=False)) == [QA]


def test_a_copy_with_the_answer_keeps_the_retrieved_order_and_the_layout_of_answering():
    search, depths = searcher(["leave.md#0", "parking.md#0", "badges.md#0", "leave.md#1"])
    [copy] = copies_of([QA], CHUNKS, search, config(without_gold=0))
    assert copy["excerpts"] == ["leave.md#0", "parking.md#0"]
    assert copy["answer"] == "27 days." and copy["variant"] == "with_answer"
    assert copy["strategy"] == "raft" and copy["source_strategy"] == "context_qa"
    by_id = {c.chunk_id: c for c in CHUNKS}
    assert copy["prompt"] == excerpt_prompt(QA["question"], [by_id["leave.md#0"], by_id["parking.md#0"]], "No idea.")
    assert depths == [4]  # top_k plus the two chunks holding the fact, so a copy without them still has top_k


def test_a_missed_answer_chunk_replaces_the_last_hit():
    search, _ = searcher(["parking.md#0", "badges.md#0", "travel.md#0", "leave.md#0"])
    [copy] = copies_of([QA], CHUNKS, search, config(without_gold=0))
    assert copy["excerpts"][0] == "parking.md#0"
    assert copy["excerpts"][1] in {"leave.md#0", "leave.md#1"}


@pytest.mark.parametrize("target, answer", [("refusal", "No idea."), ("memory", "27 days.")])
def test_a_copy_without_the_answer_holds_no_chunk_with_the_fact(target, answer):
    search, _ = searcher(["leave.md#0", "leave.md#1", "parking.md#0", "badges.md#0"])
    [copy] = copies_of([QA], CHUNKS, search, config(without_gold=1, without_gold_target=target))
    assert copy["excerpts"] == ["parking.md#0", "badges.md#0"]
    assert copy["variant"] == "without_answer" and copy["answer"] == answer


def test_source_answers_quote_the_fact_where_the_excerpts_hold_it_and_nowhere_else():
    search, _ = searcher(["leave.md#0", "leave.md#1", "parking.md#0", "badges.md#0"])
    no_fact = {**QA, "question": "What does the leave section say?", "fact": None, "answer": "Leave rules."}
    copies = copies_of([QA, no_fact, REFUSAL], CHUNKS, search, config(without_gold=0, answer="source"))
    assert [c["answer"] for c in copies] == [QA["fact"], "Leave rules.", "No idea."]
    assert copies[0]["variant"] == "with_answer" and QA["fact"] in copies[0]["prompt"]
    # a copy without the answer's chunk has no sentence to quote: it refuses, or answers from memory as taught
    [refused] = copies_of([QA], CHUNKS, search, config(without_gold=1, answer="source"))
    assert refused["answer"] == "No idea."
    [memory] = copies_of([QA], CHUNKS, search, config(without_gold=1, without_gold_target="memory", answer="source"))
    assert memory["answer"] == "27 days."


def test_source_answers_train_a_fact_answers_twin_once_and_leave_the_originals_alone():
    search, _ = searcher(["leave.md#0", "parking.md#0", "badges.md#0", "travel.md#0"])
    twin = {**QA, "answer": QA["fact"], "variant": "quiz+fact"}  # context_qa's fact_answers
    kept = raft_examples([QA, twin], CHUNKS, search, config(without_gold=0, answer="source", keep_closed_book=True))
    assert kept[:2] == [QA, twin] and QA["answer"] == "27 days."  # closed-book originals keep their answers
    assert [copy["answer"] for copy in kept[2:]] == [QA["fact"]]


def test_refusals_read_their_retrieved_excerpts_and_still_refuse():
    search, _ = searcher(["travel.md#0", "parking.md#0", "badges.md#0"])
    [copy] = copies_of([REFUSAL], CHUNKS, search, config(without_gold=0))
    assert copy["excerpts"] == ["travel.md#0", "parking.md#0"]
    assert copy["answer"] == "No idea." and copy["variant"] == "refusal"


def test_share_and_without_gold_are_drawn_from_the_seed():
    rows = [{**QA, "question": f"Leave question {n}?"} for n in range(400)]
    search, _ = searcher(["leave.md#0", "parking.md#0", "badges.md#0", "travel.md#0"])
    copies = copies_of(rows, CHUNKS, search, config(share=0.5, without_gold=0.25))
    assert 160 <= len(copies) <= 240
    without = sum(copy["variant"] == "without_answer" for copy in copies)
    assert 0.15 * len(copies) <= without <= 0.35 * len(copies)
    again = copies_of(rows, CHUNKS, search, config(share=0.5, without_gold=0.25))
    assert again == copies
    other = copies_of(rows, CHUNKS, search, config(share=0.5, without_gold=0.25, seed=1))
    assert [c["question"] for c in other] != [c["question"] for c in copies]


def test_shuffled_order_moves_the_answer_chunk():
    rows = [{**QA, "question": f"Leave question {n}?"} for n in range(40)]
    search, _ = searcher(["leave.md#0", "parking.md#0", "badges.md#0", "travel.md#0"])
    copies = copies_of(rows, CHUNKS, search, config(without_gold=0, order="shuffled", top_k=3))
    positions = {copy["excerpts"].index("leave.md#0") for copy in copies}
    assert positions == {0, 1, 2}
    assert all(sorted(c["excerpts"]) == ["badges.md#0", "leave.md#0", "parking.md#0"] for c in copies)


def test_without_closed_book_the_copied_examples_are_replaced():
    search, _ = searcher(["leave.md#0", "parking.md#0", "badges.md#0", "travel.md#0"])
    record_qa = {"strategy": "structured", "question": "Capacity of Atlas?", "answer": "12.", "chunk_id": None}
    kept = raft_examples([QA, record_qa, REFUSAL], CHUNKS, search, config(keep_closed_book=True))
    assert kept[:3] == [QA, record_qa, REFUSAL] and len(kept) == 5
    replaced = raft_examples([QA, record_qa, REFUSAL], CHUNKS, search, config(keep_closed_book=False))
    assert replaced[0] == record_qa and [row["strategy"] for row in replaced[1:]] == ["raft", "raft"]
