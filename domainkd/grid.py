"""``domainkd grid``: the KD experiment grid of the telecom-QA distillation paper, on your data.

Cells are {teacher SFT: no/yes} × {student SFT: no/yes} × {KD loss} × {teacher vocabulary}
(each teacher of ``grid.teachers``). Everything shared is done once under the grid's run
directory and reused by every cell:

- ``base/``: the data and teach stages (the training set every model trains on);
- ``student-<n>-layers/``: the student cut to its first layers, when ``grid.student_layers``;
- ``student_sft/``: the student fine-tuned on the training set (plain SFT), if a cell needs it;
- ``teacher_sft-<label>/``: each teacher fine-tuned on the training set, if a cell needs it;
- ``cells/<name>/``: one KD run (train + eval of the student) per cell; ``cell.json`` marks it
  finished, so a rerun skips it while its settings are unchanged (an interrupted cell resumes
  from its checkpoints and teacher store).

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
from pathlib import Path
from typing import Any

from domainkd.config import GridConfig, KDConfig, RunConfig, config_from_dict
from domainkd.data.build import prepare_data, teach
from domainkd.distill.vocab import check_vocabularies
from domainkd.errors import DomainKDError
from domainkd.evaluation import evaluate
from domainkd.io import write_json
from domainkd.models import load_tokenizer, save_first_layers
from domainkd.models.cache import resolve_model, sha256_of
from domainkd.paths import RunPaths
from domainkd.training import train

SHARED_STAGE_DIRS = ("data", "teach")  # copied from base/ into every run that trains
TABLE_METRICS = ("fact_accuracy", "token_f1", "rouge_l", "refusal_rate", "false_refusal_rate")


def run_grid(config: RunConfig) -> str:
    """Run every unfinished cell of ``config.grid``; write and return the results table."""
    grid = config.grid
    if grid is None:
        raise DomainKDError("the config has no `grid` section; add one (see examples/grid/cpu.yaml) or use `domainkd run`.")
    root = config.output_dir
    base = _variant(config, root / "base", train__kd=None)
    print("== grid: training set", flush=True)
    prepare_data(base)
    teach(base)
    student = _student(config, root)
    train_set = sha256_of(RunPaths(base.output_dir).train_set)
    rows = [_reference_row(config, root, "student (no training)", student)]
    student_sft = None
    if True in grid.student_sft:
        student_sft = _fine_tuned(config, root / "student_sft", student, config.train.model_dump(mode="json"))
        rows.append(_reference_row(config, root, "student SFT (no KD)", student_sft))
    teachers = {label: _teachers(config, root, label, reference) for label, reference in grid.teachers.items()}
    for (label, (teacher, teacher_sft, relation)), use_teacher_sft, use_student_sft, loss in itertools.product(
        teachers.items(), grid.teacher_sft, grid.student_sft, grid.losses
    ):
        kd_teacher = teacher_sft if use_teacher_sft else teacher
        cell_student = student_sft if use_student_sft else student
        effective = _effective_loss(loss, relation, grid)
        name = f"{label}-teacher{'_sft' if use_teacher_sft else ''}-student{'_sft' if use_student_sft else ''}-{loss}"
        cell = {
            "cell": name,
            "teacher": label,
            "vocabulary": relation,
            "teacher_sft": use_teacher_sft,
            "student_sft": use_student_sft,
            "loss": effective,
        }
        rows.append({**cell, **_cell(config, root / "cells" / name, cell_student, kd_teacher, effective, train_set)})
    table = results_table(rows)
    write_json(root / "grid.json", {"rows": rows})
    (root / "grid.md").write_text(table + "\n", encoding="utf-8")
    return table


def _variant(config: RunConfig, run_dir: Path, **changes: Any) -> RunConfig:
    """``config`` for another run directory with top-level sections changed (validated again)."""
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
    """Give a run directory the base run's data and training set, so its train stage can start."""
    base = root / "base"
    for name in SHARED_STAGE_DIRS:
        target = config.output_dir / name
        if not target.exists():
            shutil.copytree(base / name, target)


def _student(config: RunConfig, root: Path) -> str:
    """The grid's student reference: the configured one, or its first ``student_layers`` layers."""
    layers = config.grid.student_layers
    if layers is None:
        return config.student.model
    directory = root / f"student-{layers}-layers"
    save_first_layers(config.student.model, layers, directory, config.student.trust_remote_code)
    return str(directory.resolve())


