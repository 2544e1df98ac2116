"""Plots as DVC draws them: one figure per plot id over all its files and both revisions, rows of
x and y joined across files, every DVC template, ``header``, default y, labels and titles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import GitRepo
from matplotlib.patches import Rectangle

from cml_bot.app import Effects, Options, run
from cml_bot.config import PlotSource, PlotSpec
from cml_bot.errors import InputError
from cml_bot.plots import build_figure, load_table, plot_titles, render_plot
from cml_bot.results import RunResults


def _frames(files: dict[str, bytes], header: bool = True) -> dict[str, object]:
    return {name: load_table(data, name, header) for name, data in files.items()}


ROC = PlotSpec(
    "ROC",
    template="simple",
    title="ROC",
    x_label="False positive rate",
    y_label="True positive rate",
    sources=(PlotSource("eval/train/roc.json", "tpr", "fpr"), PlotSource("eval/test/roc.json", "tpr", "fpr")),
)


def _roc(scale: float) -> bytes:
    return json.dumps({"roc": [{"fpr": f, "tpr": min(1.0, f * scale + 0.2)} for f in (0.0, 0.5, 1.0)]}).encode()


def test_one_figure_per_plot_id_with_every_file_and_revision_in_the_legend() -> None:
    head = _frames({"eval/train/roc.json": _roc(1.0), "eval/test/roc.json": _roc(0.8)})
    base = _frames({"eval/train/roc.json": _roc(0.9), "eval/test/roc.json": _roc(0.7)})
    figure = build_figure(ROC, head, base, "this change", "main")
    ax = figure.axes[0]
    legend = ax.get_legend()
    assert legend is not None
    # files shortened by their common folder, as DVC does
    assert [t.get_text() for t in legend.get_texts()] == [
        "train/roc.json: tpr (main)",
        "test/roc.json: tpr (main)",
        "train/roc.json: tpr (this change)",
        "test/roc.json: tpr (this change)",
    ]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("", "False positive rate", "True positive rate")
    lines = ax.get_lines()
    assert lines[0].get_color() == lines[2].get_color()  # a file keeps its colour across revisions
    assert lines[0].get_linestyle() == "--" and lines[2].get_linestyle() == "-"  # the base dashed


def test_x_from_one_file_and_y_from_another_are_joined_by_row() -> None:
    spec = PlotSpec("joined", sources=(PlotSource("y.csv", "loss", "epoch", "x.csv"),))
    head = _frames({"x.csv": b"epoch\n10\n20\n30\n", "y.csv": b"loss\n0.9\n0.5\n0.4\n"})
    line = build_figure(spec, head).axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [10, 20, 30] and list(line.get_ydata()) == [0.9, 0.5, 0.4]
    short = _frames({"x.csv": b"epoch\n10\n20\n", "y.csv": b"loss\n0.9\n0.5\n0.4\n"})
    with pytest.raises(
        InputError, match=r"cannot join 'epoch' from x\.csv \(2 rows\) with 'loss' from y\.csv \(3 rows\)"
    ):
        build_figure(spec, short)


@pytest.mark.parametrize("template", ["bar_horizontal", "bar_horizontal_sorted"])
def test_horizontal_bars_have_categories_down_and_values_across(template: str) -> None:
    spec = PlotSpec("importance.csv", x="importance", y=("feature",), template=template)
    head = _frames({"importance.csv": b"feature,importance\nage,0.2\nincome,0.5\nzip,0.1\n"})
    ax = build_figure(spec, head).axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    widths = {
        label: round(bar.get_width(), 3)
        for label, bar in zip(labels, sorted(bars, key=lambda b: b.get_y()), strict=True)
    }
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("importance", "feature")
    if template == "bar_horizontal_sorted":
        assert labels == ["income", "age", "zip"]  # largest first, on top
    else:
        assert labels == ["age", "income", "zip"]  # as in the file, first on top
    assert widths == {"age": 0.2, "income": 0.5, "zip": 0.1}
    assert ax.yaxis_inverted()


def test_header_false_reads_the_first_row_as_data() -> None:
    spec = PlotSpec("data.csv", x="0", y=("1",), header=False)
    images = render_plot(spec, b"1,10\n2,20\n3,30\n", None, "p")
    assert images[0].name == "p.png"
    line = build_figure(spec, _frames({"data.csv": b"1,10\n2,20\n3,30\n"}, header=False)).axes[0].get_lines()[0]
    assert list(line.get_ydata()) == [10, 20, 30]


def test_default_y_is_the_last_column_but_never_dvclives_timestamp() -> None:
    dvclive = b"timestamp\tstep\tloss\n1700000000\t0\t0.9\n1700000060\t1\t0.5\n"
    ax = build_figure(PlotSpec("loss.tsv"), _frames({"loss.tsv": dvclive})).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("step", "loss")
    later = b"step,loss,timestamp\n0,0.9,1700000000\n1,0.5,1700000060\n"
    ax = build_figure(PlotSpec("log.csv"), _frames({"log.csv": later})).axes[0]
    assert ax.get_ylabel() == "loss" and len(ax.get_lines()) == 1


def test_confusion_labels_from_the_definition() -> None:
    spec = PlotSpec("cm.json", x="actual", y=("predicted",), template="confusion", x_label="True Label", y_label="Pred")
    records = json.dumps([{"actual": "a", "predicted": "b"}, {"actual": "a", "predicted": "a"}]).encode()
    ax = build_figure(spec, _frames({"cm.json": records})).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("True Label", "Pred")


def test_titles_are_distinct_for_plain_and_normalised_confusion_and_for_duplicates() -> None:
    specs = [
        PlotSpec("cm.json", template="confusion", title="Confusion Matrix"),
        PlotSpec("cm.json", template="confusion_normalized", title="Confusion Matrix"),
        PlotSpec("train/loss.tsv", title="Loss"),
        PlotSpec("test/loss.tsv", title="Loss"),
        PlotSpec("a.csv"),
        PlotSpec("a.csv", y=("x",)),
    ]
    assert plot_titles(specs) == [
        "Confusion Matrix",
        "Confusion Matrix (normalized)",
        "Loss (train/loss.tsv)",
        "Loss (test/loss.tsv)",
        "a.csv",
        "a.csv #2",
    ]


def test_every_dvc_template_draws(repo: GitRepo) -> None:
    """Every template DVC has (and cml-bot's bar and image) gives a PNG through the whole run."""
    plots = []
    for template in ("linear", "simple", "smooth", "scatter", "scatter_jitter", "bar"):
        plots.append(f"  - {{path: log.csv, x: step, y: [loss], template: {template}, title: {template}}}")
    plots.append("  - {path: imp.csv, x: value, y: [name], template: bar_horizontal, title: h}")
    plots.append("  - {path: imp.csv, x: value, y: [name], template: bar_horizontal_sorted, title: hs}")
    plots.append("  - {path: cm.csv, x: actual, y: [predicted], template: confusion, title: c}")
    plots.append("  - {path: cm.csv, x: actual, y: [predicted], template: confusion_normalized, title: c}")
    repo.write("cml-bot.yaml", "metrics: [m.json]\nplots:\n" + "\n".join(plots) + "\n")
    repo.write("m.json", {"acc": 0.5})
    repo.write("log.csv", "step,loss\n" + "".join(f"{i},{1 / (i + 1)}\n" for i in range(5)))
    repo.write("imp.csv", "name,value\na,1\nb,3\n")
    repo.write("cm.csv", "actual,predicted\n1,1\n1,0\n0,0\n")
    repo.commit()
    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))
    titles = [entry.title for entry in outcome.report.plots]
    assert titles == [
        "linear",
        "simple",
        "smooth",
        "scatter",
        "scatter_jitter",
        "bar",
        "h",
        "hs",
        "c",
        "c (normalized)",
    ]
    assert all(len(entry.images) == 1 and entry.note is None for entry in outcome.report.plots)
    assert len(list((repo.root / "cml-bot-report").glob("plot-*.png"))) == 10


