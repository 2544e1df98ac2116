"""Byte-level progress of data downloads, shown the way the output can take it (used by the CLI's Console).

On a terminal: one tqdm bar, redrawn in place, for all the downloads in flight (bytes received of
the known total, rate, time left). In a log (CI): a plain line every :data:`LOG_EVERY` seconds or
each further :data:`LOG_STEP` of the total, whichever comes first, never two within
:data:`LOG_MIN_GAP` seconds, so a quick pull adds nothing and an 81 MB file is not silent for 8 s.

The meter only renders; :func:`cml_bot.data.pull` calls it (through the Console) one call at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from cml_bot.files import describe_size

if TYPE_CHECKING:
    from tqdm import tqdm

LOG_EVERY = 10.0  # seconds between plain lines while bytes keep coming
LOG_STEP = 0.1  # ... or this fraction of the total, when the total is known
LOG_MIN_GAP = 1.0  # seconds: no two plain lines closer than this (and none in the first second)
NOTE_WIDTH = 40  # characters of a per-file line shown in front of the bar


class Stream(Protocol):
    """Where the meter draws: a text stream (the console's stdout)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class TransferMeter:
    """Bytes received by every download of one pull; see the module docstring."""

    def __init__(self, out: Stream, *, interactive: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.interactive = interactive
        self.clock = clock
        self.started = clock()
        self.files: dict[str, tuple[int, int | None]] = {}  # path -> (received, size)
        self.resumed = 0  # bytes already on disk when each file's first report came (not this run's rate)
        self.bar: tqdm[None] | None = None
        self.last_line = self.started
        self.last_fraction = 0.0

    @property
    def received(self) -> int:
        return sum(received for received, _ in self.files.values())

    @property
    def total(self) -> int | None:
        """Bytes of all files seen so far, or None while one of them has not said its size."""
        sizes = [size for _, size in self.files.values()]
        return None if any(size is None for size in sizes) else sum(s for s in sizes if s is not None)

    def update(self, path: str, received: int, size: int | None) -> None:
        if path not in self.files:
            self.resumed += received
        self.files[path] = (received, size)
        if self.interactive:
            self._draw()
        else:
            self._log()

    def note(self, line: str) -> None:
        """A per-file line (``[3/10] data/x.csv: downloaded 1.2 MB``) shown in front of the bar."""
        if self.bar is not None:
            self.bar.set_description_str(_shorten(line, NOTE_WIDTH))  # drawn now: a file just finished

    @property
    def drawing(self) -> bool:
        return self.bar is not None

    def close(self) -> None:
        """Take the bar off the screen (the caller's next line replaces it)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _draw(self) -> None:
        if self.bar is None:
            from tqdm import tqdm

            class Bar(tqdm):  # type: ignore[type-arg]
                monitor_interval = 0  # no background thread: the pull's own updates drive the bar

            self.bar = Bar(
                total=self.total,
                unit="B",
                unit_scale=True,
                unit_divisor=1000,  # MB as the per-file lines count them
                file=self.out,
                leave=False,
                dynamic_ncols=True,
                mininterval=0.2,
                desc="downloading",
                initial=self.received,  # bytes resumed from an earlier pull: not part of the rate
            )
            return
        total = self.total
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(self.received - self.bar.n)

    def _log(self) -> None:
        now = self.clock()
        if now - self.last_line < LOG_MIN_GAP:
            return
        total = self.total
        fraction = self.received / total if total else 0.0
        if now - self.last_line < LOG_EVERY and fraction < self.last_fraction + LOG_STEP:
            return
        self.last_line, self.last_fraction = now, fraction
        elapsed = max(now - self.started, 1e-9)
        rate = max(self.received - self.resumed, 0) / elapsed
        of = f" of {describe_size(total)} ({fraction:.0%})" if total else ""
        in_flight = sum(1 for received, size in self.files.values() if size is None or received < size)
        files = f", {in_flight} files in flight" if in_flight > 1 else ""
        self.out.write(f"cml-bot: downloading: {describe_size(self.received)}{of} at {describe_size(rate)}/s{files}\n")
        self.out.flush()


def _shorten(line: str, width: int) -> str:
    return line if len(line) <= width else "..." + line[-(width - 3) :]
