"""cml-bot.yaml -> a typed, validated :class:`Config`.

The schema is declared once, here, by the parsing functions below; every error names the file,
the key path (``plots[2].template``) and what was expected, and is raised as :class:`ConfigError`.
Where the project has ``dvc.yaml`` files, what they declare (metrics, params, plots) is added: see
:mod:`cml_bot.dvcproject`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from cml_bot.errors import ConfigError
from cml_bot.files import MAX_FILE_BYTES, DuplicateKeyError, UniqueKeyFastLoader, read_limited
from cml_bot.git import Git
from cml_bot.metrics import MAX_NAMES
from cml_bot.secrets import is_credential_parameter, redact_url, url_scheme
from cml_bot.stats.evidence import CORRECTIONS, DEFAULT_ALPHA, DEFAULT_CORRECTION, DEFAULT_RESAMPLES, DEFAULT_SEED

if TYPE_CHECKING:
    from cml_bot.dvcproject import Layout

CONFIG_FILE = "cml-bot.yaml"

# DVC's built-in templates, plus "bar" (vertical bars, categories on x) and "image".
PLOT_TEMPLATES = (
    "linear",
    "simple",
    "smooth",
    "scatter",
    "scatter_jitter",
    "bar",
    "bar_horizontal",
    "bar_horizontal_sorted",
    "confusion",
    "confusion_normalized",
    "image",
)
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
class PlotSource:
    """One series of a plot: field ``y`` of ``file`` against field ``x`` of ``x_file``.

    When ``x_file`` is another file, its rows are joined with ``file``'s by position, as DVC does.
    """

    file: str
    y: str | None = None  # None: the file's last column (DVC's default)
    x: str | None = None  # None: a step/epoch/iteration column, else the row number
    x_file: str | None = None  # None: the same file


@dataclass(frozen=True)
class PlotSpec:
    """A plot, in DVC's terms: an id with data sources, a template and labels, or an image file.

    The simple form names one data file as ``path`` with ``x`` and ``y`` fields (cml-bot.yaml's
    ``plots`` and DVC's ``{file: {x, y}}``). DVC's ``{id: {x, y: {file: field}}}`` form names the
    plot ``path`` and lists its series in ``sources``; :attr:`series` gives both forms alike.
    """

    path: str
    x: str | None = None
    y: tuple[str, ...] = ()
    template: str = "linear"
    title: str | None = None
    sources: tuple[PlotSource, ...] = ()
    x_label: str | None = None
    y_label: str | None = None
    header: bool = True  # CSV/TSV: False when the first row is data (columns are then "0", "1", ...)

    @property
    def series(self) -> tuple[PlotSource, ...]:
        if self.sources:
            return self.sources
        return tuple(PlotSource(self.path, y, self.x) for y in (self.y or (None,)))

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the plot reads, in order (an image plot reads its own file)."""
        if self.template == "image" or not self.sources:
            return (self.path,)
        return tuple(dict.fromkeys(f for s in self.sources for f in (s.file, s.x_file) if f))


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


@dataclass(frozen=True)
class StatisticsConfig:
    alpha: float = DEFAULT_ALPHA  # one-sided, in the bad direction, for every gate without its own alpha
    correction: str = DEFAULT_CORRECTION  # across gated metrics: Benjamini-Hochberg, or none
    resamples: int = DEFAULT_RESAMPLES  # paired bootstrap resamples
    seed: int = DEFAULT_SEED  # the bootstrap's seed: the same inputs give the same intervals


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
    carried: tuple[str, ...] = ()  # logged files read but not drawn: ``predictions: mlflow:artifacts/...``
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
    baseline_branch: str | None = None  # None: the forge's default branch, origin/HEAD, main or master
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
    param_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (params file, the only keys tracked)
    # Derived from the same files as the fields above (left out of comparisons):
    own: Declarations | None = field(default=None, compare=False)  # what cml-bot.yaml alone declares
    dvc_declared: Declarations | None = field(default=None, compare=False)  # what the dvc.yaml files declare
    layout: Layout | None = field(default=None, compare=False)  # where dvc.yaml files and DVC repositories are
    predictions: PredictionsConfig | None = None
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)

    @property
    def may_draw(self) -> bool:
        """Whether a report can hold images: declared plots, main's trend, the confusion change of
        per-example predictions, or step histories and logged plots of a metrics source."""
        sources = [source for source in (self.mlflow, self.tensorboard) if source is not None]
        return bool(
            self.plots
            or self.trend
            or self.predictions is not None
            or (self.mlflow is not None and self.mlflow.artifacts)
            or any(source.history for source in sources)
        )

    @property
    def declared(self) -> Declarations:
        """Metrics, params and plots to read, cml-bot.yaml's and dvc.yaml's together."""
        carried = (self.predictions.path,) if self.predictions is not None else ()
        return Declarations(
            metrics=self.metrics, params=self.params, param_keys=self.param_keys, plots=self.plots, carried=carried
        )


