"""Structured knowledge injection: every table cell and knowledge-graph triple as a question and answer.

A triple (subject/predicate or relation/object, head/relation/tail, entity/attribute/value) gives
"What is the {predicate} of {subject}?" → "The {predicate} of {subject} is {object}."; a table
row gives one such pair per column, its subject being the row's key column. So every fact of
a table becomes askable. With ``verbalise`` the teacher rewords each templated question
naturally and answers it in one sentence; a pair whose answer lacks the value (or that
drops the subject, gives the value away or adds a name) is rejected and the template kept.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from domainkd.config import StrictModel
from domainkd.data import grounding, prompts
from domainkd.data.strategies import Plan, StrategyContext, StrategyOutput, register_strategy
from domainkd.errors import DomainKDError
from domainkd.sources import Record, Sources
from domainkd.sources.records import TRIPLE_COLUMNS


class StructuredParams(StrictModel):
    """Parameters of the structured strategy."""

    key_column: str | dict[str, str] | None = None
    """Column a row is about: one name, or file name → column (None or a file not named: the first column)."""
    columns: list[str] | None = Field(None, min_length=1)
    """Ask only about these table columns (None: every column but the key). Triples ignore it."""
    verbalise: bool = False
    """Have the teacher reword each templated question naturally and answer it in one sentence."""
    keep_template: bool = False
    """With ``verbalise``, keep the templated pair beside an accepted verbalised one (two wordings of each fact)."""
    max_value_words: int = Field(30, ge=1)
    """Skip cells longer than this many words (long descriptions read better as unstructured text)."""
    max_facts: int | None = Field(None, ge=1)
    """Use at most this many facts, taken in turn from each file (None: all); each gives one or two examples."""


@dataclass(frozen=True)
class Fact:
    """One askable value: ``attribute`` (a readable column or predicate) of ``subject`` is ``value``."""

    record: Record
    subject: str
    column: str
    """The file's column name, or a triple's predicate."""
    value: str

    @property
    def attribute(self) -> str:
        return readable(self.column)

    @property
    def question(self) -> str:
        return f"What is the {self.attribute} of {self.subject}?"

    @property
    def answer(self) -> str:
        ending = "" if self.value.endswith((".", "!", "?")) else "."
        return f"The {self.attribute} of {self.subject} is {self.value}{ending}"


def readable(name: str) -> str:
    """A column or predicate name as words: ``unit_price_eur`` → "unit price eur", ``hasCapital`` → "has capital".

    A URI predicate keeps its local part; acronyms (``ISBN``) keep their capitals.
    """
    local = re.split(r"[/#]", name)[-1] or name  # the local part of a URI predicate
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", local)
    parts = [part for part in re.split(r"[\s_\-.:]+", spaced) if part]
    return " ".join(part if part.isupper() and len(part) > 1 else part.lower() for part in parts)


def _template(fact: Fact) -> dict[str, object]:
    record = fact.record
    return {
        "strategy": "structured",
        "variant": "template",
        "question": fact.question,
        "answer": fact.answer,
        "document": record.source,
        "chunk_id": record.record_id,
        "row": record.row,
        "column": fact.column,
        "subject": fact.subject,
        "value": fact.value,
    }


def _triple_fact(record: Record) -> Fact:
    by_name = {name.lower(): value for name, value in record.fields.items()}
    subject, predicate, value = next(columns for columns in TRIPLE_COLUMNS if set(columns) <= set(by_name))
    return Fact(record, by_name[subject], by_name[predicate], by_name[value])


def _key_columns(tables: list[Record], key_column: str | dict[str, str] | None) -> dict[str, str]:
    """Key column of each table file (a source path).

    Raises:
        DomainKDError: a named key column is not a column of its file.
    """
    rows_by_file: dict[str, list[Record]] = {}
    for record in tables:
        rows_by_file.setdefault(record.source, []).append(record)
    keys = {}
    for source, rows in rows_by_file.items():
        if isinstance(key_column, dict):
            named = key_column.get(source, key_column.get(Path(source).name))
        else:
            named = key_column
        if named is None:  # the column most rows list first (an empty cell is left out of ``fields``)
            keys[source] = Counter(next(iter(row.fields)) for row in rows).most_common(1)[0][0]
            continue
        columns = {name.lower(): name for row in rows for name in row.fields}
        if named.lower() not in columns:
            raise DomainKDError(
                f"key_column {named!r} is not a column of {source} (it has {', '.join(columns.values())}); "
                "fix data.strategies.structured.key_column."
            )
        keys[source] = columns[named.lower()]
    return keys


def _check_columns(tables: list[Record], columns: list[str] | None) -> set[str] | None:
    """The lower-cased columns to ask about (None: all).

    Raises:
        DomainKDError: a named column is in no table file.
    """
    if columns is None or not tables:
        return None
    known = {name.lower() for record in tables for name in record.fields}
    unknown = [name for name in columns if name.lower() not in known]
    if unknown:
        raise DomainKDError(
            f"columns names {unknown[0]!r}, which no record file has; fix data.strategies.structured.columns."
        )
    return {name.lower() for name in columns}


def _row_facts(record: Record, key: str, wanted: set[str] | None, output: StrategyOutput) -> list[Fact]:
    if key not in record.fields:
        output.rejected.append(
            {
                "strategy": "structured",
                "document": record.source,
                "chunk_id": record.record_id,
                "reason": f"row has no value in key column {key!r}",
            }
        )
        return []
    return [
        Fact(record, record.fields[key], column, value)
        for column, value in record.fields.items()
        if column != key and (wanted is None or column.lower() in wanted)
    ]


def collect_facts(records: list[Record], params: StructuredParams, output: StrategyOutput) -> list[Fact]:
    """Every askable fact, in file order then taken in turn from each file up to ``max_facts``.

    Rows without a key value, over-long cells and repeated questions go to ``output.rejected``.
    """
    tables = [record for record in records if not record.triple]
    keys, wanted = _key_columns(tables, params.key_column), _check_columns(tables, params.columns)
    candidates = []
    for record in records:
        if record.triple:
            candidates.append(_triple_fact(record))
        else:
            candidates += _row_facts(record, keys[record.source], wanted, output)
    facts, seen = [], set()
    for fact in candidates:
        question = grounding.normalise(fact.question)
        reason = None
        if len(fact.value.split()) > params.max_value_words:
            reason = "value too long for a template question"
        elif question in seen:
            reason = "question repeats an earlier record's question"
        if reason:
            output.rejected.append({**_template(fact), "reason": reason})
            continue
        seen.add(question)
        facts.append(fact)
    return _in_turn(facts, params.max_facts)


def _in_turn(facts: list[Fact], limit: int | None) -> list[Fact]:
    """Up to ``limit`` facts, taking one from each file in turn so every file keeps a share."""
    if limit is None:
        return facts
    by_file: dict[str, list[Fact]] = {}
    for fact in facts:
        by_file.setdefault(fact.record.source, []).append(fact)
    return [fact for group in itertools.zip_longest(*by_file.values()) for fact in group if fact is not None][:limit]


def _phrase_in(phrase: str, text: str) -> bool:
    """Whether ``phrase``'s words occur as a run in ``text`` (case, punctuation and thousands separators ignored)."""
    return f" {grounding.normalise(phrase)} " in f" {grounding.normalise(text)} "


