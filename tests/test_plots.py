"""Tests for cml_bot.plots: real matplotlib rendering, PNG bytes checked by decoding them."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import subprocess
import sys
import time
from dataclasses import replace

import matplotlib
import numpy as np
import numpy.typing as npt
import pytest
from cycler import cycler
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image as PILImage

from cml_bot.config import PlotSpec
from cml_bot.errors import InputError
from cml_bot.plots import build_figure, decimate, load_table, render_plot, safe_name, thin_points

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    with PILImage.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


def csv(rows: list[dict[str, object]]) -> bytes:
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(row[k]) for k in header) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def history(epochs: int, scale: float = 1.0) -> bytes:
    return csv(
        [{"epoch": e, "loss": round(scale / (e + 1), 5), "acc": round(1 - scale / (e + 2), 5)} for e in range(epochs)]
    )


def confusion_records(seed: int, correct_every: int) -> bytes:
    rng = np.random.default_rng(seed)
    classes = ["cat", "dog", "bird"]
    records = []
    for i in range(300):
        actual = classes[int(rng.integers(0, 3))]
        predicted = actual if i % correct_every else classes[int(rng.integers(0, 3))]
        records.append({"actual": actual, "predicted": predicted})
    return json.dumps(records).encode()


def legend_texts(spec: PlotSpec, head: bytes, base: bytes | None) -> list[str]:
    figure = build_figure(
        spec, load_table(head, spec.path), None if base is None else load_table(base, spec.path), "this change", "main"
    )
    legend = figure.axes[0].get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


# Okabe & Ito's colour-blind-safe palette, the colours the plots use.
OKABE_ITO = {"blue": "#0072b2", "orange": "#e69f00", "green": "#009e73", "vermillion": "#d55e00"}


def assert_legend_above_the_data(figure: Figure) -> None:
    """The legend stands above the axes: its box is entirely over the plotting area."""
    figure.canvas.draw()
    ax = figure.axes[0]
    legend = ax.get_legend()
    assert legend is not None
    box, area = legend.get_window_extent(), ax.get_window_extent()
    assert box.y0 >= area.y1 - 1, (box, area)
    assert box.y1 <= figure.bbox.y1  # and inside the image


def pixels(data: bytes) -> npt.NDArray[np.int64]:
    with PILImage.open(io.BytesIO(data)) as image:
        assert image.mode in ("RGB", "RGBA")
        rgba = np.asarray(image.convert("RGBA"), dtype=np.int64)
    return rgba


def near(rgba: npt.NDArray[np.int64], colour: str, tolerance: int = 12, alpha: float = 1.0) -> int:
    """How many pixels are within ``tolerance`` of ``colour`` (drawn with ``alpha`` on white) in
    every channel."""
    pure = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)
    target = np.round(alpha * pure + (1 - alpha) * 255).astype(np.int64)
    return int((np.abs(rgba[..., :3] - target) <= tolerance).all(axis=-1).sum())


# --- every template renders a PNG --------------------------------------------------------------


@pytest.mark.parametrize("template", ["linear", "scatter", "bar"])
@pytest.mark.parametrize("with_base", [False, True])
def test_xy_templates_render_a_png_of_the_expected_size(template: str, with_base: bool) -> None:
    spec = PlotSpec(path="metrics/history.csv", template=template)
    images = render_plot(spec, history(20), history(15, 1.3) if with_base else None, "plot-01-history")
    assert [i.name for i in images] == ["plot-01-history.png"]
    assert png_size(images[0].data) == (700, 400)
    assert len(images[0].data) < 100_000


@pytest.mark.parametrize("template", ["confusion", "confusion_normalized"])
@pytest.mark.parametrize("with_base", [False, True])
def test_confusion_templates_render_a_png(template: str, with_base: bool) -> None:
    spec = PlotSpec(path="eval/confusion.json", template=template)
    base = confusion_records(2, 2) if with_base else None
    images = render_plot(spec, confusion_records(1, 4), base, "plot-02-confusion")
    assert [i.name for i in images] == ["plot-02-confusion.png"]
    width, height = png_size(images[0].data)
    # at most 880 px wide: a GitHub comment shows it unscaled
    assert (width, height) == ((880, 460) if with_base else (520, 460))


def test_name_is_made_safe() -> None:
    images = render_plot(PlotSpec(path="h.csv"), history(5), None, "Plot 01/Loss")
    assert images[0].name == "plot-01-loss.png"


# --- overlay ----------------------------------------------------------------------------------


def test_overlay_tells_base_and_head_apart_by_colour_and_dashes_with_a_legend_above() -> None:
    spec = PlotSpec(path="h.csv", y=("loss",))
    head, base = load_table(history(20), "h.csv"), load_table(history(20, 1.5), "h.csv")
    figure = build_figure(spec, head, base, head_label="feature-x", base_label="main")
    ax = figure.axes[0]
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["main", "feature-x"]
    base_line, head_line = ax.get_lines()
    assert base_line.get_label() == "main"
    assert head_line.get_linewidth() > base_line.get_linewidth()
    assert matplotlib.colors.to_hex(base_line.get_color()) == OKABE_ITO["orange"]
    assert matplotlib.colors.to_hex(head_line.get_color()) == OKABE_ITO["blue"]
    assert base_line.get_linestyle() == "--" and head_line.get_linestyle() == "-"  # not by colour alone
    assert head_line.get_zorder() > base_line.get_zorder()
    assert ax.get_xlabel() == "epoch"  # default x column
    assert ax.get_title() == ""  # the report shows the title above the image
    assert_legend_above_the_data(figure)


def test_overlay_of_several_columns_names_each_series_and_side() -> None:
    texts = legend_texts(PlotSpec(path="h.csv", y=("loss", "acc")), history(10), history(10, 2.0))
    assert texts == ["loss (main)", "acc (main)", "loss (this change)", "acc (this change)"]


@pytest.mark.parametrize("template", ["scatter", "bar"])
def test_scatter_and_bar_overlays_carry_both_labels(template: str) -> None:
    spec = PlotSpec(path="h.csv", y=("loss",), template=template)
    assert legend_texts(spec, history(10), history(8, 2.0)) == ["main", "this change"]


def test_without_base_the_legend_still_names_the_revision_and_the_image_has_no_title() -> None:
    spec = PlotSpec(path="h.csv", y=("loss",), title="Training loss")
    figure = build_figure(spec, load_table(history(10), "h.csv"))
    ax = figure.axes[0]
    legend = ax.get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["this change"]
    assert ax.get_title() == "" and not figure.get_suptitle()
    assert ax.get_ylabel() == "loss"


def test_base_missing_a_column_draws_what_it_has() -> None:
    base = csv([{"epoch": e, "loss": 1.0 / (e + 1)} for e in range(5)])
    assert legend_texts(PlotSpec(path="h.csv", y=("loss", "acc")), history(5), base) == [
        "loss (main)",
        "loss (this change)",
        "acc (this change)",
    ]


def test_unreadable_base_is_left_out_and_the_head_still_renders(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cml_bot.plots"):
        images = render_plot(PlotSpec(path="h.csv"), history(5), b"\xff\xfe\x00bad", "p")
    assert len(images) == 1
    assert png_size(images[0].data) == (700, 400)
    assert "h.csv at main" in caplog.text


def test_default_x_is_the_row_when_no_step_column_and_default_y_the_last_column_as_in_dvc() -> None:
    data = csv([{"loss": 1.0 / (i + 1), "lr": 0.1} for i in range(5)])
    figure = build_figure(PlotSpec(path="h.csv"), load_table(data, "h.csv"))
    ax = figure.axes[0]
    assert ax.get_xlabel() == "step"  # the row number, labelled as DVC labels it
    assert ax.get_ylabel() == "lr"
    assert [line.get_label() for line in ax.get_lines()] == ["this change"]


def test_text_x_values_become_labelled_categories() -> None:
    data = csv([{"date": f"2024-01-{d:02d}", "loss": 1.0 / d} for d in range(1, 6)])
    spec = PlotSpec(path="h.csv", x="date", y=("loss",))
    figure = build_figure(spec, load_table(data, "h.csv"))
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert labels == [f"2024-01-{d:02d}" for d in range(1, 6)]


def test_dollar_signs_in_untrusted_text_are_not_mathtext() -> None:
    data = b"step,cost $ $x^{$\n0,1\n1,2\n"
    spec = PlotSpec(path="h.csv", title="$\\frac{$ price")
    images = render_plot(spec, data, data, "p")  # would raise ValueError if parsed as mathtext
    assert png_size(images[0].data) == (700, 400)


def test_bar_groups_values_per_text_category() -> None:
    head = csv([{"class": c, "f1": v} for c, v in [("cat", 0.9), ("dog", 0.8), ("cat", 0.7)]])
    base = csv([{"class": c, "f1": v} for c, v in [("dog", 0.6), ("bird", 0.5)]])
    figure = build_figure(
        PlotSpec(path="per_class.csv", template="bar"),
        load_table(head, "per_class.csv"),
        load_table(base, "per_class.csv"),
    )
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["dog", "bird", "cat"]
    heights = sorted(round(p.get_height(), 3) for p in ax.patches if isinstance(p, Rectangle))
    assert heights == [0.5, 0.6, 0.8, 0.8]  # cat: mean of 0.9 and 0.7


# --- confusion matrices -----------------------------------------------------------------------


def test_confusion_counts_are_annotated() -> None:
    records = [{"actual": a, "predicted": p} for a, p in [(1, 1), (1, 1), (1, 2), (2, 2), (10, 2)]]
    frame = load_table(json.dumps(records).encode(), "cm.json")
    figure = build_figure(PlotSpec(path="cm.json", template="confusion"), frame)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "10"]  # numeric order
    # As DVC draws it: x (actual) across, y (predicted) down; empty cells stay blank
    assert [t.get_text() for t in ax.texts] == ["2", "1", "1", "1"]
    assert [(t.get_position()) for t in ax.texts] == [(0, 0), (0, 1), (1, 1), (2, 1)]
    assert ax.get_xlabel() == "actual"
    assert ax.get_ylabel() == "predicted"


def test_confusion_normalized_rows_sum_to_one_with_two_decimals_as_in_dvc() -> None:
    records = [{"y": a, "pred": p} for a, p in [("a", "a"), ("a", "b"), ("a", "b"), ("b", "b")]]
    frame = load_table(json.dumps({"test": records}).encode(), "cm.json")
    spec = PlotSpec(path="cm.json", x="y", y=("pred",), template="confusion_normalized")
    ax = build_figure(spec, frame).axes[0]
    # each row (a value of y, down) divided by its total, as DVC's confusion_normalized does
    assert [t.get_text() for t in ax.texts] == ["1.00", "0.67", "0.33"]  # the empty cell blank


def test_confusion_with_base_is_two_titled_panels() -> None:
    spec = PlotSpec(path="cm.json", template="confusion", title="Validation")
    figure = build_figure(
        spec,
        load_table(confusion_records(1, 3), "cm.json"),
        load_table(confusion_records(2, 2), "cm.json"),
        "this change",
        "main",
    )
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["main", "this change"]  # each panel names its revision
    assert all(ax.get_legend() is None for ax in panels)
    assert not figure.get_suptitle()  # the report shows "Validation" above the image
    # both panels cover the same classes, in the same order
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["bird", "cat", "dog"]
    assert [t.get_text() for t in panels[1].get_yticklabels()] == ["bird", "cat", "dog"]


# --- image template ---------------------------------------------------------------------------

PNG_BYTES = render_plot(PlotSpec(path="h.csv"), b"step,loss\n0,1\n1,0.5\n", None, "x")[0].data


def test_image_template_returns_the_file_as_is() -> None:
    spec = PlotSpec(path="plots/roc.png", template="image")
    images = render_plot(spec, PNG_BYTES, PNG_BYTES, "plot-03-roc")
    assert [(i.name, i.data) for i in images] == [("plot-03-roc.png", PNG_BYTES)]


def test_image_template_adds_a_differing_base_and_keeps_the_extension() -> None:
    head = b"\xff\xd8\xff\xe0" + b"\x00" * 20
    base = b"\xff\xd8\xff\xe0" + b"\x01" * 20
    images = render_plot(PlotSpec(path="roc.jpg", template="image"), head, base, "roc")
    assert [(i.name, i.data) for i in images] == [("roc.jpg", head), ("roc-base.jpg", base)]
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>'
    assert render_plot(PlotSpec(path="a.svg", template="image"), svg, None, "a")[0].name == "a.svg"
    assert render_plot(PlotSpec(path="a.gif", template="image"), b"GIF89a...", None, "a")[0].name == "a.gif"


def test_image_template_rejects_a_file_that_is_not_an_image() -> None:
    with pytest.raises(InputError, match=r"^plots/roc\.png: not a PNG"):
        render_plot(PlotSpec(path="plots/roc.png", template="image"), b"hello", None, "roc")


# --- large series, size, determinism ----------------------------------------------------------


@pytest.fixture(scope="module")
def million_rows() -> bytes:
    n = 1_000_000
    rng = np.random.default_rng(0)
    steps = np.arange(n)
    loss = 1.0 / (1.0 + steps / 1e5) + rng.normal(0.0, 0.02, n)
    body = "\n".join(np.char.add(np.char.add(steps.astype(str), ","), np.round(loss, 5).astype(str)))
    return ("step,loss\n" + body + "\n").encode()


def test_a_million_points_render_fast_and_small(million_rows: bytes) -> None:
    spec = PlotSpec(path="train/loss.csv")
    start = time.perf_counter()
    images = render_plot(spec, million_rows, million_rows, "plot-04-loss")
    elapsed = time.perf_counter() - start
    assert elapsed < 1.5, f"rendering 1,000,000 points took {elapsed:.2f} s"
    assert png_size(images[0].data) == (700, 400)
    assert len(images[0].data) < 100_000


def test_a_million_scatter_points_render_fast(million_rows: bytes) -> None:
    start = time.perf_counter()
    images = render_plot(PlotSpec(path="loss.csv", template="scatter"), million_rows, None, "p")
    elapsed = time.perf_counter() - start
    assert elapsed < 1.5, f"scattering 1,000,000 points took {elapsed:.2f} s"
    assert len(images[0].data) < 100_000


def test_large_series_are_decimated_before_drawing(million_rows: bytes) -> None:
    frame = load_table(million_rows, "loss.csv")
    line = build_figure(PlotSpec(path="loss.csv"), frame).axes[0].get_lines()[0]
    drawn = np.asarray(line.get_ydata(), dtype=np.float64)
    assert 2_000 <= len(drawn) <= 4_004
    assert drawn.max() == frame["loss"].values.max() and drawn.min() == frame["loss"].values.min()  # envelope kept
    points = build_figure(PlotSpec(path="loss.csv", template="scatter"), frame).axes[0].get_lines()[0]
    assert len(np.asarray(points.get_xdata())) <= 400 * 250


def test_same_input_gives_the_same_bytes_whatever_the_global_style() -> None:
    spec = PlotSpec(path="h.csv", template="linear")
    first = render_plot(spec, history(30), history(25, 1.2), "p")[0].data
    with matplotlib.rc_context(
        {"lines.linewidth": 7, "font.size": 20, "axes.prop_cycle": cycler(color=["red", "green"])}
    ):
        second = render_plot(spec, history(30), history(25, 1.2), "p")[0].data
    assert first == second
    assert b"Software" not in first
    assert render_plot(spec, history(30), history(25, 1.3), "p")[0].data != first


def test_rendering_does_not_import_pyplot() -> None:
    code = (
        "import sys\n"
        "from cml_bot.config import PlotSpec\n"
        "from cml_bot.plots import render_plot\n"
        "render_plot(PlotSpec(path='a.csv'), b'step,loss\\n0,1\\n1,2\\n', None, 'a')\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_decimate_keeps_the_envelope_and_both_ends() -> None:
    n = 100_000
    x = np.arange(n, dtype=np.float64)
    y = np.sin(x / 500.0)
    y[12_345] = 50.0
    y[77_777] = -50.0
    dx, dy = decimate(x, y, buckets=500)
    assert len(dx) <= 1_004
    assert dy.max() == 50.0 and dy.min() == -50.0
    assert dx[0] == 0 and dx[-1] == n - 1
    assert bool((np.diff(dx) > 0).all())
    short_x, _ = decimate(x[:1000], y[:1000], buckets=500)
    assert len(short_x) == 1000


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=3000), st.integers(1, 50))
@settings(max_examples=60, deadline=None)
def test_decimate_keeps_extremes_and_picks_a_subset(values: list[float], buckets: int) -> None:
    y = np.array(values, dtype=np.float64)
    x = np.arange(len(y), dtype=np.float64)
    dx, dy = decimate(x, y, buckets)
    assert dy.max() == y.max() and dy.min() == y.min()
    assert len(dx) <= max(len(y), 2 * buckets + 4)
    np.testing.assert_array_equal(dy, y[dx.astype(np.int64)])


def test_thin_points_keeps_outliers_and_bounds_the_count() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=200_000)
    y = rng.normal(size=200_000)
    x[5], y[5] = 40.0, -40.0
    tx, ty = thin_points(x, y, grid=(100, 50))
    assert len(tx) <= 100 * 50
    assert 40.0 in tx and -40.0 in ty


# --- reading tables ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("a.csv", b"\xef\xbb\xbfstep,loss\n0,1.5\n1,0.5\n"),
        ("a.tsv", b"step\tloss\n0\t1.5\n1\t0.5\n"),
        ("a.json", b'[{"step": 0, "loss": 1.5}, {"step": 1, "loss": 0.5}]'),
        ("a.json", b'{"train": [{"step": 0, "loss": 1.5}, {"step": 1, "loss": 0.5}], "n": 2}'),
        ("a.yaml", b"- {step: 0, loss: 1.5}\n- {step: 1, loss: 0.5}\n"),
        ("a.log", b"step\tloss\n0\t1.5\n1\t0.5\n"),
        ("a", b' [{"step": 0, "loss": 1.5}, {"step": 1, "loss": 0.5}]'),
    ],
)
def test_load_table_reads_dvc_plot_formats(filename: str, data: bytes) -> None:
    frame = load_table(data, filename)
    assert list(frame.columns) == ["step", "loss"]
    assert frame["loss"].tolist() == [1.5, 0.5]


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        ("m/a.csv", b"", r"^m/a\.csv: empty file"),
        ("m/a.csv", b"step,loss\n", r"^m/a\.csv: no rows"),
        ("m/a.csv", b"step,loss\n\xff\xfe,1\n", r"^m/a\.csv: not UTF-8"),
        ("m/a.csv", b'step,loss\n0,"1\n', r"^m/a\.csv: cannot parse as CSV"),
        ("m/a.json", b"[{", r"^m/a\.json: invalid JSON"),
        ("m/a.json", b'{"a": [], "b": []}', r"^m/a\.json: expected a list of records.*'a', 'b'"),
        ("m/a.json", b'{"a": 1}', r"^m/a\.json: expected a list of records.*no list"),
        ("m/a.json", b"[1, 2]", r"^m/a\.json: record 0 is not an object"),
        ("m/a.json", b'"text"', r"^m/a\.json: expected a list of records"),
        ("m/a.yaml", b"a: [b\n", r"^m/a\.yaml: invalid YAML"),
        # Read as the metrics files are: nesting too deep is one line (was a RecursionError that
        # lost every plot of the report), a repeated key is refused as in YAML.
        ("m/a.json", b"[" * 100_000 + b"]" * 100_000, r"^m/a\.json: invalid JSON: nested too deeply"),
        ("m/a.json", b'[{"x": 1, "x": 2}]', r"^m/a\.json: invalid JSON: .*x"),
    ],
)
def test_load_table_errors_name_the_file(filename: str, data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_table(data, filename)


H, C = PlotSpec(path="h.csv"), PlotSpec(path="c.csv", template="confusion")


@pytest.mark.parametrize(
    ("spec", "data", "message"),
    [
        (replace(H, y=("los",)), b"step,loss\n0,1\n", r"^h\.csv: no column 'los' \(y\); closest: 'loss'"),
        (replace(H, x="epoch"), b"step,loss\n0,1\n", r"^h\.csv: no column 'epoch' \(x\)"),
        (
            replace(H, y=("phase",)),
            b"step,phase\n0,train\n",
            r"^h\.csv: column 'phase' \(y\) is not numeric \(value 'train'\)",
        ),
        (replace(H, y=("loss",)), b"step,loss\n0,\n1,\n", r"^h\.csv: column 'loss' \(y\) has no numbers"),
        (H, b"name,phase\na,train\n", r"^h\.csv: column 'phase' \(y\) is not numeric"),
        (C, b"actual,pred\n1,1\n", r"^c\.csv: no column 'predicted'"),
        (replace(C, y=("a", "b")), b"a,b\n1,1\n", r"^c\.csv: a confusion plot takes one y"),
        (C, b"actual,predicted\n1,\n", r"^c\.csv: no rows with both"),
    ],
)
def test_bad_plot_data_raises_input_error_naming_file_and_column(spec: PlotSpec, data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        render_plot(spec, data, None, "p")


def test_too_many_classes_is_refused() -> None:
    data = ("actual,predicted\n" + "".join(f"{i},{i}\n" for i in range(1001))).encode()
    with pytest.raises(InputError, match=r"^c\.csv: 1001 classes"):
        render_plot(PlotSpec(path="c.csv", template="confusion"), data, None, "p")


# --- safe_name --------------------------------------------------------------------------------


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_safe_name_is_a_safe_nonempty_stem(text: str) -> None:
    stem = safe_name(text)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", stem)
    assert len(stem) <= 60
    assert safe_name(stem) == stem


@pytest.mark.parametrize(
    ("text", "stem"),
    [
        ("plot-01-loss", "plot-01-loss"),
        ("Plot 01: Train/Loss (EMA)", "plot-01-train-loss-ema"),
        ("Café ROC", "cafe-roc"),
        ("../../etc/passwd", "etc-passwd"),
        ("", "plot"),
        ("???", "plot"),
        ("a" * 59 + "-b" + "c" * 10, "a" * 59),
    ],
)
def test_safe_name_examples(text: str, stem: str) -> None:
    assert safe_name(text) == stem


def test_integer_x_gets_integer_ticks() -> None:
    figure = build_figure(PlotSpec(path="h.csv", y=("loss",)), load_table(history(20), "h.csv"))
    figure.canvas.draw()
    ticks = figure.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)


# --- statistics figures -----------------------------------------------------------------------------


def test_confusion_delta_is_a_deterministic_diverging_png() -> None:
    from cml_bot.plots import render_confusion_delta

    classes = ["cat", "dog", "$x$ <b>"]
    base = [[50, 2, 1], [3, 40, 0], [0, 1, 30]]
    head = [[48, 4, 1], [1, 42, 0], [0, 1, 30]]
    image = render_confusion_delta(classes, base, head, "confusion-delta", "Confusion change")
    assert image.name == "confusion-delta.png" and image.data.startswith(b"\x89PNG")
    again = render_confusion_delta(classes, base, head, "confusion-delta", "Confusion change")
    assert again.data == image.data
    pixels = np.asarray(PILImage.open(io.BytesIO(image.data)).convert("RGB"), dtype=np.int64)
    reddish = ((pixels[..., 0] - pixels[..., 2]) > 60).sum()
    bluish = ((pixels[..., 2] - pixels[..., 0]) > 60).sum()
    assert reddish > 500 and bluish > 500  # both signs are drawn, in opposite colours


def test_trend_marks_change_points_and_the_usual_variation() -> None:
    from cml_bot.plots import render_trend

    history = [(f"sha{i}", {"accuracy": 0.80 + (0.05 if i >= 5 else 0.0) + 0.001 * (i % 2)}) for i in range(10)]
    plain = render_trend(history, {"accuracy": 0.86}, "trend", "Trend")
    marked = render_trend(
        history,
        {"accuracy": 0.86},
        "trend",
        "Trend",
        change_points={"accuracy": (5,)},
        bands={"accuracy": (5, 0.848, 0.853)},
    )
    assert plain.data != marked.data and marked.data.startswith(b"\x89PNG")


# --- read at a glance, in a light or a dark theme ---------------------------------------------------


def _every_kind_of_image() -> dict[str, bytes]:
    from cml_bot.plots import render_confusion_delta, render_trend

    images = {
        template: render_plot(
            PlotSpec(path="h.csv", y=("loss",), template=template), history(20), history(20, 1.4), "p"
        )[0].data
        for template in ("linear", "scatter", "bar")
    }
    images["confusion"] = render_plot(
        PlotSpec(path="cm.json", template="confusion"), confusion_records(1, 3), confusion_records(2, 2), "c"
    )[0].data
    images["delta"] = render_confusion_delta(["a", "b"], [[5, 1], [0, 4]], [[4, 2], [1, 3]], "d", "main").data
    trend = [(f"sha{i}", {"accuracy": 0.8 + 0.01 * (i % 3)}) for i in range(6)]
    images["trend"] = render_trend(trend, {"accuracy": 0.83}, "t", "main").data
    return images


def test_every_image_is_an_opaque_white_card_with_a_grey_border() -> None:
    """Never transparent (dark axes and text would vanish on a dark page); a white card with a
    border reads on GitHub's light and dark themes alike."""
    for kind, data in _every_kind_of_image().items():
        rgba = pixels(data)
        assert (rgba[..., 3] == 255).all(), kind
        width = rgba.shape[1]
        assert width <= 880, kind  # a comment's width: shown unscaled
        edge = np.concatenate([rgba[0, :, :3], rgba[-1, :, :3], rgba[:, 0, :3], rgba[:, -1, :3]])
        assert (np.abs(edge - np.array([0x8C, 0x95, 0x9F])) <= 40).all(axis=-1).mean() > 0.95, kind
        margin = np.concatenate([rgba[2:5, 2:-2, :3].reshape(-1, 3), rgba[2:-2, 2:5, :3].reshape(-1, 3)])
        assert (margin == 255).all(axis=-1).mean() > 0.9, kind  # white just inside the border


