"""Compare head with base metrics and params under thresholds -> a verdict (pure).

Direction: each metric is "higher" or "lower" is better, from a threshold rule or guessed from the
name (loss, error, rmse... lower; accuracy, f1, auc... higher: :data:`LOWER_WORDS`,
:data:`HIGHER_WORDS`). Every part of the name counts, the last first, so ``roc_auc.test`` and
``test/roc_auc`` are both higher-is-better; unknown names have no direction and show only the
change. Gates come only from ``thresholds`` in the config:

- ``max_drop``: the metric may worsen by at most this much (absolute, or ``"2%"`` of the base value);
- ``min`` / ``max``: absolute bounds on the head value, checked even without a baseline.

Whether a change is real or noise is decided by the evidence there is about it, strongest first
(see docs/statistics.md): per-example results of both revisions (paired tests), repeated values
(several seeds: Welch's test), the metric's recorded history on the base branch, or none. With
evidence, a metric is *better*, *worse* or shows *no detectable change* (two-sided at alpha), and a
``max_drop`` gate *regresses* only when the worsening exceeds its threshold AND is significant
(one-sided at the gate's alpha, after the Benjamini-Hochberg correction across gated metrics); a
worsening beyond the threshold that is not significant is *inconclusive*. Without evidence the
change is shown without a claim and gates apply as configured. Bounds are never tested: they apply
to the value as it is.
"""

from __future__ import annotations

import enum
import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from cml_bot import numbers
from cml_bot.config import StatisticsConfig, Threshold
from cml_bot.metrics import Samples, Value, name_in_file
from cml_bot.model import Verdict
from cml_bot.stats.evidence import CONFIDENCE, Evidence, adjust_p_values, detectable_effect, float_noise

NOISE_RULE = "repeated values are compared with Welch's t-test (Student's when one side has a single run)"
CORRECTION_NAMES = {"bh": "Benjamini-Hochberg", "none": "no correction"}

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
# "score" says higher is better only when no other word of its part says more: brier_score is a loss.
_GENERIC_WORD = "score"
# scikit-learn's scorers negate losses and errors so that higher is better (neg_mean_squared_error,
# neg_log_loss, and cross_validate's test_neg_...): "neg" before a lower-word flips it.
_NEGATED = "neg"


