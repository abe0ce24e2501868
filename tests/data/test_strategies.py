import pytest

from domainkd.data import prompts
from domainkd.data.refusal import check_unanswerable
from domainkd.data.strategies import STRATEGIES, StrategyContext, strategy_params, validate_strategy_params
from domainkd.sources import Chunk, Record, Sources


def make_chunk(chunk_id, document, title, text):
    return Chunk(chunk_id, document, title, text, 0, len(text), len(text.split()))


def context(chunks, ask, refusal_text="I don't know."):
    return StrategyContext(Sources(chunks), ask, refusal_text)


CHUNK = make_chunk("leave.md#0-0", "leave.md", "Annual Leave", "Staff get 27 days of leave per year. Form HR-22 goes to Ilse Varga.")


def fake_teacher(reply):
    """An ``ask`` function answering with ``reply(conversation)``; records the progress labels."""
    calls = []

    def ask(conversations, label, max_new_tokens=None):
        calls.append(label)
        return [reply(conversation) for conversation in conversations]

    return ask, calls


def test_context_qa_keeps_grounded_pairs_and_rewordings():
    rewordings = {  # keyed by the one-shot example the variant uses
        prompts.PARAPHRASE_EXAMPLES[0][0]: "What is the yearly leave allowance?",
        prompts.PARAPHRASE_EXAMPLES[1][0]: "How many days off do I get each year?",
        prompts.PARAPHRASE_EXAMPLES[2][0]: "How many days of leave do staff get per year?",
    }

    def reply(conversation):
        prompt = conversation[-1]["content"]
        if not prompt.startswith("Section:"):
            return rewordings[conversation[1]["content"]]
        if "27 days" in prompt:
            return "Question: How many days of leave do staff get per year?\nAnswer: Staff get 27 days of leave per year."
        return "Question: Who receives form HR-22?\nAnswer: Form HR-22 goes to Ilse Varga in Room 7."

    ask, calls = fake_teacher(reply)
    params = strategy_params("context_qa", {"questions_per_fact": 1, "paraphrases_per_question": 3})
    output = STRATEGIES["context_qa"].build(context([CHUNK], ask), params)
    assert calls == ["teacher: questions", "teacher: rewordings"]
    questions = [example["question"] for example in output.examples]
    assert questions == [
        "How many days of leave do staff get per year?",
        "What is the yearly leave allowance?",
        "How many days off do I get each year?",
    ]
    assert all(example["answer"] == "Staff get 27 days of leave per year." for example in output.examples)
    assert all(example["chunk_id"] == "leave.md#0-0" and example["document"] == "leave.md" for example in output.examples)
    reasons = [row["reason"] for row in output.rejected]
    assert "answer states '7', which is not in the source" in reasons
    assert "paraphrase repeats the question" in reasons


def test_rewording_that_copies_the_example_is_rejected():
    def reply(conversation):
        if conversation[-1]["content"].startswith("Section:"):
            return "Question: How many days of leave do staff get per year?\nAnswer: Staff get 27 days of leave per year."
        return "How many leave days can I take per year for my beehives?"

    ask, _ = fake_teacher(reply)
    params = strategy_params("context_qa", {"questions_per_fact": 1, "paraphrases_per_question": 1})
    output = STRATEGIES["context_qa"].build(context([CHUNK], ask, "x"), params)
    assert [e["variant"] for e in output.examples] == ["quiz"]  # the rewording was dropped
    assert "paraphrase copies the prompt's example" in [row["reason"] for row in output.rejected]


