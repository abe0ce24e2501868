import pytest

from domainkd.data import prompts
from domainkd.data.general import check_instructed_answer, check_instruction
from domainkd.data.strategies import STRATEGIES, StrategyContext, strategy_params, validate_strategy_params
from domainkd.sources import Chunk, Sources


def make_chunk(chunk_id, document, title, text):
    return Chunk(chunk_id, document, title, text, 0, len(text), len(text.split()))


LEAVE = make_chunk("leave.md#0-80", "leave.md", "Annual Leave", "Staff get 27 days of leave per year. Requests go to Ilse Varga on form HR-22.")
TRAVEL = make_chunk(
    "travel.md#0-120", "travel.md", "Travel",
    "Book trains through Railco, which is cheaper.\n\nTo claim expenses:\n1. Fill in form TR-5.\n2. Attach receipts.",
)
PARAMS = {"instructions_per_chunk": 3, "kinds": ["explain", "steps", "define"]}

INSTRUCTIONS = {  # (section, kind) -> teacher reply
    ("Annual Leave", "explain"): "Explain how staff request their 27 days of leave.",
    ("Travel", "explain"): "Explain why trains are booked through Railco.",
    ("Annual Leave", "steps"): "",  # the request failed
    ("Travel", "steps"): "Instruction: List the steps to claim travel expenses.",
    ("Annual Leave", "define"): "Define the term Sabbatical as used for leave.",
    ("Travel", "define"): "Explain why trains are booked through Railco.",
}
ANSWERS = {
    "Explain how staff request their 27 days of leave.": "Staff get 27 days of leave per year and send requests to Ilse Varga on form HR-22.",
    "Explain why trains are booked through Railco.": "Trains are booked through Railco because Railco gives a 15% discount.",
    "List the steps to claim travel expenses.": "1. Fill in form TR-5.\n2. Attach receipts.",
}
KIND_OF = {asks_for: kind for kind, (asks_for, _, _) in prompts.INSTRUCTION_KINDS.items()}


def reply(conversation):
    prompt = conversation[-1]["content"]
    section = prompt.split("\n")[0].removeprefix("Section: ")
    if conversation[0]["content"] == prompts.INSTRUCTION_SYSTEM:
        return INSTRUCTIONS[section, KIND_OF[prompt.rsplit("Kind: ", 1)[1]]]
    return ANSWERS[prompt.rsplit("Instruction: ", 1)[1]]


def fake_teacher():
    calls = []

    def ask(conversations, label, max_new_tokens=None):
        calls.append(label)
        return [reply(conversation) for conversation in conversations]

    return ask, calls


def test_general_keeps_grounded_answers_to_distinct_instructions():
    ask, calls = fake_teacher()
    output = STRATEGIES["general"].build(StrategyContext(Sources([LEAVE, TRAVEL]), ask, "x"), strategy_params("general", PARAMS))
    assert calls == ["teacher: instructions", "teacher: instructed answers"]
    assert output.examples == [
        {
            "strategy": "general", "variant": "explain", "document": "leave.md", "chunk_id": "leave.md#0-80", "title": "Annual Leave",
            "question": "Explain how staff request their 27 days of leave.",
            "answer": "Staff get 27 days of leave per year and send requests to Ilse Varga on form HR-22.",
        },
        {
            "strategy": "general", "variant": "steps", "document": "travel.md", "chunk_id": "travel.md#0-120", "title": "Travel",
            "question": "List the steps to claim travel expenses.",
            "answer": "1. Fill in form TR-5.\n2. Attach receipts.",
        },
    ]
    assert [(row["chunk_id"], row["variant"], row["reason"]) for row in output.rejected] == [
        ("leave.md#0-80", "steps", "teacher request failed"),
        ("leave.md#0-80", "define", "instruction mentions 'sabbatical', which is not in the source"),
        ("travel.md#0-120", "define", "duplicate instruction"),
        ("travel.md#0-120", "explain", "answer states '15', which is not in the source"),
    ]


def test_kinds_rotate_over_chunks_and_the_cap_reaches_every_chunk_first():
    params = strategy_params("general", {"instructions_per_chunk": 2, "kinds": ["explain", "steps", "define"], "max_examples": 3})
    asked = []

    def ask(conversations, label, max_new_tokens=None):
        if label == "teacher: instructions":
            asked.extend((c[-1]["content"].split("\n")[0], KIND_OF[c[-1]["content"].rsplit("Kind: ", 1)[1]]) for c in conversations)
        return [""] * len(conversations)

    output = STRATEGIES["general"].build(StrategyContext(Sources([LEAVE, TRAVEL]), ask, "x"), params)
    assert asked == [("Section: Annual Leave", "explain"), ("Section: Travel", "define"), ("Section: Annual Leave", "steps")]
    assert output.examples == [] and {row["reason"] for row in output.rejected} == {"teacher request failed"}


def test_general_plan_counts_both_stages():
    sources = Sources([LEAVE, TRAVEL])
    plan = STRATEGIES["general"].plan(sources, strategy_params("general", PARAMS))
    assert (plan.teacher_calls, plan.examples) == (12, 6)
    capped = STRATEGIES["general"].plan(sources, strategy_params("general", {**PARAMS, "max_examples": 4}))
    assert (capped.teacher_calls, capped.examples) == (8, 4)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("Staff get 27 days of", "answer cut off"),
        ("Staff must wear a veil for leave.", "answer copies the prompt's example"),
        ("Wonderful colleagues enjoy relaxing holidays together somewhere.", "answer mostly unsupported by the source"),
        ("Staff get 28 days of leave.", "answer states '28', which is not in the source"),
        ("1. Get 27 days of leave\n2. Ask Ilse Varga", None),
    ],
)
def test_instructed_answer_checks(answer, reason):
    assert check_instructed_answer(answer, LEAVE) == reason


def test_general_params_reject_unknown_keys_and_kinds():
    with pytest.raises(ValueError, match=r"^strategy 'general' has no parameter 'instructions'$"):
        validate_strategy_params("general", {"instructions": 2})
    with pytest.raises(ValueError, match=r"unknown instruction kind 'joke'; choose from explain, summarise"):
        validate_strategy_params("general", {"kinds": ["joke"]})


@pytest.mark.parametrize("kind", list(prompts.INSTRUCTION_KINDS))
def test_every_one_shot_example_passes_the_checks_it_teaches(kind):
    example = make_chunk("x", "x", prompts.EXAMPLE_SECTION, prompts.EXAMPLE_TEXT)
    instruction = prompts.instruction_conversation("t", "text", kind)[2]["content"]
    answer_conversation = prompts.instructed_answer_conversation("t", "text", instruction, kind)
    assert answer_conversation[1]["content"].endswith(f"Instruction: {instruction}")
    assert check_instruction(instruction, example) is None
    assert check_instructed_answer(answer_conversation[2]["content"], example) is None
