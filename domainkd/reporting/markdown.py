"""The ``report`` stage: every system on every metric, with significance, as Markdown, HTML (with plots) and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from domainkd.config import RunConfig
from domainkd.errors import DomainKDError
from domainkd.io import atomic_path, read_jsonl, write_json
from domainkd.sources import load_sources
from domainkd.paths import RunPaths


def written_by_note(metrics: dict) -> str:
    """Sentences naming the domain and saying the held-out questions are teacher-written, when they are."""
    domain = metrics.get("domain")
    note = f" Domain: {domain['documents']}, asked about by {domain['askers']}." if domain else ""
    if metrics.get("written_by") != "teacher":
        return note
    return note + (
        f" The questions are teacher-written ({metrics.get('questions_file', 'eval.jsonl in the run directory')}), "
        "not yours: review and edit them before trusting these scores."
    )


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


def _share_and_count(part: dict[str, Any] | None) -> str:
    """A ``{"mean", "n"}`` group as "62.5 (n=8)"; a dash when it is missing or empty."""
    return "–" if not part or part.get("mean") is None else f"{_percent(part['mean'])} (n={part['n']})"


def _decimal(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


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


def report(config: RunConfig, stage: str = "eval") -> str:
    """Write the report as Markdown, HTML and JSON; return the Markdown.

    ``stage`` is the run subfolder whose ``metrics.json`` is reported: ``eval`` writes
    ``report.md/.html/.json`` in the run directory, ``compare`` writes them in ``compare/``.
    """
    paths = RunPaths(config.output_dir)
    source = paths.stage_metrics(stage)
    if not source.is_file():
        raise DomainKDError(f"{source} is missing; run `domainkd {stage} CONFIG` first.")
    metrics = json.loads(source.read_text(encoding="utf-8"))
    out = paths.root if stage == "eval" else paths.root / stage
    title = f"domainkd {'report' if stage == 'eval' else stage}: {config.name}"
    intro = (
        f"Student `{config.student.model}`, teacher `{config.teacher.model}`; "
        f"{metrics['questions']} held-out questions ({metrics['in_scope']} in scope, "
        f"{metrics['questions'] - metrics['in_scope']} out of scope). Scores in percent."
    ) + written_by_note(metrics)
    parts = [f"# {title}", "", intro, "", results_table(metrics), ""]
    if metrics.get("comparisons"):
        parts += ["## Winner per metric", "", *winner_table(metrics), ""]
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
    parts += knowledge_table(metrics) + reading_table(metrics) + cost_table(metrics) + retrieval_table(metrics)
    parts += [
        "## Metrics",
        "",
        *[f"- **{name}**: {entry['description']}" for name, entry in metrics["metrics"].items()],
        "",
        "## Systems",
        "",
        *[f"- **{name}**: {entry['description']}" for name, entry in metrics["systems"].items()],
    ]
    parts += _stage_notes(paths, stage, out)
    text = "\n".join(parts) + "\n"
    _write_html(paths, stage, out / "report.html", title, f"Student {config.student.model}, teacher {config.teacher.model}.", metrics)
    write_json(out / "report.json", metrics)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return text


def winner_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown rows: per metric the leading system, whether its lead is significant, and over whom."""
    from domainkd.reporting.verdicts import CLEAR_WIN_NOTE, verdicts

    lines = ["| metric | leader | score | significantly ahead of | not separable from |", "|---|---|---:|---|---|"]
    for verdict in verdicts(metrics):
        arrow = "↑" if metrics["metrics"][verdict.metric].get("higher_is_better", True) else "↓"
        leader = f"**{verdict.leader}**" if verdict.clear else verdict.leader
        lines.append(
            f"| {verdict.metric} {arrow} | {leader} | {_percent(verdict.mean)} | {', '.join(verdict.beats) or '–'} | "
            f"{', '.join(verdict.ties) or '–'} |"
        )
    return lines + ["", CLEAR_WIN_NOTE]


