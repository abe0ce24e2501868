from domainkd.data import prompts
from domainkd.data.strategies import STRATEGIES, StrategyContext, strategy_params
from domainkd.sources import Chunk

CHUNK = Chunk("leave.md#0-0", "leave.md", "Annual Leave", "Staff get 27 days of leave per year. Form HR-22 goes to Ilse Varga.", 0)


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
    output = STRATEGIES["context_qa"].build(StrategyContext([CHUNK], ask, "I don't know."), params)
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
    output = STRATEGIES["context_qa"].build(StrategyContext([CHUNK], ask, "x"), params)
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
    output = STRATEGIES["context_qa"].build(StrategyContext([CHUNK], ask, "x"), strategy_params("context_qa", {"questions_per_fact": 3}))
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
    assert STRATEGIES["context_qa"].teacher_calls([CHUNK, CHUNK], params) == 12


def test_unparseable_reply_is_recorded():
    ask, _ = fake_teacher(lambda conversation: "I cannot help with that.")
    output = STRATEGIES["context_qa"].build(StrategyContext([CHUNK], ask, "x"), strategy_params("context_qa", {}))
    assert output.examples == []
    assert {row["reason"] for row in output.rejected} == {"reply did not parse as Question/Answer"}


def test_refusal_drops_topics_the_documents_cover(tmp_path):
    chunk = Chunk("c", "d.md", "Court", "Jury duty is paid in full; vouchers are not issued.", 0)
    extra = tmp_path / "oos.txt"
    extra.write_text("What is our policy on llamas?\n\n")
    params = strategy_params("refusal", {"questions_file": str(extra)})
    output = STRATEGIES["refusal"].build(StrategyContext([chunk], None, "I don't know."), params)
    questions = {example["question"] for example in output.examples}
    assert "How many days of jury service leave do we get?" not in questions
    assert "How much are the lunch vouchers worth per day?" not in questions
    assert "What is our policy on llamas?" in questions
    assert "What is the capital of Canada?" in questions
    assert all(example["answer"] == "I don't know." for example in output.examples)
    assert any(row["reason"] == "documents mention 'voucher'" for row in output.rejected)


def test_refusal_cap_keeps_a_share_of_each_kind():
    params = strategy_params("refusal", {"max_examples": 6})
    output = STRATEGIES["refusal"].build(StrategyContext([CHUNK], None, "I don't know."), params)
    assert [e["variant"] for e in output.examples] == ["plausible", "general"] * 3
    everything = STRATEGIES["refusal"].build(StrategyContext([CHUNK], None, "I don't know."), strategy_params("refusal", {}))
    assert len(everything.examples) > 40 and {e["answer"] for e in everything.examples} == {"I don't know."}
