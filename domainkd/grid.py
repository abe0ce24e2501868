"""``domainkd grid``: the KD experiment grid of the telecom-QA distillation paper, on your data.

Cells are {teacher SFT: no/yes} × {student SFT: no/yes} × {KD loss} × {teacher vocabulary}
(each teacher of ``grid.teachers``). Everything shared is done once under the grid's run
directory and reused by every cell:

- ``base/``: the data and teach stages (the training set every model trains on);
- ``student-<n>-layers/``: the student cut to its first layers, when ``grid.student_layers``;
- ``student_sft/``: the student fine-tuned on the training set (plain SFT), if a cell needs it;
- ``teacher_sft-<label>/``: each teacher fine-tuned on the training set, if a cell needs it;
- ``cells/<name>/``: one KD run (train + eval of the student) per cell; ``cell.json`` marks it
  finished, so a rerun skips it while its settings, training set and models are unchanged (an
  interrupted cell resumes from its checkpoints and teacher store; a finished one keeps its
  model and scores, not its checkpoints).

The result is one table, ``grid.md`` (and ``grid.json``), with the untrained and SFT-only
students as reference rows. A ``vanilla`` cell whose teacher has another tokenizer uses
``grid.vanilla_across_tokenizers`` (logit KD needs shared token ids), and a ``dskd`` cell
uses cross-model attention there; the table says which loss each cell ran.
"""

from __future__ import annotations

import gc
import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainkd.config import GridConfig, KDConfig, RunConfig, config_from_dict
from domainkd.data.build import prepare_data, teach
from domainkd.distill.vocab import check_vocabularies
from domainkd.errors import DomainKDError
from domainkd.evaluation import evaluate
from domainkd.io import read_jsonl, write_json
from domainkd.models import load_tokenizer, save_first_layers
from domainkd.models.cache import sha256_of
from domainkd.paths import RunPaths
from domainkd.training import train

SHARED_STAGE_DIRS = ("data", "teach")  # copied from base/ into every run that trains
TABLE_METRICS = ("fact_accuracy", "token_f1", "rouge_l", "refusal_rate", "false_refusal_rate")


@dataclass(frozen=True)
class Cell:
    """One KD run of the grid, its config validated before any work starts."""

    name: str
    teacher: str  # the label in grid.teachers
    vocabulary: str  # same / same-prefix / different, relative to the student
    teacher_sft: bool
    student_sft: bool
    loss: str  # the loss the cell runs (see _effective_loss)
    config: RunConfig

    def row(self) -> dict[str, Any]:
        fields = ("teacher", "vocabulary", "teacher_sft", "student_sft", "loss")
        return {"cell": self.name, **{name: getattr(self, name) for name in fields}}


def run_grid(config: RunConfig) -> str:
    """Run every unfinished cell of ``config.grid``; write and return the results table."""
    if config.grid is None:
        raise DomainKDError(
            "the config has no `grid` section; add one (see examples/grid/cpu.yaml) or use `domainkd run`."
        )
    root, grid = config.output_dir, config.grid
    cells = plan_cells(config)  # every cell's config checked before hours of work
    base = _variant(config, root / "base", train__kd=None)
    print("== grid: training set", flush=True)
    prepare_data(base)
    teach(base)
    student = _student(config, root)
    rows = [_reference_row(config, root, "student (no training)", student)]
    if True in grid.student_sft:
        student_sft = _fine_tuned(config, root / "student_sft", student, config.train.model_dump(mode="json"))
        rows.append(_reference_row(config, root, "student SFT (no KD)", student_sft))
    if True in grid.teacher_sft:
        for label, reference in grid.teachers.items():
            settings = {**config.train.model_dump(mode="json"), **grid.teacher_sft_train}
            _fine_tuned(config, root / f"teacher_sft-{label}", reference, settings)
    reference_row = rows[-1]["cell"]  # the strongest student without KD: SFT when the grid trains one
    rows += [
        {**cell.row(), **_cell(cell.config, root), "predictions": str(RunPaths(cell.config.output_dir).predictions("student"))}
        for cell in cells
    ]
    significance = against_reference(rows, reference_row, config)
    table = results_table(rows, significance)
    write_json(root / "grid.json", {"rows": rows, "significance": significance})
    (root / "grid.md").write_text(table + "\n", encoding="utf-8")
    return table


