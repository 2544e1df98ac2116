"""A plot's series, as DVC builds them: for every (file, field) of the definition and every
revision, y values from that file and x values from the x field (of another file, rows joined by
position), with a legend label naming file, field and revision as far as they tell series apart.

DVC's defaults, mirrored: with no ``y``, the file's last column (never dvclive's ``timestamp``);
with no ``x``, the row number, or a step/epoch/iteration column when there is one (DVC's
``step`` is the row number, which is what dvclive's ``step`` column holds).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cml_bot.config import PlotSource, PlotSpec
from cml_bot.errors import InputError
from cml_bot.plots.jobs import X_DEFAULTS
from cml_bot.plots.style import shorten
from cml_bot.plots.tables import Column, Table, columns_hint, require_column

log = logging.getLogger(__name__)

SKIPPED_Y = ("timestamp",)  # dvclive's wall-clock column is never a default y


@dataclass(frozen=True)
class Revision:
    label: str  # "main", "abc1234", "this change"
    tables: Mapping[str, Table]  # file -> its table at this revision
    is_base: bool


@dataclass(frozen=True)
class Series:
    source_index: int  # which of the definition's sources (for colours)
    file: str
    field: str
    x_field: str | None  # None: the row number
    revision: str
    is_base: bool
    x: Column  # raw x values (numbers or categories), positions aligned with y
    y: Column  # raw y values
    label: str = ""


def build_series(spec: PlotSpec, revisions: Sequence[Revision]) -> list[Series]:
    """Every series of ``spec`` at every revision (base first). A source whose file a base lacks
    is left out; in the head, a missing field raises :class:`InputError` naming the closest."""
    sources = spec.series
    found: list[Series] = []
    for revision in revisions:
        for index, source in enumerate(sources):
            try:
                series = _one(source, index, revision)
            except InputError:
                if revision.is_base:
                    log.info("plot %s: %s left out at %s", spec.path, source.file, revision.label)
                    continue
                raise
            if series is not None:
                found.append(series)
    return _labelled(found, multi_source=len(sources) > 1)


def _one(source: PlotSource, index: int, revision: Revision) -> Series | None:
    frame = revision.tables.get(source.file)
    if frame is None:
        return None
    y_name = source.y if source.y is not None else default_y(frame, source, source.file)
    require_column(frame, y_name, source.file, "y")
    if source.x_file is not None:
        x_frame = revision.tables.get(source.x_file)
        if x_frame is None:
            raise InputError(f"{source.x_file}: not found (x of {source.file})")
        assert source.x is not None
        require_column(x_frame, source.x, source.x_file, "x")
        if len(x_frame) != len(frame):
            raise InputError(
                f"cannot join {source.x!r} from {source.x_file} ({len(x_frame)} rows) with {y_name!r} from "
                f"{source.file} ({len(frame)} rows): they must have as many rows"
            )
        x_values = x_frame[source.x]
        x_name: str | None = source.x
    else:
        x_name = source.x if source.x is not None else default_x(frame)
        if x_name is not None:
            require_column(frame, x_name, source.file, "x")
            x_values = frame[x_name]
        else:
            x_values = Column(np.arange(len(frame), dtype=np.int64))
    return Series(
        index,
        source.file,
        y_name,
        x_name,
        revision.label,
        revision.is_base,
        x_values,
        frame[y_name],
    )


def default_x(frame: Table) -> str | None:
    lowered = {str(c).lower(): str(c) for c in reversed(list(frame.columns))}
    for name in X_DEFAULTS:
        if name in lowered:
            return lowered[name]
    return None


def default_y(frame: Table, source: PlotSource, file: str) -> str:
    """DVC's default y: the file's last column (not the x column, not dvclive's timestamp)."""
    x = source.x if source.x_file is None else None
    if x is None:
        x = default_x(frame)
    for column in reversed([str(c) for c in frame.columns]):
        if column != x and column.lower() not in SKIPPED_Y:
            return column
    raise InputError(f"{file}: no column to plot as y; set y in the plot definition; {columns_hint(frame)}")


def _labelled(found: list[Series], multi_source: bool) -> list[Series]:
    """Legend labels: ``file: field (revision)`` with several sources, the parts that differ only
    (the files shortened by their common folder, as DVC does); the revision alone otherwise."""
    if not found:
        return found
    files = list(dict.fromkeys(s.file for s in found))
    prefix = len(os.path.commonpath(files)) if len(files) > 1 else 0
    labelled = []
    for series in found:
        if multi_source:
            short = series.file[prefix:].strip("/") if prefix else series.file
            name = f"{short}: {series.field}" if len(files) > 1 else series.field
            label = f"{shorten(name, 50)} ({shorten(series.revision, 40)})"
        else:
            label = shorten(series.revision, 60)
        labelled.append(Series(**{**series.__dict__, "label": label}))
    return labelled


def axis_labels(spec: PlotSpec, series: Sequence[Series]) -> tuple[str, str]:
    """The definition's ``x_label``/``y_label``, else DVC's: the one x (y) field, else "x" ("y");
    the row number is "step", as DVC labels it."""
    x_fields = {s.x_field for s in series}
    y_fields = {s.field for s in series}
    x_label = spec.x_label or ((next(iter(x_fields)) or "step") if len(x_fields) == 1 else "x")
    y_label = spec.y_label or (next(iter(y_fields)) if len(y_fields) == 1 else "value")
    return x_label, y_label