def _fine_tuned(config: RunConfig, run_dir: Path, model: str, train_settings: dict[str, Any]) -> str:
    """Fine-tune ``model`` on the training set (plain SFT) once; return the trained model's directory."""
    variant = _variant(config, run_dir, student__model=model, train={**train_settings, "kd": None})
    paths = RunPaths(variant.output_dir)
    if not (paths.model / "config.json").is_file() or not paths.train_summary.is_file():
        print(f"== grid: fine-tuning {model} into {run_dir}", flush=True)
        _with_training_set(variant, config.output_dir)
        train(variant)
        gc.collect()
    return str(paths.model.resolve())


def _teachers(config: RunConfig, root: Path, label: str, reference: str) -> tuple[str, str | None, str]:
    """A teacher's reference, its fine-tuned copy (if any cell uses it) and its vocabulary relation to the student."""
    grid = config.grid
    student_tokenizer = load_tokenizer(config.student.model, trust_remote_code=config.student.trust_remote_code)
    teacher_tokenizer = load_tokenizer(reference, trust_remote_code=config.teacher.trust_remote_code)
    sizes = (len(student_tokenizer), len(teacher_tokenizer))
    relation = check_vocabularies(student_tokenizer, teacher_tokenizer, *sizes)
    relation = "same" if relation == "same-prefix" and sizes[0] == sizes[1] else relation
    fine_tuned = None
    if True in grid.teacher_sft:
        settings = {**config.train.model_dump(mode="json"), **grid.teacher_sft_train}
        resolve_model(reference)
        fine_tuned = _fine_tuned(config, root / f"teacher_sft-{label}", reference, settings)
    return reference, fine_tuned, relation


def _effective_loss(loss: str, relation: str, grid: GridConfig) -> str:
    return grid.vanilla_across_tokenizers if loss == "vanilla" and relation == "different" else loss


def _cell(config: RunConfig, run_dir: Path, student: str, teacher: str, loss: str, train_set: str) -> dict[str, Any]:
    """Train and evaluate one KD cell, or read its finished result."""
    kd = (config.train.kd or KDConfig()).model_dump(mode="json")
    kd.update(teacher=teacher, loss=loss)
    variant = _variant(config, run_dir, student__model=student, train__kd=kd, eval__systems=["student"])
    identity = {"config": variant.model_dump(mode="json"), "train_set_sha256": train_set}
    marker = run_dir / "cell.json"
    if marker.is_file():
        finished = json.loads(marker.read_text(encoding="utf-8"))
        if finished.get("identity") == identity:
            print(f"== grid: {run_dir.name} finished earlier; skipped", flush=True)
            return finished["result"]
    print(f"== grid: {run_dir.name}", flush=True)
    _with_training_set(variant, config.output_dir)
    summary = train(variant)
    gc.collect()
    scores = evaluate(variant)["systems"]["student"]["scores"]
    result = {"scores": scores, "train_seconds": summary["seconds"], "steps": summary["steps"]}
    write_json(marker, {"identity": identity, "result": result})
    return result


def _reference_row(config: RunConfig, root: Path, label: str, student: str) -> dict[str, Any]:
    """Scores of a student without KD (``base_student`` system on its reference), evaluated once."""
    slug = label.split(" (")[0].replace(" ", "_")
    variant = _variant(config, root / "reference" / slug, student__model=student, eval__systems=["base_student"])
    _with_training_set(variant, root)
    scores = evaluate(variant)["systems"]["base_student"]["scores"]
    return {"cell": label, "scores": scores}


def results_table(rows: list[dict[str, Any]]) -> str:
    """One Markdown table: a row per cell (reference rows first), metrics in percent."""
    header = ["cell", "teacher", "vocabulary", "teacher SFT", "student SFT", "loss", *TABLE_METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 6 + "---:|" * len(TABLE_METRICS)]
    for row in rows:
        flags = [_yes_no(row.get("teacher_sft")), _yes_no(row.get("student_sft"))]
        cells = [row["cell"], row.get("teacher", "-"), row.get("vocabulary", "-"), *flags, row.get("loss", "-")]
        cells += [_percent(row["scores"][metric]) for metric in TABLE_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _percent(score: dict[str, Any] | None) -> str:
    mean = None if score is None else score.get("mean")
    return "-" if mean is None else f"{100 * mean:.1f}"
