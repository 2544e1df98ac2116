"""DVC plot definitions (``{x, y, template, title, x_label, y_label, header}``) -> :class:`PlotSpec`.

Used for what cml-bot reads from dvc.yaml itself and for what DVC's own resolver returns, so both
draw the same plots. DVC's rules, mirrored: ``y`` may map files to fields (``{a.csv: loss, b.csv:
[acc, f1]}``), each pair one series; ``x`` is one field for every file, or ``{file: field}``: one
such pair joins its rows with every y file by position, several pair one-to-one with the y pairs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from cml_bot.config import IMAGE_SUFFIXES, PLOT_FILE_SUFFIXES, PLOT_TEMPLATES, PlotSource, PlotSpec, _Reader
from cml_bot.errors import CmlBotError

if TYPE_CHECKING:
    from cml_bot.metrics import Tree

PLOT_PROPS = ("template", "x", "y", "x_label", "y_label", "title", "header")

Lister = Callable[[str], "list[str] | None"]  # files below a folder (relative to the project), None if not one


def plot_files_under(list_files: Lister, path: str) -> list[str] | None:
    """The data and image files below folder ``path`` (DVC would fail on the others), in the
    lister's order; None when ``path`` is not a folder there."""
    inside = list_files(path)
    if inside is None:
        return None
    return [f for f in inside if PurePosixPath(f).suffix.lower() in PLOT_FILE_SUFFIXES]


def is_path_plot(props: object) -> bool:
    """Whether a plot definition's id is its data file or folder (DVC's rule): it is, unless ``y``
    maps files to fields (``{id: {y: {file: field}}}``)."""
    return not (isinstance(props, Mapping) and isinstance(props.get("y"), Mapping))


def expand_plot_folders(plots: Sequence[PlotSpec], tree: Tree) -> tuple[PlotSpec, ...]:
    """A plot naming a folder of ``tree`` (dvclive's ``plots``) stands for each data file in it,
    with the folder's options; dvclive's scikit-learn plots (ROC, precision-recall, confusion
    matrix, ...) get the templates and labels dvclive gives them. Files already plotted are not
    drawn twice. Folders are listed, and JSON files sniffed, through ``tree``: the revision read."""
    folders = {
        spec.path: files for spec in plots if (files := plot_files_under(tree.files_under, spec.path)) is not None
    }
    if not folders:
        return tuple(plots)
    explicit = {file for spec in plots if spec.path not in folders for file in spec.files}
    sniffed = [f for files in folders.values() for f in files if f.lower().endswith(".json") and f not in explicit]
    contents: dict[str, bytes | None] = {}
    for file in dict.fromkeys(sniffed):
        try:
            contents.update(tree.read_many([file]))
        except CmlBotError:  # too large, a link out of the repo, not a file: drawing it says so, one plot
            continue
    expanded: list[PlotSpec] = []
    for spec in plots:
        if spec.path not in folders:
            expanded.append(spec)
            continue
        for file in folders[spec.path]:
            if file in explicit:
                continue
            explicit.add(file)
            data = contents.get(file)
            sklearn = dvclive_sklearn_spec(file, data) if data is not None else None
            if sklearn is not None:
                expanded.append(sklearn)
                continue
            name = PurePosixPath(file)
            template = "image" if name.suffix.lower() in IMAGE_SUFFIXES else spec.template
            title = f"{spec.title}: {name.stem}" if spec.title else file
            expanded.append(replace(spec, path=file, template=template, title=title, sources=()))
    return tuple(expanded)


def plot_spec(r: _Reader, plot_id: str, props: Mapping[str, Any] | None, where: str) -> tuple[PlotSpec, str | None]:
    """One plot from its id and properties, with paths already relative to the project root.

    Returns the spec and a note for the reader (a template cml-bot does not draw), or None.
    """
    props = props or {}
    if not isinstance(props, Mapping):
        raise r.fail(where, "plot properties as a mapping", props)
    template, note = _template(r, props.get("template"), plot_id, where)
    title = _opt_text(r, props, "title", where)
    x_label = _opt_text(r, props, "x_label", where)
    y_label = _opt_text(r, props, "y_label", where)
    header = props.get("header", True)
    if not isinstance(header, bool):
        raise r.fail(f"{where}.header", "true or false", header)
    x, y = props.get("x"), props.get("y")
    ys = _pairs(r, y, f"{where}.y") if isinstance(y, Mapping) else None
    xs = _pairs(r, x, f"{where}.x") if isinstance(x, Mapping) else None
    if ys is None and xs is None:
        # The plot id is the data file: {path: {x: step, y: [loss, acc]}}
        is_image = plot_id.lower().endswith(IMAGE_SUFFIXES)
        spec = PlotSpec(
            path=plot_id,
            x=_opt_field(r, x, f"{where}.x"),
            y=_fields(r, y, f"{where}.y"),
            template="image" if is_image else (template or "linear"),
            title=title,
            x_label=x_label,
            y_label=y_label,
            header=header,
        )
        return spec, None if is_image else note
    if ys is None:  # x from another file, y fields of the plot's own file
        ys = [(plot_id, field) for field in _fields(r, y, f"{where}.y")] or [(plot_id, None)]
    sources = tuple(_join(r, ys, x, xs, where))
    spec = PlotSpec(
        path=plot_id,
        template=template or "linear",
        title=title,
        sources=sources,
        x_label=x_label,
        y_label=y_label,
        header=header,
    )
    return spec, note


