"""A self-contained HTML report: tables, significance verdicts, inline SVG charts and every answer.

One file, no external resources (no CDN, no JavaScript): it opens offline and can be mailed
around. Every user-supplied string is HTML-escaped. Scores are fractions in [0, 1] shown in
percent; anything missing (older runs write fewer keys) is shown as "–" or its section skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from domainkd.io import atomic_path
from domainkd.reporting import plots
from domainkd.reporting.plots import Bar, Point
from domainkd.reporting.style import CSS

MAX_EXAMPLE_ROWS = 500
REFUSAL_METRICS = ("refusal_rate", "false_refusal_rate", "hallucination_rate")
DASH = "–"
GRID_CHART_INCHES = 6.0  # 576 CSS px: one column of the two-column chart grid, drawn at 1:1
NO_FAMILY = "other"  # the family of a metric whose metrics.json entry names none (older runs)
@dataclass(frozen=True)
class _View:
    """What every section reads: the metrics.json dict plus the orderings derived from it once."""

    metrics: dict[str, Any]
    metric_names: list[str]
    """Metrics in metrics.json order (the first is the headline)."""
    families: dict[str, list[str]]
    """Family → its metrics, families in order of first appearance."""
    systems: list[str]
    colors: dict[str, str]


def write_html_report(
    path: Path,
    title: str,
    intro: str,
    metrics: dict,
    predictions: dict[str, list[dict]],
    sources: dict[str, str],
) -> None:
    """Write the report as one self-contained HTML file, atomically.

    Args:
        path: Where to write (e.g. ``runs/NAME/report.html``).
        title: Page title and heading.
        intro: One paragraph of plain text shown under the title.
        metrics: The evaluation's ``metrics.json`` (any key may be missing).
        predictions: System → per-example rows (``id``, ``question``, ``reference``, ``scope``,
            ``category``, ``source``, ``prediction``, ``scores``), aligned across systems by ``id``.
        sources: A row's ``source`` → the source text, shown collapsed under the question.
    """
    text = render_html_report(title, intro, metrics, predictions, sources)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def render_html_report(
    title: str, intro: str, metrics: dict, predictions: dict[str, list[dict]], sources: dict[str, str]
) -> str:
    """The report's HTML text (see :func:`write_html_report` for the arguments)."""
    view = _view(metrics or {}, predictions or {})
    sections = [
        ("summary", "Summary", _summary(view)),
        ("winners", "Winner per metric", _winners(view)),
        ("significance", "Significance", _significance(view)),
        ("charts", "Scores by metric family", _family_charts(view)),
        ("categories", "By category", _categories(view)),
        ("refusals", "Refusal behaviour", _refusals(view)),
        ("cost", "Cost vs quality", _cost(view)),
        ("retrieval", "Retrieval", _retrieval(view)),
        ("examples", "Per-example answers", _examples(view, predictions or {}, sources or {})),
    ]
    sections = [(anchor, heading, body) for anchor, heading, body in sections if body]
    nav = "".join(f'<a href="#{anchor}">{heading}</a>' for anchor, heading, _ in sections)
    body = "\n".join(
        f'<section id="{anchor}">\n<h2>{heading}</h2>\n{text}\n</section>' for anchor, heading, text in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header>\n<h1>{escape(title)}</h1>\n<p>{escape(intro)}</p>\n{_counts(metrics or {}, predictions or {})}\n"
        f"<nav>{nav}</nav>\n</header>\n{body}\n</body>\n</html>\n"
    )


# ---- shared helpers -------------------------------------------------------------------------


def _view(metrics: dict, predictions: dict[str, list[dict]]) -> _View:
    systems_block = metrics.get("systems") or {}
    names = list(metrics.get("metrics") or {})
    for entry in systems_block.values():
        names += [name for name in (entry or {}).get("scores") or {} if name not in names]
    families: dict[str, list[str]] = {}
    for name in names:
        families.setdefault(_meta(metrics, name).get("family") or NO_FAMILY, []).append(name)
    systems = list(systems_block) + [system for system in predictions if system not in systems_block]
    return _View(metrics, names, families, systems, plots.system_colors(systems))


def _meta(metrics: dict, metric: str) -> dict:
    return (metrics.get("metrics") or {}).get(metric) or {}


def _description(view: _View, metric: str) -> str:
    return str(_meta(view.metrics, metric).get("description") or "")


