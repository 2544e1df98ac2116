"""Metrics from where teams already log them: an MLflow tracking server, TensorBoard event files.

A source turns one revision's runs into the same :class:`~cml_bot.results.RunResults` the file
readers produce, so diff, report and records work unchanged:

- metrics: one value per name (several MLflow runs of one commit: :class:`~cml_bot.metrics.Samples`,
  which feed the noise rule);
- params;
- files: each step history as a CSV plot file (``step`` and one column per run) under
  :data:`HISTORY_PREFIXES`, drawn by :func:`history_plot_specs` with base and head overlaid;
  MLflow artifacts named in the config under ``mlflow:artifacts/``;
- facts: ``link:<label>`` -> URL of a run in the tracking server's UI, shown in the report's facts.

:func:`add_sources` is the one hook :mod:`cml_bot.app` calls. The clients (``mlflow``, the
``tensorboard`` protobufs) are imported only when a source is configured: both are optional extras.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cml_bot.config import Config, PlotSpec
from cml_bot.errors import ConfigError
from cml_bot.plots.jobs import X_DEFAULTS
from cml_bot.results import RunResults

if TYPE_CHECKING:
    from cml_bot.baseline import Baseline
    from cml_bot.git import Git

__all__ = [
    "HISTORY_PREFIXES",
    "LINK_FACT",
    "MLFLOW_HISTORY",
    "TENSORBOARD_HISTORY",
    "SourceResults",
    "add_sources",
    "envelope",
    "history_csv",
    "history_plot_specs",
    "run_links",
]

MLFLOW_HISTORY = "mlflow:history/"  # path prefix of MLflow step histories among a run's files
TENSORBOARD_HISTORY = "tensorboard:history/"  # ... and of TensorBoard's
HISTORY_PREFIXES = {MLFLOW_HISTORY: "MLflow", TENSORBOARD_HISTORY: "TensorBoard"}
LINK_FACT = "link:"  # RunResults.facts key prefix: "link:<label>" -> URL
HISTORY_BUCKETS = 500  # a stored step history keeps at most ~1,000 points (min and max per bucket)
MAX_LINKS = 10  # run links per side in the report's facts
MAX_HISTORY_PLOTS = 30  # step plots per source: more would bury the report (and take long to draw)


@dataclass(frozen=True)
class SourceResults:
    """One revision's results from a source, and what the reader of the report should know."""

    results: RunResults
    notes: tuple[str, ...] = ()
    shards: tuple[tuple[str, RunResults], ...] = ()  # one per run, when the config asks for shards


@dataclass(frozen=True)
class Added:
    """What :func:`add_sources` changed: the head and baseline with the sources' results in."""

    head: RunResults
    baseline: Baseline
    notes: tuple[str, ...] = ()
    shards: tuple[tuple[str, RunResults], ...] = ()


def add_sources(config: Config, git: Git, env: Mapping[str, str], head: RunResults, baseline: Baseline) -> Added:
    """Add the configured sources' metrics to this change's results and to the baseline.

    TensorBoard: this checkout's logdir; its base side arrived with the baseline already (a record,
    or the logdir as committed: :func:`cml_bot.baseline.committed_results`). MLflow: the runs of
    the head commit, and the runs of the merge-base or its nearest ancestor with runs.
    """
    notes: list[str] = []
    shards: tuple[tuple[str, RunResults], ...] = ()
    if config.tensorboard is not None:
        from cml_bot.sources.tensorboard import read_logdir

        scalars = read_logdir(config.tensorboard, config.root)
        head = merged(head, scalars.results)
        notes += scalars.notes
    if config.mlflow is not None:
        from cml_bot.sources.mlflow import mlflow_results

        found = mlflow_results(config.mlflow, env, git, head.sha, baseline)
        head = merged(head, found.head.results)
        notes += found.head.notes
        shards = tuple((name, merged(head, run)) for name, run in found.head.shards)
        baseline = found.baseline
        notes += found.notes
    return Added(head, baseline, tuple(notes), shards)


def merged(results: RunResults, extra: RunResults) -> RunResults:
    """``results`` with ``extra``'s values added; a name in both takes ``extra``'s value (a source
    is the source of truth for what it logged, over an older record of it)."""
    return replace(
        results,
        metrics={**results.metrics, **extra.metrics},
        params={**results.params, **extra.params},
        files={**results.files, **extra.files},
        facts={**results.facts, **extra.facts},
    )


# --- step histories -----------------------------------------------------------------------------

Point = tuple[float, float]  # (step, value)


