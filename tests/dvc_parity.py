"""Side by side with DVC: run cml-bot and DVC's own ``metrics diff``, ``params diff`` and ``plots
diff`` (in process, through DVC's Python API) on the same repository and compare what they find.

cml-bot's side is ``cml-bot diff A`` (exactly revision A against the workspace, as ``dvc metrics
diff A`` compares them), taken from :func:`cml_bot.app.evaluate` and the report's diff.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cml_bot.app import Effects, Evaluation, Options, build_report, evaluate
from cml_bot.config import PlotSpec
from cml_bot.diff import Diff, MetricChange, ParamChange
from cml_bot.metrics import Samples

HEAD = "this change"


@contextmanager
def chdir(path: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


class Project:
    """A git repository with DVC initialised in ``root`` (the repository's top, or a subfolder)."""

    def __init__(self, top: Path, root: Path | None = None) -> None:
        self.top = top
        self.root = root or top

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", *args], cwd=self.top, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def write(self, path: str, content: str | bytes | object) -> Path:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif isinstance(content, str):
            target.write_text(content, encoding="utf-8")
        else:
            target.write_text(json.dumps(content), encoding="utf-8")
        return target

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def dvc_commit(self) -> None:
        """Record the stages' outputs in dvc.lock and DVC's cache (what `dvc repro` leaves)."""
        from dvc.repo import Repo

        with chdir(self.root), Repo(str(self.root)) as repo:
            repo.commit(force=True)


def init(top: Path, subdir: str = "") -> Project:
    top.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main"], cwd=top, check=True)
    root = top / subdir if subdir else top
    root.mkdir(parents=True, exist_ok=True)
    from dvc.repo import Repo

    with chdir(root):
        Repo.init(str(root), subdir=bool(subdir)).close()
    return Project(top, root)


# --- DVC's side -------------------------------------------------------------------------------------


def dvc_metrics(root: Path, rev: str) -> dict[str, dict[str, dict[str, Any]]]:
    from dvc.repo import Repo

    with chdir(root), Repo(str(root)) as repo:
        found = repo.metrics.diff(a_rev=rev, all=True)
    return dict(found.get("diff", {}))


def dvc_params(root: Path, rev: str) -> dict[str, dict[str, dict[str, Any]]]:
    from dvc.repo import Repo

    with chdir(root), Repo(str(root)) as repo:
        found = repo.params.diff(a_rev=rev, all=True)
    return dict(found.get("diff", {}))


@dataclass(frozen=True)
class DvcPlot:
    name: str  # DVC's plot id
    properties: Mapping[str, Any]  # x, y (field names in the datapoints), x_label, y_label, title, template
    points: Mapping[tuple[str, str, str], list[tuple[Any, Any]]]  # (revision, file, field) -> (x, y) pairs


def dvc_plots(root: Path, rev: str) -> dict[str, DvcPlot]:
    """What ``dvc plots diff rev`` draws: per plot id, its series as DVC's renderer holds them."""
    from dvc.render.match import match_defs_renderers
    from dvc.repo import Repo

    with chdir(root), Repo(str(root)) as repo:
        data = repo.plots.diff(revs=[rev])
        renderers = match_defs_renderers(data=data, templates_dir=repo.plots.templates_dir)
    plots = {}
    for with_errors in renderers:
        renderer = with_errors.renderer
        props = dict(renderer.properties)
        points: dict[tuple[str, str, str], list[tuple[Any, Any]]] = {}
        if renderer.TYPE == "vega":
            x, y = props.get("x"), props.get("y")
            for point in renderer.datapoints:
                key = (point["rev"], point.get("filename", ""), point.get("field", ""))
                points.setdefault(key, []).append((point.get(x), point.get(y)))
        plots[renderer.name] = DvcPlot(renderer.name, props, points)
    return plots


# --- cml-bot's side ---------------------------------------------------------------------------------


def ours(root: Path, rev: str) -> tuple[Evaluation, Diff]:
    """``cml-bot diff rev`` (rev against the workspace), without drawing."""
    evaluation = evaluate(Options(root=root, compare=(rev, None)), Effects(env={}))
    report, _ = build_report(evaluation, draw=False)
    return evaluation, report.diff


def _our_name(names: set[str], path: str, key: str) -> str:
    candidates = [path] if key == "" else [key, f"{path}:{key}"]
    for name in candidates:
        if name in names:
            return name
    raise AssertionError(f"cml-bot has no metric for {path}:{key}; it has {sorted(names)[:20]}")


def _same(ours_value: object, dvc_value: object) -> bool:
    if isinstance(dvc_value, float) and isinstance(ours_value, int | float) and not isinstance(ours_value, bool):
        return math.isclose(dvc_value, float(ours_value), rel_tol=1e-12) or (
            math.isnan(dvc_value) and math.isnan(float(ours_value))
        )
    return ours_value == dvc_value


def assert_metrics_agree(changes: tuple[MetricChange, ...], theirs: Mapping[str, Mapping[str, Any]]) -> int:
    """Every metric DVC reports, cml-bot reports with the same old and new values; cml-bot's extra
    metrics are lists of numbers (DVC drops them; cml-bot keeps them as repeated values).
    Returns how many values were compared."""
    by_name = {c.name: c for c in changes}
    matched: set[str] = set()
    for path, keys in theirs.items():
        for key, values in keys.items():
            name = _our_name(set(by_name), path, key)
            matched.add(name)
            change = by_name[name]
            assert _same(change.base, values.get("old")), (name, change.base, values)
            assert _same(change.head, values.get("new")), (name, change.head, values)
    extra = [c for c in changes if c.name not in matched]
    assert all(isinstance(c.base, Samples) or isinstance(c.head, Samples) for c in extra), extra
    return len(matched)


def _param_value(value: object) -> object:
    """DVC shows a list param as Python's ``str(list)``; cml-bot as JSON: compare the lists."""
    if isinstance(value, str) and value.startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            return ast.literal_eval(value)
    return value


def assert_params_agree(changes: tuple[ParamChange, ...], theirs: Mapping[str, Mapping[str, Any]]) -> int:
    by_name = {c.name: c for c in changes}
    count = 0
    for path, keys in theirs.items():
        for key, values in keys.items():
            name = _our_name(set(by_name), path, key)
            change = by_name[name]
            assert _param_value(change.base) == _param_value(values.get("old")), (name, change.base, values)
            assert _param_value(change.head) == _param_value(values.get("new")), (name, change.head, values)
            count += 1
    assert len(by_name) == count, f"cml-bot shows params DVC does not: {set(by_name) - set(theirs)}"
    return count


def _built_series(evaluation: Evaluation, spec: PlotSpec) -> list[Any]:
    from cml_bot.plots.series import Revision, build_series
    from cml_bot.plots.tables import load_table

    base = evaluation.baseline.results
    revisions = []
    if base is not None:
        tables = {f: load_table(base.files[f], f, spec.header) for f in spec.files if f in base.files}
        revisions.append(Revision(evaluation.baseline.ref or "base", tables, is_base=True))
    head = {f: load_table(evaluation.head.files[f], f, spec.header) for f in spec.files if f in evaluation.head.files}
    revisions.append(Revision(HEAD, head, is_base=False))
    return build_series(spec, revisions)


def our_series(evaluation: Evaluation, spec: PlotSpec) -> dict[tuple[str, str, str], list[tuple[Any, Any]]]:
    """cml-bot's series of a plot: (revision, file, field) -> (x, y) pairs, as drawn."""
    found = {}
    for series in _built_series(evaluation, spec):
        found[(series.revision, series.file, series.field)] = list(
            zip(series.x.tolist(), series.y.tolist(), strict=True)
        )
    return found


def our_axis_labels(evaluation: Evaluation, spec: PlotSpec) -> tuple[str, str]:
    """The x and y axis labels cml-bot draws for a plot (DVC's ``x_label`` and ``y_label``)."""
    from cml_bot.plots.series import axis_labels

    return axis_labels(spec, _built_series(evaluation, spec))


def _number(value: object) -> object:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return value


def assert_plot_agrees(
    ours_points: Mapping[tuple[str, str, str], list[tuple[Any, Any]]],
    theirs: DvcPlot,
    revisions: Mapping[str, str],
    x_is_row: bool = False,
) -> int:
    """Every series DVC draws, cml-bot draws with the same points. ``revisions`` maps DVC's
    revision names to cml-bot's; DVC's file names are cut by their common folder, so a file
    matches by its end. With ``x_is_row`` DVC's x is the row number (its ``step``)."""
    count = 0
    for (rev, file, field), points in theirs.points.items():
        ours_rev = revisions[rev]
        keys = [k for k in ours_points if k[0] == ours_rev and k[2] == field and k[1].endswith(file)]
        assert len(keys) == 1, (rev, file, field, list(ours_points))
        mine = ours_points[keys[0]]
        if x_is_row:
            mine = [(i, y) for i, (_, y) in enumerate(mine)]
        assert [(_number(x), _number(y)) for x, y in mine] == [(_number(x), _number(y)) for x, y in points], (
            rev,
            file,
            field,
        )
        count += 1
    assert count == len(ours_points), f"cml-bot draws series DVC does not: {set(ours_points)}"
    return count
