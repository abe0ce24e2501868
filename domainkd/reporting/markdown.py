"""The ``report`` stage: one table of every system on every metric, in the terminal and as Markdown."""

from __future__ import annotations

import json
from typing import Any

from domainkd.config import RunConfig
from domainkd.errors import DomainKDError
from domainkd.io import atomic_path
from domainkd.paths import RunPaths


def results_table(metrics: dict[str, Any]) -> str:
    """A Markdown table: systems as rows, metrics as columns (percent, with direction arrows)."""
    names = list(metrics["metrics"])
    header = "| system | " + " | ".join(f"{name} {'↑' if metrics['metrics'][name]['higher_is_better'] else '↓'}" for name in names) + " |"
    rule = "|---|" + "---:|" * len(names)
    lines = [header, rule]
    for system, entry in metrics["systems"].items():
        cells = [_percent(entry["scores"][name]["mean"]) for name in names]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def report(config: RunConfig) -> str:
    """Write ``report.md`` in the run directory and return its text."""
    paths = RunPaths(config.output_dir)
    if not paths.metrics.is_file():
        raise DomainKDError(f"{paths.metrics} is missing; run `domainkd eval CONFIG` first.")
    metrics = json.loads(paths.metrics.read_text(encoding="utf-8"))
    parts = [
        f"# domainkd report: {config.name}",
        "",
        f"Student `{config.student.model}`, teacher `{config.teacher.model}`; "
        f"{metrics['questions']} held-out questions ({metrics['in_scope']} in scope, "
        f"{metrics['questions'] - metrics['in_scope']} out of scope). Scores in percent.",
        "",
        results_table(metrics),
        "",
        "## Metrics",
        "",
        *[f"- **{name}**: {entry['description']}" for name, entry in metrics["metrics"].items()],
        "",
        "## Systems",
        "",
        *[f"- **{name}**: {entry['description']}" for name, entry in metrics["systems"].items()],
    ]
    parts += _stage_notes(paths)
    text = "\n".join(parts) + "\n"
    with atomic_path(paths.report) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return text


def _stage_notes(paths: RunPaths) -> list[str]:
    notes = ["", "## Run", ""]
    for label, path in (("data", paths.data_summary), ("teach", paths.teach_summary), ("train", paths.train_summary)):
        if path.is_file():
            summary = json.loads(path.read_text(encoding="utf-8"))
            summary.pop("log", None)
            notes.append(f"- **{label}**: `{json.dumps(summary)}`")
    notes += ["", f"Per-example answers: `{paths.root / 'eval'}/predictions-<system>.jsonl`."]
    return notes