def _score(view: _View, system: str, metric: str) -> dict:
    entry = (view.metrics.get("systems") or {}).get(system) or {}
    return (entry.get("scores") or {}).get(metric) or {}


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f}"


def _decimal(value: float | None) -> str:
    return DASH if value is None else f"{value:.3f}"


def _points(value: float | None) -> str:
    """Signed percentage points with a true minus sign (a hyphen next to the en dash of a range misreads)."""
    return DASH if value is None else f"{100 * value:+.1f}".replace("-", "−")


def _ci(low: float | None, high: float | None, fmt=_pct) -> str:
    return "" if low is None or high is None else f"({fmt(low)}–{fmt(high)})"


def _p(value: float | None) -> str:
    if value is None:
        return DASH
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _p_text(name: str, value: float | None) -> str:
    """``p_holm=0.003``, or ``p_holm<0.001`` for tiny values."""
    p = _p(value)
    return f"{name}{p}" if p.startswith("<") else f"{name}={p}"


def _arrow(view: _View, metric: str) -> str:
    direction = _meta(view.metrics, metric).get("higher_is_better")
    return "" if direction is None else (" ↑" if direction else " ↓")


def _best(values: dict[str, float | None], higher_is_better: bool | None) -> set[str]:
    """Keys holding the best value (all of them on a tie); none when the direction is unknown."""
    known = {key: value for key, value in values.items() if value is not None}
    if higher_is_better is None or not known:
        return set()
    target = max(known.values()) if higher_is_better else min(known.values())
    return {key for key, value in known.items() if abs(value - target) < 1e-12}


