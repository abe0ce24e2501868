import pytest

from domainkd.teachers.json_output import first_balanced_object, parse_json_object

REPAIRED = [
    ('{"question": "Q?", "answer": "A."}', {"question": "Q?", "answer": "A."}),
    ('Sure! Here it is: {"answer": "27 days"} Hope that helps.', {"answer": "27 days"}),
    ('```json\n{"answer": "27 days"}\n```', {"answer": "27 days"}),
    ('```\n{"answer": "27 days"}\n```\nAnything else?', {"answer": "27 days"}),
    ('{"facts": ["a", "b",], "answer": "x",}', {"facts": ["a", "b"], "answer": "x"}),
    ("{\u201canswer\u201d: \u201c27 days\u201d}", {"answer": "27 days"}),
    ('{"answer": "she said \u201chi\u201d"}', {"answer": "she said \u201chi\u201d"}),  # inner smart quotes kept
    ('{"answer": "a } and a {"}', {"answer": "a } and a {"}),  # braces inside strings do not count
    ('{"answer": "a \\"quoted\\" word"} trailing', {"answer": 'a "quoted" word'}),
    ('{"answer": "two\nlines"}', {"answer": "two\nlines"}),  # a raw newline inside a string
    ('{"outer": {"inner": [1, 2]}} {"second": 1}', {"outer": {"inner": [1, 2]}}),  # the first object wins
    ('[{"answer": "in a list"}]', {"answer": "in a list"}),
]

UNREPAIRABLE = [
    ("I don't know.", "no '{' in the answer"),
    ("", "no '{' in the answer"),
    ('{"answer": "cut off', "cut off"),
    ("{answer: 27}", "property name"),
    ('{"answer": 27 "facts": []}', "delimiter"),
]


@pytest.mark.parametrize(("text", "expected"), REPAIRED)
def test_repairs_the_usual_slips(text, expected):
    assert parse_json_object(text) == (expected, None)


@pytest.mark.parametrize(("text", "reason"), UNREPAIRABLE)
def test_unrepairable_answers_give_a_reason(text, reason):
    parsed, why = parse_json_object(text)
    assert parsed is None
    assert reason in why


def test_first_balanced_object_skips_braces_in_strings_and_escapes():
    assert first_balanced_object('x {"a": "}\\"}", "b": {}} y') == ('{"a": "}\\"}", "b": {}}', "")
    assert first_balanced_object("{{}") == (None, "the object is cut off (its braces never close)")
