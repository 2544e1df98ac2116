"""A metric's usual variation on the base branch, from its recorded history.

Between commits of the base branch a metric moves for two reasons: noise (seeds, data order,
hardware) and real changes that were merged. Change points separate the two: the history is cut
where its level shifts, by PELT (Killick, Fearnhead & Eckley 2012) as implemented in ruptures
(Truong, Oudre & Vayatis 2020), with the least-squares cost and a penalty of 4 σ² log n per change,
twice the Schwarz criterion's 2 σ² log n (a mean and a location per change), with σ estimated from
successive differences, which a level shift barely touches. The factor was chosen on simulated
histories of pure noise and of one shift (see tests/test_stats.py): about 4% false change points on
20 or more points (14% on 10), and 3σ shifts found 98% of the time on 20 points.
Only the points after the last change point estimate the noise, robustly: points further than
3.5 robust standard deviations from the median (the MAD scaled to a standard deviation, scipy's
``median_abs_deviation(scale="normal")``; the outlier rule of Iglewicz & Hoaglin 1993) are left
out, so one bad run does not inflate it, and σ is the standard deviation of the others. The MAD
alone would be robust too, but it is 37% as efficient as the standard deviation on normal data
(Rousseeuw & Croux 1993): on the handful of commits a history has, it would cost much power.

A change between two single runs then has standard error σ√2 (both are one draw of that noise);
"within main's usual variation" means inside ± t(1 - α/2) σ√2, with Student's t on the m - 1
degrees of freedom of σ's m points (the normal distribution would call too many changes real: σ
rests on few points).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cml_bot.stats.evidence import exact_p_values, float_noise
from cml_bot.stats.quiet import expected_float_warnings

MIN_SEGMENT = 5  # points after the last change point needed to estimate the noise
OUTLIER_Z = 3.5  # robust z-score beyond which a recorded run is left out of the noise
MIN_CHANGE_SIZE = 2  # shortest segment PELT may cut
PENALTY_FACTOR = 4.0  # x sigma^2 log n per change point


@dataclass(frozen=True)
class HistoryNoise:
    change_points: tuple[int, ...]  # indices where a new level starts (0 < i < len(values))
    segment: int  # points after the last change point
    sigma: float  # standard deviation of one run around its level, outliers left out
    level: float  # median of the last segment
    used: int = 0  # points behind sigma (the segment less its outliers)
    # The unit of the last decimal the segment's values are written to (0.001 for values rounded to 3
    # decimals), 0 at full float precision: noise up to half of it can hide in rounded values.
    resolution: float = 0.0


MAX_ROUNDED_DECIMALS = 8  # values written with more decimals than this carry a float's own precision


def written_resolution(values: Sequence[float]) -> float:
    """The unit of the last decimal all ``values`` are written to in their shortest form (``0.912``
    and ``0.91``: 0.001), or 0 when one needs more than :data:`MAX_ROUNDED_DECIMALS` decimals."""
    from cml_bot.numbers import written

    decimals = 0
    for value in values:
        exponent = written(float(value)).as_tuple().exponent
        if not isinstance(exponent, int):  # NaN or infinity: no resolution to speak of
            return 0.0
        decimals = max(decimals, -exponent)
        if decimals > MAX_ROUNDED_DECIMALS:
            return 0.0
    return 10.0**-decimals


def change_points(values: Sequence[float]) -> tuple[int, ...]:
    """Where the level of ``values`` shifts (indices of the first point of each new segment)."""
    import numpy as np  # here, not at the top: cml_bot.verdicts imports this module on every run

    series = np.asarray([float(v) for v in values], dtype=np.float64)
    if len(series) < 2 * MIN_CHANGE_SIZE or not np.isfinite(series).all():
        return ()
    from scipy.stats import median_abs_deviation

    with expected_float_warnings():  # values near 1e308: differences and squares overflow
        # Differences within float rounding are no variation: a flat line's np.std is 1e-16, not 0,
        # for most values, and would make every rounding step a change.
        rounding = float_noise(*series)
        if float(np.ptp(series)) <= rounding:
            return ()
        steps = np.diff(series)
        sigma = float(median_abs_deviation(steps, scale="normal")) / math.sqrt(2)
        if sigma <= rounding:
            sigma = float(np.std(series)) / 10  # piecewise constant history: any step is a change
        penalty = PENALTY_FACTOR * sigma * sigma * math.log(len(series))
    if not np.isfinite(steps).all() or not math.isfinite(penalty) or penalty == 0:
        return ()  # beyond float range (ruptures' costs would overflow too): no change found
    import ruptures

    algorithm = ruptures.Pelt(model="l2", min_size=MIN_CHANGE_SIZE, jump=1).fit(series.reshape(-1, 1))
    ends = algorithm.predict(pen=penalty)
    return tuple(int(end) for end in ends[:-1])  # the last "end" is len(series)


def history_noise(values: Sequence[float]) -> HistoryNoise | None:
    """The noise of the latest level of ``values`` (oldest first), or None with too little history."""
    import numpy as np

    series = [float(v) for v in values if math.isfinite(float(v))]
    if len(series) < MIN_SEGMENT:
        return None
    points = change_points(series)
    start = points[-1] if points else 0
    segment = np.asarray(series[start:], dtype=np.float64)
    from scipy.stats import median_abs_deviation

    # Values near 1e308 overflow to inf (a level or a sigma): compare_with_history then makes no claim.
    with expected_float_warnings():
        level = float(np.median(segment))
        if len(segment) < MIN_SEGMENT:
            return HistoryNoise(points, len(segment), math.nan, level)
        rounding = float_noise(*segment)
        robust = float(median_abs_deviation(segment, scale="normal"))
        kept = segment[np.abs(segment - level) <= OUTLIER_Z * robust] if robust > rounding else segment
        if len(kept) < 3:
            kept = segment
        sigma = float(np.std(kept, ddof=1))
    # A flat history (deterministic training) has no noise; float rounding is not any.
    resolution = written_resolution(segment.tolist())
    return HistoryNoise(points, len(segment), 0.0 if sigma <= rounding else sigma, level, len(kept), resolution)


def hidden_noise(base: float, head: float, noise: HistoryNoise) -> float:
    """Half a step of the last decimal the history, the base and the head are all written to: run-to-
    run noise that small never shows in values rounded that way, so main's measured σ (0 for a flat
    rounded history) is not trusted below it. 0 when any of them carries a float's full precision."""
    compared = written_resolution((base, head))
    return min(noise.resolution, compared) / 2 if noise.resolution and compared else 0.0


