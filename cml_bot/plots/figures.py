"""Figures for each template: lines and scatter, bars, confusion matrices, images, and the trend of
the base branch, base and head overlaid."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator

from cml_bot.config import PlotSpec
from cml_bot.errors import InputError
from cml_bot.model import Image
from cml_bot.plots.style import (
    ANNOTATE_CLASSES,
    BASE_COLOR,
    CONFUSION_FIGSIZE,
    CONFUSION_PAIR_FIGSIZE,
    DPI,
    FIGSIZE,
    HEAD_COLOR,
    LABEL_CHARS,
    LIMIT,
    MAX_BARS,
    MAX_CLASSES,
    image_text,
    new_figure,
    plot_style,
    safe_name,
    to_png,
)
from cml_bot.plots.tables import (
    as_numbers,
    decimate,
    default_x,
    is_number_dtype,
    numeric_column,
    require_column,
    thin_points,
    y_columns,
)

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def build_figure(
    spec: PlotSpec,
    head: pd.DataFrame,
    base: pd.DataFrame | None = None,
    head_label: str = "this change",
    base_label: str = "main",
) -> Figure:
    """Draw ``spec`` for the parsed head (and base) tables on a new Agg-backed Figure."""
    with plot_style():
        if spec.template in ("linear", "scatter"):
            return _xy_figure(spec, head, base, head_label, base_label)
        if spec.template == "bar":
            return _bar_figure(spec, head, base, head_label, base_label)
        if spec.template in ("confusion", "confusion_normalized"):
            return _confusion_figure(spec, head, base, head_label, base_label)
    raise ValueError(f"build_figure: no figure for template {spec.template!r}")


# --------------------------------------------------------------------------------------------
# Line and scatter plots


class _XAxis:
    """x values of head and base on one axis: numbers as they are, anything else as categories."""

    def __init__(self, columns: Sequence[pd.Series]) -> None:
        numbers = [as_numbers(c) for c in columns]
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
        ax.set_xticks(ticks, labels=[image_text(self.categories[t], 20) for t in ticks])
        if any(len(self.categories[t]) > 6 for t in ticks):
            ax.tick_params(axis="x", labelrotation=30)


def _xy_figure(
    spec: PlotSpec, head: pd.DataFrame, base: pd.DataFrame | None, head_label: str, base_label: str
) -> Figure:
    file = spec.path
    x_name = default_x(head, spec, file)
    y_names = y_columns(head, spec, x_name, file)
    tables: list[tuple[pd.DataFrame, str, bool]] = []
    if base is not None:
        tables.append((base, base_label, True))
    tables.append((head, head_label, False))
    x_columns = [_x_column(frame, x_name) for frame, _, _ in tables]
    axis = _XAxis(x_columns)

    # Numeric axes have short tick labels: fixed margins give the same picture as the constrained
    # layout without its extra draw pass (about 40% of a plot's time). Text categories need it.
    figure, ax = new_figure(FIGSIZE, fixed_margins=axis.categories is None)
    scatter = spec.template == "scatter"
    several = len(y_names) > 1
    for i, (frame, label, is_base) in enumerate(tables):
        x_all = axis.positions(i, x_columns[i])
        for k, y_name in enumerate(y_names):
            if y_name not in frame.columns:
                log.info("plot %s: %r missing in %s data, not drawn", file, y_name, label)
                continue
            try:
                y_all = numeric_column(frame, y_name, file)
            except InputError:
                if is_base:
                    log.info("plot %s: %r not numeric in %s data, not drawn", file, y_name, label)
                    continue
                raise
            x, y = _finite(x_all, y_all)
            legend = f"{image_text(y_name, 40)} ({image_text(label, 40)})" if several else image_text(label, 60)
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
    ax.set_xlabel(image_text(x_name, LABEL_CHARS) if x_name is not None else "row")
    ax.set_ylabel(image_text(y_names[0], LABEL_CHARS) if not several else "value")
    ax.set_title(image_text(spec.title or spec.path, 90))
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


# --------------------------------------------------------------------------------------------
# Bar charts


def _bar_figure(
    spec: PlotSpec, head: pd.DataFrame, base: pd.DataFrame | None, head_label: str, base_label: str
) -> Figure:
    file = spec.path
    x_name = _bar_x(head, spec, file)
    y_names = y_columns(head, spec, x_name, file)
    tables: list[tuple[pd.DataFrame, str, bool]] = []
    if base is not None:
        tables.append((base, base_label, True))
    tables.append((head, head_label, False))
    grouped = [_bar_values(frame, x_name, y_names, file, is_base) for frame, _, is_base in tables]
    categories = [str(v) for v in pd.unique(pd.concat([pd.Series(g.index, dtype=object) for g in grouped]))]
    title = image_text(spec.title or spec.path, 90)
    if len(categories) > MAX_BARS:
        title = f"{title} (first {MAX_BARS} of {len(categories)})"
        categories = categories[:MAX_BARS]

    figure, ax = new_figure(FIGSIZE)
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
                label=f"{image_text(y_name, 40)} ({image_text(label, 40)})" if several else image_text(label, 60),
            )
    ax.set_xticks(positions, labels=[image_text(c, 24) for c in categories])
    if len(categories) > 20:
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    elif sum(len(c) + 2 for c in categories) > 80 or any(len(c) > 10 for c in categories):
        ax.tick_params(axis="x", labelrotation=35)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    ax.grid(axis="x", visible=False)
    ax.set_xlabel(image_text(x_name, LABEL_CHARS) if x_name is not None else "row")
    ax.set_ylabel(image_text(y_names[0], LABEL_CHARS) if not several else "value")
    ax.set_title(title)
    if base is not None or several:
        ax.legend(loc="best")
    return figure


def _bar_x(frame: pd.DataFrame, spec: PlotSpec, file: str) -> str | None:
    x_name = default_x(frame, spec, file)
    if x_name is not None:
        return x_name
    for column in frame.columns:
        if as_numbers(frame[column]) is None:
            return str(column)
    return None


def _bar_values(frame: pd.DataFrame, x_name: str | None, y_names: list[str], file: str, is_base: bool) -> pd.DataFrame:
    """Mean of each y per category (categories in first-seen order)."""
    columns: dict[str, object] = {"__x": _x_column(frame, x_name).astype(str).to_numpy()}
    for y_name in y_names:
        if y_name not in frame.columns:
            continue
        try:
            columns[y_name] = numeric_column(frame, y_name, file)
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
    title = image_text(spec.title or spec.path, 90)
    if len(pairs) == 1:
        figure, ax = new_figure(CONFUSION_FIGSIZE)
        axes = [ax]
        image = _draw_confusion(ax, matrices[0], labels, normalized, vmax, title, actual, predicted)
    else:
        figure = Figure(figsize=CONFUSION_PAIR_FIGSIZE, dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        axes = list(figure.subplots(1, 2))
        for ax, matrix, (_, label) in zip(axes, matrices, pairs, strict=True):
            image = _draw_confusion(ax, matrix, labels, normalized, vmax, image_text(label, 60), actual, predicted)
        figure.suptitle(title, fontsize=11)
    if len(labels) > ANNOTATE_CLASSES:
        figure.colorbar(image, ax=axes, shrink=0.85)
    return figure


def _class_pairs(frame: pd.DataFrame, actual: str, predicted: str, file: str) -> pd.DataFrame:
    require_column(frame, actual, file, "actual, set x")
    require_column(frame, predicted, file, "predicted, set y")
    pairs = pd.DataFrame({"a": frame[actual], "p": frame[predicted]}).dropna()
    if len(pairs) == 0:
        raise InputError(f"{file}: no rows with both {actual!r} and {predicted!r}")
    return pairs


def _class_labels(pairs: list[pd.DataFrame]) -> tuple[list[str], list[object]]:
    """Sorted class keys over all tables (numerically when every value is a number) and their labels."""
    columns = [c for p in pairs for c in (p["a"], p["p"])]
    if all(is_number_dtype(c) for c in columns):
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
        ax.set_xticks(range(n), labels=[image_text(v, 16) for v in labels])
        ax.set_yticks(range(n), labels=[image_text(v, 16) for v in labels])
        if any(len(v) > 3 for v in labels) or n > 12:
            ax.tick_params(axis="x", labelrotation=45)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
    ax.set_xlabel(image_text(predicted, 40))
    ax.set_ylabel(image_text(actual, 40))
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


def image_outputs(spec: PlotSpec, head: bytes, base: bytes | None, stem: str) -> list[Image]:
    images = [Image(f"{stem}.{_image_kind(head, spec.path)}", head)]
    if base is not None and base != head:
        try:
            images.append(Image(f"{stem}-base.{_image_kind(base, spec.path)}", base))
        except InputError as exc:
            log.warning("plot %s: base image left out: %s", spec.path, exc)
    return images


# Trends


def render_trend(
    history: Sequence[tuple[str, Mapping[str, float]]],
    current: Mapping[str, float],
    name: str,
    title: str,
    change_points: Mapping[str, Sequence[int]] | None = None,
    bands: Mapping[str, tuple[int, float, float]] | None = None,
) -> Image:
    """Each headline metric over recorded base-branch commits (oldest first, labelled by short sha),
    with this change's value marked as a separate point at the right, and a dashed line before each
    change point (the index of the first commit of a new level). ``bands`` shades, from the commit
    where it starts to this change, each metric's usual variation: (start index, low, high)."""
    metrics = [metric for metric in current if any(metric in values for _, values in history)]
    if not metrics:
        raise InputError("trend: no headline metric has recorded history")
    with plot_style():
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
            band = (bands or {}).get(metric)
            if band is not None:
                start, low, high = band
                ax.fill_between(
                    [start - 0.5, len(history) + 0.5],
                    low,
                    high,
                    color="#1f77b4",
                    alpha=0.12,
                    linewidth=0,
                    label="usual variation",
                )
            for index in (change_points or {}).get(metric, ()):
                ax.axvline(index - 0.5, color="#d62728", linestyle="--", linewidth=1.0, alpha=0.8)
            ax.set_ylabel(image_text(metric, 24))
            ax.grid(True, alpha=0.3)
        labels = [image_text(sha, 10) for sha, _ in history] + ["this change"]
        axes[-1].set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        axes[0].legend(loc="best", fontsize=8)
        axes[0].set_title(image_text(title, LABEL_CHARS))
        return Image(f"{safe_name(name)}.png", to_png(figure, "trend"))