def knowledge_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown section: fact accuracy on covered and not-covered questions, and train-question recall."""
    rows = {system: entry["knowledge"] for system, entry in metrics["systems"].items() if entry.get("knowledge")}
    if not rows:
        return []

    lines = [
        "## Knowledge or memorised wording",
        "",
        "| system | fact accuracy, covered | fact accuracy, not covered | train-question recall |",
        "|---|---:|---:|---:|",
    ]
    for system, part in rows.items():
        cells = [_share_and_count(part.get(group)) for group in ("covered", "not_covered", "train_recall")]
        lines.append(f"| {system} | {' | '.join(cells)} |")
    return lines + [
        "",
        "Covered: every key fact of the held-out question is stated by some training answer from its source "
        "document (closed-book or with excerpts). Train-question recall: training questions asked in their training "
        "wording, scored on the specifics their training answer adds; a closed-book student is asked those it was "
        "trained on closed-book, a student reading excerpts those it was trained on with excerpts.",
        "",
    ]


def reading_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown section: for systems reading excerpts, fact accuracy where the excerpts held the facts and elsewhere."""
    rows = {system: entry["reading"] for system, entry in metrics["systems"].items() if entry.get("reading")}
    if not rows:
        return []

    lines = [
        "## Retrieval or reading",
        "",
        "| system | fact accuracy, excerpts hold every key fact | fact accuracy, excerpts miss one | "
        "answers the check replaced: in scope (of them stating every key fact) | out of scope |",
        "|---|---:|---:|---:|---:|",
    ]
    for system, part in rows.items():
        check = part["answer_check"]
        cells = [_share_and_count(part[group]) for group in ("excerpts_hold_facts", "excerpts_miss_facts")]
        cells += [f"{check['in_scope']} ({check['in_scope_right']})", str(check["out_of_scope"])]
        lines.append(f"| {system} | {' | '.join(cells)} |")
    return lines + [
        "",
        "A fact is held when its text occurs in some excerpt read (a short one, such as a number, may occur in an "
        "excerpt about something else). A miss where the excerpts held every key fact is the reader's (train it to "
        "read, or use a larger model); a miss where they did not is the retriever's or the chunking's. The check "
        "(`retrieval.answer_check`) replaces an answer the excerpts do not back with the refusal sentence: in scope "
        "it costs those of the replaced answers that stated every key fact (in brackets), out of scope it stops "
        "invented answers.",
        "",
    ]


def cost_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown section: inference cost per answer of each system (omitted when none was measured)."""
    costs = {system: entry.get("cost") or {} for system, entry in metrics["systems"].items()}
    if not any(cost.get("seconds_per_answer") is not None for cost in costs.values()):
        return []

    def number(value: float | None, digits: int) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = ["## Inference cost", "", "| system | seconds / answer | prompt tokens | answer tokens |", "|---|---:|---:|---:|"]
    for system, cost in costs.items():
        lines.append(
            f"| {system} | {number(cost.get('seconds_per_answer'), 3)} | {number(cost.get('prompt_tokens'), 0)} | "
            f"{number(cost.get('answer_tokens'), 1)} |"
        )
    return lines + ["", "Seconds include retrieval; batched generation's time is shared out over the batch.", ""]


def retrieval_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown section: recall@k of the gold chunk per retrieval method (omitted when not measured)."""
    retrieval = metrics.get("retrieval") or {}
    if not retrieval:
        return []
    ks = sorted({int(k) for entry in retrieval.values() for k in entry["recall_at"]})
    header = "| method | questions | " + " | ".join(f"recall@{k}" for k in ks) + " | MRR | " + " | ".join(
        f"document recall@{k}" for k in ks) + " |"
    lines = ["## Retrieval", "", header, "|---|---:|" + "---:|" * (2 * len(ks) + 1)]
    for method, entry in retrieval.items():
        cells = [_percent(entry["recall_at"].get(str(k))) for k in ks]
        documents = [_percent(entry["document_recall_at"].get(str(k))) for k in ks]
        lines.append(f"| {method} | {entry['questions']} | " + " | ".join(cells) + f" | {_decimal(entry['mrr'])} | " + " | ".join(documents) + " |")
    return lines + [
        "", "Recall@k: the share of in-scope questions whose gold chunk (the source document's chunk holding the "
        "answer's facts) is among the first k retrieved; document recall@k counts any chunk of the source document.", "",
    ]


def _write_html(paths: RunPaths, stage: str, target: Path, title: str, intro: str, metrics: dict[str, Any]) -> None:
    from domainkd.evaluation.systems import sources_by_name
    from domainkd.reporting.html import write_html_report

    predictions = {
        system: read_jsonl(paths.predictions(system, stage))
        for system in metrics["systems"] if paths.predictions(system, stage).is_file()
    }
    sources = sources_by_name(load_sources(paths.chunks.parent).chunks) if paths.chunks.is_file() else {}
    write_html_report(target, title, intro, metrics, predictions, sources)


def _stage_notes(paths: RunPaths, stage: str, out: Path) -> list[str]:
    notes = ["", "## Run", ""]
    for label, path in (("data", paths.data_summary), ("teach", paths.teach_summary), ("train", paths.train_summary)):
        if path.is_file():
            summary = json.loads(path.read_text(encoding="utf-8"))
            summary.pop("log", None)
            notes.append(f"- **{label}**: `{json.dumps(summary)}`")
    notes += [
        "",
        f"Per-example answers and scores: `{paths.root / stage}/predictions-<system>.jsonl`; "
        f"charts and the per-example table: `{out / 'report.html'}`.",
    ]
    return notes
