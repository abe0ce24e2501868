"""The HTML report: right numbers, one chart per family, verdicts, escaping, no external resources."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from domainkd.reporting.html import MAX_EXAMPLE_ROWS, write_html_report

SYSTEMS = ("base_student", "student", "teacher")
SCRIPT = "<script>alert(1)</script>"
METRIC_FAMILIES = {
    "rouge_l": "n-gram", "token_f1": "n-gram", "refusal_rate": "behaviour", "false_refusal_rate": "behaviour",
}  # fmt: skip
MEANS = {
    "base_student": {"rouge_l": 0.2051, "token_f1": 0.25, "refusal_rate": 0.1, "false_refusal_rate": 0.05},
    "student": {"rouge_l": 0.4123, "token_f1": 0.45, "refusal_rate": 0.8, "false_refusal_rate": 0.125},
    "teacher": {"rouge_l": 0.3999, "token_f1": 0.5, "refusal_rate": 0.9, "false_refusal_rate": 0.02},
}


def full_metrics() -> dict:
    """A metrics.json with every key: 3 systems, 2 families, categories, comparisons, cost."""
    return {
        "questions": 4,
        "in_scope": 3,
        "metrics": {
            name: {"higher_is_better": name != "false_refusal_rate", "description": f"about {name}", "family": family}
            for name, family in METRIC_FAMILIES.items()
        },
        "systems": {
            system: {
                "description": f"the {system}",
                "scores": {
                    name: {"mean": mean, "n": 3, "ci_low": mean - 0.032, "ci_high": mean + 0.0327, "failures": 0}
                    for name, mean in MEANS[system].items()
                },
                "cost": {"seconds_per_answer": 0.5 + index, "answer_tokens": 40.0 + 10 * index},
            }
            for index, system in enumerate(SYSTEMS)
        },
        "categories": {
            "rouge_l": {
                system: {"policy": {"mean": 0.3, "n": 2}, "procedure": {"mean": 0.6, "n": 1}} for system in SYSTEMS
            },
            "refusal_rate": {system: {"unrelated": {"mean": 0.5, "n": 1}} for system in SYSTEMS},
        },
        "comparisons": {
            "rouge_l": [
                _pair("student", "base_student", 0.2072, 0.0031, True, "student"),
                _pair("teacher", "student", -0.0124, 0.41, False, None),
            ],
            "token_f1": [_pair("student", "base_student", 0.2, 0.2, False, None)],
        },
        "significance": {
            "alpha": 0.05, "confidence": 0.95, "resamples": 1000, "test": "Wilcoxon signed-rank", "correction": "Holm",
        },  # fmt: skip
    }


def _pair(a: str, b: str, difference: float, p_holm: float, significant: bool, better: str | None) -> dict:
    return {
        "a": a, "b": b, "n": 3, "mean_difference": difference,
        "ci_low": difference - 0.05, "ci_high": difference + 0.05,
        "p_value": p_holm / 2, "p_holm": p_holm, "significant": significant, "better": better,
    }  # fmt: skip


def predictions(count: int = 4) -> dict[str, list[dict]]:
    """``count`` aligned rows per system; the student's first answer tries to inject a script."""
    rows = {}
    for system in SYSTEMS:
        rows[system] = [
            {
                "id": f"q{index}", "question": f"Question {index}?", "reference": f"Reference {index}.",
                "scope": "in" if index % 4 else "out", "category": "policy", "source": "handbook.md",
                "prediction": SCRIPT if system == "student" and index == 0 else f"{system} says {index}",
                "scores": {"rouge_l": 0.75 if index % 2 else None},
            }  # fmt: skip
            for index in range(count)
        ]
    return rows


def write(tmp_path: Path, metrics: dict, rows: dict | None = None, sources: dict | None = None) -> str:
    path = tmp_path / "report.html"
    write_html_report(path, "Handbook <distil>", "An intro & more.", metrics, rows or {}, sources or {})
    return path.read_text(encoding="utf-8")


