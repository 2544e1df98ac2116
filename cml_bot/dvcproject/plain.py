"""dvc.yaml files read by cml-bot itself: the plain subset, without importing DVC.

DVC's rules, mirrored (the parity tests check them against DVC's own resolver):

- paths are relative to the dvc.yaml's folder, and a stage's to its ``wdir`` (``..`` may climb as
  long as the result stays in the project);
- top-level ``metrics``/``params`` are read whole; a folder stands for every file below it;
- a stage's ``params`` name keys: a bare key is in ``params.yaml`` beside the stage, ``{file:
  [keys]}`` in that file, ``{file: }`` is the whole file; ``params.yaml`` at the DVC root is always
  read whole;
- plots: ``path``, ``{path: props}`` (a folder: each file below it), or ``{id: {y: {file: field}}}``;
  a stage's ``plots``/``metrics``/``outs`` are outputs, kept in DVC's cache unless ``cache: false``.

Templating (``${...}``, ``vars``), ``foreach`` and ``matrix`` need DVC: :func:`needs_dvc` says where.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from cml_bot.config import Declarations, PlotSpec, _Reader
from cml_bot.dvcproject.definitions import PLOT_PROPS, Lister, is_path_plot, plot_files_under, plot_spec

DEFAULT_PARAMS = "params.yaml"


class NeedsDvc(Exception):
    """A dvc.yaml uses what only DVC resolves; ``where`` names the key, ``what`` the feature."""

    def __init__(self, file: str, where: str, what: str) -> None:
        super().__init__(f"{file} at {where}: uses {what}")
        self.file, self.where, self.what = file, where, what


def needs_dvc(raw: object, file: str) -> NeedsDvc | None:
    """Why this parsed dvc.yaml needs DVC's resolver (the first reason found), or None."""
    if not isinstance(raw, Mapping):
        return None
    if "vars" in raw:
        return NeedsDvc(file, "vars", "vars")
    stages = raw.get("stages")
    if isinstance(stages, Mapping):
        for name, stage in stages.items():
            if isinstance(stage, Mapping):
                for key in ("foreach", "matrix"):
                    if key in stage:
                        return NeedsDvc(file, f"stages.{name}", key)
    for where, text in _strings(raw, ""):
        if "${" in text:
            return NeedsDvc(file, where or "the top level", "templating (${...})")
    return None


