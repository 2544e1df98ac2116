"""Per-example results files (``predictions:`` in cml-bot.yaml): read them, match base and head.

One file per revision, one row per evaluated example: CSV/TSV, Parquet, JSON Lines, or JSON (a list
of records, or dvclive's ``{"name": [records]}`` from ``log_sklearn_plot("confusion_matrix", ...)``).
Columns, guessed from common names unless configured: an example id (else rows match by position),
the true label, the predicted label, probabilities (``proba_<class>``, one column per class, or one
positive-class ``score``), or a per-example ``loss``; for a regression, the target and the
predicted value. A file is bounded (``MAX_BYTES``, ``MAX_ROWS``) and every problem with it is one
:class:`InputError` line naming it. Pure: bytes in, arrays out.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

import numpy as np
import numpy.typing as npt
import pandas as pd

from cml_bot import __version__
from cml_bot.answers import records
from cml_bot.config import PredictionsConfig
from cml_bot.errors import InputError
from cml_bot.stats.example_metrics import PairedExamples

FloatArray = npt.NDArray[np.float64]
TextArray = npt.NDArray[np.object_]

MAX_BYTES = 256 * 1024 * 1024
MAX_ROWS = 5_000_000
PARQUET_EXTRA = f"'cml-bot[parquet]=={__version__}'"
SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".ndjson", ".json")

_ID_NAMES = ("id", "example_id", "sample_id", "example", "uid", "key", "row_id", "idx", "index", "filename", "file")
_LABEL_NAMES = ("label", "y_true", "true", "actual", "target", "truth", "ground_truth", "gold", "true_label", "y")
_PREDICTION_NAMES = (
    "prediction",
    "predicted",
    "pred",
    "y_pred",
    "predicted_label",
    "pred_label",
    "yhat",
    "y_hat",
    "output",
)
_LOSS_NAMES = ("loss", "example_loss", "per_example_loss", "nll")
_SCORE_NAMES = ("score", "y_score", "proba", "probability", "prob", "y_prob")
_LIST_SCORE_NAMES = ("probabilities", "probas", "proba", "probs", "scores", "y_proba")
_SCORE_PREFIX = re.compile(r"^(?:proba|prob|probability|p|score)[_:\-](.+)$", re.IGNORECASE)


@dataclass(frozen=True)
class PredictionTable:
    """One revision's per-example results, parsed."""

    path: str
    count: int
    ids: TextArray  # as text; the row number when the file has no id column
    id_column: str | None
    task: str  # "classification" | "regression" | "loss"
    labels: TextArray | None = None  # classification: true label as text
    predicted: TextArray | None = None  # classification: predicted label as text
    scores: FloatArray | None = None  # (n x classes) or (n,) for one positive-class score
    score_classes: tuple[str, ...] = ()  # the class of each score column
    target: FloatArray | None = None  # regression
    value: FloatArray | None = None
    loss: FloatArray | None = None
    dropped: int = 0  # rows left out for a missing label or prediction


def read_predictions(data: bytes, spec: PredictionsConfig, shown: str | None = None) -> PredictionTable:
    """Parse one revision's predictions file (``shown`` names it in errors)."""
    name = shown or spec.path
    if len(data) > MAX_BYTES:
        raise InputError(f"{name}: {len(data):,} bytes, more than the {MAX_BYTES:,} a predictions file may have")
    frame = _frame(data, spec.path, name)
    if len(frame) > MAX_ROWS:
        raise InputError(f"{name}: {len(frame):,} rows, more than the {MAX_ROWS:,} a predictions file may have")
    if len(frame) == 0:
        raise InputError(f"{name}: no rows")
    return _table(frame, spec, name)


