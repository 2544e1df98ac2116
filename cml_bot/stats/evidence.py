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
# Differences and spreads below this share of the values' magnitude are float rounding, not
# variation: a few units in the last place of a single-precision float (PyTorch and TensorBoard log
# float32, whose rounding is up to 6e-8 relative), and below the smallest difference between two
# values written with 6 significant digits (1e-6 relative at best).
FLOAT_NOISE = 5e-7


def float_noise(*values: float) -> float:
    """The largest difference between these values' kind of numbers that is only float rounding."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    return FLOAT_NOISE * max(finite, default=0.0)


def exact_p_values(delta: float, rounding: float) -> tuple[float, float]:
    """(p_up, p_down) of a difference known exactly (no run-to-run variation): 1 both ways when it
    is float rounding, else 0 in its direction and 1 in the other."""
    if abs(delta) <= rounding:
        return 1.0, 1.0
    return (0.0, 1.0) if delta > 0 else (1.0, 0.0)


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
    df: float | None = None  # degrees of freedom of a t reference (runs, history): one-sided bounds

    def p_worse(self, direction: str) -> float:
        return self.p_down if direction == "higher" else self.p_up

    def p_better(self, direction: str) -> float:
        return self.p_up if direction == "higher" else self.p_down

    def p_two_sided(self) -> float:
        return min(1.0, 2 * min(self.p_up, self.p_down))

    def bound(self, direction: str, alpha: float) -> float | None:
        """The one-sided (1 - alpha) confidence bound of the change on its good side: with that
        confidence, a higher-is-better metric changed by at most this (a lower-is-better one by at
        least). A gate's one-sided test at alpha rejects exactly when it is on the bad side of 0,
        which a two-sided interval at 1 - alpha need not show. None without a t reference (the
        bootstrap's and McNemar's p-values have no interval of the same level to match)."""
        if self.df is None or self.se is None or not math.isfinite(self.se) or not math.isfinite(self.delta):
            return None
        if self.se == 0:
            return self.delta
        from scipy.special import stdtrit  # Student's t quantile function (scipy.stats.t.ppf calls it)

        margin = float(stdtrit(self.df, 1 - alpha)) * self.se
        return self.delta + margin if direction == "higher" else self.delta - margin


def detectable_effect(se: float | None, alpha: float = DEFAULT_ALPHA, power: float = POWER) -> float | None:
    """The smallest true change a one-sided test at ``alpha`` finds with probability ``power``:
    (z(1 - alpha) + z(power)) x SE, the normal approximation used for sample sizes (Chow, Shao &
    Wang, Sample Size Calculations in Clinical Research, ch. 3)."""
    if se is None or not math.isfinite(se) or se <= 0:
        return None  # no noise (deterministic runs): any change is found, there is no size to state
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
