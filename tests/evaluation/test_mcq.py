import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from domainkd.errors import DomainKDError
from domainkd.evaluation.mcq import (
    MCQuestion,
    generated_choice_accuracy,
    loglik_choice,
    loglik_choice_accuracy,
    mcq_prompt,
    mcq_question,
    option_logliks,
    parse_option,
    read_teleqna,
    stratified_subset,
)
from domainkd.models import chat_messages, load_causal_lm, render_prompt

TELEQNA = Path(__file__).resolve().parents[3] / "shared" / "data" / "teleqna" / "teleqna.json.gz"
TELEQNA_OBJECT = {
    "question 0": {
        "question": "What does the Deconfigure operation do? [3GPP Release 18]",
        "option 1": "Starts mapping data",
        "option 2": "Stops mapping data",
        "option 3": "Supplies data",
        "option 4": "Fetches data",
        "answer": "option 2: Stops mapping data",
        "explanation": "It stops the mapping.",
        "category": "Standards specifications",
    },
    "question 1": {
        "question": "Which scheme uses message passing?",
        "option 1": "NOMA",
        "option 2": "PDMA",
        "option 3": "MUSA",
        "option 4": "MUST",
        "option 5": "SCMA",
        "answer": "option 5: SCMA",
        "explanation": "SCMA does.",
        "category": "Research publications",
    },
    "question 2": {
        "question": "Is 5G faster than 4G?",
        "option 1": "Yes",
        "option 2": "No",
        "answer": "option 1: yes",
        "explanation": "",
        "category": "Lexicon",
    },
}
NOMA = MCQuestion(
    "q1", "Which scheme uses message passing?", ("NOMA", "PDMA", "MUSA", "MUST", "SCMA"), 4, "SCMA does.", "Research"
)


# --- the question and its prompt ---


def test_as_example_numbers_the_options_and_uses_the_explanation_as_reference():
    assert NOMA.as_example() == {
        "id": "q1",
        "question": mcq_prompt(NOMA),
        "stem": "Which scheme uses message passing?",
        "answer": "SCMA does.",
        "options": ["NOMA", "PDMA", "MUSA", "MUST", "SCMA"],
        "answer_index": 4,
        "category": "Research",
        "scope": "in",
    }


def test_mcq_prompt_shows_options_and_asks_for_a_number():
    prompt = mcq_prompt(NOMA)
    assert prompt.startswith("Which scheme uses message passing?\noption 1: NOMA\noption 2: PDMA\noption 3: MUSA\n")
    assert "option 5: SCMA\n\n" in prompt
    assert "number of the correct option (1 to 5)" in prompt


def test_mcq_question_rebuilds_the_question_from_its_example():
    assert mcq_question(NOMA.as_example()) == NOMA


# --- reading ---


def test_read_teleqna_plain_and_gzip_give_the_same_questions(tmp_path):
    plain, packed = tmp_path / "tq.json", tmp_path / "tq.json.gz"
    plain.write_text(json.dumps(TELEQNA_OBJECT), encoding="utf-8")
    packed.write_bytes(gzip.compress(json.dumps(TELEQNA_OBJECT).encode("utf-8")))
    questions = read_teleqna(plain)
    assert read_teleqna(packed) == questions
    assert [q.id for q in questions] == ["question 0", "question 1", "question 2"]
    assert [q.answer_index for q in questions] == [1, 4, 0]
    assert [len(q.options) for q in questions] == [4, 5, 2]
    assert questions[1] == MCQuestion(
        "question 1", "Which scheme uses message passing?", ("NOMA", "PDMA", "MUSA", "MUST", "SCMA"), 4, "SCMA does.",
        "Research publications",
    )