# Confusion delta


def render_confusion_delta(
    classes: Sequence[str],
    base: Sequence[Sequence[int]],
    head: Sequence[Sequence[int]],
    name: str,
    title: str,
) -> Image:
    """Head's confusion counts minus base's on the same examples, on a diverging scale centred on
    zero (blue: more examples in that cell than at the base, red: fewer). On the diagonal blue is
    good; off it, blue means new confusions."""
    delta = np.asarray(head, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    n = len(classes)
    limit = max(1.0, float(np.abs(delta).max()))
    with plot_style():
        # Fixed margins: the constrained layout's second draw pass was most of this figure's time.
        figure = Figure(figsize=CONFUSION_FIGSIZE, dpi=DPI)
        FigureCanvasAgg(figure)
        figure.subplots_adjust(left=0.16, right=0.86, bottom=0.16, top=0.92)
        ax = figure.add_subplot()
        image = ax.imshow(delta, cmap="RdBu", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.grid(visible=False)
        if n <= ANNOTATE_CLASSES:
            size = 10 if n <= 5 else 8 if n <= 10 else 6
            for row in range(n):
                for col in range(n):
                    value = int(delta[row, col])
                    if value:
                        colour = "white" if abs(value) > 0.6 * limit else "#222222"
                        ax.text(col, row, f"{value:+d}", ha="center", va="center", fontsize=size, color=colour)
        labels = [image_text(v, 16) for v in classes]
        ax.set_xticks(range(n), labels=labels)
        ax.set_yticks(range(n), labels=labels)
        if any(len(v) > 3 for v in classes) or n > 12:
            ax.tick_params(axis="x", labelrotation=45)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(image_text(title, 90))
        figure.colorbar(image, ax=ax, shrink=0.85, label="this change − base", fraction=0.05, pad=0.03)
        return Image(f"{safe_name(name)}.png", to_png(figure, "confusion delta"))
