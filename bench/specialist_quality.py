"""Does the specialist know the domain? Every recipe and each lever alone, on reworded held-out questions.

Each row is a ``domainkd run`` of the handbook (or ``--corpus``) config with some settings
overridden, in its own run folder under ``--workdir``; teacher answers are shared between rows
through one answer store, so a prompt is never asked twice. A row reports the system it is
about (closed-book or with retrieval): fact accuracy with its 95% bootstrap interval,
out-of-scope refusal, false refusal, training time and training-set size. Rows:

* references without training: the base student closed-book and reading retrieved excerpts
  (RAG), and the teacher reading retrieved excerpts;
* ``today``: the demo's recipe before this benchmark (6 facts per section, 2 question styles,
  20 refusals, whole-section chunks, 5 epochs), closed-book and with retrieval;
* one lever at a time added to ``today`` (an ablation), then the demo's recipe (``best``: the
  config read, as `make demo` runs it);
* the curve of fact accuracy against phrasings per fact (1, 2, 4, 8 question styles);
* ``best`` on a second corpus (``examples/waterworks``), to check the recipe is not tuned to one;
* levers measured since on the demo's recipe of 2026-12-04 (teacher answers, 20 refusals; ``DEMO_2026_12_04``) or its
  one-fact-per-chunk variant: the 1.5B teacher, context distillation against plain SFT, excerpt copies trained on the
  source sentence (``data.raft.answer: source``), the gradient through the excerpts; the source-sentence recipe on
  ``examples/waterworks`` too; more question styles per fact (3 or 4 instead of 2, and 4 in one epoch) on both corpora;
* on each other corpus (``examples/waterworks``, and ``examples/biobank``, written after the levers were measured): the
  demo's recipe, 3 or 4 question styles (4 also in one epoch), and 10 refusals instead of 20.

Finished rows are skipped on a rerun (their metrics are read back). Writes
``bench/results/specialist_quality.json`` and prints one Markdown table.

    python bench/specialist_quality.py --workdir /tmp/specialist            # every row (hours on 2 CPU cores)
    python bench/specialist_quality.py --rows base rag best --seeds 0 1    # some rows, two seeds
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from domainkd import load_config
from domainkd.config import config_from_dict, deep_merge
from domainkd.data.build import prepare_data, teach
from domainkd.evaluation import evaluate
from domainkd.io import read_jsonl
from domainkd.models.loading import native_on_cpu
from domainkd.paths import RunPaths
from domainkd.training import train

REPO = Path(__file__).resolve().parents[1]
HANDBOOK = REPO / "examples" / "handbook" / "config.yaml"
WATERWORKS = REPO / "examples" / "waterworks" / "config.yaml"
BIOBANK = REPO / "examples" / "biobank" / "config.yaml"

TODAY: dict[str, Any] = {
    "data": {
        "chunk_tokens": 320, "chunk_overlap_tokens": 40, "raft": None,
        "strategies": {
            "context_qa": {"max_facts_per_chunk": 6, "questions_per_fact": 2},
            "refusal": {"plausible": True, "general": True, "max_examples": 20},
        },
    },
    "train": {"epochs": 5, "learning_rate": 1e-4, "max_length": 192, "schedule": "mixed", "excerpt_epochs": None,
              "detach_excerpts": False},
}
"""The demo's recipe before issue 16 (its model and teacher settings as in the config read)."""


@dataclass
class Row:
    """One line of the table: a run's settings and the system it reports."""

    name: str
    what: str
    system: str
    overrides: dict[str, Any] = field(default_factory=dict)
    trains: bool = True
    corpus: Path = HANDBOOK
    group: str = ""  # rows sharing a group share one run (e.g. closed-book and with retrieval)
    unchecked: bool = False  # score the answers before retrieval.answer_check replaced any


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of override dicts, later ones winning."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged = deep_merge(merged, part)
    return merged


def lever(**sections: Any) -> dict[str, Any]:
    return merge(TODAY, sections)


RAFT = {"data": {"chunk_tokens": 96, "chunk_overlap_tokens": 16,
                 "raft": {"share": 1.0, "keep_closed_book": False, "without_gold": 0.0, "answer": "teacher"}},
        "train": {"max_length": 512, "epochs": 2, "detach_excerpts": True}}