def test_read_jsonl_rows_with_index_numbered_or_textual_answers(tmp_path):
    rows = [
        {"id": "a", "question": "Q1?", "options": ["x", "y", "z"], "answer_index": 2, "category": "C"},
        {"question": "Q2?", "options": ["x", "y"], "answer": "option 2: y", "explanation": "because"},
        {"question": "Q3?", "options": ["Red", "Blue"], "answer": " blue "},
        {"question": "Q4?", "option 1": "p", "option 2": "q", "answer": "option 1: p"},
    ]
    path = tmp_path / "mcq.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n", encoding="utf-8")
    questions = read_teleqna(path)
    assert [(q.id, q.answer_index, q.options) for q in questions] == [
        ("a", 2, ("x", "y", "z")), ("line2", 1, ("x", "y")), ("line3", 1, ("Red", "Blue")), ("line4", 0, ("p", "q"))
    ]
    assert (questions[0].category, questions[1].explanation, questions[1].category) == ("C", "because", "")


BAD_TELEQNA = {
    "missing options": (
        {"question 3": {"question": "Q?", "option 1": "a", "answer": "option 1: a"}}, "at least two option"
    ),
    "gap in options": (
        {"question 3": {"question": "Q?", "option 1": "a", "option 2": "b", "option 4": "d", "answer": "option 1: a"}},
        "without 'option 3'",
    ),
    "answer out of range": (
        {"question 3": {"question": "Q?", "option 1": "a", "option 2": "b", "answer": "option 3: c"}},
        "not among its 2 options",
    ),
    "answer not an option": (
        {"question 3": {"question": "Q?", "option 1": "a", "option 2": "b", "answer": "c"}},
        "not among its 2 options",
    ),
    "no question": ({"question 3": {"option 1": "a", "option 2": "b", "answer": "option 1: a"}}, "no 'question'"),
    "entry not an object": ({"question 3": ["a", "b"]}, "not an object"),
    "no entries": ({}, "no questions"),
}


@pytest.mark.parametrize("name", BAD_TELEQNA)
@pytest.mark.parametrize("packed", [False, True])
def test_malformed_teleqna_names_the_file_and_entry(tmp_path, name, packed):
    content, hint = BAD_TELEQNA[name]
    text = json.dumps(content)
    path = tmp_path / ("bad.json.gz" if packed else "bad.json")
    path.write_bytes(gzip.compress(text.encode()) if packed else text.encode())
    with pytest.raises(DomainKDError, match=hint) as error:
        read_teleqna(path)
    assert str(path) in str(error.value)
    if content:
        assert "'question 3'" in str(error.value)


