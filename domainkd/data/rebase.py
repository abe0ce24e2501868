"""ReBase: retrieve rows of existing datasets that resemble the task, have the teacher rewrite them into it.

Instead of asking the teacher to invent examples (repetitive, often wrong), ReBase (arXiv
2407.05463) searches a datastore of existing datasets (every cell embedded, see
:mod:`domainkd.retrieval.datastore`) with the task instruction and a few input/output
examples, keeps the top rows (the target dataset itself banned), and asks the teacher to
transform each row into one example of the task as JSON ``{"input", "output"}`` — with a
short ``reasoning`` placed before the answer when chain-of-thought is on. Deterministic checks
drop transformed examples that copy a prompt example, lack a part label every example input
has, or (``grounded``) name what their record does not hold; an optional yes/no check drops
those the teacher says do not fit the task.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import Field

from domainkd.config import StrictModel
from domainkd.data import grounding
from domainkd.data.strategies import Plan, StrategyContext, StrategyOutput, register_strategy
from domainkd.models import chat_messages
from domainkd.retrieval import DEFAULT_ENCODER, DatasetSpec, IndexSettings, RetrievedRow, TaskExample
from domainkd.sources import Sources
from domainkd.teachers.base import Messages

MAX_CELL_CHARS = 600
FIT_MAX_NEW_TOKENS = 4
TRANSFORM_SYSTEM = (
    "You turn records of existing datasets into training examples for a task. Reply with one JSON object only."
)
JSON_SHAPE = '{"input": "...", "output": "..."}'
ANSWER_MARK = "\nAnswer: "
"""Between a chain-of-thought reasoning and the final output in a training answer."""
COT_JSON_SHAPE = '{"reasoning": "one or two sentences that lead to the output", "input": "...", "output": "..."}'


class RebaseDataset(StrictModel):
    """One existing dataset to put in the datastore."""

    path: Path
    """A .csv / .jsonl / .json / .parquet file or a folder saved with ``datasets``' ``save_to_disk``."""
    name: str | None = None
    """Its name in the datastore and the ban list (None: the file name without suffix)."""
    description: str | None = None
    """What it holds, compared with the instruction (None: derived from its name and column names)."""


class RebaseExample(StrictModel):
    """One example of the target task."""

    input: str = Field(min_length=1)
    """What the student is given."""
    output: str = Field(min_length=1)
    """What it should answer."""


class RebaseParams(StrictModel):
    """Parameters of the rebase strategy (relative paths resolve against the current directory)."""

    datastore: Path
    """Datastore directory: built there from ``datasets`` when missing or out of date, else used as built."""
    datasets: list[RebaseDataset] = Field(default_factory=list)
    """Datasets to build the datastore from (empty: the datastore must already be built)."""
    encoder: str = DEFAULT_ENCODER
    """Sentence encoder building the datastore (a known name or a local sentence-transformers directory); queries
    always use the encoder the datastore was built with."""
    instruction: str = Field(min_length=1)
    """The target task, in one or two sentences."""
    examples: list[RebaseExample] = Field(min_length=1)
    """A few (≈3) input/output examples of the task; shown to the teacher and used as queries."""
    top_k: int = Field(100, ge=1)
    """Rows retrieved and transformed (ReBase kept ≈3,000 per task)."""
    candidate_k: int | None = Field(None, ge=1)
    """Nearest values fetched per example input/output before exact scoring (None: max(512, 2·top_k))."""
    ban: list[str] = Field(default_factory=list)
    """Dataset names never retrieved: the target dataset itself and its copies (contamination)."""
    chain_of_thought: bool = False
    """Ask for a short reasoning and keep it before the final answer."""
    fit_filter: bool = False
    """Ask the teacher a second time whether each transformed example fits the task; drop the ones it says no to."""
    grounded: bool = True
    """Drop a transformed example whose input or output names or numbers something its record does not hold."""
    max_new_tokens: int = Field(256, ge=16)
    """Token limit of each transformation answer."""
    flat_limit: int = Field(IndexSettings.flat_limit, ge=1)
    """Most values indexed exactly; larger datastores get an IVF index."""
    nprobe: int = Field(IndexSettings.nprobe, ge=1)
    """IVF cells searched per query vector (larger datastores only)."""


