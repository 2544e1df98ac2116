"""Metric and param files -> one flat ``{name: value}`` mapping.

Formats are chosen by file extension: ``.json``, ``.yaml``/``.yml``, ``.toml``, ``.csv``, ``.tsv``.
Nested mappings are flattened with ``.`` (``train.loss``); a list of numbers (several seeds, folds)
is kept whole as :class:`Samples`; other lists are flattened by index (``layers.0``). A folder is
read as a dvclive output folder (its ``metrics.json``).

Every problem with a file is raised as one-line :class:`InputError` naming the file. This module is
on the hot path of every run, so it imports only the standard library and PyYAML.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import logging
import math
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TypeAlias

import yaml

from cml_bot.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "Samples",
    "Value",
    "combine",
    "format_value",
    "parse_values",
    "read_all",
    "read_values",
]

logger = logging.getLogger(__name__)

EXTENSIONS = (".json", ".yaml", ".yml", ".toml", ".csv", ".tsv")
DVCLIVE_METRICS = "metrics.json"

_MAX_DEPTH = 200  # nesting levels of a flattened name
_MAX_ITEMS = 2_000_000  # values visited while flattening (YAML aliases can multiply a small file)
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


def read_values(path: Path, shown: str | None = None) -> dict[str, Value]:
    """Read one metrics/params file, or a dvclive output folder (its ``metrics.json``).

    ``shown`` is the name used in error messages (by default ``path`` itself).
    """
    shown = str(path) if shown is None else shown
    if not path.exists():
        raise _error(shown, "file not found")
    if path.is_dir():
        inner = path / DVCLIVE_METRICS
        if not inner.is_file():
            raise _error(shown, f"is a folder without {DVCLIVE_METRICS} (expected a dvclive output folder)")
        path, shown = inner, f"{shown.rstrip('/')}/{DVCLIVE_METRICS}"
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise _unsupported(shown, ext)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _error(shown, "file not found") from None
    except OSError as exc:
        raise _error(shown, f"cannot read: {exc.strerror or exc}") from None
    values = _parse(data, ext, shown)
    logger.debug("read %d values from %s", len(values), shown)
    return values


def read_all(root: Path, paths: Sequence[str], *, missing_ok: bool = False) -> dict[str, Value]:
    """Read several files (``paths`` relative to ``root``) into one namespace; see :func:`combine`.

    A missing file raises :class:`InputError` unless ``missing_ok`` (then it is skipped).
    """
    files: list[tuple[str, dict[str, Value]]] = []
    seen: set[str] = set()
    for shown in paths:
        if shown in seen:
            continue
        seen.add(shown)
        path = root / shown
        if not path.exists():
            if missing_ok:
                logger.info("%s: not found, skipped", shown)
                continue
            raise _error(shown, "file not found")
        if not path.resolve().is_relative_to(root.resolve()):  # a symlink committed by a PR
            raise _error(shown, "points outside the repository (symlink); refusing to read it")
        files.append((shown, read_values(path, shown)))
    return combine(files)


def combine(files: Sequence[tuple[str, dict[str, Value]]]) -> dict[str, Value]:
    """Merge ``(file name, values)`` pairs into one mapping.

    A name defined in more than one file is prefixed with its file name and ``:`` in every file
    that defines it (``eval/a.json:acc``, ``eval/b.json:acc``); other names are kept as they are.
    """
    owners: dict[str, set[str]] = {}
    for label, values in files:
        for name in values:
            owners.setdefault(name, set()).add(label)
    merged: dict[str, Value] = {}
    for label, values in files:
        for name, value in values.items():
            merged[f"{label}:{name}" if len(owners[name]) > 1 else name] = value
    return merged


def parse_values(data: bytes, filename: str) -> dict[str, Value]:
    """Parse the content of a metrics/params file; the format comes from ``filename``'s extension."""
    ext = PurePath(filename).suffix.lower()
    if ext not in EXTENSIONS:
        raise _unsupported(filename, ext)
    return _parse(data, ext, filename)


def _parse(data: bytes, ext: str, shown: str) -> dict[str, Value]:
    text = _decode(data, shown)
    if ext in (".csv", ".tsv"):
        return _parse_table(text, "\t" if ext == ".tsv" else ",", shown)
    if ext == ".json":
        tree = _load_json(text, shown)
    elif ext == ".toml":
        tree = _load_toml(text, shown)
    else:
        tree = _load_yaml(text, shown)
    if not isinstance(tree, Mapping):
        kind = ext.lstrip(".").upper().replace("YML", "YAML")
        raise _error(shown, f"expected a {kind} mapping at the top level, found {_describe(tree)}")
    return _flatten(tree, shown)


def _decode(data: bytes, shown: str) -> str:
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with BOM (PowerShell's redirection)
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.encoding.startswith("utf-16"):
            raise _error(shown, "not valid UTF-16 text") from None
        line = data[: exc.start].count(b"\n") + 1
        raise _error(shown, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line})") from None


def _load_json(text: str, shown: str) -> object:
    try:
        return json.loads(text)
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


def _yaml_loader(base: type[Any]) -> type[Any]:
    """``base`` that also reads YAML 1.2 floats (``1e-3``, ``1.5e3``), which YAML 1.1 leaves as text.

    ``lr: 1e-3`` in params.yaml is a number to everyone who writes it (and to DVC, which uses a
    YAML 1.2 parser); PyYAML's YAML 1.1 resolver would make it the string ``"1e-3"``.
    """
    loader: type[Any] = type(f"Metrics{base.__name__}", (base,), {})
    loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
        list("-+0123456789."),
    )
    return loader