class Status(str, enum.Enum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    NEW = "new"
    REMOVED = "removed"
    MISSING = "missing"  # its file is missing or malformed in this change (``MetricChange.missing``)


class Outcome(str, enum.Enum):
    """What the evidence says about a metric's change (None on a MetricChange: no evidence, no claim)."""

    BETTER = "better"
    WORSE = "worse"
    CHANGED = "changed"  # significant, but the metric has no direction
    NO_CHANGE = "no detectable change"


class Gate(str, enum.Enum):
    PASS = "pass"
    REGRESSED = "regressed"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Margin:
    """How far a gate that passed was from failing: ``room`` is what the metric could still lose
    (or its distance to the bound), in the rule's unit; with ``percent``, in % of the base value."""

    rule: str  # as configured: "max_drop 0.01", "max_drop 2%", "min 0.8", "max 0.5"
    room: float
    percent: bool = False
    allowed: float = 0.0  # the threshold's size (max_drop, or |bound|): room / allowed is the share left

    @property
    def share_left(self) -> float:
        """How much of the gate's allowance is left (0: at the limit); comparable across gates."""
        if self.allowed > 0:
            return self.room / self.allowed
        return 0.0 if self.room == 0 else math.inf


@dataclass(frozen=True)
class MetricChange:
    name: str
    base: Value | None  # None with status NEW
    head: Value | None  # None with status REMOVED
    status: Status
    direction: str | None = None  # "higher" | "lower" | None
    delta: float | None = None  # head - base, numeric metrics only
    relative: float | None = None  # delta / |base|, None when base is 0
    improved: bool | None = None  # None: no direction, no change, not numeric or no evidence for a claim
    within_noise: bool = False  # evidence, and no detectable change (outcome NO_CHANGE)
    failures: tuple[str, ...] = ()  # one sentence per failed gate
    gated: bool = False  # a threshold rule with a gate applies to this metric
    missing: str | None = None  # with status MISSING: why its file gave nothing (one line)
    evidence: Evidence | None = None  # the statistics behind the outcome; None: no claim
    outcome: Outcome | None = None
    inconclusive: tuple[str, ...] = ()  # one sentence per gate whose worsening may be noise
    alpha: float | None = None  # the one-sided level its drop gate is tested at
    p_adjusted: float | None = None  # the drop gate's p-value after the correction across gates
    detectable: float | None = None  # smallest worsening detectable at 80% power (alpha one-sided)
    exceeded: tuple[str, ...] = ()  # drop-gate sentences awaiting the test (internal to diff)
    margins: tuple[Margin, ...] = ()  # per gate not exceeded: how far it was from failing

    @property
    def gate(self) -> Gate | None:
        if not self.gated:
            return None
        if self.failures:
            return Gate.REGRESSED
        return Gate.INCONCLUSIVE if self.inconclusive else Gate.PASS


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
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    tested_gates: int = 0  # drop gates with evidence, the family the correction runs over
    corrected: bool = False  # their p-values were adjusted (only needed when a gate exceeded its threshold)

    @property
    def regressions(self) -> tuple[MetricChange, ...]:
        return tuple(m for m in self.metrics if m.failures)

    @property
    def inconclusive(self) -> tuple[MetricChange, ...]:
        return tuple(m for m in self.metrics if m.inconclusive and not m.failures)

    @property
    def uses_noise_rule(self) -> bool:
        return any(isinstance(m.head, Samples) or isinstance(m.base, Samples) for m in self.metrics)

    @property
    def judged(self) -> bool:
        """Some metric has statistical evidence (the report then shows intervals and rules)."""
        return any(m.evidence is not None for m in self.metrics)


def guess_direction(name: str) -> str | None:
    """Direction from the metric's name parts, the last first, each split into words
    (``val.top1_acc`` -> acc; ``roc_auc.test`` -> test says nothing, roc_auc -> auc). Within a
    part a specific word beats the generic "score" (``brier_score``: lower), and a lower-word
    after "neg" is higher-is-better (scikit-learn's ``neg_mean_squared_error``)."""
    for part in reversed(re.split(r"[.:/]", name.lower())):
        words = [w for w in re.split(r"[^a-z0-9]+", part) if w]
        joined = "".join(words)
        generic = None
        for word in (*words[::-1], joined, *(m.group(1) for w in words[::-1] if (m := _NUMBERED.match(w)))):
            if word == _GENERIC_WORD:
                generic = "higher"
                continue
            if word in LOWER_WORDS:
                negated = _NEGATED in words and (word not in words or words.index(_NEGATED) < words.index(word))
                return "higher" if negated else "lower"
            if word in HIGHER_WORDS:
                return "higher"
        if generic is not None:
            return generic
    return None


def rule_for(name: str, thresholds: Sequence[Threshold]) -> Threshold | None:
    """The first rule whose pattern is ``name`` exactly, else the first glob match (see
    :func:`matches`)."""
    for rule in thresholds:
        if matches(rule.pattern, name, exactly=True):
            return rule
    for rule in thresholds:
        if matches(rule.pattern, name):
            return rule
    return None


def matches(pattern: str, name: str, exactly: bool = False) -> bool:
    """Whether a thresholds pattern names a metric: its name, or for a name prefixed with its file
    (``eval/metrics.json:acc``, when two files have an ``acc``) its name in the file, so a rule for
    ``acc`` keeps applying when a change adds a second file with an ``acc``. ``exactly``: the
    pattern as written, not as a glob."""
    inner = name_in_file(name)
    names = (name,) if inner is None else (name, inner)
    if exactly:
        return pattern in names
    return any(candidate == pattern or fnmatch.fnmatchcase(candidate, pattern) for candidate in names)


def numeric(value: Value | None) -> float | None:
    """The number a value stands for (a mean for repeated values), or None for text and for an int
    beyond a double's range (1 followed by 400 zeros: not a number to compare, shown as it is)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            return None
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
    evidence: Evidence | None = None,
    alpha: float = StatisticsConfig.alpha,
    missing: str | None = None,
) -> MetricChange:
    """One metric judged on its own (no correction across gates; :func:`diff` applies one)."""
    change = _judge(name, base, head, has_baseline, rule, evidence, alpha, missing)
    return _finish(change, change.p_adjusted)


def _judge(
    name: str,
    base: Value | None,
    head: Value | None,
    has_baseline: bool,
    rule: Threshold | None,
    evidence: Evidence | None,
    alpha: float,
    missing: str | None = None,
) -> MetricChange:
    gated = rule is not None and any(v is not None for v in (rule.max_drop, rule.max_drop_pct, rule.min, rule.max))
    direction = (rule.direction if rule else None) or guess_direction(name)
    if head is None and missing is not None:
        # Its file is missing or malformed in this change: not removed, just not known; a gate on
        # it cannot pass.
        failures = (f"is missing in this change ({missing})",) if gated else ()
        return MetricChange(
            name, base, None, Status.MISSING, direction, failures=failures, gated=gated, missing=missing
        )
    change = _compare(name, base, head, has_baseline, rule, direction, gated)
    if change.status is not Status.CHANGED and change.status is not Status.UNCHANGED:
        return change
    if evidence is None and change.delta is not None:
        evidence = runs_evidence(base, head)
    if evidence is None or change.delta is None or not math.isfinite(change.delta):
        return change
    gate_alpha = rule.alpha if rule is not None and rule.alpha is not None else alpha
    significant = evidence.p_two_sided() < alpha
    if not significant:
        outcome = Outcome.NO_CHANGE
    elif direction is None:
        outcome = Outcome.CHANGED
    else:
        outcome = Outcome.BETTER if evidence.p_better(direction) < evidence.p_worse(direction) else Outcome.WORSE
    improved = {Outcome.BETTER: True, Outcome.WORSE: False}.get(outcome)
    p_worse = evidence.p_worse(direction) if direction is not None else None
    return replace(
        change,
        evidence=evidence,
        outcome=outcome,
        improved=improved,
        within_noise=outcome is Outcome.NO_CHANGE,
        alpha=gate_alpha if _has_drop_gate(rule) else None,
        p_adjusted=p_worse if _has_drop_gate(rule) else None,
        detectable=detectable_effect(evidence.se, gate_alpha),
    )


def _has_drop_gate(rule: Threshold | None) -> bool:
    return rule is not None and (rule.max_drop is not None or rule.max_drop_pct is not None)


def _finish(change: MetricChange, p_adjusted: float | None) -> MetricChange:
    """Turn drop-gate sentences awaiting the test into failures (significant) or inconclusive ones."""
    if not change.exceeded:
        return change if p_adjusted == change.p_adjusted else replace(change, p_adjusted=p_adjusted)
    if change.evidence is None or p_adjusted is None or change.alpha is None:
        return replace(change, failures=change.failures + change.exceeded, exceeded=())
    if p_adjusted < change.alpha:
        why = f"significant (one-sided {numbers.p_value(p_adjusted)}, α = {change.alpha:g}{_at_least(change)})"
        failed = tuple(f"{sentence}; {why}" for sentence in change.exceeded)
        return replace(change, failures=change.failures + failed, exceeded=(), p_adjusted=p_adjusted)
    unsure = (*change.inconclusive, may_have_worsened(change, p_adjusted))
    return replace(change, inconclusive=unsure, exceeded=(), p_adjusted=p_adjusted)


def _at_least(change: MetricChange) -> str:
    """The bound that matches the gate's one-sided test, as a clause ("; at 95% one-sided confidence
    it dropped by at least 0.0005"): the report's two-sided 95% interval may still reach 0."""
    evidence = change.evidence
    if evidence is None or change.alpha is None or change.direction is None:
        return ""
    bound = evidence.bound(change.direction, change.alpha)  # the gate's alpha: the same test
    if bound is None:
        return ""
    worsening = -bound if change.direction == "higher" else bound
    if worsening <= 0:
        return ""
    word = "dropped" if change.direction == "higher" else "rose"
    amount = numbers.change(worsening, evidence.percent_points, with_sign=False)
    return f"; at {1 - change.alpha:.0%} one-sided confidence it {word} by at least {amount}"


def may_have_worsened(change: MetricChange, p_adjusted: float) -> str:
    """ "may have dropped: -0.4 pp, 95% CI [-1.3, +0.5]; these 2,000 examples can detect >= 1.1 pp; ..."."""
    evidence = change.evidence
    assert evidence is not None
    word = "dropped" if change.direction == "higher" else "risen"
    sentence = f"may have {word}: {numbers.change(evidence.delta, evidence.percent_points)}"
    if evidence.low is not None and evidence.high is not None:
        sentence += f", {CONFIDENCE:.0%} CI {numbers.interval(evidence.low, evidence.high, evidence.percent_points)}"
    sentence += f" (one-sided {numbers.p_value(p_adjusted)}, not below α = {change.alpha:g})"
    if change.detectable is not None and change.detectable > 0:
        what = {"examples": "examples", "runs": "runs", "history": "recorded commits"}[evidence.source]
        more = "add examples or seeds" if evidence.source != "runs" else "add seeds"
        sentence += (
            f"; these {evidence.count:,} {what} can detect >= "
            f"{numbers.change(change.detectable, evidence.percent_points, with_sign=False)}; {more}"
        )
    return sentence


def runs_evidence(base: Value | None, head: Value | None) -> Evidence | None:
    """Welch's test for repeated values (seeds, folds); None unless a side has several values."""
    if not isinstance(base, Samples) and not isinstance(head, Samples):
        return None
    base_values = base.values if isinstance(base, Samples) else (numeric(base),)
    head_values = head.values if isinstance(head, Samples) else (numeric(head),)
    if any(v is None for v in (*base_values, *head_values)):
        return None
    from cml_bot.stats.runs import compare_runs

    result = compare_runs([v for v in base_values if v is not None], [v for v in head_values if v is not None])
    if result is None:
        return None
    test = "Welch's t-test" if result.welch else "Student's t-test (one side has a single run)"
    rule = f"{len(base_values)} vs {len(head_values)} runs: {test} on the means, {CONFIDENCE:.0%} CI of the difference"
    if result.se == 0:
        rule = (
            f"{len(base_values)} vs {len(head_values)} runs with no variation at either side (deterministic): "
            "the difference of the means is exact, real unless it is float rounding"
        )
    return Evidence(
        "runs",
        rule,
        result.delta,
        result.low,
        result.high,
        result.p_up,
        result.p_down,
        result.se,
        len(base_values) + len(head_values),
        df=result.df,
    )


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
    name: str,
    base: Value | None,
    head: Value | None,
    has_baseline: bool,
    rule: Threshold | None,
    direction: str | None,
    gated: bool,
) -> MetricChange:
    """The change without evidence; ``direction`` and ``gated`` as :func:`_judge` found them."""
    has_drop_gate = _has_drop_gate(rule)
    if head is None:
        # A gated metric that this change no longer produces cannot be said to pass.
        missing = ("is missing in this change",) if gated else ()
        return MetricChange(name, base, None, Status.REMOVED, direction, failures=missing, gated=gated)
    failures = list(_bound_failures(head, rule))
    if has_drop_gate and direction is None and rule is not None and matches(rule.pattern, name, exactly=True):
        # Named explicitly but with no way to tell better from worse: say so instead of ignoring it.
        failures.append("has max_drop but no direction: set direction: higher or lower")
    if base is None:
        status = Status.NEW if has_baseline else Status.UNCHANGED
        margins = _bound_margins(head, rule)
        return MetricChange(name, None, head, status, direction, failures=tuple(failures), gated=gated, margins=margins)
    status = Status.UNCHANGED if _same(base, head) else Status.CHANGED
    b, h = numeric(base), numeric(head)
    if b is None or h is None:
        if has_drop_gate and b is not None and h is None:
            failures.append("is not a number any more")
        return MetricChange(name, base, head, status, direction, failures=tuple(failures), gated=gated)
    delta = h - b
    relative = delta / abs(b) if b != 0 and math.isfinite(b) and math.isfinite(delta) else None
    worsening = None
    # Leaving Infinity is judged (loss inf -> 0.3 is better); reaching it is left to the gates.
    # Without evidence the direction of a change is not a claim (improved stays None).
    if direction is not None and not math.isnan(delta) and math.isfinite(h):
        signed = -delta if direction == "higher" else delta
        worsening = signed if math.isfinite(signed) else None  # gates treat Infinity on their own
    improved = None
    if math.isinf(b) and math.isfinite(h) and direction is not None:  # leaving +-Infinity needs no test
        improved = (b > 0) == (direction == "lower")
    exceeded: list[str] = []
    unchecked: tuple[str, ...] = ()
    if rule is not None and direction is not None:
        for sentence in _drop_failures(b, h, worsening, rule, direction):
            # NaN / Infinity are failures as they are; a finite worsening awaits the evidence.
            (exceeded if worsening is not None and math.isfinite(h) else failures).append(sentence)
        if math.isnan(b) and not math.isnan(h) and has_drop_gate and not failures:
            # Nothing to measure a drop from: not a pass, not a failure of this change.
            what = "a base run is NaN" if isinstance(base, Samples) else "the base value is NaN"
            unchecked = (f"cannot be checked against the base: {what}",)
    margins = _bound_margins(head, rule)
    if rule is not None and worsening is not None and not exceeded:
        margins += _drop_margins(b, worsening, rule)
    return MetricChange(
        name,
        base,
        head,
        status,
        direction,
        delta,
        relative,
        improved,
        failures=tuple(failures),
        gated=gated,
        inconclusive=unchecked,
        exceeded=tuple(exceeded),
        margins=margins,
    )


