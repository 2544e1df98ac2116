"""Metrics computed from per-example results, in the form the paired bootstrap resamples.

Every metric here is a function of sums over examples, so one matrix product gives it for all
resamples at once (see :mod:`cml_bot.stats.paired`):

- from labels (true, base and head predicted class): accuracy, error rate, balanced accuracy and
  precision / recall / F1 (macro, micro, weighted, binary), all from per-class counts of true
  positives, predicted positives and support, as scikit-learn defines them (a class absent from
  both the truth and the predictions of a resample is left out of the macro average);
- from scores or probabilities: log loss and ROC AUC (binary, or one-vs-rest macro). AUC is
  resampled through DeLong's placement values (DeLong, DeLong & Clarke-Pearson 1988; Sun & Xu
  2014): its first-order expansion is a mean over positives plus a mean over negatives, so its
  bootstrap has DeLong's variance and costs what a mean costs;
- from regression targets and predictions: MAE, MSE, RMSE and R²; from a per-example loss, its mean.

Label metrics resample cells of identical (true, base, head) triples, exactly. The others resample
examples, exactly up to ``EXACT_EXAMPLES``; beyond that, ``EXACT_EXAMPLES`` random groups of
examples (each group's sums, drawn with replacement), which keeps the bootstrap's variance within a
few percent (the random group method, Wolter 2007, ch. 2) at a fixed cost for any number of examples.
Accuracy and error rate only depend on right / wrong at each side, so they resample four cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cml_bot.stats.evidence import DEFAULT_RESAMPLES, DEFAULT_SEED
from cml_bot.stats.kinds import KINDS, MetricKind
from cml_bot.stats.paired import (
    BootstrapResult,
    paired_bootstrap,
    resampled_sums,
    summarize,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

EXACT_EXAMPLES = 2_000  # continuous metrics: resample examples up to this many, random groups beyond
MAX_CLASSES = 100  # label and AUC metrics per class are resampled for at most this many classes


@dataclass(frozen=True)
class PairedExamples:
    """Both revisions' results on the same examples, in the same order (matched by id upstream)."""

    count: int
    classes: tuple[str, ...] = ()  # class names by code (classification)
    labels: IntArray | None = None  # true class codes
    base_pred: IntArray | None = None  # predicted class codes
    head_pred: IntArray | None = None
    base_scores: FloatArray | None = None  # (n x classes) probabilities, or (n,) positive-class score
    head_scores: FloatArray | None = None
    target: FloatArray | None = None  # regression truth
    base_value: FloatArray | None = None  # regression predictions
    head_value: FloatArray | None = None
    base_loss: FloatArray | None = None  # per-example loss
    head_loss: FloatArray | None = None

    def supports(self, kind: MetricKind) -> bool:
        if kind.needs == "labels":
            if self.labels is None or self.base_pred is None or self.head_pred is None:
                return False
            if kind.name.endswith("_binary"):
                return len(self.classes) == 2
            return len(self.classes) <= MAX_CLASSES or kind.name in ("accuracy", "error_rate")
        if kind.needs == "scores":
            if self.labels is None or self.base_scores is None or self.head_scores is None:
                return False
            return len(self.classes) <= MAX_CLASSES if kind.name == "roc_auc" else self.base_scores.ndim == 2
        if kind.needs == "regression":
            return self.target is not None and self.base_value is not None and self.head_value is not None
        return self.base_loss is not None and self.head_loss is not None


@dataclass(frozen=True)
class MetricComparison:
    kind: MetricKind
    result: BootstrapResult
    units: str  # what was resampled, for the rule: "1,998 examples", "5,000 random groups of ~20 examples"


LabelSums = tuple[FloatArray, FloatArray]  # per-class sums over all examples, and over each resample


