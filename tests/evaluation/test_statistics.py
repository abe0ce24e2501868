import numpy as np
import pytest
from scipy.stats import wilcoxon

from domainkd.evaluation import statistics
from domainkd.evaluation.statistics import compare_systems, holm, mean_ci, paired_bootstrap, wilcoxon_p

PAIR_KEYS = {"a", "b", "n", "mean_difference", "ci_low", "ci_high", "p_value", "p_holm", "significant", "better"}


def uniform(seed: int, n: int, high: float = 1.0) -> list[float]:
    return list(np.random.default_rng(seed).uniform(0.0, high, n))


def shifted_pair(n: int = 200, shift: float = 0.2) -> tuple[list[float], list[float]]:
    """b = a + shift exactly (noise-free): every paired difference is -shift."""
    a = uniform(1, n, high=1.0 - shift)
    return a, [x + shift for x in a]


# --------------------------------------------------------------------------- holm


def test_holm_hand_computed():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_handles_empty():
    assert holm([0.5, 0.6, 0.9]) == [1.0, 1.0, 1.0]  # 1.5, 1.2, then max(1, 0.9)
    assert holm([]) == []
    assert holm([0.2]) == pytest.approx([0.2])


def test_holm_none_passes_through_and_is_not_counted():
    # m = 2, not 4: 0.01*2=0.02, 0.04*1=0.04
    assert holm([0.01, None, 0.04, None]) == pytest.approx([0.02, None, 0.04, None])
    assert holm([None, None]) == [None, None]


def test_holm_is_monotone_in_raw_p_and_never_below_it():
    raw = list(np.random.default_rng(3).uniform(0.0, 0.2, 30))
    adjusted = holm(raw)
    order = np.argsort(raw)
    assert np.all(np.diff(np.asarray(adjusted)[order]) >= 0)
    assert all(q >= p for p, q in zip(raw, adjusted))
    assert all(q <= 1.0 for q in adjusted)


# --------------------------------------------------------------------------- wilcoxon


def test_wilcoxon_agrees_with_scipy():
    a, b = uniform(4, 60), uniform(5, 60)
    expected = wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue
    assert wilcoxon_p(a, b) == pytest.approx(expected, rel=1e-12)


def test_wilcoxon_agrees_with_scipy_with_zero_differences_and_nones():
    a = [1.0, 1.0, 0.0, 1.0, 0.5, None, 1.0, 0.0, 1.0, 1.0, 0.25, 1.0]
    b = [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, None, 0.0, 1.0, 0.0, 0.0]
    kept = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    expected = wilcoxon([x for x, _ in kept], [y for _, y in kept], zero_method="wilcox").pvalue
    assert wilcoxon_p(a, b) == pytest.approx(expected, rel=1e-12)


def test_wilcoxon_identical_inputs_give_one():
    a = uniform(6, 40)
    assert wilcoxon_p(a, list(a)) == 1.0
    assert wilcoxon_p([0.3] * 5, [0.1 + 0.2] * 5) == 1.0  # float noise is not a difference


def test_wilcoxon_no_pairs_gives_none():
    assert wilcoxon_p([], []) is None
    assert wilcoxon_p([None, 1.0], [0.0, None]) is None


def test_wilcoxon_single_nonzero_pair_is_not_significant():
    assert wilcoxon_p([1.0, 0.5], [0.0, 0.5]) == 1.0


def test_paired_length_mismatch_raises():
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="same length"):
        wilcoxon_p([0.1, 0.2], [0.1])


# --------------------------------------------------------------------------- bootstrap


def test_known_shift_is_significant_and_ci_contains_true_difference():
    a, b = shifted_pair()
    result = paired_bootstrap(a, b)
    assert result["n"] == 200
    assert result["mean_difference"] == pytest.approx(-0.2)
    assert result["ci_low"] == pytest.approx(-0.2) and result["ci_high"] == pytest.approx(-0.2)
    assert result["ci_high"] < 0
    assert wilcoxon_p(a, b) < 1e-30


def test_noisy_shift_ci_excludes_zero_and_contains_true_difference():
    rng = np.random.default_rng(7)
    a = rng.uniform(0.0, 0.6, 200)
    b = a + 0.2 + rng.normal(0.0, 0.1, 200)
    result = paired_bootstrap(list(a), list(b))
    assert result["ci_low"] < -0.2 < result["ci_high"] < 0
    assert wilcoxon_p(list(a), list(b)) < 1e-10


