"""Plot data files -> pandas tables (CSV, TSV, JSON, YAML), column choice, and decimation of large
series so a million points draw quickly."""

from __future__ import annotations

import difflib
import io
import json
import logging
from pathlib import PurePosixPath

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from cml_bot.errors import InputError
from cml_bot.plots.style import BUCKETS, SCATTER_GRID, shorten

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def load_table(data: bytes, filename: str, header: bool = True) -> pd.DataFrame:
    """Parse a plot data file: CSV, TSV, JSON or YAML (DVC's plot formats).

    JSON/YAML hold a list of records, or an object with exactly one such list
    (``{"train": [{"step": 0, "loss": 1.0}, ...]}``). The format comes from the extension, or is
    sniffed from the content when the extension says nothing. Errors name ``filename``.
    """
    return load_table_named(data, filename, filename, header)


def load_table_named(data: bytes, filename: str, shown: str, header: bool = True) -> pd.DataFrame:
    """:func:`load_table`, naming the file ``shown`` in errors (the base's file says so). With
    ``header=False`` (DVC's ``header: false``) a CSV/TSV's first row is data and the columns are
    named ``"0"``, ``"1"``, ..."""
    if not data.strip():
        raise InputError(f"{shown}: empty file, no rows to plot")
    kind = _table_kind(data, filename)
    if kind in ("json", "yaml"):
        frame = pd.DataFrame.from_records(_records(data, shown, kind))
    else:
        frame = _read_delimited(data, "\t" if kind == "tsv" else ",", shown, header)
    if len(frame.columns) == 0 or len(frame) == 0:
        raise InputError(f"{shown}: no rows to plot")
    frame.columns = pd.Index([str(c) for c in frame.columns])
    return frame


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


def _read_delimited(data: bytes, sep: str, filename: str, header: bool = True) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(data), sep=sep, encoding="utf-8-sig", header=0 if header else None)
    except UnicodeDecodeError:
        raise InputError(f"{filename}: not UTF-8 text") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{filename}: no columns to plot") from None
    except (pd.errors.ParserError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        kind = "TSV" if sep == "\t" else "CSV"
        raise InputError(f"{filename}: cannot parse as {kind}: {reason}") from None


def _records(data: bytes, filename: str, kind: str) -> list[dict[str, object]]:
    try:
        if kind == "json":
            parsed: object = json.loads(data)
        else:
            parsed = yaml.safe_load(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(f"{filename}: not UTF-8 text") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise InputError(f"{filename}: invalid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{filename}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    expected = "a list of records, or an object holding one list of records"
    if isinstance(parsed, dict):
        lists = [key for key, value in parsed.items() if isinstance(value, list)]
        if len(lists) != 1:
            found = f"lists {', '.join(repr(str(k)) for k in lists[:5])}" if lists else "no list"
            raise InputError(f"{filename}: expected {expected}; found {found}")
        parsed = parsed[lists[0]]
    if not isinstance(parsed, list):
        raise InputError(f"{filename}: expected {expected}")
    for i, item in enumerate(parsed):
        if not isinstance(item, dict):
            raise InputError(f"{filename}: record {i} is not an object of fields")
    return parsed


# --------------------------------------------------------------------------------------------
# Columns


def columns_hint(frame: pd.DataFrame, wanted: str | None = None) -> str:
    """The columns there are, the closest to ``wanted`` first (for an error about a missing one)."""
    columns = [str(c) for c in frame.columns]
    close = difflib.get_close_matches(wanted, columns, n=3, cutoff=0.5) if wanted else []
    if close:
        return f"closest: {', '.join(repr(shorten(c, 30)) for c in close)}"
    names = [repr(shorten(c, 30)) for c in columns[:8]]
    more = ", ..." if len(columns) > 8 else ""
    return f"columns: {', '.join(names)}{more}"


def require_column(frame: pd.DataFrame, column: str, file: str, role: str) -> None:
    if column not in frame.columns:
        raise InputError(f"{file}: no column {shorten(column, 60)!r} ({role}); {columns_hint(frame, column)}")


def is_number_dtype(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series.dtype)) and not pd.api.types.is_bool_dtype(series.dtype)


def as_numbers(series: pd.Series) -> pd.Series | None:
    """The column as floats, or None when a present value is not a number."""
    if is_number_dtype(series) or pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64")
    try:
        converted = pd.to_numeric(series, errors="coerce")
    except (TypeError, ValueError):
        return None
    if bool((converted.isna() & series.notna()).any()):
        return None
    return converted.astype("float64")


def numeric_column(frame: pd.DataFrame, column: str, file: str, role: str = "y") -> FloatArray:
    require_column(frame, column, file, role)
    series = frame[column]
    numbers = as_numbers(series)
    if numbers is None:
        sample = first_non_numeric(series)
        raise InputError(f"{file}: column {shorten(column, 60)!r} ({role}) is not numeric (value {sample})")
    values: FloatArray = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def first_non_numeric(series: pd.Series) -> str:
    for value in series:
        if value is None or (isinstance(value, float) and np.isnan(value)):
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
