"""The CLI's own behaviour: output modes, usage errors and fast startup."""

from __future__ import annotations

import io
import subprocess
import sys

from cml_bot.cli import Console, main


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