def _strings(value: object, where: str) -> Iterator[tuple[str, str]]:
    stack: list[tuple[object, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            yield at, item
        elif isinstance(item, Mapping):
            for key, child in item.items():
                here = f"{at}.{key}" if at else str(key)
                if isinstance(key, str):
                    yield here, key
                stack.append((child, here))
        elif isinstance(item, list):
            stack.extend((child, f"{at}[{i}]") for i, child in enumerate(item))


class _Builder:
    """Declarations of several dvc.yaml files, in order, without repeats."""

    def __init__(self, list_files: Lister) -> None:
        self.list_files = list_files
        # DVC's order: the stages' metrics and params before the top-level ones, top-level plots
        # before the stages' plots.
        self.stage_metrics: dict[str, None] = {}
        self.top_metrics: dict[str, None] = {}
        self.params: dict[str, list[str] | None] = {}  # file -> keys; None: the whole file
        self.top_params: list[str] = []
        self.top_plots: list[PlotSpec] = []
        self.stage_plots: list[PlotSpec] = []
        self.cached: dict[str, None] = {}
        self.notes: list[str] = []

    def expand(self, path: str) -> list[str]:
        inside = self.list_files(path)
        return [path] if inside is None else inside

    def expand_plots(self, path: str) -> list[str]:
        """A plotted folder's data and image files (DVC would fail on the others)."""
        inside = plot_files_under(self.list_files, path)
        return [path] if inside is None else inside

    def add_params(self, file: str, keys: list[str] | None) -> None:
        if file in self.params and self.params[file] is None:
            return
        if keys is None:
            self.params[file] = None
        else:
            known = self.params.setdefault(file, [])
            assert known is not None
            known.extend(k for k in keys if k not in known)

    def declarations(self, files: tuple[str, ...]) -> Declarations:
        for file in self.top_params:
            self.add_params(file, None)
        params = tuple(self.params)
        keys = tuple((file, tuple(ks)) for file, ks in self.params.items() if ks is not None)
        return Declarations(
            metrics=tuple(dict.fromkeys((*self.stage_metrics, *self.top_metrics))),
            params=params,
            param_keys=keys,
            plots=tuple(dict.fromkeys((*self.top_plots, *self.stage_plots))),
            cached=tuple(self.cached),
            files=files,
            resolver="cml-bot (plain dvc.yaml)",
            notes=tuple(dict.fromkeys(self.notes)),
        )


def resolve(
    documents: Mapping[str, object], dvc_roots: tuple[str, ...], list_files: Lister, exists: Callable[[str], bool]
) -> Declarations:
    """Declarations of parsed dvc.yaml files (``{path: parsed YAML}``, paths relative to the
    project). ``dvc_roots`` are the DVC repositories' roots (``""``: the project itself), whose
    ``params.yaml`` DVC always reads; ``list_files``/``exists`` look at the revision read."""
    builder = _Builder(list_files)
    for path, raw in documents.items():
        _read_dvc_yaml(builder, path, raw)
    for root in dvc_roots:
        default = posixpath.join(root, DEFAULT_PARAMS) if root else DEFAULT_PARAMS
        if exists(default):
            builder.add_params(default, None)
    return builder.declarations(tuple(documents))


def _read_dvc_yaml(builder: _Builder, file: str, raw: object) -> None:
    r = _Reader(file)
    top = r.mapping(raw if raw is not None else {}, "")
    folder = posixpath.dirname(file)
    for i, item in enumerate(_list(r, top, "metrics", "")):
        for path in builder.expand(_path(r, folder, item, f"metrics[{i}]")):
            builder.top_metrics.setdefault(path)
    for i, item in enumerate(_list(r, top, "params", "")):
        builder.top_params.extend(builder.expand(_path(r, folder, item, f"params[{i}]")))
    _top_level_plots(builder, r, folder, _list(r, top, "plots", ""))
    stages = top.get("stages")
    if stages is None:
        return
    for name, stage in r.mapping(stages, "stages").items():
        where = f"stages.{name}"
        stage = r.mapping(stage if stage is not None else {}, where)
        wdir = folder
        if "wdir" in stage:
            wdir = _path(r, folder, stage["wdir"], f"{where}.wdir", allow_root=True)
        _stage(builder, r, wdir, stage, where)


def _stage(builder: _Builder, r: _Reader, wdir: str, stage: Mapping[str, Any], where: str) -> None:
    for kind in ("outs", "metrics", "plots"):
        for i, out in enumerate(_list(r, stage, kind, where)):
            at = f"{where}.{kind}[{i}]"
            raw_path, options = _out(r, out, at)
            path = _path(r, wdir, raw_path, at)
            if options.get("cache", True) is not False:
                builder.cached.setdefault(path)
            if kind == "metrics":
                for file in builder.expand(path):
                    builder.stage_metrics.setdefault(file)
            elif kind == "plots":
                props = {k: v for k, v in options.items() if k in PLOT_PROPS}
                for file in builder.expand_plots(path):
                    _add_plot(builder.stage_plots, builder, r, file, props, at)
    for i, param in enumerate(_list(r, stage, "params", where)):
        at = f"{where}.params[{i}]"
        if isinstance(param, str):  # a key of params.yaml beside the stage
            builder.add_params(posixpath.join(wdir, DEFAULT_PARAMS) if wdir else DEFAULT_PARAMS, [param])
        elif isinstance(param, Mapping):
            for file, keys in param.items():
                path = _path(r, wdir, file, at)
                if keys is None or keys == []:
                    for each in builder.expand(path):
                        builder.add_params(each, None)
                elif isinstance(keys, list):
                    builder.add_params(path, [r.text(k, f"{at}.{file}[{j}]") for j, k in enumerate(keys)])
                else:
                    raise r.fail(f"{at}.{file}", "a list of keys", keys)
        else:
            raise r.fail(at, "a key name or {file: [keys]}", param)


def _top_level_plots(builder: _Builder, r: _Reader, folder: str, items: list[Any]) -> None:
    definitions: list[tuple[str, Mapping[str, Any] | None, str]] = []
    for i, item in enumerate(items):
        where = f"plots[{i}]"
        if isinstance(item, str):
            definitions.append((item, None, where))
            continue
        for plot_id, props in r.mapping(item, where).items():
            if props is not None and not isinstance(props, Mapping):
                raise r.fail(f"{where}.{plot_id}", "plot properties as a mapping", props)
            definitions.append((plot_id, props, f"{where}.{plot_id}"))
    # A file below a plotted folder takes the properties of the most specific definition (DVC's rule).
    path_ids = [
        _path(r, folder, plot_id, where + ".path") for plot_id, props, where in definitions if is_path_plot(props)
    ]
    for plot_id, props, where in definitions:
        if not is_path_plot(props):
            assert props is not None
            _add_plot(builder.top_plots, builder, r, plot_id, _adjust_sources(r, props, folder, where), where)
            continue
        data_path = _path(r, folder, plot_id, where + ".path")
        for file in builder.expand_plots(data_path):
            if _closest(file, path_ids) == data_path:
                _add_plot(builder.top_plots, builder, r, file, props, where)


def _closest(file: str, parents: list[str]) -> str:
    best = ""
    for parent in parents:
        if (file == parent or file.startswith(parent.rstrip("/") + "/")) and len(parent) > len(best):
            best = parent
    return best


def _adjust_sources(r: _Reader, props: Mapping[str, Any], folder: str, where: str) -> dict[str, Any]:
    """A named plot's ``{file: field}`` keys, relative to the project."""
    adjusted = dict(props)
    for axis in ("x", "y"):
        value = props.get(axis)
        if isinstance(value, Mapping):
            adjusted[axis] = {_path(r, folder, file, f"{where}.path"): fields for file, fields in value.items()}
    return adjusted


def _add_plot(
    plots: list[PlotSpec], builder: _Builder, r: _Reader, plot_id: str, props: Mapping[str, Any] | None, where: str
) -> None:
    spec, note = plot_spec(r, plot_id, props, where)
    plots.append(spec)
    if note:
        builder.notes.append(note)


def _out(r: _Reader, out: object, where: str) -> tuple[object, Mapping[str, Any]]:
    if isinstance(out, Mapping):
        if len(out) != 1:
            raise r.fail(where, "a path or a one-key mapping {path: options}", out)
        path, options = next(iter(out.items()))
        if options is None:
            options = {}
        return path, r.mapping(options, where)
    return out, {}


def _list(r: _Reader, top: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = top.get(key)
    at = f"{where}.{key}" if where else key
    return [] if value is None else r.sequence(value, at)


def _path(r: _Reader, folder: str, value: object, where: str, allow_root: bool = False) -> str:
    """``value`` (relative to ``folder``) relative to the project; refused when it leaves it."""
    text = r.text(value, where, what="a path relative to the repo")
    text = text.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise r.fail(where, "a path inside the repo (no absolute path, no '..')", value)
    joined = posixpath.normpath(posixpath.join(folder, text))
    if joined == "." and allow_root:
        return ""
    if joined in (".", "..") or joined.startswith("../"):
        raise r.fail(where, "a path inside the repo (no absolute path, no '..')", value)
    return joined
