"""What a comparison knows about one metric's change, and the decisions common to every source.

An :class:`Evidence` carries the change as the evidence measured it, its confidence interval, the
one-sided p-values of an increase and of a decrease, and the standard error from which the smallest
detectable effect follows. Which of the two p-values means "worse" depends on the metric's
direction, which only the diff knows; so the evidence stays direction-free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The statistics defaults, written once (cml_bot.config's StatisticsConfig uses them): this module
# imports neither numpy nor scipy, so reading the config does not load them.
DEFAULT_ALPHA = 0.05  # one-sided, in the bad direction, per gate (before the correction)
CORRECTIONS = ("bh", "none")  # across gated metrics: Benjamini-Hochberg or none
DEFAULT_CORRECTION = "bh"
DEFAULT_RESAMPLES = 2000  # paired bootstrap resamples
DEFAULT_SEED = 20_240_601  # the bootstrap's seed, fixed: the same inputs give the same intervals in every run
POWER = 0.8  # the power at which the detectable effect is stated
CONFIDENCE = 0.95  # confidence intervals shown in the report


@dataclass(frozen=True)
class Evidence:
    """The statistical evidence about one metric's change (head minus base)."""

    source: str  # "examples" (paired per-example results) | "runs" (repeated values) | "history"
    rule: str  # how it was judged, one sentence for the report (trusted text, no markdown)
    delta: float  # head - base as this evidence measured it
    low: float | None  # confidence interval of delta (CONFIDENCE, two-sided); None when unknown
    high: float | None
    p_up: float  # one-sided p-value of "head is higher than base"
    p_down: float  # one-sided p-value of "head is lower than base"
    se: float | None  # standard error of delta, for the detectable effect
    count: int  # examples, runs or history points behind it
    percent_points: bool = False  # a proportion (accuracy...): shown in percentage points
    noise: float | None = None  # history: main's usual variation of a change (±, CONFIDENCE)

    def p_worse(self, direction: str) -> float:
        return self.p_down if direction == "higher" else self.p_up

    def p_better(self, direction: str) -> float:
        return self.p_up if direction == "higher" else self.p_down

    def p_two_sided(self) -> float:
        return min(1.0, 2 * min(self.p_up, self.p_down))


def detectable_effect(se: float | None, alpha: float = DEFAULT_ALPHA, power: float = POWER) -> float | None:
    """The smallest true change a one-sided test at ``alpha`` finds with probability ``power``:
    (z(1 - alpha) + z(power)) x SE, the normal approximation used for sample sizes (Chow, Shao &
    Wang, Sample Size Calculations in Clinical Research, ch. 3)."""
    if se is None or not math.isfinite(se):
        return None
    from scipy.special import ndtri  # the normal quantile function (scipy.stats.norm.ppf calls it)

    return float(ndtri(1 - alpha) + ndtri(power)) * se  # Python floats: a huge se gives inf, quietly


def adjust_p_values(p_values: Sequence[float], correction: str) -> list[float]:
    """p-values adjusted across the gated metrics of one report.

    ``bh``: Benjamini-Hochberg (scipy's ``false_discovery_control``). Under a no-op change every
    null hypothesis holds, and then BH also bounds the chance of any false alarm by alpha, which is
    what keeps a report's verdict honest; with real regressions it keeps more power than Holm.
    ``none``: as they are.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}")
    if correction == "none" or len(p_values) < 2:
        return [float(p) for p in p_values]
    from scipy.stats import false_discovery_control

    return [float(p) for p in false_discovery_control(list(p_values), method="bh")]
