"""How every plot looks: one fixed style over matplotlib's defaults, figure helpers, PNG output,
and untrusted text made safe for an image.

The look is made to be read at a glance in a forge comment, in a light or a dark theme:

- one design for both themes: an opaque white card with a grey border, never a transparent
  background (dark text on a dark page would vanish). GitLab drops ``<picture>`` and Bitbucket shows
  raw HTML as text, so a light and a dark variant could only ever be chosen on GitHub; one image
  per plot keeps one upload and the same bytes everywhere (docs/report.md, "Light and dark themes");
- colours from the Okabe-Ito palette, told apart with every common colour-vision deficiency, and
  never by colour alone: the base is dashed (hatched, crossed) where this change is solid;
- no title in the image: the report shows it just above; the legend names the revisions and
  stands above the axes, off the data;
- sizes for a comment about 880 px wide: no figure is wider, so nothing is scaled down.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Iterator
from typing import Any

import matplotlib
import matplotlib.style
import numpy as np
import numpy.typing as npt
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Rectangle

from cml_bot.errors import InputError

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


BUCKETS = 2000  # min/max buckets per line series: at most ~4,000 points drawn
SCATTER_GRID = (400, 250)  # one point kept per cell: at most 100,000 markers drawn
MAX_BARS = 40  # categories shown in a bar chart
MAX_CLASSES = 1000  # classes in a confusion matrix
LIMIT = 1e200  # larger values are dropped like inf: matplotlib cannot scale an axis across them
LABEL_CHARS = 60  # untrusted labels are cut to this length in the image
FIGSIZE = (7.0, 4.0)
FIXED_MARGINS = {"left": 0.1, "right": 0.97, "bottom": 0.12, "top": 0.92}
LEGEND_ROW = 0.055  # of a FIGSIZE figure's height: one row of legend above the axes
CONFUSION_FIGSIZE = (5.2, 4.6)
CONFUSION_PAIR_FIGSIZE = (8.8, 4.6)  # 880 px: a GitHub comment's width, shown unscaled
DELTA_FIGSIZE = (5.2, 4.4)
DPI = 100
TICK_POINTS = 8.5  # tick labels: about 12 px, as GitHub's smallest text

# Okabe & Ito, "Color Universal Design" (2008), without its yellow (#F0E442: unreadable on white).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
HEAD_COLOR = OKABE_ITO[0]  # blue, solid: this change
BASE_COLOR = OKABE_ITO[1]  # orange, dashed: the base
ALERT_COLOR = OKABE_ITO[3]  # vermillion: change points
MUTED_COLOR = "#57606a"  # recorded history, secondary text
BACKGROUND = "#ffffff"  # opaque, on light and dark pages alike
BORDER = "#8c959f"  # the card's edge: visible on a white page, quiet on a dark one

# The style every plot is drawn with, on top of matplotlib's built-in defaults (so neither a
# user's matplotlibrc nor another caller's rcParams change the bytes).
_RC: dict[Any, Any] = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.labelsize": 9,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "xtick.labelsize": TICK_POINTS,
    "ytick.labelsize": TICK_POINTS,
    "text.color": "#1f2328",
    "axes.labelcolor": "#1f2328",
    "axes.edgecolor": MUTED_COLOR,
    "xtick.color": MUTED_COLOR,
    "ytick.color": MUTED_COLOR,
    "xtick.labelcolor": "#1f2328",
    "ytick.labelcolor": "#1f2328",
    "axes.prop_cycle": cycler(color=OKABE_ITO),
    "figure.facecolor": BACKGROUND,
    "axes.facecolor": BACKGROUND,
    "savefig.facecolor": BACKGROUND,
    "savefig.transparent": False,
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
# Figures and text


@contextlib.contextmanager
def plot_style() -> Iterator[None]:
    """matplotlib's built-in defaults plus our style, for drawing and saving (restored after)."""
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        yield


def constrained() -> ConstrainedLayoutEngine:
    """matplotlib's constrained layout, with room for the image's border."""
    return ConstrainedLayoutEngine(w_pad=0.08, h_pad=0.08)


def new_figure(size: tuple[float, float], fixed_margins: bool = False) -> tuple[Figure, Axes]:
    figure = Figure(figsize=size, dpi=DPI, layout=None if fixed_margins else constrained())
    if fixed_margins:
        figure.subplots_adjust(**FIXED_MARGINS)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def legend_above(ax: Axes, fixed_margins: bool = False) -> None:
    """The legend in a row (or a few) above the axes, off the data. With fixed margins the axes
    shrink to make room; the constrained layout makes room by itself."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    figure = ax.figure
    width_px = (figure.get_figwidth() if isinstance(figure, Figure) else FIGSIZE[0]) * DPI * 0.85
    longest = max(len(label) for label in labels)
    fit = max(1, min(len(labels), int(width_px // (longest * 6.0 + 40))))
    rows = math.ceil(len(labels) / fit)
    columns = math.ceil(len(labels) / rows)  # rows evenly filled: base and head side by side
    ax.legend(
        handles,
        labels,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.01),
        ncol=columns,
        borderaxespad=0.2,
        handlelength=2.6,  # long enough to show a dashed line as dashed
        columnspacing=1.6,
    )
    if fixed_margins and rows > 1:
        figure.subplots_adjust(top=FIXED_MARGINS["top"] - LEGEND_ROW * (rows - 1))


def add_border(figure: Figure) -> None:
    """A thin grey frame around the whole image: the card's edge on a white page."""
    figure.patches.append(
        Rectangle(
            (0.0, 0.0),
            1.0,
            1.0,
            transform=figure.transFigure,
            fill=False,
            edgecolor=BORDER,
            linewidth=1.5,  # 1 px survives at the image's edge, half of the line is outside
            zorder=10,
        )
    )


def to_png(figure: Figure, file: str) -> bytes:
    add_border(figure)
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    except (ValueError, OverflowError) as exc:  # e.g. values too large for the axis
        raise InputError(f"{file}: cannot draw the plot: {shorten(str(exc), 120)}") from None
    return buffer.getvalue()


def shorten(text: object, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def image_text(text: object, limit: int) -> str:
    """Untrusted text for the image: one line, cut to ``limit``, ``$`` never read as mathtext."""
    flat = " ".join(str(text).split())
    return shorten(flat, limit).replace("$", r"\$")