def _frame(data: bytes, path: str, name: str) -> pd.DataFrame:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{name}: unsupported predictions format {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
    try:
        if suffix in (".csv", ".tsv"):
            separator = "\t" if suffix == ".tsv" else ","
            return pd.read_csv(io.BytesIO(data), sep=separator, low_memory=False, nrows=MAX_ROWS + 1)
        if suffix == ".parquet":
            if importlib.util.find_spec("pyarrow") is None:
                raise InputError(f"{name}: reading Parquet needs pyarrow: pip install {PARQUET_EXTRA}")
            return pd.read_parquet(io.BytesIO(data))
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(io.BytesIO(data), lines=True, dtype=False)
        return pd.DataFrame.from_records(records(json.loads(data)))
    except InputError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{name}: cannot read predictions ({first[:160]})") from None
    except Exception as exc:  # pyarrow raises its own errors on a damaged Parquet file
        raise InputError(f"{name}: cannot read predictions ({type(exc).__name__})") from None


def _find(frame: pd.DataFrame, configured: str | None, names: Sequence[str], what: str, name: str) -> str | None:
    if configured is not None:
        if configured not in frame.columns:
            raise InputError(f"{name}: no {what} column {configured!r} (columns: {_columns(frame)})")
        return configured
    lower = {str(c).lower(): str(c) for c in frame.columns}
    for candidate in names:
        if candidate in lower:
            return lower[candidate]
    return None


def _columns(frame: pd.DataFrame) -> str:
    names = [str(c) for c in frame.columns[:12]]
    return ", ".join(names) + (", ..." if len(frame.columns) > 12 else "")


def as_text(values: pd.Series) -> TextArray:
    """Labels and ids as text; 3, 3.0 and "3" are the same class (vectorised: files have 10^5+ rows)."""
    missing = values.isna()
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.where(values.to_numpy(dtype=bool), "1", "0").astype(object)
    if pd.api.types.is_float_dtype(values.dtype):
        finite = values[~missing]
        if len(finite) and bool((finite == np.floor(finite)).all()) and bool((finite.abs() < 2**53).all()):
            values = values.fillna(0).astype(np.int64)
    text = values.astype(str).to_numpy(dtype=object)
    if bool(missing.any()):
        text[missing.to_numpy()] = ""
    return text


def _numbers(frame: pd.DataFrame, column: str, name: str) -> FloatArray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(values).all():
        raise InputError(f"{name}: column {column!r} has no numbers")
    return values


def _score_columns(frame: pd.DataFrame, spec: PredictionsConfig, name: str) -> tuple[list[str], tuple[str, ...]]:
    """Score columns and their classes; one column with no class = a binary positive-class score."""
    if spec.scores:
        if len(spec.scores) == 1 and "*" in spec.scores[0]:
            pattern = re.compile("^" + re.escape(spec.scores[0]).replace(r"\*", "(.+)") + "$")
            matched = [(str(c), m.group(1)) for c in frame.columns if (m := pattern.match(str(c)))]
            if not matched:
                raise InputError(f"{name}: no column matches scores pattern {spec.scores[0]!r}")
            return [c for c, _ in matched], tuple(k for _, k in matched)
        for column in spec.scores:
            if column not in frame.columns:
                raise InputError(f"{name}: no score column {column!r} (columns: {_columns(frame)})")
        if len(spec.scores) == 1:
            return [spec.scores[0]], ()
        classes = tuple(m.group(1) if (m := _SCORE_PREFIX.match(c)) else c for c in spec.scores)
        return list(spec.scores), classes
    matched = [(str(c), m.group(1)) for c in frame.columns if (m := _SCORE_PREFIX.match(str(c)))]
    if len(matched) >= 2:
        return [c for c, _ in matched], tuple(k for _, k in matched)
    single = _find(frame, None, _SCORE_NAMES, "score", name)
    return ([single], ()) if single is not None else ([], ())


def _list_scores(frame: pd.DataFrame, name: str) -> tuple[str, FloatArray] | None:
    """A JSON Lines column holding a list of probabilities per row."""
    for column in frame.columns:
        if str(column).lower() in _LIST_SCORE_NAMES and frame[column].map(lambda v: isinstance(v, list)).all():
            lengths = frame[column].map(len)
            if lengths.nunique() != 1:
                raise InputError(f"{name}: column {column!r} holds lists of different lengths")
            try:
                return str(column), np.asarray(frame[column].tolist(), dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError(f"{name}: column {column!r} holds lists that are not all numbers") from None
    return None


def _table(frame: pd.DataFrame, spec: PredictionsConfig, name: str) -> PredictionTable:
    frame.columns = [str(c) for c in frame.columns]
    id_column = _find(frame, spec.id, _ID_NAMES, "id", name)
    label = _find(frame, spec.label, _LABEL_NAMES, "label", name)
    predicted = _find(frame, spec.prediction, _PREDICTION_NAMES, "prediction", name)
    loss = _find(frame, spec.loss, _LOSS_NAMES, "loss", name)
    score_columns, score_classes = _score_columns(frame, spec, name)
    listed = _list_scores(frame, name) if not score_columns else None
    if label is None and loss is None:
        raise InputError(
            f"{name}: no label (or target) column and no per-example loss; name them in predictions "
            f"(label:, prediction:, loss:); columns: {_columns(frame)}"
        )
    task = spec.task or _guess_task(frame, label, predicted, bool(score_columns or listed))
    if task == "classification" and label is None:
        raise InputError(f"{name}: a classification needs a label column (columns: {_columns(frame)})")
    if task == "regression" and (label is None or predicted is None):
        raise InputError(f"{name}: a regression needs a target (label:) and a prediction column")
    needed = [c for c in (label, predicted) if c is not None] if task != "loss" else [loss or ""]
    keep = frame[needed].notna().all(axis=1).to_numpy()
    dropped = int((~keep).sum())
    if dropped:
        frame = frame[keep].reset_index(drop=True)
    if len(frame) == 0:
        raise InputError(f"{name}: no row has all of {', '.join(needed)}")
    if id_column is not None:
        ids = as_text(frame[id_column])
    else:
        ids = np.asarray([str(i) for i in range(len(frame))], dtype=object)
    table = PredictionTable(name, len(frame), ids, id_column, task, dropped=dropped)
    loss_values = _numbers(frame, loss, name) if loss is not None else None
    if task == "regression":
        assert label is not None and predicted is not None
        target, value = _numbers(frame, label, name), _numbers(frame, predicted, name)
        return replace(table, target=target, value=value, loss=loss_values)
    if task == "loss":
        return replace(table, loss=loss_values)
    assert label is not None
    scores: FloatArray | None = None
    if score_columns:
        scores = frame[score_columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        if len(score_columns) == 1:
            scores = scores[:, 0]
    elif listed is not None:
        scores = listed[1][keep]
    if scores is not None and not np.isfinite(scores).all():
        raise InputError(f"{name}: scores must be finite numbers in every row")
    return replace(
        table,
        labels=as_text(frame[label]),
        predicted=as_text(frame[predicted]) if predicted is not None else None,
        scores=scores,
        score_classes=score_classes if score_columns else (("*",) if listed is not None else ()),
        loss=loss_values,
    )


def _guess_task(frame: pd.DataFrame, label: str | None, predicted: str | None, has_scores: bool) -> str:
    if label is None:
        return "loss"
    if has_scores or predicted is None:
        return "classification"
    for column in (label, predicted):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            return "classification"  # text labels
        if not bool((values == np.floor(values)).all()):
            return "regression"  # fractional values
    return "classification"


# --- matching base and head --------------------------------------------------------------------


@dataclass(frozen=True)
class Pairing:
    """Base and head results on their common examples, and how the evaluation set changed."""

    examples: PairedExamples
    ids: TextArray  # the common examples' ids, in the head file's order
    matched_by: str  # "the id column 'id'" or "row order"
    added: int  # examples only in head
    removed: int  # examples only in base
    added_ids: tuple[str, ...]  # the first few
    removed_ids: tuple[str, ...]
    relabelled: int  # common examples whose true label (or target) differs; head's is used
    base_predicted: TextArray | None = None  # class names, for the flips list
    head_predicted: TextArray | None = None
    labels: TextArray | None = None


def _unique_ids(table: PredictionTable) -> None:
    if table.id_column is None:
        return
    series = pd.Series(table.ids)
    duplicated = series.duplicated()
    if duplicated.any():
        first = str(series[duplicated].iloc[0])
        raise InputError(f"{table.path}: id {first[:60]!r} appears more than once in column {table.id_column!r}")


def class_order(names: set[str]) -> tuple[str, ...]:
    """Numerically when every class is a number, else alphabetically."""
    try:
        return tuple(sorted(names, key=lambda v: (float(v), v)))
    except ValueError:
        return tuple(sorted(names))


def pair(base: PredictionTable, head: PredictionTable) -> Pairing | str:
    """Match by id (or by row when neither file has ids and their lengths agree); a string says why not."""
    if base.task != head.task:
        return f"the base file holds a {base.task} and this change's a {head.task}: not compared"
    if (base.id_column is None) != (head.id_column is None):
        return "only one side has an id column: rows cannot be matched"
    if base.id_column is None and base.count != head.count:
        return (
            f"the evaluation set changed ({base.count:,} -> {head.count:,} rows) and no id column says which rows "
            "match: add an id column (predictions.id)"
        )
    _unique_ids(base)
    _unique_ids(head)
    if head.id_column is None:
        head_index = base_index = np.arange(head.count)
        matched_by = "row order (no id column)"
        added_ids: TextArray = np.asarray([], dtype=object)
        removed_ids: TextArray = np.asarray([], dtype=object)
    else:
        positions = pd.Index(base.ids).get_indexer(pd.Index(head.ids))
        in_base = positions >= 0
        head_index = np.flatnonzero(in_base)
        base_index = positions[in_base]
        added_ids = head.ids[~in_base]
        removed_ids = base.ids[~pd.Index(base.ids).isin(head.ids)]
        matched_by = f"the id column {head.id_column!r}"
    ids = head.ids[head_index]
    common = len(head_index)
    first = tuple(str(v) for v in added_ids[:5]), tuple(str(v) for v in removed_ids[:5])
    base_loss, head_loss = _losses(base, head, base_index, head_index)
    if head.task == "regression":
        assert head.target is not None and base.target is not None and head.value is not None
        assert base.value is not None
        target = head.target[head_index]
        relabelled = int(np.count_nonzero(~np.isclose(target, base.target[base_index], equal_nan=True)))
        examples = PairedExamples(
            common,
            target=target,
            base_value=base.value[base_index],
            head_value=head.value[head_index],
            base_loss=base_loss,
            head_loss=head_loss,
        )
        return Pairing(examples, ids, matched_by, len(added_ids), len(removed_ids), *first, relabelled)
    if head.task == "loss":
        examples = PairedExamples(common, base_loss=base_loss, head_loss=head_loss)
        return Pairing(examples, ids, matched_by, len(added_ids), len(removed_ids), *first, 0)
    assert head.labels is not None and base.labels is not None
    labels = head.labels[head_index]
    relabelled = int(np.count_nonzero(labels != base.labels[base_index]))
    base_predicted = base.predicted[base_index] if base.predicted is not None else None
    head_predicted = head.predicted[head_index] if head.predicted is not None else None
    names = {str(v) for v in pd.unique(labels)}
    for values in (base_predicted, head_predicted):
        if values is not None:
            names.update(str(v) for v in pd.unique(values))
    scores, score_note = _aligned_scores(base, head, base_index, head_index, names)
    if score_note is None:
        names.update(base.score_classes if base.score_classes != ("*",) else ())
    classes = class_order(names)

    def encode(values: TextArray | None) -> npt.NDArray[np.int64] | None:
        if values is None:
            return None
        return np.asarray(pd.Categorical(values, categories=list(classes)).codes, dtype=np.int64)

    base_scores = head_scores = None
    if scores is not None:
        base_scores, head_scores = (
            _score_matrix(scores[0], base.score_classes, classes),
            _score_matrix(scores[1], head.score_classes, classes),
        )
    examples = PairedExamples(
        common,
        classes,
        encode(labels),
        encode(base_predicted),
        encode(head_predicted),
        base_scores,
        head_scores,
        base_loss=base_loss,
        head_loss=head_loss,
    )
    return Pairing(
        examples,
        ids,
        matched_by,
        len(added_ids),
        len(removed_ids),
        *first,
        relabelled,
        base_predicted,
        head_predicted,
        labels,
    )


def _losses(
    base: PredictionTable, head: PredictionTable, base_index: npt.NDArray[np.int64], head_index: npt.NDArray[np.int64]
) -> tuple[FloatArray | None, FloatArray | None]:
    if base.loss is None or head.loss is None:
        return None, None
    return base.loss[base_index], head.loss[head_index]


def _aligned_scores(
    base: PredictionTable,
    head: PredictionTable,
    base_index: npt.NDArray[np.int64],
    head_index: npt.NDArray[np.int64],
    names: set[str],
) -> tuple[tuple[FloatArray, FloatArray] | None, str | None]:
    if base.scores is None or head.scores is None:
        return None, "missing"
    if base.scores.ndim != head.scores.ndim or (base.scores.ndim == 2 and base.scores.shape[1] != head.scores.shape[1]):
        return None, "different"
    if base.score_classes != head.score_classes:
        return None, "different"
    return (base.scores[base_index], head.scores[head_index]), None


def _score_matrix(scores: FloatArray, score_classes: tuple[str, ...], classes: tuple[str, ...]) -> FloatArray:
    """Scores with one column per class in ``classes`` order (a missing class scores 0)."""
    if scores.ndim == 1:
        return scores
    if score_classes == ("*",):  # a list per row, in scikit-learn's classes_ order
        if scores.shape[1] == len(classes):
            return scores
        out = np.zeros((len(scores), len(classes)))
        out[:, : min(scores.shape[1], len(classes))] = scores[:, : len(classes)]
        return out
    index = {name: i for i, name in enumerate(classes)}
    out = np.zeros((len(scores), len(classes)))
    for column, name in enumerate(score_classes):
        if name in index:
            out[:, index[name]] = scores[:, column]
    return out