def test_each_style_asks_its_own_question_about_the_fact():
    by_style = {
        prompts.QA_STYLES["quiz"]: "Question: How many days of leave do staff get per year?\nAnswer: Staff get 27 days of leave per year.",
        prompts.QA_STYLES["casual"]: "Question: How many days off can I take in a year?\nAnswer: You get 27 days of leave per year.",
        prompts.QA_STYLES["check"]: "Question: How many days of leave do staff get per year?\nAnswer: Staff get 27 days.",
    }

    def reply(conversation):
        assert conversation[-1]["content"].startswith("Section: Annual Leave\nFact: ")
        if "27 days" not in conversation[-1]["content"]:
            return "Question: Who checks hives on the roof?\nAnswer: Ilse Varga checks the rooftop hives."
        return by_style[conversation[2]["content"]]

    ask, calls = fake_teacher(reply)
    output = STRATEGIES["context_qa"].build(context([CHUNK], ask, "x"), strategy_params("context_qa", {"questions_per_fact": 3}))
    assert calls == ["teacher: questions"]  # no rewordings by default
    assert [(e["variant"], e["question"]) for e in output.examples] == [
        ("quiz", "How many days of leave do staff get per year?"),
        ("casual", "How many days off can I take in a year?"),
    ]
    reasons = [row["reason"] for row in output.rejected]
    assert reasons.count("question repeats another style's question") == 1
    assert reasons.count("pair copies the prompt's example") == 3


def test_context_qa_teacher_calls_for_dry_run():
    params = strategy_params("context_qa", {"questions_per_fact": 2, "paraphrases_per_question": 2, "max_facts_per_chunk": 1})
    assert STRATEGIES["context_qa"].plan(Sources([CHUNK, CHUNK]), params).teacher_calls == 12


def test_context_qa_questions_may_name_the_section_title_but_nothing_else_unseen():
    licence = make_chunk("mpl.txt#0", "MPL-2.0.txt", "MPL-2.0", "Any litigation may be brought only in the courts of Ireland.")
    replies = iter([
        "Question: Where can litigation about the MPL-2.0 be brought?\nAnswer: Only in the courts of Ireland.",
        "Question: I'm suing under the GPL-3; where do I go?\nAnswer: Only to the courts of Ireland.",
    ])
    ask, _ = fake_teacher(lambda conversation: next(replies))
    params = strategy_params("context_qa", {"questions_per_fact": 2, "paraphrases_per_question": 0})
    output = STRATEGIES["context_qa"].build(context([licence], ask), params)
    assert [e["question"] for e in output.examples] == ["Where can litigation about the MPL-2.0 be brought?"]
    assert [r["reason"] for r in output.rejected] == ["question mentions 'gpl-3', which is not in the source"]  # not "i'm"


def test_unparseable_reply_is_recorded():
    ask, _ = fake_teacher(lambda conversation: "I cannot help with that.")
    output = STRATEGIES["context_qa"].build(context([CHUNK], ask, "x"), strategy_params("context_qa", {}))
    assert output.examples == []
    assert {row["reason"] for row in output.rejected} == {"reply did not parse as Question/Answer"}


def test_refusal_drops_topics_the_documents_cover(tmp_path):
    chunk = make_chunk("c", "d.md", "Court", "Jury duty is paid in full; vouchers are not issued.")
    extra = tmp_path / "oos.txt"
    extra.write_text("What is our policy on llamas?\n\n")
    params = strategy_params("refusal", {"plausible": True, "questions_file": str(extra)})
    output = STRATEGIES["refusal"].build(context([chunk], None), params)
    questions = {example["question"] for example in output.examples}
    assert "How many days of jury service leave do we get?" not in questions
    assert "How much are the lunch vouchers worth per day?" not in questions
    assert "What is our policy on llamas?" in questions
    assert "What is the capital of Canada?" in questions
    assert all(example["answer"] == "I don't know." for example in output.examples)
    assert any(row["reason"] == "documents mention 'voucher'" for row in output.rejected)


def test_refusal_cap_keeps_a_share_of_each_kind():
    params = strategy_params("refusal", {"plausible": True, "max_examples": 6})
    output = STRATEGIES["refusal"].build(context([CHUNK], None), params)
    assert [e["variant"] for e in output.examples] == ["plausible", "general"] * 3
    everything = STRATEGIES["refusal"].build(context([CHUNK], None), strategy_params("refusal", {"plausible": True}))
    assert len(everything.examples) > 40 and {e["answer"] for e in everything.examples} == {"I don't know."}