def _table(
    header: list[str], rows: list[list[str]], css_class: str = "", row_classes: list[str] | None = None
) -> str:
    """An HTML table from already-escaped cells (a cell starting with ``<td`` or ``<th`` is used as is)."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    lines = []
    for index, row in enumerate(rows):
        cells = "".join(cell if cell.startswith(("<td", "<th")) else f"<td>{cell}</td>" for cell in row)
        row_class = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        lines.append(f"<tr{row_class}>{cells}</tr>")
    table_class = f' class="{css_class}"' if css_class else ""
    return _scroll(f'<table{table_class}><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>')


def _scroll(table: str) -> str:
    """Wrap a table so a wide one scrolls sideways instead of widening the page."""
    return f'<div class="scroll">{table}</div>'


def _chart(svg: str) -> str:
    return f'<div class="chart">{svg}</div>'


def _counts(metrics: dict, predictions: dict[str, list[dict]]) -> str:
    from domainkd.reporting.markdown import written_by_note

    questions, in_scope = metrics.get("questions"), metrics.get("in_scope")
    if questions is None and predictions:
        rows = _merge_examples(predictions)
        questions, in_scope = len(rows), sum(first.get("scope", "in") == "in" for first, _ in rows)
    if questions is None:
        return ""
    out_scope = DASH if in_scope is None else questions - in_scope
    return (
        f'<p class="counts"><strong>{questions}</strong> held-out questions: '
        f"<strong>{DASH if in_scope is None else in_scope}</strong> in scope, "
        f"<strong>{out_scope}</strong> out of scope. "
        "Scores are in percent; brackets give the 95% confidence interval."
        f"{escape(written_by_note(metrics))}</p>"
    )


# ---- 2. summary -----------------------------------------------------------------------------


def _summary(view: _View) -> str:
    if not view.systems or not view.metric_names:
        return '<p class="note">No scores in this run.</p>'
    ordered = [metric for members in view.families.values() for metric in members]
    best = {metric: _best_systems(view, metric) for metric in ordered}
    body = "".join(
        f"<tr><th>{escape(system)}</th>"
        + "".join(_score_cell(_score(view, system, metric), system in best[metric]) for metric in ordered)
        + "</tr>"
        for system in view.systems
    )
    head = _summary_head(view, ordered)
    table = _scroll(f'<table class="summary"><thead>{head}</thead><tbody>{body}</tbody></table>')
    note = '<p class="note">↑ higher is better, ↓ lower is better; the best value per metric is in bold.</p>'
    return table + note + _glossary(view)


def _summary_head(view: _View, ordered: list[str]) -> str:
    """Header rows: families spanning their metrics (skipped for older runs without families), then metrics."""
    metric_cells = "".join(
        f'<th title="{escape(_description(view, metric))}">{_breakable(metric)}{_arrow(view, metric)}</th>'
        for metric in ordered
    )
    if list(view.families) == [NO_FAMILY]:
        return f"<tr><th>system</th>{metric_cells}</tr>"
    family_cells = "".join(
        f'<th colspan="{len(members)}">{escape(family)}</th>' for family, members in view.families.items()
    )
    return f'<tr><th rowspan="2">system</th>{family_cells}</tr><tr>{metric_cells}</tr>'


def _breakable(name: str) -> str:
    """Escaped ``name`` that may wrap after its underscores (long metric names in narrow columns)."""
    return escape(name).replace("_", "_<wbr>")


def _best_systems(view: _View, metric: str) -> set[str]:
    means = {system: _score(view, system, metric).get("mean") for system in view.systems}
    return _best(means, _meta(view.metrics, metric).get("higher_is_better"))


def _score_cell(score: dict, best: bool) -> str:
    mean = _pct(score.get("mean"))
    mean = f"<strong>{mean}</strong>" if best else mean
    ci = _ci(score.get("ci_low"), score.get("ci_high"))
    ci = f' <small class="ci">{ci}</small>' if ci else ""
    failures = score.get("failures") or 0
    failed = f' <span class="fail">{failures} failed</span>' if failures > 0 else ""
    title = f' title="n={score["n"]}"' if score.get("n") is not None else ""
    return f'<td class="num"{title}>{mean}{ci}{failed}</td>'


def _glossary(view: _View) -> str:
    systems_block = view.metrics.get("systems") or {}
    systems = [(name, (systems_block.get(name) or {}).get("description")) for name in view.systems]
    metrics = [(name, _description(view, name)) for name in view.metric_names]
    items = "".join(
        f"<dt>{escape(name)}</dt><dd>{escape(str(text))}</dd>" for name, text in systems + metrics if text
    )
    if not items:
        return ""
    return f'<details><summary>What the systems and metrics are</summary><dl class="legend">{items}</dl></details>'


# ---- 3. significance ------------------------------------------------------------------------


def _significance(view: _View) -> str:
    comparisons = view.metrics.get("comparisons") or {}
    if not comparisons:
        return '<p class="note">No paired significance tests in this run.</p>'
    settings = view.metrics.get("significance") or {}
    ordered = [name for name in view.metric_names if name in comparisons]
    ordered += [name for name in comparisons if name not in view.metric_names]
    blocks = []
    for metric in ordered:
        rows = comparisons[metric] or []
        verdict, significant = _verdict(view, metric, rows)
        blocks.append(
            f'<div class="sig-block"><h3>{escape(metric)}{_arrow(view, metric)}</h3>\n'
            f'<p class="verdict{" sig" if significant else ""}">{escape(verdict)}</p>\n'
            f"{_comparison_table(view, metric, rows)}</div>"
        )
    return _significance_note(settings) + '\n<div class="sig-blocks">' + "\n".join(blocks) + "</div>"


def _significance_note(settings: dict) -> str:
    test = settings.get("test") or "paired test"
    correction = settings.get("correction") or "Holm"
    alpha = settings.get("alpha", 0.05)
    resamples = settings.get("resamples")
    boot = f" from {resamples} bootstrap resamples" if resamples else ""
    return (
        f'<p class="note">{escape(str(test))} on the questions both systems answered, '
        f"p-values {escape(str(correction))}-corrected across each metric's pairs; significant at "
        f"α={escape(str(alpha))} (highlighted). Differences are a − b in percentage points with their "
        f"confidence interval{escape(boot)}.</p>"
    )


def _winner(view: _View, metric: str, row: dict) -> str | None:
    """The better system of a pair: the ``better`` key, else the sign of a − b and the metric's direction."""
    if row.get("better"):
        return row["better"]
    difference = row.get("mean_difference")
    direction = _meta(view.metrics, metric).get("higher_is_better")
    if difference is None or direction is None or difference == 0:
        return None
    return row.get("a") if (difference > 0) == direction else row.get("b")


def _verdict(view: _View, metric: str, rows: list[dict]) -> tuple[str, bool]:
    """One plain-English line for a metric, and whether any pair differs significantly.

    Wins are grouped by winner so five systems still read as a line or two:
    ``teacher beats base_student and student on rouge_l (all p_holm<0.001)``.
    """
    wins: dict[str, list[tuple[str, float | None]]] = {}
    unclear = []
    for row in rows:
        if not row.get("significant"):
            continue
        a, b = str(row.get("a")), str(row.get("b"))
        winner = _winner(view, metric, row)
        if winner is None:
            unclear.append(f"{a} and {b} differ on {metric} ({_p_text('p_holm', row.get('p_holm'))})")
        else:
            wins.setdefault(winner, []).append((b if winner == a else a, row.get("p_holm")))
    sentences = [_win_sentence(winner, losers, metric) for winner, losers in wins.items()] + unclear
    return ("; ".join(sentences), True) if sentences else (f"{metric}: no significant difference", False)


