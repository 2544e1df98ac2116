"""cml-bot.yaml -> a typed, validated :class:`Config`.

The schema is declared once, here, by the parsing functions below; every error names the file,
the key path (``plots[2].template``) and what was expected, and is raised as :class:`ConfigError`.
Where the repo has a ``dvc.yaml``, its ``metrics``, ``params`` and ``plots`` declarations are added.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from cml_bot.errors import ConfigError

CONFIG_FILE = "cml-bot.yaml"
DVC_FILE = "dvc.yaml"

PLOT_TEMPLATES = ("linear", "scatter", "bar", "confusion", "confusion_normalized", "image")
DIRECTIONS = ("higher", "lower")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPORT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class DataFile:
    """A file pinned by URL and sha256, placed at ``path`` (relative to the repo)."""

    path: str
    url: str
    sha256: str


@dataclass(frozen=True)
class DataConfig:
    files: tuple[DataFile, ...] = ()
    cache: str | None = None  # None: $CML_BOT_CACHE or ~/.cache/cml-bot
    label_column: str | None = None  # named label column for tabular data summaries


@dataclass(frozen=True)
class Step:
    """One pipeline command, run by the shell in the repo root."""

    name: str
    run: str
    timeout: float | None = None  # seconds


@dataclass(frozen=True)
class PlotSpec:
    """A plot, in DVC's terms: a data file with x/y fields and a template, or an image file."""

    path: str
    x: str | None = None
    y: tuple[str, ...] = ()
    template: str = "linear"
    title: str | None = None


@dataclass(frozen=True)
class Threshold:
    """Rules for metrics matching ``pattern`` (fnmatch glob on the flattened name)."""

    pattern: str
    direction: str | None = None  # None: guess from the name
    max_drop: float | None = None  # absolute worsening allowed
    max_drop_pct: float | None = None  # relative worsening allowed, in percent
    min: float | None = None
    max: float | None = None
    alpha: float | None = None  # one-sided significance of a drop; None: statistics.alpha


PREDICTION_TASKS = ("classification", "regression")


@dataclass(frozen=True)
class PredictionsConfig:
    """A per-example results file, written by both revisions (see docs/statistics.md).

    Columns not named are guessed from common names (``id``, ``label``/``y_true``/``actual``,
    ``prediction``/``y_pred``/``predicted``, ``proba_<class>``, ``score``, ``loss``)."""

    path: str
    id: str | None = None  # example id column; None: guessed, or the row number
    label: str | None = None  # true label, or the target of a regression
    prediction: str | None = None  # predicted label or value
    scores: tuple[str, ...] = ()  # probability columns, one per class, or one positive-class score column
    loss: str | None = None  # per-example loss column
    task: str | None = None  # "classification" | "regression"; None: guessed from the values
    metrics: tuple[tuple[str, str], ...] = ()  # (metric name, per-example metric) pairs set by the user


CORRECTIONS = ("bh", "none")


@dataclass(frozen=True)
class StatisticsConfig:
    alpha: float = 0.05  # one-sided, in the bad direction, for every gate without its own alpha
    correction: str = "bh"  # across gated metrics: Benjamini-Hochberg, or none
    resamples: int = 2000  # paired bootstrap resamples
    seed: int = 20_240_601  # the bootstrap's seed: the same inputs give the same intervals


@dataclass(frozen=True)
class Config:
    root: Path
    title: str = "cml-bot report"
    report_id: str = "default"
    baseline_branch: str = "main"
    baseline_file: str | None = None
    data_branch: str = "cml-bot-data"  # where CI records results on GitHub/GitLab
    trend: int = 10  # recorded base-branch commits in the trend plot; 0 turns it off
    data: DataConfig = field(default_factory=DataConfig)
    pipeline: tuple[Step, ...] = ()
    metrics: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    plots: tuple[PlotSpec, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    dvc: bool = False  # the repo is a DVC project (has dvc.yaml or .dvc/)
    predictions: PredictionsConfig | None = None
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)


