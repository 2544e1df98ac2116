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

from cml_bot.stats.evidence import exact_p_values, float_noise
from cml_bot.stats.quiet import expected_float_warnings


@dataclass(frozen=True)
class RunsComparison:
    delta: float  # mean(head) - mean(base)
    low: float
    high: float
    p_up: float  # one-sided p-value of "head's mean is higher"
    p_down: float
    se: float  # 0: no variation at either side, the difference is exact
    welch: bool  # False: Student's pooled test (one side has a single run)
    df: float = math.inf  # degrees of freedom of the t reference (Welch's approximation)


def compare_runs(base: Sequence[float], head: Sequence[float], confidence: float = 0.95) -> RunsComparison | None:
    """None when there is nothing to test: fewer than three runs in all, a value that is not
    finite, or the same value in every run of both sides (no variation, and nothing changed).

    Without variation at either side (deterministic training, or a single run against identical
    ones; a spread within float rounding counts as none) there is no noise to test against: the
    difference of the means is exact. Its p-values are then 0 in its direction and 1 in the other
    (both 1 when it is itself float rounding), its interval is the point and its se 0.
    """
    base_values = [float(v) for v in base]
    head_values = [float(v) for v in head]
    if not base_values or not head_values or len(base_values) + len(head_values) < 3:
        return None
    if not all(math.isfinite(v) for v in (*base_values, *head_values)):
        return None
    welch = len(base_values) > 1 and len(head_values) > 1
    if len(set(base_values + head_values)) == 1:
        return None
    delta = sum(head_values) / len(head_values) - sum(base_values) / len(base_values)
    if not math.isfinite(delta):
        return None  # the means overflow (values near 1e308): no claim
    rounding = float_noise(*base_values, *head_values)
    if max(base_values) - min(base_values) <= rounding and max(head_values) - min(head_values) <= rounding:
        return RunsComparison(delta, delta, delta, *exact_p_values(delta, rounding), 0.0, welch)
    from scipy.stats import ttest_ind

    with expected_float_warnings():  # 1e308 overflows; nearly identical runs lose precision
        up = ttest_ind(head_values, base_values, equal_var=not welch, alternative="greater")
        down = ttest_ind(head_values, base_values, equal_var=not welch, alternative="less")
        interval = ttest_ind(head_values, base_values, equal_var=not welch).confidence_interval(confidence)
        statistic = float(up.statistic)
        se = delta / statistic if statistic != 0 else _pooled_se(base_values, head_values, welch)
    if not all(math.isfinite(float(v)) for v in (up.pvalue, down.pvalue, interval.low, interval.high)):
        return None  # defensive: one side varies, so scipy's answer is finite
    return RunsComparison(
        delta,
        float(interval.low),
        float(interval.high),
        float(up.pvalue),
        float(down.pvalue),
        abs(se),
        welch,
        float(up.df),
    )


def _pooled_se(base: Sequence[float], head: Sequence[float], welch: bool) -> float:
    from scipy.stats import tstd

    if welch:
        return math.sqrt(float(tstd(base)) ** 2 / len(base) + float(tstd(head)) ** 2 / len(head))
    many = base if len(base) > 1 else head
    return float(tstd(many)) * math.sqrt(1 / len(base) + 1 / len(head))