@dataclass(frozen=True)
class HistoryComparison:
    delta: float
    se: float
    p_up: float
    p_down: float
    band: float  # ± this is main's usual variation of a change (two-sided, at the confidence level)
    df: float  # degrees of freedom of the t reference
    floor: float = 0.0  # the σ the values' rounding could hide (hidden_noise), when it was used


def compare_with_history(
    base: float, head: float, noise: HistoryNoise, confidence: float = 0.95
) -> HistoryComparison | None:
    """A single-run change judged against main's usual variation (Student's t, see the module)."""
    if not math.isfinite(noise.sigma) or not math.isfinite(base) or not math.isfinite(head):
        return None
    from scipy.stats import t

    delta = head - base
    hidden = hidden_noise(base, head, noise)
    floor = hidden if hidden > noise.sigma else 0.0
    se = max(noise.sigma, hidden) * math.sqrt(2)
    df = float(max(1, noise.used - 1))
    band = float(t.ppf(1 - (1 - confidence) / 2, df)) * se if se else 0.0
    rounding = float_noise(base, head, noise.level)
    if se == 0 or abs(delta) <= rounding:
        # Float rounding is no change; against a flat history at full precision a change is exact.
        return HistoryComparison(delta, se, *exact_p_values(delta, rounding), band, df, floor)
    return HistoryComparison(delta, se, float(t.sf(delta / se, df)), float(t.cdf(delta / se, df)), band, df, floor)