def _bound_margins(head: Value, rule: Threshold | None) -> tuple[Margin, ...]:
    """The distance to each bound the head value is within."""
    if rule is None or (rule.min is None and rule.max is None):
        return ()
    value = numeric(head)  # as _bound_failures reads it
    if value is None or not math.isfinite(value):
        return ()
    margins = []
    if rule.min is not None and value >= rule.min:
        margins.append(Margin(f"min {_num(rule.min)}", value - rule.min, allowed=abs(rule.min)))
    if rule.max is not None and value <= rule.max:
        margins.append(Margin(f"max {_num(rule.max)}", rule.max - value, allowed=abs(rule.max)))
    return tuple(margins)


def _drop_margins(base: float, worsening: float, rule: Threshold) -> tuple[Margin, ...]:
    """What a metric could still lose before each drop gate fails (more than its threshold when
    it improved); called only when no drop gate was exceeded."""
    margins = []
    if rule.max_drop is not None:
        room = max(0.0, rule.max_drop - worsening)
        margins.append(Margin(f"max_drop {_num(rule.max_drop)}", room, allowed=rule.max_drop))
    if rule.max_drop_pct is not None and base != 0 and math.isfinite(base):
        used = worsening / abs(base) * 100
        room = max(0.0, rule.max_drop_pct - used)
        margins.append(Margin(f"max_drop {_num(rule.max_drop_pct)}%", room, True, rule.max_drop_pct))
    return tuple(margins)


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
    """A gate cannot pass on a head value it cannot check: NaN, or Infinity in the bad direction,
    fail even when the base was the same (docs/statistics.md, "The verdict")."""
    if rule.max_drop is None and rule.max_drop_pct is None:
        return []
    if math.isnan(head):
        return ["is NaN, as at the base: its drop gate cannot be checked"] if math.isnan(base) else ["became NaN"]
    if worsening is None:
        if math.isinf(head) and (head > 0) == (direction == "lower"):
            return [f"became {_num(head)}"] if head != base else [f"is {_num(head)}, as at the base"]
        return []
    word = "dropped" if direction == "higher" else "rose"
    failures = []
    rounding = float_noise(base, head)  # a drop of float rounding is no drop, even with max_drop 0
    if rule.max_drop is not None and _exceeds(worsening, rule.max_drop, rounding):
        failures.append(f"{word} by {_num(worsening)} (allowed {_num(rule.max_drop)})")
    if rule.max_drop_pct is not None and base != 0 and math.isfinite(base):
        pct = worsening / abs(base) * 100
        if _exceeds(pct, rule.max_drop_pct, rounding / abs(base) * 100):
            failures.append(f"{word} by {pct:.2f}% (allowed {_num(rule.max_drop_pct)}%)")
    return failures


