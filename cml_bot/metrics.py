"""Metric and param files -> one flat ``{name: value}`` mapping.

Formats are chosen by file extension: ``.json``, ``.yaml``/``.yml``, ``.toml``, ``.csv``, ``.tsv``,
and ``.py`` for params (top-level and class-level assignments of literals, read with :mod:`ast`,
never run). Nested mappings are flattened with ``.`` (``train.loss``). In metrics, a list of numbers
(several seeds, folds) is kept whole as :class:`Samples` and other lists are skipped, as DVC skips
lists in metrics; in params every list is one value, shown as a list (``[64, 32]``). A file holding a
single value (``0.95``) is one metric named after the file. A folder is read as a dvclive output
folder (its ``metrics.json``) when it is one, else as every metrics file in it.

:func:`collect` reads declared files from a :class:`Tree` (the workspace, a commit) and never
fails on a missing or malformed file: it says which files gave nothing and why, so a report can
show their metrics as missing, as DVC does.

Every problem with a file is raised as one-line :class:`InputError` naming the file. This module is
on the hot path of every run, so it imports only the standard library and PyYAML.
"""

from __future__ import annotations

import ast
import csv
import datetime
import io
import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Protocol, TypeAlias

import yaml

from cml_bot import numbers
from cml_bot.errors import InputError
from cml_bot.files import (
    FILE_LIMIT_SETTING,
    MAX_FILE_BYTES,
    DuplicateKeyError,
    UniqueKeyFastLoader,
    UniqueKeySafeLoader,
    load_json,
    read_limited,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "Collected",
    "Named",
    "Samples",
    "Tree",
    "Value",
    "WorkspaceTree",
    "align",
    "collect",
    "combine",
    "decode_text",
    "format_value",
    "load_yaml",
    "name_in_file",
    "parse_json",
    "parse_values",
    "read_values",
]

logger = logging.getLogger(__name__)

EXTENSIONS = (".json", ".yaml", ".yml", ".toml", ".csv", ".tsv")
PARAMS_EXTENSIONS = (*EXTENSIONS, ".py")  # DVC reads params from Python files too
DVCLIVE_METRICS = "metrics.json"

_MAX_DEPTH = 200  # nesting levels of a flattened name
# Defaults of ``limits:`` in cml-bot.yaml (see cml_bot.config.Limits); MAX_FILE_BYTES is in cml_bot.files.
# Names and values read from metrics and params files, all files together. YAML aliases are
# counted as expanded (a 600-byte alias bomb is a million names) and so are CSV rows.
MAX_NAMES = 100_000
# libyaml's composer recurses in C and crashes the interpreter on very deep nesting (~20,000 levels
# on an 8 MB stack); documents that might nest deeper than this go to the pure-Python loader, which
# raises RecursionError instead.
_C_YAML_MAX_DEPTH = 1000


@dataclass(frozen=True)
class Samples:
    """A list of numbers in a metrics file (one per seed, fold, ...), kept whole."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        if not self.values:
            return math.nan
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); 0.0 for a single value."""
        if not self.values:
            return math.nan
        if len(self.values) == 1:
            return 0.0 if math.isfinite(self.values[0]) else math.nan
        mean = self.mean
        # x * x rather than x ** 2: huge values give inf instead of raising OverflowError
        squares = sum((v - mean) * (v - mean) for v in self.values)
        return math.sqrt(squares / (len(self.values) - 1))


Value: TypeAlias = float | int | str | bool | Samples | None


# ---------------------------------------------------------------------------------------------------
# Reading files


