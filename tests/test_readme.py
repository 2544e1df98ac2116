"""README's first lines are what a new user types: each makes and activates a venv, and .ci/run runs
the test line exactly as written (in a fresh clone)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = "python3 -m venv .venv && . .venv/bin/activate && "


def _first_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```sh\n(.*?)```", text, re.S)
    assert match and text.index(match.group(0)) < text.index("\n## "), "the first section starts with a sh block"
    return [re.sub(r"\s+#.*$", "", line) for line in match.group(1).splitlines() if line.strip()]


def test_the_first_two_commands_make_a_venv_then_run_the_demo_and_the_tests() -> None:
    assert _first_block() == [
        VENV + "pip install -e '.[demo]' && cml-bot demo",
        VENV + "pip install -e '.[test]' && python -m pytest",
    ]


def test_ci_runs_the_readmes_test_line_verbatim() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    (extract,) = [line for line in script.splitlines() if line.startswith("readme_tests=")]
    done = subprocess.run(
        ["bash", "-c", f'{extract}\nprintf "%s" "$readme_tests"'], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout == _first_block()[1]
    assert 'bash -euo pipefail -c "$readme_tests"' in script  # run, not just found
    assert script.rstrip().endswith('env -u VIRTUAL_ENV PATH="$user_path" bash -euo pipefail -c "$readme_tests"')


def test_the_markers_the_readme_lists_are_the_ones_the_report_shows() -> None:
    from types import SimpleNamespace
    from typing import cast

    from cml_bot.diff import MetricChange, Outcome
    from cml_bot.report_stats import INCONCLUSIVE, REGRESSED, mark

    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    match = re.search(r"markers that read without colour \((.*?)\), how each change", text)
    assert match, "README's report section lists the table's markers"
    listed = [item.strip() for item in match.group(1).split(",")]
    shown = {REGRESSED, INCONCLUSIVE}
    for outcome in Outcome:
        shown.add(mark(cast(MetricChange, SimpleNamespace(outcome=outcome))))  # mark reads only .outcome
    marks = [item for item in listed if not item.startswith('"')]  # "single run": a phrase, not a mark
    assert set(marks) == shown - {"changed"}  # "changed": no direction to mark
