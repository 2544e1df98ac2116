"""Repeated runs (several seeds, folds, ...): is the difference of the means more than noise?

Welch's t-test (unequal variances; scipy's ``ttest_ind(equal_var=False)``) with its confidence
interval of the difference of the means. When one side has a single run, its variance cannot be
estimated: Student's pooled test then takes the other side's variance for both (the single run is
assumed as noisy as the repeated ones), which is ``ttest_ind(equal_var=True)`` with one value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cml_bot.stats.quiet import expected_float_warnings


@dataclass(frozen=True)
class RunsComparison:
    delta: float  # mean(head) - mean(base)
    low: float
    high: float
    p_up: float  # one-sided p-value of "head's mean is higher"
    p_down: float
    se: float
    welch: bool  # False: Student's pooled test (one side has a single run)


def compare_runs(base: Sequence[float], head: Sequence[float], confidence: float = 0.95) -> RunsComparison | None:
    """None when there is nothing to test: fewer than two runs in all, or no variation at all."""
    base_values = [float(v) for v in base]
    head_values = [float(v) for v in head]
    if not base_values or not head_values or len(base_values) + len(head_values) < 3:
        return None
    if not all(math.isfinite(v) for v in (*base_values, *head_values)):
        return None
    welch = len(base_values) > 1 and len(head_values) > 1
    if len(set(base_values + head_values)) == 1:
        return None  # identical runs: no variance to test against (and nothing changed)
    from scipy.stats import ttest_ind

    with expected_float_warnings():  # 1e308 overflows; nearly identical runs lose precision
        up = ttest_ind(head_values, base_values, equal_var=not welch, alternative="greater")
        down = ttest_ind(head_values, base_values, equal_var=not welch, alternative="less")
        interval = ttest_ind(head_values, base_values, equal_var=not welch).confidence_interval(confidence)
        delta = sum(head_values) / len(head_values) - sum(base_values) / len(base_values)
        statistic = float(up.statistic)
        se = delta / statistic if statistic != 0 else _pooled_se(base_values, head_values, welch)
    if not all(math.isfinite(float(v)) for v in (up.pvalue, down.pvalue, interval.low, interval.high)):
        return None  # zero variance on both sides but different values: a t-test says nothing
    return RunsComparison(
        delta, float(interval.low), float(interval.high), float(up.pvalue), float(down.pvalue), abs(se), welch
    )


def _pooled_se(base: Sequence[float], head: Sequence[float], welch: bool) -> float:
    from scipy.stats import tstd

    if welch:
        return math.sqrt(float(tstd(base)) ** 2 / len(base) + float(tstd(head)) ** 2 / len(head))
    many = base if len(base) > 1 else head
    return float(tstd(many)) * math.sqrt(1 / len(base) + 1 / len(head))
