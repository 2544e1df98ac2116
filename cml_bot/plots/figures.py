"""Figures for each template: lines and scatter, bars, confusion matrices, images, and the trend of
the base branch, base and head overlaid."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

import matplotlib.colors
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cml_bot.config import PlotSpec
from cml_bot.errors import InputError
from cml_bot.model import Image
from cml_bot.plots.jobs import safe_name
from cml_bot.plots.series import Revision, Series, axis_labels, build_series
from cml_bot.plots.style import (
    ALERT_COLOR,
    BASE_COLOR,
    CONFUSION_FIGSIZE,
    CONFUSION_PAIR_FIGSIZE,
    DELTA_FIGSIZE,
    DPI,
    FIGSIZE,
    HEAD_COLOR,
    LABEL_CHARS,
    LIMIT,
    MAX_BARS,
    MAX_CLASSES,
    MUTED_COLOR,
    OKABE_ITO,
    TICK_POINTS,
    constrained,
    image_text,
    legend_above,
    new_figure,
    plot_style,
    shorten,
    to_png,
)
from cml_bot.plots.tables import (
    Column,
    Table,
    decimate,
    first_non_numeric,
    require_column,
    thin_points,
)

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def build_figure(
    spec: PlotSpec,
    head: Mapping[str, Table] | Table,
    base: Mapping[str, Table] | Table | None = None,
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


def _by_file(spec: PlotSpec, tables: Mapping[str, Table] | Table) -> Mapping[str, Table]:
    return {spec.path: tables} if isinstance(tables, Table) else tables


def _colour(series: Series, several: bool) -> str:
    """One field: the base orange, this change blue. Several: a colour per field, the same at
    both revisions (the base told apart by its dashes or hatching)."""
    if not several:
        return BASE_COLOR if series.is_base else HEAD_COLOR
    return OKABE_ITO[series.source_index % len(OKABE_ITO)]


# --------------------------------------------------------------------------------------------
# Line and scatter plots


class _XAxis:
    """x values of every series on one axis: numbers as they are, anything else as categories."""

    def __init__(self, columns: Sequence[Column]) -> None:
        numbers = [c.numbers() for c in columns]
        self.categories: list[str] | None = None
        self._numbers: list[FloatArray] | None = None
        self._codes: dict[str, int] = {}
        if all(n is not None for n in numbers):
            self._numbers = [n for n in numbers if n is not None]
        else:
            self.categories = list(dict.fromkeys(text for c in columns for text in c.texts()))
            self._codes = {text: code for code, text in enumerate(self.categories)}

    def positions(self, index: int, column: Column) -> FloatArray:
        if self._numbers is not None:
            return self._numbers[index]
        return np.array([self._codes[text] for text in column.texts()], dtype=np.float64)

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
        y_values = s.y.numbers()
        if y_values is None:
            if s.is_base:
                log.info("plot %s: %r not numeric in %s data, not drawn", spec.path, s.field, s.revision)
                continue
            raise InputError(
                f"{s.file}: column {shorten(s.field, 60)!r} (y) is not numeric (value {first_non_numeric(s.y)})"
            )
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
                marker="x" if s.is_base else "o",  # told apart by shape, not only by colour
                markersize=size,
                markeredgewidth=1.0 if s.is_base else 0.0,
                color=colour,
                alpha=0.7 if s.is_base else 0.85,
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
                linewidth=1.5 if s.is_base else 1.9,
                linestyle="--" if s.is_base else "-",
                label=image_text(s.label, 70),
                zorder=2 if s.is_base else 3,
            )
    axis.label_ticks(ax)
    if axis.categories is None and all(s.x.kind == "int" for s, _ in drawable):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epoch 2, not 2.5
    x_label, y_label = axis_labels(spec, [s for s, _ in drawable])
    ax.set_xlabel(image_text(x_label, LABEL_CHARS))
    ax.set_ylabel(image_text(y_label, LABEL_CHARS))
    legend_above(ax, fixed_margins=axis.categories is None)
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
    grouped = [_means(s.x.texts(), s) for s in series]
    categories = list(dict.fromkeys(category for means in grouped for category in means))
    shown = _first_bars(categories)
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
    ax.set_xlabel(image_text(x_label, LABEL_CHARS) + shown)
    ax.set_ylabel(image_text(y_label, LABEL_CHARS))
    legend_above(ax)
    return figure


def _first_bars(categories: Sequence[str]) -> str:
    """What an axis label adds when only the first bars are drawn."""
    return f" (first {MAX_BARS} of {len(categories)})" if len(categories) > MAX_BARS else ""


def _with_category_x(spec: PlotSpec, revisions: Sequence[Revision]) -> PlotSpec:
    """A bar plot without x takes the first text column of its file as categories."""
    if spec.sources or spec.x is not None:
        return spec
    head = revisions[-1].tables.get(spec.path)
    if head is None:
        return spec
    for column in head.columns:
        if head[column].numbers() is None:
            return replace(spec, x=column)
    return spec


def _means(categories: Sequence[str], s: Series, values: Column | None = None) -> dict[str, float]:
    """Mean value per category (missing values left out; NaN where none is left), categories in
    first-seen order."""
    numbers = (s.y if values is None else values).numbers()
    if numbers is None:
        if not s.is_base:
            raise InputError(f"{s.file}: column {shorten(s.field, 60)!r} (y) is not numeric")
        numbers = np.full(len(categories), np.nan)
    sums: dict[str, list[float]] = {}
    for category, number in zip(categories, numbers.tolist(), strict=True):
        total = sums.setdefault(category, [0.0, 0.0])
        if not math.isnan(number):
            total[0] += number
            total[1] += 1
    return {category: (total / count if count else math.nan) for category, (total, count) in sums.items()}


def _draw_bars(
    ax: Axes,
    series: Sequence[Series],
    grouped: Sequence[Mapping[str, float]],
    categories: list[str],
    several: bool,
    horizontal: bool,
) -> None:
    count = len(series)
    width = 0.8 / max(count, 1)
    positions = np.arange(len(categories), dtype=np.float64)
    for slot, (s, values) in enumerate(zip(series, grouped, strict=True)):
        heights = np.array([values.get(category, math.nan) for category in categories], dtype=np.float64)
        offset = (slot - (count - 1) / 2) * width
        if horizontal:
            offset = -offset  # the first series on top
        with np.errstate(invalid="ignore"):
            shown = np.abs(heights) < LIMIT
        colour = _colour(s, several)
        # The base hatched on a pale fill, this change solid: told apart without colour.
        style: dict[str, Any] = {
            "color": matplotlib.colors.to_rgba(colour, 0.35) if s.is_base else colour,
            "hatch": "///" if s.is_base else None,
            "edgecolor": colour if s.is_base else "white",
            "linewidth": 0.8 if s.is_base else 0.5,
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
    grouped = [_means(s.y.texts(), s, values=s.x) for s in series]
    categories = list(dict.fromkeys(category for means in grouped for category in means))
    if spec.template == "bar_horizontal_sorted":
        head = next((g for s, g in zip(series, grouped, strict=True) if not s.is_base), grouped[-1])
        order = np.array([head.get(category, math.nan) for category in categories], dtype=np.float64)
        order[np.isnan(order)] = -np.inf
        categories = [categories[i] for i in np.argsort(-order, kind="stable")]
    shown = _first_bars(categories)
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
    ax.set_ylabel(image_text(y_label, LABEL_CHARS) + shown)
    legend_above(ax)
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
    panels: list[tuple[tuple[Column, Column], str, str, str]] = []  # (pairs, panel title, x field, y field)
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
    labels, classes = _class_labels([p for p, _, _, _ in panels])
    if len(labels) > MAX_CLASSES:
        raise InputError(f"{spec.path}: {len(labels)} classes, too many for a confusion matrix (at most {MAX_CLASSES})")
    matrices = [_confusion_matrix(pair, len(labels), normalized) for pair in classes]
    vmax = 1.0 if normalized else max(1.0, *(float(m.max()) for m in matrices))
    x_label = spec.x_label or panels[0][2]
    y_label = spec.y_label or panels[0][3]
    # One panel per revision, each titled with it (the plot's title is the report's, above the image).
    width = CONFUSION_FIGSIZE[0] if len(panels) == 1 else CONFUSION_PAIR_FIGSIZE[0] / 2 * len(panels)
    figure = Figure(figsize=(width, CONFUSION_FIGSIZE[1]), dpi=DPI, layout=constrained())
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(1, len(panels), squeeze=False)[0])
    cell = _cell_pixels(width / len(panels), CONFUSION_FIGSIZE[1], len(labels))
    for ax, matrix, (_, label, _, _) in zip(axes, matrices, panels, strict=True):
        image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.grid(visible=False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
        _class_ticks(ax, labels, cell)
        ax.set_title(image_text(label, 60))
        ax.set_xlabel(image_text(x_label, 40))
        ax.set_ylabel(image_text(y_label, 40))
    # The cells' real size once laid out (labels take what they need): annotate if values fit.
    layout = figure.get_layout_engine()
    assert layout is not None
    layout.execute(figure)
    drawn = axes[0].get_window_extent().width / len(labels)
    size = _annotation_size(drawn, _widest_value(matrices, normalized))
    if size is None:
        figure.colorbar(image, ax=axes, shrink=0.85)
    else:
        for ax, matrix in zip(axes, matrices, strict=True):
            written = (lambda v: f"{v:.2f}") if normalized else (lambda v: f"{v:.0f}")
            _annotate(ax, matrix, size, written, lambda v: v > 0.55 * vmax)
    return figure


def _cell_pixels(panel_width: float, height: float, classes: int) -> float:
    """About how many pixels wide a cell will be drawn (before the layout): the panel's square
    matrix takes about 70% of the smaller side (the rest is labels and the title)."""
    return min(panel_width, height) * DPI * 0.7 / max(1, classes)


def _annotation_size(cell: float, chars: int) -> float | None:
    """The font size (points) that fits ``chars`` characters in a cell, None when it would be too
    small to read (below 7 pt, about 10 px): then the colour bar tells the values."""
    if cell <= 0:
        return None
    fits = cell * 0.8 / (max(chars, 1) * 0.62) * 72 / DPI  # a character about 0.62 em wide
    size = min(11.0, fits, cell * 0.5 * 72 / DPI)
    return size if size >= 7.0 else None


def _widest_value(matrices: Sequence[FloatArray], normalized: bool) -> int:
    if normalized:
        return 4  # "0.25"
    return max(len(f"{float(m.max()):.0f}") for m in matrices)


def _class_ticks(ax: Axes, labels: Sequence[str], cell: float) -> None:
    """Class names on both axes, as many as fit without overlapping (every k-th beyond that);
    names too wide to stand side by side across are turned 45 degrees."""
    n = len(labels)
    names = [image_text(v, 16) for v in labels]
    font = TICK_POINTS * DPI / 72  # pixels
    across = max(len(v) for v in names) * 0.62 * font + 6  # room an upright name needs
    turned = across > max(cell, 1e-9) * math.ceil(1.3 * font / max(cell, 1e-9))
    need = 1.45 * font if turned else max(1.3 * font, across)  # a turned name needs its height / sin 45
    step = max(1, math.ceil(need / max(cell, 1e-9)))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks, labels=[names[t] for t in ticks])
    ax.set_yticks(ticks, labels=[names[t] for t in ticks])
    if turned:
        ax.tick_params(axis="x", labelrotation=45)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
            tick.set_rotation_mode("anchor")


def _class_pairs(table: Table, across: str, down: str, file: str) -> tuple[Column, Column]:
    """The x values (across) and y values (down) of the rows that have both."""
    require_column(table, across, file, "x, the classes across")
    require_column(table, down, file, "y, the classes down")
    both = table[across].present() & table[down].present()
    if not bool(both.any()):
        raise InputError(f"{file}: no rows with both {across!r} and {down!r}")
    return table[across].take(both), table[down].take(both)


def _class_labels(pairs: Sequence[tuple[Column, Column]]) -> tuple[list[str], list[tuple[IntArray, IntArray]]]:
    """The classes over all tables, sorted (numerically when every value is a number), their labels,
    and each pair's values as class indices."""
    columns = [c for pair in pairs for c in pair]
    if all(c.kind in ("int", "float") for c in columns):
        keys, inverse = np.unique(np.concatenate([c.values.astype(np.float64) for c in columns]), return_inverse=True)
        labels = [f"{v:g}" for v in keys.tolist()]
        codes = np.split(inverse.astype(np.int64), np.cumsum([len(c) for c in columns])[:-1])
    else:
        texts = [c.texts() for c in columns]
        labels = sorted({text for column in texts for text in column})
        index = {key: i for i, key in enumerate(labels)}
        codes = [np.fromiter((index[text] for text in column), dtype=np.int64, count=len(column)) for column in texts]
    return labels, [(codes[i], codes[i + 1]) for i in range(0, len(codes), 2)]