def read_values(
    path: Path,
    shown: str | None = None,
    *,
    params: bool = False,
    max_bytes: int = MAX_FILE_BYTES,
    max_names: int = MAX_NAMES,
) -> dict[str, Value]:
    """Read one metrics/params file, or a dvclive output folder (its ``metrics.json``).

    ``shown`` is the name used in error messages (by default ``path`` itself). Only a regular file
    of at most ``max_bytes`` is read, and at most ``max_names`` names and values are taken from it.
    """
    shown = str(path) if shown is None else shown
    if not path.exists():
        raise _error(shown, "file not found")
    if path.is_dir():
        inner = path / DVCLIVE_METRICS
        if not inner.exists():
            raise _error(shown, f"is a folder without {DVCLIVE_METRICS} (expected a dvclive output folder)")
        path, shown = inner, f"{shown.rstrip('/')}/{DVCLIVE_METRICS}"
    ext = path.suffix.lower()
    if ext not in (PARAMS_EXTENSIONS if params else EXTENSIONS):
        raise _unsupported(shown, ext, params)
    data = read_limited(path, max_bytes, shown, setting=FILE_LIMIT_SETTING)
    values = _parse(data, ext, shown, params, max_names)
    logger.debug("read %d values from %s", len(values), shown)
    return values


