"""Paired comparisons on the same examples: McNemar's test and the paired bootstrap.

McNemar (1947) for paired accuracy: only the discordant examples count, ``fixed`` (base wrong, head
right) and ``broken`` (base right, head wrong). Under "no change" each discordant example is fixed or
broken with probability 1/2, so ``broken ~ Binomial(fixed + broken, 1/2)``. The exact conditional
test is conservative; the mid-p version (half the probability of the observed table) holds its
level much more closely and is the one recommended by Fagerland, Lydersen & Laake (2013).

The paired bootstrap (Efron & Tibshirani 1993, ch. 16) resamples *examples*, each carrying both
revisions' results, so the two sides stay paired. Every metric here is a function of sums over
examples (counts of true positives, sums of losses, ...), so a resample only needs how many times
each example was drawn: ``counts @ features`` gives every resample's sums at once. Examples with
identical results (the usual case for labels: (true, base, head) triples) are merged into cells
first and drawn as ``Multinomial(n, cell shares)``, which is exactly the same resampling and costs
nothing per example; see :func:`resample_counts`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cml_bot.stats.evidence import DEFAULT_RESAMPLES, DEFAULT_SEED

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Statistic = Callable[[FloatArray], FloatArray]  # (resamples x features) sums -> one value per resample

# Rough costs (seconds) per resample and cell / example, to pick the cheaper way to draw counts:
# numpy's multinomial draws one binomial per cell; index drawing is integers + bincount per example.
_MULTINOMIAL_COST = 2e-7
_INDEX_COST = 1.5e-8
_CHUNK_CELLS = 4_000_000  # resamples x cells (or examples) held in memory at once


@dataclass(frozen=True)
class McNemar:
    fixed: int  # base wrong, head right
    broken: int  # base right, head wrong
    p_down: float  # one-sided mid-p of "head is less accurate" (more broken than fixed)
    p_up: float  # one-sided mid-p of "head is more accurate"
    p_exact: float  # two-sided exact conditional p-value (conservative), for reference

    @property
    def p_two_sided(self) -> float:
        return min(1.0, 2 * min(self.p_up, self.p_down))


def mcnemar(fixed: int, broken: int) -> McNemar:
    """McNemar's test from the two discordant counts (mid-p one-sided, exact two-sided)."""
    if fixed < 0 or broken < 0:
        raise ValueError("counts must be >= 0")
    n = fixed + broken
    if n == 0:
        return McNemar(fixed, broken, 1.0, 1.0, 1.0)
    # scipy.special's binomial distribution functions (what scipy.stats.binom calls): bdtr(k, n, p)
    # = P(X <= k), bdtrc(k, n, p) = P(X > k). Not scipy.stats: it takes about a second to import, a
    # large share of a report's time (tests check these against scipy.stats.binom and binomtest).
    from scipy.special import bdtr, bdtrc

    def mid_p(k: int) -> float:  # P(X > k) + P(X = k) / 2 for X ~ Binomial(n, 1/2)
        at_k = float(bdtr(k, n, 0.5)) - (float(bdtr(k - 1, n, 0.5)) if k > 0 else 0.0)
        return float(bdtrc(k, n, 0.5)) + 0.5 * at_k

    p_down, p_up = mid_p(broken), mid_p(fixed)
    # Exact two-sided: Binomial(n, 1/2) is symmetric, so twice the smaller tail (scipy's binomtest).
    p_exact = 1.0 if fixed == broken else 2 * float(bdtr(min(fixed, broken), n, 0.5))
    return McNemar(fixed, broken, min(1.0, p_down), min(1.0, p_up), min(1.0, p_exact))