def test_base_and_head_are_drawn_in_okabe_ito_orange_and_blue() -> None:
    for template in ("linear", "scatter", "bar"):
        spec = PlotSpec(path="h.csv", y=("loss",), template=template)
        rgba = pixels(render_plot(spec, history(20), history(20, 1.4), "p")[0].data)
        head_alpha, base_alpha = (0.85, 0.7) if template == "scatter" else (1.0, 1.0)
        assert near(rgba, OKABE_ITO["blue"], alpha=head_alpha) > 150, template
        assert near(rgba, OKABE_ITO["orange"], 20, alpha=base_alpha) > 60, template
        assert near(rgba, "#1f77b4", 3) < 10, template  # not matplotlib's default blue


def test_several_fields_take_palette_colours_and_keep_them_across_revisions() -> None:
    spec = PlotSpec(path="h.csv", y=("loss", "acc"))
    figure = build_figure(spec, load_table(history(10), "h.csv"), load_table(history(10, 2.0), "h.csv"))
    colours = [matplotlib.colors.to_hex(line.get_color()) for line in figure.axes[0].get_lines()]
    assert colours == [OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["blue"], OKABE_ITO["orange"]]
    styles = [line.get_linestyle() for line in figure.axes[0].get_lines()]
    assert styles == ["--", "--", "-", "-"]
    assert_legend_above_the_data(figure)