def section(html: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert match, f"section {anchor} missing"
    return match.group(1)


VOID_TAGS = {"meta", "br", "wbr", "hr", "img", "link", "input"}


class _TableText(HTMLParser):
    """Collects the text of every table cell, row by row, and checks the tags nest."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.stack: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in VOID_TAGS:
            return
        self.stack.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in {"td", "th"}:
            self._cell = []

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        pass  # <path ... /> in the SVG: opens and closes nothing

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag in {"td", "th"} and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(fragment: str) -> list[list[str]]:
    parser = _TableText()
    parser.feed(fragment)
    parser.close()
    assert not parser.stack, f"unclosed tags {parser.stack}"
    return parser.rows


def test_summary_table_formats_percent_ci_best_and_failures(tmp_path):
    metrics = full_metrics()
    metrics["systems"]["teacher"]["scores"]["token_f1"]["failures"] = 3
    html = write(tmp_path, metrics, predictions())
    summary = section(html, "summary")
    rows = {row[0]: row[1:] for row in table_rows(summary) if row and row[0] in SYSTEMS}
    # Columns: rouge_l, token_f1 (n-gram), refusal_rate, false_refusal_rate (behaviour).
    assert rows["student"][0] == "41.2 (38.0–44.5)"
    assert rows["base_student"][0] == "20.5 (17.3–23.8)"
    assert rows["teacher"][1] == "50.0 (46.8–53.3) 3 failed"
    assert "<strong>41.2</strong>" in summary  # best rouge_l (higher is better)
    assert "<strong>2.0</strong>" in summary  # best false_refusal_rate (lower is better)
    assert "<strong>20.5</strong>" not in summary
    assert table_rows(summary)[1] == ["rouge_l ↑", "token_f1 ↑", "refusal_rate ↑", "false_refusal_rate ↓"]


def test_one_chart_per_family_and_verdicts(tmp_path):
    html = write(tmp_path, full_metrics(), predictions())
    assert section(html, "charts").count("<svg") == 2
    assert "n-gram metrics" in section(html, "charts") and "behaviour metrics" in section(html, "charts")
    significance = section(html, "significance")
    assert "student beats base_student on rouge_l (p_holm=0.003)" in significance
    assert "token_f1: no significant difference" in significance
    assert significance.count('<tr class="sig">') == 1
    assert "+20.7" in significance and "(+15.7–+25.7)" in significance
    assert "−1.2 <small class=\"ci\">(−6.2–+3.8)</small>" in significance  # true minus signs
    # Chart ids are unique across the page (matplotlib restarts patch_1 in every figure).
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_categories_refusals_cost_and_examples(tmp_path):
    html = write(tmp_path, full_metrics(), predictions(), {"handbook.md": "Leave is 25 days & <more>."})
    categories = section(html, "categories")
    assert categories.count("<svg") == 2  # rouge_l for n-gram, refusal_rate for behaviour
    assert ["procedure", "60.0 n=1", "60.0 n=1", "60.0 n=1"] in table_rows(categories)
    refusals = table_rows(section(html, "refusals"))
    assert refusals[0] == ["system", "refusal_rate ↑", "false_refusal_rate ↓"]
    assert refusals[2] == ["student", "80.0 (76.8–83.3)", "12.5 (9.3–15.8)"]
    assert section(html, "cost").count("<svg") == 1
    examples = section(html, "examples")
    assert examples.count("<details>") == 4 and "Leave is 25 days &amp; &lt;more&gt;." in examples
    assert '<span class="badge good">75.0</span>' in examples


def test_user_text_is_escaped_and_no_external_resources(tmp_path):
    html = write(tmp_path, full_metrics(), predictions())
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<title>Handbook &lt;distil&gt;</title>" in html and "An intro &amp; more." in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, re.I)
    assert "<link" not in html and "@import" not in html
    table_rows(html)  # the whole page nests properly


def test_renders_minimal_metrics_with_only_means(tmp_path):
    minimal = {
        "metrics": {"rouge_l": {}, "judge_score": {"family": "judge"}},
        "systems": {"student": {"scores": {"rouge_l": {"mean": 0.4123}, "judge_score": {"mean": None}}}, "base": {}},
    }
    html = write(tmp_path, minimal)
    rows = {row[0]: row[1:] for row in table_rows(section(html, "summary")) if row and row[0] in {"student", "base"}}
    assert rows == {"student": ["41.2", "–"], "base": ["–", "–"]}
    assert "no paired significance tests" in html.lower()
    assert section(html, "charts").count("<svg") == 1  # judge has no value: no empty chart
    assert 'id="cost"' not in html and 'id="examples"' not in html


def test_names_are_escaped_in_tables_and_charts_and_the_write_is_atomic(tmp_path):
    metrics = {"metrics": {"rouge_l": {"family": "n-gram"}}, "systems": {"a<b>&$x$": {"scores": {"rouge_l": {"mean": 0.5}}}}}
    html = write(tmp_path, metrics)
    assert "<b>" not in html
    assert section(html, "charts").count("a&lt;b&gt;&amp;$x$") == 1  # the legend: text, not LaTeX
    assert [path.name for path in tmp_path.iterdir()] == ["report.html"]  # no temporary file left behind


def test_same_inputs_give_the_same_file(tmp_path):
    first = write(tmp_path, full_metrics(), predictions())
    assert write(tmp_path, full_metrics(), predictions()) == first


def test_renders_with_empty_inputs(tmp_path):
    html = write(tmp_path, {})
    assert "<h1>Handbook &lt;distil&gt;</h1>" in html


def test_examples_are_capped_with_a_note(tmp_path):
    html = write(tmp_path, full_metrics(), predictions(MAX_EXAMPLE_ROWS + 7))
    examples = section(html, "examples")
    assert examples.count("<tr>") == MAX_EXAMPLE_ROWS + 1  # header row + capped rows
    assert "7 omitted" in examples


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_chromium_renders_a_screenshot(tmp_path):
    write(tmp_path, full_metrics(), predictions(), {"handbook.md": "source text"})
    shot = tmp_path / "shot.png"
    command = [
        "chromium", "--headless", "--disable-gpu", "--no-sandbox", f"--screenshot={shot}",
        "--window-size=1280,2000", (tmp_path / "report.html").as_uri(),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
