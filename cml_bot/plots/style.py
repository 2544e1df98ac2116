"""How every plot looks: one fixed style over matplotlib's defaults, figure helpers, PNG output,
and untrusted text made safe for an image."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

import matplotlib
import matplotlib.style
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cml_bot.errors import InputError

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


X_DEFAULTS = ("step", "epoch", "iteration")  # column names used as x when the spec names none
BUCKETS = 2000  # min/max buckets per line series: at most ~4,000 points drawn
SCATTER_GRID = (400, 250)  # one point kept per cell: at most 100,000 markers drawn
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
# Figures and text


@contextlib.contextmanager
def plot_style() -> Iterator[None]:
    """matplotlib's built-in defaults plus our style, for drawing and saving (restored after)."""
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        yield


def new_figure(size: tuple[float, float], fixed_margins: bool = False) -> tuple[Figure, Axes]:
    figure = Figure(figsize=size, dpi=DPI, layout=None if fixed_margins else "constrained")
    if fixed_margins:
        figure.subplots_adjust(**FIXED_MARGINS)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def to_png(figure: Figure, file: str) -> bytes:
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