def _win_sentence(winner: str, losers: list[tuple[str, float | None]], metric: str) -> str:
    names = [name for name, _ in losers]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    if len(losers) == 1:
        return f"{winner} beats {listed} on {metric} ({_p_text('p_holm', losers[0][1])})"
    known = [p for _, p in losers if p is not None]
    worst = max(known) if len(known) == len(losers) else None
    if worst is None:
        return f"{winner} beats {listed} on {metric}"
    return f"{winner} beats {listed} on {metric} (all p_holm{'<0.001' if worst < 0.001 else f'≤{worst:.3f}'})"


def _comparison_table(view: _View, metric: str, rows: list[dict]) -> str:
    header = ["a", "b", "n", "a − b (points)", "p (Holm)", "better"]
    cells = []
    for row in rows:
        ci = _ci(row.get("ci_low"), row.get("ci_high"), _points)
        winner = _winner(view, metric, row)
        cells.append([
            escape(str(row.get("a", DASH))),
            escape(str(row.get("b", DASH))),
            f'<td class="num">{escape(str(row.get("n", DASH)))}</td>',
            f'<td class="num">{_points(row.get("mean_difference"))} <small class="ci">{ci}</small></td>',
            f'<td class="num" title="unadjusted p={_p(row.get("p_value"))}">{_p(row.get("p_holm"))}</td>',
            escape(winner) if winner and row.get("significant") else DASH,
        ])
    return _table(header, cells, row_classes=["sig" if row.get("significant") else "" for row in rows])


# ---- 4. family charts -----------------------------------------------------------------------


def _family_charts(view: _View) -> str:
    charts = []
    for family, members in view.families.items():
        series = {system: [_bar(_score(view, system, metric)) for metric in members] for system in view.systems}
        if any(bar.value is not None for bars in series.values() for bar in bars):
            labels = [f"{metric}{_arrow(view, metric)}" for metric in members]
            title = "Scores" if list(view.families) == [NO_FAMILY] else f"{family} metrics"
            width = GRID_CHART_INCHES if len(members) * len(view.systems) <= 18 else None  # else scaled to fit
            charts.append(_chart(plots.grouped_bars(title, labels, series, view.colors, width)))
    if not charts:
        return ""
    scores = [_score(view, system, metric) for system in view.systems for metric in view.metric_names]
    has_ci = any(score.get("ci_low") is not None for score in scores)
    whiskers = "; whiskers the 95% confidence interval" if has_ci else ""
    note = f'<p class="note">Bars are means in percent{whiskers}.</p>'
    return note + '<div class="chart-grid">' + "".join(charts) + "</div>"


def _bar(score: dict) -> Bar:
    return Bar(score.get("mean"), score.get("ci_low"), score.get("ci_high"))


# ---- 5. categories --------------------------------------------------------------------------


def _categories(view: _View) -> str:
    by_metric = view.metrics.get("categories") or {}
    chosen = [next((metric for metric in members if by_metric.get(metric)), None) for members in view.families.values()]
    # ^ the first metric of each family that has a breakdown
    parts = [_category_block(view, metric, by_metric[metric]) for metric in chosen if metric]
    if not parts:
        return ""
    note = '<p class="note">The first metric of each family, split by question category (n = questions counted).</p>'
    return note + "\n".join(parts)


def _category_block(view: _View, metric: str, by_system: dict[str, dict]) -> str:
    categories = sorted({category for cells in by_system.values() for category in (cells or {})})
    systems = [system for system in view.systems if system in by_system]
    systems += [system for system in by_system if system not in view.systems]
    direction = _meta(view.metrics, metric).get("higher_is_better")
    rows = []
    for category in categories:
        cells = {system: ((by_system.get(system) or {}).get(category) or {}) for system in systems}
        best = _best({system: cell.get("mean") for system, cell in cells.items()}, direction)
        rows.append([escape(category)] + [_category_cell(cells[system], system in best) for system in systems])
    table = _table(["category"] + [escape(system) for system in systems], rows)
    series = {
        system: [Bar(((by_system.get(system) or {}).get(category) or {}).get("mean")) for category in categories]
        for system in systems
    }
    colors = {system: view.colors.get(system, plots.PALETTE[-1]) for system in systems}
    chart = _chart(plots.grouped_bars(f"{metric}{_arrow(view, metric)} by category", categories, series, colors))
    return f"<h3>{escape(metric)}{_arrow(view, metric)}</h3>\n{table}\n{chart}"


