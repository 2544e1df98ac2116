"""Plot data files -> tables (CSV, TSV, JSON, YAML), column choice, and decimation of large series
so a million points draw quickly.

Tables are read with the standard library and numpy, not pandas: the plot process imports what it
draws with while the run goes on, and pandas alone was a third of that import (about 0.17 s of the
critical path of every report with plots). Columns are typed as pandas typed them where it matters
to a plot: numbers (whole numbers are integers: integer ticks, ``"3"`` as a category), booleans,
text; empty cells and the usual NA spellings are missing.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt

from cml_bot import answers
from cml_bot.checks import closest
from cml_bot.errors import InputError
from cml_bot.metrics import decode_text, load_yaml, parse_json
from cml_bot.plots.style import BUCKETS, SCATTER_GRID, shorten

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

# Cells read as missing (pandas' default NA spellings that occur in real files).
MISSING_TEXTS = frozenset(
    {"", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "-NaN", "null", "NULL", "None", "<NA>", "#N/A"}
)
BOOL_TEXTS = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}
MAX_CELLS = 50_000_000  # fields x records of a JSON/YAML table (a size-capped CSV stays far below)
WHOLE_LIMIT = 2.0**53  # beyond this a float no longer holds every integer: such columns stay floats


@dataclass(frozen=True)
class Column:
    """One column's cells: ``float64`` numbers (NaN missing), ``int64`` whole numbers, ``bool``, or
    ``object`` text (NaN missing)."""

    values: npt.NDArray[Any]

    def __len__(self) -> int:
        return len(self.values)

    @property
    def kind(self) -> str:
        """``"int"``, ``"float"``, ``"bool"`` or ``"text"``."""
        return {"i": "int", "f": "float", "b": "bool"}.get(self.values.dtype.kind, "text")

    def tolist(self) -> list[Any]:
        return list(self.values.tolist())

    def texts(self) -> list[str]:
        """Each cell as text, as categories are named (a missing cell is ``"nan"``)."""
        return [value if type(value) is str else str(value) for value in self.values.tolist()]

    def present(self) -> npt.NDArray[np.bool_]:
        """Which cells hold a value."""
        if self.kind == "float":
            held: npt.NDArray[np.bool_] = ~np.isnan(self.values)
            return held
        if self.kind == "text":
            return ~np.fromiter(map(_missing, self.values.tolist()), dtype=bool, count=len(self.values))
        return np.ones(len(self.values), dtype=bool)

    def take(self, rows: npt.NDArray[np.bool_]) -> Column:
        return Column(self.values[rows])

    def numbers(self) -> FloatArray | None:
        """The cells as floats (missing: NaN), or None when a present cell is not a number."""
        if self.kind != "text":
            return self.values.astype(np.float64)
        out = np.full(len(self.values), np.nan)
        for i, value in enumerate(self.values.tolist()):
            if _missing(value):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                return None
            try:
                out[i] = float(value)
            except (TypeError, ValueError, OverflowError):
                return None
        return out


@dataclass(frozen=True)
class Table:
    """A plot data file's columns, in the file's order (names unique, as pandas makes them)."""

    data: Mapping[str, Column]
    rows: int

    @property
    def columns(self) -> list[str]:
        return list(self.data)

    def __len__(self) -> int:
        return self.rows

    def __contains__(self, name: object) -> bool:
        return name in self.data

    def __getitem__(self, name: str) -> Column:
        return self.data[name]


def load_table(data: bytes, filename: str, header: bool = True) -> Table:
    """Parse a plot data file: CSV, TSV, JSON or YAML (DVC's plot formats).

    JSON/YAML hold a list of records, or an object with exactly one such list
    (``{"train": [{"step": 0, "loss": 1.0}, ...]}``). The format comes from the extension, or is
    sniffed from the content when the extension says nothing. Errors name ``filename``.
    """
    return load_table_named(data, filename, filename, header)


def load_table_named(data: bytes, filename: str, shown: str, header: bool = True) -> Table:
    """:func:`load_table`, naming the file ``shown`` in errors (the base's file says so). With
    ``header=False`` (DVC's ``header: false``) a CSV/TSV's first row is data and the columns are
    named ``"0"``, ``"1"``, ..."""
    if not data.strip():
        raise InputError(f"{shown}: empty file, no rows to plot")
    kind = _table_kind(data, filename)
    if kind in ("json", "yaml"):
        table = _from_records(_records(data, shown, kind), shown)
    else:
        table = _read_delimited(data, "\t" if kind == "tsv" else ",", shown, header)
    if not table.data or table.rows == 0:
        raise InputError(f"{shown}: no rows to plot")
    return table


def decimate(x: FloatArray, y: FloatArray, buckets: int = BUCKETS) -> tuple[FloatArray, FloatArray]:
    """Keep the min and max of ``y`` in each of ``buckets`` runs of points (plus both ends).

    The drawn line keeps the envelope of the full series: spikes survive, noise is not averaged
    away. Inputs must be finite and in drawing order; series of up to ``2 * buckets`` points are
    returned unchanged.
    """
    n = len(y)
    if n <= 2 * buckets:
        return x, y
    size = -(-n // buckets)
    full = n // size
    blocks = y[: full * size].reshape(full, size)
    offsets = np.arange(full) * size
    parts = [blocks.argmin(axis=1) + offsets, blocks.argmax(axis=1) + offsets, np.array([0, n - 1])]
    if full * size < n:
        tail = y[full * size :]
        parts.append(np.array([full * size + int(tail.argmin()), full * size + int(tail.argmax())]))
    keep = np.unique(np.concatenate(parts))
    return x[keep], y[keep]


def thin_points(x: FloatArray, y: FloatArray, grid: tuple[int, int] = SCATTER_GRID) -> tuple[FloatArray, FloatArray]:
    """Keep the first point in each cell of a ``grid`` laid over the points' range (scatter plots).

    At the plot's resolution the picture is the same (outliers included); order is preserved.
    """
    if len(x) <= grid[0] * grid[1] // 20:
        return x, y
    cols = cells(x, grid[0])
    rows = cells(y, grid[1])
    _, first = np.unique(cols * grid[1] + rows, return_index=True)
    first.sort()
    return x[first], y[first]


# --------------------------------------------------------------------------------------------
# Reading tables


def _table_kind(data: bytes, filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()
    known = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}
    if suffix in known:
        return known[suffix]
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start in (b"[", b"{"):
        return "json"
    first_line = data.split(b"\n", 1)[0]
    return "tsv" if b"\t" in first_line else "csv"


def _read_delimited(data: bytes, sep: str, filename: str, header: bool = True) -> Table:
    kind = "TSV" if sep == "\t" else "CSV"
    text = decode_text(data, filename)
    first, _, rest = text.partition("\n")
    names = (_csv_rows(first, sep, filename, kind) or [[]])[0] if header else None
    body = rest if header else text
    # numpy's C reader takes quotes but not an unclosed one: that goes to the strict reader below.
    balanced = body.count('"') % 2 == 0
    numbers = _loaded(body, sep, np.float64) if balanced else None  # the common case: numbers, in C
    if numbers is not None and (names is None or len(names) == numbers.shape[1]):
        return _table(names, [_whole(numbers[:, i]) for i in range(numbers.shape[1])], len(numbers))
    cells = _loaded(body, sep, object) if balanced else None  # text, also in C
    if cells is None or (names is not None and len(names) != cells.shape[1]):
        cells = _csv_cells(body, sep, filename, kind, None if names is None else len(names))
    return _table(names, [_from_texts(cells[:, i]) for i in range(cells.shape[1])], len(cells))


def _csv_cells(body: str, sep: str, filename: str, kind: str, width: int | None) -> npt.NDArray[np.object_]:
    """The general reader (an unclosed quote, rows of unequal length): Python's csv module, strict
    about quotes; a short row is padded with empty cells, a long one is an error."""
    rows = _csv_rows(body, sep, filename, kind)
    if width is None:
        width = max((len(row) for row in rows), default=0)
    cells = np.full((len(rows), width), "", dtype=object)
    for number, row in enumerate(rows, start=1):
        if len(row) > width:
            raise InputError(
                f"{filename}: cannot parse as {kind}: expected {width} fields in data row {number}, saw {len(row)}"
            )
        cells[number - 1, : len(row)] = row
    return cells


def _csv_rows(text: str, sep: str, filename: str, kind: str) -> list[list[str]]:
    """Python's csv module, strict about quotes; blank lines left out."""
    try:
        return [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True) if row]
    except csv.Error as exc:
        raise InputError(f"{filename}: cannot parse as {kind}: {exc}") from None


def _loaded(body: str, sep: str, dtype: type) -> npt.NDArray[Any] | None:
    """The rows parsed by numpy's C reader (a million rows in about 0.1 s): numbers (``float64``)
    or text cells (``object``); None when a cell is not of that type or rows differ in length."""
    if not body.strip():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": answered by the caller
            parsed: npt.NDArray[Any] = np.loadtxt(
                io.StringIO(body), delimiter=sep, dtype=dtype, ndmin=2, comments=None, quotechar='"'
            )
    except ValueError:
        return None
    return parsed


def _table(names: Sequence[str] | None, columns: Sequence[Column], rows: int) -> Table:
    """Columns named as pandas names them: ``"0"``, ``"1"``... without a header, ``"Unnamed: i"``
    for an empty name, ``"a.1"`` for a second ``"a"``."""
    if names is None:
        names = [str(i) for i in range(len(columns))]
    unique: dict[str, Column] = {}
    repeats: dict[str, int] = {}  # name -> the last suffix given: a header of 100,000 "a"s stays linear
    for i, (name, column) in enumerate(zip(names, columns, strict=True)):
        name = name or f"Unnamed: {i}"
        candidate = name
        while candidate in unique:
            repeats[name] = repeats.get(name, 0) + 1
            candidate = f"{name}.{repeats[name]}"
        unique[candidate] = column
    return Table(unique, rows)


def _from_texts(cells: npt.NDArray[np.object_]) -> Column:
    """A column of text cells, typed: numbers, then booleans, else text."""
    texts = cells.tolist()
    missing = np.fromiter((cell in MISSING_TEXTS for cell in texts), dtype=bool, count=len(texts))
    spelled = cells.copy()
    spelled[missing] = "nan"
    try:
        return _whole(spelled.astype(np.float64))
    except (TypeError, ValueError):
        pass
    if not missing.any() and all(cell in BOOL_TEXTS for cell in texts):
        return Column(np.fromiter((BOOL_TEXTS[cell] for cell in texts), dtype=bool, count=len(texts)))
    values = cells.copy()
    values[missing] = math.nan
    return Column(values)


def _from_records(records: Sequence[Mapping[str, object]], shown: str) -> Table:
    """JSON/YAML records: the union of their fields in first-seen order, a missing field missing."""
    names = list(dict.fromkeys(str(key) for record in records for key in record))
    if len(names) * len(records) > MAX_CELLS:  # records with a field each of their own: quadratic
        raise InputError(
            f"{shown}: {len(records):,} records with {len(names):,} different fields: "
            f"over {MAX_CELLS:,} cells, too many to plot"
        )
    by_name = [{str(key): value for key, value in record.items()} for record in records]
    columns = [_from_values([record.get(name) for record in by_name]) for name in names]
    return Table(dict(zip(names, columns, strict=True)), len(records))


def _from_values(values: Sequence[object]) -> Column:
    present = [value for value in values if not _missing(value)]
    if present and len(present) == len(values) and all(isinstance(value, bool) for value in present):
        return Column(np.array(present, dtype=bool))
    if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in present):
        try:
            return _whole(np.array([math.nan if _missing(v) else v for v in values], dtype=np.float64))
        except OverflowError:  # an integer beyond a float's range: text
            pass
    return _text([math.nan if _missing(value) else value for value in values])


def _whole(numbers: FloatArray) -> Column:
    """Numbers that are all whole (and not missing) become integers."""
    with np.errstate(invalid="ignore"):
        whole = len(numbers) > 0 and bool(((np.abs(numbers) < WHOLE_LIMIT) & (numbers == np.floor(numbers))).all())
    if whole:
        return Column(numbers.astype(np.int64))
    return Column(numbers)


def _text(values: Iterable[object]) -> Column:
    items = list(values)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return Column(array)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _records(data: bytes, filename: str, kind: str) -> list[dict[str, object]]:
    # Read as the metrics files are: JSON with its repeated keys refused, YAML as DVC reads it (1.2).
    text = decode_text(data, filename)
    parsed = parse_json(text, filename) if kind == "json" else load_yaml(text, filename)
    try:
        return answers.records(parsed)
    except ValueError as exc:
        raise InputError(f"{filename}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Columns


def columns_hint(table: Table, wanted: str | None = None) -> str:
    """The columns there are, the closest to ``wanted`` first (for an error about a missing one)."""
    columns = table.columns
    close = closest(wanted, columns) if wanted else []
    if close:
        return f"closest: {', '.join(repr(shorten(c, 30)) for c in close)}"
    names = [repr(shorten(c, 30)) for c in columns[:8]]
    more = ", ..." if len(columns) > 8 else ""
    return f"columns: {', '.join(names)}{more}"


def require_column(table: Table, column: str, file: str, role: str) -> None:
    if column not in table:
        raise InputError(f"{file}: no column {shorten(column, 60)!r} ({role}); {columns_hint(table, column)}")


def first_non_numeric(column: Column) -> str:
    for value in column.tolist():
        if _missing(value):
            continue
        try:
            float(value)
        except (TypeError, ValueError):
            return repr(shorten(str(value), 40))
    return "?"


def cells(values: FloatArray, count: int) -> npt.NDArray[np.int64]:
    low = float(values.min())
    span = float(values.max()) - low
    if span <= 0 or not np.isfinite(span):
        return np.zeros(len(values), dtype=np.int64)
    cells: npt.NDArray[np.int64] = ((values - low) * ((count - 1) / span)).astype(np.int64)
    return cells