def resample_counts(frequencies: IntArray, resamples: int, seed: int) -> Iterator[IntArray]:
    """Bootstrap draws as counts per unit, in chunks of (resamples x units).

    A unit stands for ``frequencies[u]`` identical examples (a cell) or one example / one random
    group (frequency 1). Drawing ``n = sum(frequencies)`` examples with replacement is the same as
    ``Multinomial(n, frequencies / n)`` over the units; whichever of the two ways is cheaper is used.
    """
    rng = np.random.default_rng(seed)
    freq = np.asarray(frequencies, dtype=np.int64)
    units, n = len(freq), int(freq.sum())
    if units == 0 or n == 0:
        raise ValueError("nothing to resample")
    by_multinomial = units * _MULTINOMIAL_COST <= n * _INDEX_COST
    width = units if by_multinomial else max(units, n)
    chunk = max(1, min(resamples, _CHUNK_CELLS // width))
    unit_of_example = None if by_multinomial or units == n else np.repeat(np.arange(units), freq)
    shares = freq / n
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        if by_multinomial:
            yield rng.multinomial(n, shares, size=size).astype(np.int64)
        else:
            picks = rng.integers(0, n, size=(size, n), dtype=np.int32 if n < 2**31 else np.int64)
            if unit_of_example is not None:
                picks = unit_of_example[picks]
            flat = picks.astype(np.int64) + (np.arange(size, dtype=np.int64) * units)[:, None]
            yield np.bincount(flat.ravel(), minlength=size * units).reshape(size, units)
        done += size


@dataclass(frozen=True)
class BootstrapResult:
    base: float  # the statistic on all examples
    head: float
    delta: float  # head - base
    low: float  # percentile confidence interval of delta
    high: float
    p_up: float  # one-sided bootstrap p-value of "head is higher"
    p_down: float
    se: float  # standard deviation of the resampled deltas
    resamples: int  # resamples with a defined statistic


def paired_bootstrap(
    units: FloatArray,
    frequencies: IntArray,
    statistics: Mapping[str, tuple[Statistic, Statistic]],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> dict[str, BootstrapResult]:
    """Percentile bootstrap of ``head - base`` for statistics of per-unit sums, all on the same resamples.

    ``units`` holds, per unit, the features the statistics sum (one row per cell or example);
    ``statistics`` maps a name to its (base, head) statistic, each mapping sums ``(k x features)`` to
    ``k`` values. The one-sided p-values are the share of resampled deltas on the other side of zero,
    ``(1 + #{delta* <= 0}) / (B + 1)`` for "higher" (Davison & Hinkley 1997, sec. 4.4), so they agree
    with the percentile interval.
    """
    totals, sums = resampled_sums(units, frequencies, resamples, seed)
    return summarize(totals, sums, statistics, confidence)


def resampled_sums(
    units: FloatArray, frequencies: IntArray, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> tuple[FloatArray, FloatArray]:
    """The features' sums over all units (1 x features) and over each resample (resamples x features)."""
    freq = np.asarray(frequencies, dtype=np.int64)
    totals = (freq.astype(np.float64) @ units)[None, :]
    sums = np.concatenate([counts.astype(np.float64) @ units for counts in resample_counts(freq, resamples, seed)])
    return totals, sums


def summarize(
    totals: FloatArray,
    sums: FloatArray,
    statistics: Mapping[str, tuple[Statistic, Statistic]],
    confidence: float = 0.95,
) -> dict[str, BootstrapResult]:
    """Each statistic's value, interval and p-values from the sums of :func:`resampled_sums`."""
    results = {}
    for name, (base_statistic, head_statistic) in statistics.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            base, head = float(base_statistic(totals)[0]), float(head_statistic(totals)[0])
            deltas = head_statistic(sums) - base_statistic(sums)
        results[name] = _summary(base, head, deltas, confidence)
    return results


def _summary(base: float, head: float, deltas: FloatArray, confidence: float) -> BootstrapResult:
    deltas = deltas[np.isfinite(deltas)]
    count = len(deltas)
    if count < 2:
        nan = math.nan
        return BootstrapResult(base, head, head - base, nan, nan, 1.0, 1.0, nan, count)
    tail = (1 - confidence) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    p_up = (1 + int(np.count_nonzero(deltas <= 0))) / (count + 1)
    p_down = (1 + int(np.count_nonzero(deltas >= 0))) / (count + 1)
    return BootstrapResult(
        base, head, head - base, float(low), float(high), min(1.0, p_up), min(1.0, p_down), float(deltas.std()), count
    )
