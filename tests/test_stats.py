"""Statistics against known cases: textbook McNemar tables, scikit-learn and scipy references,
analytic standard errors, and the change-point detector on simulated histories."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn import metrics as sk

from cml_bot.stats import adjust_p_values, detectable_effect
from cml_bot.stats.example_metrics import (
    EXACT_EXAMPLES,
    KINDS,
    PairedExamples,
    compare_metrics,
    label_sums,
    per_class_changes,
)
from cml_bot.stats.history import change_points, compare_with_history, history_noise
from cml_bot.stats.paired import mcnemar, paired_bootstrap, resample_counts
from cml_bot.stats.runs import compare_runs

# --- McNemar ---------------------------------------------------------------------------------------


def test_mcnemar_matches_the_textbook_table() -> None:
    # Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91, Table 1 (Bentur et al. 2009):
    # discordant pairs 1 and 7. Exact conditional p = 0.070, mid-p = 0.039.
    test = mcnemar(fixed=1, broken=7)
    assert test.p_exact == pytest.approx(float(Fraction(18, 256)))  # 2 * P(X <= 1), X ~ Bin(8, 1/2)
    assert test.p_two_sided == pytest.approx(float(Fraction(10, 256)))  # 2 * (P(X <= 1) - P(X = 1) / 2)
    assert round(test.p_exact, 3) == 0.070 and round(test.p_two_sided, 3) == 0.039
    assert test.p_down == pytest.approx(5 / 256)  # more broken than fixed: head is worse
    assert test.p_up == pytest.approx(251 / 256)


def test_mcnemar_is_symmetric_and_agrees_with_scipy() -> None:
    a, b = mcnemar(30, 12), mcnemar(12, 30)
    assert (a.p_up, a.p_down) == pytest.approx((b.p_down, b.p_up))
    assert a.p_exact == pytest.approx(scipy_stats.binomtest(12, 42, 0.5).pvalue)
    # mid-p is below the conservative exact test and close to the asymptotic (chi-square) one
    asymptotic = scipy_stats.chi2.sf((30 - 12) ** 2 / 42, 1)
    assert a.p_two_sided < a.p_exact and a.p_two_sided == pytest.approx(asymptotic, rel=0.1)
    assert mcnemar(0, 0).p_two_sided == 1.0
    with pytest.raises(ValueError):
        mcnemar(-1, 2)


def test_mcnemar_mid_p_holds_its_level_under_no_change() -> None:
    rng = np.random.default_rng(3)
    discordant = rng.binomial(2000, 0.06, size=2000)  # 2,000 examples, 6% discordant, no change
    broken = rng.binomial(discordant, 0.5)
    alarms = np.mean([mcnemar(int(d - b), int(b)).p_down < 0.05 for d, b in zip(discordant, broken, strict=True)])
    assert 0.03 < alarms <= 0.06


# --- per-example metrics ---------------------------------------------------------------------------


def _classification(n: int = 1500, k: int = 4, seed: int = 1) -> tuple[PairedExamples, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    base = np.where(rng.random(n) < 0.8, y, rng.integers(0, k, n))
    head = np.where(rng.random(n) < 0.77, y, rng.integers(0, k, n))
    scores = []
    for boost in (0.6, 0.5):
        p = rng.dirichlet(np.ones(k), n)
        p[np.arange(n), y] += boost
        scores.append(p / p.sum(axis=1, keepdims=True))
    data = PairedExamples(n, tuple(str(c) for c in range(k)), y, base, head, scores[0], scores[1])
    return data, {"y": y, "base": base, "head": head, "base_scores": scores[0], "head_scores": scores[1]}


def _sklearn(name: str, y: np.ndarray, predicted: np.ndarray) -> float:
    if name in ("accuracy", "error_rate"):
        value = sk.accuracy_score(y, predicted)
        return float(1 - value if name == "error_rate" else value)
    if name == "balanced_accuracy":
        return float(sk.balanced_accuracy_score(y, predicted))
    metric, average = name.rsplit("_", 1)
    function = {"f1": sk.f1_score, "precision": sk.precision_score, "recall": sk.recall_score}[metric]
    return float(function(y, predicted, average=average, zero_division=0))


@pytest.mark.parametrize("name", [k for k, v in KINDS.items() if v.needs == "labels" and "binary" not in k])
def test_label_metrics_equal_scikit_learn(name: str) -> None:
    data, raw = _classification()
    result = compare_metrics(data, [name])[name].result
    assert result.base == pytest.approx(_sklearn(name, raw["y"], raw["base"]), abs=1e-12)
    assert result.head == pytest.approx(_sklearn(name, raw["y"], raw["head"]), abs=1e-12)
    assert result.low <= result.delta <= result.high and result.resamples == 2000


def test_binary_and_score_metrics_equal_scikit_learn() -> None:
    data, raw = _classification(k=2)
    found = compare_metrics(data, ["f1_binary", "precision_binary", "recall_binary", "roc_auc", "log_loss"])
    assert found["f1_binary"].result.head == pytest.approx(sk.f1_score(raw["y"], raw["head"]))
    assert found["recall_binary"].result.base == pytest.approx(sk.recall_score(raw["y"], raw["base"]))
    auc = found["roc_auc"].result
    assert auc.base == pytest.approx(sk.roc_auc_score(raw["y"], raw["base_scores"][:, 1]))
    assert auc.head == pytest.approx(sk.roc_auc_score(raw["y"], raw["head_scores"][:, 1]))
    assert found["log_loss"].result.base == pytest.approx(sk.log_loss(raw["y"], raw["base_scores"]))
    multi, raw = _classification(k=5)
    found = compare_metrics(multi, ["roc_auc", "log_loss"])
    assert found["roc_auc"].result.head == pytest.approx(
        sk.roc_auc_score(raw["y"], raw["head_scores"], multi_class="ovr")
    )
    assert found["log_loss"].result.head == pytest.approx(sk.log_loss(raw["y"], raw["head_scores"]))


def test_regression_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(5)
    target = rng.normal(size=800)
    base, head = target + rng.normal(size=800) * 0.5, target + rng.normal(size=800) * 0.6
    data = PairedExamples(800, target=target, base_value=base, head_value=head)
    found = compare_metrics(data, ["mae", "mse", "rmse", "r2"])
    assert found["mae"].result.base == pytest.approx(sk.mean_absolute_error(target, base))
    assert found["mse"].result.head == pytest.approx(sk.mean_squared_error(target, head))
    assert found["rmse"].result.head == pytest.approx(sk.root_mean_squared_error(target, head))
    assert found["r2"].result.base == pytest.approx(sk.r2_score(target, base))


def test_bootstrap_standard_error_matches_the_paired_proportions_formula() -> None:
    # Var(head - base accuracy) = (p_fixed + p_broken - (p_fixed - p_broken)^2) / n
    rng = np.random.default_rng(7)
    n = 4000
    y = np.zeros(n, dtype=np.int64)
    cell = rng.choice(4, size=n, p=[0.85, 0.05, 0.03, 0.07])  # both right, fixed, broken, both wrong
    base = np.where((cell == 0) | (cell == 2), 0, 1)
    head = np.where((cell == 0) | (cell == 1), 0, 1)
    data = PairedExamples(n, ("0", "1"), y, base, head)
    result = compare_metrics(data, ["accuracy"], resamples=4000)["accuracy"].result
    fixed, broken = np.mean(cell == 1), np.mean(cell == 2)
    expected = math.sqrt((fixed + broken - (fixed - broken) ** 2) / n)
    assert result.se == pytest.approx(expected, rel=0.05)
    assert result.delta == pytest.approx(fixed - broken)


def test_bootstrap_is_seeded() -> None:
    data, _ = _classification()
    first = compare_metrics(data, ["f1_macro"], seed=11)["f1_macro"].result
    again = compare_metrics(data, ["f1_macro"], seed=11)["f1_macro"].result
    other = compare_metrics(data, ["f1_macro"], seed=12)["f1_macro"].result
    assert first == again and (first.low, first.high) != (other.low, other.high)


def test_no_discordant_examples_means_no_evidence_of_change() -> None:
    y = np.arange(100) % 3
    data = PairedExamples(100, ("0", "1", "2"), y, y.copy(), y.copy())
    result = compare_metrics(data, ["accuracy"])["accuracy"].result
    assert (result.delta, result.low, result.high, result.p_up, result.p_down) == (0, 0, 0, 1.0, 1.0)


def test_linearised_auc_bootstrap_has_the_plain_bootstrap_spread() -> None:
    rng = np.random.default_rng(2)
    n = 400
    y = (rng.random(n) < 0.3).astype(np.int64)
    base = rng.normal(size=n) + y
    head = 0.7 * base + 0.7 * rng.normal(size=n) + 0.3 * y
    data = PairedExamples(n, ("0", "1"), y, (base > 0.5).astype(np.int64), (head > 0.5).astype(np.int64), base, head)
    linearised = compare_metrics(data, ["roc_auc"])["roc_auc"].result.se
    deltas = []
    for _ in range(400):
        i = rng.integers(0, n, n)
        deltas.append(sk.roc_auc_score(y[i], head[i]) - sk.roc_auc_score(y[i], base[i]))
    assert linearised == pytest.approx(float(np.std(deltas)), rel=0.15)


def test_random_groups_keep_the_standard_error_of_a_mean() -> None:
    rng = np.random.default_rng(9)
    n = 4 * EXACT_EXAMPLES
    base = rng.exponential(size=n)
    head = base + rng.normal(size=n) * 0.3
    found = compare_metrics(PairedExamples(n, base_loss=base, head_loss=head), ["mean_loss"])["mean_loss"]
    assert found.units == f"{EXACT_EXAMPLES:,} random groups of ~4 examples"
    assert found.result.se == pytest.approx(np.std(head - base) / math.sqrt(n), rel=0.06)


def test_both_ways_of_drawing_counts_draw_the_same_distribution() -> None:
    frequencies = np.array([5, 1, 3, 1], dtype=np.int64)  # index drawing: 4 cells cost more than 10 examples
    many = np.concatenate(list(resample_counts(frequencies, 20000, 1)))
    assert (many.sum(axis=1) == 10).all()
    assert many.mean(axis=0) == pytest.approx(frequencies, rel=0.03)
    assert many[:, 0].var() == pytest.approx(10 * 0.5 * 0.5, rel=0.05)  # Binomial(10, 1/2)
    big = np.array([60000, 40000], dtype=np.int64)  # multinomial drawing
    counts = np.concatenate(list(resample_counts(big, 4000, 1)))
    assert counts[:, 0].var() == pytest.approx(100000 * 0.6 * 0.4, rel=0.08)


def test_per_class_changes_equal_scikit_learn() -> None:
    data, raw = _classification()
    rows = per_class_changes(data)
    assert [r.base_f1 for r in rows] == pytest.approx(list(sk.f1_score(raw["y"], raw["base"], average=None)))
    assert [r.head_recall for r in rows] == pytest.approx(list(sk.recall_score(raw["y"], raw["head"], average=None)))
    assert all(r.low <= r.head_f1 - r.base_f1 <= r.high for r in rows)


def test_label_sums_given_or_drawn_give_the_same_results() -> None:
    data, _ = _classification()
    sums = label_sums(data, 2000, 7)
    names = ["accuracy", "f1_macro", "precision_weighted"]
    assert compare_metrics(data, names, 2000, 7, sums=sums) == compare_metrics(data, names, 2000, 7)
    assert per_class_changes(data, 2000, 7, sums=sums) == per_class_changes(data, 2000, 7)


def test_paired_bootstrap_takes_any_statistic_of_sums() -> None:
    units = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 6.0]])
    found = paired_bootstrap(
        units, np.ones(3, dtype=np.int64), {"x": (lambda s: s[:, 1] * 0, lambda s: s[:, 1] / s[:, 0])}
    )
    assert found["x"].delta == pytest.approx(4.0) and found["x"].low >= 2.0 and found["x"].high <= 6.0


# --- repeated runs --------------------------------------------------------------------------------


def test_runs_use_welch_as_scipy_does() -> None:
    base, head = [0.90, 0.91, 0.93, 0.92], [0.88, 0.90, 0.89]
    result = compare_runs(base, head)
    assert result is not None and result.welch
    reference = scipy_stats.ttest_ind(head, base, equal_var=False)
    assert result.p_up + result.p_down == pytest.approx(1.0)
    assert 2 * min(result.p_up, result.p_down) == pytest.approx(reference.pvalue)
    interval = reference.confidence_interval(0.95)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high))


def test_a_single_run_is_taken_as_noisy_as_the_repeated_ones() -> None:
    head = [0.7, 0.8, 0.9, 0.8]
    result = compare_runs([0.95], head)
    assert result is not None and not result.welch
    s = float(np.std(head, ddof=1))
    t = (0.8 - 0.95) / (s * math.sqrt(1 + 1 / 4))
    assert result.p_down == pytest.approx(scipy_stats.t.cdf(t, df=3))
    assert compare_runs([0.9], [0.9]) is None and compare_runs([0.9, 0.9], [0.9, 0.9]) is None


# --- history --------------------------------------------------------------------------------------


def test_change_points_find_a_shift_and_leave_noise_alone() -> None:
    rng = np.random.default_rng(4)
    noise = [rng.normal(size=20) for _ in range(200)]
    false = np.mean([bool(change_points(x)) for x in noise])
    assert false <= 0.08  # about 4% on 20 points (see cml_bot.stats.history)
    shifted = np.r_[rng.normal(size=10), rng.normal(size=10) + 5]
    assert change_points(shifted) == (10,)
    assert change_points([0.9] * 12) == ()
    assert change_points([0.9] * 6 + [0.95] * 6) == (6,)


def test_history_noise_is_robust_and_uses_the_last_level() -> None:
    rng = np.random.default_rng(6)
    before = 0.80 + rng.normal(size=10) * 0.002
    after = 0.90 + rng.normal(size=15) * 0.002
    after[7] = 0.5  # one broken run: cut out as a segment of its own, or outvoted by the median
    noise = history_noise(np.r_[before, after])
    assert noise is not None and 10 in noise.change_points and noise.segment >= 5
    # An outlier inside a level that PELT does not cut away: left out of sigma by the 3.5 MAD rule.
    steady = np.r_[0.9 + rng.normal(size=7) * 0.002, 0.91, 0.9 + rng.normal(size=7) * 0.002]
    polluted = history_noise(steady)
    assert polluted is not None and polluted.change_points == () and polluted.used == polluted.segment - 1
    assert polluted.sigma == pytest.approx(0.002, rel=0.5)
    assert noise.sigma == pytest.approx(0.002, rel=0.5) and noise.level == pytest.approx(0.90, abs=0.002)
    comparison = compare_with_history(0.90, 0.95, noise)
    assert comparison is not None and comparison.p_up < 0.01
    df = noise.used - 1
    assert comparison.df == pytest.approx(df)
    assert comparison.band == pytest.approx(scipy_stats.t.ppf(0.975, df) * noise.sigma * math.sqrt(2))
    assert history_noise([0.9, 0.91]) is None


# --- decisions ------------------------------------------------------------------------------------


def test_detectable_effect_is_z_alpha_plus_z_power_standard_errors() -> None:
    assert detectable_effect(0.01) == pytest.approx((1.6448536 + 0.8416212) * 0.01)
    assert detectable_effect(None) is None and detectable_effect(math.inf) is None


def test_benjamini_hochberg_adjusted_p_values() -> None:
    assert adjust_p_values([0.01, 0.04, 0.03, 0.005], "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_p_values([0.01, 0.04], "none") == [0.01, 0.04]
    assert adjust_p_values([0.2], "bh") == [0.2]
    with pytest.raises(ValueError):
        adjust_p_values([0.1], "holm")
