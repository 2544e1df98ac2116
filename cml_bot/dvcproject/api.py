"""What a DVC repository declares, resolved by DVC itself (the ``cml-bot[dvc]`` extra).

Used where the plain reading of dvc.yaml is not enough (templating, ``vars``, ``foreach``,
``matrix``) and to read the base's DVC-cached outputs from DVC's cache or remote. DVC is imported
here only, and only then: importing it and building its index costs about half a second.

DVC's resolver is reached through the functions behind ``dvc metrics/params/plots show``
(``dvc.repo.metrics.show._collect_metrics`` and its params and plots siblings): they are what
DVC's own commands enumerate, so cml-bot reads exactly the files DVC would. DVC resolves paths
against the process's working directory, so every call runs with the DVC root as the working
directory (restored after).
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cml_bot.config import PLOT_FILE_SUFFIXES, Declarations, PlotSpec, _Reader
from cml_bot.dvcproject.definitions import is_path_plot, plot_spec
from cml_bot.errors import ConfigError
from cml_bot.files import FILE_LIMIT_SETTING, MAX_FILE_BYTES, describe_size

log = logging.getLogger(__name__)


def available() -> bool:
    """Whether DVC can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("dvc.repo") is not None


def version() -> str:
    from dvc import __version__

    return str(__version__)


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def open_repo(dvc_root: Path, rev: str | None = None) -> Iterator[Any]:
    """DVC's ``Repo`` at ``dvc_root``, switched to ``rev`` (a commit) when given."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with _cwd(dvc_root):
        try:
            repo = Repo(str(dvc_root))
        except DvcException as exc:
            raise ConfigError(f"{dvc_root}: DVC cannot open this repository: {_one_line(exc)}") from None
        try:
            if rev is None:
                yield repo
            else:
                with repo.switch(rev):
                    yield repo
        except DvcException as exc:
            raise ConfigError(f"DVC: {_one_line(exc)}") from None
        finally:
            repo.close()


@dataclass(frozen=True)
class Resolved:
    """One DVC repository's declarations, paths relative to that repository's root."""

    metrics: tuple[str, ...]
    params: dict[str, list[str] | None]  # file -> keys (None: the whole file)
    plots: tuple[PlotSpec, ...]
    cached: tuple[str, ...]
    files: tuple[str, ...]
    notes: tuple[str, ...]


def resolve(dvc_root: Path, rev: str | None = None) -> Resolved:
    """Metrics, params and plots of the DVC repository at ``dvc_root`` (at commit ``rev``)."""
    with open_repo(dvc_root, rev) as repo:
        return _resolve(repo)


def _resolve(repo: Any) -> Resolved:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo.metrics.show import _collect_metrics
    from dvc.repo.params.show import _collect_params
    from dvc.repo.plots import _collect_definitions

    root_marker = repo.dvcfs.root_marker
    metrics = tuple(path.removeprefix(root_marker) for path in _collect_metrics(repo))
    params: dict[str, list[str] | None] = {
        path.removeprefix(root_marker): (list(keys) or None)
        for path, keys in _collect_params(repo, default_file=ParamsDependency.DEFAULT_PARAMS_FILE).items()
    }
    for file, keys in _tracked_vars(repo).items():  # values of `vars` files the stages used
        if file not in params:
            params[file] = keys
    definitions = _collect_definitions(repo, targets=[], props={})
    if "error" in definitions:
        raise ConfigError(f"DVC cannot collect the plots: {_one_line(definitions['error'])}")
    plots: list[PlotSpec] = []
    notes: list[str] = []
    for config_file, content in (definitions.get("data") or {}).items():
        shown = config_file or "dvc.yaml (stage plots)"
        if "error" in content:
            raise ConfigError(f"{shown}: DVC cannot read its plots: {_one_line(content['error'])}")
        r = _Reader(shown)
        for plot_id, props in (content.get("data") or {}).items():
            if is_path_plot(props) and PurePosixPath(plot_id).suffix.lower() not in PLOT_FILE_SUFFIXES:
                continue  # a file in a plotted folder that is no plot data (DVC fails on it)
            spec, note = plot_spec(r, posixpath.normpath(plot_id), props, f"plots.{plot_id}")
            plots.append(spec)
            if note:
                notes.append(note)
    cached = tuple(
        sorted(
            {
                repo.fs.relpath(out.fs_path, repo.root_dir).replace(os.sep, "/")
                for out in repo.index.outs
                if out.use_cache
            }
        )
    )
    files = tuple(sorted({repo.fs.relpath(stage.dvcfile.path, repo.root_dir) for stage in repo.index.stages}))
    return Resolved(metrics, params, tuple(dict.fromkeys(plots)), cached, files, tuple(dict.fromkeys(notes)))


def _tracked_vars(repo: Any) -> dict[str, list[str]]:
    """``vars`` files whose values the stages used, with the keys used: DVC shows them as params.
    (DVC's own ``_collect_vars`` resolves their paths against the working directory.)"""
    from dvc.stage import PipelineStage

    found: dict[str, list[str]] = {}
    for stage in repo.index.stages:
        if not isinstance(stage, PipelineStage) or not stage.tracked_vars:
            continue
        folder = repo.fs.relpath(repo.fs.parent(stage.dvcfile.path), repo.root_dir)
        for file, used in stage.tracked_vars.items():
            path = posixpath.normpath(posixpath.join(folder, file))
            keys = found.setdefault(path, [])
            keys.extend(k for k in _flat_keys(used) if k not in keys)
    return found


def _flat_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            keys.extend(_flat_keys(value, name + "."))
        else:
            keys.append(name)
    return keys


def read_outputs(
    dvc_root: Path, rev: str, paths: Sequence[str], max_bytes: int = MAX_FILE_BYTES
) -> dict[str, bytes | str]:
    """Files of commit ``rev`` through DVC (``paths`` relative to ``dvc_root``): from the local
    cache, else from the configured remote. A file DVC cannot reach, or one over ``max_bytes``
    (read no further), maps to the reason, one line."""
    found: dict[str, bytes | str] = {}
    try:
        with open_repo(dvc_root, rev) as repo:
            fs = repo.dvcfs
            for path in paths:
                try:
                    with fs.open(f"{fs.root_marker}{path}", mode="rb") as handle:
                        data = handle.read(max_bytes + 1)
                    too_big = f"larger than the limit of {describe_size(max_bytes)} ({FILE_LIMIT_SETTING})"
                    found[path] = data if len(data) <= max_bytes else too_big
                except Exception as exc:  # DVC raises many kinds: missing cache, remote errors, ...
                    found[path] = _one_line(exc) or type(exc).__name__
    except ConfigError as exc:  # DVC cannot open the repository at that commit (DVC 1 layout, ...)
        found.update({path: str(exc) for path in paths if path not in found})
    return found


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())


