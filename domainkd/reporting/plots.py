"""Charts for the HTML report, drawn by matplotlib and returned as inline SVG text.

Every chart is a plain ``Figure`` on an explicit Agg canvas (no pyplot, so nothing global
changes and no window can open), exported as SVG with text kept as text (small, crisp,
searchable). Scores arrive as fractions in [0, 1] and are drawn in percent.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

RC = {
    "svg.fonttype": "none",  # text stays <text>: a chart is ~10 kB instead of ~60 kB of glyph paths
    "svg.hashsalt": "domainkd",  # stable clip-path ids, so the same inputs give the same file
    "text.parse_math": False,  # a system called "a$b$" is a name, not LaTeX
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#dddddd",
    "axes.axisbelow": True,
}
PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]
CHAR_INCHES = 0.075  # rough width of one 9 pt character: sizes figures and decides label rotation
LEGEND_ENTRY_INCHES = 0.5  # legend handle + padding + column spacing (the legend itself is measured)


@dataclass(frozen=True)
class Bar:
    """One bar: a score in [0, 1] with its confidence interval (any of them may be unknown)."""

    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Point:
    """One labelled point of a scatter plot, in the plot's own units."""

    label: str
    x: float
    y: float
    color: str


def system_colors(systems: list[str]) -> dict[str, str]:
    """A fixed colour per system, by position, so a system looks the same in every chart."""
    return {system: PALETTE[index % len(PALETTE)] for index, system in enumerate(systems)}


def grouped_bars(
    title: str, groups: list[str], series: dict[str, list[Bar]], colors: dict[str, str], width: float | None = None
) -> str:
    """Grouped bar chart in percent: one group per x label, one bar per series, CI error bars.

    Args:
        title: Chart title.
        groups: X-axis labels (metrics or categories), length G.
        series: Series name (a system) → its G bars, in the order of ``groups``.
        colors: Series name → colour.
        width: Figure width in inches; by default wide enough for the bars, labels and legend.

    Returns:
        The chart as an ``<svg>`` element.
    """
    longest_label = max((len(group) for group in groups), default=0) * CHAR_INCHES
    group_inches = max(0.45 * max(len(series), 1), longest_label + 0.25)  # bars side by side, or the label
    width = width or min(12.0, max(5.5, group_inches * len(groups) + 1.2, _legend_inches(list(series)) + 0.3))
    with matplotlib.rc_context(RC):
        figure = _figure(width, 3.4)
        axes = figure.add_subplot()
        bar_width = 0.8 / max(len(series), 1)
        for index, (name, bars) in enumerate(series.items()):
            offset = (index - (len(series) - 1) / 2) * bar_width
            _draw_series(axes, name, bars, offset, bar_width, colors[name])
        _label_groups(axes, groups)
        axes.set_ylim(0, 108)
        axes.set_ylabel("percent")
        axes.set_title(title, fontsize=11, fontweight="bold", loc="left")
        _legend(figure, axes, len(series))
        return _to_svg(figure)


def scatter(title: str, points: list[Point], x_label: str, y_label: str) -> str:
    """Scatter plot with each point labelled by name (y in percent, x as given)."""
    with matplotlib.rc_context(RC):
        figure = _figure(6.0, 3.6)
        axes = figure.add_subplot()
        axes.grid(True, axis="both")
        for point in points:
            axes.scatter([point.x], [point.y], s=60, color=point.color, zorder=3)
        axes.margins(x=0.25, y=0.2)  # room for the labels right of the points
        axes.set_xlim(left=0)  # seconds: zero is a meaningful origin
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        axes.set_title(title, fontsize=11, fontweight="bold", loc="left")
        _place_labels(figure, axes, points)
        return _to_svg(figure)


LABEL_OFFSETS = ((6, 5, "left"), (6, -13, "left"), (-6, 5, "right"), (-6, -13, "right"), (6, 17, "left"), (6, -25, "left"))
"""Where a point's label may go (points right/up of it, alignment), tried in order until it overlaps no other label."""


