"""Compare head with base metrics and params under thresholds -> a verdict (pure).

Direction: each metric is "higher" or "lower" is better, from a threshold rule or guessed from the
name (loss, error, rmse... lower; accuracy, f1, auc... higher: :data:`LOWER_WORDS`,
:data:`HIGHER_WORDS`). Every part of the name counts, the last first, so ``roc_auc.test`` and
``test/roc_auc`` are both higher-is-better; unknown names have no direction and show only the
change. Gates come only from ``thresholds`` in the config:

- ``max_drop``: the metric may worsen by at most this much (absolute, or ``"2%"`` of the base value);
- ``min`` / ``max``: absolute bounds on the head value, checked even without a baseline.

Repeated values (several seeds) are compared by their means, and a worsening counts as a regression
only when it also exceeds the noise: twice the standard error of the difference of the means
(``2 * sqrt(s_base^2/n_base + s_head^2/n_head)``). That rule is stated in the report.
"""

from __future__ import annotations

import enum
import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from cml_bot.config import Threshold
from cml_bot.metrics import Samples, Value
from cml_bot.model import Verdict

NOISE_RULE = "a change counts only when it exceeds 2 × the standard error of the difference of the means"

# Words of metric names whose values are better lower (documented in README, "Directions").
LOWER_WORDS = frozenset(
    [
        *("loss", "losses", "error", "err", "errors", "cost", "regret", "risk"),
        *("rmse", "mse", "mae", "mape", "smape", "msle", "rmsle", "medae", "mdae", "mdape", "rmsd", "huber"),
        *("logloss", "crossentropy", "nll", "perplexity", "ppl", "bpc", "bpd", "brier", "hinge", "hamming"),
        *("wer", "cer", "ter", "fid", "fpr", "fnr", "far", "frr", "eer"),
        *("divergence", "kl", "distance", "latency", "time", "duration", "seconds", "ms"),
    ]
)
# Words of metric names whose values are better higher.
HIGHER_WORDS = frozenset(
    [
        *("acc", "accuracy", "f1", "f1score", "fbeta", "f05", "f2", "auc", "roc", "rocauc", "auroc", "aupr", "auprc"),
        *("precision", "prec", "recall", "rec", "r2", "rsquared", "r2score", "ap", "map", "avgprec", "mcc"),
        *("iou", "miou", "dice", "jaccard", "bleu", "sacrebleu", "chrf", "rouge", "meteor", "psnr", "ssim"),
        *("score", "tpr", "tnr", "specificity", "sensitivity", "ndcg", "mrr", "hit", "hits", "kappa"),
        *("exactmatch", "em", "top1", "top5", "throughput", "fps", "qps"),
    ]
)
_NUMBERED = re.compile(r"^([a-z]+?)(?:@?\d+)$")  # map50, ndcg10, recall5: the word before the number


