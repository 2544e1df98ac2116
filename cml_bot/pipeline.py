"""Run the project's commands: the one place that starts subprocesses.

Each step runs through the shell in the repo, in its own session, with stdout and stderr merged.
Every output line is passed live to ``echo`` as it arrives and the last :data:`TAIL_LINES` lines are
kept for the report. The pipeline stops at the first failing step. A step that outlives its timeout
is marked ``timed_out``.

A line that grows past :data:`MAX_LINE` characters without ending is passed on in pieces, so a
runaway line cannot exhaust memory. Every later reader scrubs secrets line by line, and a secret
cut in two would match in neither piece: such a line is therefore scrubbed *before* it is cut, and
the cut waits until :attr:`Secrets.span <cml_bot.secrets.Secrets.span>` characters past it have
arrived, so every secret that crosses a cut is whole when it is scrubbed.

A step ends with everything it started. Its processes are found by their process group and
session and, for those that left both (``setsid``, daemons), by a marker variable
(:data:`MARKER_VARIABLE`, unique per step) that every descendant inherits in its environment
(read from ``/proc/<pid>/environ`` on Linux). When the step's shell exits, or its timeout expires,
they get SIGTERM, then SIGKILL after :data:`KILL_GRACE` seconds. A process that clears its own
environment *and* leaves the session (``env -i setsid ...``) cannot be told from others and
survives; a cgroup would be needed for that.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex

from cml_bot.config import Step
from cml_bot.secrets import Secrets

log = logging.getLogger(__name__)

TAIL_LINES = 50
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a timed-out step's process group
EOF_GRACE = 5.0  # seconds to wait for output from leftovers after a step's main process exited
MAX_LINE = 8192  # an unfinished line longer than this is passed on in pieces of this size
MARKER_VARIABLE = "CML_BOT_STEP"  # set for each step; its descendants carry it in their environment
_POLL = 0.05


@dataclass(frozen=True)
class StepResult:
    name: str
    command: str
    returncode: int | None  # None when it timed out or could not start
    duration: float  # seconds
    log_tail: tuple[str, ...]  # last <= 50 lines of combined stdout/stderr
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass(frozen=True)
class PipelineResult:
    steps: tuple[StepResult, ...]

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def failed_step(self) -> StepResult | None:
        return next((step for step in self.steps if not step.ok), None)

    @property
    def duration(self) -> float:
        return sum(step.duration for step in self.steps)


def run_pipeline(
    steps: Sequence[Step],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    default_timeout: float | None = None,
    secrets: Secrets | None = None,
) -> PipelineResult:
    """Run ``steps`` in order in ``cwd``; stop at the first one that fails.

    ``env`` is the steps' whole environment (None: inherit ours), so a caller can leave tokens
    out of it. ``secrets`` are scrubbed from a long line before it is cut (None: those of our own
    environment and of the steps', see :func:`step_secrets`). ``echo`` receives
    ``"cml-bot: step 1/3 train: started"``, ``"$ <command>"``, each output line (without its
    newline) as it arrives, then ``"cml-bot: step 1/3 train: done in 12.3 s"`` (or how it failed);
    output lines come from a reader thread, one call at a time. ``clock`` only measures durations;
    the timeout (``step.timeout``, else ``default_timeout``) is enforced in real time.
    """
    results: list[StepResult] = []
    for number, step in enumerate(steps, start=1):
        timeout = step.timeout if step.timeout is not None else default_timeout
        # Announced around the step's own output, so a long CI log shows where each step starts and ends.
        shown = f"cml-bot: step {number}/{len(steps)} {step.name}"
        if echo is not None:
            echo(f"{shown}: started")
        result = run_step(step, cwd, env=env, echo=echo, clock=clock, timeout=timeout, secrets=secrets)
        if echo is not None:
            echo(f"{shown}: {_ending(result)}")
        results.append(result)
        if not result.ok:
            break
    return PipelineResult(steps=tuple(results))


def _ending(result: StepResult) -> str:
    took = format_duration(result.duration)
    if result.ok:
        return f"done in {took}"
    if result.timed_out:
        return f"timed out after {took}"
    if result.returncode is None:
        return "could not start"
    return f"failed with exit code {result.returncode} after {took}"


def format_duration(seconds: float) -> str:
    """``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``: as precise as a reader of a log needs."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def run_step(
    step: Step,
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    timeout: float | None = None,
    secrets: Secrets | None = None,
) -> StepResult:
    """Run one command through the shell; see :func:`run_pipeline`."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    lock = threading.Lock()

    def emit(line: str) -> None:
        with lock:
            tail.append(line)
            if echo is not None:
                echo(line)

    if echo is not None:
        echo(f"$ {step.run}")
    log.info("step %s: %s", step.name, step.run)
    marker = f"{os.getpid()}-{token_hex(8)}"
    full_env = dict(os.environ if env is None else env)
    if secrets is None:
        secrets = step_secrets(full_env)
    full_env[MARKER_VARIABLE] = marker
    start = clock()
    try:
        proc = subprocess.Popen(
            step.run,
            shell=True,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout can kill all of it
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        emit(f"cml-bot: could not start step {step.name!r} in {cwd}: {reason}")
        return StepResult(step.name, step.run, None, clock() - start, tuple(tail))
    assert proc.stdout is not None
    reader = threading.Thread(target=_read_lines, args=(proc.stdout.fileno(), emit, secrets), daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    except BaseException:  # KeyboardInterrupt: do not leave the step running behind us
        end_tree(proc, marker)
        raise
    end_tree(proc, marker)  # the step is over: whatever it left running goes too
    reader.join(EOF_GRACE)
    if reader.is_alive():  # something we cannot see still holds the output open
        _signal(_tree(proc.pid, marker), signal.SIGKILL)
        reader.join(1.0)
    proc.stdout.close()
    duration = clock() - start
    if timed_out:
        emit(f"cml-bot: step {step.name!r} timed out after {timeout:g} s and was killed")
        return StepResult(step.name, step.run, None, duration, tuple(tail), timed_out=True)
    return StepResult(step.name, step.run, proc.returncode, duration, tuple(tail))


def step_secrets(env: Mapping[str, str]) -> Secrets:
    """The secrets a step could print: those of cml-bot's own environment (the forge tokens a step
    can still find, in ``.git/config`` for one) and those of the step's (see
    :meth:`Secrets.from_env <cml_bot.secrets.Secrets.from_env>`)."""
    return Secrets(Secrets.from_env(os.environ).values | Secrets.from_env(env).values)


def _read_lines(fd: int, emit: Callable[[str], None], secrets: Secrets) -> None:
    """Split the byte stream into lines; a carriage-return progress bar keeps only its last state.
    An unfinished line is cut into :data:`MAX_LINE` pieces once :attr:`Secrets.span` characters
    past the cut have arrived, scrubbed first (see the module docstring): memory stays bounded by
    ``MAX_LINE + span`` plus one read."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lookahead = secrets.span
    pending = ""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        text = decoder.decode(chunk, final=not chunk)
        pending += text
        *lines, pending = pending.split("\n")
        for line in lines:
            emit(_last_state(line))
        if len(pending) > MAX_LINE + lookahead:
            pending = secrets.scrub(_last_state(pending))
            while len(pending) > MAX_LINE + lookahead:
                emit(pending[:MAX_LINE])
                pending = pending[MAX_LINE:]
        if not chunk:
            if pending:
                emit(_last_state(pending))
            return


