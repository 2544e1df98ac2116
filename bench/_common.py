"""Timing helpers shared by the benchmarks: median of repeated wall-clock runs, peer lookup."""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# A fixed git identity and no user or system config, for the repositories the benchmarks build.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def median_seconds(action: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class Timing:
    wall: float  # median wall-clock seconds
    cpu: float  # median CPU seconds (user + system) of the processes the action started and waited for


def side_by_side(actions: dict[str, Callable[[], object]], repeat: int = 5) -> dict[str, Timing]:
    """Median wall and CPU time of each action (a command run as a subprocess), run in turns (one
    of each per round, the order rotating) so a change in the machine's load affects them alike.
    CPU time does not count waiting for a busy machine: it tells what each costs in itself."""
    walls: dict[str, list[float]] = {label: [] for label in actions}
    cpus: dict[str, list[float]] = {label: [] for label in actions}
    labels = list(actions)
    for round_number in range(repeat):
        shift = round_number % len(labels)
        for label in labels[shift:] + labels[:shift]:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            actions[label]()
            walls[label].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[label].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {label: Timing(statistics.median(walls[label]), statistics.median(cpus[label])) for label in labels}


def command_seconds(args: Sequence[str], cwd: Path | None = None, repeat: int = 5) -> float:
    """Median wall time of a command; fails loudly if the command fails."""

    def once() -> None:
        subprocess.run(args, cwd=cwd, check=True, capture_output=True, env=os.environ.copy())

    once()  # warm the page cache so both sides start alike
    return median_seconds(once, repeat)


def tool(name: str) -> str | None:
    """A console script installed beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def row(label: str, seconds: float | None, note: str = "") -> str:
    shown = "n/a" if seconds is None else f"{seconds:.3f} s"
    return f"{label:<48} {shown:>10}  {note}"
