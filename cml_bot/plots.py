"""Plot specs + data files -> PNG images, drawn on matplotlib's Agg canvas (never pyplot).

``render_plot`` is the entry point: it reads the data file at head (and at base, when there is
one), builds a :class:`~matplotlib.figure.Figure` with :func:`build_figure` and saves it as PNG.
Rendering is deterministic (fixed style, no "Software" metadata), so the same input gives the
same bytes and image hosts can dedupe by content. Large series are decimated first (min/max per
bucket for lines, one point per pixel cell for scatter) so a million points render quickly.

Untrusted text (column names, titles, class labels) only ever goes into the image; ``$`` is
escaped so it is never parsed as mathtext.

This module imports matplotlib, pandas and numpy: import it lazily, not from ``cml-bot --help``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import multiprocessing
import os
import re
import sys
import threading
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import matplotlib
import matplotlib.style
import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator

from cml_bot.config import PlotSpec
from cml_bot.errors import InputError
from cml_bot.forges.base import Image

__all__ = [
    "PlotJob",
    "build_figure",
    "decimate",
    "load_table",
    "render_all",
    "render_plot",
    "render_trend",
    "safe_name",
    "thin_points",
]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

X_DEFAULTS = ("step", "epoch", "iteration")  # column names used as x when the spec names none
BUCKETS = 2000  # min/max buckets per line series: at most ~4,000 points drawn
SCATTER_GRID = (400, 250)  # one point kept per cell: at most 100,000 markers drawn
MAX_DEFAULT_SERIES = 10  # y columns picked automatically (explicit y is honoured in full)
MAX_BARS = 40  # categories shown in a bar chart
MAX_CLASSES = 1000  # classes in a confusion matrix
ANNOTATE_CLASSES = 15  # annotate confusion cells up to this many classes
LIMIT = 1e200  # larger values are dropped like inf: matplotlib cannot scale an axis across them
LABEL_CHARS = 60  # untrusted labels are cut to this length in the image
FIGSIZE = (7.0, 4.0)
FIXED_MARGINS = {"left": 0.1, "right": 0.97, "bottom": 0.12, "top": 0.92}
CONFUSION_FIGSIZE = (6.0, 4.5)
CONFUSION_PAIR_FIGSIZE = (10.0, 4.5)
DPI = 100
HEAD_COLOR = "#1f77b4"
BASE_COLOR = "#8c8c8c"

# The style every plot is drawn with, on top of matplotlib's built-in defaults (so neither a
# user's matplotlibrc nor another caller's rcParams change the bytes).
_RC: dict[Any, Any] = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "legend.framealpha": 0.85,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.formatter.useoffset": False,
    "axes.formatter.limits": (-5, 7),  # step 1000000, not 1.0 with a 1e6 offset
    "path.simplify": True,
    "agg.path.chunksize": 10000,
    "text.usetex": False,
    "svg.hashsalt": "cml-bot",
}


# --------------------------------------------------------------------------------------------
# Public API


def safe_name(text: str) -> str:
    """A file-name-safe stem: lowercase ``[a-z0-9-]``, no leading/trailing/double ``-``, 1-60 chars."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    stem = stem[:60].rstrip("-")
    return stem or "plot"


def load_table(data: bytes, filename: str) -> pd.DataFrame:
    """Parse a plot data file: CSV, TSV, JSON or YAML (DVC's plot formats).

    JSON/YAML hold a list of records, or an object with exactly one such list
    (``{"train": [{"step": 0, "loss": 1.0}, ...]}``). The format comes from the extension, or is
    sniffed from the content when the extension says nothing. Errors name ``filename``.
    """
    return _load_table(data, filename, filename)


def _load_table(data: bytes, filename: str, shown: str) -> pd.DataFrame:
    """:func:`load_table`, naming the file ``shown`` in errors (the base's file says so)."""
    if not data.strip():
        raise InputError(f"{shown}: empty file, no rows to plot")
    kind = _table_kind(data, filename)
    if kind in ("json", "yaml"):
        frame = pd.DataFrame.from_records(_records(data, shown, kind))
    else:
        frame = _read_delimited(data, "\t" if kind == "tsv" else ",", shown)
    if len(frame.columns) == 0 or len(frame) == 0:
        raise InputError(f"{shown}: no rows to plot")
    frame.columns = pd.Index([str(c) for c in frame.columns])
    return frame