def _exceeds(value: float, allowed: float, rounding: float = 0.0) -> bool:
    """``value > allowed`` beyond float rounding: 0.90 -> 0.89 is a drop of exactly 0.01."""
    return value > allowed + rounding


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
    evidence: Mapping[str, Evidence] | None = None,
    statistics: StatisticsConfig | None = None,
    missing: Mapping[str, str] | None = None,
) -> Diff:
    """Compare head with base. ``base_metrics=None`` means there is no baseline at all.

    ``evidence`` holds per-example or history evidence by metric name (see cml_bot.verdicts);
    repeated values are judged here. The drop gates with evidence form one family: their one-sided
    p-values are corrected together (``statistics.correction``) before each is compared with its alpha.
    ``missing`` names metrics whose file is missing or malformed in this change (see
    :func:`missing_metrics`).
    """
    settings = statistics or StatisticsConfig()
    has_baseline = base_metrics is not None
    base = base_metrics or {}
    given = evidence or {}
    gone = missing or {}
    names = list(head_metrics) + [n for n in base if n not in head_metrics]
    judged = [
        _judge(
            name,
            base.get(name),
            head_metrics.get(name),
            has_baseline,
            rule_for(name, thresholds),
            given.get(name),
            settings.alpha,
            gone.get(name),
        )
        for name in names
    ]
    family = [i for i, m in enumerate(judged) if m.alpha is not None and m.p_adjusted is not None]
    raw = [p for i in family if (p := judged[i].p_adjusted) is not None]  # 0.0 is the strongest evidence
    # The correction decides only gates whose worsening exceeds the threshold; with none, it is moot.
    corrected = len(family) > 1 and settings.correction != "none" and any(judged[i].exceeded for i in family)
    adjusted = adjust_p_values(raw, settings.correction) if corrected else raw
    p_by_index: dict[int, float] = dict(zip(family, adjusted, strict=True))
    metrics = tuple(_finish(m, p_by_index.get(i)) for i, m in enumerate(judged))
    params = diff_params(base_params or {}, head_params or {}, has_baseline)
    if any(m.failures for m in metrics):
        verdict = Verdict.REGRESSED
    elif any(m.inconclusive for m in metrics):
        verdict = Verdict.INCONCLUSIVE
    elif not has_baseline:
        verdict = Verdict.NO_BASELINE
    else:
        verdict = Verdict.PASS
    return Diff(
        metrics=metrics,
        params=params,
        has_baseline=has_baseline,
        verdict=verdict,
        statistics=settings,
        tested_gates=len(family),
        corrected=corrected,
    )


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
