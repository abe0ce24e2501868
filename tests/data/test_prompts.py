from domainkd.data import grounding, prompts


def test_parse_qa_two_lines():
    assert prompts.parse_qa("Question: Who signs?\nAnswer: Ilse Varga signs.") == ("Who signs?", "Ilse Varga signs.")


def test_parse_qa_tolerates_markdown_and_extra_lines():
    text = "Sure!\n**Question:** Who signs?\n**Answer:** Ilse Varga signs.\nQuestion: another?"
    assert prompts.parse_qa(text) == ("Who signs?", "Ilse Varga signs.")


def test_parse_qa_needs_both_parts():
    assert prompts.parse_qa("Question: Who signs?") is None
    assert prompts.parse_qa("Answer: Ilse.\nQuestion: Who?") is None


def test_parse_lines_strips_markers():
    assert prompts.parse_lines('1. "When?"\n- How?\n\n• Why?') == ["When?", "How?", "Why?"]


def test_conversations_end_with_the_user_turn():
    conversation = prompts.qa_conversation("Leave", "Staff get 27 days.")
    assert conversation[-1] == {"role": "user", "content": "Section: Leave\nFact: Staff get 27 days."}
    assert [m["role"] for m in conversation] == ["system", "user", "assistant", "user"]
    first, second = prompts.paraphrase_conversation("Who?", 0), prompts.paraphrase_conversation("Who?", 1)
    assert first[-1] == second[-1] == {"role": "user", "content": "Who?"}
    assert first[1] != second[1]  # each variant has its own example


def test_every_question_style_example_is_a_valid_pair():
    fact = prompts.qa_conversation("t", "f")[1]["content"].split("Fact: ")[1]
    for style, example in prompts.QA_STYLES.items():
        question, answer = prompts.parse_qa(example)
        assert question.endswith("?"), style
        reverse = style in prompts.REVERSE_STYLES
        assert grounding.check_answer(question, answer, fact, fact, reverse=reverse) is None, style  # passes its own check
        assert grounding.check_question(question, fact + " Veil. Apiary. 15:00.") is None, style
        assert prompts.qa_conversation("t", "f", style)[2]["content"] == example
    assert len(prompts.QA_STYLES) == 8
