"""Verdicts that must not lie: p-values of zero, deterministic runs, directions of scikit-learn's
scorers, gates that cannot be checked, one-sided wording (from a statistics audit)."""

from __future__ import annotations

import math

import pytest

from cml_bot.config import StatisticsConfig, Threshold
from cml_bot.diff import Gate, Outcome, compare_metric, diff, guess_direction
from cml_bot.metrics import Samples
from cml_bot.model import Verdict
from cml_bot.report_stats import rules_section
from cml_bot.stats.evidence import Evidence

NAN = math.nan
INF = math.inf
ACCURACY_GATE = (Threshold("accuracy", max_drop=0.01),)


# --- 1. a p-value of exactly 0 is the strongest evidence, not the weakest ---------------------------


def _certain_drop() -> Evidence:
    """What McNemar gives for 50 fixed / 1,500 broken of 5,000 examples: p_down underflows to 0."""
    return Evidence("examples", "paired", -0.29, -0.31, -0.27, 1.0, 0.0, 0.006, 5000, True)


@pytest.mark.parametrize("others", [0, 1, 3])
def test_a_p_value_of_zero_regresses_alone_or_within_a_corrected_family(others: int) -> None:
    base = {"accuracy": 0.90, **{f"m{i}": 0.5 for i in range(others)}}
    head = {"accuracy": 0.61, **{f"m{i}": 0.5 for i in range(others)}}
    rules = (*ACCURACY_GATE, Threshold("m*", max_drop=0.01, direction="higher"))
    evidence = {"accuracy": _certain_drop()} | {
        f"m{i}": Evidence("history", "h", 0.0, -0.1, 0.1, 0.5, 0.5, 0.05, 8) for i in range(others)
    }
    result = diff(base, head, rules, evidence=evidence)
    accuracy = result.metrics[0]
    assert accuracy.gate is Gate.REGRESSED, accuracy
    assert accuracy.p_adjusted == 0.0
    assert result.verdict is Verdict.REGRESSED


def test_identical_seeds_on_each_side_with_a_drop_beyond_the_gate_regress() -> None:
    result = diff({"accuracy": Samples((0.9, 0.9, 0.9))}, {"accuracy": Samples((0.85, 0.85, 0.85))}, ACCURACY_GATE)
    accuracy = result.metrics[0]
    assert result.verdict is Verdict.REGRESSED
    assert accuracy.outcome is Outcome.WORSE
    assert accuracy.evidence is not None and accuracy.evidence.se == 0
    assert "no variation" in accuracy.evidence.rule
    assert accuracy.detectable is None  # "can detect >= 0" is not a statement to make
    text = "\n".join(rules_section(result))
    assert "detect" not in text.replace("detected", "")
    assert "p = 1" not in " ".join(accuracy.failures)


def test_identical_seeds_that_did_not_move_show_no_change() -> None:
    change = compare_metric("accuracy", Samples((0.9, 0.9)), Samples((0.9, 0.9, 0.9)), True, ACCURACY_GATE[0])
    assert change.gate is Gate.PASS
    assert change.evidence is None  # nothing to test: identical runs, nothing changed


def test_identical_seeds_that_moved_by_float_noise_show_no_detectable_change() -> None:
    head = Samples((0.1 + 0.2,) * 3)  # 0.30000000000000004
    change = compare_metric("accuracy", Samples((0.3, 0.3, 0.3)), head, True, Threshold("accuracy", max_drop=0.0))
    assert change.outcome is Outcome.NO_CHANGE
    assert change.gate is Gate.PASS


def test_a_single_base_run_against_identical_seeds_is_judged_without_a_p_value_of_one() -> None:
    change = compare_metric("accuracy", 0.9, Samples((0.85, 0.85, 0.85)), True, ACCURACY_GATE[0])
    assert change.gate is Gate.REGRESSED
    assert change.outcome is Outcome.WORSE


# --- 4. directions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("test_neg_mean_squared_error", "higher"),  # scikit-learn's scorers negate losses
        ("neg_log_loss", "higher"),
        ("train_neg_root_mean_squared_error", "higher"),
        ("cv/test_neg_mean_absolute_error", "higher"),
        ("neg_brier_score", "higher"),
        ("brier_score", "lower"),  # a specific word beats the generic "score"
        ("brier_score_loss", "lower"),
        ("val.brier_score", "lower"),
        ("hinge_score", "lower"),
        ("f1_score", "higher"),
        ("r2_score", "higher"),
        ("score", "higher"),
        ("recall_neg", "higher"),  # the negative class's recall: not a negated loss
        ("precision.neg", "higher"),
        ("mean_squared_error", "lower"),
    ],
)
def test_directions_of_scikit_learn_scorers(name: str, expected: str) -> None:
    assert guess_direction(name) == expected