def render_plot(
    spec: PlotSpec,
    head: bytes,
    base: bytes | None,
    name: str,
    head_label: str = "this change",
    base_label: str = "main",
) -> list[Image]:
    """Render ``spec`` from the data file's bytes at head (and base) into images named after ``name``.

    ``name`` is passed through :func:`safe_name`; a data plot yields ``<name>.png``. The image
    template returns the user's file as is (``<name>.<ext>``) and, when the base differs,
    ``<name>-base.<ext>``. A base file that cannot be read is logged and left out, so a broken
    main never hides the head's plot; a head file that cannot be read raises :class:`InputError`.
    """
    stem = safe_name(name)
    if spec.template == "image":
        return _image_outputs(spec, head, base, stem)
    head_frame = load_table(head, spec.path)
    base_frame = None
    if base is not None:
        try:
            base_frame = _load_table(base, spec.path, f"{spec.path} at {base_label}")
        except InputError as exc:
            log.warning("plot %s: base data left out: %s", spec.path, exc)
    with _style():
        figure = build_figure(spec, head_frame, base_frame, head_label, base_label)
        data = _to_png(figure, spec.path)
    log.debug("plot %s: %s.png, %d bytes", spec.path, stem, len(data))
    return [Image(f"{stem}.png", data)]


def build_figure(
    spec: PlotSpec,
    head: pd.DataFrame,
    base: pd.DataFrame | None = None,
    head_label: str = "this change",
    base_label: str = "main",
) -> Figure:
    """Draw ``spec`` for the parsed head (and base) tables on a new Agg-backed Figure."""
    with _style():
        if spec.template in ("linear", "scatter"):
            return _xy_figure(spec, head, base, head_label, base_label)
        if spec.template == "bar":
            return _bar_figure(spec, head, base, head_label, base_label)
        if spec.template in ("confusion", "confusion_normalized"):
            return _confusion_figure(spec, head, base, head_label, base_label)
    raise ValueError(f"build_figure: no figure for template {spec.template!r}")