DEMO_2026_12_04 = {"data": {"raft": {"answer": "teacher"}, "strategies": {"refusal": {"max_examples": 20}}}}
"""The demo's recipe of 2026-12-04 in the settings later rows changed (teacher answers, 20 refusals): pinned in the
rows measured against it, so their settings (and the identity that lets a rerun reuse their runs) stay as measured
if the demo's config changes."""

TEACHER_1_5B = {"teacher": {"model": "qwen2.5-coder-1.5b-instruct"}}
ONE_FACT = {"data": {"strategies": {"context_qa": {"max_facts_per_chunk": 1}}}}
SOURCE_ANSWERS = {"data": {"raft": {"answer": "source"}}}
REFUSALS_40 = {"data": {"strategies": {"refusal": {"max_examples": 40}}}}
REFUSALS_10 = {"data": {"strategies": {"refusal": {"max_examples": 10}}}}
QUOTED_40 = merge(DEMO_2026_12_04, SOURCE_ANSWERS, REFUSALS_40)
"""Excerpt copies trained on the source sentence, with 40 refusals (the demo's recipe for a few hours of 2026-12-07)."""
PHRASINGS_8_REWORDED = merge(TODAY, {"data": {"strategies": {
    "context_qa": {"max_facts_per_chunk": None, "questions_per_fact": 8, "paraphrases_per_question": 2},
    "refusal": {"max_examples": 40},
}}})
"""The closed-book recipe with the most phrasings measured: every fact in 8 question styles, each kept question
reworded twice by the teacher, and refusals to match the larger set (two changes at once)."""
STYLES_4 = merge(DEMO_2026_12_04, {"data": {"strategies": {"context_qa": {"questions_per_fact": 4}}}})
"""The demo's recipe with four question styles per fact (quiz, casual, yes/no check, the other direction): twice the
reading practice per fact, the teacher writing the two extra styles."""
STYLES_3 = merge(DEMO_2026_12_04, {"data": {"strategies": {"context_qa": {"questions_per_fact": 3}}}})
"""The demo's recipe with three question styles per fact (quiz, casual, yes/no check)."""
STYLES_4_ONE_EPOCH = merge(STYLES_4, {"train": {"epochs": 1}})
"""Four question styles in one epoch: about as many training steps as two styles in two epochs."""
ONE_FACT_CLOSED_BOOK = merge(ONE_FACT, {"data": {"raft": None},
                                        "train": {"epochs": 5, "max_length": 192, "detach_excerpts": False}})


def rows() -> list[Row]:
    """Every row, in table order."""
    curve = [
        Row(f"phrasings_{n}", f"all facts, {n} question {'style' if n == 1 else 'styles'} per fact", "student",
            lever(data={"strategies": {"context_qa": {"max_facts_per_chunk": None, "questions_per_fact": n}}}))
        for n in (1, 2, 4, 8)
    ]
    curve.append(Row("phrasings_8_reworded", "phrasings_8 + 2 teacher rewordings of every kept question + 40 refusals",
                     "student", PHRASINGS_8_REWORDED))
    return [
        Row("base", "SmolLM2-135M as it is", "base_student", DEMO_2026_12_04, trains=False, group="untrained"),
        Row("rag", "base student reading 3 retrieved excerpts", "base_student_with_retrieval", DEMO_2026_12_04,
            trains=False, group="untrained"),
        Row("rag_teacher", "Qwen2.5-Coder-0.5B reading 3 retrieved excerpts", "teacher_with_retrieval", DEMO_2026_12_04,
            trains=False, group="untrained"),
        Row("today", "the previous demo recipe, closed-book", "student", TODAY, group="today"),
        Row("today_hybrid", "the previous demo recipe, reading excerpts", "student_with_retrieval", TODAY, group="today"),
        Row("all_facts", "today + every fact of every section", "student",
            lever(data={"strategies": {"context_qa": {"max_facts_per_chunk": None}}})),
        Row("fact_answers", "today + the source sentence as a second answer", "student",
            lever(data={"strategies": {"context_qa": {"fact_answers": True}}})),
        Row("frames_pit", "today + facts restated in 2 frames, permuted sections, QA first (PIT)", "student",
            lever(data={"strategies": {"unstructured": {"raw": True, "permutations": 1, "fact_frames": 2}}},
                  train={"schedule": "qa_first", "qa_first_epochs": 2})),
        Row("context_0.5b", "Qwen2.5-Coder-0.5B reading the gold section", "teacher_with_context", DEMO_2026_12_04,
            trains=False, group="untrained"),
        Row("context_1.5b", "Qwen2.5-Coder-1.5B reading the gold section", "teacher_with_context",
            merge(DEMO_2026_12_04, TEACHER_1_5B), trains=False, group="untrained-1.5b"),
        Row("raft", "today + RAFT (every question with excerpts only, 96-token chunks, 2 epochs, excerpts detached), reading excerpts",
            "student_with_retrieval", lever(**RAFT), group="raft"),
        Row("raft_unchecked", "the raft row without the answer check", "student_with_retrieval", lever(**RAFT),
            group="raft", unchecked=True),
        Row("teacher_1.5b", "today with Qwen2.5-Coder-1.5B writing the questions and answers", "student",
            lever(**TEACHER_1_5B)),
        Row("context_kd", "today + context distillation: the raft row's student reading each source teaches it",
            "student", lever(train={"kd": {"teacher": "{workdir}/raft-seed{seed}/train/model", "teacher_context": "source",
                                           "top_k": 64, "loss": "vanilla", "alpha": 0.5}})),
        *curve,
    ]


