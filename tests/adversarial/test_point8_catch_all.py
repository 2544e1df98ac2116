"""Point 8: whatever goes wrong is one scrubbed line and a distinct exit code; a step's whole process
tree ends with it.

Unexpected exceptions (injected where a bug could be) exit 3 with one line naming a log file that
holds the traceback and the versions, scrubbed; a full disk is one line (exit 2), found through
the real ENOSPC of ``/dev/full`` or of a full tmpfs. Steps that start ``setsid`` children, double-
forked daemons or processes ignoring SIGTERM leave nothing running, whether they end, fail or time
out.
"""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adversarial.conftest import Project
from adversarial.harness import SECRETS, assert_clean, unshare_available
from cml_bot import evaluation as app_module
from cml_bot.cli import EXIT_INTERNAL
from cml_bot.crash import disk_error
from cml_bot.pipeline import MARKER_VARIABLE

TOKEN = SECRETS["CML_BOT_TOKEN"]


def roots(project: Project) -> tuple[Path, Path]:
    return (project.root, project.home)


def crash_log(project: Project, err: str) -> str:
    match = re.search(r"details in (\S+\.log)", err)
    assert match, err
    path = Path(match.group(1))
    assert path.parent == project.tmp and path.stat().st_mode & 0o777 == 0o600
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(RuntimeError(f"boom {TOKEN}"), id="runtime"),
        pytest.param(KeyError("missing"), id="key"),
        pytest.param(RecursionError("maximum recursion depth exceeded"), id="recursion"),
        pytest.param(MemoryError(), id="memory"),
        pytest.param(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), id="unicode"),
        pytest.param(OSError(errno.EACCES, "Permission denied", "/x"), id="oserror"),
    ],
)
def test_an_unexpected_exception_is_one_line_exit_3(
    project: Project, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    def explode(*args: object, **kwargs: object) -> object:
        raise error

    monkeypatch.setattr(app_module, "collect_results", explode)
    run = project.run("report")
    assert_clean(run, code=3, roots=roots(project))
    assert EXIT_INTERNAL == 3
    assert run.err.startswith(f"cml-bot: internal error: {type(error).__name__}")
    log = crash_log(project, run.err)
    assert "Traceback (most recent call last)" in log and "explode" in log
    assert "cml-bot 0.1.0" in log and f"python: {sys.version.split()[0]}" in log and "platform: " in log
    assert TOKEN not in log


def test_the_crash_log_cannot_be_written(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "collect_results", lambda *a, **k: 1 / 0)
    run = project.run("report", env=project.env(TMPDIR=str(project.home / "no" / "such" / "folder")))
    assert_clean(run, code=3, roots=roots(project))
    assert "the details could not be written" in run.err


def test_an_interrupt_is_130(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(app_module, "collect_results", interrupt)
    run = project.run("report")
    assert_clean(run, code=130, roots=roots(project), one_line=False)
    assert run.err == "cml-bot: interrupted\n"


def test_a_full_disk_for_the_step_outputs(project: Project) -> None:
    """``/dev/full`` answers every write with ENOSPC: GITHUB_OUTPUT on a full disk."""
    run = project.run("report", "--dry-run", env=project.env(actions=True, GITHUB_OUTPUT="/dev/full"))
    assert_clean(run, code=2, roots=roots(project), one_line=False)  # after a warning: no token to record with
    assert run.err_lines[-1] == "cml-bot: error: no space left on device"
    assert "::error title=cml-bot::no space left on device" in run.out


@pytest.mark.skipif(not unshare_available(), reason="needs unprivileged user and mount namespaces")
def test_a_full_disk_for_the_report_folder(project: Project) -> None:
    project.write("metrics.json", {f"metric_{i}": i for i in range(3000)})
    project.out.mkdir()
    script = (
        f"mount -t tmpfs -o size=48k tmpfs {project.out} && "
        f"exec {sys.executable} -m cml_bot report -C {project.root} --out {project.out}"
    )
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("cml-bot: error: no space left on device") and done.stderr.count("\n") == 1


def test_disk_errors_are_found_in_an_exception_chain() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/cache/x")
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert disk_error(outer) == "no space left on device (/cache/x)"
    assert disk_error(OSError(errno.EDQUOT, "quota")) == "disk quota exceeded"
    assert disk_error(ValueError("x")) is None


# --- process trees ----------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it is not running)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in (b"Z", b"X")


def pids(project: Project, *names: str) -> list[int]:
    found = []
    for name in names:
        path = project.home / name
        for _ in range(50):  # written by the background process itself
            if path.exists() and path.read_text().strip():
                break
            time.sleep(0.02)
        found.append(int(path.read_text()))
    return found


def step(project: Project, command: str, timeout: float | None = None) -> None:
    limit = f"\n    timeout: {timeout}" if timeout else ""
    project.config(f"pipeline:\n  - name: s\n    run: {json.dumps(command)}{limit}\n")


PID = "echo $$ > {home}/{name}; exec sleep 300"


@pytest.mark.parametrize(
    ("command", "code", "timeout"),
    [
        pytest.param("setsid sh -c '{a}' > /dev/null 2>&1 & sleep 0.2", 0, None, id="setsid-ok"),
        pytest.param("setsid sh -c '{a}' > /dev/null 2>&1 & sleep 0.2; exit 3", 1, None, id="setsid-failed"),
        pytest.param("setsid sh -c '{a}' & sleep 300", 1, 1.0, id="setsid-timed-out"),
        pytest.param("setsid -f sh -c '{a}' > /dev/null 2>&1; sleep 0.2", 0, None, id="double-fork"),
        pytest.param("nohup sh -c '{a}' > /dev/null 2>&1 & sleep 0.2", 0, None, id="nohup"),
        pytest.param("sh -c 'trap \"\" TERM; {a}' & sleep 300", 1, 1.0, id="ignores-term"),
    ],
)
def test_a_step_leaves_nothing_running(project: Project, command: str, code: int, timeout: float | None) -> None:
    background = PID.format(home=project.home, name="a.pid")
    step(project, command.format(a=background), timeout)
    run = project.run("run", seconds=20)
    assert_clean(run, code=code, roots=roots(project), one_line=False, seconds=10)
    (pid,) = pids(project, "a.pid")
    assert not alive(pid), f"process {pid} survived the step"


def test_every_step_gets_its_own_marker(project: Project) -> None:
    project.config(
        "pipeline:\n"
        f"  - name: one\n    run: echo ${MARKER_VARIABLE} > {project.home}/one\n"
        f"  - name: two\n    run: echo ${MARKER_VARIABLE} > {project.home}/two\n"
    )
    run = project.run("run")
    assert_clean(run, code=0, roots=roots(project))
    one, two = ((project.home / n).read_text().strip() for n in ("one", "two"))
    assert one and two and one != two


def test_the_memory_cap_of_the_harness_bites(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases run with a capped address space: a runaway allocation fails (and is reported as
    one line, exit 3) instead of swapping the machine. This is what bounds every other case."""

    def hog(*args: object, **kwargs: object) -> object:
        return bytearray(4 * 1024**3)

    monkeypatch.setattr(app_module, "collect_results", hog)
    run = project.run("report")
    assert_clean(run, code=3, roots=roots(project))
    assert run.err.startswith("cml-bot: internal error: MemoryError")