def plan_cells(config: RunConfig) -> list[Cell]:
    """Every cell of the grid with its run config, from tokenizers and settings alone (no weights loaded)."""
    root, grid = config.output_dir, config.grid
    student = _student_path(config, root)
    students = {False: student, True: str((RunPaths(root / "student_sft").model).resolve())}
    kd_template = (config.train.kd or KDConfig()).model_dump(mode="json")
    cells = []
    for label, reference in grid.teachers.items():
        relation = _relation(config, reference)
        teachers = {False: reference, True: str(RunPaths(root / f"teacher_sft-{label}").model.resolve())}
        for teacher_sft, student_sft, loss in itertools.product(grid.teacher_sft, grid.student_sft, grid.losses):
            name = f"{label}-teacher{'_sft' if teacher_sft else ''}-student{'_sft' if student_sft else ''}-{loss}"
            effective = _effective_loss(loss, relation, grid)
            kd = {**kd_template, "teacher": teachers[teacher_sft], "loss": effective}
            variant = _variant(
                config, root / "cells" / name, student__model=students[student_sft], train__kd=kd,
                eval__systems=["student"],
            )
            cells.append(Cell(name, label, relation, teacher_sft, student_sft, effective, variant))
    return cells


def _relation(config: RunConfig, teacher: str) -> str:
    """How the teacher's vocabulary relates to the student's (tokenizers only)."""
    student_tokenizer = load_tokenizer(config.student.model, trust_remote_code=config.student.trust_remote_code)
    teacher_tokenizer = load_tokenizer(teacher, trust_remote_code=config.teacher.trust_remote_code)
    sizes = (len(student_tokenizer), len(teacher_tokenizer))
    relation = check_vocabularies(student_tokenizer, teacher_tokenizer, *sizes)
    return "same" if relation == "same-prefix" and sizes[0] == sizes[1] else relation


def _variant(config: RunConfig, run_dir: Path, **changes: Any) -> RunConfig:
    """``config`` for another run directory with values changed (``section__key``), validated again."""
    raw = config.model_dump(mode="json", exclude={"grid"})
    raw["run_dir"] = str(run_dir)
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config_from_dict(raw, source="grid")


def _with_training_set(config: RunConfig, root: Path) -> None:
    """Give a run directory the base run's data and training set (again, if the base set changed)."""
    base, target = RunPaths(root / "base"), RunPaths(config.output_dir)
    if target.train_set.is_file() and sha256_of(target.train_set) != sha256_of(base.train_set):
        for name in SHARED_STAGE_DIRS:
            shutil.rmtree(target.root / name, ignore_errors=True)
    for name in SHARED_STAGE_DIRS:
        if not (target.root / name).exists():
            shutil.copytree(base.root / name, target.root / name)


def _student_path(config: RunConfig, root: Path) -> str:
    layers = config.grid.student_layers
    return config.student.model if layers is None else str((root / f"student-{layers}-layers").resolve())


def _student(config: RunConfig, root: Path) -> str:
    """The grid's student reference: the configured one, or its first ``student_layers`` layers."""
    path = _student_path(config, root)
    if config.grid.student_layers is not None:
        save_first_layers(config.student.model, config.grid.student_layers, Path(path), config.student.trust_remote_code)
    return path


def _fine_tuned(config: RunConfig, run_dir: Path, model: str, train_settings: dict[str, Any]) -> str:
    """Fine-tune ``model`` on the training set (plain SFT) unless done for the same inputs; its directory."""
    variant = _variant(config, run_dir, student__model=model, train={**train_settings, "kd": None})
    paths = RunPaths(variant.output_dir)
    inputs = {
        "model": model,
        "model_stamp": _stamp(model),
        "train": variant.train.model_dump(mode="json"),
        "train_set_sha256": sha256_of(RunPaths(config.output_dir / "base").train_set),
    }
    marker = run_dir / "grid_inputs.json"
    done = marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == inputs
    if not done or not (paths.model / "config.json").is_file():
        print(f"== grid: fine-tuning {model} into {run_dir}", flush=True)
        _with_training_set(variant, config.output_dir)
        train(variant)
        write_json(marker, inputs)
        shutil.rmtree(paths.checkpoints, ignore_errors=True)
        gc.collect()
    return str(paths.model.resolve())


def _stamp(reference: str) -> str | None:
    """Changes whenever a local model's weights are rewritten; ``None`` for a named or hub model."""
    weights = sorted(Path(reference).glob("*.safetensors")) if Path(reference).is_dir() else []
    return ",".join(f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in weights) or None


def _effective_loss(loss: str, relation: str, grid: GridConfig) -> str:
    return grid.vanilla_across_tokenizers if loss == "vanilla" and relation == "different" else loss