def decimate(x: FloatArray, y: FloatArray, buckets: int = BUCKETS) -> tuple[FloatArray, FloatArray]:
    """Keep the min and max of ``y`` in each of ``buckets`` runs of points (plus both ends).

    The drawn line keeps the envelope of the full series: spikes survive, noise is not averaged
    away. Inputs must be finite and in drawing order; series of up to ``2 * buckets`` points are
    returned unchanged.
    """
    n = len(y)
    if n <= 2 * buckets:
        return x, y
    size = -(-n // buckets)
    full = n // size
    blocks = y[: full * size].reshape(full, size)
    offsets = np.arange(full) * size
    parts = [blocks.argmin(axis=1) + offsets, blocks.argmax(axis=1) + offsets, np.array([0, n - 1])]
    if full * size < n:
        tail = y[full * size :]
        parts.append(np.array([full * size + int(tail.argmin()), full * size + int(tail.argmax())]))
    keep = np.unique(np.concatenate(parts))
    return x[keep], y[keep]


def thin_points(x: FloatArray, y: FloatArray, grid: tuple[int, int] = SCATTER_GRID) -> tuple[FloatArray, FloatArray]:
    """Keep the first point in each cell of a ``grid`` laid over the points' range (scatter plots).

    At the plot's resolution the picture is the same (outliers included); order is preserved.
    """
    if len(x) <= grid[0] * grid[1] // 20:
        return x, y
    cols = _cells(x, grid[0])
    rows = _cells(y, grid[1])
    _, first = np.unique(cols * grid[1] + rows, return_index=True)
    first.sort()
    return x[first], y[first]


# --------------------------------------------------------------------------------------------
# Reading tables


def _table_kind(data: bytes, filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()
    known = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}
    if suffix in known:
        return known[suffix]
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start in (b"[", b"{"):
        return "json"
    first_line = data.split(b"\n", 1)[0]
    return "tsv" if b"\t" in first_line else "csv"


def _read_delimited(data: bytes, sep: str, filename: str) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(data), sep=sep, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{filename}: not UTF-8 text") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{filename}: no columns to plot") from None
    except (pd.errors.ParserError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        kind = "TSV" if sep == "\t" else "CSV"
        raise InputError(f"{filename}: cannot parse as {kind}: {reason}") from None


def _records(data: bytes, filename: str, kind: str) -> list[dict[str, object]]:
    try:
        if kind == "json":
            parsed: object = json.loads(data)
        else:
            parsed = yaml.safe_load(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(f"{filename}: not UTF-8 text") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise InputError(f"{filename}: invalid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{filename}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    expected = "a list of records, or an object holding one list of records"
    if isinstance(parsed, dict):
        lists = [key for key, value in parsed.items() if isinstance(value, list)]
        if len(lists) != 1:
            found = f"lists {', '.join(repr(str(k)) for k in lists[:5])}" if lists else "no list"
            raise InputError(f"{filename}: expected {expected}; found {found}")
        parsed = parsed[lists[0]]
    if not isinstance(parsed, list):
        raise InputError(f"{filename}: expected {expected}")
    for i, item in enumerate(parsed):
        if not isinstance(item, dict):
            raise InputError(f"{filename}: record {i} is not an object of fields")
    return parsed


# --------------------------------------------------------------------------------------------
# Columns


def _columns_hint(frame: pd.DataFrame) -> str:
    names = [repr(_short(c, 30)) for c in frame.columns[:8]]
    more = ", ..." if len(frame.columns) > 8 else ""
    return f"columns: {', '.join(names)}{more}"


def _require(frame: pd.DataFrame, column: str, file: str, role: str) -> None:
    if column not in frame.columns:
        raise InputError(f"{file}: no column {_short(column, 60)!r} ({role}); {_columns_hint(frame)}")


def _is_number_dtype(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series.dtype)) and not pd.api.types.is_bool_dtype(series.dtype)


def _as_numbers(series: pd.Series) -> pd.Series | None:
    """The column as floats, or None when a present value is not a number."""
    if _is_number_dtype(series) or pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64")
    try:
        converted = pd.to_numeric(series, errors="coerce")
    except (TypeError, ValueError):
        return None
    if bool((converted.isna() & series.notna()).any()):
        return None
    return converted.astype("float64")


def _numeric(frame: pd.DataFrame, column: str, file: str, role: str = "y") -> FloatArray:
    _require(frame, column, file, role)
    series = frame[column]
    numbers = _as_numbers(series)
    if numbers is None:
        sample = _first_non_numeric(series)
        raise InputError(f"{file}: column {_short(column, 60)!r} ({role}) is not numeric (value {sample})")
    values: FloatArray = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def _first_non_numeric(series: pd.Series) -> str:
    for value in series:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        try:
            float(value)
        except (TypeError, ValueError):
            return repr(_short(str(value), 40))
    return "?"


def _default_x(frame: pd.DataFrame, spec: PlotSpec, file: str) -> str | None:
    if spec.x is not None:
        _require(frame, spec.x, file, "x")
        return spec.x
    lowered = {str(c).lower(): str(c) for c in reversed(list(frame.columns))}
    for name in X_DEFAULTS:
        if name in lowered:
            return lowered[name]
    return None


def _y_columns(frame: pd.DataFrame, spec: PlotSpec, x: str | None, file: str) -> list[str]:
    if spec.y:
        for column in spec.y:
            values = _numeric(frame, column, file)
            if not np.isfinite(values).any():
                raise InputError(f"{file}: column {_short(column, 60)!r} (y) has no numbers")
        return list(spec.y)
    picked = []
    for column in frame.columns:
        if column == x:
            continue
        numbers = _as_numbers(frame[column])
        if numbers is None:
            continue
        if bool(np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan)).any()):
            picked.append(str(column))
    if not picked:
        raise InputError(f"{file}: no numeric column to plot; set y in the plot spec; {_columns_hint(frame)}")
    if len(picked) > MAX_DEFAULT_SERIES:
        log.info("plot %s: drawing the first %d of %d numeric columns", file, MAX_DEFAULT_SERIES, len(picked))
    return picked[:MAX_DEFAULT_SERIES]