class Status(str, enum.Enum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    NEW = "new"
    REMOVED = "removed"
    MISSING = "missing"  # its file is missing or malformed in this change (``MetricChange.missing``)


@dataclass(frozen=True)
class MetricChange:
    name: str
    base: Value | None  # None with status NEW
    head: Value | None  # None with status REMOVED
    status: Status
    direction: str | None = None  # "higher" | "lower" | None
    delta: float | None = None  # head - base, numeric metrics only
    relative: float | None = None  # delta / |base|, None when base is 0
    improved: bool | None = None  # None: no direction, no change or not numeric
    within_noise: bool = False  # repeated values whose change is smaller than the noise
    failures: tuple[str, ...] = ()  # one sentence per failed gate
    gated: bool = False  # a threshold rule with a gate applies to this metric
    missing: str | None = None  # with status MISSING: why its file gave nothing (one line)


@dataclass(frozen=True)
class ParamChange:
    name: str
    base: Value | None
    head: Value | None
    status: Status


@dataclass(frozen=True)
class Diff:
    metrics: tuple[MetricChange, ...]
    params: tuple[ParamChange, ...]
    has_baseline: bool
    verdict: Verdict

    @property
    def regressions(self) -> tuple[MetricChange, ...]:
        return tuple(m for m in self.metrics if m.failures)

    @property
    def uses_noise_rule(self) -> bool:
        return any(isinstance(m.head, Samples) or isinstance(m.base, Samples) for m in self.metrics)


def guess_direction(name: str) -> str | None:
    """Direction from the metric's name parts, the last first, each split into words
    (``val.top1_acc`` -> acc; ``roc_auc.test`` -> test says nothing, roc_auc -> auc)."""
    for part in reversed(re.split(r"[.:/]", name.lower())):
        words = [w for w in re.split(r"[^a-z0-9]+", part) if w]
        joined = "".join(words)
        for word in (*words[::-1], joined, *(m.group(1) for w in words[::-1] if (m := _NUMBERED.match(w)))):
            if word in LOWER_WORDS:
                return "lower"
            if word in HIGHER_WORDS:
                return "higher"
    return None


def rule_for(name: str, thresholds: Sequence[Threshold]) -> Threshold | None:
    """The first rule whose pattern matches ``name`` exactly, else the first glob match."""
    for rule in thresholds:
        if rule.pattern == name:
            return rule
    for rule in thresholds:
        if fnmatch.fnmatchcase(name, rule.pattern):
            return rule
    return None


def numeric(value: Value | None) -> float | None:
    """The number a value stands for (a mean for repeated values), or None for text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Samples):
        return value.mean
    return None


def _same(base: Value | None, head: Value | None) -> bool:
    if isinstance(base, float) and isinstance(head, float) and math.isnan(base) and math.isnan(head):
        return True
    return base == head


def compare_metric(
    name: str,
    base: Value | None,
    head: Value | None,
    has_baseline: bool,
    rule: Threshold | None,
    missing: str | None = None,
) -> MetricChange:
    gated = rule is not None and any(v is not None for v in (rule.max_drop, rule.max_drop_pct, rule.min, rule.max))
    if head is None and missing is not None:
        # Its file is missing or malformed in this change: not removed, just not known; a gate on
        # it cannot pass.
        direction = (rule.direction if rule else None) or guess_direction(name)
        failures = (f"is missing in this change ({missing})",) if gated else ()
        return MetricChange(
            name, base, None, Status.MISSING, direction, failures=failures, gated=gated, missing=missing
        )
    change = _compare(name, base, head, has_baseline, rule)
    return replace(change, gated=gated) if gated else change


def missing_metrics(
    base: Mapping[str, Value],
    base_origins: Mapping[str, str],
    head: Mapping[str, Value],
    head_problems: Mapping[str, str],
) -> dict[str, str]:
    """Base metrics absent from this change because their file is missing or malformed here:
    name -> the problem. Without ``base_origins`` (results recorded by an older cml-bot) every
    absent metric is blamed on the problems there are."""
    if not head_problems:
        return {}
    everything = "; ".join(head_problems.values())
    found = {}
    for name in base:
        if name in head:
            continue
        origin = base_origins.get(name)
        if origin is None:
            found[name] = everything
        elif origin in head_problems:
            found[name] = head_problems[origin]
    return found


def _compare(
    name: str, base: Value | None, head: Value | None, has_baseline: bool, rule: Threshold | None
) -> MetricChange:
    direction = (rule.direction if rule else None) or guess_direction(name)
    has_drop_gate = rule is not None and (rule.max_drop is not None or rule.max_drop_pct is not None)
    if head is None:
        # A gated metric that this change no longer produces cannot be said to pass.
        gated = rule is not None and (has_drop_gate or rule.min is not None or rule.max is not None)
        missing = ("is missing in this change",) if gated else ()
        return MetricChange(name, base, None, Status.REMOVED, direction, failures=missing)
    failures = list(_bound_failures(head, rule))
    if has_drop_gate and direction is None and rule is not None and rule.pattern == name:
        # Named explicitly but with no way to tell better from worse: say so instead of ignoring it.
        failures.append("has max_drop but no direction: set direction: higher or lower")
    if base is None:
        status = Status.NEW if has_baseline else Status.UNCHANGED
        return MetricChange(name, None, head, status, direction, failures=tuple(failures))
    status = Status.UNCHANGED if _same(base, head) else Status.CHANGED
    b, h = numeric(base), numeric(head)
    if b is None or h is None:
        if has_drop_gate and b is not None and h is None:
            failures.append("is not a number any more")
        return MetricChange(name, base, head, status, direction, failures=tuple(failures))
    delta = h - b
    relative = delta / abs(b) if b != 0 and math.isfinite(b) and math.isfinite(delta) else None
    worsening = None
    improved = None
    # Leaving Infinity is judged (loss inf -> 0.3 is better); reaching it is left to the gates.
    if direction is not None and not math.isnan(delta) and math.isfinite(h):
        signed = -delta if direction == "higher" else delta
        improved = None if signed == 0 else signed < 0
        worsening = signed if math.isfinite(signed) else None  # gates treat Infinity on their own
    within_noise = False
    noise = _noise(base, head)
    if noise is not None and worsening is not None and abs(worsening) <= noise:
        within_noise, improved = True, None
    if rule is not None and direction is not None and not within_noise:
        failures.extend(_drop_failures(b, h, worsening, rule, direction))
    return MetricChange(name, base, head, status, direction, delta, relative, improved, within_noise, tuple(failures))


def _noise(base: Value, head: Value) -> float | None:
    if not isinstance(base, Samples) and not isinstance(head, Samples):
        return None
    variance = 0.0
    for side in (base, head):
        if isinstance(side, Samples) and side.n > 1:
            variance += side.std**2 / side.n
    return 2 * math.sqrt(variance)


def _bound_failures(head: Value, rule: Threshold | None) -> list[str]:
    if rule is None or (rule.min is None and rule.max is None):
        return []
    value = numeric(head)
    if value is None:
        return [f"is not a number (bounds {_bounds(rule)})"]
    if math.isnan(value):
        return [f"is NaN (bounds {_bounds(rule)})"]
    failures = []
    if rule.min is not None and value < rule.min:
        failures.append(f"{_num(value)} is below the minimum {_num(rule.min)}")
    if rule.max is not None and value > rule.max:
        failures.append(f"{_num(value)} is above the maximum {_num(rule.max)}")
    return failures


def _drop_failures(base: float, head: float, worsening: float | None, rule: Threshold, direction: str) -> list[str]:
    if rule.max_drop is None and rule.max_drop_pct is None:
        return []
    if math.isnan(head) and not math.isnan(base):
        return ["became NaN"]
    if worsening is None:
        if math.isinf(head) and head != base and (head > 0) == (direction == "lower"):
            return [f"became {_num(head)}"]
        return []
    word = "dropped" if direction == "higher" else "rose"
    failures = []
    if rule.max_drop is not None and _exceeds(worsening, rule.max_drop):
        failures.append(f"{word} by {_num(worsening)} (allowed {_num(rule.max_drop)})")
    if rule.max_drop_pct is not None and base != 0 and math.isfinite(base):
        pct = worsening / abs(base) * 100
        if _exceeds(pct, rule.max_drop_pct):
            failures.append(f"{word} by {pct:.2f}% (allowed {_num(rule.max_drop_pct)}%)")
    return failures


def _exceeds(value: float, allowed: float) -> bool:
    """``value > allowed`` beyond float rounding: 0.90 -> 0.89 is a drop of exactly 0.01."""
    return value > allowed and not math.isclose(value, allowed, rel_tol=1e-9, abs_tol=1e-12)


def _bounds(rule: Threshold) -> str:
    parts = []
    if rule.min is not None:
        parts.append(f"min {_num(rule.min)}")
    if rule.max is not None:
        parts.append(f"max {_num(rule.max)}")
    return ", ".join(parts)


def _num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return f"{value:.6g}"


def diff(
    base_metrics: Mapping[str, Value] | None,
    head_metrics: Mapping[str, Value],
    thresholds: Sequence[Threshold] = (),
    base_params: Mapping[str, Value] | None = None,
    head_params: Mapping[str, Value] | None = None,
    missing: Mapping[str, str] | None = None,
) -> Diff:
    """Compare head with base. ``base_metrics=None`` means there is no baseline at all;
    ``missing`` names metrics whose file is missing or malformed in this change (see
    :func:`missing_metrics`)."""
    has_baseline = base_metrics is not None
    base = base_metrics or {}
    gone = missing or {}
    names = list(head_metrics) + [n for n in base if n not in head_metrics]
    metrics = tuple(
        compare_metric(
            name, base.get(name), head_metrics.get(name), has_baseline, rule_for(name, thresholds), gone.get(name)
        )
        for name in names
    )
    params = diff_params(base_params or {}, head_params or {}, has_baseline)
    if any(m.failures for m in metrics):
        verdict = Verdict.REGRESSED
    elif not has_baseline:
        verdict = Verdict.NO_BASELINE
    else:
        verdict = Verdict.PASS
    return Diff(metrics=metrics, params=params, has_baseline=has_baseline, verdict=verdict)


def diff_params(base: Mapping[str, Value], head: Mapping[str, Value], has_baseline: bool) -> tuple[ParamChange, ...]:
    changes = []
    for name in list(head) + [n for n in base if n not in head]:
        if name not in head:
            changes.append(ParamChange(name, base[name], None, Status.REMOVED))
        elif name not in base:
            changes.append(ParamChange(name, None, head[name], Status.NEW if has_baseline else Status.UNCHANGED))
        else:
            status = Status.UNCHANGED if _same(base[name], head[name]) else Status.CHANGED
            changes.append(ParamChange(name, base[name], head[name], status))
    return tuple(changes)