def envelope(points: Sequence[Point], buckets: int = HISTORY_BUCKETS) -> list[Point]:
    """At most ``2 * buckets`` points that keep the shape of a long series: the lowest and highest
    value of each run of consecutive points, plus both ends (as :func:`cml_bot.plots.decimate`)."""
    if len(points) <= 2 * buckets:
        return list(points)
    size = -(-len(points) // buckets)
    kept: list[Point] = [points[0]]
    for start in range(0, len(points), size):
        chunk = [p for p in points[start : start + size] if not math.isnan(p[1])]
        if not chunk:
            continue
        low = min(chunk, key=lambda p: p[1])
        high = max(chunk, key=lambda p: p[1])
        kept.extend(sorted({low, high}, key=lambda p: p[0]) if low != high else [low])
    kept.append(points[-1])
    return _unique_by_order(kept)


def _unique_by_order(points: Iterable[Point]) -> list[Point]:
    seen: set[Point] = set()
    out = []
    for point in points:
        if point not in seen:
            seen.add(point)
            out.append(point)
    return out


def history_csv(series: Mapping[str, Sequence[Point]], metric: str) -> bytes:
    """Step histories as one plot file: ``step``, then one column per series (a run), outer-joined
    on the step. One series is named after the metric (the plot's y label)."""
    if len(series) == 1:
        name = metric if metric.lower() not in X_DEFAULTS else "value"  # the plot reader takes those as x
        series = {name: next(iter(series.values()))}
    columns = list(series)
    rows: dict[float, dict[str, float]] = {}
    for column, points in series.items():
        for step, value in points:
            rows.setdefault(step, {})[column] = value
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *columns])
    for step in sorted(rows):
        values = rows[step]
        writer.writerow([_number(step), *(_number(values[c]) if c in values else "" for c in columns)])
    return out.getvalue().encode("utf-8")


def _number(value: float) -> str:
    """Ten significant digits: more than a plot shows, and float32 scalars round-trip."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


def history_path(prefix: str, metric: str) -> str:
    return f"{prefix}{metric}.csv"


def history_plot_specs(files: Mapping[str, bytes]) -> tuple[PlotSpec, ...]:
    """A step plot for each step history in ``files`` (base and head are overlaid by the renderer);
    at most :data:`MAX_HISTORY_PLOTS` per source, also for results from a bundle or a record."""
    specs = []
    for prefix, label in HISTORY_PREFIXES.items():
        paths = sorted(path for path in files if path.startswith(prefix) and path.endswith(".csv"))
        for path in paths[:MAX_HISTORY_PLOTS]:
            metric = path[len(prefix) : -len(".csv")]
            specs.append(PlotSpec(path=path, x="step", template="linear", title=f"{metric} ({label})"))
    return tuple(specs)


def plotted(history: bool | tuple[str, ...], names: Sequence[str], source: str) -> tuple[list[str], tuple[str, ...]]:
    """The metric names whose step histories are kept (``history:`` true, false or patterns), at most
    :data:`MAX_HISTORY_PLOTS`, and a note when some were left out."""
    if isinstance(history, bool):
        chosen = list(names) if history else []
    else:
        chosen = [name for name in names if any(fnmatch.fnmatchcase(name, pattern) for pattern in history)]
    if len(chosen) <= MAX_HISTORY_PLOTS:
        return chosen, ()
    note = (
        f"{source}: step plots for the first {MAX_HISTORY_PLOTS} of {len(chosen)} metrics (by name); "
        f"choose them with {source.lower()}.history patterns."
    )
    return chosen[:MAX_HISTORY_PLOTS], (note,)


# --- links to the runs ----------------------------------------------------------------------------


def run_links(head: RunResults, base: RunResults | None, base_label: str) -> tuple[tuple[str, str], ...]:
    """(label, URL) rows for the report's facts: the runs behind this change's and the baseline's
    metrics. URLs are untrusted text (a bundle or a record may carry them): only http(s) ones."""
    links: list[tuple[str, str]] = []
    for results, side in ((head, "this change"), (base, base_label)):
        if results is None:
            continue
        found = [
            (f"{key[len(LINK_FACT) :]} ({side})", url)
            for key, url in results.facts.items()
            if key.startswith(LINK_FACT) and url.startswith(("https://", "http://"))
        ]
        links += found[:MAX_LINKS]
    return tuple(links)


def missing_extra(extra: str, module: str) -> ConfigError:
    return ConfigError(
        f"{extra}: configured in cml-bot.yaml but {module} is not installed; pip install 'cml-bot[{extra}]'"
    )