# --------------------------------------------------------------------------------------------
# Line and scatter plots


class _XAxis:
    """x values of head and base on one axis: numbers as they are, anything else as categories."""

    def __init__(self, columns: Sequence[pd.Series]) -> None:
        numbers = [_as_numbers(c) for c in columns]
        self.categories: list[str] | None = None
        self._numbers: list[pd.Series] | None = None
        if all(n is not None for n in numbers):
            self._numbers = [n for n in numbers if n is not None]
        else:
            texts = pd.concat([c.astype(str) for c in columns], ignore_index=True)
            self.categories = [str(v) for v in pd.unique(texts)]

    def positions(self, index: int, column: pd.Series) -> FloatArray:
        if self._numbers is not None:
            values: FloatArray = self._numbers[index].to_numpy(dtype=np.float64, na_value=np.nan)
            return values
        codes = pd.Categorical(column.astype(str), categories=self.categories).codes
        return np.asarray(codes, dtype=np.float64)

    def label_ticks(self, ax: Axes) -> None:
        if self.categories is None:
            return
        count = len(self.categories)
        spread = sorted({round(float(v)) for v in np.linspace(0, count - 1, 10)})
        ticks = list(range(count)) if count <= 20 else spread
        ax.set_xticks(ticks, labels=[_text(self.categories[t], 20) for t in ticks])
        if any(len(self.categories[t]) > 6 for t in ticks):
            ax.tick_params(axis="x", labelrotation=30)


def _xy_figure(
    spec: PlotSpec, head: pd.DataFrame, base: pd.DataFrame | None, head_label: str, base_label: str
) -> Figure:
    file = spec.path
    x_name = _default_x(head, spec, file)
    y_names = _y_columns(head, spec, x_name, file)
    tables: list[tuple[pd.DataFrame, str, bool]] = []
    if base is not None:
        tables.append((base, base_label, True))
    tables.append((head, head_label, False))
    x_columns = [_x_column(frame, x_name) for frame, _, _ in tables]
    axis = _XAxis(x_columns)

    # Numeric axes have short tick labels: fixed margins give the same picture as the constrained
    # layout without its extra draw pass (about 40% of a plot's time). Text categories need it.
    figure, ax = _new_figure(FIGSIZE, fixed_margins=axis.categories is None)
    scatter = spec.template == "scatter"
    several = len(y_names) > 1
    for i, (frame, label, is_base) in enumerate(tables):
        x_all = axis.positions(i, x_columns[i])
        for k, y_name in enumerate(y_names):
            if y_name not in frame.columns:
                log.info("plot %s: %r missing in %s data, not drawn", file, y_name, label)
                continue
            try:
                y_all = _numeric(frame, y_name, file)
            except InputError:
                if is_base:
                    log.info("plot %s: %r not numeric in %s data, not drawn", file, y_name, label)
                    continue
                raise
            x, y = _finite(x_all, y_all)
            legend = f"{_text(y_name, 40)} ({_text(label, 40)})" if several else _text(label, 60)
            colour = f"C{k % 10}" if several else HEAD_COLOR
            if scatter:
                size = 5.0 if len(x) <= 1000 else 3.0
                x, y = thin_points(x, y)
                ax.plot(
                    x,
                    y,
                    linestyle="none",
                    marker="o",
                    markersize=size * 0.85 if is_base else size,
                    markeredgewidth=0,
                    color=(colour if several else BASE_COLOR) if is_base else colour,
                    alpha=0.6 if is_base else 0.85,
                    label=legend,
                    zorder=2 if is_base else 3,
                )
            else:
                x, y = _in_x_order(x, y)
                x, y = decimate(x, y)
                ax.plot(
                    x,
                    y,
                    color=(colour if several else BASE_COLOR) if is_base else colour,
                    linewidth=1.1 if is_base else 1.9,
                    linestyle="--" if is_base and several else "-",
                    alpha=0.6 if is_base else 1.0,
                    label=legend,
                    zorder=2 if is_base else 3,
                )
    axis.label_ticks(ax)
    if axis.categories is None and all(pd.api.types.is_integer_dtype(c.dtype) for c in x_columns):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epoch 2, not 2.5
    ax.set_xlabel(_text(x_name, LABEL_CHARS) if x_name is not None else "row")
    ax.set_ylabel(_text(y_names[0], LABEL_CHARS) if not several else "value")
    ax.set_title(_text(spec.title or spec.path, 90))
    if base is not None or several:
        ax.legend(loc="best")
    return figure