class Tree(Protocol):
    """The files of one revision of a project: the workspace, or a commit."""

    label: str  # for messages: "the workspace", "main (abc1234)"

    def read_many(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        """The content of each file (paths relative to the project); None when it is not there.
        Raises :class:`InputError` for a file that must not be read (a symlink leading out)."""
        ...

    def files_under(self, path: str) -> list[str] | None:
        """The files below folder ``path``, sorted; None when ``path`` is not a folder."""
        ...

    def missing_reason(self, path: str) -> str | None:
        """Why a file :meth:`read_many` did not return could not be read, when it is known."""
        ...


class WorkspaceTree:
    """The files on disk under ``root``; symlinks leading out of it are refused."""

    label = "the workspace"

    def __init__(self, root: Path, max_bytes: int = MAX_FILE_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes  # limits.file_mb: a pull request's files are read bounded
        self._resolved = root.resolve()

    def read_many(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        found: dict[str, bytes | None] = {}
        for shown in paths:
            path = self.root / shown
            if not path.exists() or path.is_dir():  # a FIFO or a device is not skipped: it is refused
                found[shown] = None
                continue
            if not path.resolve().is_relative_to(self._resolved):  # a symlink committed by a PR
                raise _error(shown, "points outside the repository (symlink); refusing to read it")
            found[shown] = read_limited(
                path,
                self.max_bytes,
                shown,
                setting=FILE_LIMIT_SETTING,
            )
        return found

    def files_under(self, path: str) -> list[str] | None:
        folder = self.root / path
        if not folder.is_dir():
            return None
        if not folder.resolve().is_relative_to(self._resolved):
            raise _error(path, "points outside the repository (symlink); refusing to read it")
        return sorted(p.relative_to(self.root).as_posix() for p in folder.rglob("*") if p.is_file())

    def missing_reason(self, path: str) -> str | None:
        return None


@dataclass(frozen=True)
class Collected:
    """Values read from several files, where each came from, and the files that gave nothing."""

    values: dict[str, Value] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # name -> the file it was read from
    problems: dict[str, str] = field(default_factory=dict)  # file -> why it gave nothing (one line)
    files: tuple[str, ...] = ()  # the files read


def collect(
    tree: Tree,
    paths: Sequence[str],
    *,
    params: bool = False,
    keys: Callable[[str], Sequence[str]] = lambda path: (),
    max_names: int = MAX_NAMES,
) -> Collected:
    """Read the declared files of ``tree`` into one namespace (see :func:`combine`).

    A folder stands for its files: a dvclive output folder (``metrics.json`` beside ``plots/``) for
    its ``metrics.json``, any other folder for every metrics file below it. A file that is missing,
    unreadable or malformed is skipped and named in ``problems``; ``keys(path)`` restricts a params
    file to those keys (and what is below them), as a DVC stage tracking ``lr`` reads only ``lr``.
    The files together may hold at most ``max_names`` names and values: more is an error (a
    pull request cannot make the report grow without bound), not a problem to skip.
    """
    extensions = PARAMS_EXTENSIONS if params else EXTENSIONS
    files: list[str] = []
    problems: dict[str, str] = {}
    for path in dict.fromkeys(paths):
        inside = tree.files_under(path)
        if inside is None:
            files.append(path)
            continue
        dvclive = f"{path.rstrip('/')}/{DVCLIVE_METRICS}"
        if dvclive in inside and any(f.startswith(f"{path.rstrip('/')}/plots/") for f in inside):
            files.append(dvclive)
            continue
        found = [f for f in inside if PurePosixPath(f).suffix.lower() in extensions]
        if not found:
            problems[path] = f"{path}: folder has no {'params' if params else 'metrics'} files"
        files.extend(found)
    files = list(dict.fromkeys(files))
    contents = tree.read_many(files)
    parsed: list[tuple[str, dict[str, Value]]] = []
    for path in files:
        data = contents.get(path)
        if data is None:
            problems[path] = tree.missing_reason(path) or f"{path}: not found in {tree.label}"
            continue
        try:
            values = parse_values(data, path, params=params, max_names=max_names)
        except StrictInputError:
            raise
        except InputError as exc:
            problems[path] = str(exc)
            continue
        max_names -= len(values)
        wanted = keys(path)
        if wanted:
            values = {name: v for name, v in values.items() if any(_under(name, key) for key in wanted)}
        logger.info("read %d %s from %s in %s", len(values), "params" if params else "metrics", path, tree.label)
        parsed.append((path, values))
    for path, why in problems.items():
        logger.debug("%s: %s", path, why)
    merged, origins = combine_with_origins(parsed)
    return Collected(merged, origins, problems, tuple(path for path, _ in parsed))


def _under(name: str, key: str) -> bool:
    return name == key or name.startswith(key + ".")


def combine(files: Sequence[tuple[str, dict[str, Value]]]) -> dict[str, Value]:
    """Merge ``(file name, values)`` pairs into one mapping.

    A name defined in more than one file is prefixed with its file name and ``:`` in every file
    that defines it (``eval/a.json:acc``, ``eval/b.json:acc``); other names are kept as they are.
    Revisions compared with each other are then named alike by :func:`align`.
    """
    return combine_with_origins(files)[0]


def combine_with_origins(
    files: Sequence[tuple[str, dict[str, Value]]],
) -> tuple[dict[str, Value], dict[str, str]]:
    """:func:`combine`, and the file each merged name came from."""
    owners: dict[str, set[str]] = {}
    for label, values in files:
        for name in values:
            owners.setdefault(name, set()).add(label)
    merged: dict[str, Value] = {}
    origins: dict[str, str] = {}
    for label, values in files:
        for name, value in values.items():
            key = f"{label}:{name}" if len(owners[name]) > 1 else name
            merged[key] = value
            origins[key] = label
    return merged, origins


Named: TypeAlias = tuple[Mapping[str, Value], Mapping[str, str]]  # values by name, and each name's file


def align(revisions: Sequence[Named]) -> list[tuple[dict[str, Value], dict[str, str]]]:
    """The values of revisions compared with each other (base, this change, the base branch's
    history), named alike: a name defined in two files in ANY of them is prefixed with its file in
    ALL of them. So ``acc`` of ``eval/metrics.json`` stays one metric when this change adds a
    ``test/metrics.json`` with its own ``acc`` (both revisions say ``eval/metrics.json:acc``), as
    DVC matches values by file and name. Each name's file comes from its origins (names prefixed
    either way are recognised, so results recorded under either name still match); a name without
    an origin (recorded by an older cml-bot, logged to MLflow) is kept as it is."""
    owners: dict[str, set[str]] = {}
    keyed: list[list[tuple[str | None, str, Value]]] = []
    for values, origins in revisions:
        rows: list[tuple[str | None, str, Value]] = []
        for name, value in values.items():
            origin = origins.get(name)
            if origin is None:
                rows.append((None, name, value))
                continue
            key = name[len(origin) + 1 :] if name.startswith(f"{origin}:") else name
            owners.setdefault(key, set()).add(origin)
            rows.append((origin, key, value))
        keyed.append(rows)
    aligned = []
    for rows in keyed:
        named: dict[str, Value] = {}
        named_origins: dict[str, str] = {}
        for origin, key, value in rows:
            name = f"{origin}:{key}" if origin is not None and len(owners[key]) > 1 else key
            named[name] = value
            if origin is not None:
                named_origins[name] = origin
        aligned.append((named, named_origins))
    return aligned


_PREFIXED = re.compile(r"(.+?\.(?:json|ya?ml|toml|[ct]sv|py)):(.+)", re.IGNORECASE | re.DOTALL)


def name_in_file(name: str) -> str | None:
    """The name a value has in its file when ``name`` is prefixed with that file (``acc`` for
    ``eval/metrics.json:acc``), else None: thresholds written for ``acc`` keep applying when a
    second file with an ``acc`` makes both prefixed."""
    found = _PREFIXED.fullmatch(name)
    return found.group(2) if found else None


def parse_values(data: bytes, filename: str, *, params: bool = False, max_names: int = MAX_NAMES) -> dict[str, Value]:
    """Parse the content of a metrics/params file; the format comes from ``filename``'s extension."""
    ext = PurePath(filename).suffix.lower()
    if ext not in (PARAMS_EXTENSIONS if params else EXTENSIONS):
        raise _unsupported(filename, ext, params)
    return _parse(data, ext, filename, params, max_names)


def _parse(data: bytes, ext: str, shown: str, params: bool = False, max_names: int = MAX_NAMES) -> dict[str, Value]:
    text = decode_text(data, shown)
    if ext in (".csv", ".tsv"):
        return _parse_table(text, "\t" if ext == ".tsv" else ",", shown, max_names)
    if ext == ".json":
        tree = parse_json(text, shown)
    elif ext == ".toml":
        tree = _load_toml(text, shown)
    elif ext == ".py":
        tree = _load_python(text, shown)
    else:
        tree = _load_yaml(text, shown)
    if _is_scalar(tree):  # a file holding one value (DVC reads those): one metric named after the file
        return {shown: _leaf(tree)}
    if not isinstance(tree, Mapping):
        kind = ext.lstrip(".").upper().replace("YML", "YAML")
        raise _error(shown, f"expected a {kind} mapping (or a single value) at the top level, found {_describe(tree)}")
    return _flatten(tree, shown, max_names, lists_as_values=params)


def _is_scalar(value: object) -> bool:
    return isinstance(value, int | float | str) and not isinstance(value, bool)


def decode_text(data: bytes, shown: str) -> str:
    """A project file's text: UTF-8 (a BOM allowed) or UTF-16 with a BOM; else one-line InputError."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with BOM (PowerShell's redirection)
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.encoding.startswith("utf-16"):
            raise _error(shown, "not valid UTF-16 text") from None
        line = data[: exc.start].count(b"\n") + 1
        raise _error(shown, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line})") from None


def parse_json(text: str, shown: str) -> object:
    """A project file's JSON, a repeated key refused; every failure (nesting too deep included) one line."""
    try:
        return load_json(text)
    except DuplicateKeyError as exc:
        raise StrictInputError(f"{shown}: invalid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise _error(shown, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise _error(shown, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise _error(shown, f"invalid JSON: {exc}") from None


def _load_toml(text: str, shown: str) -> object:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _error(shown, f"invalid TOML: {exc}") from None
    except RecursionError:
        raise _error(shown, "invalid TOML: nested too deeply") from None
    except ValueError as exc:
        raise _error(shown, f"invalid TOML: {exc}") from None


def _load_python(text: str, shown: str) -> object:
    """Literal assignments of a Python params file, as DVC reads them: ``NAME = 1``, ``NAME: int = 1``
    at the top level and in classes (``Config.lr``), and ``self.name = ...`` in ``__init__``. Only
    literals are read (:func:`ast.literal_eval`); nothing is run, anything else is skipped."""
    try:
        module = ast.parse(text, filename=shown)
    except SyntaxError as exc:
        raise _error(shown, f"invalid Python at line {exc.lineno}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise _error(shown, f"invalid Python: {_exc_text(exc)}") from None
    return _python_assignments(module.body, self_only=False)


def _python_assignments(body: Sequence[ast.stmt], self_only: bool) -> dict[str, object]:
    found: dict[str, object] = {}
    for node in body:
        if isinstance(node, ast.ClassDef) and not self_only:
            found[node.name] = _python_assignments(node.body, self_only=False)
        elif isinstance(node, ast.FunctionDef) and node.name == "__init__" and not self_only:
            found.update(_python_assignments(node.body, self_only=True))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if len(targets) != 1 or node.value is None:
                continue
            name = _python_target(targets[0], self_only)
            if name is None:
                continue
            try:
                found[name] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue  # not a literal: DVC skips it too
    return found


def _python_target(target: ast.expr, self_only: bool) -> str | None:
    if self_only:
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
            return target.attr
        return None
    return target.id if isinstance(target, ast.Name) else None


# YAML 1.2's implicit types, as DVC reads metrics and params (ruamel.yaml's YAML 1.2 resolver, whose
# patterns these are): booleans are only true/false (``yes``, ``on`` stay text), ``0o17`` is octal
# and ``0042`` decimal, ``1:30:00`` is text (no base 60), ``1e-3`` is a float. PyYAML resolves YAML
# 1.1, where ``seed: 0042`` is 34 and ``{no: 0.3}`` has the key False.
_YAML_1_2_RESOLVERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("bool", r"true|True|TRUE|false|False|FALSE", tuple("tTfF")),
    (
        "float",
        r"""[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN)""",
        tuple("-+0123456789."),
    ),
    ("int", r"[-+]?0b[0-1_]+ | [-+]?0o?[0-7_]+ | [-+]?[0-9_]+ | [-+]?0x[0-9a-fA-F_]+", tuple("-+0123456789")),
    ("merge", r"<<", ("<",)),
    ("null", r"~ | null|Null|NULL | ", ("~", "n", "N", "")),  # "": the empty scalar (``a:``)
    (
        "timestamp",
        r"""[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
        (?:[Tt]|[\ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
        (?:[\ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?""",
        tuple("0123456789"),
    ),
)


def _construct_int_1_2(loader: Any, node: yaml.ScalarNode) -> int:
    """A YAML 1.2 integer: ``0o17`` octal, ``0x1F`` hex, ``0b101`` binary, ``0042`` decimal."""
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    for prefix, base in (("0o", 8), ("0x", 16), ("0b", 2)):
        if digits.startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits)


def _yaml_loader(base: type[Any]) -> type[Any]:
    """``base`` (a safe loader) resolving plain scalars as YAML 1.2 does (:data:`_YAML_1_2_RESOLVERS`)."""
    loader: type[Any] = type(f"Yaml12{base.__name__}", (base,), {"yaml_implicit_resolvers": {}})
    for kind, pattern, first in _YAML_1_2_RESOLVERS:
        loader.add_implicit_resolver(f"tag:yaml.org,2002:{kind}", re.compile(f"^(?:{pattern})$", re.X), list(first))
    loader.add_constructor("tag:yaml.org,2002:int", _construct_int_1_2)
    return loader


_SAFE_LOADER = _yaml_loader(UniqueKeySafeLoader)
_FAST_LOADER = _yaml_loader(UniqueKeyFastLoader)


def _yaml_depth_bound(text: str) -> int:
    """An upper bound on the nesting depth of a YAML document, cheap to compute.

    Flow collections need a bracket each; nested block collections need a larger column, except a
    block sequence under a mapping key, so block depth is at most twice the longest line.
    """
    longest = max((len(line) for line in text.splitlines()), default=0)
    return text.count("[") + text.count("{") + 2 * (longest + 1)


def _load_yaml(text: str, shown: str) -> object:
    tree = load_yaml(text, shown)
    if tree is None:
        raise _error(shown, "is empty (expected a YAML mapping)")
    return tree


def load_yaml(text: str, shown: str) -> object:
    """A project's YAML document (metrics, params, plot data) as DVC reads it: YAML 1.2 types
    (:data:`_YAML_1_2_RESOLVERS`), a repeated key an error; None for an empty document. Every
    problem is one :class:`InputError` naming ``shown``."""
    loader = _FAST_LOADER if _yaml_depth_bound(text) <= _C_YAML_MAX_DEPTH else _SAFE_LOADER
    try:
        tree = yaml.load(text, Loader=loader)  # a SafeLoader resolving YAML 1.2
    except yaml.MarkedYAMLError as exc:
        what = exc.problem or exc.context or "malformed"
        if exc.problem and exc.context:
            what = f"{exc.problem} ({exc.context})"
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise _error(shown, f"invalid YAML{where}: {what}") from None
    except RecursionError:
        raise _error(shown, "invalid YAML: nested too deeply") from None
    except DuplicateKeyError as exc:
        raise StrictInputError(f"{shown}: invalid YAML: {exc}") from None
    except Exception as exc:  # constructors raise plain ValueError etc. (``!!float abc``, bad dates)
        raise _error(shown, f"invalid YAML: {_exc_text(exc)}") from None
    return tree


# ---------------------------------------------------------------------------------------------------
# CSV and TSV

_NAME_HEADERS = frozenset({"name", "names", "metric", "metrics", "param", "params", "parameter", "key"})
_VALUE_HEADERS = frozenset({"value", "values", "val", "score"})
_INT = re.compile(r"[-+]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)
_SPECIAL_FLOATS = {
    **{f"{sign}{word}": float(f"{sign}inf") for sign in ("", "+", "-") for word in ("inf", "infinity")},
    **{f"{sign}nan": math.nan for sign in ("", "+", "-")},
}
_BOOLS = {"true": True, "false": False}


def _parse_table(text: str, delimiter: str, shown: str, max_names: int = MAX_NAMES) -> dict[str, Value]:
    """A name/value table (two columns, header like ``name,value``: one row per name), or a log
    with a header of names and one row per step (the last row is the result)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    header_line = 0
    rows: list[tuple[int, list[str]]] = []
    name_value = False
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header, header_line = [cell.strip() for cell in row], reader.line_num
                name_value = (
                    len(header) == 2 and header[0].lower() in _NAME_HEADERS and header[1].lower() in _VALUE_HEADERS
                )
            elif name_value:
                rows.append((reader.line_num, row))
                if len(rows) > max_names:
                    raise _too_many(shown, max_names)
            else:  # a log: only the last row matters, keep memory flat on long logs
                rows[:] = [(reader.line_num, row)]
    except csv.Error as exc:
        raise _error(shown, f"invalid CSV at line {reader.line_num}: {exc}") from None
    if header is None:
        raise _error(shown, "is empty (expected a header row)")
    if not rows:
        raise _error(shown, f"has a header (line {header_line}) but no data rows")

    values: dict[str, Value] = {}
    if name_value:
        lines: dict[str, int] = {}
        for line, row in rows:
            if len(row) != 2:
                raise _error(shown, f"line {line} has {_fields(len(row))}, expected 2 (name, value)")
            name = _clean_text(row[0].strip())
            if not name:
                raise _error(shown, f"line {line} has an empty name")
            if name in lines:
                raise StrictInputError(f"{shown}: name {name[:200]!r} appears twice (lines {lines[name]} and {line})")
            lines[name] = line
            values[name] = _cell(row[1])
        return values

    line, row = rows[-1]
    if len(header) > max_names:
        raise _too_many(shown, max_names)
    if len(row) != len(header):
        raise _error(shown, f"line {line} has {_fields(len(row))}, the header (line {header_line}) has {len(header)}")
    for name, cell in zip(header, row, strict=True):
        if not name:  # an unnamed column: pandas' index
            continue
        name = _clean_text(name)
        if name in values:
            raise StrictInputError(f"{shown}: column {name!r} appears twice in the header (line {header_line})")
        values[name] = _cell(cell)
    return values


def _fields(count: int) -> str:
    return f"{count} field" if count == 1 else f"{count} fields"


def _cell(text: str) -> Value:
    """A CSV cell: numbers become numbers, true/false bools, an empty cell None, the rest text."""
    text = text.strip()
    if not text:
        return None
    try:
        if _INT.fullmatch(text):
            return int(text)
        if _FLOAT.fullmatch(text):
            return float(text)
    except ValueError:  # more digits than Python converts: keep the text
        return _clean_text(text)
    lowered = text.lower()
    if lowered in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[lowered]
    if lowered in _BOOLS:
        return _BOOLS[lowered]
    return _clean_text(text)


# ---------------------------------------------------------------------------------------------------
# Flattening


def _flatten(
    tree: Mapping[Any, Any], shown: str, max_names: int = MAX_NAMES, lists_as_values: bool = False
) -> dict[str, Value]:
    """Flatten nested mappings into ``a.b`` names, in document order. A list of numbers is kept
    whole (:class:`Samples`); other lists are skipped, as DVC skips lists in metrics. With
    ``lists_as_values`` (params), a list is one value shown as a list, as DVC shows params.

    Two keys that flatten to one name (``"val.acc"`` beside ``val: {acc: ...}``) are an error
    naming it, as DVC's "duplicated key" is: never a silent "last one wins". Iterative (no
    recursion limit); refuses self-referencing YAML aliases, absurd nesting and documents whose
    aliases expand beyond ``max_names`` names and values.
    """
    out: dict[str, Value] = {}
    skipped: list[str] = []
    stack: list[tuple[str, Iterator[tuple[Any, Any]], int]] = [("", iter(tree.items()), id(tree))]
    on_path = {id(tree)}
    visited = 0
    while stack:
        prefix, items, ident = stack[-1]
        for key, value in items:
            visited += 1
            if visited > max_names:
                raise _too_many(shown, max_names)
            name = prefix + _key_text(key)
            if isinstance(value, Mapping):
                if id(value) in on_path:
                    raise _error(shown, f"{name[:200]} refers to itself (recursive YAML alias)")
                if len(stack) >= _MAX_DEPTH:
                    raise _error(shown, f"nested more than {_MAX_DEPTH} levels deep at {name[:200]}")
                stack.append((name + ".", iter(value.items()), id(value)))
                on_path.add(id(value))
                break
            leaf: Value
            if isinstance(value, list | tuple | set | frozenset):
                if isinstance(value, set | frozenset):  # YAML !!set; its order is not kept anyway
                    value = sorted(value, key=repr)
                if lists_as_values:
                    visited += _nested_size(value, max_names - visited)
                    if visited > max_names:
                        raise _too_many(shown, max_names)
                    leaf = _list_text(value)
                else:
                    samples = _samples(value)
                    if samples is None:  # records, text, nested lists: no metric (DVC has none either)
                        skipped.append(name)
                        continue
                    visited += samples.n
                    if visited > max_names:
                        raise _too_many(shown, max_names)
                    leaf = samples
            else:
                leaf = _leaf(value)
            if name in out:
                what = f"key {name[:200]!r} appears twice once nested keys are joined with '.'; rename one"
                raise StrictInputError(str(_error(shown, what)))
            out[name] = leaf
        else:
            stack.pop()
            on_path.discard(ident)
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        logger.info(
            "%s: skipped %s (lists that are not lists of numbers are not metrics, as in DVC)",
            shown,
            ", ".join(" ".join(name[:200].split()) for name in skipped[:5]) + more,
        )
    return out


def _nested_size(value: object, budget: int) -> int:
    """How many values ``value`` holds, its nested lists and mappings expanded (YAML aliases count
    as expanded), counted only up to just past ``budget``."""
    count, stack = 0, [value]
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return count


def _list_text(items: Sequence[object]) -> str:
    """A params list as one line of JSON: ``[64, 32]``, ``["relu", "tanh"]``."""
    try:
        text = json.dumps(items, ensure_ascii=False, default=_exc_safe_str)
    except (ValueError, RecursionError):  # circular YAML aliases
        text = "[…]"
    return _clean_text(text)


def _samples(items: Sequence[object]) -> Samples | None:
    """A non-empty list of numbers (not bools) as :class:`Samples`, else None."""
    numbers = [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers or len(numbers) != len(items):
        return None
    try:
        return Samples(tuple(float(v) for v in numbers))
    except OverflowError:  # an integer too large for a float: flatten by index instead
        return None


def _leaf(value: object) -> Value:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, datetime.date | datetime.time):  # YAML/TOML dates and times
        return value.isoformat()
    if isinstance(value, bytes):  # YAML !!binary
        return _clean_text(value.decode("utf-8", "replace"))
    return _clean_text(_exc_safe_str(value))


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return _clean_text(key)
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, datetime.date | datetime.time):
        return key.isoformat()
    return _clean_text(_exc_safe_str(key))


def _clean_text(text: str) -> str:
    """Text that can be written as UTF-8: JSON ``\\ud800`` escapes give lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


# ---------------------------------------------------------------------------------------------------
# Showing values


def format_value(value: Value) -> str:
    """One line for a report: ``0.9123``, ``1234567``, ``1e-07``, ``NaN``, ``true``, ``null``,
    ``0.91 ± 0.01 (n=3)``; numbers as :func:`cml_bot.numbers.number` writes them."""
    try:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return _format_int(value)
        if isinstance(value, float):
            return numbers.number(value)
        if isinstance(value, Samples):
            return f"{numbers.number(value.mean)} ± {numbers.number(value.std)} (n={value.n})"
        text = value if isinstance(value, str) else _exc_safe_str(value)
        return " ".join(_clean_text(text).splitlines())
    except Exception:  # never fail a report over one value
        return "?"


def _format_int(n: int) -> str:
    try:
        return str(n)
    except ValueError:  # more digits than Python converts (sys.set_int_max_str_digits)
        exponent = int(math.log10(abs(n)))
        lead = abs(n) // 10 ** (exponent - 3)
        while lead >= 10_000:
            lead //= 10
            exponent += 1
        return f"{'-' if n < 0 else ''}{lead / 1000:.3f}e+{exponent}"


# ---------------------------------------------------------------------------------------------------
# Helpers


def _error(shown: str, what: str) -> InputError:
    return InputError(" ".join(f"{shown}: {what}".splitlines()))


class StrictInputError(InputError):
    """A file that is not merely malformed but ambiguous or over a limit (a repeated key, more names
    than limits.names allows): always an error, never skipped as a missing file would be, so a
    duplicated value cannot pass unnoticed and a bomb cannot be reported around."""


class TooManyNames(StrictInputError):
    """A file holds more names and values than limits.names allows."""


def _too_many(shown: str, limit: int) -> InputError:
    what = f"has more than {limit:,} names and values (YAML aliases count as expanded)"
    return TooManyNames(f"{shown}: {what}; raise limits.names in cml-bot.yaml if they are all needed")


def _unsupported(shown: str, ext: str, params: bool = False) -> InputError:
    kind = f"'{ext}'" if ext else "without an extension"
    expected = PARAMS_EXTENSIONS if params else EXTENSIONS
    return _error(shown, f"unsupported file type {kind} (expected {', '.join(expected)})")


def _describe(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


def _exc_text(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _exc_safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"