@register_strategy("rebase")
class Rebase:
    Params = RebaseParams

    def plan(self, sources: Sources, params: RebaseParams) -> Plan:
        from domainkd.retrieval import read_manifest

        built = read_manifest(params.datastore).get("rows_per_dataset")  # None until built; then a good estimate
        rows = sum(count for name, count in built.items() if name not in params.ban) if built else None
        count = min(params.top_k, rows) if rows is not None else params.top_k
        calls = count * (2 if params.fit_filter else 1)
        what = f"{count} datastore rows (from {params.datastore}) rewritten by the teacher into the task"
        return Plan(
            teacher_calls=calls, examples=count, what=what + (", each checked for fit" if params.fit_filter else "")
        )

    def build(self, context: StrategyContext, params: RebaseParams) -> StrategyOutput:
        rows = retrieve_rows(params)
        output = StrategyOutput()
        replies = context.ask(
            [transform_conversation(params, row) for row in rows],
            "teacher: rebase transform",
            max_new_tokens=params.max_new_tokens,
            expect_json=True,
        )
        candidates = []
        seen: set[str] = set()
        prompt_inputs = {grounding.normalise(example.input) for example in params.examples}
        labels = task_labels([example.input for example in params.examples])
        template = _template_words(params)
        for row, reply in zip(rows, replies):
            base = _provenance(row)
            example, reason = parse_transformed(reply, params.chain_of_thought)
            unlabelled, as_written = None, ""
            if example:
                as_written = grounding.normalise(example["question"])
                example["question"], unlabelled = in_task_format(example["question"], labels)
            key = grounding.normalise(example["question"]) if example else ""
            reason = reason or _contamination(key, seen, prompt_inputs, context.held_out_questions, as_written)
            reason = reason or unlabelled
            reason = reason or (_ungrounded(example, row, template) if params.grounded else None)
            if reason:
                output.rejected.append({**base, "teacher_reply": reply, "reason": reason})
                continue
            seen.add(key)
            candidates.append({**base, **example})
        output.examples = self._check_fit(context, params, candidates, output) if params.fit_filter else candidates
        return output

    @staticmethod
    def _check_fit(
        context: StrategyContext, params: RebaseParams, candidates: list[dict], output: StrategyOutput
    ) -> list[dict]:
        conversations = [fit_conversation(params, candidate) for candidate in candidates]
        replies = context.ask(conversations, "teacher: rebase fit check", max_new_tokens=FIT_MAX_NEW_TOKENS)
        kept = []
        for candidate, reply in zip(candidates, replies):
            reason = fit_verdict(reply)
            if reason:
                output.rejected.append({**candidate, "teacher_reply": reply, "reason": reason})
            else:
                kept.append(candidate)
        return kept


def retrieve_rows(params: RebaseParams) -> list[RetrievedRow]:
    """Build the datastore if needed (skipped when up to date), then return the task's top rows."""
    from domainkd.retrieval import build_datastore, load_encoder, open_datastore, retrieve

    if params.datasets:
        specs = [DatasetSpec(d.path, d.name, d.description) for d in params.datasets]
        settings = IndexSettings(flat_limit=params.flat_limit, nprobe=params.nprobe)
        build_datastore(params.datastore, specs, params.encoder, settings)  # loads the encoder only to build
    store = open_datastore(params.datastore, params.nprobe)
    encoder = load_encoder(store.encoder_reference)
    examples = [TaskExample(e.input, e.output) for e in params.examples]
    return retrieve(store, encoder, params.instruction, examples, params.top_k, params.ban, params.candidate_k)


def _provenance(row: RetrievedRow) -> dict[str, Any]:
    return {
        "strategy": "rebase",
        "document": row.dataset,
        "chunk_id": row.chunk_id,
        "retrieval_score": round(row.score, 4),
    }


def _contamination(
    key: str, seen: set[str], prompt_inputs: set[str], held_out: set[str], as_written: str = ""
) -> str | None:
    """Why a transformed input must not be kept (duplicate, copied example, evaluation question), or None.

    ``as_written`` is the input before a missing label was put back, checked against the
    evaluation questions too. An input copies a prompt example when it is a piece of one (small teachers hand back an
    example without its ``Question:`` label or context), or holds one whole with little added,
    compared as normalised words of at least three.
    """
    if key in held_out or as_written in held_out:
        return "same as an evaluation question (contamination)"
    for shown in prompt_inputs:
        if key == shown or _holds(shown, key) or (_holds(key, shown) and len(shown.split()) >= 0.6 * len(key.split())):
            return "copies an example of the prompt"
    if key in seen:
        return "duplicate of another transformed example"
    return None


def _holds(longer: str, shorter: str) -> bool:
    """Whether normalised ``shorter`` (three words at least: "paris" alone is no copy) occurs in ``longer``."""
    return len(shorter.split()) >= 3 and f" {shorter} " in f" {longer} "


_LABEL = re.compile(r"(?:^|(?<=\s))([A-Z][A-Za-z]*):")


def task_labels(inputs: list[str]) -> list[str]:
    """The part labels (``Question:``, ``Context:``, ``Premise:``) that every example input has, in order."""
    shared = set.intersection(*(set(_LABEL.findall(text)) for text in inputs))
    return [label for label in dict.fromkeys(_LABEL.findall(inputs[0])) if label in shared]


def in_task_format(text: str, labels: list[str]) -> tuple[str, str | None]:
    """A transformed input with every part label of the task, or why it lacks one.

    The first label (in the first example's order) is prepended when it is the only one missing
    (small teachers drop the leading ``Question:``); any other missing label drops the example.
    """
    written = {label.lower() for label in _LABEL.findall(text)}  # "QUESTION:" counts as "Question:"
    present = {label for label in labels if label.lower() in written}
    if labels and labels[0] not in present and all(label in present for label in labels[1:]):
        text = f"{labels[0]}: {text}"
        present.add(labels[0])
    missing = [label for label in labels if label not in present]
    return text, (f"input lacks the part labelled {missing[-1] + ':'!r}" if missing else None)