@dataclass(frozen=True)
class Declarations:
    """What a project declares to read: metrics and params files, plots, and where that was said."""

    metrics: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    param_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (params file, the only keys tracked)
    plots: tuple[PlotSpec, ...] = ()
    cached: tuple[str, ...] = ()  # outputs DVC keeps in its cache rather than in git
    files: tuple[str, ...] = ()  # the dvc.yaml files read
    resolver: str = ""  # who resolved them, for -v and the run facts: "cml-bot", "DVC 3.67.1"
    notes: tuple[str, ...] = ()  # what the reader should know (an unknown template, ...)
    carried: tuple[str, ...] = ()  # files kept with the results though not plotted (per-example predictions)

    def keys_of(self, path: str) -> tuple[str, ...]:
        """The keys tracked in params file ``path``; () for all of them."""
        return next((keys for file, keys in self.param_keys if file == path), ())


def merge_declarations(own: Declarations, dvc: Declarations) -> Declarations:
    """cml-bot.yaml's declarations, then dvc.yaml's that are not there already. A file plotted in
    cml-bot.yaml replaces dvc.yaml's plots of it; a params file cml-bot.yaml lists is read whole."""
    metrics = tuple(dict.fromkeys((*own.metrics, *dvc.metrics)))
    params = tuple(dict.fromkeys((*own.params, *dvc.params)))
    keys = tuple((file, ks) for file, ks in (*own.param_keys, *dvc.param_keys) if file not in own.params)
    declared = {p.path for p in own.plots}
    plots = (*own.plots, *(p for p in dvc.plots if not declared.intersection(p.files) and p.path not in declared))
    return replace(
        dvc,
        metrics=metrics,
        params=params,
        param_keys=keys,
        plots=tuple(dict.fromkeys(plots)),
        notes=(*own.notes, *dvc.notes),
        carried=own.carried,
    )


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

    def whole_number(self, value: object, where: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(where, f"a whole number from {low:,} to {high:,}", value)
        return value


def is_git_name(name: str) -> bool:
    """Whether a folder of this name is a git folder: ``.git`` in any case, with the trailing dots
    and spaces Windows ignores (``.GIT.`` opens ``.git`` there)."""
    return name.rstrip(". ").lower() == ".git"


def in_git_folder(path: str) -> bool:
    """True when ``path`` (relative) is inside a ``.git`` folder, where no data may be placed."""
    return any(is_git_name(part) for part in PurePosixPath(path.replace("\\", "/")).parts)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a data source (one line, userinfo hidden), or None when it can."""
    import urllib.parse

    if any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "contains control characters"
    if url_scheme(url) == "":
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
    if parts.hostname and scheme != "file" and not _valid_host(parts.hostname):
        return f"has a malformed host {parts.hostname[:100]!r}"
    if port == 0:
        return "has port 0"
    return None


def credentials_problem(url: str) -> str | None:
    """Why ``url`` may not be written into a committed cml-bot.yaml: it holds a user name or
    password, or a query parameter that looks like a credential (one line, naming no value)."""
    import urllib.parse

    if url_scheme(url) in ("", "file") or "://" not in url:
        return None  # a plain path or a local file URL: nothing to log in with
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None  # url_problem names it
    advice = (
        "it would be committed in cml-bot.yaml for every reader of the repo. cml-bot sends no credentials "
        "to http(s) sources: pin a URL that needs none, or keep private data in s3:// or gs:// (the `s3` / "
        "`gs` extras), whose credentials come from the CI job's environment (AWS_ACCESS_KEY_ID, "
        "GOOGLE_APPLICATION_CREDENTIALS)"
    )
    if "@" in parts.netloc:
        return f"holds a user name or password (user:password@): {advice}"
    names = [name for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    secret = [name for name in names if is_credential_parameter(name)]
    if secret:
        shown = ", ".join(dict.fromkeys(name[:40] for name in secret))
        return f"has a query parameter that looks like a credential or signature ({shown}): {advice}"
    return None


_HOST_LABEL = re.compile(r"(?!-)[\w-]{1,63}(?<!-)")  # \w: letters of any script (internationalised names)


def _valid_host(host: str) -> bool:
    """A host name of dot-separated labels (``example.com``, a bucket), or an IP address: not
    ``...`` (``--url https://...`` copied from an example), not ``a..b``."""
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return all(_HOST_LABEL.fullmatch(label) for label in host.removesuffix(".").split("."))


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


def load_config(root: Path, config_path: Path | None = None, git: Git | None = None) -> Config:
    """Read ``cml-bot.yaml`` (or ``config_path``) and every ``dvc.yaml`` below ``root``.

    A missing ``cml-bot.yaml`` is allowed where there is a ``dvc.yaml``; with neither, the error
    says what to create. ``git`` finds dvc.yaml files fast (and skips ignored folders).
    """
    from cml_bot import dvcproject

    root = root.resolve()
    path = config_path if config_path is not None else root / CONFIG_FILE
    layout = dvcproject.find_layout(root, git if git is not None else Git(root))
    if path.exists() or path.is_symlink():  # a FIFO or a dangling link is refused by _load_yaml, not missed
        raw = _load_yaml(path, str(path if config_path is not None else CONFIG_FILE))
        config = parse_config(raw, root, str(path.name if config_path is None else path))
    elif config_path is not None:
        raise ConfigError(f"{config_path}: config file not found")
    elif layout.files or layout.enclosing is not None:
        config = Config(root=root)
    else:
        raise ConfigError(
            f"{CONFIG_FILE} not found in {root}; create one (see README, 'Configuration') or run where a "
            "dvc.yaml is (a DVC project, or dvclive output with dvcyaml)"
        )
    own = config.declared
    config = replace(config, own=own, dvc=bool(layout.files or layout.repos), layout=layout)
    if layout.files or layout.repos:
        dvc = dvcproject.declarations(layout)
        merged = merge_declarations(own, dvc)
        config = replace(
            config,
            metrics=merged.metrics,
            params=merged.params,
            param_keys=merged.param_keys,
            plots=merged.plots,
            dvc_declared=dvc,
        )
    # This checkout's view of the plots, for drawing them; each revision's results list the folders
    # of their own tree again (see cml_bot.results.read_results), as ``own`` keeps them folders.
    from cml_bot.dvcproject.definitions import expand_plot_folders
    from cml_bot.metrics import WorkspaceTree

    return replace(config, plots=expand_plot_folders(config.plots, WorkspaceTree(root, config.limits.file_bytes)))


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")  # plotted with the image template
PLOT_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".yaml", ".yml", *IMAGE_SUFFIXES)


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
    predictions = _parse_predictions(r, top.get("predictions"))
    if predictions is not None and predictions.path.startswith(MLFLOW_ARTIFACT_PREFIX):
        if mlflow is None:
            raise r.fail(
                "predictions.path",
                f"a file in the repo, or {MLFLOW_ARTIFACT_PREFIX}... with `mlflow:`",
                predictions.path,
            )
        mlflow = replace(mlflow, carried=(predictions.path,))
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
        predictions=predictions,
        statistics=_parse_statistics(r, top.get("statistics")),
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
