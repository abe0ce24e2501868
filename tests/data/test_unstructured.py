import pytest

from domainkd.data import prompts
from domainkd.data.strategies import STRATEGIES, StrategyContext, strategy_params, validate_strategy_params
from domainkd.data.unstructured import check_rewrite, split_passages
from domainkd.sources import Chunk, Sources


def make_chunk(chunk_id, document, title, text):
    return Chunk(chunk_id, document, title, text, 0, len(text), len(text.split()))


RAIL = "Book trains through Railco. The mileage rate is 0.30 EUR per km."
CLAIM = "To claim expenses, fill in form TR-5 and attach receipts within 30 days of the trip."
LATE = "Late claims need approval from Ilse Varga in the finance office before payment."
LEAVE = "Staff get 27 days of leave per year and ask Ilse Varga."
CHUNKS = [
    make_chunk("travel.md#0-150", "travel.md", "Travel", f"# Travel\n{RAIL}\n{CLAIM}"),
    make_chunk("travel.md#60-250", "travel.md", "Travel", f"{CLAIM}\n{LATE}"),  # overlaps the first chunk
    make_chunk("leave.md#0-60", "leave.md", "Leave", LEAVE),
    make_chunk("contact.md#0-12", "contact.md", "Contact", "Contact: HR."),
]


def base(chunk_id, document, title, variant):
    return {"strategy": "unstructured", "variant": variant, "question": None, "answer": None, "document": document, "chunk_id": chunk_id, "title": title}


def test_passages_are_whole_lines_up_to_the_word_limit():
    assert split_passages(f"# Travel\n{RAIL}\n\n{CLAIM}", 20) == [f"# Travel\n{RAIL}", CLAIM]
    long_line = f"{RAIL} {CLAIM}"  # 28 words on one line: cut at the sentence ends
    assert split_passages(long_line, 20) == ["Book trains through Railco. The mileage rate is 0.30 EUR per km.", CLAIM]


def test_raw_passages_skip_repeats_and_scraps():
    output = STRATEGIES["unstructured"].build(StrategyContext(Sources(CHUNKS), None, "x"), strategy_params("unstructured", {"passage_words": 20}))
    assert output.examples == [
        {**base("travel.md#0-150", "travel.md", "Travel", "raw"), "text": f"# Travel\n{RAIL}"},
        {**base("travel.md#0-150", "travel.md", "Travel", "raw"), "text": CLAIM},
        {**base("travel.md#60-250", "travel.md", "Travel", "raw"), "text": LATE},
        {**base("leave.md#0-60", "leave.md", "Leave", "raw"), "text": LEAVE},
    ]
    assert [(row["chunk_id"], row["reason"]) for row in output.rejected] == [
        ("travel.md#60-250", "duplicate passage"),
        ("contact.md#0-12", "passage too short"),
    ]


def test_rewrites_keep_every_name_and_number():
    rewrites = {
        f"# Travel\n{RAIL}": "Trains are booked through Railco, and the mileage rate is 0.30 EUR per km.",
        CLAIM: "Claims need form TR-5 and the receipts.",
        LATE: "",  # the request failed
        LEAVE: "Each year staff get 27 days of leave; Ilse Varga handles the requests.",
    }
    labels = []

    def ask(conversations, label, max_new_tokens=None):
        labels.append((label, max_new_tokens))
        return [rewrites[conversation[-1]["content"]] for conversation in conversations]

    params = strategy_params("unstructured", {"passage_words": 20, "raw": False, "rewrite": True})
    output = STRATEGIES["unstructured"].build(StrategyContext(Sources(CHUNKS), ask, "x"), params)
    assert labels == [("teacher: passage rewrites", 104)]
    assert output.examples == [
        {**base("travel.md#0-150", "travel.md", "Travel", "rewritten"), "text": rewrites[f"# Travel\n{RAIL}"], "passage": f"# Travel\n{RAIL}"},
        {**base("leave.md#0-60", "leave.md", "Leave", "rewritten"), "text": rewrites[LEAVE], "passage": LEAVE},
    ]
    assert [(row["chunk_id"], row["reason"]) for row in output.rejected] == [
        ("travel.md#60-250", "duplicate passage"),
        ("contact.md#0-12", "passage too short"),
        ("travel.md#0-150", "rewrite drops '30'"),
        ("travel.md#60-250", "teacher request failed"),
    ]