BAD_FILES = {
    "empty.json": ("", "is empty"),
    "blank.jsonl": ("\n  \n", "is empty"),
    "broken.json": ('{"question 0": {"question": ', "neither a JSON object nor JSON Lines"),
    "rows.jsonl": ('{"question": "Q?", "options": ["a", "b"], "answer_index": 0}\nnot json\n', "line 2"),
    "index.jsonl": ('{"question": "Q?", "options": ["a", "b"], "answer_index": 2}\n', "answer_index 2"),
    "options.jsonl": ('{"question": "Q?", "options": "a, b", "answer_index": 0}\n', "at least two option"),
    "twice.jsonl": ('{"id": "x", "question": "Q?", "options": ["a", "b"], "answer_index": 0}\n' * 2, "id 'x' twice"),
    "number.json": ("17", "JSON int"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_malformed_files_raise_one_sentence_with_the_file_name(tmp_path, name):
    text, hint = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DomainKDError, match=hint) as error:
        read_teleqna(path)
    assert str(path) in str(error.value)


def test_missing_and_empty_gzip_files_are_reported(tmp_path):
    with pytest.raises(DomainKDError, match="does not exist"):
        read_teleqna(tmp_path / "absent.json")
    empty = tmp_path / "empty.json.gz"
    empty.write_bytes(gzip.compress(b""))
    with pytest.raises(DomainKDError, match=f"{empty} is empty"):
        read_teleqna(empty)


# --- stratified subsets ---


def _questions(counts: dict[str, int]) -> list[MCQuestion]:
    """Interleaved questions with ``counts[category]`` per category."""
    pending = {category: count for category, count in counts.items()}
    questions = []
    while any(pending.values()):
        for category in counts:
            if pending[category]:
                pending[category] -= 1
                questions.append(MCQuestion(f"{category}{pending[category]}", "Q?", ("a", "b"), 0, "", category))
    return questions


def test_stratified_subset_is_proportional_exact_and_in_input_order():
    questions = _questions({"big": 45, "mid": 20, "also": 20, "small": 10, "tiny": 5})
    subset = stratified_subset(questions, 20, seed=3)
    assert Counter(q.category for q in subset) == {"big": 9, "mid": 4, "also": 4, "small": 2, "tiny": 1}
    positions = [questions.index(q) for q in subset]
    assert positions == sorted(positions)
    assert stratified_subset(questions, 20, seed=3) == subset
    assert stratified_subset(questions, 20, seed=4) != subset


def test_stratified_subset_sizes_are_exact_with_every_category_present():
    questions = _questions({"big": 45, "mid": 20, "also": 20, "small": 10, "tiny": 5})
    for size in range(1, 100):
        counts = Counter(q.category for q in stratified_subset(questions, size))
        assert sum(counts.values()) == size
        assert len(counts) == 5 or size < 5
        assert counts["big"] >= counts["mid"] >= counts["small"] >= counts["tiny"]
    assert stratified_subset(questions, 500) == questions


def test_largest_remainder_then_one_per_category():
    # exact shares 3.5 / 1 / 0.5: remainders tie, the bigger category rounds up (4, 1, 0),
    # then the most over-served category gives one to the empty one
    questions = _questions({"a": 7, "b": 2, "c": 1})
    assert Counter(q.category for q in stratified_subset(questions, 5)) == {"a": 3, "b": 1, "c": 1}
    # fewer places than categories: plain largest remainder (1.4 / 0.4 / 0.2, the tie to the bigger)
    assert Counter(q.category for q in stratified_subset(questions, 2)) == {"a": 2}
    with pytest.raises(DomainKDError, match="at least 1"):
        stratified_subset(questions, 0)


# --- choosing by log-likelihood ---

# (sum, tokens, bytes): the sum favours A, the per-token mean B, the per-byte mean C
LOGLIKS = [(-4.0, 1, 2), (-6.0, 6, 12), (-9.0, 3, 90)]


@pytest.mark.parametrize(("normalise", "expected"), [("sum", 0), ("mean", 1), ("bytes", 2)])
def test_loglik_choice_normalisations(normalise, expected):
    assert loglik_choice(LOGLIKS, normalise) == expected
    assert loglik_choice([list(row) for row in LOGLIKS], normalise) == expected  # as read back from JSON


def test_loglik_choice_ties_go_to_the_lowest_index_and_bad_input_is_refused():
    assert loglik_choice([(-1.0, 1, 1), (-1.0, 1, 1)]) == 0
    assert loglik_choice([(-2.0, 1, 1), (-1.0, 1, 3), (-1.0, 2, 2)]) == 1
    assert loglik_choice([(-2.0, 2, 4), (-1.0, 1, 2)], "mean") == 0
    with pytest.raises(DomainKDError, match="sum, mean, bytes"):
        loglik_choice(LOGLIKS, "max")
    with pytest.raises(DomainKDError, match="no option"):
        loglik_choice([])


# --- parsing generated answers ---

OPTIONS = ["NOMA", "PDMA", "MUSA", "MUST", "SCMA"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("option 3", 2),
        ("Option 3:", 2),
        ("3)", 2),
        ("(3)", 2),
        ("3", 2),
        ("3. MUSA", 2),
        ("  4", 3),
        ("answer is 3", 2),
        ("The answer is (4).", 3),
        ("Answer: **3**", 2),
        ("**Option 5**", 4),
        ("The correct option is option #1.", 0),
        ("The correct answer is option 2: PDMA", 1),
        ("The correct answer is option 2: PDMA\nExplanation: it divides power.", 1),
        ("I would pick option 5 since SCMA uses message passing.", 4),
        ("SCMA", 4),
        ("  scma. ", 4),
        ("The answer is SCMA.", 4),
        ("option 2 or option 3", None),  # two different numbers
        ("option 2: MUSA", None),  # number and text disagree
        ("3GPP Release 18", None),
        ("5G NR uses SCMA-like schemes", None),
        ("3.5 GHz", None),
        ("2-5 km", None),
        ("The answer is 3 dB", None),
        ("option 7", None),  # out of range
        ("Option 3x", None),
        ("options 1 and 3", None),
        ("I don't know.", None),
        ("", None),
    ],
)
def test_parse_option(answer, expected):
    assert parse_option(answer, OPTIONS) == expected