_TOP_KEYS = (
    "title",
    "id",
    "baseline",
    "data",
    "pipeline",
    "metrics",
    "params",
    "plots",
    "thresholds",
    "predictions",
    "statistics",
)


class _Reader:
    """Typed access to parsed YAML that names ``file`` and the key path in every error."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, where: str, expected: str, got: object = None) -> ConfigError:
        found = "" if got is None else f", got {_describe(got)}"
        at = f" at {where}" if where else ""
        return ConfigError(f"{self.file}{at}: expected {expected}{found}")

    def mapping(self, value: object, where: str, allowed: tuple[str, ...] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, "a mapping", value)
        for key in value:
            if not isinstance(key, str):
                raise self.fail(where, "string keys", key)
            if allowed is not None and key not in allowed:
                raise ConfigError(
                    f"{self.file} at {_join(where, key)}: unknown key; expected one of {', '.join(allowed)}"
                )
        return value

    def text(self, value: object, where: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, what or "a non-empty string", value)
        if pattern is not None and not pattern.match(value):
            raise self.fail(where, what, value)
        return value

    def number(self, value: object, where: str, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, "a number", value)
        if value != value:  # NaN: every comparison with it is false, so a gate would never fire
            raise self.fail(where, "a number, not NaN", value)
        if positive and value <= 0:
            raise self.fail(where, "a number above 0", value)
        return float(value)

    def sequence(self, value: object, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, "a list", value)
        return value

    def relative_path(self, value: object, where: str) -> str:
        text = self.text(value, where, what="a path relative to the repo")
        path = PurePosixPath(text.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", text):
            raise self.fail(where, "a path inside the repo (no absolute path, no '..')", value)
        return str(path)


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    shown = repr(value)
    return f"{type(value).__name__} {shown[:60]}"


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def load_config(root: Path, config_path: Path | None = None) -> Config:
    """Read ``cml-bot.yaml`` (or ``config_path``) and ``dvc.yaml`` from ``root``.

    A missing ``cml-bot.yaml`` is allowed when the repo has a ``dvc.yaml``; with neither, the
    error says what to create.
    """
    root = root.resolve()
    path = config_path if config_path is not None else root / CONFIG_FILE
    dvc_path = root / DVC_FILE
    is_dvc = dvc_path.is_file() or (root / ".dvc").is_dir()
    if path.is_file():
        raw = _load_yaml(path, str(path if config_path is not None else CONFIG_FILE))
        config = parse_config(raw, root, str(path.name if config_path is None else path))
    elif config_path is not None:
        raise ConfigError(f"{config_path}: config file not found")
    elif dvc_path.is_file():
        config = Config(root=root)
    else:
        raise ConfigError(
            f"{CONFIG_FILE} not found in {root}; create one (see README, 'Configuration') or run in a DVC repo"
        )
    if dvc_path.is_file():
        config = _merge_dvc(config, _load_yaml(dvc_path, DVC_FILE))
    if is_dvc and not config.dvc:
        config = _replace(config, dvc=True)
    if any((root / spec.path).is_dir() for spec in config.plots):
        config = _replace(config, plots=expand_plot_folders(root, config.plots))
    return config


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")  # plotted with the image template
PLOT_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".yaml", ".yml", *IMAGE_SUFFIXES)


def expand_plot_folders(root: Path, plots: tuple[PlotSpec, ...]) -> tuple[PlotSpec, ...]:
    """A plot naming a folder (dvclive's ``plots/metrics``) stands for each data file in it, with
    the folder's options; files already plotted on their own are not drawn twice."""
    explicit = {spec.path for spec in plots if not (root / spec.path).is_dir()}
    expanded: list[PlotSpec] = []
    for spec in plots:
        folder = root / spec.path
        if not folder.is_dir():
            expanded.append(spec)
            continue
        for file in sorted(folder.rglob("*")):
            relative = file.relative_to(root).as_posix()
            if file.is_file() and file.suffix.lower() in PLOT_FILE_SUFFIXES and relative not in explicit:
                explicit.add(relative)
                template = "image" if file.suffix.lower() in IMAGE_SUFFIXES else spec.template
                title = f"{spec.title}: {file.stem}" if spec.title else relative
                expanded.append(PlotSpec(path=relative, x=spec.x, y=spec.y, template=template, title=title))
    return tuple(expanded)


def _replace(config: Config, **changes: Any) -> Config:
    from dataclasses import replace

    return replace(config, **changes)


def _load_yaml(path: Path, shown: str) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read ({exc.strerror})") from None
    try:
        # libyaml's loader when present: ~7x faster on large configs (warm pulls start by reading this).
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}:{yaml_error(exc)}") from None


