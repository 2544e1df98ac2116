"""The pipeline runner, with real shell commands."""

from __future__ import annotations

import base64
import itertools
import os
import time
from pathlib import Path

import pytest

from cml_bot import pipeline
from cml_bot.config import Step
from cml_bot.pipeline import PipelineResult, StepResult, run_pipeline
from cml_bot.secrets import Secrets


def test_steps_run_in_order_in_cwd_with_output_echoed(tmp_path: Path) -> None:
    lines: list[str] = []
    steps = [
        Step("prepare", "echo one > order.txt && echo prepared"),
        Step("train", "echo two >> order.txt; echo to-stderr >&2; pwd"),
    ]

    ticks = iter([0.0, 0.25, 10.0, 134.5])  # the clock read at the start and end of each step

    result = run_pipeline(steps, tmp_path, echo=lines.append, clock=lambda: next(ticks))

    assert result.ok and result.failed_step is None
    assert [s.name for s in result.steps] == ["prepare", "train"]
    assert [s.returncode for s in result.steps] == [0, 0]
    assert (tmp_path / "order.txt").read_text() == "one\ntwo\n"
    assert lines == [
        "cml-bot: step 1/2 prepare: started",
        "$ echo one > order.txt && echo prepared",
        "prepared",
        "cml-bot: step 1/2 prepare: done in 0.25 s",
        "cml-bot: step 2/2 train: started",
        "$ echo two >> order.txt; echo to-stderr >&2; pwd",
        "to-stderr",
        str(tmp_path),
        "cml-bot: step 2/2 train: done in 2 min 04 s",
    ]
    assert result.steps[1].log_tail == ("to-stderr", str(tmp_path))


def test_output_is_echoed_while_the_step_is_still_running(tmp_path: Path) -> None:
    go = tmp_path / "go"

    def echo(line: str) -> None:
        if line == "first":
            go.touch()  # the step only prints "second" if it sees this while running

    command = (
        "echo first; i=0; while [ ! -f go ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; "
        "[ -f go ] && echo second"
    )
    result = run_pipeline([Step("live", command)], tmp_path, echo=echo)

    assert result.ok, result.steps[0].log_tail
    assert result.steps[0].log_tail == ("first", "second")


def test_stops_at_the_first_failure_and_keeps_the_last_50_lines(tmp_path: Path) -> None:
    steps = [
        Step("ok", "true"),
        Step("fails", "for i in $(seq 1 80); do echo line $i; done; echo boom >&2; exit 3"),
        Step("never", "touch never-ran"),
    ]

    result = run_pipeline(steps, tmp_path)

    assert not result.ok
    assert [s.name for s in result.steps] == ["ok", "fails"]
    failed = result.failed_step
    assert failed is not None and failed.name == "fails" and failed.command == steps[1].run
    assert failed.returncode == 3 and not failed.timed_out and not failed.ok
    assert len(failed.log_tail) == 50
    assert failed.log_tail[0] == "line 32" and failed.log_tail[-1] == "boom"
    assert not (tmp_path / "never-ran").exists()


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status  # killed, waiting to be reaped by init


def test_timeout_kills_the_whole_process_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "KILL_GRACE", 0.3)
    steps = [
        # a shell and a child that both ignore SIGTERM: only SIGKILL to the whole group ends them
        Step("hangs", "trap '' TERM; sleep 60 & echo $! > child.pid; echo started; wait", timeout=0.5),
        Step("never", "touch never-ran"),
    ]
    started = time.monotonic()

    result = run_pipeline(steps, tmp_path)

    assert time.monotonic() - started < 10
    [step] = result.steps
    assert step.timed_out and step.returncode is None and not step.ok
    assert step.log_tail[0] == "started"
    assert "timed out after 0.5 s" in step.log_tail[-1]
    assert result.failed_step == step
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)
    assert not (tmp_path / "never-ran").exists()


def test_default_timeout_applies_and_a_step_timeout_overrides_it(tmp_path: Path) -> None:
    result = run_pipeline([Step("slow", "sleep 0.5", timeout=5)], tmp_path, default_timeout=0.1)
    assert result.ok
    result = run_pipeline([Step("slow", "sleep 5")], tmp_path, default_timeout=0.2)
    assert result.steps[0].timed_out


def test_durations_come_from_the_injected_clock(tmp_path: Path) -> None:
    ticks = itertools.chain([100.0, 110.0, 200.0, 215.5], itertools.repeat(999.0))

    result = run_pipeline([Step("a", "true"), Step("b", "true")], tmp_path, clock=lambda: next(ticks))

    assert [s.duration for s in result.steps] == [10.0, 15.5]
    assert result.duration == 25.5


def test_a_step_that_cannot_start_has_no_returncode_and_says_why(tmp_path: Path) -> None:
    result = run_pipeline([Step("train", "true")], tmp_path / "missing")

    [step] = result.steps
    assert step.returncode is None and not step.timed_out and not step.ok
    assert "could not start step 'train'" in step.log_tail[0] and "missing" in step.log_tail[0]


def test_unknown_command_fails_with_the_shell_message(tmp_path: Path) -> None:
    result = run_pipeline([Step("x", "no-such-command-cml-bot")], tmp_path)
    assert result.steps[0].returncode == 127
    assert "no-such-command-cml-bot" in result.steps[0].log_tail[-1]


def test_env_replaces_the_environment_so_tokens_can_be_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "secret-token")
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"}
    env["CML_TEST_VAR"] = "hello"
    command = 'echo "$CML_TEST_VAR"; echo "token=${GITHUB_TOKEN:-}"; command -v sh'

    result = run_pipeline([Step("env", command)], tmp_path, env=env)

    assert result.steps[0].log_tail[:2] == ("hello", "token=")
    assert result.steps[0].log_tail[2].endswith("/sh")
    inherited = run_pipeline([Step("env", 'echo "token=$GITHUB_TOKEN"')], tmp_path)
    assert inherited.steps[0].log_tail == ("token=secret-token",)