@pytest.mark.parametrize("template", ["scatter", "bar"])
def test_scatter_and_bars_tell_the_base_apart_without_colour(template: str) -> None:
    spec = PlotSpec(path="h.csv", y=("loss",), template=template)
    figure = build_figure(spec, load_table(history(10), "h.csv"), load_table(history(10, 2.0), "h.csv"))
    ax = figure.axes[0]
    if template == "scatter":
        base, head = ax.get_lines()
        assert (base.get_marker(), head.get_marker()) == ("x", "o")
    else:
        bars = [p for p in ax.patches if isinstance(p, Rectangle)]
        hatches = {p.get_hatch() for p in bars}
        assert hatches == {"///", None}
    assert_legend_above_the_data(figure)


def test_many_legend_entries_take_rows_above_the_axes_without_covering_them() -> None:
    frame = csv([{"step": i, **{f"metric_number_{k}": i * k for k in range(6)}} for i in range(5)])
    spec = PlotSpec(path="h.csv", y=tuple(f"metric_number_{k}" for k in range(6)))
    figure = build_figure(spec, load_table(frame, "h.csv"), load_table(frame, "h.csv"))
    assert_legend_above_the_data(figure)


def _tick_labels_overlap(figure: Figure) -> bool:
    """Whether neighbouring class names touch: upright ones by their boxes, names turned 45
    degrees by the distance between their (parallel) baselines."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = figure.axes[0]
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        shown = [t for t in labels if t.get_text()]
        boxes = [t.get_window_extent(renderer) for t in shown]
        for label, first, second in zip(shown, boxes, boxes[1:], strict=False):
            if label.get_rotation() == 0 and first.overlaps(second):
                return True
            gap = abs(second.x1 - first.x1) * np.sin(np.radians(label.get_rotation()))
            if label.get_rotation() and gap < label.get_fontsize() * 100 / 72:
                return True
    return False


@pytest.mark.parametrize("classes", [3, 10, 15, 40, 120])
def test_confusion_matrices_stay_legible_at_any_class_count(classes: int) -> None:
    records = [{"actual": i % classes, "predicted": (i * 7) % classes} for i in range(classes * 20)]
    frame = load_table(json.dumps(records).encode(), "cm.json")
    spec = PlotSpec(path="cm.json", template="confusion")
    figure = build_figure(spec, frame, frame)
    panel = figure.axes[0]
    assert not _tick_labels_overlap(figure)
    if classes <= 10:
        assert panel.texts  # annotated
    if classes >= 40:
        assert not panel.texts  # too small to read: the colour bar tells the values
    if panel.texts:
        assert min(t.get_fontsize() for t in panel.texts) >= 7  # about 10 px: readable
        assert len(figure.axes) == 2
    else:
        assert len(figure.axes) == 3  # two panels and a colour bar


def test_confusion_delta_is_drawn_as_the_confusion_plots_are() -> None:
    from cml_bot.plots import render_confusion_delta

    # rows of the inputs: the true class; the image: the true class across, as DVC draws it
    image = render_confusion_delta(["a", "b"], [[5, 0], [0, 5]], [[5, 0], [3, 2]], "d", "main")
    rgba = pixels(image.data)
    assert (rgba[..., 3] == 255).all()
    assert near(rgba, "#67001f", 30) + near(rgba, "#b2182b", 30) > 100  # the fewer-correct cell, red


# --- column types, as pandas typed them (the reader has no pandas) ------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # whole numbers are integers (integer ticks; "3" as a category, not "3.0")
        (b"step,loss\n0,1.5\n1,0.5\n", {"step": ("int", [0, 1]), "loss": ("float", [1.5, 0.5])}),
        # an empty cell or an NA spelling is missing: the column stays numeric
        (b"a,b\n1,NA\n2,\n3,4.5\n", {"a": ("int", [1, 2, 3]), "b": ("float", [None, None, 4.5])}),
        # quotes and delimiters inside them go through the general reader, with the same types
        (b'name,score\n"a, b",1\n"c",2\n', {"name": ("text", ["a, b", "c"]), "score": ("int", [1, 2])}),
        (b"ok,label\nTrue,x\nfalse,\n", {"ok": ("bool", [True, False]), "label": ("text", ["x", None])}),
        # a short row is padded with missing cells; a repeated or empty name is renamed as pandas does
        (b"a,a,\n1,2,3\n4,5\n", {"a": ("int", [1, 4]), "a.1": ("int", [2, 5]), "Unnamed: 2": ("float", [3, None])}),
        (b"x\r\n1e3\r\n\r\ninf\r\n", {"x": ("float", [1000.0, math.inf])}),
    ],
)
def test_csv_columns_are_typed_as_pandas_typed_them(data: bytes, expected: dict[str, tuple[str, list[object]]]) -> None:
    table = load_table(data, "t.csv")
    assert table.columns == list(expected)
    for name, (kind, values) in expected.items():
        column = table[name]
        assert column.kind == kind, name
        shown = [None if isinstance(v, float) and math.isnan(v) else v for v in column.tolist()]
        assert shown == values, name


def test_json_records_are_typed_and_missing_fields_are_missing() -> None:
    records = [{"actual": 1, "predicted": "cat", "p": 0.5}, {"actual": 2, "p": None, "flag": True}]
    table = load_table(json.dumps(records).encode(), "r.json")
    assert table.columns == ["actual", "predicted", "p", "flag"]
    assert [table[c].kind for c in table.columns] == ["int", "text", "float", "text"]
    assert table["predicted"].texts() == ["cat", "nan"]
    assert table["p"].numbers() is not None and table["flag"].numbers() is None


def test_a_row_longer_than_the_header_is_an_error_naming_the_file() -> None:
    with pytest.raises(InputError, match=r"^t\.csv: cannot parse as CSV: expected 2 fields in data row 2, saw 3"):
        load_table(b"a,b\n1,2\n3,4,5\n", "t.csv")


def test_a_million_numeric_rows_are_read_in_c(million_rows: bytes) -> None:
    start = time.perf_counter()
    table = load_table(million_rows, "big.csv")
    elapsed = time.perf_counter() - start
    assert len(table) == 1_000_000 and table["step"].kind == "int"
    assert elapsed < 1.0, f"reading 1,000,000 rows took {elapsed:.2f} s"


def test_a_header_repeating_one_name_is_renamed_in_linear_time() -> None:
    """Hostile input: 100,000 columns all named "a" (renaming by probing "a.1", "a.2", ... from the
    start each time would take 5e9 steps)."""
    width = 100_000
    data = (",".join(["a"] * width) + "\n" + ",".join(["1"] * width) + "\n").encode()
    start = time.perf_counter()
    table = load_table(data, "wide.csv")
    assert time.perf_counter() - start < 10.0
    assert len(set(table.columns)) == width and table.columns[-1] == f"a.{width - 1}"


def test_records_that_each_bring_their_own_field_are_refused_not_expanded() -> None:
    """Hostile input: 10,000 records with a field each of their own would be a table of 10^8 cells."""
    records = [{f"f{i}": i} for i in range(10_000)]
    with pytest.raises(InputError, match=r"^r\.json: 10,000 records with 10,000 different fields: over"):
        load_table(json.dumps(records).encode(), "r.json")
