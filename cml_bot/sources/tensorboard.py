"""TensorBoard event files -> scalar metrics and step histories.

A logdir holds event files (``*tfevents*``) directly or in run subfolders (``runs/train``,
``runs/eval``). Each scalar series becomes a metric named ``<run>/<tag>`` (just ``<tag>`` for files
directly in the logdir) whose value is the last one written, or the lowest or highest by the
config's per-tag choice (``tensorboard.reduce``); its steps become a history plot file.

Event files are TFRecord streams of ``Event`` protocol buffers, parsed here with the ``tensorboard``
package's protobuf classes (the ``tensorboard`` extra), one record at a time from a memory map:
memory stays bounded by the number of series, not of points (each series keeps its lowest and
highest point per bucket of steps, and the bucket size doubles as points arrive), and a million
scalars take a few seconds. Records too large to hold a scalar (images, histograms) are skipped
unread. A file that ends in a partial record (a writer still running) is read up to it; a corrupt
one is read up to the damage and the report says so.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import mmap
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from cml_bot.config import TensorBoardSource
from cml_bot.errors import InputError
from cml_bot.metrics import Value
from cml_bot.results import RunResults
from cml_bot.sources import (
    HISTORY_BUCKETS,
    TENSORBOARD_HISTORY,
    SourceResults,
    history_csv,
    history_path,
    missing_extra,
    plotted,
)

if TYPE_CHECKING:
    from cml_bot.git import Git

__all__ = ["ScalarSeries", "committed_scalars", "read_event_bytes", "read_logdir", "scalars_to_results"]

log = logging.getLogger(__name__)

EVENT_NAME = re.compile(r"tfevents")
MAX_SCALAR_RECORD = 1 << 20  # bytes: larger records hold images or histograms, never read
MAX_SERIES = 10_000  # distinct run/tag series kept per revision
RELEASE_EVERY = 8 << 20  # bytes of a mapped file parsed between releases of its pages
_CAN_RELEASE = hasattr(mmap, "MADV_DONTNEED") and hasattr(mmap.mmap, "madvise")  # not on Windows
_HEADER = struct.Struct("<Q")
_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")
_DT_FLOAT, _DT_DOUBLE = 1, 2  # tensorflow DataType enum values


class ScalarSeries:
    """One tag's values in arrival order, reduced as they arrive: last, lowest, highest, and an
    envelope for plotting (lowest and highest point per bucket of ``size`` consecutive points)."""

    __slots__ = ("buckets", "count", "fill", "first", "high", "last", "last_point", "low", "size")

    def __init__(self) -> None:
        self.count = 0
        self.last = math.nan
        self.low = math.inf
        self.high = -math.inf
        self.size = 1
        self.fill = 0
        self.buckets: list[list[float]] = []  # [low step, low value, high step, high value]
        self.first: tuple[float, float] | None = None
        self.last_point: tuple[float, float] | None = None

    def add(self, step: float, value: float) -> None:
        # The hot loop of a million-scalar file: plain comparisons, no calls.
        self.count += 1
        self.last = value
        if value != value:  # NaN: the last value says so; nothing to draw
            return
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value
        if self.first is None:
            self.first = (step, value)
        self.last_point = (step, value)
        if self.fill < self.size and self.buckets:
            bucket = self.buckets[-1]
            if value < bucket[1]:
                bucket[0] = step
                bucket[1] = value
            elif value > bucket[3]:
                bucket[2] = step
                bucket[3] = value
            self.fill += 1
            return
        if len(self.buckets) >= 2 * HISTORY_BUCKETS:  # all full: merge pairs, buckets twice as long
            self.buckets = [_merge(self.buckets[i], self.buckets[i + 1]) for i in range(0, len(self.buckets), 2)]
            self.size *= 2
        self.buckets.append([step, value, step, value])
        self.fill = 1

    def value(self, how: str) -> float:
        if how == "min":
            return self.low if self.low != math.inf else math.nan
        if how == "max":
            return self.high if self.high != -math.inf else math.nan
        return self.last

    def points(self) -> list[tuple[float, float]]:
        """The envelope, in step order: at most ~2 points per bucket, both ends included."""
        kept = {(b[0], b[1]) for b in self.buckets} | {(b[2], b[3]) for b in self.buckets}
        kept |= {p for p in (self.first, self.last_point) if p is not None}
        return sorted(kept)


def _merge(a: list[float], b: list[float]) -> list[float]:
    low = a[:2] if a[1] <= b[1] else b[:2]
    high = a[2:] if a[3] >= b[3] else b[2:]
    return [*low, *high]


# --- reading event records -----------------------------------------------------------------------


def _event_class() -> Any:
    try:
        from tensorboard.compat.proto import event_pb2
    except ImportError:
        raise missing_extra("tensorboard", "tensorboard (its event protobufs)") from None
    return event_pb2.Event


def read_event_bytes(data: bytes | mmap.mmap, shown: str, add: Callable[[str, float, float], object]) -> str | None:
    """Feed every scalar in one event file's bytes to ``add(tag, step, value)``. Returns what is
    wrong with the file, or None."""
    from google.protobuf.message import DecodeError

    event_class = _event_class()
    size, position, released = len(data), 0, 0
    while position < size:
        if _CAN_RELEASE and isinstance(data, mmap.mmap) and position - released >= RELEASE_EVERY:
            # Pages already parsed leave this process's memory (they stay in the page cache).
            end_of_pages = position - position % mmap.PAGESIZE
            data.madvise(mmap.MADV_DONTNEED, released, end_of_pages - released)
            released = end_of_pages
        if size - position < 12:
            log.info("%s: ends in a partial record at byte %d (still being written?)", shown, position)
            return None
        (length,) = _HEADER.unpack_from(data, position)
        end = position + 12 + length
        suspicious = position == 0 or end + 4 > size or length > MAX_SCALAR_RECORD
        if suspicious and not _header_ok(data, position):
            if position == 0:
                return f"{shown}: not a TensorBoard event file (bad record header)"
            return f"{shown}: corrupt at byte {position:,}; values after it were not read"
        if end + 4 > size:
            log.info("%s: ends in a partial record at byte %d (still being written?)", shown, position)
            return None
        if length <= MAX_SCALAR_RECORD:
            try:
                event = event_class.FromString(data[position + 12 : end])
            except DecodeError:
                return f"{shown}: corrupt at byte {position:,}; values after it were not read"
            if event.HasField("summary"):
                step = float(event.step)
                for item in event.summary.value:
                    if item.HasField("simple_value"):  # tensorboardX, torch, TF1
                        add(item.tag, step, item.simple_value)
                    else:
                        number = _tensor_scalar(item)
                        if number is not None:
                            add(item.tag, step, number)
        position = end + 4
    return None


def _tensor_scalar(item: Any) -> float | None:
    if not item.HasField("tensor") or item.metadata.plugin_data.plugin_name != "scalars":
        return None
    tensor = item.tensor  # TF2's tf.summary.scalar
    if tensor.dtype == _DT_FLOAT:
        if tensor.float_val:
            return float(tensor.float_val[0])
        if len(tensor.tensor_content) == 4:
            return float(_FLOAT.unpack(tensor.tensor_content)[0])
    if tensor.dtype == _DT_DOUBLE:
        if tensor.double_val:
            return float(tensor.double_val[0])
        if len(tensor.tensor_content) == 8:
            return float(_DOUBLE.unpack(tensor.tensor_content)[0])
    return None


def _header_ok(data: bytes | mmap.mmap, position: int) -> bool:
    """The record's length field matches its checksum (masked CRC-32C). Checked only where a wrong
    length would matter (first record, a length past the end or too large): a pure-Python CRC of
    every record would double the reading time."""
    if len(data) - position < 12:
        return False
    expected: int = struct.unpack_from("<I", data, position + 8)[0]
    return _masked_crc32c(bytes(data[position : position + 8])) == expected


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- a logdir -> results -----------------------------------------------------------------------------


@dataclass
class _Collected:
    series: dict[str, ScalarSeries] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    dropped: int = 0

    def adder(self, run: str) -> Callable[[str, float, float], object]:
        by_tag: dict[str, ScalarSeries] = {}  # this run's series, without building the name per point

        def add(tag: str, step: float, value: float) -> None:
            series = by_tag.get(tag)
            if series is None:
                name = f"{run}/{tag}" if run else tag
                series = self.series.get(name)
                if series is None:
                    if len(self.series) >= MAX_SERIES:
                        self.dropped += 1
                        return
                    series = self.series[name] = ScalarSeries()
                by_tag[tag] = series
            series.add(step, value)

        return add


def _run_of(relative: PurePosixPath) -> str:
    return relative.parent.as_posix() if relative.parent != PurePosixPath(".") else ""


def _event_order(path: PurePosixPath) -> tuple[str, int, str]:
    """Files of one run in the order they were written (the name holds the start time)."""
    match = re.search(r"tfevents\.(\d+)", path.name)
    return (path.parent.as_posix(), int(match.group(1)) if match else 0, path.name)


def read_logdir(source: TensorBoardSource, root: Path) -> SourceResults:
    """The scalars of the logdir in this checkout."""
    folder = root / source.logdir
    if not folder.is_dir():
        note = f"TensorBoard: no logdir {source.logdir} in this checkout; its metrics are missing."
        return SourceResults(RunResults(sha=None, metrics={}), (note,))
    resolved_root = root.resolve()
    files = sorted(
        (PurePosixPath(path.relative_to(folder).as_posix()) for path in folder.rglob("*") if _is_event(path.name)),
        key=_event_order,
    )
    collected = _Collected()
    for relative in files:
        path = folder / relative
        shown = f"{source.logdir}/{relative}"
        if not path.resolve().is_relative_to(resolved_root):  # a symlink committed by a PR
            raise InputError(f"{shown}: points outside the repository (symlink); refusing to read it")
        if not path.is_file() or path.stat().st_size == 0:
            continue
        try:
            with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                problem = read_event_bytes(mapped, shown, collected.adder(_run_of(relative)))
        except OSError as exc:
            problem = f"{shown}: cannot read ({exc.strerror or exc})"
        if problem:
            collected.problems.append(problem)
    notes = [f"TensorBoard: {problem}" for problem in collected.problems]
    if not files:
        notes.append(f"TensorBoard: no event files under {source.logdir}; its metrics are missing.")
    if collected.dropped:
        notes.append(f"TensorBoard: only the first {MAX_SERIES:,} scalar series were read.")
    results, left_out = scalars_to_results(source, collected.series, None)
    return SourceResults(results, (*notes, *left_out))


def committed_scalars(source: TensorBoardSource, git: Git, sha: str) -> RunResults | None:
    """The scalars of the logdir as committed at ``sha`` (one ``git cat-file --batch``); None when
    no event file is committed there."""
    prefix = source.logdir.rstrip("/") + "/"
    paths = sorted(
        (PurePosixPath(p) for p in git.files(sha) if p.startswith(prefix) and _is_event(PurePosixPath(p).name)),
        key=_event_order,
    )
    if not paths:
        return None
    contents = git.show_many(sha, [p.as_posix() for p in paths])
    collected = _Collected()
    for path in paths:
        data = contents.get(path.as_posix())
        if data:
            add = collected.adder(_run_of(path.relative_to(prefix)))
            problem = read_event_bytes(data, f"{path} at {sha[:10]}", add)
            if problem:
                log.warning("TensorBoard: %s", problem)
    return scalars_to_results(source, collected.series, sha)[0]


def _is_event(name: str) -> bool:
    return EVENT_NAME.search(name) is not None


def scalars_to_results(
    source: TensorBoardSource, series: Mapping[str, ScalarSeries], sha: str | None
) -> tuple[RunResults, tuple[str, ...]]:
    """Metrics and step-history files of the series, and a note when step plots were left out."""
    metrics: dict[str, Value] = {}
    names = [name for name in sorted(series) if not source.tags or _matches(name, source.tags)]
    for name in names:
        metrics[name] = series[name].value(_reduction(source, name))
    with_steps = [name for name in names if series[name].count > 1]
    drawn, notes = plotted(source.history, with_steps, "TensorBoard")
    files: dict[str, bytes] = {}
    for name in drawn:
        points = series[name].points()
        if len(points) > 1:  # NaNs are not drawn: a series of one drawable point has no plot
            files[history_path(TENSORBOARD_HISTORY, name)] = history_csv({name: points}, name)
    return RunResults(sha=sha, metrics=metrics, files=files), notes


def _matches(name: str, patterns: Iterable[str]) -> bool:
    tag = name.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(tag, p) for p in patterns)


def _reduction(source: TensorBoardSource, name: str) -> str:
    """The first ``reduce`` pattern matching the metric name (or its tag alone) decides; else last."""
    for pattern, how in source.reduce:
        if _matches(name, (pattern,)):
            return how
    return "last"