def run_row(row: Row, workdir: Path, seed: int, answers: Path, keep_checkpoints: bool = False) -> dict[str, Any]:
    """Train (unless the row needs none) and evaluate one row's run; reuse a finished one.

    A finished run's training checkpoints (two of 1.5 GB each for the 135M student) are deleted unless
    ``keep_checkpoints``: they only serve to resume a killed training, and a day of rows filled a 60 GB disk.
    """
    group = row.group or row.name
    run_dir = workdir / f"{group}-seed{seed}"
    done = run_dir / "bench-row.json"
    config = _config(row, run_dir, seed)
    identity = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    if done.is_file() and json.loads(done.read_text())["identity"] == identity:
        return _result(row, run_dir, json.loads(done.read_text()))
    run_dir.mkdir(parents=True, exist_ok=True)
    if answers.is_file() and not RunPaths(run_dir).answer_store.is_file():
        shutil.copy(answers, RunPaths(run_dir).answer_store)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    prepare_data(config)
    if row.trains:
        teach(config)
        shutil.copy(RunPaths(run_dir).answer_store, answers)  # every answer so far, for the next rows
        timings["teach_s"] = round(time.perf_counter() - began, 1)
        began = time.perf_counter()
        train(config)
        timings["train_s"] = round(time.perf_counter() - began, 1)
    began = time.perf_counter()
    evaluate(config)
    timings["eval_s"] = round(time.perf_counter() - began, 1)
    record = {"identity": identity, "timings": timings, "finished": time.strftime("%Y-%m-%d %H:%M"),
              "cpu_native_bf16": bool(native_on_cpu(torch.bfloat16))}
    done.write_text(json.dumps(record), encoding="utf-8")
    if not keep_checkpoints:
        shutil.rmtree(RunPaths(run_dir).checkpoints, ignore_errors=True)
    return _result(row, run_dir, record)


def _config(row: Row, run_dir: Path, seed: int):
    systems = sorted({other.system for other in rows() + extra_rows() if (other.group or other.name) == (row.group or row.name)})
    base = load_config(row.corpus)
    overrides = json.loads(json.dumps(row.overrides).replace("{workdir}", str(run_dir.parent)).replace("{seed}", str(seed)))
    raw = merge(
        base.model_dump(mode="json"), overrides,
        {"run_dir": str(run_dir), "eval": {"systems": systems}, "train": {"seed": seed}},
    )
    if raw["data"].get("raft"):
        raw["data"]["raft"]["seed"] = seed
    return config_from_dict(raw, source=f"bench row {row.name}")