def test_progress_bars_invalid_utf8_and_missing_final_newline(tmp_path: Path) -> None:
    command = r"printf '10%%\r50%%\r100%%\r\nbad \377 byte\r\nno newline'"
    result = run_pipeline([Step("bars", command)], tmp_path)
    assert result.steps[0].log_tail == ("100%", "bad \ufffd byte", "no newline")


def test_very_long_lines_are_split(tmp_path: Path) -> None:
    result = run_pipeline([Step("long", "head -c 20000 /dev/zero | tr '\\0' x")], tmp_path)
    assert [len(line) for line in result.steps[0].log_tail] == [8192, 8192, 3616]


def test_empty_pipeline_is_ok(tmp_path: Path) -> None:
    result = run_pipeline([], tmp_path)
    assert result == PipelineResult(steps=()) and result.ok and result.duration == 0


def test_step_result_ok() -> None:
    assert StepResult("a", "true", 0, 1.0, ()).ok
    assert not StepResult("a", "false", 1, 1.0, ()).ok
    assert not StepResult("a", "x", 0, 1.0, (), timed_out=True).ok
    assert not StepResult("a", "x", None, 1.0, ()).ok


def test_a_failing_step_announces_how_it_ended(tmp_path: Path) -> None:
    lines: list[str] = []
    steps = [Step("fails", "exit 3"), Step("never", "true")]
    ticks = iter([0.0, 12.34])
    run_pipeline(steps, tmp_path, echo=lines.append, clock=lambda: next(ticks))
    assert lines == [
        "cml-bot: step 1/2 fails: started",
        "$ exit 3",
        "cml-bot: step 1/2 fails: failed with exit code 3 after 12.3 s",
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0, "0.00 s"),
        (9.994, "9.99 s"),
        (59.94, "59.9 s"),
        (60.2, "1 min 00 s"),
        (3599.4, "59 min 59 s"),
        (7385, "2 h 03 min"),
    ],
)
def test_durations_read_naturally(seconds: float, shown: str) -> None:
    assert pipeline.format_duration(seconds) == shown


# --- a secret across the cut of a long line ----------------------------------------------------------

KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY9"


def _long_line(tmp_path: Path, text: str) -> tuple[str, ...]:
    """The pieces of one line written in two parts, the end after a pause: cml-bot holds an
    unfinished line, so it has to cut it."""
    (tmp_path / "line.txt").write_text(text, encoding="utf-8")
    command = f"cat {tmp_path / 'line.txt'}; sleep 0.2; echo ' end'"
    result = run_pipeline([Step("long", command)], tmp_path, secrets=Secrets.from_env({"AWS_SECRET_ACCESS_KEY": KEY}))
    return result.steps[0].log_tail


def _fragments(value: str, length: int = 6) -> list[str]:
    return [value[at : at + length] for at in range(len(value) - length + 1)]


@pytest.mark.parametrize("offset", [pipeline.MAX_LINE - 2, pipeline.MAX_LINE - 20, 2 * pipeline.MAX_LINE - 39])
def test_a_secret_across_a_cut_is_scrubbed_before_the_cut(tmp_path: Path, offset: int) -> None:
    pieces = _long_line(tmp_path, "x" * offset + KEY + "y" * 3 * pipeline.MAX_LINE)
    assert not [piece for piece in pieces for fragment in _fragments(KEY) if fragment in piece]
    assert "".join(pieces).count("***") == 1
    assert all(len(piece) == pipeline.MAX_LINE for piece in pieces[:-1])


def test_a_base64_form_longer_than_the_secret_across_a_cut(tmp_path: Path) -> None:
    header = base64.b64encode(f"x-access-token:{KEY}".encode()).decode()  # git's extraheader
    pieces = _long_line(tmp_path, "x" * (pipeline.MAX_LINE - len(header) // 2) + header + "y" * 9000)
    assert not [piece for piece in pieces for fragment in _fragments(header, 8) if fragment in piece]


def test_url_userinfo_across_a_cut(tmp_path: Path) -> None:
    url = "https://deploy:hunter2hunter2@host/x"  # no known secret: the userinfo pattern finds it
    pieces = _long_line(tmp_path, "x" * (pipeline.MAX_LINE - 20) + " " + url + " " + "y" * 9000)
    assert "hunter" not in "".join(pieces) and "https://***@host/x" in "".join(pieces)


def test_secrets_default_to_those_of_the_steps_environment(tmp_path: Path) -> None:
    command = 'printf x%.0s $(seq 8190); printf %s "$MY_API_KEY"; printf y%.0s $(seq 9000); sleep 0.2; echo'
    result = run_pipeline([Step("long", command)], tmp_path, env={"PATH": os.environ["PATH"], "MY_API_KEY": KEY})
    assert not [piece for piece in result.steps[0].log_tail for fragment in _fragments(KEY) if fragment in piece]


def test_a_runaway_line_stays_bounded(tmp_path: Path) -> None:
    # 3 MB without a newline: passed on in MAX_LINE pieces as it comes, never held whole
    pieces: list[str] = []
    run_pipeline([Step("long", "head -c 3000000 /dev/zero | tr '\\0' x; sleep 0.2")], tmp_path, echo=pieces.append)
    output = pieces[2:-1]  # after "started" and "$ command", before "done"
    assert sum(map(len, output)) == 3_000_000
    assert max(map(len, output)) <= pipeline.MAX_LINE + Secrets().span