def test_same_distribution_is_not_significant_and_ci_contains_zero():
    a, b = uniform(10, 200), uniform(11, 200)
    result = paired_bootstrap(a, b)
    assert result["ci_low"] < 0 < result["ci_high"]
    assert wilcoxon_p(a, b) > 0.05
    pair = compare_systems({"x": {"m": a}, "y": {"m": b}}, {"m": True})["m"][0]
    assert not pair["significant"] and pair["better"] is None


def test_paired_bootstrap_matches_normal_approximation_for_large_n():
    differences = np.random.default_rng(12).normal(0.1, 0.3, 2000)
    result = paired_bootstrap(list(differences), [0.0] * 2000)
    half_width = 1.96 * differences.std(ddof=1) / np.sqrt(len(differences))
    assert result["ci_low"] == pytest.approx(differences.mean() - half_width, abs=0.1 * half_width)
    assert result["ci_high"] == pytest.approx(differences.mean() + half_width, abs=0.1 * half_width)


def test_paired_bootstrap_drops_pairs_with_none():
    a = [1.0, None, 0.5, 0.0, 1.0]
    b = [0.0, 1.0, None, 0.0, 0.5]
    result = paired_bootstrap(a, b)
    assert result["n"] == 3  # positions 0, 3, 4
    assert result["mean_difference"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert 0.0 <= result["ci_low"] <= result["mean_difference"] <= result["ci_high"] <= 1.0


def test_paired_bootstrap_without_pairs():
    assert paired_bootstrap([None, 1.0], [1.0, None]) == {
        "n": 0,
        "mean_difference": None,
        "ci_low": None,
        "ci_high": None,
    }


def test_mean_ci_covers_true_bernoulli_mean():
    sample = (np.random.default_rng(13).random(5000) < 0.3).astype(float)
    low, high = mean_ci(list(sample))
    assert low < 0.3 < high
    assert high - low < 0.03  # about 2 * 1.96 * sqrt(0.21 / 5000) = 0.025


def test_mean_ci_width_shrinks_with_n():
    rng = np.random.default_rng(14)
    widths = []
    for n in (100, 400, 1600):
        low, high = mean_ci(list((rng.random(n) < 0.3).astype(float)))
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    # width ~ 1/sqrt(n): quadrupling n roughly halves it
    assert widths[1] / widths[0] == pytest.approx(0.5, abs=0.15)
    assert widths[2] / widths[1] == pytest.approx(0.5, abs=0.15)


def test_mean_ci_edge_cases_and_none_skipping():
    assert mean_ci([]) == (None, None)
    assert mean_ci([None, None]) == (None, None)
    assert mean_ci([None, 0.7]) == (0.7, 0.7)
    scores = uniform(15, 50)
    assert mean_ci(scores[:25] + [None] * 10 + scores[25:]) == mean_ci(scores)


def test_bootstrap_arguments_are_validated():
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([0.1, 0.2], confidence=1.0)
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap([0.1, 0.2], [0.2, 0.1], resamples=0)


def test_same_seed_is_deterministic_and_seed_matters():
    a, b = uniform(16, 100), uniform(17, 100)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert mean_ci(a, seed=3) == mean_ci(a, seed=3)
    assert mean_ci(a, seed=3) != mean_ci(a, seed=4)
    data = {"x": {"m": a}, "y": {"m": b}, "z": {"m": a[::-1]}}
    assert compare_systems(data, {"m": True}, seed=5) == compare_systems(data, {"m": True}, seed=5)


def test_chunked_bootstrap_equals_unchunked(monkeypatch):
    values = np.asarray(uniform(18, 50))
    whole = statistics.bootstrap_means(values, 1000, seed=2)
    monkeypatch.setattr(statistics, "MAX_BOOTSTRAP_ENTRIES", 7 * 50 + 3)  # chunks of 7 rows
    chunked = statistics.bootstrap_means(values, 1000, seed=2)
    np.testing.assert_array_equal(chunked, whole)


def test_confidence_widens_interval():
    scores = uniform(19, 100)
    low_90, high_90 = mean_ci(scores, confidence=0.90)
    low_99, high_99 = mean_ci(scores, confidence=0.99)
    assert low_99 < low_90 < np.mean(scores) < high_90 < high_99


# --------------------------------------------------------------------------- compare_systems


def three_systems() -> dict[str, dict[str, list[float | None]]]:
    a, b = shifted_pair()
    noise = uniform(20, 200)
    return {
        "base_student": {"fact_accuracy": a, "hallucination": b},
        "student": {"fact_accuracy": b, "hallucination": a},
        "teacher_closed_book": {"fact_accuracy": noise, "hallucination": noise},
    }


def test_compare_systems_pairs_in_system_order_with_all_fields():
    result = compare_systems(three_systems(), {"fact_accuracy": True, "hallucination": False})
    assert list(result) == ["fact_accuracy", "hallucination"]
    pairs = [(pair["a"], pair["b"]) for pair in result["fact_accuracy"]]
    assert pairs == [
        ("base_student", "student"),
        ("base_student", "teacher_closed_book"),
        ("student", "teacher_closed_book"),
    ]
    assert all(set(pair) == PAIR_KEYS for pairs_of in result.values() for pair in pairs_of)


def test_compare_systems_better_follows_direction():
    result = compare_systems(three_systems(), {"fact_accuracy": True, "hallucination": False})
    accuracy, hallucination = result["fact_accuracy"][0], result["hallucination"][0]
    # accuracy: student = base + 0.2, higher is better -> student
    assert accuracy["mean_difference"] == pytest.approx(-0.2)
    assert accuracy["significant"] and accuracy["better"] == "student"
    # hallucination: student = base - 0.2, lower is better -> student again
    assert hallucination["mean_difference"] == pytest.approx(0.2)
    assert hallucination["significant"] and hallucination["better"] == "student"


def test_compare_systems_holm_is_per_metric():
    result = compare_systems(three_systems(), {"fact_accuracy": True, "hallucination": False})
    for pairs in result.values():
        raw = [pair["p_value"] for pair in pairs]
        assert [pair["p_holm"] for pair in pairs] == pytest.approx(holm(raw))
        for pair in pairs:
            assert pair["significant"] == (pair["p_holm"] < 0.05)
            assert pair["better"] is None or pair["significant"]


def test_compare_systems_against_a_baseline_tests_only_its_pairs():
    result = compare_systems(three_systems(), {"fact_accuracy": True, "hallucination": False}, baseline="student")
    pairs = result["fact_accuracy"]
    assert [(pair["a"], pair["b"]) for pair in pairs] == [("base_student", "student"), ("teacher_closed_book", "student")]
    assert [pair["p_holm"] for pair in pairs] == pytest.approx(holm([pair["p_value"] for pair in pairs]))  # m = 2
    assert pairs[0]["mean_difference"] == pytest.approx(-0.2) and pairs[0]["better"] == "student"
    assert compare_systems(three_systems(), {"fact_accuracy": True, "hallucination": False}, baseline="absent") == {
        "fact_accuracy": [], "hallucination": [],
    }


def test_compare_systems_counts_pairs_with_none():
    data = {
        "s0": {"m": [1.0, None, 0.0, 1.0]},
        "s1": {"m": [0.0, 1.0, None, 1.0]},
        "s2": {"m": [None, None, None, None]},
    }
    s0_s1, s0_s2, s1_s2 = compare_systems(data, {"m": True})["m"]
    assert s0_s1["n"] == 2 and s0_s1["mean_difference"] == pytest.approx(0.5)
    for empty in (s0_s2, s1_s2):
        assert empty["n"] == 0 and empty["p_value"] is None and empty["p_holm"] is None
        assert not empty["significant"] and empty["better"] is None
    assert s0_s1["p_holm"] == s0_s1["p_value"]  # the empty pairs do not count in Holm's m


def test_compare_systems_skips_metrics_missing_for_a_system():
    data = {
        "s0": {"m": [1.0, 0.0], "only_s0": [1.0, 1.0]},
        "s1": {"m": [0.0, 0.0]},
        "s2": {"m": [1.0, 1.0], "only_s0": [0.0, 0.0]},
    }
    result = compare_systems(data, {"m": True, "only_s0": True})
    assert [(pair["a"], pair["b"]) for pair in result["only_s0"]] == [("s0", "s2")]
    assert len(result["m"]) == 3
    assert compare_systems({"s0": {"x": [1.0]}, "s1": {}}, {"x": True}) == {"x": []}


def test_compare_systems_requires_a_direction_per_metric():
    with pytest.raises(ValueError, match="higher_is_better"):
        compare_systems({"s0": {"m": [1.0]}, "s1": {"m": [0.0]}}, {})