def _category_cell(cell: dict, best: bool) -> str:
    mean = _pct(cell.get("mean"))
    mean = f"<strong>{mean}</strong>" if best else mean
    n = f' <small class="ci">n={cell["n"]}</small>' if cell.get("n") is not None else ""
    return f'<td class="num">{mean}{n}</td>'


# ---- 6. refusals ----------------------------------------------------------------------------


def _refusals(view: _View) -> str:
    present = [metric for metric in REFUSAL_METRICS if metric in view.metric_names]
    if not present:
        return ""
    header = ["system"] + [f"{escape(metric)}{_arrow(view, metric)}" for metric in present]
    best = {metric: _best_systems(view, metric) for metric in present}
    rows = [
        [f"<th>{escape(system)}</th>"] + [_score_cell(_score(view, system, m), system in best[m]) for m in present]
        for system in view.systems
    ]
    explain = "".join(
        f"<li><strong>{escape(metric)}</strong>{_arrow(view, metric)}: {escape(_description(view, metric))}</li>"
        for metric in present
    )
    series = {system: [_bar(_score(view, system, metric)) for metric in present] for system in view.systems}
    labels = [f"{metric}{_arrow(view, metric)}" for metric in present]
    chart = _chart(plots.grouped_bars("Refusal behaviour", labels, series, view.colors))
    return f'<ul class="note">{explain}</ul>\n<div class="charts">{_table(header, rows)}\n{chart}</div>'


# ---- 7. cost --------------------------------------------------------------------------------


def _cost(view: _View) -> str:
    systems_block = view.metrics.get("systems") or {}
    costs = {system: (systems_block.get(system) or {}).get("cost") or {} for system in view.systems}
    if not any(cost.get("seconds_per_answer") is not None for cost in costs.values()) or not view.metric_names:
        return ""
    headline = view.metric_names[0]
    rows, by_seconds, by_tokens = [], [], []
    for system, cost in costs.items():
        seconds, mean = cost.get("seconds_per_answer"), _score(view, system, headline).get("mean")
        prompt, answer = cost.get("prompt_tokens"), cost.get("answer_tokens")
        rows.append([
            f"<th>{escape(system)}</th>",
            f'<td class="num">{DASH if seconds is None else f"{seconds:.2f}"}</td>',
            f'<td class="num">{DASH if prompt is None else f"{prompt:.0f}"}</td>',
            f'<td class="num">{DASH if answer is None else f"{answer:.0f}"}</td>',
            f'<td class="num">{_pct(mean)}</td>',
        ])
        if mean is not None and seconds is not None:
            by_seconds.append(Point(system, seconds, 100 * mean, view.colors[system]))
        if mean is not None and prompt is not None and answer is not None:
            by_tokens.append(Point(system, prompt + answer, 100 * mean, view.colors[system]))
    header = ["system", "seconds / answer", "prompt tokens", "answer tokens", f"{escape(headline)}{_arrow(view, headline)}"]
    label = f"{headline}{_arrow(view, headline)} (percent)"
    charts = [
        _chart(plots.scatter(f"{headline} vs {x_label}", points, x_label, label))
        for points, x_label in ((by_seconds, "seconds per answer"), (by_tokens, "tokens per answer (prompt + answer)"))
        if points
    ]
    return '<div class="charts">' + "\n".join(charts) + f"\n{_table(header, rows)}</div>"


def _winners(view: _View) -> str:
    from domainkd.reporting.verdicts import CLEAR_WIN_NOTE, verdicts

    if not view.metrics.get("comparisons"):
        return ""
    rows = []
    for verdict in verdicts(view.metrics):
        rows.append([
            f"<th>{escape(verdict.metric)}{_arrow(view, verdict.metric)}</th>",
            f"<strong>{escape(verdict.leader)}</strong>" if verdict.clear else escape(verdict.leader),
            f'<td class="num">{_pct(verdict.mean)}</td>',
            escape(", ".join(verdict.beats)) or DASH,
            escape(", ".join(verdict.ties)) or DASH,
        ])
    note = f'<p class="note">{escape(CLEAR_WIN_NOTE)}</p>'
    return note + _table(["metric", "leader", "score", "significantly ahead of", "not separable from"], rows)