def _result(row: Row, run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    paths = RunPaths(run_dir)
    metrics = json.loads(paths.metrics.read_text(encoding="utf-8"))
    scores = metrics["systems"][row.system]["scores"]
    if row.unchecked:
        scores = _unchecked_scores(paths, row.system, load_config(row.corpus).eval.questions)
    train_summary = json.loads(paths.train_summary.read_text()) if row.trains and paths.train_summary.is_file() else {}
    return {
        "row": row.name, "what": row.what, "system": row.system, "run_dir": str(run_dir),
        "fact_accuracy": scores["fact_accuracy"], "refusal_rate": scores["refusal_rate"],
        "false_refusal_rate": scores["false_refusal_rate"],
        "knowledge": metrics["systems"][row.system].get("knowledge"),
        "reading": metrics["systems"][row.system].get("reading"),  # excerpts held the facts or not (reading rows)
        "examples": train_summary.get("examples"), "train_steps": train_summary.get("steps"),
        **record["timings"], "finished": record.get("finished"), "cpu_native_bf16": record.get("cpu_native_bf16"),
        # the training's own time (a row that reused a finished run, e.g. the demo's, took seconds to read it)
        **({"train_s": train_summary["seconds"]} if "seconds" in train_summary else {}),
    }


def _unchecked_scores(paths: RunPaths, system: str, questions_file: Path) -> dict[str, Any]:
    """Fact accuracy and the refusal rates of the answers as generated, before the answer check."""
    from domainkd.evaluation import metrics
    from domainkd.evaluation.statistics import mean_ci

    questions = {row["id"]: row for row in read_jsonl(questions_file)}
    predictions = read_jsonl(paths.predictions(system))
    scores = {}
    for name in ("fact_accuracy", "refusal_rate", "false_refusal_rate"):
        score = getattr(metrics, name)
        values = [score(row.get("unchecked", row["prediction"]), questions[row["id"]]) for row in predictions]
        kept = [value for value in values if value is not None]
        low, high = mean_ci(values)
        scores[name] = {"mean": sum(kept) / len(kept) if kept else None, "n": len(kept), "ci_low": low, "ci_high": high}
    return scores


def extra_rows() -> list[Row]:
    """Rows defined by the recipe of the config read (the demo's), added after the levers."""
    return [
        Row("best", "the demo's recipe (RAFT only, every fact, 2 styles, detached, teacher answers, 20 refusals), closed-book",
            "student", group="best"),
        Row("best_hybrid", "the demo's recipe, reading excerpts", "student_with_retrieval", group="best"),
        Row("best_teacher_1.5b", "the 2026-12-04 demo recipe with Qwen2.5-Coder-1.5B writing the questions and answers, closed-book",
            "student", merge(DEMO_2026_12_04, TEACHER_1_5B), group="best-1.5b"),
        Row("best_teacher_1.5b_hybrid", "the 2026-12-04 demo recipe with the 1.5B teacher, reading excerpts",
            "student_with_retrieval",
            merge(DEMO_2026_12_04, TEACHER_1_5B), group="best-1.5b"),
        Row("styles_4", "the demo's recipe with 4 question styles per fact instead of 2, closed-book", "student",
            STYLES_4, group="styles-4"),
        Row("styles_4_hybrid", "the demo's recipe with 4 question styles per fact instead of 2, reading excerpts",
            "student_with_retrieval", STYLES_4, group="styles-4"),
        Row("styles_3_hybrid", "the demo's recipe with 3 question styles per fact instead of 2, reading excerpts",
            "student_with_retrieval", STYLES_3),
        Row("styles_4_one_epoch_hybrid", "styles_4 trained for 1 epoch instead of 2, reading excerpts",
            "student_with_retrieval", STYLES_4_ONE_EPOCH),
        # the teacher's data alone, at a size the 1.5B teacher answers in half an hour on a CPU without bf16
        Row("one_fact_0.5b", "the 2026-12-04 demo recipe on one fact per chunk, Qwen2.5-Coder-0.5B teacher, reading excerpts",
            "student_with_retrieval", merge(DEMO_2026_12_04, ONE_FACT), group="one-fact-0.5b"),
        Row("one_fact_1.5b", "the 2026-12-04 demo recipe on one fact per chunk, Qwen2.5-Coder-1.5B teacher, reading excerpts",
            "student_with_retrieval", merge(DEMO_2026_12_04, ONE_FACT, TEACHER_1_5B),
            group="one-fact-1.5b"),
        # extractive reading: excerpt copies trained on the source sentence instead of the teacher's answer
        Row("one_fact_source", "one_fact_0.5b with the source sentence as every excerpt copy's answer, reading excerpts",
            "student_with_retrieval", merge(DEMO_2026_12_04, ONE_FACT, SOURCE_ANSWERS)),
        Row("source_answers", "the 2026-12-04 demo recipe with the source sentence as every excerpt copy's answer, "
            "reading excerpts",
            "student_with_retrieval", merge(DEMO_2026_12_04, SOURCE_ANSWERS)),
        Row("source_answers_refusals_40", "source_answers with 40 refusal examples instead of 20, reading excerpts",
            "student_with_retrieval", QUOTED_40),
        Row("source_answers_full_gradient", "source_answers_refusals_40 with the gradient through the excerpts "
            "(train.detach_excerpts: false), reading excerpts", "student_with_retrieval",
            merge(QUOTED_40, {"train": {"detach_excerpts": False}})),
        Row("source_answers_unanswerable", "source_answers with 60 refusals, in-domain questions the teacher wrote that their "
            "chunk does not answer among them (40 asked), reading excerpts", "student_with_retrieval",
            merge(DEMO_2026_12_04, SOURCE_ANSWERS, {"data": {"strategies": {"refusal": {
                "max_examples": 60, "unanswerable_per_chunk": 1, "max_unanswerable": 40}}}})),
        # context distillation against plain SFT on the same closed-book data; the teacher is one_fact_0.5b's student
        Row("one_fact_sft", "one fact per chunk, closed-book SFT (5 epochs)", "student",
            merge(DEMO_2026_12_04, ONE_FACT_CLOSED_BOOK)),
        Row("one_fact_context_kd", "one_fact_sft + context distillation: one_fact_0.5b's student reading each source teaches it",
            "student", merge(DEMO_2026_12_04, ONE_FACT_CLOSED_BOOK, {"train": {"kd": {
                "teacher": "{workdir}/one-fact-0.5b-seed{seed}/train/model", "teacher_context": "source",
                "top_k": 64, "loss": "vanilla", "alpha": 0.5}}})),
        *corpus_rows("waterworks", WATERWORKS),
        Row("waterworks_phrasings_8_reworded", "phrasings_8_reworded on examples/waterworks, closed-book", "student",
            PHRASINGS_8_REWORDED, corpus=WATERWORKS),
        Row("waterworks_source_answers", "source_answers_refusals_40 on examples/waterworks, closed-book", "student",
            QUOTED_40, corpus=WATERWORKS, group="waterworks-source"),
        Row("waterworks_source_answers_hybrid", "source_answers_refusals_40 on examples/waterworks, reading excerpts",
            "student_with_retrieval", QUOTED_40, corpus=WATERWORKS,
            group="waterworks-source"),
        Row("waterworks_source_answers_20", "source_answers on examples/waterworks (20 refusals), reading excerpts",
            "student_with_retrieval", merge(DEMO_2026_12_04, SOURCE_ANSWERS), corpus=WATERWORKS),
        # a third corpus, written after the recipes above were chosen: which of the two others is the odd one out
        *corpus_rows("biobank", BIOBANK),
    ]


def corpus_rows(name: str, corpus: Path) -> list[Row]:
    """The demo's recipe (closed-book and reading excerpts), 4 or 3 question styles per fact (4 also in one epoch),
    and half the refusals on another corpus."""
    where = f"examples/{name}"
    return [
        Row(name, f"the demo's recipe on {where}, closed-book", "student", corpus=corpus, group=name),
        Row(f"{name}_hybrid", f"the demo's recipe on {where}, reading excerpts", "student_with_retrieval",
            corpus=corpus, group=name),
        Row(f"{name}_styles_4_hybrid", f"styles_4 on {where}, reading excerpts", "student_with_retrieval", STYLES_4,
            corpus=corpus, group=f"{name}-styles-4"),
        Row(f"{name}_styles_3_hybrid", f"styles_3 on {where}, reading excerpts", "student_with_retrieval", STYLES_3,
            corpus=corpus),
        Row(f"{name}_styles_4_one_epoch_hybrid", f"styles_4_one_epoch on {where}, reading excerpts",
            "student_with_retrieval", STYLES_4_ONE_EPOCH, corpus=corpus),
        Row(f"{name}_refusals_10_hybrid", f"the demo's recipe on {where} with 10 refusals instead of 20 (the handbook's "
            "share of refusals, 5%, of a set half its size), reading excerpts", "student_with_retrieval",
            merge(DEMO_2026_12_04, REFUSALS_10), corpus=corpus),
    ]


def _cell(score: dict[str, Any] | None, interval: bool = False) -> str:
    if not score or score.get("mean") is None:
        return "–"
    text = f"{100 * score['mean']:.1f}"
    if interval and score.get("ci_low") is not None:
        text += f" ({100 * score['ci_low']:.0f}–{100 * score['ci_high']:.0f})"
    return text


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| row | seed | what | system | fact accuracy (95% CI) | OOS refusal | false refusal | train-q recall | examples | teach s | train s | eval s | finished |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        recall = (result.get("knowledge") or {}).get("train_recall")
        lines.append(
            f"| {result['row']} | {result['seed']} | {result['what']} | {result['system']} | "
            f"{_cell(result['fact_accuracy'], True)} | {_cell(result['refusal_rate'])} | "
            f"{_cell(result['false_refusal_rate'])} | {_cell(recall)} | {result.get('examples') or '–'} | "
            f"{result.get('teach_s', '–')} | {result.get('train_s', '–')} | {result.get('eval_s', '–')} | {result.get('finished') or 'before 2026-12-06'} |"
        )
    return "\n".join(lines)


def summary(results: list[dict[str, Any]]) -> str:
    """Rows run with more than one seed: the mean and the range of each rate over their seeds."""
    by_row: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_row.setdefault(result["row"], []).append(result)
    lines = [
        "| row | seeds | fact accuracy: mean (min–max) | OOS refusal: mean (min–max) "
        "| false refusal: mean (min–max) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, runs in by_row.items():
        if len(runs) < 2:
            continue
        cells = []
        for key in ("fact_accuracy", "refusal_rate", "false_refusal_rate"):
            values = [100 * run[key]["mean"] for run in runs if run.get(key) and run[key].get("mean") is not None]
            cells.append(f"{sum(values) / len(values):.1f} ({min(values):.1f}–{max(values):.1f})" if values else "–")
        lines.append(f"| {name} | {len(runs)} | {' | '.join(cells)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/specialist-quality"))
    parser.add_argument("--rows", nargs="*", help="row names (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "specialist_quality.json")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep each finished run's training checkpoints (deleted by default: 3 GB a run)")
    args = parser.parse_args(argv)
    every = rows() + extra_rows()
    unknown = set(args.rows or []) - {row.name for row in every}
    if unknown:
        sys.exit(f"unknown rows {sorted(unknown)}; choose from {', '.join(row.name for row in every)}")
    chosen = [row for row in every if not args.rows or row.name in args.rows]
    args.workdir.mkdir(parents=True, exist_ok=True)
    answers = args.workdir / "teacher_answers.sqlite"
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {"results": []}
    results = {(r["row"], r["seed"]): r for r in previous.get("results", [])}
    for seed in args.seeds:
        for row in chosen:
            print(f"== {row.name} (seed {seed})", flush=True)
            results[(row.name, seed)] = {**run_row(row, args.workdir, seed, answers, args.keep_checkpoints), "seed": seed}
            ordered = [results[key] for key in sorted(results, key=lambda k: ([r.name for r in every].index(k[0]), k[1]))]
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps({
                "machine": {"platform": platform.platform(), "python": platform.python_version()},
                "results": ordered,
            }, indent=1), encoding="utf-8")
    print(table(ordered))
    over_seeds = summary(ordered)
    if over_seeds:
        print(f"\nOver seeds:\n\n{over_seeds}")


if __name__ == "__main__":
    main()