def _place_labels(figure: Figure, axes, points: list[Point]) -> None:
    """Label each point at the first offset whose text box overlaps no label already placed."""
    renderer = figure.canvas.get_renderer()
    placed = []
    for point in points:
        for dx, dy, align in LABEL_OFFSETS:
            label = axes.annotate(
                point.label, (point.x, point.y), xytext=(dx, dy), textcoords="offset points", fontsize=9, ha=align
            )
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed) or (dx, dy, align) == LABEL_OFFSETS[-1]:
                placed.append(box)
                break
            label.remove()


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _draw_series(axes, name: str, bars: list[Bar], offset: float, bar_width: float, color: str) -> None:
    """One system's bars at ``group index + offset``, with CI whiskers and value labels."""
    drawn = [(index + offset, bar) for index, bar in enumerate(bars) if bar.value is not None]
    if not drawn:
        axes.bar([], [], color=color, label=name)  # keep the legend entry
        return
    axes.bar([x for x, _ in drawn], [100 * bar.value for _, bar in drawn], bar_width * 0.92, color=color, label=name)
    _whiskers(axes, [(x, bar) for x, bar in drawn if bar.low is not None and bar.high is not None])
    if bar_width >= 0.12:  # value labels only while bars are wide enough to carry them
        for x, bar in drawn:
            top = 100 * max(bar.value, bar.high if bar.high is not None else bar.value)
            axes.text(x, top + 1.2, f"{100 * bar.value:.0f}", ha="center", va="bottom", fontsize=7, color="#444444")


def _whiskers(axes, drawn: list[tuple[float, Bar]]) -> None:
    if not drawn:
        return
    centres = [100 * bar.value for _, bar in drawn]
    below = [max(0.0, 100 * (bar.value - bar.low)) for _, bar in drawn]  # a CI need not contain the mean
    above = [max(0.0, 100 * (bar.high - bar.value)) for _, bar in drawn]
    positions = [x for x, _ in drawn]
    axes.errorbar(positions, centres, yerr=[below, above], fmt="none", ecolor="#333333", elinewidth=0.9, capsize=2.5)


def _label_groups(axes, groups: list[str]) -> None:
    axes.set_xticks(range(len(groups)))
    group_inches = (axes.figure.get_figwidth() - 0.8) / max(len(groups), 1)
    crowded = max((len(group) for group in groups), default=0) * CHAR_INCHES > 0.9 * group_inches
    axes.set_xticklabels(groups, rotation=25 if crowded else 0, ha="right" if crowded else "center")
    axes.set_xlim(-0.6, len(groups) - 0.4)


def _legend(figure: Figure, axes, series_count: int) -> None:
    """Legend below the axes: one row if it fits the figure (measured, not guessed), else fewer columns."""
    if not series_count:
        return
    handles, labels = axes.get_legend_handles_labels()
    renderer = figure.canvas.get_renderer()
    for columns in range(len(labels), 0, -1):
        legend = figure.legend(
            handles, labels, loc="outside lower center", ncols=columns, frameon=False,
            columnspacing=1.2, handlelength=1.5,
        )  # fmt: skip
        if columns == 1 or legend.get_window_extent(renderer).width <= 0.98 * figure.bbox.width:
            return
        legend.remove()


def _legend_inches(labels: list[str]) -> float:
    """Rough width of a one-row legend: handle, padding and text per entry."""
    return sum(LEGEND_ENTRY_INCHES + CHAR_INCHES * len(label) for label in labels)


def _to_svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE: not allowed inline
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    return _prefix_ids(svg, "c" + hashlib.sha1(svg.encode()).hexdigest()[:8])  # same chart, same ids: stable files


def _prefix_ids(svg: str, prefix: str) -> str:
    """Make the SVG's ids unique in the page: matplotlib restarts ``patch_1`` etc. in every chart."""
    svg = svg.replace('id="', f'id="{prefix}-').replace("url(#", f"url(#{prefix}-")
    return svg.replace('href="#', f'href="#{prefix}-')