def _confusion_matrix(pair: tuple[IntArray, IntArray], n: int, normalized: bool) -> FloatArray:
    """Counts with a row per y value (down) and a column per x value (across)."""
    across, down = pair
    counts = np.bincount(down * n + across, minlength=n * n).reshape(n, n).astype(np.float64)
    if not normalized:
        return counts
    totals = counts.sum(axis=1, keepdims=True)
    shares: FloatArray = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return shares


def _annotate(
    ax: Axes, matrix: FloatArray, size: float, text: Callable[[float], str], on_dark: Callable[[float], bool]
) -> None:
    """Each cell's value as ``text`` writes it, at ``size`` points, white where ``on_dark`` says the
    cell's colour is dark; empty cells stay blank, so the confusions (or changes) stand out."""
    n = len(matrix)
    for row in range(n):
        for col in range(n):
            value = float(matrix[row, col])
            if value == 0:
                continue
            colour = "white" if on_dark(value) else "#1f2328"
            ax.text(col, row, text(value), ha="center", va="center", fontsize=size, color=colour)


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
    branch: str,
    change_points: Mapping[str, Sequence[int]] | None = None,
    bands: Mapping[str, tuple[int, float, float]] | None = None,
) -> Image:
    """Each headline metric over recorded commits of ``branch`` (oldest first, labelled by short
    sha), with this change's value marked as a separate point at the right, and a dashed line
    before each change point (the index of the first commit of a new level). ``bands`` shades,
    from the commit where it starts to this change, each metric's usual variation: (start index,
    low, high)."""
    metrics = [metric for metric in current if any(metric in values for _, values in history)]
    if not metrics:
        raise InputError("trend: no headline metric has recorded history")
    with plot_style():
        figure = Figure(figsize=(7.0, 1.6 + 1.4 * len(metrics)), dpi=DPI, layout=constrained())
        FigureCanvasAgg(figure)
        axes = figure.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
        positions = np.arange(len(history), dtype=np.float64)
        for ax, metric in zip(axes, metrics, strict=True):
            ys = np.array([values.get(metric, np.nan) for _, values in history], dtype=np.float64)
            ax.plot(
                positions,
                ys,
                color=MUTED_COLOR,
                linewidth=1.5,
                marker="o",
                markersize=3.5,
                label=f"{image_text(branch, 30)}, recorded",
            )
            ax.plot(
                [len(history)],
                [current[metric]],
                color=HEAD_COLOR,
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
                    color=HEAD_COLOR,
                    alpha=0.12,
                    linewidth=0,
                    label="usual variation (±2σ)",
                )
            for number, index in enumerate((change_points or {}).get(metric, ())):
                ax.axvline(
                    index - 0.5,
                    color=ALERT_COLOR,
                    linestyle="--",
                    linewidth=1.2,
                    label="change point" if number == 0 else "_",
                )
            ax.set_ylabel(image_text(metric, 24))
        labels = [image_text(sha, 10) for sha, _ in history] + ["this change"]
        axes[-1].set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right", rotation_mode="anchor")
        _legend_of_all(axes[0], list(axes))
        return Image(f"{safe_name(name)}.png", to_png(figure, "trend"))