def _retrieval(view: _View) -> str:
    retrieval = view.metrics.get("retrieval") or {}
    if not retrieval:
        return ""
    ks = sorted({int(k) for entry in retrieval.values() for k in entry.get("recall_at", {})})
    rows = [
        [f"<th>{escape(method)}</th>", f'<td class="num">{entry.get("questions", DASH)}</td>']
        + [f'<td class="num">{_pct(entry["recall_at"].get(str(k)))}</td>' for k in ks]
        + [f'<td class="num">{_decimal(entry.get("mrr"))}</td>']
        for method, entry in retrieval.items()
    ]
    note = (
        '<p class="note">Share of in-scope questions whose gold chunk (the source chunk holding the answer\'s facts) '
        "is among the first k retrieved, and the mean reciprocal rank of the first gold chunk.</p>"
    )
    return note + _table(["method", "questions", *[f"recall@{k}" for k in ks], "MRR"], rows)


# ---- 8. examples ----------------------------------------------------------------------------


def _merge_examples(predictions: dict[str, list[dict]]) -> list[tuple[dict, dict[str, dict]]]:
    """Rows aligned by ``id``: (the first row seen for the id, system → that system's row)."""
    merged: dict[Any, tuple[dict, dict[str, dict]]] = {}
    for system, rows in predictions.items():
        for row in rows or []:
            first, by_system = merged.setdefault(row.get("id"), (row, {}))
            by_system[system] = row
    return list(merged.values())


def _examples(view: _View, predictions: dict[str, list[dict]], sources: dict[str, str]) -> str:
    merged = _merge_examples(predictions)
    if not merged:
        return ""
    systems = [system for system in view.systems if system in predictions]
    headline = view.metric_names[0] if view.metric_names else None
    header = ["id", "category", "scope", "question", "reference"] + [escape(system) for system in systems]
    rows = [
        _example_row(view, first, by_system, systems, headline, sources)
        for first, by_system in merged[:MAX_EXAMPLE_ROWS]
    ]
    note = f'<p class="note">{len(merged)} questions. '
    if headline:
        note += f"Badges give each answer's {escape(headline)} score (percent). "
    omitted = len(merged) - MAX_EXAMPLE_ROWS
    if omitted > 0:
        note += f"Showing the first {MAX_EXAMPLE_ROWS}; {omitted} omitted."
    return note + "</p>\n" + _table(header, rows, css_class="examples")


def _example_row(
    view: _View,
    first: dict,
    by_system: dict[str, dict],
    systems: list[str],
    headline: str | None,
    sources: dict[str, str],
) -> list[str]:
    """Cells of one question's row: its fields, the source collapsed under it, then each system's answer."""
    question = f'<div class="text">{escape(str(first.get("question") or DASH))}</div>'
    source_name = first.get("source")
    if source_name is not None and sources.get(source_name):
        question += (
            f"<details><summary>source: {escape(str(source_name))}</summary>"
            f"<pre>{escape(sources[source_name])}</pre></details>"
        )
    cells = [
        escape(str(first.get("id", DASH))),
        escape(str(first.get("category") or DASH)),
        escape(str(first.get("scope") or DASH)),
        question,
        f'<div class="text">{escape(str(first.get("reference") or DASH))}</div>',
    ]
    return cells + [_answer_cell(view, by_system.get(system), headline) for system in systems]


def _answer_cell(view: _View, row: dict | None, headline: str | None) -> str:
    if row is None:
        return DASH
    answer = f'<div class="text">{escape(str(row.get("prediction") or ""))}</div>'
    if headline is None:
        return answer
    score = (row.get("scores") or {}).get(headline)
    return answer + _badge(score, _meta(view.metrics, headline).get("higher_is_better"))


def _badge(score: float | None, higher_is_better: bool | None) -> str:
    if score is None:
        return f'<span class="badge none">{DASH}</span>'
    if higher_is_better is None:
        return f'<span class="badge mid">{_pct(score)}</span>'
    goodness = score if higher_is_better else 1 - score
    level = "good" if goodness >= 2 / 3 else "bad" if goodness < 1 / 3 else "mid"
    return f'<span class="badge {level}">{_pct(score)}</span>'