def _template_words(params: RebaseParams) -> set[str]:
    """Words the task's format brings, not the record: its part labels, the words of every example input, output labels.

    Words shared by all example inputs count only with two examples or more (one example's
    words are its content too). An output word counts as a label when at least two example
    outputs use it ("entailment"); a word only one example's answer has ("Danube") must come
    from the record.
    """
    inputs = [set(grounding.words(example.input)) for example in params.examples]
    shared = set.intersection(*inputs) if len(inputs) > 1 else set()
    outputs = Counter(word for example in params.examples for word in set(grounding.words(example.output)))
    labels = {label.lower() for label in task_labels([example.input for example in params.examples])}
    return labels | shared | {word for word, count in outputs.items() if count >= 2}


def _ungrounded(example: dict[str, str], row: RetrievedRow, template: set[str]) -> str | None:
    """Why a transformed example is not supported by its record (a name or number it lacks), or None.

    Words of the task's format (:func:`_template_words`) and the record's column names are
    allowed. Only the final output of a chain-of-thought answer is checked, not its reasoning;
    an output of up to three words counts its first word too ("Lyon"), a longer one does not
    ("However, …").
    """
    record = " ".join([*row.fields.values(), *row.fields])
    known = set(grounding.words(record)) | grounding.key_terms(record) | template
    output = example["answer"].rsplit(ANSWER_MARK, 1)[-1]
    short = len(output.split()) <= 3
    for part, invented in (
        ("input", grounding.key_terms(example["question"]) - known),
        ("output", grounding.key_terms(output, sentence_starts=short) - known),
    ):
        if invented:
            return f"{part} states {sorted(invented)[0]!r}, which is not in the record"
    return None


def parse_transformed(reply: str, chain_of_thought: bool) -> tuple[dict[str, str] | None, str | None]:
    """The example in a canonical-JSON reply, or why there is none.

    Returns:
        ``({"question", "answer", "variant"}, None)``, or ``(None, reason)``. With chain-of-thought
        a non-empty ``reasoning`` goes before the answer (``"<reasoning>\\nAnswer: <output>"``).
    """
    if not reply.strip():
        return None, "teacher gave no JSON object (failed or unrepairable)"
    try:
        obj = json.loads(reply)
    except json.JSONDecodeError:
        return None, "teacher reply is not JSON"
    fields = {key: obj.get(key) if isinstance(obj, dict) else None for key in ("input", "output", "reasoning")}
    if not all(isinstance(fields[key], str) and fields[key].strip() for key in ("input", "output")):
        return None, "JSON lacks a text 'input' or 'output'"
    question, answer = fields["input"].strip(), fields["output"].strip()
    reasoning = fields["reasoning"].strip() if chain_of_thought and isinstance(fields["reasoning"], str) else ""
    if reasoning:
        return {"question": question, "answer": f"{reasoning}{ANSWER_MARK}{answer}", "variant": "transformed+cot"}, None
    return {"question": question, "answer": answer, "variant": "transformed"}, None


def fit_verdict(reply: str) -> str | None:
    """None when the fit check said yes, else why the example is dropped."""
    words = grounding.words(reply)
    if not reply.strip():
        return "fit check got no answer from the teacher"
    if words[:1] == ["yes"]:
        return None
    if words[:1] == ["no"]:
        return "teacher judged it does not fit the task"
    return "fit check answer was neither yes nor no"


def _task_block(params: RebaseParams) -> str:
    shown = "\n\n".join(f"Input: {e.input}\nOutput: {e.output}" for e in params.examples)
    return f"Task: {params.instruction}\n\nExamples of the task:\n{shown}"


def transform_conversation(params: RebaseParams, row: RetrievedRow) -> Messages:
    """The chat asking the teacher to rewrite one retrieved row into a JSON example of the task."""
    cells = "\n".join(f"{column}: {_clip(value)}" for column, value in row.fields.items())
    shape = COT_JSON_SHAPE if params.chain_of_thought else JSON_SHAPE
    user = (
        f'{_task_block(params)}\n\nRecord from the dataset "{row.dataset}":\n{cells}\n\n'
        "Rewrite this record into one new example of the task, in the same format as the examples, "
        f"using only facts in the record. Reply with JSON only: {shape}"
    )
    return chat_messages(TRANSFORM_SYSTEM, user)


def fit_conversation(params: RebaseParams, example: dict[str, Any]) -> Messages:
    """The chat asking whether a transformed example is a correct example of the task (yes/no)."""
    user = (
        f"{_task_block(params)}\n\nCandidate example:\nInput: {example['question']}\nOutput: {example['answer']}\n\n"
        "Is the candidate a correct, self-contained example of this task? Answer yes or no."
    )
    return chat_messages("You check training examples. Answer only yes or no.", user)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"
