"""Which system wins each metric, and whether the win is significant against every other system.

Read from ``metrics.json``: the best mean (in the metric's direction) is the leader; it *wins*
when its paired test against every other system is significant after Holm correction, and
otherwise shares the lead with the systems it cannot be told apart from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


CLEAR_WIN_NOTE = "Bold: significantly better than every other system (Holm-corrected Wilcoxon)."
"""What a bold leader means, under the winner tables of both reports."""


@dataclass(frozen=True)
class Verdict:
    """The leader on one metric and how firmly it leads."""

    metric: str
    leader: str
    mean: float
    beats: list[str] = field(default_factory=list)
    """Systems it is significantly better than."""
    ties: list[str] = field(default_factory=list)
    """Systems it cannot be told apart from (no significant difference)."""

    @property
    def clear(self) -> bool:
        """Whether it is significantly better than every other system (and there is one)."""
        return bool(self.beats) and not self.ties


def verdicts(metrics: dict[str, Any]) -> list[Verdict]:
    """One verdict per metric with at least one scored system, in metrics.json order."""
    results = []
    for metric, meta in (metrics.get("metrics") or {}).items():
        means = {
            system: entry["scores"][metric]["mean"]
            for system, entry in (metrics.get("systems") or {}).items()
            if entry.get("scores", {}).get(metric, {}).get("mean") is not None
        }
        if not means:
            continue
        sign = 1 if meta.get("higher_is_better", True) else -1
        leader = max(means, key=lambda system: sign * means[system])  # first listed wins an exact tie
        beats, ties = [], []
        pairs = (metrics.get("comparisons") or {}).get(metric, [])
        for other in means:
            if other == leader:
                continue
            pair = next((row for row in pairs if {row.get("a"), row.get("b")} == {leader, other}), None)
            if pair is not None and pair.get("significant") and pair.get("better") == leader:
                beats.append(other)
            else:
                ties.append(other)
        results.append(Verdict(metric, leader, means[leader], beats, ties))
    return results


def verdict_sentence(verdict: Verdict) -> str:
    """``distilled wins fact_accuracy (62.5%), significantly ahead of all 5 others`` and the like."""
    score = f"{100 * verdict.mean:.1f}%"
    if verdict.clear:
        others = "the other system" if len(verdict.beats) == 1 else f"all {len(verdict.beats)} others"
        return f"{verdict.leader} wins {verdict.metric} ({score}), significantly ahead of {others}"
    if not verdict.beats:
        return f"{verdict.leader} leads {verdict.metric} ({score}) but is not significantly ahead of any other system"
    return (
        f"{verdict.leader} leads {verdict.metric} ({score}), significantly ahead of {', '.join(verdict.beats)}; "
        f"not separable from {', '.join(verdict.ties)}"
    )
