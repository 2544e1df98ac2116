"""Plot specs + data files -> PNG images, drawn on matplotlib's Agg canvas (never pyplot).

``render_plot`` is the entry point: it reads the data file at head (and at base, when there is
one), builds a :class:`~matplotlib.figure.Figure` with :func:`build_figure` and saves it as PNG.
Rendering is deterministic (fixed style, no "Software" metadata), so the same input gives the
same bytes and image hosts can dedupe by content. Large series are decimated first (min/max per
bucket for lines, one point per pixel cell for scatter) so a million points render quickly.

Untrusted text (column names, titles, class labels) only ever goes into the image; ``$`` is
escaped so it is never parsed as mathtext.

The drawing modules import matplotlib and numpy; this package imports them on first use of a
drawing name (:mod:`cml_bot.plots.jobs` never does).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cml_bot.plots.jobs import PlotJob, plot_titles, safe_name, untrusted_image_problem

if TYPE_CHECKING:
    from cml_bot.plots.figures import build_figure, render_confusion_delta, render_trend
    from cml_bot.plots.render import render_all, render_plot
    from cml_bot.plots.tables import decimate, load_table, thin_points

__all__ = [
    "PlotJob",
    "build_figure",
    "decimate",
    "load_table",
    "plot_titles",
    "render_all",
    "render_confusion_delta",
    "render_plot",
    "render_trend",
    "safe_name",
    "thin_points",
    "untrusted_image_problem",
]

# Drawing needs matplotlib and numpy; they are imported on first use of a drawing name, so
# `cml_bot.plots.jobs` (what to draw) stays light.
_LAZY = {
    "build_figure": "cml_bot.plots.figures",
    "render_trend": "cml_bot.plots.figures",
    "render_confusion_delta": "cml_bot.plots.figures",
    "render_all": "cml_bot.plots.render",
    "render_plot": "cml_bot.plots.render",
    "decimate": "cml_bot.plots.tables",
    "load_table": "cml_bot.plots.tables",
    "thin_points": "cml_bot.plots.tables",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cml_bot.plots' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
