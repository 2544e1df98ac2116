"""The CLI's own behaviour: output modes, usage errors and fast startup."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from conftest import GitRepo

from cml_bot.cli import Console, _parser, main


def test_progress_redraws_on_a_terminal_and_prints_lines_in_ci() -> None:
    terminal = io.StringIO()
    console = Console(terminal, io.StringIO(), interactive=True)
    console.progress("[1/2] a.csv: downloaded")
    console.progress("[2/2] b.csv: downloaded")
    console.say("done")
    assert terminal.getvalue().count("\r") == 2
    assert terminal.getvalue().rstrip().endswith("\ndone")

    log = io.StringIO()
    plain = Console(log, io.StringIO(), interactive=False)
    plain.progress("[1/2] a.csv: downloaded")
    plain.progress("[2/2] b.csv: downloaded")
    assert log.getvalue() == "[1/2] a.csv: downloaded\n[2/2] b.csv: downloaded\n"


def test_usage_errors_return_2_without_raising() -> None:
    err = io.StringIO()
    assert main(["report", "--mode", "sideways"], env={}, console=Console(io.StringIO(), err)) == 2
    assert main(["no-such-command"], env={}, console=Console(io.StringIO(), err)) == 2


def test_help_does_not_import_heavy_modules() -> None:
    probe = (
        "import sys; from cml_bot.cli import main; main(['--help']);"
        "heavy = [m for m in ('matplotlib', 'pandas', 'github', 'gitlab', 'numpy', 'requests') if m in sys.modules];"
        "print('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout


def test_bare_command_prints_help_and_exits_0() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main([], env={}, console=Console(out, err)) == 0
    assert out.getvalue() == _parser().format_help()  # as argparse lays it out: one line per line
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("usage: cml-bot") and "%0A" not in out.getvalue()
    assert len(lines) > 20
    for command in ("demo", "report", "run", "diff", "record", "merge", "pull", "data", "publish"):
        assert any(line.split()[:1] == [command] for line in lines), command  # each on its own line
    assert err.getvalue() == ""
    # Options without a command are still a mistake.
    assert main(["-v"], env={}, console=Console(io.StringIO(), io.StringIO())) == 2


def test_help_goes_through_the_console_as_lines() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["report", "--help"], env={}, console=Console(out, err)) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("usage: cml-bot report") and "%0A" not in out.getvalue()
    assert any(line.strip().startswith("--dry-run") for line in lines)
    assert err.getvalue() == ""
    # In GitHub Actions each line is still gated: none can run as a workflow command.
    gated = io.StringIO()
    assert main([], env={"GITHUB_ACTIONS": "true"}, console=Console(gated, io.StringIO())) == 0
    assert gated.getvalue().splitlines()[0].startswith("usage: cml-bot")


class _ClosedPipe(io.StringIO):
    """A stdout whose reader has gone (`| head -1`): every write fails as a closed pipe does."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_stops_the_printing_not_the_console() -> None:
    err = io.StringIO()
    console = Console(_ClosedPipe(), err, interactive=False)
    console.say("first line")  # no exception
    console.text("a\nb")
    console.progress("[1/1] a.csv")
    console.transfer("a.csv", 10, 100)
    console.warn("still on stderr")
    assert err.getvalue() == "still on stderr\n"


PROJECT = """\
title: Pipes
metrics: [metrics.json]
pipeline:
  - name: train
    run: python train.py
"""
TRAIN = """\
import json
for epoch in range(2000):  # more than a pipe holds: the reader thread meets the closed stdout
    print("epoch", epoch)
json.dump({"accuracy": 0.9}, open("metrics.json", "w"))
"""


def _closed_stdout_run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``cml-bot ARGS | head -0``: the reader of stdout is gone before cml-bot writes a line."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "cml_bot", *args],
            cwd=cwd,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)


def test_a_closed_stdout_still_writes_the_report_and_exits_with_the_runs_code(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", PROJECT)
    repo.write("train.py", TRAIN)
    repo.write(".gitignore", "metrics.json\n")
    repo.commit()
    result = _closed_stdout_run(["run", "--dry-run"], repo.root)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert "accuracy" in (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8")
    # The bare command's help into a closed pipe: nothing to say about it.
    result = _closed_stdout_run([], repo.root)
    assert (result.returncode, result.stderr) == (0, "")


def _commands(parser: argparse.ArgumentParser, path: str = "cml-bot") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{path} {name}")


def test_every_command_and_option_explains_itself() -> None:
    missing = []
    commands = list(_commands(_parser()))
    assert len(commands) >= 10  # cml-bot, its 8 commands, data add
    for path, parser in commands:
        if not parser.description:
            missing.append(f"{path}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                shown = {choice.dest for choice in action._choices_actions}
                missing += [f"{path} {name}: no help" for name in action.choices if name not in shown]
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}: no help")
    assert missing == []
