"""``domainkd init DOCS_DIR``: a commented run config for a folder of documents, sized to a time budget.

The config is the demo's recipe (short chunks, every fact asked in two styles, retrieval-aware
training, teacher-written held-out questions) with the counts this folder gives: documents,
chunks, the teacher calls of each strategy (from the data stage's dry run) and an estimate of
each stage's minutes from rates measured here in a few seconds (``measure``) or, without that,
the rates of this project's 2-core CPU machine. When the estimate is over the budget, the recipe
is scaled down (one question per fact, then fewer facts per chunk, then one epoch) until it fits.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from domainkd.config import config_from_dict
from domainkd.errors import DomainKDError
from domainkd.io import atomic_path

SYSTEMS = ("base_student", "student", "student_with_retrieval")
"""What the written config evaluates: the student before and after training, and reading excerpts."""


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of work of each stage on one machine."""

    teacher_request: float
    """Per teacher request (a prompt and a reply of up to 64 tokens, batched)."""
    train_example: float
    """Per training example and epoch (an excerpt prompt of about 350 tokens)."""
    answer: float
    """Per evaluation answer (up to 48 new tokens, batched)."""
    measured_on: str
    """Where the rates come from."""
    kept_share: float = 0.6
    """Share of the planned teacher-written examples that pass the grounding checks (the demo kept 372 of about
    620; :func:`_measure` measures it on a sample of the folder's facts)."""


REFERENCE_RATES = Rates(
    teacher_request=0.67, train_example=1.05, answer=0.75,
    measured_on="this project's 2-core CPU machine (make demo on 2026-12-04: 594 requests in 6 min 40 s, "
    "744 example passes in 13 min 3 s)",
)


@dataclass(frozen=True)
class Recipe:
    """The knobs :func:`init_config` turns down to fit the budget."""

    questions_per_fact: int = 2
    max_facts_per_chunk: int | None = None
    epochs: int = 2

    def describe(self) -> str:
        facts = "every fact" if self.max_facts_per_chunk is None else f"at most {self.max_facts_per_chunk} facts"
        return f"{facts} of each chunk, {self.questions_per_fact} question(s) per fact, {self.epochs} epoch(s)"


RECIPES = [
    Recipe(),
    Recipe(questions_per_fact=1),
    *(Recipe(questions_per_fact=1, max_facts_per_chunk=limit) for limit in (8, 4, 2, 1)),
    Recipe(questions_per_fact=1, max_facts_per_chunk=1, epochs=1),
]
"""From the recipe that measured best to the cheapest, in the order they are tried."""


