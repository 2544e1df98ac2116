"""cml-bot.yaml -> a typed, validated :class:`Config`.

The schema is declared once, here, by the parsing functions below; every error names the file,
the key path (``plots[2].template``) and what was expected, and is raised as :class:`ConfigError`.
Where the repo has a ``dvc.yaml``, its ``metrics``, ``params`` and ``plots`` declarations are added.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from cml_bot.errors import ConfigError
from cml_bot.files import DuplicateKeyError, UniqueKeyFastLoader, read_limited
from cml_bot.metrics import MAX_FILE_BYTES, MAX_NAMES
from cml_bot.secrets import redact_url

CONFIG_FILE = "cml-bot.yaml"
DVC_FILE = "dvc.yaml"

PLOT_TEMPLATES = ("linear", "scatter", "bar", "confusion", "confusion_normalized", "image")
DIRECTIONS = ("higher", "lower")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPORT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


CONFIG_MAX_BYTES = 10_000_000  # cml-bot.yaml and dvc.yaml
URL_SCHEMES = ("http", "https", "file", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "hf", "ssh", "sftp")


@dataclass(frozen=True)
class DataFile:
    """A file pinned by URL, sha256 and size (bytes; None in entries written before sizes were
    recorded), placed at ``path`` (relative to the repo)."""

    path: str
    url: str
    sha256: str
    size: int | None = None


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


REDUCTIONS = ("last", "min", "max")
RUN_MODES = ("samples", "shards")


@dataclass(frozen=True)
class MlflowSource:
    """Metrics of the runs logged to an MLflow tracking server for a commit (``mlflow:``)."""

    experiment: str
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI
    filter: str | None = None  # more of MLflow's search syntax, ANDed with the commit
    run_name: str | None = None
    runs: str = "samples"  # several matching runs: repeated values, or one shard each
    metrics: tuple[str, ...] = ()  # fnmatch globs; empty: all
    history: bool | tuple[str, ...] = True  # fetch step histories (all, none, or these globs) and draw them
    artifacts: tuple[PlotSpec, ...] = ()  # logged files drawn as plots (paths under ARTIFACT_PREFIX)
    run_url: str | None = None  # link template; None: the MLflow UI's run page


@dataclass(frozen=True)
class TensorBoardSource:
    """Scalars from TensorBoard event files under ``logdir`` (``tensorboard:``)."""

    logdir: str
    reduce: tuple[tuple[str, str], ...] = ()  # (tag glob, last|min|max); first match wins, default last
    tags: tuple[str, ...] = ()  # fnmatch globs on the metric name; empty: all
    history: bool | tuple[str, ...] = True  # step plots: all, none, or these globs


MLFLOW_ARTIFACT_PREFIX = "mlflow:artifacts/"  # plot paths of MLflow artifacts; no repo path has a ':' like this


@dataclass(frozen=True)
class Limits:
    """Bounds on what a pull request's files may make cml-bot read (``limits:`` in cml-bot.yaml)."""

    file_bytes: int = MAX_FILE_BYTES  # one metrics, params or plot file
    names: int = MAX_NAMES  # names and values from metrics and params files (aliases, rows counted)


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
    limits: Limits = field(default_factory=Limits)
    mlflow: MlflowSource | None = None
    tensorboard: TensorBoardSource | None = None


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
    "limits",
    "mlflow",
    "tensorboard",
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

    def whole_number(self, value: object, where: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(where, f"a whole number from {low:,} to {high:,}", value)
        return value


def in_git_folder(path: str) -> bool:
    """True when ``path`` (relative) is inside a ``.git`` folder, where no data may be placed."""
    return any(part.lower() == ".git" for part in PurePosixPath(path.replace("\\", "/")).parts)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a data source (one line, userinfo hidden), or None when it can."""
    import urllib.parse

    if any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "contains control characters"
    if re.match(r"^[A-Za-z]:[\\/]", url) or ("://" not in url and not url.lower().startswith("file:")):
        return None  # a plain path
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        return f"has an unsupported scheme {scheme!r} (expected one of {', '.join(URL_SCHEMES)})"
    if scheme in ("http", "https") and not parts.hostname:
        return "has no host"
    if port == 0:
        return "has port 0"
    return None


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
    if path.exists():
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
    if dvc_path.exists():
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
    return replace(config, **changes)


def _load_yaml(path: Path, shown: str) -> object:
    data = read_limited(path, CONFIG_MAX_BYTES, shown, error=ConfigError)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not UTF-8 text") from None
    return load_config_text(text, shown)


def load_config_text(text: str, shown: str) -> object:
    """Parse the YAML of a config file; a syntax error or a repeated key is one ConfigError."""
    try:
        # libyaml's loader when present: ~7x faster on large configs (warm pulls start by reading this).
        return yaml.load(text, Loader=UniqueKeyFastLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}:{yaml_error(exc)}") from None
    except DuplicateKeyError as exc:
        raise ConfigError(f"{shown}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{shown}: nested too deeply") from None


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
    mlflow = _parse_mlflow(r, top.get("mlflow"))
    plots = tuple(_parse_plot(r, item, f"plots[{i}]") for i, item in enumerate(_list(r, top, "plots")))
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
        plots=plots + (mlflow.artifacts if mlflow else ()),
        thresholds=_parse_thresholds(r, top.get("thresholds")),
        limits=_parse_limits(r, top.get("limits")),
        mlflow=mlflow,
        tensorboard=_parse_tensorboard(r, top.get("tensorboard")),
    )


def _parse_limits(r: _Reader, value: object) -> Limits:
    if value is None:
        return Limits()
    entry = r.mapping(value, "limits", ("file_mb", "names"))
    file_bytes, names = Limits.file_bytes, Limits.names
    if "file_mb" in entry:
        mb = r.number(entry["file_mb"], "limits.file_mb", positive=True)
        if mb > 100_000:
            raise r.fail("limits.file_mb", "a number of MB up to 100,000", entry["file_mb"])
        file_bytes = int(mb * 1_000_000)
    if "names" in entry:
        names = r.whole_number(entry["names"], "limits.names", 1, 100_000_000)
    return Limits(file_bytes=file_bytes, names=names)


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
        entry = r.mapping(item, where, ("path", "url", "sha256", "size"))
        for key in ("path", "url", "sha256"):
            if key not in entry:
                raise r.fail(_join(where, key), "a value (path, url and sha256 are required)")
        path = r.relative_path(entry["path"], _join(where, "path"))
        if in_git_folder(path):
            raise ConfigError(f"{r.file} at {_join(where, 'path')}: data may not be placed inside .git/")
        if path in seen:
            raise r.fail(_join(where, "path"), "a path listed once", path)
        seen.add(path)
        url = entry["url"]
        if not isinstance(url, str) or not url.strip():
            raise r.fail(_join(where, "url"), "a URL or a path", url)
        problem = url_problem(url)
        if problem is not None:
            raise ConfigError(f"{r.file} at {_join(where, 'url')}: {redact_url(url)[:300]!r} {problem}")
        sha = r.text(str(entry["sha256"]).lower(), _join(where, "sha256"), _SHA256, "64 hex digits (sha256)")
        size = r.whole_number(entry["size"], _join(where, "size"), 0, 1 << 50) if "size" in entry else None
        files.append(DataFile(path=path, url=url, sha256=sha, size=size))
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


def _globs(r: _Reader, value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    return tuple(r.text(item, f"{where}[{i}]") for i, item in enumerate(r.sequence(value, where)))


def _flag(r: _Reader, value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise r.fail(where, "true or false", value)
    return value


def _history(r: _Reader, value: object, where: str) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str | list):
        return _globs(r, value, where)
    raise r.fail(where, "true, false or a list of metric name patterns", value)


def _parse_mlflow(r: _Reader, value: object) -> MlflowSource | None:
    if value is None:
        return None
    keys = ("experiment", "tracking_uri", "filter", "run_name", "runs", "metrics", "history", "artifacts", "run_url")
    entry = r.mapping(value, "mlflow", keys)
    if "experiment" not in entry:
        raise r.fail("mlflow.experiment", "the name of the MLflow experiment the runs are logged to")
    experiment = r.text(
        str(entry["experiment"]) if isinstance(entry["experiment"], int) else entry["experiment"], "mlflow.experiment"
    )
    uri = r.text(entry["tracking_uri"], "mlflow.tracking_uri") if "tracking_uri" in entry else None
    if uri is not None and not re.match(r"^(https?|databricks)(://|$)", uri):
        raise r.fail("mlflow.tracking_uri", "an http(s):// URL or databricks", uri)
    runs = entry.get("runs", "samples")
    if runs not in RUN_MODES:
        raise r.fail("mlflow.runs", f"one of {', '.join(RUN_MODES)}", runs)
    run_url = r.text(entry["run_url"], "mlflow.run_url") if "run_url" in entry else None
    if run_url is not None and not run_url.startswith(("https://", "http://", "{tracking_uri}")):
        raise r.fail(
            "mlflow.run_url",
            "an http(s):// URL template (placeholders {tracking_uri}, {experiment_id}, {run_id})",
            run_url,
        )
    artifacts = []
    for i, item in enumerate(_list(r, entry, "artifacts")):
        where = f"mlflow.artifacts[{i}]"
        spec = _parse_plot(r, {"path": item} if isinstance(item, str) else item, where)
        title = spec.title or f"{spec.path} (MLflow artifact)"
        artifacts.append(replace(spec, path=MLFLOW_ARTIFACT_PREFIX + spec.path, title=title))
    return MlflowSource(
        experiment=experiment,
        tracking_uri=uri,
        filter=r.text(entry["filter"], "mlflow.filter") if "filter" in entry else None,
        run_name=r.text(entry["run_name"], "mlflow.run_name") if "run_name" in entry else None,
        runs=runs,
        metrics=_globs(r, entry["metrics"], "mlflow.metrics") if "metrics" in entry else (),
        history=_history(r, entry["history"], "mlflow.history") if "history" in entry else True,
        artifacts=tuple(artifacts),
        run_url=run_url,
    )


def _parse_tensorboard(r: _Reader, value: object) -> TensorBoardSource | None:
    if value is None:
        return None
    if isinstance(value, str):  # shorthand: the logdir
        value = {"logdir": value}
    entry = r.mapping(value, "tensorboard", ("logdir", "reduce", "tags", "history"))
    if "logdir" not in entry:
        raise r.fail("tensorboard.logdir", "the folder of the event files (with run subfolders)")
    reduce = []
    for pattern, how in r.mapping(entry.get("reduce") or {}, "tensorboard.reduce").items():
        if how not in REDUCTIONS:
            raise r.fail(f"tensorboard.reduce.{pattern}", f"one of {', '.join(REDUCTIONS)}", how)
        reduce.append((str(pattern), str(how)))
    return TensorBoardSource(
        logdir=r.relative_path(entry["logdir"], "tensorboard.logdir"),
        reduce=tuple(reduce),
        tags=_globs(r, entry["tags"], "tensorboard.tags") if "tags" in entry else (),
        history=_history(r, entry["history"], "tensorboard.history") if "history" in entry else True,
    )


_PCT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*%\s*$")


def _parse_thresholds(r: _Reader, value: object) -> tuple[Threshold, ...]:
    if value is None:
        return ()
    rules = []
    for pattern, spec in r.mapping(value, "thresholds").items():
        where = f"thresholds.{pattern}"
        if isinstance(spec, str) and spec in DIRECTIONS:
            spec = {"direction": spec}
        entry = r.mapping(spec, where, ("direction", "max_drop", "min", "max"))
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
        rules.append(
            Threshold(
                pattern=str(pattern),
                direction=direction,
                max_drop=max_drop,
                max_drop_pct=max_drop_pct,
                min=low,
                max=high,
            )
        )
    return tuple(rules)


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
    stages = top.get("stages")
    for name, stage in r.mapping({} if stages is None else stages, "stages").items():
        where = f"stages.{name}"
        stage = r.mapping({} if stage is None else stage, where)
        for i, out in enumerate(_sequence(r, stage, "metrics", where)):
            add_metric(_dvc_out_path(r, out, f"{where}.metrics[{i}]"))
        for i, out in enumerate(_sequence(r, stage, "plots", where)):
            for spec in _dvc_plot(r, out, f"{where}.plots[{i}]"):
                add_plot(spec)
        for i, param in enumerate(_sequence(r, stage, "params", where)):
            # `- params.yaml:` followed by keys, or a bare key name from params.yaml
            at = f"{where}.params[{i}]"
            if isinstance(param, Mapping):
                for file, keys in r.mapping(param, at).items():
                    if keys is not None and not isinstance(keys, list):
                        raise r.fail(_join(at, file), "a list of param names", keys)
                    path = r.relative_path(file, at)
                    if path not in params:
                        params.append(path)
            elif not isinstance(param, str):
                raise r.fail(at, "a param name or {file: [names]}", param)
            elif "params.yaml" not in params and (config.root / "params.yaml").is_file():
                params.append("params.yaml")
    return _replace(config, metrics=tuple(metrics), params=tuple(params), plots=tuple(plots))


def _sequence(r: _Reader, mapping: Mapping[str, Any], key: str, where: str) -> list[Any]:
    """``mapping[key]`` as a list (absent or null: empty), else a ConfigError naming ``where.key``."""
    value = mapping.get(key)
    return [] if value is None else r.sequence(value, _join(where, key))


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
        at = _join(where, key)
        options = r.mapping({} if options is None else options, at)
        if options.get("template") is not None and not isinstance(options.get("template"), str):
            raise r.fail(_join(at, "template"), "a template name", options.get("template"))
        template = _dvc_template(options.get("template"))
        x = options.get("x")
        y = options.get("y")
        title = options.get("title")
        if x is not None and not isinstance(x, str):
            x = r.mapping(x, _join(at, "x"))
        if title is not None and not isinstance(title, str):
            raise r.fail(_join(at, "title"), "a string", title)
        if isinstance(y, Mapping):  # {file: field or [fields]}
            for file, fields in r.mapping(y, _join(at, "y")).items():
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