@pytest.mark.parametrize(
    ("rewrite", "reason"),
    [
        ("First fill in form TR-5, then attach the receipts", "rewrite cut off"),
        ("Wear a veil and fill in form TR-5 and attach receipts.", "rewrite copies the prompt's example"),
        ("Fill in form TR-5 and attach receipts to Ilse Varga.", "rewrite states 'ilse', which is not in the source"),
        ("First fill in form TR-5, then attach the receipts.", None),  # "1." and "2." number steps: not facts to keep
    ],
)
def test_rewrite_checks(rewrite, reason):
    assert check_rewrite(rewrite, "To claim:\n1. Fill in form TR-5.\n2. Attach receipts.") == reason


def test_unstructured_plan_and_cap():
    sources = Sources(CHUNKS)
    raw = STRATEGIES["unstructured"].plan(sources, strategy_params("unstructured", {"passage_words": 20}))
    assert (raw.teacher_calls, raw.examples) == (0, 4)
    both = STRATEGIES["unstructured"].plan(sources, strategy_params("unstructured", {"passage_words": 20, "rewrite": True}))
    assert (both.teacher_calls, both.examples) == (4, 8)
    params = strategy_params("unstructured", {"passage_words": 20, "max_passages": 2})
    capped = STRATEGIES["unstructured"].build(StrategyContext(sources, None, "x"), params)
    assert [example["document"] for example in capped.examples] == ["travel.md", "leave.md"]  # one from each document first


def test_unstructured_params_reject_unknown_keys_and_no_variant():
    with pytest.raises(ValueError, match=r"^strategy 'unstructured' has no parameter 'lines'$"):
        validate_strategy_params("unstructured", {"lines": 5})
    with pytest.raises(ValueError, match="turn on raw, rewrite, permutations or fact_frames"):
        validate_strategy_params("unstructured", {"raw": False})


def test_the_one_shot_rewrite_passes_the_check_it_teaches():
    conversation = prompts.passage_rewrite_conversation("p")
    assert conversation[-1] == {"role": "user", "content": "p"}
    assert check_rewrite(conversation[2]["content"], conversation[1]["content"]) is None


def test_permuted_copies_reorder_sentences_and_keep_every_one():
    from domainkd.data.unstructured import permuted

    passage = f"{RAIL}\n{CLAIM}"
    copies = permuted(passage, 3)
    sentences = ["Book trains through Railco.", "The mileage rate is 0.30 EUR per km.", CLAIM]
    assert len(copies) == 3 and len(set(copies)) == 3
    for copy in copies:
        assert sorted(s for s in sentences if s in copy) == sorted(sentences)
        assert copy != " ".join(sentences)  # never the original order
    assert permuted(passage, 3) == copies  # the same copies on every run
    assert permuted(LEAVE, 2) == []  # one sentence: nothing to reorder


def test_fact_frames_restate_each_fact_once_per_frame_without_the_teacher():
    params = strategy_params("unstructured", {"raw": False, "fact_frames": 2})
    output = STRATEGIES["unstructured"].build(StrategyContext(Sources(CHUNKS), None, "x"), params)
    frames = [example for example in output.examples if example["variant"] == "fact_frame"]
    facts = [example["fact"] for example in frames]
    assert facts.count(CLAIM) == 2  # in two overlapping chunks, restated once per frame
    assert "Travel: " + CLAIM in [example["text"] for example in frames]
    assert 'From the section "Leave": ' + LEAVE in [example["text"] for example in frames]
    plan = STRATEGIES["unstructured"].plan(Sources(CHUNKS), params)
    assert plan.teacher_calls == 0 and plan.examples == len(frames)