def init_config(
    docs_dir: Path,
    out: Path,
    *,
    documents: str | None = None,
    askers: str = "readers",
    student: str | None = None,
    teacher: str | None = None,
    minutes: float = 30.0,
    measure: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Write a commented config for ``docs_dir`` to ``out``; return its plan (counts, recipe, minutes per stage).

    Args:
        docs_dir: the folder of documents (.md, .txt, .html, .pdf, ... as `data.documents` reads them).
        out: the YAML file to write; an existing one is kept unless ``force``.
        documents: what the documents are, for the prompts (default: "the documents in <folder name>").
        askers: who asks about them.
        student: the model to specialise (a known name, an HF folder or a .gguf file; None: ``student.model``'s default).
        teacher: the model that writes the training data (None: ``teacher.model``'s default).
        minutes: the budget for data, teach, train and eval together.
        measure: time the teacher and the student here, in under a minute (else use :data:`REFERENCE_RATES`).
        force: replace an existing ``out``.
    """
    from domainkd.data.build import configured_sources, plan_summary

    docs_dir = Path(docs_dir)
    if not docs_dir.is_dir():
        raise DomainKDError(f"{docs_dir} is not a folder; pass the folder that holds your documents.")
    if out.exists() and not force:
        raise DomainKDError(f"{out} already exists; pass --force to replace it or --out to write elsewhere.")
    documents = documents or f"the documents in {docs_dir.resolve().name}"
    name = _run_name(docs_dir)
    relative_docs = Path(os.path.relpath(docs_dir.resolve(), out.resolve().parent)).as_posix()

    first = config_from_dict(_raw(name, docs_dir, documents, askers, student, teacher, RECIPES[0]))
    started = time.perf_counter()
    skipped: dict[str, str] = {}
    sources = configured_sources(first, skipped)  # the data stage's reading and chunking
    data_seconds = time.perf_counter() - started
    if not sources.chunks:
        raise DomainKDError(f"{docs_dir} holds no readable document; add .md, .txt, .html or .pdf files to it.")
    rates = _measure(first, sources, RECIPES[0].questions_per_fact) if measure else REFERENCE_RATES
    for recipe in RECIPES:
        config = config_from_dict(_raw(name, docs_dir, documents, askers, student, teacher, recipe))
        summary = plan_summary(config, sources, skipped)  # what `domainkd data --dry-run` prints
        estimate = _estimate(config, summary, recipe, rates, data_seconds)
        if sum(estimate.values()) <= minutes * 60:
            break
    text = _yaml(config, out.name, relative_docs, recipe, summary, estimate, rates, minutes)
    config_from_dict(yaml.safe_load(text), source=str(out))  # the file written is a valid config
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return {
        "config": str(out),
        "documents": summary["documents"],
        "skipped_documents": summary["skipped_documents"],
        "chunks": summary["chunks"],
        "recipe": recipe.describe(),
        "teacher_calls": summary["teacher_calls"],
        "minutes": {stage: round(seconds / 60, 1) for stage, seconds in estimate.items()},
        "fits": sum(estimate.values()) <= minutes * 60,
        "rates_from": rates.measured_on,
    }


def _run_name(docs_dir: Path) -> str:
    cleaned = "".join(char if char.isalnum() or char in "-_" else "-" for char in docs_dir.resolve().name.lower())
    return cleaned.strip("-") or "run"


def _raw(
    name: str, docs_dir: Path, documents: str, askers: str, student: str | None, teacher: str | None, recipe: Recipe
) -> dict[str, Any]:
    """The config as a plain dict (paths absolute, for planning; the written file holds them relative)."""
    return {
        "name": name,
        "domain": {"documents": documents, "askers": askers},
        "student": {"model": student} if student else {},
        "teacher": {**({"model": teacher} if teacher else {}), "batch_size": 32, "max_new_tokens": 64},
        "data": {
            "documents": str(docs_dir.resolve()),
            "chunk_tokens": 96,
            "chunk_overlap_tokens": 16,
            "strategies": {
                "context_qa": {
                    "max_facts_per_chunk": recipe.max_facts_per_chunk,
                    "questions_per_fact": recipe.questions_per_fact,
                    "paraphrases_per_question": 0,
                },
                "refusal": {"general": True, "unanswerable_per_chunk": 1, "max_unanswerable": 20, "max_examples": 20},
            },
            "raft": {"share": 1.0, "keep_closed_book": False, "without_gold": 0.0},
        },
        "train": {
            "method": "full", "epochs": recipe.epochs, "detach_excerpts": True, "learning_rate": 1.0e-4,
            "batch_size": 8, "max_length": 512, "bf16": "auto",
        },
        "eval": {"systems": list(SYSTEMS), "max_new_tokens": 48, "batch_size": 16},
        "retrieval": {"method": "hybrid", "top_k": 3, "answer_check": 0.5},
    }


def _estimate(config: Any, summary: dict[str, Any], recipe: Recipe, rates: Rates, data_seconds: float) -> dict[str, float]:
    """Seconds per stage: teacher calls, example passes and answers, times the rates."""
    writing = config.eval.writing
    questions = writing.in_scope + writing.out_of_scope
    answers = questions * len(SYSTEMS) + config.eval.train_recall  # the closed-book student also answers training questions
    return {
        "data": data_seconds,
        "teach": summary["teacher_calls"] * rates.teacher_request,
        "train": summary["examples_at_most"] * rates.kept_share * recipe.epochs * rates.train_example,
        "eval": answers * rates.answer,
    }


def _measure(config: Any, sources: Any, questions_per_fact: int) -> Rates:
    """Rates from timing, on this folder's own chunks: the real `context_qa` strategy on a sample of facts asked in
    ``questions_per_fact`` styles (its teacher requests, and the share of its pairs the checks keep: a second
    style's question that repeats the first is dropped too), two training steps of the student on excerpt prompts
    of the real length, and one batch of its answers to them."""
    import torch

    from domainkd.evaluation.systems import excerpt_prompt
    from domainkd.models import chat_messages, generate_texts, load_causal_lm, render_prompt
    from domainkd.training.sft import mixed_precision

    wanted = min(config.teacher.batch_size, 32)
    sample = _spread_sample(sources.chunks, math.ceil(wanted / questions_per_fact))
    teacher_request, kept, requests = _measure_teacher(config, sample, questions_per_fact)  # the teacher is freed here

    model, tokenizer = load_causal_lm(config.student.model, trust_remote_code=config.student.trust_remote_code)
    chunks = sources.chunks
    rendered = [
        render_prompt(tokenizer, chat_messages(config.system_prompt, excerpt_prompt(
            f"What does {chunks[n % len(chunks)].title} say?", [chunks[(n + k) % len(chunks)] for k in range(3)], config.refusal_text,
        )))
        for n in range(config.eval.batch_size)
    ]
    length = max(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in rendered) + 40  # + the answer
    length = min(length, config.train.max_length)
    batch = torch.randint(0, len(tokenizer), (config.train.batch_size, length))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.learning_rate)
    model.train()
    seconds = []
    for _ in range(2):  # the first step also allocates the optimizer's state: the second is timed
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_precision(config.train)):
            with torch.no_grad():  # train.detach_excerpts: the excerpts run forward without gradient
                prefix = model(input_ids=batch[:, :-40], use_cache=True).past_key_values
            model(input_ids=batch[:, -40:], past_key_values=prefix, labels=batch[:, -40:]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds.append(time.perf_counter() - started)
    train_example = seconds[-1] / config.train.batch_size
    del optimizer
    model.eval()
    started = time.perf_counter()
    with torch.no_grad():
        generate_texts(model, tokenizer, rendered, max_new_tokens=config.eval.max_new_tokens)
    answer = (time.perf_counter() - started) / len(rendered)
    return Rates(
        teacher_request, train_example, answer, kept_share=max(kept / requests, 0.05),
        measured_on=f"this machine, just now ({requests} context_qa requests on {len(sample)} chunks across the "
        f"folder, a training step of {config.train.batch_size} excerpt prompts of {length} tokens, {len(rendered)} answers)",
    )


def _measure_teacher(config: Any, sample: list[Any], questions_per_fact: int) -> tuple[float, int, int]:
    """(seconds per request, pairs kept, requests) of the real `context_qa` strategy on ``sample``'s facts."""
    from domainkd.data.strategies import STRATEGIES, StrategyContext, strategy_params
    from domainkd.sources import Sources, split_facts
    from domainkd.teachers import build_teacher

    teacher = build_teacher(config.teacher)

    def ask(conversations: list, label: str, max_new_tokens: int | None = None, expect_json: bool = False) -> list[str]:
        return [reply.text or "" for reply in teacher.generate(conversations, max_new_tokens, expect_json=expect_json)]

    ask([[{"role": "user", "content": "Hello"}]], "load", max_new_tokens=1)  # loads the model; not timed
    context = StrategyContext(Sources(sample), ask, config.refusal_text, domain=config.domain)
    params = strategy_params("context_qa", {"questions_per_fact": questions_per_fact, "paraphrases_per_question": 0})
    requests = max(1, questions_per_fact * sum(len(split_facts(chunk.text)) for chunk in sample))
    started = time.perf_counter()
    kept = len(STRATEGIES["context_qa"].build(context, params).examples)
    return (time.perf_counter() - started) / requests, kept, requests


def _spread_sample(chunks: list[Any], wanted: int) -> list[Any]:
    """Chunks taken evenly across the folder until they hold about ``wanted`` facts."""
    from domainkd.sources import split_facts

    step = max(1, len(chunks) // 8)
    order = [*chunks[::step], *(chunk for index, chunk in enumerate(chunks) if index % step)]
    picked, facts = [], 0
    for chunk in order:
        if facts >= wanted:
            break
        picked.append(chunk)
        facts += len(split_facts(chunk.text))
    return picked


def _yaml(
    config: Any, filename: str, docs: str, recipe: Recipe, summary: dict[str, Any], estimate: dict[str, float],
    rates: Rates, minutes: float,
) -> str:
    name, documents, askers = config.name, config.domain.documents, config.domain.askers
    calls = summary["strategies"]
    total = sum(estimate.values())
    fits = "fits" if total <= minutes * 60 else "does NOT fit (the cheapest recipe is written; cut documents or raise --minutes)"
    per_stage = ", ".join(f"{stage} {_minutes(seconds)}" for stage, seconds in estimate.items())
    writing = summary.get("eval_writing", {"teacher_calls": 0})
    quote = _quote
    skipped = "".join(f"\n# Skipped {path}: {why}" for path, why in summary["skipped_documents"].items())
    return f"""# domainkd run config written by `domainkd init` for {docs}
# {summary['documents']} documents, {summary['chunks']} chunks of up to 96 tokens ({summary['tokens']} tokens in all).
# Teacher calls planned: context_qa {calls['context_qa']['teacher_calls']}, refusal {calls['refusal']['teacher_calls']},
#   held-out questions {writing['teacher_calls']}; {summary['teacher_calls']} in all (answers are stored: a rerun asks none twice).
# Estimated time: {per_stage}; {_minutes(total)} in all, which {fits} the budget of {minutes:g} min.
#   Rates from {rates.measured_on}: {rates.teacher_request:.3g} s per teacher request,
#   {rates.train_example:.3g} s per training example and epoch, {rates.answer:.3g} s per evaluation answer;
#   {rates.kept_share:.0%} of the {summary['examples_at_most']} planned examples expected to pass the checks.
# Recipe: {recipe.describe()}.
# Next: edit `domain` below, then `domainkd run {filename}` (or each stage: data, teach, train, eval, report).
# Relative paths resolve against this file's folder.{skipped}
name: {name}

domain:                             # every teacher, judge and answer prompt names these
  documents: {quote(documents)}   # what the documents are, e.g. "biomedical abstracts"
  askers: {quote(askers)}   # who asks, e.g. "clinicians"

student:
  model: {quote(config.student.model)}   # a known name (`domainkd models list`), an HF folder or a .gguf file

teacher:
  backend: hf                       # or openai (an OpenAI-compatible endpoint you run) or vllm
  model: {quote(config.teacher.model)}   # qwen2.5-coder-1.5b-instruct: 3x the time, no better student (docs/teachers.md)
  batch_size: 32
  max_new_tokens: 64

data:
  documents: {quote(docs)}
  chunk_tokens: 96                  # short excerpts: the student reads three of them
  chunk_overlap_tokens: 16
  strategies:
    context_qa:
      max_facts_per_chunk: {'null' if recipe.max_facts_per_chunk is None else recipe.max_facts_per_chunk}
      questions_per_fact: {recipe.questions_per_fact}
      paraphrases_per_question: 0
    refusal:                        # questions outside the documents, answered with the refusal sentence
      general: true
      unanswerable_per_chunk: 1     # teacher-written on-topic questions no chunk answers
      max_unanswerable: 20
      max_examples: 20              # more refusals teach the student to refuse real questions
  raft:                             # every training question asked with the excerpts the retriever finds for it
    share: 1.0
    keep_closed_book: false
    without_gold: 0.0

train:
  method: full                      # or lora
  epochs: {recipe.epochs}
  detach_excerpts: true             # excerpts run without gradient: about 2.5x faster on a CPU
  learning_rate: 1.0e-4
  batch_size: 8
  max_length: 512
  bf16: auto

eval:
  # no `questions:` file: `teach` has the teacher write held-out questions into the run directory's eval.jsonl
  # (marked teacher-written); review and edit that file, or set `questions:` to your own JSONL file.
  systems: [{', '.join(SYSTEMS)}]
  max_new_tokens: 48
  batch_size: 16

retrieval:
  method: hybrid                    # bm25 + dense (MiniLM) by reciprocal rank fusion
  top_k: 3
  answer_check: 0.5                 # an answer the excerpts do not back becomes the refusal sentence
"""


def _quote(text: str) -> str:
    """``text`` as a YAML double-quoted scalar."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _minutes(seconds: float) -> str:
    return f"{math.ceil(seconds / 6) / 10:.1f} min"
