"""The evidence behind a report's verdict: per-example results and recorded history -> the diff.

:func:`judge` is what a run calls instead of :func:`cml_bot.diff.diff`: it reads the predictions
files of both revisions (from their results, by path, like plot files), pairs them by example id,
and attaches to each metric in the metrics files the strongest evidence there is (see
docs/statistics.md): paired per-example tests when the metric can be recomputed from the
predictions (matched by name, confirmed by value), else Welch's test for repeated values (in the
diff), else the metric's usual variation in the recorded history of the base branch. Pure: results
in, a :class:`Judgement` out.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from cml_bot.config import Config, PredictionsConfig, StatisticsConfig
from cml_bot.diff import Diff, diff, missing_metrics, numeric
from cml_bot.errors import InputError
from cml_bot.metrics import Samples, Value
from cml_bot.model import Artifact
from cml_bot.results import RunResults
from cml_bot.stats.evidence import CONFIDENCE, Evidence
from cml_bot.stats.history import MIN_SEGMENT, HistoryNoise

if TYPE_CHECKING:  # pandas and scipy load only when there are predictions to read
    import numpy as np
    import numpy.typing as npt

    from cml_bot.predictions import Pairing, PredictionTable
    from cml_bot.stats.example_metrics import LabelSums, MetricComparison
    from cml_bot.stats.paired import McNemar

log = logging.getLogger(__name__)

FLIPS_FILE = "prediction-flips.csv"
FLIPS_SHOWN = 10  # broken examples listed in the comment; all of them are in FLIPS_FILE
CLASSES_SHOWN = 20  # per-class rows in the comment, largest F1 changes first
CONFUSION_CLASSES = 30  # the confusion delta is drawn up to this many classes
HISTORY_METRICS = 200  # metrics judged against history at most (gated ones first)
# Paired examples may have another true label at the base (a relabelled evaluation set, head's
# label is used); beyond this share the rows do not describe the same examples (rows matched by
# position in files written in another order, ids reused for other examples): nothing is paired.
MAX_RELABELLED_SHARE = 0.05


@dataclass(frozen=True)
class Flip:
    id: str
    label: str
    base: str
    head: str


@dataclass(frozen=True)
class ClassRow:
    name: str
    support: int
    base_f1: float
    head_f1: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class PredictionReport:
    """What the report shows from the per-example results (trusted numbers, untrusted ids/labels)."""

    path: str
    matched_by: str
    common: int
    added: int = 0
    removed: int = 0
    added_ids: tuple[str, ...] = ()
    removed_ids: tuple[str, ...] = ()
    relabelled: int = 0
    dropped: int = 0  # rows without label or prediction, left out (base + head)
    fixed: int | None = None  # classification with predicted labels only
    broken: int | None = None
    changed: int | None = None  # wrong before and after, with another prediction
    broken_rows: tuple[Flip, ...] = ()
    classes: tuple[ClassRow, ...] = ()  # the largest F1 changes
    class_count: int = 0
    class_names: tuple[str, ...] = ()  # confusion matrices' order
    base_confusion: tuple[tuple[int, ...], ...] = ()  # rows: true class, columns: predicted
    head_confusion: tuple[tuple[int, ...], ...] = ()
    flips_file: str | None = None
    judged: tuple[str, ...] = ()  # metrics judged from these examples
    resamples: int = 0


@dataclass(frozen=True)
class Judgement:
    diff: Diff
    predictions: PredictionReport | None = None
    artifacts: tuple[Artifact, ...] = ()
    history: Mapping[str, HistoryNoise] = field(default_factory=dict)  # by metric name
    notes: tuple[str, ...] = ()  # for the reader of the report


def judge(config: Config, base: RunResults | None, head: RunResults, history: Sequence[RunResults] = ()) -> Judgement:
    evidence: dict[str, Evidence] = {}
    notes: list[str] = []
    report: PredictionReport | None = None
    artifacts: tuple[Artifact, ...] = ()
    if config.predictions is not None and base is not None:
        found = _from_predictions(config.predictions, config.statistics, base, head, notes)
        if found is not None:
            evidence, report, artifacts = found
    noise: dict[str, HistoryNoise] = {}
    if base is not None and len(history) >= MIN_SEGMENT:
        for name, usual in _from_history(config, base, head, history, noise).items():
            evidence[name] = _both(evidence[name], usual) if name in evidence else usual
    result = diff(
        base.metrics if base else None,
        head.metrics,
        config.thresholds,
        base.params if base else None,
        head.params,
        evidence=evidence,
        statistics=config.statistics,
        missing=missing_metrics(base.metrics, base.origins, head.metrics, head.problems) if base else None,
    )
    return Judgement(result, report, artifacts, noise, tuple(notes))


# --- per-example results ---------------------------------------------------------------------------

_SPLIT_WORDS = frozenset(["val", "valid", "validation", "test", "eval", "evaluation", "holdout", "top1", "overall"])
_AVERAGES = ("binary", "macro", "micro", "weighted")


def candidate_kinds(name: str) -> list[str]:
    """Per-example metrics a metrics-file name may stand for, most likely first (``val.f1_macro``)."""
    last = re.split(r"[.:/]", name.lower())[-1]
    words = [w for w in re.split(r"[^a-z0-9]+", last) if w and w not in _SPLIT_WORDS]
    average = next((w for w in words if w in _AVERAGES), None)
    core = "".join(w for w in words if w not in _AVERAGES and w != "score")
    if core in ("accuracy", "acc"):
        return ["accuracy"]
    if core in ("error", "errorrate", "err"):
        return ["error_rate"]
    if core in ("balancedaccuracy", "balancedacc"):
        return ["balanced_accuracy"]
    for metric in ("f1", "precision", "recall"):
        if core == metric:
            return [f"{metric}_{average}"] if average else [f"{metric}_{a}" for a in _AVERAGES]
    if core in ("auc", "rocauc", "aucroc", "roc"):
        return ["roc_auc"]
    if core in ("logloss", "loss", "nll", "crossentropy"):
        return ["log_loss", "mean_loss"]
    if core in ("mae", "meanabsoluteerror"):
        return ["mae"]
    if core in ("mse", "meansquarederror"):
        return ["mse"]
    if core in ("rmse", "rootmeansquarederror"):
        return ["rmse"]
    if core in ("r2", "rsquared"):
        return ["r2"]
    return []


def _agrees(computed: float, reported: float) -> bool:
    """Values from the metrics file are often rounded (5 decimals in the demo)."""
    return math.isfinite(computed) and abs(computed - reported) <= 5e-4 + 1e-3 * abs(reported)


def _from_predictions(
    spec: PredictionsConfig,
    settings: StatisticsConfig,
    base: RunResults,
    head: RunResults,
    notes: list[str],
) -> tuple[dict[str, Evidence], PredictionReport, tuple[Artifact, ...]] | None:
    from cml_bot.predictions import pair, read_predictions
    from cml_bot.stats.example_metrics import MAX_CLASSES, compare_metrics, label_sums

    head_data, base_data = head.files.get(spec.path), base.files.get(spec.path)
    if head_data is None:
        notes.append(f"{spec.path} (predictions) was not produced by this change: no per-example comparison.")
        return None
    if base_data is None:
        notes.append(f"{spec.path} (predictions) is not in the baseline's results: no per-example comparison.")
        return None
    head_table = read_predictions(head_data, spec)
    try:
        base_table = read_predictions(base_data, spec, f"{spec.path} at the baseline")
    except InputError as exc:
        notes.append(f"Per-example comparison skipped: {exc}")
        return None
    pairing = pair(base_table, head_table)
    if isinstance(pairing, str):
        notes.append(f"{spec.path}: {pairing}.")
        return None
    examples = pairing.examples
    if examples.count == 0:
        notes.append(f"{spec.path}: base and this change share no example id; nothing to pair.")
        return None
    if pairing.relabelled > MAX_RELABELLED_SHARE * examples.count:
        advice = "; add an id column (predictions.id)" if head_table.id_column is None else ""
        notes.append(
            f"{spec.path}: {pairing.relabelled:,} of {examples.count:,} examples matched by {pairing.matched_by} "
            f"have another true label at the base: they are not the same examples, so nothing is compared "
            f"example by example{advice}."
        )
        return None
    explicit = dict(spec.metrics)
    wanted: dict[str, list[str]] = {}
    for name, value in head.metrics.items():
        if numeric(value) is None or isinstance(value, Samples) or name not in base.metrics:
            continue
        kinds = [explicit[name]] if name in explicit else candidate_kinds(name)
        if kinds:
            wanted[name] = kinds
    all_kinds = sorted({kind for kinds in wanted.values() for kind in kinds})
    # The label metrics and the per-class changes share one draw of the label resamples (the costly part).
    has_labels = examples.labels is not None and examples.base_pred is not None and examples.head_pred is not None
    sums = (
        label_sums(examples, settings.resamples, settings.seed)
        if has_labels and len(examples.classes) <= MAX_CLASSES
        else None
    )
    compared = compare_metrics(examples, all_kinds, settings.resamples, settings.seed, CONFIDENCE, sums)
    same_set = pairing.added == 0 and pairing.removed == 0 and pairing.relabelled == 0
    head_values = _table_values(head_table, all_kinds) if not same_set and compared else None
    # Each side's recomputed value must be the one its metrics file reports: base's predictions
    # are scored with head's labels on the common examples, which only gives the base's metric
    # when the pairing is right (on its own examples and labels when the evaluation set changed).
    base_values = _table_values(base_table, all_kinds) if not same_set and compared else None
    evidence: dict[str, Evidence] = {}
    flips = _flips(pairing)
    mcnemar = _mcnemar(flips) if flips is not None else None
    for name, kinds in wanted.items():
        reported = numeric(head.metrics[name])
        assert reported is not None
        chosen = None
        for kind in kinds:
            if kind not in compared:
                continue
            value = compared[kind].result.head if head_values is None else head_values.get(kind, math.nan)
            if name in explicit or _agrees(value, reported):
                chosen = kind
                break
        if chosen is None:
            if any(kind in compared for kind in kinds) and name not in explicit:
                notes.append(
                    f"{name}: {reported:.6g} in the metrics file does not match what {spec.path} gives "
                    f"({'/'.join(k for k in kinds if k in compared)}); not judged from the predictions "
                    "(map it under predictions.metrics if it should be)."
                )
            continue
        base_reported = numeric(base.metrics[name])
        base_value = compared[chosen].result.base if base_values is None else base_values.get(chosen, math.nan)
        if name not in explicit and base_reported is not None and not _agrees(base_value, base_reported):
            notes.append(
                f"{name}: {base_reported:.6g} at the baseline does not match what its {spec.path} gives "
                f"({chosen} {base_value:.6g}, rows matched by {pairing.matched_by}); not judged from the predictions."
            )
            continue
        evidence[name] = _example_evidence(compared[chosen], chosen, pairing, mcnemar)
    dropped = base_table.dropped + head_table.dropped
    report, artifacts = _prediction_report(spec, pairing, dropped, settings, sums, flips)
    return evidence, replace(report, judged=tuple(evidence)), artifacts


def _table_values(table: PredictionTable, kinds: Sequence[str]) -> dict[str, float]:
    """Each metric on all of one side's examples, with its own labels (the evaluation set changed,
    so the pairs are fewer or labelled otherwise)."""
    from cml_bot.predictions import pair
    from cml_bot.stats.example_metrics import observed

    alone = pair(table, table)
    assert not isinstance(alone, str)
    return {kind: value for kind, (_, value) in observed(alone.examples, kinds).items()}


@dataclass(frozen=True)
class _Flips:
    """Which examples changed between base and head (classification with predicted labels)."""

    fixed: npt.NDArray[np.bool_]  # wrong at the base, right here
    broken: npt.NDArray[np.bool_]  # right at the base, wrong here
    changed: npt.NDArray[np.bool_]  # wrong at both, with another prediction


def _flips(pairing: Pairing) -> _Flips | None:
    data = pairing.examples
    if data.labels is None or data.base_pred is None or data.head_pred is None:
        return None
    base_right = data.base_pred == data.labels
    head_right = data.head_pred == data.labels
    return _Flips(
        ~base_right & head_right,
        base_right & ~head_right,
        ~base_right & ~head_right & (data.base_pred != data.head_pred),
    )


def _mcnemar(flips: _Flips) -> McNemar:
    from cml_bot.stats.paired import mcnemar

    return mcnemar(int(flips.fixed.sum()), int(flips.broken.sum()))


def _example_evidence(comparison: MetricComparison, kind: str, pairing: Pairing, test: McNemar | None) -> Evidence:
    result = comparison.result
    where = f"paired on {comparison.units} matched by {pairing.matched_by}"
    interval = f"{CONFIDENCE:.0%} CI from {result.resamples:,} bootstrap resamples"
    p_up, p_down = result.p_up, result.p_down
    if kind in ("accuracy", "error_rate") and test is not None:
        rule = f"{where}: mid-p McNemar test ({test.fixed:,} fixed, {test.broken:,} broken); {interval}"
        p_up, p_down = (test.p_up, test.p_down) if kind == "accuracy" else (test.p_down, test.p_up)
    else:
        rule = f"{where}: {kind} by paired bootstrap, {interval} (percentile) and its p-value"
    return Evidence(
        "examples",
        rule,
        result.delta,
        result.low if math.isfinite(result.low) else None,
        result.high if math.isfinite(result.high) else None,
        p_up,
        p_down,
        result.se if math.isfinite(result.se) else None,
        pairing.examples.count,
        comparison.kind.proportion,
    )


def _prediction_report(
    spec: PredictionsConfig,
    pairing: Pairing,
    dropped: int,
    settings: StatisticsConfig,
    sums: LabelSums | None,
    flips: _Flips | None,
) -> tuple[PredictionReport, tuple[Artifact, ...]]:
    import numpy as np

    from cml_bot.stats.example_metrics import per_class_changes

    data = pairing.examples
    report = PredictionReport(
        path=spec.path,
        matched_by=pairing.matched_by,
        common=data.count,
        added=pairing.added,
        removed=pairing.removed,
        added_ids=pairing.added_ids,
        removed_ids=pairing.removed_ids,
        relabelled=pairing.relabelled,
        dropped=dropped,
        resamples=settings.resamples,
    )
    if data.labels is None:
        return report, ()
    classes = per_class_changes(data, settings.resamples, settings.seed, CONFIDENCE, sums)
    rows = sorted(
        (ClassRow(c.name, c.support, c.base_f1, c.head_f1, c.low, c.high) for c in classes if c.support > 0),
        key=lambda row: -abs(row.head_f1 - row.base_f1),
    )
    report = replace(report, classes=tuple(rows[:CLASSES_SHOWN]), class_count=len(data.classes))
    if flips is None or data.base_pred is None or data.head_pred is None:
        return report, ()
    k = len(data.classes)
    if k <= CONFUSION_CLASSES:
        base_matrix = np.bincount(data.labels * k + data.base_pred, minlength=k * k).reshape(k, k)
        head_matrix = np.bincount(data.labels * k + data.head_pred, minlength=k * k).reshape(k, k)
        report = replace(
            report,
            class_names=data.classes,
            base_confusion=tuple(tuple(int(v) for v in row) for row in base_matrix),
            head_confusion=tuple(tuple(int(v) for v in row) for row in head_matrix),
        )
    fixed, broken, changed = flips.fixed, flips.broken, flips.changed
    assert pairing.labels is not None and pairing.base_predicted is not None and pairing.head_predicted is not None
    flipped = np.flatnonzero(fixed | broken | changed)
    first_broken = np.flatnonzero(broken)[:FLIPS_SHOWN]
    report = replace(
        report,
        fixed=int(fixed.sum()),
        broken=int(broken.sum()),
        changed=int(changed.sum()),
        broken_rows=tuple(
            Flip(
                str(pairing.ids[i]),
                str(pairing.labels[i]),
                str(pairing.base_predicted[i]),
                str(pairing.head_predicted[i]),
            )
            for i in first_broken
        ),
    )
    if len(flipped) == 0:
        return report, ()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "label", "base", "head", "change"])
    kinds = np.where(fixed, "fixed", np.where(broken, "broken", "changed"))
    for i in flipped:
        writer.writerow(
            [
                _csv_safe(str(pairing.ids[i])),
                _csv_safe(str(pairing.labels[i])),
                _csv_safe(str(pairing.base_predicted[i])),
                _csv_safe(str(pairing.head_predicted[i])),
                str(kinds[i]),
            ]
        )
    return replace(report, flips_file=FLIPS_FILE), (Artifact(FLIPS_FILE, buffer.getvalue().encode("utf-8")),)


def _csv_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- recorded history ------------------------------------------------------------------------------


def _both(examples: Evidence, history: Evidence) -> Evidence:
    """Paired evidence and main's usual variation together: a change counts only when both say so.

    A paired test conditions on the two trained models, so the difference two seeds of the same
    code make is, to it, a real difference. The history of the base branch (each commit retrained)
    holds that run-to-run noise. Rejecting only when both tests reject is an intersection-union
    test (Berger 1982): its level is at most alpha under either kind of noise. Its detectable
    effect is the larger of the two."""
    se = max(examples.se or 0.0, history.se or 0.0) or None
    noise = history.noise if history.noise is not None else 0.0
    usual = (
        f"main's usual variation of a change, ±{noise:.3g}"
        if history.se
        else "main's recorded history, flat (no run-to-run noise)"
    )
    rule = (
        f"{examples.rule}; and against {usual} ({history.count} recorded commits): "
        "a change counts only when both tests agree"
    )
    return replace(
        examples, rule=rule, p_up=max(examples.p_up, history.p_up), p_down=max(examples.p_down, history.p_down), se=se
    )


def _from_history(
    config: Config,
    base: RunResults,
    head: RunResults,
    history: Sequence[RunResults],
    noise: dict[str, HistoryNoise],
) -> dict[str, Evidence]:
    """Single-run metrics judged against the base branch's usual variation."""
    from cml_bot.diff import rule_for
    from cml_bot.stats.history import compare_with_history, history_noise

    def single(value: Value | None) -> float | None:
        return None if isinstance(value, Samples) else numeric(value)

    names = [
        name
        for name, value in head.metrics.items()
        if single(value) is not None and single(base.metrics.get(name)) is not None
    ]
    names.sort(key=lambda name: rule_for(name, config.thresholds) is None)  # gated metrics first
    found: dict[str, Evidence] = {}
    for name in names[:HISTORY_METRICS]:
        values = [v for results in history if (v := single(results.metrics.get(name))) is not None]
        if len(values) < MIN_SEGMENT:
            continue
        measured = history_noise(values)
        if measured is None:
            continue
        noise[name] = measured
        b, h = single(base.metrics[name]), single(head.metrics[name])
        assert b is not None and h is not None
        comparison = compare_with_history(b, h, measured, CONFIDENCE)
        if comparison is None:
            continue
        after = ", after the last change point" if measured.change_points else ""
        rule = (
            f"single runs: main's usual variation of a change is ±{comparison.band:.3g} ({CONFIDENCE:.0%}; "
            f"robust σ of the last {measured.segment} of {len(values)} recorded commits{after})"
        )
        floor = comparison.floor
        flat = (
            f"single runs: main's recorded history is flat (the last {measured.segment} of {len(values)} "
            f"recorded commits{after} gave {measured.level:.6g}"
        )
        if comparison.se == 0:
            rule = f"{flat}: no run-to-run noise), so a change beyond float rounding is real"
        elif measured.sigma == 0:
            rule = (
                f"{flat}, written to {2 * floor:g}: noise under half a step could hide in it), so σ is taken as "
                f"{floor:g}: a change's usual variation is ±{comparison.band:.3g} ({CONFIDENCE:.0%})"
            )
        elif floor:
            rule += (
                f"; the values are written to {2 * floor:g}, so noise under half a step could hide in them: "
                f"σ taken as {floor:g}"
            )
        found[name] = Evidence(
            "history",
            rule,
            comparison.delta,
            comparison.delta - comparison.band,
            comparison.delta + comparison.band,
            comparison.p_up,
            comparison.p_down,
            comparison.se,
            measured.segment,
            noise=comparison.band,
            df=comparison.df,
        )
    return found