def _join(
    r: _Reader,
    ys: Sequence[tuple[str, str | None]],
    x: object,
    xs: Sequence[tuple[str, str | None]] | None,
    where: str,
) -> list[PlotSource]:
    if xs is None:
        x_field = _opt_field(r, x, f"{where}.x")
        return [PlotSource(file, field, x_field) for file, field in ys]
    if len(xs) == 1:
        x_file, x_field = xs[0]
        return [PlotSource(file, field, x_field, None if x_file == file else x_file) for file, field in ys]
    if len(xs) != len(ys):
        raise r.fail(f"{where}.x", f"one x source, or as many as y sources ({len(ys)})", f"{len(xs)} x sources")
    return [
        PlotSource(file, field, x_field, None if x_file == file else x_file)
        for (file, field), (x_file, x_field) in zip(ys, xs, strict=True)
    ]


def _pairs(r: _Reader, value: Mapping[Any, Any], where: str) -> list[tuple[str, str | None]]:
    """``{file: field or [fields]}`` -> (file, field) pairs, in order."""
    pairs: list[tuple[str, str | None]] = []
    for file, fields in value.items():
        if not isinstance(file, str) or not file:
            raise r.fail(where, "file names as keys", file)
        names = _fields(r, fields, f"{where}.{file}")
        pairs.extend((file, name) for name in names)
    return pairs


def _fields(r: _Reader, value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(_field(r, item, f"{where}[{i}]", "a field name") for i, item in enumerate(value))
    return (_field(r, value, where, "a field name or a list of them"),)


def _opt_field(r: _Reader, value: object, where: str) -> str | None:
    return None if value is None else _field(r, value, where, "a field name")


def _field(r: _Reader, value: object, where: str, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):  # `y: 1`: a column of a file without header
        return str(value)
    return r.text(value, where, what=what)


def _opt_text(r: _Reader, props: Mapping[str, Any], key: str, where: str) -> str | None:
    value = props.get(key)
    if value is None:
        return None
    if isinstance(value, bool | int | float):  # YAML `title: 2024` or `x_label: False`
        return str(value)
    return r.text(value, f"{where}.{key}")


def _template(r: _Reader, name: object, plot_id: str, where: str) -> tuple[str | None, str | None]:
    """DVC's template name as ours; a custom template (a file of the project) is drawn as lines."""
    if name is None:
        return None, None
    text = r.text(name, f"{where}.template", what="a template name")
    stem = PurePosixPath(text).stem if text.endswith(".json") else text
    if stem in PLOT_TEMPLATES and stem != "image":
        return stem, None
    return None, f"Plot {plot_id}: template {text!r} is not one of DVC's built-in templates; drawn as lines."


# dvclive's scikit-learn plots (dvclive.plots.sklearn): the fields of their records, and the
# template, labels and title dvclive writes into its dvc.yaml for them.
_DVCLIVE_SKLEARN: tuple[tuple[frozenset[str], str, str, str, str, str, str], ...] = (
    (
        frozenset({"fpr", "tpr", "threshold"}),
        "simple",
        "fpr",
        "tpr",
        "False Positive Rate",
        "True Positive Rate",
        "Receiver operating characteristic (ROC)",
    ),
    (
        frozenset({"precision", "recall", "threshold"}),
        "simple",
        "recall",
        "precision",
        "Recall",
        "Precision",
        "Precision-Recall Curve",
    ),
    (
        frozenset({"fpr", "fnr", "threshold"}),
        "simple",
        "fpr",
        "fnr",
        "False Positive Rate",
        "False Negative Rate",
        "Detection error tradeoff (DET)",
    ),
    (
        frozenset({"prob_true", "prob_pred"}),
        "simple",
        "prob_pred",
        "prob_true",
        "Mean Predicted Probability",
        "Fraction of Positives",
        "Calibration Curve",
    ),
    (
        frozenset({"actual", "predicted"}),
        "confusion",
        "actual",
        "predicted",
        "True Label",
        "Predicted Label",
        "Confusion Matrix",
    ),
)
_SNIFF_BYTES = 5_000_000  # a scikit-learn plot file larger than this is drawn as a plain line plot


def dvclive_sklearn_spec(plot_id: str, data: bytes) -> PlotSpec | None:
    """The plot dvclive's ``log_sklearn_plot`` describes for the JSON ``data``, recognised by the
    fields of its records (``{"roc": [{"fpr", "tpr", "threshold"}]}``), or None."""
    if len(data) > _SNIFF_BYTES:
        return None
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return None
    records = document
    if isinstance(document, Mapping) and len(document) == 1:
        records = next(iter(document.values()))
    if not isinstance(records, list) or not records or not isinstance(records[0], Mapping):
        return None
    fields = frozenset(records[0])
    for wanted, template, x, y, x_label, y_label, title in _DVCLIVE_SKLEARN:
        if fields == wanted:
            return PlotSpec(path=plot_id, x=x, y=(y,), template=template, title=title, x_label=x_label, y_label=y_label)
    return None