def _x_column(frame: pd.DataFrame, x_name: str | None) -> pd.Series:
    if x_name is not None and x_name in frame.columns:
        return frame[x_name]
    return pd.Series(np.arange(len(frame), dtype=np.int64))


def _finite(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Drop points with NaN, infinite or absurd (beyond 1e200: axes cannot span them) coordinates."""
    with np.errstate(invalid="ignore"):
        mask = (np.abs(x) < LIMIT) & (np.abs(y) < LIMIT)
    if bool(mask.all()):
        return x, y
    return x[mask], y[mask]


def _in_x_order(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    if len(x) < 2 or bool((np.diff(x) >= 0).all()):
        return x, y
    order = np.argsort(x, kind="stable")
    return x[order], y[order]


def _cells(values: FloatArray, count: int) -> npt.NDArray[np.int64]:
    low = float(values.min())
    span = float(values.max()) - low
    if span <= 0 or not np.isfinite(span):
        return np.zeros(len(values), dtype=np.int64)
    cells: npt.NDArray[np.int64] = ((values - low) * ((count - 1) / span)).astype(np.int64)
    return cells


# --------------------------------------------------------------------------------------------
# Bar charts


def _bar_figure(
    spec: PlotSpec, head: pd.DataFrame, base: pd.DataFrame | None, head_label: str, base_label: str
) -> Figure:
    file = spec.path
    x_name = _bar_x(head, spec, file)
    y_names = _y_columns(head, spec, x_name, file)
    tables: list[tuple[pd.DataFrame, str, bool]] = []
    if base is not None:
        tables.append((base, base_label, True))
    tables.append((head, head_label, False))
    grouped = [_bar_values(frame, x_name, y_names, file, is_base) for frame, _, is_base in tables]
    categories = [str(v) for v in pd.unique(pd.concat([pd.Series(g.index, dtype=object) for g in grouped]))]
    title = _text(spec.title or spec.path, 90)
    if len(categories) > MAX_BARS:
        title = f"{title} (first {MAX_BARS} of {len(categories)})"
        categories = categories[:MAX_BARS]

    figure, ax = _new_figure(FIGSIZE)
    several = len(y_names) > 1
    bars = len(y_names) * len(tables)
    width = 0.8 / bars
    positions = np.arange(len(categories), dtype=np.float64)
    slot = 0
    for k, y_name in enumerate(y_names):
        for (_, label, is_base), values in zip(tables, grouped, strict=True):
            heights = (
                values[y_name].reindex(categories).to_numpy(dtype=np.float64, na_value=np.nan)
                if y_name in values.columns
                else np.full(len(categories), np.nan)
            )
            colour = f"C{k % 10}" if several else HEAD_COLOR
            offset = (slot - (bars - 1) / 2) * width
            slot += 1
            with np.errstate(invalid="ignore"):
                shown = np.abs(heights) < LIMIT
            ax.bar(
                positions[shown] + offset,
                heights[shown],
                width=width * 0.95,
                color=(colour if several else BASE_COLOR) if is_base else colour,
                alpha=0.45 if is_base and several else 1.0,
                hatch="//" if is_base and several else None,
                edgecolor="white" if not (is_base and several) else colour,
                linewidth=0.5,
                label=f"{_text(y_name, 40)} ({_text(label, 40)})" if several else _text(label, 60),
            )
    ax.set_xticks(positions, labels=[_text(c, 24) for c in categories])
    if len(categories) > 20:
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    elif sum(len(c) + 2 for c in categories) > 80 or any(len(c) > 10 for c in categories):
        ax.tick_params(axis="x", labelrotation=35)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    ax.grid(axis="x", visible=False)
    ax.set_xlabel(_text(x_name, LABEL_CHARS) if x_name is not None else "row")
    ax.set_ylabel(_text(y_names[0], LABEL_CHARS) if not several else "value")
    ax.set_title(title)
    if base is not None or several:
        ax.legend(loc="best")
    return figure


def _bar_x(frame: pd.DataFrame, spec: PlotSpec, file: str) -> str | None:
    x_name = _default_x(frame, spec, file)
    if x_name is not None:
        return x_name
    for column in frame.columns:
        if _as_numbers(frame[column]) is None:
            return str(column)
    return None


def _bar_values(frame: pd.DataFrame, x_name: str | None, y_names: list[str], file: str, is_base: bool) -> pd.DataFrame:
    """Mean of each y per category (categories in first-seen order)."""
    columns: dict[str, object] = {"__x": _x_column(frame, x_name).astype(str).to_numpy()}
    for y_name in y_names:
        if y_name not in frame.columns:
            continue
        try:
            columns[y_name] = _numeric(frame, y_name, file)
        except InputError:
            if not is_base:
                raise
    table = pd.DataFrame(columns)
    return table.groupby("__x", sort=False).mean()


# --------------------------------------------------------------------------------------------
# Confusion matrices


def _confusion_figure(
    spec: PlotSpec, head: pd.DataFrame, base: pd.DataFrame | None, head_label: str, base_label: str
) -> Figure:
    file = spec.path
    if len(spec.y) > 1:
        raise InputError(f"{file}: a confusion plot takes one y (predicted) field, got {len(spec.y)}")
    actual = spec.x or "actual"
    predicted = spec.y[0] if spec.y else "predicted"
    normalized = spec.template == "confusion_normalized"
    pairs = [(_class_pairs(head, actual, predicted, file), head_label)]
    if base is not None:
        try:
            pairs.insert(0, (_class_pairs(base, actual, predicted, file), base_label))
        except InputError as exc:
            log.warning("plot %s: base data left out: %s", file, exc)
    labels, keys = _class_labels([p for p, _ in pairs])
    if len(labels) > MAX_CLASSES:
        raise InputError(f"{file}: {len(labels)} classes, too many for a confusion matrix (at most {MAX_CLASSES})")
    matrices = [_confusion_matrix(p, keys, normalized) for p, _ in pairs]
    vmax = 1.0 if normalized else max(1.0, *(float(m.max()) for m in matrices))
    title = _text(spec.title or spec.path, 90)
    if len(pairs) == 1:
        figure, ax = _new_figure(CONFUSION_FIGSIZE)
        axes = [ax]
        image = _draw_confusion(ax, matrices[0], labels, normalized, vmax, title, actual, predicted)
    else:
        figure = Figure(figsize=CONFUSION_PAIR_FIGSIZE, dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        axes = list(figure.subplots(1, 2))
        for ax, matrix, (_, label) in zip(axes, matrices, pairs, strict=True):
            image = _draw_confusion(ax, matrix, labels, normalized, vmax, _text(label, 60), actual, predicted)
        figure.suptitle(title, fontsize=11)
    if len(labels) > ANNOTATE_CLASSES:
        figure.colorbar(image, ax=axes, shrink=0.85)
    return figure


def _class_pairs(frame: pd.DataFrame, actual: str, predicted: str, file: str) -> pd.DataFrame:
    _require(frame, actual, file, "actual, set x")
    _require(frame, predicted, file, "predicted, set y")
    pairs = pd.DataFrame({"a": frame[actual], "p": frame[predicted]}).dropna()
    if len(pairs) == 0:
        raise InputError(f"{file}: no rows with both {actual!r} and {predicted!r}")
    return pairs


def _class_labels(pairs: list[pd.DataFrame]) -> tuple[list[str], list[object]]:
    """Sorted class keys over all tables (numerically when every value is a number) and their labels."""
    columns = [c for p in pairs for c in (p["a"], p["p"])]
    if all(_is_number_dtype(c) for c in columns):
        numbers = np.unique(np.concatenate([c.to_numpy(dtype=np.float64) for c in columns]))
        keys: list[object] = [float(v) for v in numbers]
        return [f"{v:g}" for v in numbers], keys
    for p in pairs:
        p["a"] = p["a"].astype(str)
        p["p"] = p["p"].astype(str)
    texts = sorted({str(v) for c in columns for v in pd.unique(c.astype(str))})
    return texts, list(texts)


def _confusion_matrix(pairs: pd.DataFrame, keys: list[object], normalized: bool) -> FloatArray:
    n = len(keys)
    actual = pd.Categorical(pairs["a"], categories=keys).codes.astype(np.int64)
    predicted = pd.Categorical(pairs["p"], categories=keys).codes.astype(np.int64)
    counts = np.bincount(actual * n + predicted, minlength=n * n).reshape(n, n).astype(np.float64)
    if not normalized:
        return counts
    totals = counts.sum(axis=1, keepdims=True)
    shares: FloatArray = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return shares


def _draw_confusion(
    ax: Axes,
    matrix: FloatArray,
    labels: list[str],
    normalized: bool,
    vmax: float,
    title: str,
    actual: str,
    predicted: str,
) -> AxesImage:
    n = len(labels)
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.grid(visible=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    if n <= ANNOTATE_CLASSES:
        size = 10 if n <= 5 else 8 if n <= 10 else 6
        for row in range(n):
            for col in range(n):
                value = float(matrix[row, col])
                ax.text(
                    col,
                    row,
                    f"{value:.2f}" if normalized else f"{value:.0f}",
                    ha="center",
                    va="center",
                    fontsize=size,
                    color="white" if value > 0.55 * vmax else "#222222",
                )
    if n <= 30:
        ax.set_xticks(range(n), labels=[_text(v, 16) for v in labels])
        ax.set_yticks(range(n), labels=[_text(v, 16) for v in labels])
        if any(len(v) > 3 for v in labels) or n > 12:
            ax.tick_params(axis="x", labelrotation=45)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
    ax.set_xlabel(_text(predicted, 40))
    ax.set_ylabel(_text(actual, 40))
    ax.set_title(title)
    return image


# --------------------------------------------------------------------------------------------
# The image template


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)


def _image_kind(data: bytes, filename: str) -> str:
    """The image's extension from its content (keeping ``.jpeg`` when the file is so named)."""
    kind = None
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            kind = ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "webp"
    if kind is None and b"<svg" in data.lstrip(b"\xef\xbb\xbf \t\r\n")[:4096].lower():
        kind = "svg"
    if kind is None:
        raise InputError(f"{filename}: not a PNG, JPEG, GIF, WebP or SVG image")
    if kind == "jpg" and PurePosixPath(filename).suffix.lower() == ".jpeg":
        return "jpeg"
    return kind


def _image_outputs(spec: PlotSpec, head: bytes, base: bytes | None, stem: str) -> list[Image]:
    images = [Image(f"{stem}.{_image_kind(head, spec.path)}", head)]
    if base is not None and base != head:
        try:
            images.append(Image(f"{stem}-base.{_image_kind(base, spec.path)}", base))
        except InputError as exc:
            log.warning("plot %s: base image left out: %s", spec.path, exc)
    return images


# --------------------------------------------------------------------------------------------
# Figures and text


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """matplotlib's built-in defaults plus our style, for drawing and saving (restored after)."""
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        yield


def _new_figure(size: tuple[float, float], fixed_margins: bool = False) -> tuple[Figure, Axes]:
    figure = Figure(figsize=size, dpi=DPI, layout=None if fixed_margins else "constrained")
    if fixed_margins:
        figure.subplots_adjust(**FIXED_MARGINS)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _to_png(figure: Figure, file: str) -> bytes:
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    except (ValueError, OverflowError) as exc:  # e.g. values too large for the axis
        raise InputError(f"{file}: cannot draw the plot: {_short(str(exc), 120)}") from None
    return buffer.getvalue()


def _short(text: object, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _text(text: object, limit: int) -> str:
    """Untrusted text for the image: one line, cut to ``limit``, ``$`` never read as mathtext."""
    flat = " ".join(str(text).split())
    return _short(flat, limit).replace("$", r"\$")


# Trends


def render_trend(
    history: Sequence[tuple[str, Mapping[str, float]]], current: Mapping[str, float], name: str, title: str
) -> Image:
    """Each headline metric over recorded base-branch commits (oldest first, labelled by short sha),
    with this change's value marked as a separate point at the right."""
    metrics = [metric for metric in current if any(metric in values for _, values in history)]
    if not metrics:
        raise InputError("trend: no headline metric has recorded history")
    with _style():
        figure = Figure(figsize=(7.0, 1.6 + 1.4 * len(metrics)), dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
        positions = np.arange(len(history), dtype=np.float64)
        for ax, metric in zip(axes, metrics, strict=True):
            ys = np.array([values.get(metric, np.nan) for _, values in history], dtype=np.float64)
            ax.plot(positions, ys, color="0.45", linewidth=1.5, marker="o", markersize=3, label="recorded")
            ax.plot(
                [len(history)],
                [current[metric]],
                color="#1f77b4",
                marker="D",
                markersize=7,
                linestyle="none",
                label="this change",
            )
            ax.set_ylabel(_text(metric, 24))
            ax.grid(True, alpha=0.3)
        labels = [_text(sha, 10) for sha, _ in history] + ["this change"]
        axes[-1].set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        axes[0].legend(loc="best", fontsize=8)
        axes[0].set_title(_text(title, LABEL_CHARS))
        return Image(f"{safe_name(name)}.png", _to_png(figure, "trend"))


# Many plots


@dataclass(frozen=True)
class PlotJob:
    spec: PlotSpec
    head: bytes
    base: bytes | None
    name: str
    base_label: str = "main"


_JOBS: Sequence[PlotJob] = ()  # read by forked workers (inherited, never pickled)


def render_all(jobs: Sequence[PlotJob], workers: int | None = None) -> list[list[Image] | str]:
    """Render every job: its images, or the reason it could not be drawn (an InputError's text).

    Drawing is CPU-bound and holds the GIL, so with several plots and cores the jobs run in forked
    worker processes, which inherit the already imported matplotlib and the data. Forking is only
    done where it is safe: on Linux, in a process with no other thread running.
    """
    global _JOBS
    count = min(workers or os.cpu_count() or 1, len(jobs))
    if count < 2 or not _fork_is_safe():
        return [_render_job(job) for job in jobs]
    # Largest inputs first, so the slow plot does not start last.
    order = sorted(range(len(jobs)), key=lambda i: -(len(jobs[i].head) + len(jobs[i].base or b"")))
    _JOBS = jobs
    try:
        with multiprocessing.get_context("fork").Pool(processes=count) as pool:
            results = pool.map(_render_index, order, chunksize=1)
    finally:
        _JOBS = ()
    by_index = dict(zip(order, results, strict=True))
    return [by_index[i] for i in range(len(jobs))]


def _fork_is_safe() -> bool:
    return sys.platform == "linux" and threading.active_count() == 1 and os.environ.get("CML_BOT_PLOT_WORKERS") != "1"


def _render_index(index: int) -> list[Image] | str:
    return _render_job(_JOBS[index])


def _render_job(job: PlotJob) -> list[Image] | str:
    try:
        return render_plot(job.spec, job.head, job.base, job.name, base_label=job.base_label)
    except InputError as exc:
        return str(exc)