def test_an_improving_negated_mse_is_not_a_regression() -> None:
    rule = Threshold("test_neg_*", max_drop=0.05)
    base = Samples((-0.31, -0.29, -0.30, -0.32, -0.28))
    head = Samples((-0.21, -0.19, -0.20, -0.22, -0.18))
    change = compare_metric("test_neg_mean_squared_error", base, head, True, rule)
    assert change.gate is Gate.PASS
    assert change.outcome is Outcome.BETTER


# --- 5. a gate that cannot be checked does not pass silently ---------------------------------------


def test_a_gated_metric_nan_on_both_sides_fails() -> None:
    change = compare_metric("loss", NAN, NAN, True, Threshold("loss", max_drop=0.1))
    assert change.gate is Gate.REGRESSED
    assert "NaN" in change.failures[0]


def test_a_gated_metric_infinite_on_both_sides_in_the_bad_direction_fails() -> None:
    change = compare_metric("loss", INF, INF, True, Threshold("loss", max_drop=0.1))
    assert change.gate is Gate.REGRESSED
    assert "Infinity" in change.failures[0]


def test_a_nan_seed_at_head_fails_the_gate() -> None:
    change = compare_metric(
        "f1", Samples((0.9, 0.91, 0.92)), Samples((0.9, NAN, 0.92)), True, Threshold("f1", max_drop=0.01)
    )
    assert change.gate is Gate.REGRESSED


def test_a_nan_seed_at_the_base_leaves_the_gate_unchecked_and_inconclusive() -> None:
    result = diff(
        {"f1": Samples((0.90, NAN, 0.92))},
        {"f1": Samples((0.85, 0.86, 0.855))},
        (Threshold("f1", max_drop=0.01),),
    )
    f1 = result.metrics[0]
    assert f1.gate is Gate.INCONCLUSIVE
    assert "cannot be checked" in f1.inconclusive[0]
    assert result.verdict is Verdict.INCONCLUSIVE


def test_a_gate_leaving_nan_for_a_number_is_inconclusive_and_one_reaching_nan_fails() -> None:
    rule = Threshold("loss", max_drop=0.1)
    assert compare_metric("loss", NAN, 0.3, True, rule).gate is Gate.INCONCLUSIVE
    assert compare_metric("loss", 0.3, NAN, True, rule).gate is Gate.REGRESSED


def test_leaving_infinity_for_a_number_still_passes() -> None:
    assert compare_metric("loss", INF, 0.3, True, Threshold("loss", max_drop=0.1)).gate is Gate.PASS


# --- 6. one-sided gates, two-sided intervals ---------------------------------------------------------


def test_a_failed_gate_says_its_test_is_one_sided_and_gives_the_one_sided_bound() -> None:
    base = Samples((0.900, 0.910, 0.920, 0.905, 0.915))
    head = Samples((0.891, 0.901, 0.911, 0.896, 0.898))
    change = compare_metric("accuracy", base, head, True, Threshold("accuracy", max_drop=0.005))
    assert change.gate is Gate.REGRESSED
    sentence = change.failures[0]
    assert "one-sided p = 0.03" in sentence
    assert change.evidence is not None and change.evidence.high is not None and change.evidence.high > 0  # 95% CI
    assert change.direction is not None and change.alpha is not None
    bound = change.evidence.bound(change.direction, change.alpha)  # the gate's own test
    assert bound is not None and bound < 0  # the one-sided 95% bound excludes 0, as the test does
    assert "at least" in sentence


# --- 7. ungated marks are not corrected --------------------------------------------------------------


def test_the_rules_say_marks_are_uncorrected_and_name_no_correction_that_was_not_applied() -> None:
    runs = {f"u{i}": Samples((0.9, 0.91, 0.89)) for i in range(3)}
    heads = {f"u{i}": Samples((0.8, 0.81, 0.79)) for i in range(3)}
    gated = {"m1": Samples((0.9, 0.91, 0.89)), "m2": Samples((0.9, 0.91, 0.89))}  # nothing exceeded
    result = diff(
        runs | gated,
        heads | gated,
        (Threshold("m*", max_drop=0.01, direction="higher"), Threshold("u*", direction="higher")),
        statistics=StatisticsConfig(),
    )
    assert not result.corrected
    text = "\n".join(rules_section(result))
    assert "Benjamini-Hochberg" not in text
    assert "not corrected" in text
