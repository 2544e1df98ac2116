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

from cml_bot.plots.figures import build_figure, render_confusion_delta, render_trend
from cml_bot.plots.render import PlotJob, render_all, render_plot, start_render_all
from cml_bot.plots.style import safe_name
from cml_bot.plots.tables import decimate, load_table, thin_points

__all__ = [
    "PlotJob",
    "build_figure",
    "decimate",
    "load_table",
    "render_all",
    "render_confusion_delta",
    "render_plot",
    "render_trend",
    "safe_name",
    "start_render_all",
    "thin_points",
]