_SAFE_LOADER = _yaml_loader(yaml.SafeLoader)
_FAST_LOADER = _yaml_loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _yaml_depth_bound(text: str) -> int:
    """An upper bound on the nesting depth of a YAML document, cheap to compute.

    Flow collections need a bracket each; nested block collections need a larger column, except a
    block sequence under a mapping key, so block depth is at most twice the longest line.
    """
    longest = max((len(line) for line in text.splitlines()), default=0)
    return text.count("[") + text.count("{") + 2 * (longest + 1)


def _load_yaml(text: str, shown: str) -> object:
    loader = _FAST_LOADER if _yaml_depth_bound(text) <= _C_YAML_MAX_DEPTH else _SAFE_LOADER
    try:
        tree = yaml.load(text, Loader=loader)  # a SafeLoader with one more resolver
    except yaml.MarkedYAMLError as exc:
        what = exc.problem or exc.context or "malformed"
        if exc.problem and exc.context:
            what = f"{exc.problem} ({exc.context})"
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise _error(shown, f"invalid YAML{where}: {what}") from None
    except RecursionError:
        raise _error(shown, "invalid YAML: nested too deeply") from None
    except Exception as exc:  # constructors raise plain ValueError etc. (``!!float abc``, bad dates)
        raise _error(shown, f"invalid YAML: {_exc_text(exc)}") from None
    if tree is None:
        raise _error(shown, "is empty (expected a YAML mapping)")
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


def _parse_table(text: str, delimiter: str, shown: str) -> dict[str, Value]:
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
                    len(header) == 2
                    and header[0].lower() in _NAME_HEADERS
                    and header[1].lower() in _VALUE_HEADERS
                )
            elif name_value:
                rows.append((reader.line_num, row))
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
        for line, row in rows:
            if len(row) != 2:
                raise _error(shown, f"line {line} has {_fields(len(row))}, expected 2 (name, value)")
            name = _clean_text(row[0].strip())
            if not name:
                raise _error(shown, f"line {line} has an empty name")
            values[name] = _cell(row[1])
        return values

    line, row = rows[-1]
    if len(row) != len(header):
        raise _error(
            shown, f"line {line} has {_fields(len(row))}, the header (line {header_line}) has {len(header)}"
        )
    for name, cell in zip(header, row, strict=True):
        if not name:  # an unnamed column: pandas' index
            continue
        name = _clean_text(name)
        if name in values:
            raise _error(shown, f"column {name!r} appears twice in the header (line {header_line})")
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


def _flatten(tree: Mapping[Any, Any], shown: str) -> dict[str, Value]:
    """Flatten nested mappings and lists into ``a.b.0`` names, in document order.

    Iterative (no recursion limit); refuses self-referencing YAML aliases, absurd nesting and
    documents whose aliases expand beyond :data:`_MAX_ITEMS` values.
    """
    out: dict[str, Value] = {}
    stack: list[tuple[str, Iterator[tuple[Any, Any]], int]] = [("", iter(tree.items()), id(tree))]
    on_path = {id(tree)}
    visited = 0
    while stack:
        prefix, items, ident = stack[-1]
        for key, value in items:
            visited += 1
            if visited > _MAX_ITEMS:
                raise _error(shown, f"has more than {_MAX_ITEMS:,} values (expanding YAML aliases?)")
            name = prefix + _key_text(key)
            children: Iterator[tuple[Any, Any]]
            if isinstance(value, Mapping):
                children = iter(value.items())
            elif isinstance(value, list | tuple | set | frozenset):
                if isinstance(value, set | frozenset):  # YAML !!set; its order is not kept anyway
                    value = sorted(value, key=repr)
                samples = _samples(value)
                if samples is not None:
                    visited += samples.n
                    out[name] = samples
                    continue
                children = enumerate(value)
            else:
                out[name] = _leaf(value)
                continue
            if id(value) in on_path:
                raise _error(shown, f"{name[:200]} refers to itself (recursive YAML alias)")
            if len(stack) >= _MAX_DEPTH:
                raise _error(shown, f"nested more than {_MAX_DEPTH} levels deep at {name[:200]}")
            stack.append((name + ".", children, id(value)))
            on_path.add(id(value))
            break
        else:
            stack.pop()
            on_path.discard(ident)
    return out


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
    ``0.91 ± 0.01 (n=3)``."""
    try:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return _format_int(value)
        if isinstance(value, float):
            return _format_float(value)
        if isinstance(value, Samples):
            return f"{_format_float(value.mean)} ± {_format_float(value.std)} (n={value.n})"
        text = value if isinstance(value, str) else _exc_safe_str(value)
        return " ".join(_clean_text(text).splitlines())
    except Exception:  # never fail a report over one value
        return "?"


def _format_float(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    if 1 <= abs(x) < 1e15:
        return f"{x:.4f}".rstrip("0").rstrip(".")
    return f"{x:.4g}"


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


def _unsupported(shown: str, ext: str) -> InputError:
    kind = f"'{ext}'" if ext else "without an extension"
    return _error(shown, f"unsupported file type {kind} (expected {', '.join(EXTENSIONS)})")


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