def test_a_plot_over_two_files_is_one_image_in_the_report(repo: GitRepo) -> None:
    repo.write(
        "dvc.yaml",
        "plots:\n  - ROC:\n      x: fpr\n      y:\n        eval/train/roc.json: tpr\n        eval/test/roc.json: tpr\n",
    )
    repo.write("eval/train/roc.json", _roc(0.9).decode())
    repo.write("eval/test/roc.json", _roc(0.7).decode())
    repo.commit()
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("eval/test/roc.json", _roc(0.8).decode())
    repo.commit()
    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))
    assert [(p.title, len(p.images), p.note) for p in outcome.report.plots] == [("ROC", 1, None)]


def test_a_declared_plot_file_that_is_missing_is_a_warning_naming_the_closest(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", "metrics: [m.json]\nplots: [plots/los.csv]\n")
    repo.write("m.json", {"acc": 0.5})
    repo.write("plots/loss.csv", "step,loss\n0,1\n")
    repo.commit()
    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))
    (entry,) = outcome.report.plots
    assert entry.note == "plots/los.csv was not produced by this change; closest: plots/loss.csv"
    assert "plot 'plots/los.csv': plots/los.csv was not produced by this change; closest: plots/loss.csv" in (
        outcome.report.warnings
    )


def test_drawing_cost_does_not_grow_with_the_number_of_sources() -> None:
    spec = PlotSpec("many", sources=tuple(PlotSource(f"f{i}.csv", "y", "x") for i in range(8)))
    data = ("x,y\n" + "".join(f"{i},{np.sin(i / 10)}\n" for i in range(5000))).encode()
    images = render_plot(spec, {f"f{i}.csv": data for i in range(8)}, None, "many")
    assert images[0].data.startswith(b"\x89PNG")


def test_a_users_own_images_are_labelled_with_their_revision_in_the_report(tmp_path: Path) -> None:
    """The image template posts the user's files as they are; they cannot say which revision they
    show, so the report's entry labels each."""
    from dataclasses import replace as with_fields

    from cml_bot.config import Config
    from cml_bot.evaluation import start_plots

    head_png = render_plot(PlotSpec(path="h.csv"), b"step,loss\n0,1\n1,0.5\n", None, "x")[0].data
    base_png = render_plot(PlotSpec(path="h.csv"), b"step,loss\n0,1\n1,0.7\n", None, "x")[0].data
    config = with_fields(Config(tmp_path), plots=(PlotSpec("samples.png", template="image", title="Samples"),))
    head = RunResults("h" * 40, {}, files={"samples.png": head_png})
    base = RunResults("b" * 40, {}, files={"samples.png": base_png})
    entries, images = start_plots(config, head, base, "main")()
    assert [(e.title, e.images, e.labels) for e in entries] == [
        ("Samples", ("plot-01-samples.png", "plot-01-samples-base.png"), ("this change", "main"))
    ]
    assert [i.data for i in images] == [head_png, base_png]
    drawn, _ = start_plots(with_fields(config, plots=(PlotSpec("h.csv"),)), _results(), _results(), "main")()
    assert drawn[0].labels == ()  # a drawn plot names its revisions in its legend


def _results() -> RunResults:
    return RunResults("s" * 40, {}, files={"h.csv": b"step,loss\n0,1\n1,0.5\n"})