def _last_state(line: str) -> str:
    """What a terminal shows for ``line``: the text after its last carriage return."""
    line = line.rstrip("\r")
    if "\r" in line:
        return line.rsplit("\r", 1)[1]
    return line


def end_tree(proc: subprocess.Popen[bytes], marker: str) -> None:
    """End the step's main process and every process it started (see the module docstring):
    SIGTERM, then SIGKILL for those still alive after :data:`KILL_GRACE` seconds."""
    _signal(_tree(proc.pid, marker) | ({proc.pid} if proc.poll() is None else set()), signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline:
        if proc.poll() is None or _tree(proc.pid, marker):
            time.sleep(_POLL)
            continue
        return
    left = _tree(proc.pid, marker)
    if proc.poll() is None:
        left.add(proc.pid)
    _signal(left, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE)


def _tree(leader: int, marker: str) -> set[int]:
    """Live processes of a step: in its process group or session (both ``leader``), or carrying
    its marker in their environment. Zombies and cml-bot itself are left out."""
    found: set[int] = set()
    own = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc (macOS): the process group is all we can find; -pgid signals it
        return {-leader} if _alive_group(leader) else set()
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    for entry in entries:
        if not entry.isdigit() or int(entry) == own:
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            state, pgid, sid = fields[0], int(fields[2]), int(fields[3])
            if state in (b"Z", b"X"):
                continue
            if leader in (pgid, sid):
                found.add(pid)
                continue
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.add(pid)
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return found


def _alive_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
