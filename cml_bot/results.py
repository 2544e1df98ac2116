"""One commit's results (metrics, params, plot files, facts) and the local folder that stores them.

Results are recorded for commits on the main branch so a pull request can compare against its
merge-base without retraining main. The JSON form keeps NaN/Infinity (as JSON extensions, the way
dvclive writes them) and repeated values.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cml_bot.config import Declarations, PlotSpec
from cml_bot.dvcproject.definitions import plot_files_under
from cml_bot.errors import InputError
from cml_bot.files import read_limited
from cml_bot.metrics import MAX_NAMES, Samples, Tree, Value, align, collect

FORMAT_VERSION = 1
MAX_RESULTS_BYTES = 512_000_000  # one recorded commit's results (plot files included)


@dataclass(frozen=True)
class RunResults:
    sha: str | None
    metrics: Mapping[str, Value]
    params: Mapping[str, Value] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)  # plot data/images by repo path
    facts: Mapping[str, str] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)  # metric name -> the file it came from
    problems: Mapping[str, str] = field(default_factory=dict)  # metrics/params file -> why it gave nothing
    param_origins: Mapping[str, str] = field(default_factory=dict)  # param name -> the file it came from


def read_results(declared: Declarations, tree: Tree, sha: str | None, max_names: int = MAX_NAMES) -> RunResults:
    """The declared metrics, params and plot files of one revision (the workspace, a commit).
    Files that are missing or malformed are named in ``problems`` instead of failing the run.
    Metrics and params together may hold at most ``max_names`` names and values (limits.names)."""
    metrics = collect(tree, declared.metrics, max_names=max_names)
    left = max_names - len(metrics.values)
    params = collect(tree, declared.params, params=True, keys=declared.keys_of, max_names=left)
    plot_files = list(
        dict.fromkeys([*(file for spec in declared.plots for file in _plot_files(spec, tree)), *declared.carried])
    )
    files = {path: data for path, data in tree.read_many(plot_files).items() if data is not None}
    return RunResults(
        sha=sha,
        metrics=metrics.values,
        params=params.values,
        files=files,
        origins=metrics.origins,
        problems={**metrics.problems, **params.problems},
        param_origins=params.origins,
    )


def aligned(revisions: Sequence[RunResults]) -> list[RunResults]:
    """Revisions compared with each other with their metrics and params named alike: a name
    defined in two files in any of them is prefixed with its file in all (see
    :func:`cml_bot.metrics.align`)."""
    metrics = align([(r.metrics, r.origins) for r in revisions])
    params = align([(r.params, r.param_origins) for r in revisions])
    return [
        replace(results, metrics=named, origins=origins, params=named_params, param_origins=param_origins)
        for results, (named, origins), (named_params, param_origins) in zip(revisions, metrics, params, strict=True)
    ]


def _plot_files(spec: PlotSpec, tree: Tree) -> list[str] | tuple[str, ...]:
    """The files a plot reads in this revision: a plotted folder's data and image files as listed
    in ``tree`` (cml-bot.yaml's plots name folders as written; each revision has its own files)."""
    return plot_files_under(tree.files_under, spec.path) or spec.files


def _encode_value(value: Value) -> Any:
    if isinstance(value, Samples):
        return {"samples": list(value.values)}
    return value


def _decode_value(value: Any) -> Value:
    if isinstance(value, dict) and set(value) == {"samples"}:
        return Samples(tuple(float(v) for v in value["samples"]))
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return json.dumps(value)


def to_json(results: RunResults) -> str:
    document = {
        "version": FORMAT_VERSION,
        "sha": results.sha,
        "metrics": {k: _encode_value(v) for k, v in results.metrics.items()},
        "params": {k: _encode_value(v) for k, v in results.params.items()},
        "files": {k: base64.b64encode(v).decode("ascii") for k, v in results.files.items()},
        "facts": dict(results.facts),
        "origins": dict(results.origins),
        "problems": dict(results.problems),
        "param_origins": dict(results.param_origins),
    }
    return json.dumps(document, indent=1, sort_keys=True)


def from_json(text: str | bytes, shown: str) -> RunResults:
    try:
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
            raise ValueError("not a cml-bot results file of version 1")
        return RunResults(
            sha=document.get("sha"),
            metrics={str(k): _decode_value(v) for k, v in document.get("metrics", {}).items()},
            params={str(k): _decode_value(v) for k, v in document.get("params", {}).items()},
            files={str(k): base64.b64decode(v) for k, v in document.get("files", {}).items()},
            facts={str(k): str(v) for k, v in document.get("facts", {}).items()},
            origins={str(k): str(v) for k, v in document.get("origins", {}).items()},
            problems={str(k): str(v) for k, v in document.get("problems", {}).items()},
            param_origins={str(k): str(v) for k, v in document.get("param_origins", {}).items()},
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"{shown}: unreadable results ({exc})") from None


def atomic_write(path: Path, data: bytes) -> None:
    """Write through a temp file and rename, so a killed run never leaves half a file.

    The file gets the mode a plain ``open()`` would give it (0666 less the umask, so usually 0644),
    or the mode of the file it replaces: reports and images are read by other users and by web
    servers, and ``tempfile.mkstemp`` alone would leave them 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = None
    fd, tmp = _create_temp(path)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_temp(path: Path) -> tuple[int, str]:
    """A new file beside ``path`` opened for writing; the kernel applies the umask to 0666."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits colliding
            continue


IGNORE_MARK = "# written by cml-bot"  # how every .gitignore cml-bot wrote begins (older versions' too)
IGNORE_ALL = f"{IGNORE_MARK}: nothing in this folder belongs in git\n*\n"


def make_own_folder(folder: Path) -> None:
    """``mkdir -p folder``, with a ``.gitignore`` of ``*`` in every folder this call creates.

    For cml-bot's own folders (``.cml-bot/``, ``cml-bot-bundle/``, ``cml-bot-shards/``): what cml-bot
    writes there never shows up in ``git status``. A folder that already exists is left as it is.
    """
    missing: list[Path] = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for created in reversed(missing):
        try:
            created.mkdir()
        except FileExistsError:  # made concurrently by another run: it is theirs to mark
            continue
        atomic_write(created / ".gitignore", IGNORE_ALL.encode("utf-8"))
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)  # raises the right error (a file in the way, ...)


class LocalStore:
    """Results kept in a folder, one JSON file per commit: ``<folder>/<sha>.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, sha: str) -> RunResults | None:
        path = self.folder / f"{sha}.json"
        if not path.exists():
            return None
        return from_json(read_limited(path, MAX_RESULTS_BYTES), str(path))

    def recorded(self) -> set[str]:
        """The commits with results, from one listing (no file is read)."""
        if not self.folder.is_dir():
            return set()
        return {path.stem for path in self.folder.glob("*.json")}

    def save(self, results: RunResults) -> str:
        if not results.sha:
            raise InputError("cannot record results without a commit sha")
        path = self.folder / f"{results.sha}.json"
        make_own_folder(self.folder)
        atomic_write(path, to_json(results).encode("utf-8"))
        return str(path)
