import pytest

from domainkd.data import prompts
from domainkd.data.strategies import STRATEGIES, StrategyContext, strategy_params, validate_strategy_params
from domainkd.data.structured import Fact, check_verbalised, readable
from domainkd.errors import DomainKDError
from domainkd.sources import Record, Sources

DESCRIPTION = " ".join(["A sturdy widget"] * 12)  # 36 words: too long for a template answer
RECORDS = [
    Record("kg.csv#0", "kg.csv", 0, {"subject": "Railco", "predicate": "headquarters_city", "object": "Utrecht"}, True),
    Record("kg.csv#1", "kg.csv", 1, {"Head": "Form TR-5", "Relation": "approvedBy", "Tail": "Ilse Varga"}, True),
    Record("data/prices.csv#0", "data/prices.csv", 0, {"product": "Widget A", "unit_price_eur": "12.50", "stock": "140", "description": DESCRIPTION}),
    Record("data/prices.csv#1", "data/prices.csv", 1, {"product": "Widget B", "unit_price_eur": "9.99", "stock": "12"}),
    Record("data/prices.csv#2", "data/prices.csv", 2, {"unit_price_eur": "3.00", "stock": "1"}),  # empty key cell
    Record("data/prices.csv#3", "data/prices.csv", 3, {"product": "Widget A", "unit_price_eur": "13.00"}),
]


def pair(record, column, subject, value, question, answer, variant="template"):
    source, row = record.split("#")
    return {
        "strategy": "structured", "variant": variant, "question": question, "answer": answer, "document": source,
        "chunk_id": record, "row": int(row), "column": column, "subject": subject, "value": value,
    }


RAILCO = pair("kg.csv#0", "headquarters_city", "Railco", "Utrecht", "What is the headquarters city of Railco?", "The headquarters city of Railco is Utrecht.")
TR5 = pair("kg.csv#1", "approvedBy", "Form TR-5", "Ilse Varga", "What is the approved by of Form TR-5?", "The approved by of Form TR-5 is Ilse Varga.")
A_PRICE = pair("data/prices.csv#0", "unit_price_eur", "Widget A", "12.50", "What is the unit price eur of Widget A?", "The unit price eur of Widget A is 12.50.")
A_STOCK = pair("data/prices.csv#0", "stock", "Widget A", "140", "What is the stock of Widget A?", "The stock of Widget A is 140.")
B_PRICE = pair("data/prices.csv#1", "unit_price_eur", "Widget B", "9.99", "What is the unit price eur of Widget B?", "The unit price eur of Widget B is 9.99.")
B_STOCK = pair("data/prices.csv#1", "stock", "Widget B", "12", "What is the stock of Widget B?", "The stock of Widget B is 12.")


def build(params, ask=None):
    return STRATEGIES["structured"].build(StrategyContext(Sources(records=RECORDS), ask, "x"), strategy_params("structured", params))


def test_every_triple_and_cell_becomes_a_template_pair():
    output = build({})
    assert output.examples == [RAILCO, TR5, A_PRICE, A_STOCK, B_PRICE, B_STOCK]
    assert [(row["chunk_id"], row["reason"]) for row in output.rejected] == [
        ("data/prices.csv#2", "row has no value in key column 'product'"),
        ("data/prices.csv#0", "value too long for a template question"),
        ("data/prices.csv#3", "question repeats an earlier record's question"),
    ]


def test_key_column_and_columns_choose_what_is_asked():
    output = build({"key_column": {"prices.csv": "Product"}, "columns": ["unit_price_eur"]})
    assert output.examples == [RAILCO, TR5, A_PRICE, B_PRICE]
    by_stock = build({"key_column": "stock", "columns": ["product"]})
    assert [e["question"] for e in by_stock.examples] == [
        RAILCO["question"], TR5["question"], "What is the product of 140?", "What is the product of 12?"
    ]
    assert [(row["chunk_id"], row["reason"]) for row in by_stock.rejected] == [("data/prices.csv#3", "row has no value in key column 'stock'")]


def test_unknown_key_column_or_column_is_one_clear_error():
    with pytest.raises(DomainKDError, match=r"^key_column 'sku' is not a column of data/prices.csv \(it has product, unit_price_eur, stock, description\)"):
        build({"key_column": "sku"})
    with pytest.raises(DomainKDError, match=r"^columns names 'colour', which no record file has"):
        build({"columns": ["colour"]})


