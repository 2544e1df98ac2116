"""Figures for each template: lines and scatter, bars, confusion matrices, images, and the trend of
the base branch, base and head overlaid."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

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
from cml_bot.plots.jobs import safe_name
from cml_bot.plots.series import Revision, Series, axis_labels, build_series
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
    shorten,
    to_png,
)
from cml_bot.plots.tables import (
    as_numbers,
    decimate,
    first_non_numeric,
    is_number_dtype,
    require_column,
    thin_points,
)

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def build_figure(
    spec: PlotSpec,
    head: Mapping[str, pd.DataFrame] | pd.DataFrame,
    base: Mapping[str, pd.DataFrame] | pd.DataFrame | None = None,
    head_label: str = "this change",
    base_label: str = "main",
) -> Figure:
    """Draw ``spec`` for the parsed head (and base) tables, by file (a bare table is the plot's own
    file), on a new Agg-backed Figure."""
    revisions = []
    if base is not None:
        revisions.append(Revision(base_label, _by_file(spec, base), is_base=True))
    revisions.append(Revision(head_label, _by_file(spec, head), is_base=False))
    with plot_style():
        if spec.template in LINE_TEMPLATES:
            return _xy_figure(spec, revisions)
        if spec.template == "bar":
            return _bar_figure(spec, revisions)
        if spec.template in ("bar_horizontal", "bar_horizontal_sorted"):
            return _barh_figure(spec, revisions)
        if spec.template in ("confusion", "confusion_normalized"):
            return _confusion_figure(spec, revisions)
    raise ValueError(f"build_figure: no figure for template {spec.template!r}")


LINE_TEMPLATES = ("linear", "simple", "smooth", "scatter", "scatter_jitter")


def _by_file(spec: PlotSpec, tables: Mapping[str, pd.DataFrame] | pd.DataFrame) -> Mapping[str, pd.DataFrame]:
    return {spec.path: tables} if isinstance(tables, pd.DataFrame) else tables


def _colour(series: Series, several: bool) -> str:
    if not several:
        return BASE_COLOR if series.is_base else HEAD_COLOR
    return f"C{series.source_index % 10}"


# --------------------------------------------------------------------------------------------
# Line and scatter plots


class _XAxis:
    """x values of every series on one axis: numbers as they are, anything else as categories."""

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


def _xy_figure(spec: PlotSpec, revisions: Sequence[Revision]) -> Figure:
    drawable: list[tuple[Series, FloatArray]] = []
    for s in build_series(spec, revisions):
        numbers = as_numbers(s.y)
        if numbers is None:
            if s.is_base:
                log.info("plot %s: %r not numeric in %s data, not drawn", spec.path, s.field, s.revision)
                continue
            raise InputError(
                f"{s.file}: column {shorten(s.field, 60)!r} (y) is not numeric (value {first_non_numeric(s.y)})"
            )
        y_values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        if not s.is_base and not np.isfinite(y_values).any():
            raise InputError(f"{s.file}: column {shorten(s.field, 60)!r} (y) has no numbers")
        drawable.append((s, y_values))
    axis = _XAxis([s.x for s, _ in drawable])
    # Numeric axes have short tick labels: fixed margins give the same picture as the constrained
    # layout without its extra draw pass (about 40% of a plot's time). Text categories need it.
    figure, ax = new_figure(FIGSIZE, fixed_margins=axis.categories is None)
    scatter = spec.template in ("scatter", "scatter_jitter")
    several = len(spec.series) > 1
    for i, (s, y_all) in enumerate(drawable):
        x, y = _finite(axis.positions(i, s.x), y_all)
        colour = _colour(s, several)
        if scatter:
            size = 5.0 if len(x) <= 1000 else 3.0
            x, y = thin_points(x, y)
            ax.plot(
                x,
                y,
                linestyle="none",
                marker="o",
                markersize=size * 0.85 if s.is_base else size,
                markeredgewidth=0,
                color=colour,
                alpha=0.6 if s.is_base else 0.85,
                label=image_text(s.label, 70),
                zorder=2 if s.is_base else 3,
            )
        else:
            x, y = _in_x_order(x, y)
            x, y = decimate(x, y)
            ax.plot(
                x,
                y,
                color=colour,
                linewidth=1.1 if s.is_base else 1.9,
                linestyle="--" if s.is_base and several else "-",
                alpha=0.6 if s.is_base else 1.0,
                label=image_text(s.label, 70),
                zorder=2 if s.is_base else 3,
            )
    axis.label_ticks(ax)
    if axis.categories is None and all(pd.api.types.is_integer_dtype(s.x.dtype) for s, _ in drawable):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epoch 2, not 2.5
    x_label, y_label = axis_labels(spec, [s for s, _ in drawable])
    ax.set_xlabel(image_text(x_label, LABEL_CHARS))
    ax.set_ylabel(image_text(y_label, LABEL_CHARS))
    ax.set_title(image_text(spec.title or spec.path, 90))
    if len(drawable) > 1:
        ax.legend(loc="best")
    return figure


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


def _bar_figure(spec: PlotSpec, revisions: Sequence[Revision]) -> Figure:
    """Vertical bars (cml-bot's ``bar``): categories from x (else the first text column), the mean
    of y per category, one bar per series side by side."""
    spec = _with_category_x(spec, revisions)
    series = build_series(spec, revisions)
    grouped = [_means(s.x.astype(str), s) for s in series]
    categories = [str(v) for v in pd.unique(pd.concat([pd.Series(g.index, dtype=object) for g in grouped]))]
    title = image_text(spec.title or spec.path, 90)
    if len(categories) > MAX_BARS:
        title = f"{title} (first {MAX_BARS} of {len(categories)})"
        categories = categories[:MAX_BARS]
    figure, ax = new_figure(FIGSIZE)
    _draw_bars(ax, series, grouped, categories, len(spec.series) > 1, horizontal=False)
    ax.set_xticks(np.arange(len(categories), dtype=np.float64), labels=[image_text(c, 24) for c in categories])
    if len(categories) > 20:
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    elif sum(len(c) + 2 for c in categories) > 80 or any(len(c) > 10 for c in categories):
        ax.tick_params(axis="x", labelrotation=35)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    ax.grid(axis="x", visible=False)
    x_label, y_label = axis_labels(spec, series)
    ax.set_xlabel(image_text(x_label, LABEL_CHARS))
    ax.set_ylabel(image_text(y_label, LABEL_CHARS))
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(loc="best")
    return figure


def _with_category_x(spec: PlotSpec, revisions: Sequence[Revision]) -> PlotSpec:
    """A bar plot without x takes the first text column of its file as categories."""
    if spec.sources or spec.x is not None:
        return spec
    head = revisions[-1].tables.get(spec.path)
    if head is None:
        return spec
    for column in head.columns:
        if as_numbers(head[column]) is None:
            return replace(spec, x=str(column))
    return spec


def _means(categories: pd.Series, s: Series, values: pd.Series | None = None) -> pd.Series:
    """Mean value per category, categories in first-seen order."""
    numbers = as_numbers(s.y if values is None else values)
    if numbers is None:
        if not s.is_base:
            raise InputError(f"{s.file}: column {shorten(s.field, 60)!r} (y) is not numeric")
        numbers = pd.Series(np.nan, index=range(len(categories)))
    table = pd.DataFrame({"c": categories.to_numpy(), "v": numbers.to_numpy(dtype=np.float64, na_value=np.nan)})
    means: pd.Series = table.groupby("c", sort=False)["v"].mean()
    return means


def _draw_bars(
    ax: Axes,
    series: Sequence[Series],
    grouped: Sequence[pd.Series],
    categories: list[str],
    several: bool,
    horizontal: bool,
) -> None:
    count = len(series)
    width = 0.8 / max(count, 1)
    positions = np.arange(len(categories), dtype=np.float64)
    for slot, (s, values) in enumerate(zip(series, grouped, strict=True)):
        heights = values.reindex(categories).to_numpy(dtype=np.float64, na_value=np.nan)
        offset = (slot - (count - 1) / 2) * width
        if horizontal:
            offset = -offset  # the first series on top
        with np.errstate(invalid="ignore"):
            shown = np.abs(heights) < LIMIT
        colour = _colour(s, several)
        style: dict[str, Any] = {
            "color": colour,
            "alpha": 0.45 if s.is_base and several else 1.0,
            "hatch": "//" if s.is_base and several else None,
            "edgecolor": colour if s.is_base and several else "white",
            "linewidth": 0.5,
            "label": image_text(s.label, 70),
        }
        if horizontal:
            ax.barh(positions[shown] + offset, heights[shown], height=width * 0.95, **style)
        else:
            ax.bar(positions[shown] + offset, heights[shown], width=width * 0.95, **style)


def _barh_figure(spec: PlotSpec, revisions: Sequence[Revision]) -> Figure:
    """DVC's ``bar_horizontal`` (``_sorted``): one bar per value of the y field (categories, down
    the vertical axis) with the x field's value as its length; sorted by the change's values,
    largest on top."""
    series = build_series(spec, revisions)
    for s in series:
        if s.x_field is None:
            raise InputError(f"{s.file}: a horizontal bar plot needs x (the values) and y (the categories)")
    grouped = [_means(s.y.astype(str), s, values=s.x) for s in series]
    categories = [str(v) for v in pd.unique(pd.concat([pd.Series(g.index, dtype=object) for g in grouped]))]
    if spec.template == "bar_horizontal_sorted":
        head = next((g for s, g in zip(series, grouped, strict=True) if not s.is_base), grouped[-1])
        order = head.reindex(categories).to_numpy(dtype=np.float64, na_value=-np.inf)
        categories = [categories[i] for i in np.argsort(-order, kind="stable")]
    title = image_text(spec.title or spec.path, 90)
    if len(categories) > MAX_BARS:
        title = f"{title} (first {MAX_BARS} of {len(categories)})"
        categories = categories[:MAX_BARS]
    height = min(12.0, max(FIGSIZE[1], 1.0 + 0.28 * len(categories) * max(1, len(series))))
    figure, ax = new_figure((FIGSIZE[0], height))
    _draw_bars(ax, series, grouped, categories, len(spec.series) > 1, horizontal=True)
    ax.set_yticks(np.arange(len(categories), dtype=np.float64), labels=[image_text(c, 30) for c in categories])
    ax.invert_yaxis()  # the first category on top, as in DVC
    ax.grid(axis="y", visible=False)
    x_fields = {s.x_field for s in series}
    y_fields = {s.field for s in series}
    x_label = spec.x_label or (next(iter(x_fields)) or "x" if len(x_fields) == 1 else "x")
    y_label = spec.y_label or (next(iter(y_fields)) if len(y_fields) == 1 else "y")
    ax.set_xlabel(image_text(x_label, LABEL_CHARS))
    ax.set_ylabel(image_text(y_label, LABEL_CHARS))
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(loc="best")
    return figure


# --------------------------------------------------------------------------------------------
# Confusion matrices


def _confusion_figure(spec: PlotSpec, revisions: Sequence[Revision]) -> Figure:
    """One panel per source and revision (base first). As DVC draws it: the x field across, the y
    field down; ``confusion_normalized`` divides each row (a value of y) by its total."""
    sources = spec.series
    if len({source.y for source in sources}) > 1:
        raise InputError(f"{spec.path}: a confusion plot takes one y (predicted) field, got {len(sources)}")
    normalized = spec.template == "confusion_normalized"
    panels: list[tuple[pd.DataFrame, str, str, str]] = []  # (pairs, panel title, x field, y field)
    for revision in revisions:
        for source in sources:
            frame = revision.tables.get(source.file)
            if frame is None:
                continue
            across = source.x or "actual"
            down = source.y or "predicted"
            try:
                pairs = _class_pairs(frame, across, down, source.file)
            except InputError as exc:
                if not revision.is_base:
                    raise
                log.warning("plot %s: base data left out: %s", spec.path, exc)
                continue
            label = revision.label if len(sources) == 1 else f"{source.file} ({revision.label})"
            panels.append((pairs, label, across, down))
    if not panels:
        raise InputError(f"{spec.path}: no data to draw")
    labels, keys = _class_labels([p for p, _, _, _ in panels])
    if len(labels) > MAX_CLASSES:
        raise InputError(f"{spec.path}: {len(labels)} classes, too many for a confusion matrix (at most {MAX_CLASSES})")
    matrices = [_confusion_matrix(p, keys, normalized) for p, _, _, _ in panels]
    vmax = 1.0 if normalized else max(1.0, *(float(m.max()) for m in matrices))
    title = image_text(spec.title or spec.path, 90)
    x_label = spec.x_label or panels[0][2]
    y_label = spec.y_label or panels[0][3]
    if len(panels) == 1:
        figure, ax = new_figure(CONFUSION_FIGSIZE)
        axes = [ax]
        image = _draw_confusion(ax, matrices[0], labels, normalized, vmax, title, x_label, y_label)
    else:
        width = CONFUSION_PAIR_FIGSIZE[0] / 2 * len(panels)
        figure = Figure(figsize=(width, CONFUSION_PAIR_FIGSIZE[1]), dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        axes = list(figure.subplots(1, len(panels)))
        for ax, matrix, (_, label, _, _) in zip(axes, matrices, panels, strict=True):
            image = _draw_confusion(ax, matrix, labels, normalized, vmax, image_text(label, 60), x_label, y_label)
        figure.suptitle(title, fontsize=11)
    if len(labels) > ANNOTATE_CLASSES:
        figure.colorbar(image, ax=axes, shrink=0.85)
    return figure


def _class_pairs(frame: pd.DataFrame, across: str, down: str, file: str) -> pd.DataFrame:
    """(x value, y value) per row: column ``a`` across, ``p`` down."""
    require_column(frame, across, file, "x, the classes across")
    require_column(frame, down, file, "y, the classes down")
    pairs = pd.DataFrame({"a": frame[across], "p": frame[down]}).dropna()
    if len(pairs) == 0:
        raise InputError(f"{file}: no rows with both {across!r} and {down!r}")
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
    """Counts with a row per y value (down) and a column per x value (across)."""
    n = len(keys)
    across = pd.Categorical(pairs["a"], categories=keys).codes.astype(np.int64)
    down = pd.Categorical(pairs["p"], categories=keys).codes.astype(np.int64)
    counts = np.bincount(down * n + across, minlength=n * n).reshape(n, n).astype(np.float64)
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
    x_label: str,
    y_label: str,
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
    ax.set_xlabel(image_text(x_label, 40))
    ax.set_ylabel(image_text(y_label, 40))
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


UNTRUSTED_IMAGE_BYTES = 5 * 1024 * 1024
UNTRUSTED_IMAGE_PIXELS = 40_000_000


def untrusted_image_problem(data: bytes) -> str | None:
    """Why image bytes from an untrusted bundle may not be posted, or None: only PNG, JPEG or GIF
    that really decode, within size limits. Never SVG (markup), never a page renamed ``.png``."""
    import io

    from PIL import Image as PillowImage

    if len(data) > UNTRUSTED_IMAGE_BYTES:
        return f"over {UNTRUSTED_IMAGE_BYTES // (1024 * 1024)} MB"
    try:
        with PillowImage.open(io.BytesIO(data)) as image:
            kind = image.format
            if kind not in ("PNG", "JPEG", "GIF"):
                return f"a {kind or 'unknown'} file, not PNG, JPEG or GIF"
            if image.width * image.height > UNTRUSTED_IMAGE_PIXELS:
                return f"{image.width}x{image.height} pixels, too large"
            image.verify()
        with PillowImage.open(io.BytesIO(data)) as image:
            image.load()  # verify() checks structure only; decoding proves the pixels are there
    except Exception as exc:  # Pillow raises many types for hostile input: all mean "not an image"
        return f"does not decode as an image ({type(exc).__name__})"
    return None


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