LEAVE = make_chunk("leave.md#0-80", "leave.md", "Annual Leave", "Staff get 27 days of leave per year. Requests go to Ilse Varga on form HR-22.")
TRAVEL = make_chunk("travel.md#0-60", "travel.md", "Travel", "Book trains through Railco. The mileage rate is 0.30 EUR per km.")
PRICES = Record("prices.csv#0", "prices.csv", 0, {"product": "Widget A", "unit_price_eur": "12.50"})
UNANSWERABLE = {  # (section, example variant) -> teacher reply
    ("Annual Leave", 0): "Can unused leave days be carried over to next year?",
    ("Travel", 0): "What is the mileage rate per km?",
    ("Annual Leave", 1): "",  # the request failed
    ("Travel", 1): "Question: Does Railco give discounts on first class tickets?",
    ("Annual Leave", 2): "What is the capital of Canada?",
    ("Travel", 2): "Does Railco give discounts on first class tickets?",
}
ANSWERED = {"Can unused leave days be carried over to next year?": "No.", "Does Railco give discounts on first class tickets?": "Yes, it does."}


def unanswerable_teacher():
    def reply(conversation):
        prompt = conversation[-1]["content"]
        if conversation[0]["content"] == prompts.ANSWERED_SYSTEM:
            return ANSWERED[prompt.split("Question: ")[1]]
        section = prompt.split("\n")[0].removeprefix("Section: ")
        return UNANSWERABLE[section, prompts.UNANSWERABLE_EXAMPLES.index(conversation[2]["content"])]

    return fake_teacher(reply)


def test_refusal_unanswerable_questions_keep_only_what_no_source_answers():
    ask, calls = unanswerable_teacher()
    params = strategy_params("refusal", {"plausible": False, "general": False, "unanswerable_per_chunk": 3})
    output = STRATEGIES["refusal"].build(StrategyContext(Sources([LEAVE, TRAVEL], [PRICES]), ask, "I don't know."), params)
    assert calls == ["teacher: unanswerable questions", "teacher: answered checks"]
    assert output.examples == [
        {
            "strategy": "refusal", "question": "Can unused leave days be carried over to next year?", "answer": "I don't know.",
            "variant": "unanswerable", "document": "leave.md", "chunk_id": "leave.md#0-80",
        }
    ]
    assert [(row["chunk_id"], row["reason"]) for row in output.rejected] == [
        ("travel.md#0-60", "question may be answered by 'travel.md#0-60'"),
        ("leave.md#0-80", "teacher request failed"),
        ("leave.md#0-80", "question is off the chunk's topic"),
        ("travel.md#0-60", "duplicate question"),
        ("travel.md#0-60", "teacher says the text answers it"),
    ]


def test_refusal_unanswerable_without_the_yes_no_check():
    ask, calls = unanswerable_teacher()
    params = strategy_params("refusal", {"plausible": False, "general": False, "unanswerable_per_chunk": 2, "verify_unanswerable": False})
    output = STRATEGIES["refusal"].build(context([LEAVE, TRAVEL], ask), params)
    assert calls == ["teacher: unanswerable questions"]
    assert [e["question"] for e in output.examples] == [
        "Can unused leave days be carried over to next year?", "Does Railco give discounts on first class tickets?"
    ]


def test_unanswerable_question_answered_by_a_record_or_unclear_check_is_dropped():
    vocabularies = [("prices.csv#0", {"product", "widget", "a", "unit", "price", "eur", "12.50"})]
    question = "What is the unit price of Widget A in EUR?"
    assert check_unanswerable(question, TRAVEL, vocabularies, 0.75) == "question may be answered by 'prices.csv#0'"
    assert check_unanswerable("How do the hives on Railco trains work?", TRAVEL, [], 0.75) == "question copies the prompt's example"
    ask, _ = fake_teacher(lambda c: "Maybe." if c[0]["content"] == prompts.ANSWERED_SYSTEM else UNANSWERABLE["Annual Leave", 0])
    params = strategy_params("refusal", {"plausible": False, "general": False, "unanswerable_per_chunk": 1})
    output = STRATEGIES["refusal"].build(context([LEAVE], ask), params)
    assert output.examples == [] and [row["reason"] for row in output.rejected] == ["check reply was not yes or no"]