def as_declarations(where: Callable[[str], str | None], resolved: Resolved, resolver: str) -> Declarations:
    """A repository's declarations with their paths moved into the project: ``where(path)`` gives
    a repository path relative to the project, or None when it is outside it (a DVC root above the
    project)."""
    params: dict[str, list[str] | None] = {}
    for file, keys in resolved.params.items():
        moved = where(file)
        if moved is not None:
            params.setdefault(moved, keys)
    return Declarations(
        metrics=tuple(dict.fromkeys(p for p in map(where, resolved.metrics) if p is not None)),
        params=tuple(params),
        param_keys=tuple((file, tuple(keys)) for file, keys in params.items() if keys),
        plots=tuple(spec for spec in (_moved(spec, where) for spec in resolved.plots) if spec is not None),
        cached=tuple(dict.fromkeys(p for p in map(where, resolved.cached) if p is not None)),
        files=tuple(dict.fromkeys(p for p in map(where, resolved.files) if p is not None)),
        resolver=resolver,
        notes=tuple(dict.fromkeys(resolved.notes)),
    )


def _moved(spec: PlotSpec, where: Callable[[str], str | None]) -> PlotSpec | None:
    from dataclasses import replace

    if not spec.sources:
        path = where(spec.path)
        return None if path is None else replace(spec, path=path)
    sources = []
    for source in spec.sources:
        file = where(source.file)
        x_file = where(source.x_file) if source.x_file else None
        if file is None or (source.x_file and x_file is None):
            return None
        sources.append(replace(source, file=file, x_file=x_file))
    return replace(spec, sources=tuple(sources))
