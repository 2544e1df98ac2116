"""Spreads and differences at float-rounding level are zero, not noise to divide by (statistics audit)."""

from __future__ import annotations

import math

import pytest

from cml_bot.stats.evidence import detectable_effect
from cml_bot.stats.history import change_points, compare_with_history, history_noise
from cml_bot.stats.runs import compare_runs


@pytest.mark.parametrize("value", [0.9, 0.9649, 0.95, 0.1 + 0.2, 123.456, 1e-7, 0.0])
def test_a_flat_history_has_no_change_points_whatever_its_value(value: float) -> None:
    assert change_points([value] * 10) == ()


def test_a_history_jittering_by_float_rounding_is_flat() -> None:
    values = [0.3, 0.1 + 0.2, 0.3, 0.3, 0.1 + 0.2, 0.3, 0.3, 0.3, 0.1 + 0.2, 0.3]
    assert change_points(values) == ()
    noise = history_noise(values)
    assert noise is not None and noise.sigma == 0 and noise.segment == 10


def test_a_real_step_in_an_otherwise_flat_history_is_still_found() -> None:
    assert change_points([0.9] * 6 + [0.95] * 6) == (6,)
    assert change_points([0.9649] * 6 + [0.9650] * 6) == (6,)


@pytest.mark.parametrize("value", [0.9, 0.9649, 0.95])
def test_a_flat_history_measures_zero_noise_on_every_point(value: float) -> None:
    noise = history_noise([value] * 8)
    assert noise is not None
    assert noise.sigma == 0 and noise.segment == 8


def test_a_float_noise_difference_against_a_flat_history_is_no_change() -> None:
    noise = history_noise([0.9] * 8)
    assert noise is not None
    for head in (0.89999999, 0.9 + 1e-12, 0.9):
        comparison = compare_with_history(0.9, head, noise)
        assert comparison is not None
        assert comparison.p_up == comparison.p_down == 1.0


def test_a_real_difference_against_a_flat_history_is_certain() -> None:
    level = 0.9123456789  # written at full precision: no noise can hide in it
    noise = history_noise([level] * 8)
    assert noise is not None
    comparison = compare_with_history(level, level - 0.05, noise)
    assert comparison is not None
    assert comparison.p_down == 0.0 and comparison.p_up == 1.0


def test_a_flat_history_written_rounded_is_trusted_down_to_half_a_step() -> None:
    noise = history_noise([0.9] * 8)
    assert noise is not None
    far = compare_with_history(0.9, 0.85, noise)  # five steps of 0.01 (0.85 has two decimals)
    near = compare_with_history(0.9, 0.89, noise)  # one step
    assert far is not None and near is not None
    assert far.p_down < 0.001 and far.se == pytest.approx(0.005 * 2**0.5)
    assert near.p_down > 0.05


def test_identical_runs_on_each_side_give_an_exact_difference() -> None:
    result = compare_runs([0.9] * 3, [0.85] * 3)
    assert result is not None
    assert result.se == 0
    assert result.p_down == 0.0 and result.p_up == 1.0
    assert result.low == result.high == pytest.approx(-0.05)


def test_identical_runs_that_differ_by_float_rounding_are_no_change() -> None:
    result = compare_runs([0.3] * 3, [0.1 + 0.2] * 3)
    assert result is not None
    assert result.p_down == result.p_up == 1.0


def test_identical_runs_that_agree_give_nothing_to_test() -> None:
    assert compare_runs([0.9] * 3, [0.9] * 2) is None


def test_runs_whose_spread_is_float_rounding_count_as_identical() -> None:
    result = compare_runs([0.3, 0.1 + 0.2, 0.3], [0.25] * 3)
    assert result is not None and result.se == 0 and result.p_down == 0.0


def test_a_single_run_against_identical_runs_is_exact_too() -> None:
    result = compare_runs([0.9], [0.85, 0.85, 0.85])
    assert result is not None and result.se == 0 and result.p_down == 0.0


def test_runs_with_variation_are_tested_as_before() -> None:
    result = compare_runs([0.90, 0.91, 0.92], [0.85, 0.86, 0.855])
    assert result is not None and result.se > 0 and 0 < result.p_down < 0.01
    assert math.isfinite(result.df) and result.df > 1


def test_no_detectable_effect_is_stated_without_noise() -> None:
    assert detectable_effect(0.0) is None
    assert detectable_effect(0.01) == pytest.approx((1.6449 + 0.8416) * 0.01, rel=1e-3)


def test_written_resolution_is_the_finest_last_decimal_or_none_at_full_precision() -> None:
    from cml_bot.stats.history import written_resolution

    assert written_resolution([0.912, 0.91]) == 0.001
    assert written_resolution([3.0, 12.0]) == 0.1  # repr writes one decimal
    assert written_resolution([0.1 + 0.2]) == 0.0  # 0.30000000000000004: a float's own precision
    assert written_resolution([float("nan")]) == 0.0