def compare_metrics(
    data: PairedExamples,
    names: Sequence[str],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
    sums: LabelSums | None = None,
) -> dict[str, MetricComparison]:
    """Paired bootstrap of each named metric (a key of :data:`KINDS`) that ``data`` supports;
    ``sums``: :func:`label_sums` of ``data`` with the same resamples and seed, when the caller has them."""
    kinds = [KINDS[name] for name in dict.fromkeys(names) if name in KINDS and data.supports(KINDS[name])]
    if data.count == 0 or not kinds:
        return {}
    found: dict[str, MetricComparison] = {}
    label_kinds = [k for k in kinds if k.needs == "labels"]
    if label_kinds:
        found.update(_compare_labels(data, label_kinds, resamples, seed, confidence, sums))
    other = [k for k in kinds if k.needs != "labels"]
    if other:
        found.update(_compare_means(data, other, resamples, seed, confidence))
    return found


# --- labels: exact, over cells of identical (true, base, head) triples ------------------------------


def _cells(data: PairedExamples, classes: int) -> tuple[IntArray, IntArray]:
    """The distinct (true, base, head) triples as an (U x 3) array, and how often each occurs."""
    assert data.labels is not None and data.base_pred is not None and data.head_pred is not None
    key = (data.labels * classes + data.base_pred) * classes + data.head_pred
    unique, counts = np.unique(key, return_counts=True)
    triples = np.stack([unique // (classes * classes), (unique // classes) % classes, unique % classes], axis=1)
    return triples.astype(np.int64), counts.astype(np.int64)


def label_sums(data: PairedExamples, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> LabelSums:
    """Per-class sums over all examples and over each resample of the (true, base, head) cells
    (needs labels and both predictions).

    The label metrics and the per-class changes of one comparison share these resamples: drawing
    them is the costly part (one binomial per cell and resample), so a caller that wants both
    computes them once and passes them to :func:`compare_metrics` and :func:`per_class_changes`."""
    classes = len(data.classes)
    triples, counts = _cells(data, classes)
    return resampled_sums(_label_features(triples, classes), counts, resamples, seed)


def _label_features(triples: IntArray, classes: int) -> FloatArray:
    """Per cell: [TP base (k), TP head (k), predicted base (k), predicted head (k), support (k)]."""
    k = classes
    features = np.zeros((len(triples), 5 * k))
    rows = np.arange(len(triples))
    truth, base, head = triples[:, 0], triples[:, 1], triples[:, 2]
    features[rows[truth == base], truth[truth == base]] = 1.0
    features[rows[truth == head], k + truth[truth == head]] = 1.0
    features[rows, 2 * k + base] = 1.0
    features[rows, 3 * k + head] = 1.0
    features[rows, 4 * k + truth] = 1.0
    return features


def _safe_ratio(top: FloatArray, bottom: FloatArray) -> FloatArray:
    """top / bottom with 0 where bottom is 0 (scikit-learn's zero_division=0)."""
    out = np.zeros(np.broadcast(top, bottom).shape)
    np.divide(top, bottom, out=out, where=bottom > 0)
    return out


def label_statistic(name: str, classes: int, side: int, positive: int = 1) -> Callable[[FloatArray], FloatArray]:
    """``side`` 0 = base, 1 = head; the statistic reads the per-class sums of :func:`_label_features`."""
    k = classes

    def statistic(sums: FloatArray) -> FloatArray:
        tp = sums[:, side * k : (side + 1) * k]
        predicted = sums[:, (2 + side) * k : (3 + side) * k]
        support = sums[:, 4 * k : 5 * k]
        n = support.sum(axis=1)
        if name in ("accuracy", "f1_micro", "precision_micro", "recall_micro"):
            return _safe_ratio(tp.sum(axis=1), n)
        if name == "error_rate":
            return 1.0 - _safe_ratio(tp.sum(axis=1), n)
        metric, average = name.rsplit("_", 1)
        if metric == "balanced":  # balanced_accuracy: mean recall over classes in the truth
            metric, average = "recall", "balanced"
        per_class = {
            "precision": lambda: _safe_ratio(tp, predicted),
            "recall": lambda: _safe_ratio(tp, support),
            "f1": lambda: _safe_ratio(2 * tp, predicted + support),
        }[metric]()
        if average == "binary":
            return per_class[:, positive]
        if average == "weighted":
            return _safe_ratio((per_class * support).sum(axis=1), n)
        present = support > 0 if average == "balanced" else (support + predicted) > 0
        return _safe_ratio((per_class * present).sum(axis=1), present.sum(axis=1).astype(np.float64))

    return statistic


def positive_class(classes: Sequence[str]) -> int:
    """The positive class of a binary problem: "1", "true", "yes" or "pos..." if present, else the second."""
    for code, name in enumerate(classes):
        if name.strip().lower() in ("1", "1.0", "true", "yes", "pos", "positive"):
            return code
    return 1


def _compare_labels(
    data: PairedExamples,
    kinds: Sequence[MetricKind],
    resamples: int,
    seed: int,
    confidence: float,
    sums: LabelSums | None = None,
) -> dict[str, MetricComparison]:
    classes = len(data.classes)
    correctness = [k for k in kinds if k.name in ("accuracy", "error_rate")]
    if correctness and (classes > 2 or len(correctness) < len(kinds)):
        # Accuracy depends only on right / wrong at each side: four cells instead of up to k^3, the
        # same bootstrap at a cost that does not grow with the number of classes.
        assert data.labels is not None and data.base_pred is not None and data.head_pred is not None
        collapsed = PairedExamples(
            data.count,
            ("wrong", "right"),
            np.ones(data.count, dtype=np.int64),
            (data.base_pred == data.labels).astype(np.int64),
            (data.head_pred == data.labels).astype(np.int64),
        )
        found = _compare_labels(collapsed, correctness, resamples, seed, confidence)
        rest = [k for k in kinds if k not in correctness]
        return {**found, **(_compare_labels(data, rest, resamples, seed, confidence, sums) if rest else {})}
    positive = positive_class(data.classes) if classes == 2 else 1
    statistics = {
        k.name: (label_statistic(k.name, classes, 0, positive), label_statistic(k.name, classes, 1, positive))
        for k in kinds
    }
    results = summarize(*(sums if sums is not None else label_sums(data, resamples, seed)), statistics, confidence)
    units = f"{data.count:,} examples"
    return {name: MetricComparison(KINDS[name], result, units) for name, result in results.items()}


@dataclass(frozen=True)
class ClassChange:
    name: str
    support: int  # examples of this class (true label)
    base_f1: float
    head_f1: float
    low: float  # confidence interval of the F1 change
    high: float
    base_recall: float
    head_recall: float


def per_class_changes(
    data: PairedExamples,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
    sums: LabelSums | None = None,
) -> list[ClassChange]:
    """F1 and recall per class, with a paired bootstrap interval of each class's F1 change
    (``sums``: as for :func:`compare_metrics`)."""
    classes = len(data.classes)
    if data.labels is None or data.count == 0 or classes > MAX_CLASSES:
        return []
    totals, resampled = sums if sums is not None else label_sums(data, resamples, seed)
    k = classes

    def f1(sums: FloatArray, side: int) -> FloatArray:
        tp = sums[:, side * k : (side + 1) * k]
        predicted = sums[:, (2 + side) * k : (3 + side) * k]
        return _safe_ratio(2 * tp, predicted + sums[:, 4 * k : 5 * k])

    base_f1, head_f1 = f1(totals, 0)[0], f1(totals, 1)[0]
    support = totals[0, 4 * k : 5 * k]
    base_recall = _safe_ratio(totals[0, :k], support)
    head_recall = _safe_ratio(totals[0, k : 2 * k], support)
    deltas = f1(resampled, 1) - f1(resampled, 0)
    tail = (1 - confidence) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail], axis=0)
    return [
        ClassChange(
            data.classes[c],
            int(support[c]),
            float(base_f1[c]),
            float(head_f1[c]),
            float(low[c]),
            float(high[c]),
            float(base_recall[c]),
            float(head_recall[c]),
        )
        for c in range(k)
    ]


# --- scores, regression and losses: examples, or random groups of examples -------------------------


def _log_loss_terms(labels: IntArray, scores: FloatArray) -> FloatArray:
    """-log p(true class) per example, rows renormalised and clipped like scikit-learn's log_loss."""
    probabilities = scores / np.clip(scores.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny, None)
    eps = np.finfo(np.float64).eps
    chosen = np.clip(probabilities[np.arange(len(labels)), labels], eps, 1 - eps)
    terms: FloatArray = -np.log(chosen)
    return terms


def _placements(is_positive: npt.NDArray[np.bool_], scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """DeLong's placement values: for a positive, the share of negatives it outscores (ties half);
    for a negative, the share of positives that outscore it. Both are 0 elsewhere."""
    from scipy.stats import rankdata

    positives, negatives = int(is_positive.sum()), int((~is_positive).sum())
    overall = rankdata(scores)
    v10 = np.zeros(len(scores))
    v01 = np.zeros(len(scores))
    if positives == 0 or negatives == 0:
        return v10, v01
    v10[is_positive] = (overall[is_positive] - rankdata(scores[is_positive])) / negatives
    v01[~is_positive] = 1.0 - (overall[~is_positive] - rankdata(scores[~is_positive])) / positives
    return v10, v01


def _auc_columns(data: PairedExamples) -> tuple[list[FloatArray], list[tuple[int, float, float]]]:
    """Feature columns for the linearised AUC: per one-vs-rest problem [pos, neg, pos*V10 and neg*V01
    for base, then for head], and (first column, base AUC, head AUC) per problem."""
    assert data.labels is not None and data.base_scores is not None and data.head_scores is not None
    problems: list[tuple[npt.NDArray[np.bool_], FloatArray, FloatArray]] = []
    if data.base_scores.ndim == 1 or len(data.classes) == 2:
        positive = positive_class(data.classes) if len(data.classes) == 2 else 1

        def column(scores: FloatArray) -> FloatArray:
            return scores if scores.ndim == 1 else scores[:, positive]

        problems.append((data.labels == positive, column(data.base_scores), column(data.head_scores)))
    else:
        for code in range(len(data.classes)):
            problems.append((data.labels == code, data.base_scores[:, code], data.head_scores[:, code]))
    columns: list[FloatArray] = []
    layout = []
    for is_positive, base, head in problems:
        if is_positive.all() or not is_positive.any():
            continue  # AUC is undefined for a class with no positives or no negatives
        first = len(columns)
        pos, neg = is_positive.astype(np.float64), (~is_positive).astype(np.float64)
        columns += [pos, neg]
        aucs = []
        for scores in (base, head):
            v10, v01 = _placements(is_positive, scores)
            columns += [v10, v01]
            aucs.append(float(v10.sum() / pos.sum()))
        layout.append((first, aucs[0], aucs[1]))
    return columns, layout


def _compare_means(
    data: PairedExamples, kinds: Sequence[MetricKind], resamples: int, seed: int, confidence: float
) -> dict[str, MetricComparison]:
    columns: list[FloatArray] = [np.ones(data.count)]  # column 0 counts examples
    statistics: dict[str, tuple[Callable[[FloatArray], FloatArray], Callable[[FloatArray], FloatArray]]] = {}

    def add(values: FloatArray) -> int:
        columns.append(np.asarray(values, dtype=np.float64))
        return len(columns) - 1

    def mean_of(column: int) -> Callable[[FloatArray], FloatArray]:
        return lambda sums: sums[:, column] / sums[:, 0]

    for kind in kinds:
        if kind.name == "log_loss":
            assert data.labels is not None and data.base_scores is not None and data.head_scores is not None
            base = add(_log_loss_terms(data.labels, data.base_scores))
            head = add(_log_loss_terms(data.labels, data.head_scores))
            statistics[kind.name] = (mean_of(base), mean_of(head))
        elif kind.name == "roc_auc":
            auc_columns, layout = _auc_columns(data)
            if not layout:
                continue
            offset = len(columns)
            columns += auc_columns
            statistics[kind.name] = (_auc_statistic(layout, offset, 0), _auc_statistic(layout, offset, 1))
        elif kind.needs == "regression":
            assert data.target is not None and data.base_value is not None and data.head_value is not None
            sides = []
            for predicted in (data.base_value, data.head_value):
                error = predicted - data.target
                if kind.name == "mae":
                    sides.append(mean_of(add(np.abs(error))))
                elif kind.name == "r2":
                    sides.append(_r2_statistic(add(error * error), add(data.target), add(data.target**2)))
                else:
                    square = add(error * error)
                    sides.append(mean_of(square) if kind.name == "mse" else _root(mean_of(square)))
            statistics[kind.name] = (sides[0], sides[1])
        elif kind.name == "mean_loss":
            assert data.base_loss is not None and data.head_loss is not None
            statistics[kind.name] = (mean_of(add(data.base_loss)), mean_of(add(data.head_loss)))
    if not statistics:
        return {}
    features = np.stack(columns, axis=1)
    units, frequencies, described = _units(features, seed)
    results = paired_bootstrap(units, frequencies, statistics, resamples, seed, confidence)
    return {name: MetricComparison(KINDS[name], result, described) for name, result in results.items()}


def _root(statistic: Callable[[FloatArray], FloatArray]) -> Callable[[FloatArray], FloatArray]:
    return lambda sums: np.sqrt(statistic(sums))


def _r2_statistic(squares: int, target: int, target_squares: int) -> Callable[[FloatArray], FloatArray]:
    def statistic(sums: FloatArray) -> FloatArray:
        n = sums[:, 0]
        total = sums[:, target_squares] - sums[:, target] ** 2 / n
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, 1.0 - sums[:, squares] / total, np.nan)

    return statistic


def _auc_statistic(
    layout: Sequence[tuple[int, float, float]], offset: int, side: int
) -> Callable[[FloatArray], FloatArray]:
    """Macro mean over one-vs-rest problems of mean*(V10 | pos) + mean*(V01 | neg) - AUC."""

    def statistic(sums: FloatArray) -> FloatArray:
        values = []
        for first, base_auc, head_auc in layout:
            at = offset + first
            pos, neg = sums[:, at], sums[:, at + 1]
            v10, v01 = sums[:, at + 2 + 2 * side], sums[:, at + 3 + 2 * side]
            with np.errstate(divide="ignore", invalid="ignore"):
                values.append(v10 / pos + v01 / neg - (head_auc if side else base_auc))
        mean: FloatArray = np.mean(np.stack(values, axis=1), axis=1)
        return mean

    return statistic


def _units(features: FloatArray, seed: int) -> tuple[FloatArray, IntArray, str]:
    """Examples as they are, or (beyond EXACT_EXAMPLES) the sums of random, equal-sized groups."""
    n = len(features)
    if n <= EXACT_EXAMPLES:
        return features, np.ones(n, dtype=np.int64), f"{n:,} examples"
    groups = EXACT_EXAMPLES
    group_of = np.empty(n, dtype=np.int64)
    group_of[np.random.default_rng(seed + 1).permutation(n)] = np.arange(n) % groups
    sums = np.stack([np.bincount(group_of, weights=column, minlength=groups) for column in features.T], axis=1)
    return (
        sums.astype(np.float64),
        np.ones(groups, dtype=np.int64),
        f"{groups:,} random groups of ~{math.ceil(n / groups)} examples",
    )


def observed(data: PairedExamples, names: Sequence[str]) -> Mapping[str, tuple[float, float]]:
    """Each supported metric's (base, head) value on all examples, without resampling."""
    found = compare_metrics(data, names, resamples=2, seed=DEFAULT_SEED)
    return {name: (c.result.base, c.result.head) for name, c in found.items()}
