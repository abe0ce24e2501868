r"""Uncertainty and significance for per-example evaluation scores.

Every system gets one score per example and metric (a float in [0, 1], or ``None`` when
the metric does not apply to that example). This module turns those lists into:

* :func:`mean_ci` — a percentile-bootstrap confidence interval of one system's mean;
* :func:`paired_bootstrap` — a paired bootstrap CI of ``mean(a - b)`` between two systems;
* :func:`wilcoxon_p` — a two-sided Wilcoxon signed-rank p-value on the paired differences;
* :func:`holm` — Holm–Bonferroni adjustment of a family of p-values;
* :func:`compare_systems` — paired bootstrap, Wilcoxon and Holm for every pair of systems,
  per metric.

Pairing is by position: example ``i`` of system ``a`` is compared with example ``i`` of
system ``b``, and a pair is dropped when either score is ``None``.

The bootstrap is vectorised: one ``(resamples, n)`` index matrix drawn from
``numpy.random.default_rng(seed)``, chunked by rows so that no chunk holds more than
:data:`MAX_BOOTSTRAP_ENTRIES` indices. The same seed gives the same result.

Speed: ``compare_systems`` on 5 systems × 15 metrics × 1000 examples (150 pairs, 2000
resamples each) took 1.8–1.9 s (two runs) on the shared 2-core development CPU, measured with::

    .venv/bin/python -c "import time, numpy as np; from domainkd.evaluation.statistics import compare_systems; \
rng = np.random.default_rng(0); data = {f's{s}': {f'm{m}': list(rng.random(1000)) for m in range(15)} \
for s in range(5)}; t = time.perf_counter(); compare_systems(data, {f'm{m}': True for m in range(15)}); \
print(time.perf_counter() - t)"
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from scipy.stats import wilcoxon

MAX_BOOTSTRAP_ENTRIES = 20_000_000
"""Largest number of resample indices held in memory at once (~160 MB as int64)."""

DIFFERENCE_DECIMALS = 12
"""Paired differences are rounded to this many decimals before ranking, so that float noise
(``0.3 - (0.1 + 0.2)``) counts as a zero and equal differences as ties."""

Scores = Sequence[float | None]


# --------------------------------------------------------------------------- helpers


def _check_bootstrap_args(confidence: float, resamples: int) -> None:
    """Raise ValueError with one clear sentence on an unusable confidence or resample count."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}.")


def _present(scores: Scores) -> np.ndarray:
    """The non-None scores as a float64 array of shape (n,)."""
    return np.asarray([score for score in scores if score is not None], dtype=np.float64)


def paired_differences(a: Scores, b: Scores) -> np.ndarray:
    """``a[i] - b[i]`` for every position where both scores are present.

    Args:
        a: Scores of system a, one per example (``None`` when not applicable).
        b: Scores of system b, aligned with ``a``.

    Returns:
        Array of shape (n_pairs,) with the differences, in example order.

    Raises:
        ValueError: If ``a`` and ``b`` do not have the same length.
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores must have the same length, got {len(a)} and {len(b)}.")
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    return np.asarray([x - y for x, y in pairs], dtype=np.float64)


def bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples (with replacement) of ``values``.

    Args:
        values: Array of shape (n,), n >= 1.
        resamples: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``.

    Returns:
        Array of shape (resamples,) with one resample mean each.
    """
    n = len(values)
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, MAX_BOOTSTRAP_ENTRIES // n)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows_per_chunk):
        rows = min(rows_per_chunk, resamples - start)
        indices = rng.integers(0, n, size=(rows, n))  # (rows, n)
        means[start : start + rows] = values[indices].mean(axis=1)
    return means


