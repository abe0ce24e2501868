"""The ``report`` stage: every system on every metric, with significance, as Markdown, HTML (with plots) and JSON."""

from __future__ import annotations

import json
from typing import Any

from domainkd.config import RunConfig
from domainkd.errors import DomainKDError
from domainkd.io import atomic_path, read_jsonl, write_json
from domainkd.sources import load_sources
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


def significance_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per metric: which pairs of systems differ significantly (Holm-adjusted Wilcoxon)."""
    lines = []
    for metric, pairs in (metrics.get("comparisons") or {}).items():
        significant = [pair for pair in pairs if pair.get("significant")]
        if not significant:
            lines.append(f"- **{metric}**: no significant difference between systems.")
            continue
        verdicts = []
        for pair in significant:
            direction = 1 if metrics["metrics"].get(metric, {}).get("higher_is_better", True) else -1
            sign = direction * (1 if pair["better"] == pair["a"] else -1)  # the winner's advantage, as a positive gap
            worse = pair["b"] if pair["better"] == pair["a"] else pair["a"]
            low, high = sorted((sign * 100 * pair["ci_low"], sign * 100 * pair["ci_high"]))
            verdicts.append(
                f"{pair['better']} beats {worse} by {abs(100 * pair['mean_difference']):.1f} points "
                f"(95% CI {low:.1f} to {high:.1f}, p_holm={pair['p_holm']:.3g})"
            )
        lines.append(f"- **{metric}**: " + "; ".join(verdicts) + ".")
    return lines


def report(config: RunConfig) -> str:
    """Write ``report.md``, ``report.html`` and ``report.json`` in the run directory; return the Markdown."""
    paths = RunPaths(config.output_dir)
    if not paths.metrics.is_file():
        raise DomainKDError(f"{paths.metrics} is missing; run `domainkd eval CONFIG` first.")
    metrics = json.loads(paths.metrics.read_text(encoding="utf-8"))
    intro = (
        f"Student `{config.student.model}`, teacher `{config.teacher.model}`; "
        f"{metrics['questions']} held-out questions ({metrics['in_scope']} in scope, "
        f"{metrics['questions'] - metrics['in_scope']} out of scope). Scores in percent."
    )
    parts = [f"# domainkd report: {config.name}", "", intro, "", results_table(metrics), ""]
    if metrics.get("comparisons"):
        significance = metrics.get("significance", {})
        parts += [
            "## Significant differences",
            "",
            f"Paired {significance.get('test', 'Wilcoxon signed-rank')} tests on the per-example scores, "
            f"{significance.get('correction', 'Holm')}-corrected over the pairs of each metric at "
            f"α={significance.get('alpha', 0.05)}; intervals are paired bootstrap.",
            "",
            *significance_lines(metrics),
            "",
        ]
    parts += [
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
    _write_html(paths, config, f"Student {config.student.model}, teacher {config.teacher.model}.", metrics)
    write_json(paths.report_json, metrics)
    with atomic_path(paths.report) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return text


def _write_html(paths: RunPaths, config: RunConfig, intro: str, metrics: dict[str, Any]) -> None:
    from domainkd.evaluation.systems import sources_by_name
    from domainkd.reporting.html import write_html_report

    predictions = {
        system: read_jsonl(paths.predictions(system)) for system in metrics["systems"] if paths.predictions(system).is_file()
    }
    sources = sources_by_name(load_sources(paths.chunks.parent).chunks) if paths.chunks.is_file() else {}
    write_html_report(paths.report_html, f"domainkd report: {config.name}", intro, metrics, predictions, sources)


def _stage_notes(paths: RunPaths) -> list[str]:
    notes = ["", "## Run", ""]
    for label, path in (("data", paths.data_summary), ("teach", paths.teach_summary), ("train", paths.train_summary)):
        if path.is_file():
            summary = json.loads(path.read_text(encoding="utf-8"))
            summary.pop("log", None)
            notes.append(f"- **{label}**: `{json.dumps(summary)}`")
    notes += [
        "",
        f"Per-example answers and scores: `{paths.root / 'eval'}/predictions-<system>.jsonl`; "
        f"charts and the per-example table: `{paths.report_html}`.",
    ]
    return notes