def yaml_error(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as ``" line L, column C: problem"`` for a one-line error."""
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or "invalid YAML"
    return f"{where}: {problem}"


def parse_config(raw: object, root: Path, file: str = CONFIG_FILE) -> Config:
    """Validate parsed YAML into a Config. Pure: reads no file."""
    r = _Reader(file)
    if raw is None:
        raw = {}
    top = r.mapping(raw, "", _TOP_KEYS)
    title = r.text(top["title"], "title") if "title" in top else Config.title
    report_id = (
        r.text(
            str(top["id"]) if isinstance(top["id"], int) else top["id"],
            "id",
            _REPORT_ID,
            "an id of letters, digits, '.', '_' or '-' (at most 64)",
        )
        if "id" in top
        else Config.report_id
    )
    branch, baseline_file = Config.baseline_branch, None
    data_branch, trend = Config.data_branch, Config.trend
    if "baseline" in top:
        baseline = r.mapping(top["baseline"], "baseline", ("branch", "file", "data_branch", "trend"))
        if "branch" in baseline:
            branch = r.text(baseline["branch"], "baseline.branch")
        if "file" in baseline:
            baseline_file = r.relative_path(baseline["file"], "baseline.file")
        if "data_branch" in baseline:
            data_branch = r.text(baseline["data_branch"], "baseline.data_branch")
        if "trend" in baseline:
            value = baseline["trend"]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise r.fail("baseline.trend", "a whole number of commits from 0 to 100", value)
            trend = value
    return Config(
        root=root,
        title=title,
        report_id=report_id,
        baseline_branch=branch,
        baseline_file=baseline_file,
        data_branch=data_branch,
        trend=trend,
        data=_parse_data(r, top.get("data")),
        pipeline=_parse_pipeline(r, top.get("pipeline")),
        metrics=_parse_paths(r, top.get("metrics"), "metrics"),
        params=_parse_paths(r, top.get("params"), "params"),
        plots=tuple(_parse_plot(r, item, f"plots[{i}]") for i, item in enumerate(_list(r, top, "plots"))),
        thresholds=_parse_thresholds(r, top.get("thresholds")),
        predictions=_parse_predictions(r, top.get("predictions")),
        statistics=_parse_statistics(r, top.get("statistics")),
    )


def _list(r: _Reader, top: Mapping[str, Any], key: str) -> list[Any]:
    value = top.get(key)
    return [] if value is None else r.sequence(value, key)


def _parse_data(r: _Reader, value: object) -> DataConfig:
    if value is None:
        return DataConfig()
    if isinstance(value, list):  # shorthand: just the list of files
        value = {"files": value}
    data = r.mapping(value, "data", ("files", "cache", "label_column"))
    files = []
    seen: set[str] = set()
    for i, item in enumerate(r.sequence(data.get("files") or [], "data.files")):
        where = f"data.files[{i}]"
        entry = r.mapping(item, where, ("path", "url", "sha256"))
        for key in ("path", "url", "sha256"):
            if key not in entry:
                raise r.fail(_join(where, key), "a value (path, url and sha256 are required)")
        path = r.relative_path(entry["path"], _join(where, "path"))
        if path in seen:
            raise r.fail(_join(where, "path"), "a path listed once", path)
        seen.add(path)
        url = r.text(entry["url"], _join(where, "url"))
        sha = r.text(str(entry["sha256"]).lower(), _join(where, "sha256"), _SHA256, "64 hex digits (sha256)")
        files.append(DataFile(path=path, url=url, sha256=sha))
    cache = r.text(data["cache"], "data.cache") if "cache" in data else None
    label = r.text(data["label_column"], "data.label_column") if "label_column" in data else None
    return DataConfig(files=tuple(files), cache=cache, label_column=label)


def _parse_pipeline(r: _Reader, value: object) -> tuple[Step, ...]:
    if value is None:
        return ()
    steps = []
    names: set[str] = set()
    for i, item in enumerate(r.sequence(value, "pipeline")):
        where = f"pipeline[{i}]"
        if isinstance(item, str):
            item = {"run": item}
        entry = r.mapping(item, where, ("name", "run", "timeout"))
        if "run" not in entry:
            raise r.fail(_join(where, "run"), "a shell command")
        run = r.text(entry["run"], _join(where, "run"), what="a shell command")
        name = r.text(entry["name"], _join(where, "name")) if "name" in entry else f"step {i + 1}"
        if name in names:
            raise r.fail(_join(where, "name"), "a unique step name", name)
        names.add(name)
        timeout = r.number(entry["timeout"], _join(where, "timeout"), positive=True) if "timeout" in entry else None
        steps.append(Step(name=name, run=run, timeout=timeout))
    return tuple(steps)


def _parse_paths(r: _Reader, value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    return tuple(r.relative_path(item, f"{key}[{i}]") for i, item in enumerate(r.sequence(value, key)))


def _parse_plot(r: _Reader, item: object, where: str) -> PlotSpec:
    if isinstance(item, str):
        item = {"path": item}
    entry = r.mapping(item, where, ("path", "x", "y", "template", "title"))
    if "path" not in entry:
        raise r.fail(_join(where, "path"), "the plot's data or image file")
    path = r.relative_path(entry["path"], _join(where, "path"))
    is_image = path.lower().endswith(IMAGE_SUFFIXES)
    default_template = "image" if is_image else "linear"
    template = entry.get("template", default_template)
    if template not in PLOT_TEMPLATES:
        raise r.fail(_join(where, "template"), f"one of {', '.join(PLOT_TEMPLATES)}", template)
    x = r.text(entry["x"], _join(where, "x")) if "x" in entry else None
    y_raw = entry.get("y")
    if y_raw is None:
        y: tuple[str, ...] = ()
    elif isinstance(y_raw, list):
        y = tuple(r.text(v, f"{_join(where, 'y')}[{i}]") for i, v in enumerate(y_raw))
    else:
        y = (r.text(y_raw, _join(where, "y")),)
    title = r.text(entry["title"], _join(where, "title")) if "title" in entry else None
    return PlotSpec(path=path, x=x, y=y, template=template, title=title)


_PCT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*%\s*$")


def _parse_thresholds(r: _Reader, value: object) -> tuple[Threshold, ...]:
    if value is None:
        return ()
    rules = []
    for pattern, spec in r.mapping(value, "thresholds").items():
        where = f"thresholds.{pattern}"
        if isinstance(spec, str) and spec in DIRECTIONS:
            spec = {"direction": spec}
        entry = r.mapping(spec, where, ("direction", "max_drop", "min", "max", "alpha"))
        direction = entry.get("direction")
        if direction is not None and direction not in DIRECTIONS:
            raise r.fail(_join(where, "direction"), "higher or lower", direction)
        max_drop = max_drop_pct = None
        if "max_drop" in entry:
            drop = entry["max_drop"]
            match = _PCT.match(drop) if isinstance(drop, str) else None
            if match:
                max_drop_pct = float(match.group(1))
            else:
                if isinstance(drop, str):
                    raise r.fail(_join(where, "max_drop"), "a number or a percentage such as '2%'", drop)
                max_drop = r.number(drop, _join(where, "max_drop"))
                if max_drop < 0:
                    raise r.fail(_join(where, "max_drop"), "a number >= 0", drop)
        low = r.number(entry["min"], _join(where, "min")) if "min" in entry else None
        high = r.number(entry["max"], _join(where, "max")) if "max" in entry else None
        alpha = _alpha(r, entry["alpha"], _join(where, "alpha")) if "alpha" in entry else None
        rules.append(
            Threshold(
                pattern=str(pattern),
                direction=direction,
                max_drop=max_drop,
                max_drop_pct=max_drop_pct,
                min=low,
                max=high,
                alpha=alpha,
            )
        )
    return tuple(rules)


def _alpha(r: _Reader, value: object, where: str) -> float:
    alpha = r.number(value, where)
    if not 0 < alpha < 0.5:
        raise r.fail(where, "a significance level between 0 and 0.5 (e.g. 0.05)", value)
    return alpha


_PREDICTION_KEYS = ("path", "id", "label", "prediction", "scores", "loss", "task", "metrics")


def _parse_predictions(r: _Reader, value: object) -> PredictionsConfig | None:
    """``predictions: FILE`` or a mapping with ``path`` and the columns (see PredictionsConfig)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = {"path": value}
    entry = r.mapping(value, "predictions", _PREDICTION_KEYS)
    if "path" not in entry:
        raise r.fail("predictions.path", "the per-example results file")
    path = r.relative_path(entry["path"], "predictions.path")
    columns = {
        key: r.text(str(entry[key]) if isinstance(entry[key], int) else entry[key], f"predictions.{key}")
        for key in ("id", "label", "prediction", "loss")
        if key in entry
    }
    scores: tuple[str, ...] = ()
    if "scores" in entry:
        raw = entry["scores"]
        items = raw if isinstance(raw, list) else [raw]
        scores = tuple(
            r.text(str(v) if isinstance(v, int) else v, f"predictions.scores[{i}]") for i, v in enumerate(items)
        )
        if not scores:
            raise r.fail("predictions.scores", "a column, a list of columns or a pattern such as 'proba_*'", raw)
    task = entry.get("task")
    if task is not None and task not in PREDICTION_TASKS:
        raise r.fail("predictions.task", " or ".join(PREDICTION_TASKS), task)
    metrics: list[tuple[str, str]] = []
    if "metrics" in entry:
        from cml_bot.stats.kinds import KIND_NAMES

        for name, kind in r.mapping(entry["metrics"], "predictions.metrics").items():
            if kind not in KIND_NAMES:
                raise r.fail(f"predictions.metrics.{name}", f"one of {', '.join(KIND_NAMES)}", kind)
            metrics.append((str(name), str(kind)))
    return PredictionsConfig(path=path, scores=scores, task=task, metrics=tuple(metrics), **columns)


def _parse_statistics(r: _Reader, value: object) -> StatisticsConfig:
    if value is None:
        return StatisticsConfig()
    entry = r.mapping(value, "statistics", ("alpha", "correction", "resamples", "seed"))
    defaults = StatisticsConfig()
    alpha = _alpha(r, entry["alpha"], "statistics.alpha") if "alpha" in entry else defaults.alpha
    correction = entry.get("correction", defaults.correction)
    if correction not in CORRECTIONS:
        raise r.fail("statistics.correction", "bh (Benjamini-Hochberg) or none", correction)
    resamples = entry.get("resamples", defaults.resamples)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or not 2000 <= resamples <= 100_000:
        raise r.fail("statistics.resamples", "a whole number from 2000 to 100000", resamples)
    seed = entry.get("seed", defaults.seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise r.fail("statistics.seed", "a whole number >= 0", seed)
    return StatisticsConfig(alpha=alpha, correction=correction, resamples=resamples, seed=seed)


def _merge_dvc(config: Config, raw: object) -> Config:
    """Add dvc.yaml's top-level and per-stage metrics, params and plots not already declared."""
    r = _Reader(DVC_FILE)
    top = r.mapping(raw if raw is not None else {}, "")
    metrics = list(config.metrics)
    params = list(config.params)
    plots = list(config.plots)

    def add_metric(path: str) -> None:
        if path not in metrics:
            metrics.append(path)

    for i, item in enumerate(_list(r, top, "metrics")):
        add_metric(r.relative_path(item, f"metrics[{i}]"))
    for i, item in enumerate(_list(r, top, "params")):
        path = r.relative_path(item, f"params[{i}]")
        if path not in params:
            params.append(path)
    # A file plotted in cml-bot.yaml wins over dvc.yaml; dvc.yaml may plot one file several ways.
    declared = {p.path for p in config.plots}

    def add_plot(spec: PlotSpec) -> None:
        if spec.path not in declared and spec not in plots:
            plots.append(spec)

    for i, item in enumerate(_list(r, top, "plots")):
        for spec in _dvc_plot(r, item, f"plots[{i}]"):
            add_plot(spec)
    stages = top.get("stages") or {}
    for name, stage in r.mapping(stages, "stages").items():
        stage = r.mapping(stage, f"stages.{name}")
        for i, out in enumerate(stage.get("metrics") or []):
            add_metric(_dvc_out_path(r, out, f"stages.{name}.metrics[{i}]"))
        for i, out in enumerate(stage.get("plots") or []):
            for spec in _dvc_plot(r, out, f"stages.{name}.plots[{i}]"):
                add_plot(spec)
        for i, param in enumerate(stage.get("params") or []):
            # `- params.yaml:` followed by keys, or a bare key name from params.yaml
            if isinstance(param, Mapping):
                for file in param:
                    if str(file) not in params:
                        params.append(r.relative_path(str(file), f"stages.{name}.params[{i}]"))
            elif "params.yaml" not in params and (config.root / "params.yaml").is_file():
                params.append("params.yaml")
    return _replace(config, metrics=tuple(metrics), params=tuple(params), plots=tuple(plots))


def _dvc_out_path(r: _Reader, out: object, where: str) -> str:
    if isinstance(out, Mapping):
        if len(out) != 1:
            raise r.fail(where, "a path or a one-key mapping {path: options}", out)
        out = next(iter(out))
    return r.relative_path(out, where)


def _dvc_plot(r: _Reader, item: object, where: str) -> list[PlotSpec]:
    """DVC plot syntax: ``path``, ``{path: {x, y, template, title}}`` or ``{id: {x, y: {file: field}}}``."""
    if isinstance(item, str):
        return [_parse_plot(r, {"path": item}, where)]
    entry = r.mapping(item, where)
    specs = []
    for key, options in entry.items():
        options = options if isinstance(options, Mapping) else {}
        template = _dvc_template(options.get("template"))
        x = options.get("x")
        y = options.get("y")
        title = options.get("title")
        if isinstance(y, Mapping):  # {file: field or [fields]}
            for file, fields in y.items():
                fields_list = fields if isinstance(fields, list) else [fields]
                x_field = x.get(file) if isinstance(x, Mapping) else x
                specs.append(
                    _parse_plot(
                        r,
                        {
                            k: v
                            for k, v in {
                                "path": file,
                                "x": x_field,
                                "y": fields_list,
                                "template": template,
                                "title": title or key,
                            }.items()
                            if v is not None
                        },
                        where,
                    )
                )
        else:
            specs.append(
                _parse_plot(
                    r,
                    {
                        k: v
                        for k, v in {
                            "path": key,
                            "x": x if isinstance(x, str) else None,
                            "y": y,
                            "template": template,
                            "title": title,
                        }.items()
                        if v is not None
                    },
                    where,
                )
            )
    return specs


def _dvc_template(name: object) -> str | None:
    """Map DVC's template names to ours; unknown ones fall back to our default."""
    mapping = {
        "linear": "linear",
        "simple": "linear",
        "smooth": "linear",
        "scatter": "scatter",
        "scatter_jitter": "scatter",
        "bar_horizontal": "bar",
        "bar_horizontal_sorted": "bar",
        "confusion": "confusion",
        "confusion_normalized": "confusion_normalized",
    }
    return mapping.get(name) if isinstance(name, str) else None