def test_parse_option_reads_an_options_own_text_as_text():
    options = ["A", "B", "Both option 1 and option 2", "Neither"]
    assert parse_option("option 3: Both option 1 and option 2", options) == 2
    assert parse_option("Both option 1 and option 2.", options) == 2
    assert parse_option("Both option 1 and option 2 are right, and option 4 is wrong", options) is None


def test_parse_option_with_numeric_options():
    options = ["2", "4", "8", "12"]
    assert parse_option("8", options) == 2  # only the option text fits (8 is no option number)
    assert parse_option("12", options) == 3
    assert parse_option("option 3: 8", options) == 2
    assert parse_option("option 2: 4", options) == 1
    assert parse_option("4", options) is None  # option 4, or the option that reads "4"
    assert parse_option("3", options) == 2
    assert parse_option("option 2", ["0", "4", "2", "1"]) == 1  # not "option" + the text "2"
    assert parse_option("option 4", ["4", "5", "6", "7"]) == 3


def test_parse_option_numbers_inside_option_texts_are_not_cues():
    assert parse_option("5-qubit backend", ["5-qubit backend", "16-qubit backend", "20-qubit backend"]) == 0
    assert parse_option("2, 6, 27/31, and 47/48 GHz", ["2, 6, 27/31, and 47/48 GHz", "5G NR and Wi-Fi"]) == 0
    assert parse_option("3 dB", ["1 dB", "2 dB", "3 dB", "6 dB"]) == 2


def test_parse_option_longest_option_text_wins_and_duplicates_are_ambiguous():
    assert parse_option("2 ms", ["ms", "2 ms", "5 ms"]) == 1
    assert parse_option("same", ["same", "Same", "other"]) is None


# --- per-example scores ---


def test_generated_choice_accuracy():
    example = NOMA.as_example()
    assert generated_choice_accuracy({"prediction": "Option 5: SCMA"}, example) == 1.0
    assert generated_choice_accuracy({"prediction": "option 1"}, example) == 0.0
    assert generated_choice_accuracy({"prediction": "no idea"}, example) == 0.0
    assert generated_choice_accuracy({"prediction": "option 5"}, {"question": "q", "answer": "a"}) is None


def test_loglik_choice_accuracy_uses_the_summed_logprob():
    example = {**NOMA.as_example(), "options": ["A", "B", "C"], "answer_index": 0}
    assert loglik_choice_accuracy({"option_logliks": [list(row) for row in LOGLIKS]}, example) == 1.0
    assert loglik_choice_accuracy({"option_logliks": [[-9.0, 1, 1], [-1.0, 9, 9], [-5.0, 1, 1]]}, example) == 0.0
    assert loglik_choice_accuracy({"prediction": "option 1"}, example) is None
    assert loglik_choice_accuracy({"option_logliks": LOGLIKS}, {"question": "q", "answer": "a"}) is None


# --- log-likelihoods from a tiny model ---

TINY_QUESTIONS = [
    MCQuestion("a", "How many days of leave do staff get?", ("27 days", "6", "19 days' notice on form HR-22"), 0),
    MCQuestion("b", "Who issues parking permits?", ("Tomas Brenner", "The handbook", "Nobody at all, ever", "HR"), 0),
    MCQuestion("c", "How long is a badge report window?", ("2 hours", "15 µs"), 0),
]


