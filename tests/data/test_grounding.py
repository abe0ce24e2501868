from domainkd.data import grounding

SOURCE = "Full-time staff receive 27 days of annual leave. Form HR-22 goes to Ilse Varga by 15 November."
FACT = "Form HR-22 goes to Ilse Varga by 15 November."


def test_key_terms_are_numbers_codes_and_names():
    assert grounding.key_terms(SOURCE) == {"27", "hr-22", "ilse", "varga", "15", "november"}


def test_words_keep_number_separators():
    assert grounding.words("It costs 2,400 euros at 09:45.") == ["it", "costs", "2400", "euros", "at", "09:45"]


def test_supported_answer_passes():
    assert grounding.check_answer("Who receives form HR-22?", "Form HR-22 goes to Ilse Varga.", FACT, SOURCE) is None


def test_invented_number_is_rejected():
    reason = grounding.check_answer("When is form HR-22 due?", "It is due by 30 November.", FACT, SOURCE)
    assert reason == "answer states '30', which is not in the source"


def test_echoing_answer_is_rejected():
    reason = grounding.check_answer("Does form HR-22 go to Ilse Varga by 15 November?", "Yes, form HR-22 goes to Ilse Varga by 15 November.", FACT, SOURCE)
    assert reason == "answer adds none of the fact's specifics"


def test_unsupported_wording_is_rejected():
    reason = grounding.check_answer("Who?", "Varga approves bicycle helmets purchasing requests quarterly.", FACT, SOURCE)
    assert reason == "answer mostly unsupported by the source"


def test_question_checks():
    assert grounding.check_question("Who receives form HR-22?", SOURCE) is None
    assert grounding.check_question("Form HR-22 goes to Ilse Varga.", SOURCE) == "not a question"
    assert "not in the source" in grounding.check_question("Who receives form HR-99 in Block Q?", SOURCE)


def test_paraphrase_checks():
    question, answer = "Who receives form HR-22?", "Form HR-22 goes to Ilse Varga."
    assert grounding.check_paraphrase("To whom should form HR-22 be sent?", question, answer) is None
    assert grounding.check_paraphrase("Who receives form HR-22?", question, answer) == "paraphrase repeats the question"
    assert grounding.check_paraphrase("Does Ilse Varga receive form HR-22?", question, answer) == "paraphrase adds 'ilse'"
    assert grounding.check_paraphrase("Form HR-22 goes to whom.", question, answer) == "paraphrase is not a question"
    assert grounding.check_paraphrase("What is the weather like?", question, answer) == "paraphrase drifted from the question"
    small = "paraphrase changes only small words"
    assert grounding.check_paraphrase("Who is it that receives form HR-22?", question, answer) == small
    assert grounding.check_paraphrase("Who do I send my form HR-22 to?", question, answer) is None


def test_possessives_match_the_name():
    assert grounding.check_question("What is Ilse Varga's role?", SOURCE) is None
    assert grounding.words("Varga’s desk") == ["varga", "desk"]


def test_an_answer_is_supported_by_names_numbers_and_most_words_of_its_source():
    from domainkd.data.grounding import answer_supported

    source = "Annual Leave\nFull-time staff receive 27 days of annual leave per leave year, plus regional holidays."
    assert answer_supported("Full-time staff get 27 days of holiday per year.", source, 0.5)  # "holiday" ~ holidays
    assert not answer_supported("Full-time staff get 30 days of leave.", source, 0.5)  # a number the source lacks
    assert not answer_supported("Yes, the Institute offers free flu vaccinations to its staff.", source, 0.5)
    assert answer_supported("Staff get 27 days of leave and free flu jabs.", source, 0.5)  # 4 of 7 words
    assert not answer_supported("Staff get 27 days of leave and free flu jabs.", source, 0.6)
    assert answer_supported("Yes.", source, 0.9)  # nothing to check