def _cell(config: RunConfig, root: Path) -> dict[str, Any]:
    """Train and evaluate one KD cell, or read its result if it finished for the same inputs."""
    identity = {
        "config": config.model_dump(mode="json", exclude={"compare", "retrieval"}),  # sections a cell never reads
        "train_set_sha256": sha256_of(RunPaths(root / "base").train_set),
        "student_stamp": _stamp(config.student.model),
        "teacher_stamp": _stamp(config.train.kd.teacher),
    }
    marker = config.output_dir / "cell.json"
    if marker.is_file():
        finished = json.loads(marker.read_text(encoding="utf-8"))
        if finished.get("identity") == identity:
            print(f"== grid: {config.output_dir.name} finished earlier; skipped", flush=True)
            return finished["result"]
    print(f"== grid: {config.output_dir.name}", flush=True)
    _with_training_set(config, root)
    summary = train(config)
    gc.collect()
    scores = evaluate(config)["systems"]["student"]["scores"]
    result = {"scores": scores, "train_seconds": summary["seconds"], "steps": summary["steps"]}
    write_json(marker, {"identity": identity, "result": result})
    shutil.rmtree(RunPaths(config.output_dir).checkpoints, ignore_errors=True)  # the model and scores are kept
    return result


def _reference_row(config: RunConfig, root: Path, label: str, student: str) -> dict[str, Any]:
    """Scores of a student without KD (``base_student`` system on its reference), evaluated once."""
    slug = label.split(" (")[0].replace(" ", "_")
    variant = _variant(config, root / "reference" / slug, student__model=student, eval__systems=["base_student"])
    _with_training_set(variant, root)
    scores = evaluate(variant)["systems"]["base_student"]["scores"]
    return {"cell": label, "scores": scores, "predictions": str(RunPaths(variant.output_dir).predictions("base_student"))}


def against_reference(rows: list[dict[str, Any]], reference: str, config: RunConfig) -> dict[str, Any]:
    """Every row against the ``reference`` row (the student without KD).

    Paired Wilcoxon on the per-example scores of the table's metrics, Holm-corrected over the
    cells of each metric, from each row's predictions file.
    """
    from domainkd.evaluation.registry import METRICS
    from domainkd.evaluation.statistics import compare_systems

    per_example = {
        row["cell"]: {metric: [example["scores"].get(metric) for example in read_jsonl(Path(row["predictions"]))]
                      for metric in TABLE_METRICS}
        for row in rows if Path(row.get("predictions", "")).is_file()
    }
    if reference not in per_example:
        return {}
    settings = config.eval.significance
    comparisons = compare_systems(
        per_example, {metric: METRICS[metric].higher_is_better for metric in TABLE_METRICS},
        alpha=settings.alpha, resamples=settings.resamples, seed=settings.seed, baseline=reference,
    )
    return {"reference": reference, "alpha": settings.alpha, "comparisons": comparisons}


def results_table(rows: list[dict[str, Any]], significance: dict[str, Any] | None = None) -> str:
    """One Markdown table: a row per cell (reference rows first), metrics in percent, ▲/▼ where significant."""
    header = ["cell", "teacher", "vocabulary", "teacher SFT", "student SFT", "loss", *TABLE_METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 6 + "---:|" * len(TABLE_METRICS)]
    marks = _marks(significance or {})
    for row in rows:
        flags = [_yes_no(row.get("teacher_sft")), _yes_no(row.get("student_sft"))]
        cells = [row["cell"], row.get("teacher", "-"), row.get("vocabulary", "-"), *flags, row.get("loss", "-")]
        cells += [_percent(row["scores"][metric]) + marks.get((row["cell"], metric), "") for metric in TABLE_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    if significance:
        lines += ["", f"▲ / ▼: significantly better / worse than \"{significance['reference']}\" (paired Wilcoxon, "
                  f"Holm-corrected over the cells of each metric, α = {significance['alpha']})."]
    return "\n".join(lines)


def _marks(significance: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(cell, metric) -> ▲ or ▼ for the cells that differ significantly from the reference row."""
    marks = {}
    for metric, pairs in (significance.get("comparisons") or {}).items():
        for pair in pairs:
            if pair["significant"]:
                marks[(pair["a"], metric)] = " ▲" if pair["better"] == pair["a"] else " ▼"
    return marks


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _percent(score: dict[str, Any] | None) -> str:
    mean = None if score is None else score.get("mean")
    return "-" if mean is None else f"{100 * mean:.1f}"