def _reference_logliks(model, tokenizer, question):
    """Each option scored alone: one unpadded forward pass over prompt + option, full logits."""
    prompt = render_prompt(tokenizer, chat_messages(None, mcq_prompt(question)))
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    scores = []
    for option in question.options:
        option_ids = tokenizer(f" {option}", add_special_tokens=False)["input_ids"]
        assert tokenizer(f"{prompt} {option}", add_special_tokens=False)["input_ids"] == prompt_ids + option_ids
        with torch.no_grad():
            logprobs = model(input_ids=torch.tensor([prompt_ids + option_ids])).logits[0].float().log_softmax(-1)
        positions = range(len(prompt_ids) - 1, len(prompt_ids) + len(option_ids) - 1)
        total = sum(logprobs[position, token].item() for position, token in zip(positions, option_ids))
        scores.append((total, len(option_ids), len(f" {option}".encode())))
    return scores


def _assert_close(got, expected):
    assert len(got) == len(expected)
    for got_options, expected_options in zip(got, expected):
        assert [row[1:] for row in got_options] == [row[1:] for row in expected_options]
        assert [row[0] for row in got_options] == pytest.approx([row[0] for row in expected_options], abs=1e-4)


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    return load_causal_lm(tiny_teacher)


def test_option_logliks_batched_equals_each_option_alone(teacher):
    model, tokenizer = teacher
    expected = [_reference_logliks(model, tokenizer, question) for question in TINY_QUESTIONS]
    assert len({row[1] for rows in expected for row in rows}) > 2  # options of different token lengths
    assert expected[2][1][2] == len(" 15 µs".encode()) == 7  # bytes, not characters
    spread = [row[0] for rows in expected for row in rows]
    assert max(spread) - min(spread) > 1.0  # a sharp model, so a misalignment would show
    for batch_size in (1, 2, 8):
        _assert_close(option_logliks(model, tokenizer, TINY_QUESTIONS, batch_size=batch_size), expected)


def test_option_logliks_ignore_the_tokenizers_padding_side(teacher):
    model, tokenizer = teacher
    results = []
    for side in ("left", "right"):
        tokenizer.padding_side = side
        results.append(option_logliks(model, tokenizer, TINY_QUESTIONS, batch_size=3))
    _assert_close(results[0], results[1])


def test_option_logliks_keep_only_the_logits_options_need(teacher):
    model, tokenizer = teacher
    widths = []
    hook = model.register_forward_hook(lambda module, args, output: widths.append(output.logits.shape[1]))
    try:
        logliks = option_logliks(model, tokenizer, TINY_QUESTIONS, batch_size=8)
    finally:
        hook.remove()
    assert widths == [max(row[1] for rows in logliks for row in rows) + 1]


def test_option_logliks_with_absolute_positions(teacher):
    # GPT-2 adds a learned embedding per position: left padding is right only with position_ids
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tokenizer = teacher
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=32, n_layer=2, n_head=4, initializer_range=0.3
    )
    model = GPT2LMHeadModel(config).eval()
    expected = [_reference_logliks(model, tokenizer, question) for question in TINY_QUESTIONS]
    _assert_close(option_logliks(model, tokenizer, TINY_QUESTIONS, batch_size=8), expected)


# --- the real TeleQnA file, when this machine has it ---


def test_real_teleqna_file_and_its_200_question_subset():
    if not TELEQNA.exists():
        pytest.skip(f"{TELEQNA} is not on this machine")
    questions = read_teleqna(TELEQNA)
    assert len(questions) == 10_000
    assert Counter(q.category for q in questions) == {
        "Research publications": 4500, "Standards specifications": 2000, "Research overview": 2000,
        "Standards overview": 1000, "Lexicon": 500,
    }
    assert {len(q.options) for q in questions} == {2, 3, 4, 5}
    assert questions[1].options[questions[1].answer_index] == "SCMA"
    raw = json.loads(gzip.decompress(TELEQNA.read_bytes()))
    parsed = Counter(parse_option(raw[q.id]["answer"], q.options) == q.answer_index for q in questions)
    assert parsed[True] >= 9_999  # one gold answer names option 5 with option 4's text: read as ambiguous
    subset = stratified_subset(questions, 200, seed=0)
    assert Counter(q.category for q in subset) == {
        "Research publications": 90, "Standards specifications": 40, "Research overview": 40,
        "Standards overview": 20, "Lexicon": 10,
    }
    assert stratified_subset(questions, 200, seed=0) == subset