def check_verbalised(question: str, answer: str, fact: Fact) -> str | None:
    """Why a teacher's wording of ``fact`` is unusable, or None."""
    if not question.endswith("?"):
        return "not a question"
    pair = f"{question} {answer}"
    if (set(grounding.words(pair)) & prompts.EXAMPLE_TEXT_WORDS) - set(grounding.words(fact.answer)):
        return "pair copies the prompt's example"
    missing = grounding.content_words(fact.subject) - set(grounding.words(question))
    if missing:
        return f"question drops the subject {fact.subject!r}"
    leaked = _phrase_in(fact.value, question) and not _phrase_in(fact.value, fact.question)
    if leaked and grounding.content_words(fact.value):
        return "question gives the value away"
    if not _phrase_in(fact.value, answer):
        return f"answer lacks the value {fact.value!r}"
    if len(re.split(r"(?<=[.!?])\s+", answer.strip())) > 1:
        return "answer is more than one sentence"
    invented = grounding.key_terms(pair) - set(grounding.words(fact.answer)) - grounding.key_terms(fact.answer)
    if invented:
        return f"pair states {sorted(invented)[0]!r}, which is not in the record"
    return None


def _check_reply(reply: str, parsed: tuple[str, str] | None, fact: Fact) -> str | None:
    """Why the teacher's reply to a wording request is unusable, or None."""
    if not reply:
        return "teacher request failed"
    if parsed is None:
        return "reply did not parse as Question/Answer"
    return check_verbalised(*parsed, fact)


@register_strategy("structured")
class Structured:
    Params = StructuredParams

    def plan(self, sources: Sources, params: StructuredParams) -> Plan:
        facts = len(collect_facts(sources.records, params, StrategyOutput()))
        wordings = 2 if params.verbalise and params.keep_template else 1
        return Plan(
            teacher_calls=facts if params.verbalise else 0,
            examples=facts * wordings,
            what=f"{facts} table cells and triples as question/answer pairs"
            + (" worded by the teacher" if params.verbalise else " from templates"),
        )

    def build(self, context: StrategyContext, params: StructuredParams) -> StrategyOutput:
        output = StrategyOutput()
        facts = collect_facts(context.sources.records, params, output)
        if not params.verbalise:
            output.examples = [_template(fact) for fact in facts]
            return output
        conversations = [prompts.verbalise_conversation(fact.answer, fact.question) for fact in facts]
        replies = context.ask(conversations, "teacher: record wordings", max_new_tokens=96)
        for fact, reply in zip(facts, replies):
            parsed = prompts.parse_qa(reply)
            reason = _check_reply(reply, parsed, fact)
            template = _template(fact)
            if reason:
                output.rejected.append({**template, "variant": "verbalised", "teacher_reply": reply, "reason": reason})
                output.examples.append(template)
                continue
            if params.keep_template:
                output.examples.append(template)
            output.examples.append({**template, "variant": "verbalised", "question": parsed[0], "answer": parsed[1]})
        return output