def percentile_interval(values: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (shape (n,), n >= 1)."""
    if len(values) == 1:
        return float(values[0]), float(values[0])
    means = bootstrap_means(values, resamples, seed)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------- public API


def mean_ci(
    scores: Scores, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float | None, float | None]:
    """Percentile-bootstrap confidence interval of the mean over the non-None scores.

    Args:
        scores: Per-example scores; ``None`` entries are skipped.
        confidence: Coverage of the interval, e.g. 0.95.
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling generator; the same seed gives the same interval.

    Returns:
        ``(low, high)``; ``(None, None)`` when no score is present and ``(m, m)`` for a
        single score ``m``.
    """
    _check_bootstrap_args(confidence, resamples)
    values = _present(scores)
    if len(values) == 0:
        return None, None
    return percentile_interval(values, confidence, resamples, seed)


def paired_bootstrap(
    a: Scores, b: Scores, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> dict:
    """Paired bootstrap of ``mean(a - b)`` over the examples both systems scored.

    Pairs are resampled together (the differences are resampled), which keeps the
    per-example correlation between systems and gives much tighter intervals than two
    independent bootstraps.

    Args:
        a: Scores of system a, one per example (``None`` when not applicable).
        b: Scores of system b, aligned with ``a`` by position.
        confidence: Coverage of the interval.
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling generator.

    Returns:
        ``{"n", "mean_difference", "ci_low", "ci_high"}``: the number of pairs, the
        observed mean difference and its interval; the last three are ``None`` when
        there is no pair.
    """
    _check_bootstrap_args(confidence, resamples)
    differences = paired_differences(a, b)
    if len(differences) == 0:
        return {"n": 0, "mean_difference": None, "ci_low": None, "ci_high": None}
    low, high = percentile_interval(differences, confidence, resamples, seed)
    return {"n": len(differences), "mean_difference": float(differences.mean()), "ci_low": low, "ci_high": high}


def wilcoxon_p(a: Scores, b: Scores) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value on the paired non-None differences.

    Uses ``scipy.stats.wilcoxon(..., zero_method="wilcox")``: examples where both
    systems score the same are dropped and the test ranks only the examples where they
    disagree. For binary metrics (many exact ties) this reduces to a sign test on the
    discordant examples, the usual McNemar-style comparison; ``"zsplit"`` would instead
    dilute the test with the agreeing examples. Differences are rounded to
    :data:`DIFFERENCE_DECIMALS` decimals first so that float noise is not a difference.

    Args:
        a: Scores of system a, one per example (``None`` when not applicable).
        b: Scores of system b, aligned with ``a`` by position.

    Returns:
        The p-value; 1.0 when every paired difference is zero; ``None`` when there is no
        pair at all.
    """
    differences = np.round(paired_differences(a, b), DIFFERENCE_DECIMALS)
    if len(differences) == 0:
        return None
    if not np.any(differences != 0.0):
        return 1.0
    p_value = float(wilcoxon(differences, zero_method="wilcox", alternative="two-sided").pvalue)
    return 1.0 if np.isnan(p_value) else min(p_value, 1.0)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values, in the order given.

    The k-th smallest of the m present p-values (k = 0, 1, ...) is multiplied by
    ``m - k``; a running maximum keeps the adjusted values monotone in the raw ones and
    each is capped at 1. ``None`` stays ``None`` and does not count in m.

    Args:
        p_values: Raw p-values, ``None`` for tests that could not be run.

    Returns:
        Adjusted p-values, same length and order as ``p_values``.
    """
    present = [i for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    order = sorted(present, key=lambda i: p_values[i])
    adjusted: list[float | None] = [None] * len(p_values)
    running_max = 0.0
    for rank, i in enumerate(order):
        running_max = max(running_max, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running_max
    return adjusted


# --------------------------------------------------------------------------- system comparison


def _better_system(pair: dict, higher_is_better: bool) -> str | None:
    """Name of the significantly better system of ``pair``, or None."""
    difference = pair["mean_difference"]
    if not pair["significant"] or not difference:
        return None
    a_is_higher = difference > 0
    return pair["a"] if a_is_higher == higher_is_better else pair["b"]


def _compare_pair(a: Scores, b: Scores, confidence: float, resamples: int, seed: int) -> dict:
    """Bootstrap interval and Wilcoxon p-value for one pair of systems on one metric."""
    pair = paired_bootstrap(a, b, confidence=confidence, resamples=resamples, seed=seed)
    pair["p_value"] = wilcoxon_p(a, b)
    return pair


def _metric_names(per_example: dict[str, dict[str, list[float | None]]]) -> list[str]:
    """Every metric of any system, in order of first appearance."""
    names: dict[str, None] = {}
    for metrics in per_example.values():
        names.update(dict.fromkeys(metrics))
    return list(names)


def compare_metric(
    per_example: dict[str, dict[str, list[float | None]]],
    metric: str,
    higher_is_better: bool,
    alpha: float = 0.05,
    resamples: int = 2000,
    seed: int = 0,
    baseline: str | None = None,
) -> list[dict]:
    """Compare the pairs of systems that have ``metric``; see :func:`compare_systems`."""
    systems = [name for name, metrics in per_example.items() if metric in metrics]
    if baseline is None:
        matched = list(combinations(systems, 2))
    else:
        matched = [(name, baseline) for name in systems if name != baseline] if baseline in systems else []
    pairs = []
    for name_a, name_b in matched:
        scores_a, scores_b = per_example[name_a][metric], per_example[name_b][metric]
        pairs.append({"a": name_a, "b": name_b, **_compare_pair(scores_a, scores_b, 1.0 - alpha, resamples, seed)})
    for pair, p_holm in zip(pairs, holm([pair["p_value"] for pair in pairs])):
        pair["p_holm"] = p_holm
        pair["significant"] = p_holm is not None and p_holm < alpha
        pair["better"] = _better_system(pair, higher_is_better)
    return pairs


def compare_systems(
    per_example: dict[str, dict[str, list[float | None]]],
    higher_is_better: dict[str, bool],
    alpha: float = 0.05,
    resamples: int = 2000,
    seed: int = 0,
    baseline: str | None = None,
) -> dict[str, list[dict]]:
    """Pairwise comparison of systems on every metric, Holm-corrected per metric.

    For each metric, every unordered pair of systems having it, in the order systems
    appear (``(s0, s1), (s0, s2), (s1, s2), ...``) — or, with a ``baseline``, every other
    system against it (``(s, baseline)``, so fewer tests share the correction) — gets one dict::

        {"a", "b", "n", "mean_difference", "ci_low", "ci_high",
         "p_value", "p_holm", "significant", "better"}

    ``mean_difference`` is ``mean(a - b)`` over the paired examples, with a paired
    bootstrap interval at confidence ``1 - alpha`` (not adjusted for multiplicity, so it
    can exclude 0 for a pair that is not significant after Holm); ``p_value`` is :func:`wilcoxon_p`;
    ``p_holm`` is Holm-adjusted across the pairs of that metric only; ``significant`` is
    ``p_holm < alpha``; ``better`` names the better system (by the sign of
    ``mean_difference`` and the metric's direction) when significant, else ``None``.

    Args:
        per_example: ``per_example[system][metric]`` -> scores aligned by example.
        higher_is_better: Direction of every metric in ``per_example``.
        alpha: Significance level after Holm correction; the intervals use
            confidence ``1 - alpha``.
        resamples: Bootstrap resamples per pair.
        seed: Seed of every bootstrap; the same seed gives the same result.
        baseline: Compare every system with this one only (None: all pairs).

    Returns:
        ``{metric: [pair dicts]}`` for every metric of any system, in order of first
        appearance; a metric that only one system has maps to an empty list.

    Raises:
        ValueError: If a metric has no direction in ``higher_is_better`` or ``alpha`` is
            not in (0, 1).
    """
    metrics = _metric_names(per_example)
    missing = [metric for metric in metrics if metric not in higher_is_better]
    if missing:
        raise ValueError(f"higher_is_better has no direction for metrics {missing}.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}.")
    return {
        metric: compare_metric(per_example, metric, higher_is_better[metric], alpha, resamples, seed, baseline)
        for metric in metrics
    }