def test_verbalised_pairs_must_state_the_value_else_the_template_stays():
    replies = {
        RAILCO["question"]: "Question: In which city is Railco based?\nAnswer: Railco is headquartered in Utrecht.",
        TR5["question"]: "Question: Who approves form TR-5?\nAnswer: Form TR-5 is approved by Ilse Varga.",
        A_PRICE["question"]: "Question: How much does a Widget A cost?\nAnswer: A Widget A costs 12 euros.",
        A_STOCK["question"]: "",  # the request failed
        B_PRICE["question"]: "Question: How much is it?\nAnswer: It costs 9.99 EUR.",
        B_STOCK["question"]: "Sure, here you go.",
    }
    labels = []

    def ask(conversations, label, max_new_tokens=None):
        labels.append(label)
        return [replies[conversation[-1]["content"].split("Template: ")[1]] for conversation in conversations]

    output = build({"verbalise": True, "keep_template": True}, ask)
    assert labels == ["teacher: record wordings"]
    railco = {**RAILCO, "variant": "verbalised", "question": "In which city is Railco based?", "answer": "Railco is headquartered in Utrecht."}
    tr5 = {**TR5, "variant": "verbalised", "question": "Who approves form TR-5?", "answer": "Form TR-5 is approved by Ilse Varga."}
    assert output.examples == [RAILCO, railco, TR5, tr5, A_PRICE, A_STOCK, B_PRICE, B_STOCK]
    assert [(row["question"], row["reason"]) for row in output.rejected[3:]] == [
        (A_PRICE["question"], "answer lacks the value '12.50'"),
        (A_STOCK["question"], "teacher request failed"),
        (B_PRICE["question"], "question drops the subject 'Widget B'"),
        (B_STOCK["question"], "reply did not parse as Question/Answer"),
    ]
    assert [e["variant"] for e in build({"verbalise": True}, ask).examples][:2] == ["verbalised", "verbalised"]


FACT = Fact(RECORDS[2], "Widget A", "unit_price_eur", "12.50")


@pytest.mark.parametrize(
    ("question", "answer", "reason"),
    [
        ("How much does Widget A cost", "Widget A costs 12.50 EUR.", "not a question"),
        ("Is Widget A 12.50 EUR?", "Yes, Widget A costs 12.50 EUR.", "question gives the value away"),
        ("How much does Widget A cost?", "Widget A costs 12.50 EUR. It is cheap.", "answer is more than one sentence"),
        ("How much does Widget A cost at Railco?", "Widget A costs 12.50 EUR.", "pair states 'railco', which is not in the record"),
        ("How much does Widget A cost on the roof?", "Widget A costs 12.50 EUR.", "pair copies the prompt's example"),
        ("How much does a Widget A cost?", "A Widget A costs 12.50 EUR.", None),
    ],
)
def test_verbalised_pair_checks(question, answer, reason):
    assert check_verbalised(question, answer, FACT) == reason


def test_column_names_read_as_words():
    assert [readable(name) for name in ("unit_price_eur", "hasCapital", "http://xmlns.com/foaf/0.1/birthPlace", "ISBN")] == [
        "unit price eur", "has capital", "birth place", "ISBN",
    ]


def test_structured_plan_and_cap():
    sources = Sources(records=RECORDS)
    plan = STRATEGIES["structured"].plan(sources, strategy_params("structured", {}))
    assert (plan.teacher_calls, plan.examples) == (0, 6)
    worded = STRATEGIES["structured"].plan(sources, strategy_params("structured", {"verbalise": True, "keep_template": True}))
    assert (worded.teacher_calls, worded.examples) == (6, 12)
    assert [e["chunk_id"] for e in build({"max_facts": 3}).examples] == ["kg.csv#0", "data/prices.csv#0", "kg.csv#1"]


def test_structured_params_reject_unknown_keys():
    with pytest.raises(ValueError, match=r"^strategy 'structured' has no parameter 'key'$"):
        validate_strategy_params("structured", {"key": "product"})


def test_the_one_shot_wording_passes_the_check_it_teaches():
    fact = Fact(RECORDS[0], "Block Q hives", "opening_time", "10:15")
    conversation = prompts.verbalise_conversation(fact.answer, fact.question)
    assert conversation[1]["content"] == f"Fact: {fact.answer}\nTemplate: {fact.question}"  # same shape as the real request
    assert check_verbalised(*prompts.parse_qa(conversation[2]["content"]), fact) is None


def test_a_subject_relation_object_triple_is_asked_by_its_relation():
    from domainkd.sources.records import _is_triple

    fields = {"subject": "RV Tern Hollow", "relation": "maximum people on board", "object": "12"}
    assert _is_triple(fields)
    record = Record("facts.jsonl#0", "facts.jsonl", 0, fields, True)
    output = STRATEGIES["structured"].build(StrategyContext(Sources(records=[record]), None, "x"), strategy_params("structured", {}))
    assert [(row["question"], row["answer"]) for row in output.examples] == [
        ("What is the maximum people on board of RV Tern Hollow?", "The maximum people on board of RV Tern Hollow is 12.")
    ]
