"""The CLI's own behaviour: output modes, usage errors and fast startup."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from collections.abc import Iterator

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
    assert out.getvalue().startswith("usage: cml-bot")
    assert "demo" in out.getvalue() and "publish" in out.getvalue()
    assert err.getvalue() == ""
    # Options without a command are still a mistake.
    assert main(["-v"], env={}, console=Console(io.StringIO(), io.StringIO())) == 2


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