def _legend_of_all(top: Axes, axes: Sequence[Axes]) -> None:
    """One legend above the first panel naming what any panel draws (a change point may be in
    one panel only)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    top.legend(list(seen.values()), list(seen), loc="lower left", bbox_to_anchor=(0.0, 1.02), ncol=len(seen))


# Confusion delta


def render_confusion_delta(
    classes: Sequence[str],
    base: Sequence[Sequence[int]],
    head: Sequence[Sequence[int]],
    name: str,
    base_label: str = "base",
) -> Image:
    """Head's confusion counts minus base's on the same examples (rows of ``base`` and ``head``:
    the true class), on a diverging scale centred on zero (blue: more examples in that cell than
    at the base, red: fewer). Drawn as the confusion plots are, the true class across and the
    prediction down; on the diagonal blue is good, off it blue means new confusions."""
    delta = (np.asarray(head, dtype=np.float64) - np.asarray(base, dtype=np.float64)).T
    n = len(classes)
    limit = max(1.0, float(np.abs(delta).max()))
    with plot_style():
        # Fixed margins: the constrained layout's second draw pass was most of this figure's time.
        figure = Figure(figsize=DELTA_FIGSIZE, dpi=DPI)
        FigureCanvasAgg(figure)
        figure.subplots_adjust(left=0.13, right=0.86, bottom=0.13, top=0.96)
        ax = figure.add_subplot()
        # RdBu: a diverging map that stays readable with red-green colour blindness; the signs
        # written in the cells carry the direction without colour.
        image = ax.imshow(delta, cmap="RdBu", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.grid(visible=False)
        cell = _cell_pixels(DELTA_FIGSIZE[0], DELTA_FIGSIZE[1], n)
        size = _annotation_size(cell, len(f"{limit:+.0f}"))
        if size is not None:
            _annotate(ax, delta, size, lambda v: f"{int(v):+d}", lambda v: abs(v) > 0.6 * limit)
        _class_ticks(ax, [str(c) for c in classes], cell)
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        label = f"this change − {image_text(base_label, 30)}"
        bar = figure.colorbar(image, ax=ax, shrink=0.85, label=label, fraction=0.05, pad=0.03)
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: +2, not +1.5
        return Image(f"{safe_name(name)}.png", to_png(figure, "confusion delta"))