def test_refusal_plan_counts_unanswerable_requests_and_checks():
    sources = Sources([LEAVE, TRAVEL], [PRICES])
    plan = STRATEGIES["refusal"].plan(sources, strategy_params("refusal", {"plausible": False, "general": False, "unanswerable_per_chunk": 3}))
    assert (plan.teacher_calls, plan.examples) == (12, 6)
    fixed = STRATEGIES["refusal"].plan(sources, strategy_params("refusal", {}))
    assert fixed.teacher_calls == 0
    capped = STRATEGIES["refusal"].plan(sources, strategy_params("refusal", {"unanswerable_per_chunk": 3, "max_unanswerable": 4, "verify_unanswerable": False}))
    assert (capped.teacher_calls, capped.examples) == (4, fixed.examples + 4)


def test_refusal_params_reject_unknown_keys():
    with pytest.raises(ValueError, match=r"^strategy 'refusal' has no parameter 'unanswerable'$"):
        validate_strategy_params("refusal", {"unanswerable": 2})


def test_reverse_styles_answer_with_a_word_of_the_fact_and_fact_answers_add_the_sentence():
    fact = "Staff get 27 days of leave per year."
    by_style = {
        prompts.QA_STYLES["quiz"]: "Question: How many days of leave do staff get per year?\nAnswer: Staff get 27 days of leave per year.",
        prompts.QA_STYLES["casual"]: "Question: What do I get 27 days of per year?\nAnswer: You get 27 days per year.",
        prompts.QA_STYLES["check"]: "Question: Is there a leave allowance for staff?\nAnswer: Yes, staff get leave.",
        prompts.QA_STYLES["reverse"]: "Question: Who gets 27 days of leave per year?\nAnswer: Staff do.",
    }

    def reply(conversation):
        if "27 days" not in conversation[-1]["content"]:
            return "Question: Who?\nAnswer: Nobody."
        return by_style[conversation[2]["content"]]

    ask, _ = fake_teacher(reply)
    params = strategy_params("context_qa", {"questions_per_fact": 4, "fact_answers": True})
    output = STRATEGIES["context_qa"].build(context([CHUNK], ask, "x"), params)
    kept = [(e["variant"], e["answer"]) for e in output.examples]
    assert ("reverse", "Staff do.") in kept  # adds "staff", though every specific is in its question
    assert ("reverse+fact", fact) in kept
    assert ("quiz+fact", fact) not in kept  # the answer already is the sentence
    reasons = {row["reason"] for row in output.rejected}
    assert "answer adds none of the fact's specifics" in reasons  # casual: echoes the question's 27
    assert "answer adds none of the fact's specifics" in reasons  # check: no specific at all
    plan = STRATEGIES["context_qa"].plan(Sources([CHUNK]), params)
    assert plan.examples == 2 * plan.teacher_calls


def test_dedupe_keeps_a_second_wording_of_one_fact_and_drops_a_question_about_another():
    from domainkd.data.build import _deduplicate

    first = {"question": "How long is it?", "answer": "27 days.", "fact": "Leave is 27 days."}
    rows = [
        first,
        {**first, "answer": "Leave is 27 days."},  # the same fact, another wording: kept
        {**first, "answer": "27 days."},  # the same exchange again
        {**first, "answer": "5 months.", "fact": "Probation is 5 months."},  # another fact: contradicts the first
        {"question": "What is the capital of Peru?", "answer": "I don't know."},
        {"question": None, "text": "A passage."},
        {"question": None, "text": "A passage."},
    ]
    kept, dropped = _deduplicate(rows, held_out={"what is the capital of peru": "What is the capital of Peru?"})
    assert kept == rows[:2] + [rows[5]]
    assert [row["reason"] for row in dropped] == [
        "duplicate question", "duplicate question", "same as an evaluation question (contamination)", "duplicate passage",
    ]
