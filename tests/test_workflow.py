"""Which lines the GitHub runner could read as workflow commands (cml_bot.workflow)."""

from __future__ import annotations

import pytest

from cml_bot import workflow

# What .NET's Char.IsWhiteSpace holds (the runner's TrimStart before looking for "::").
DOTNET_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


@pytest.mark.parametrize(
    "line",
    [
        "::add-mask::x",
        "  ::error::x",
        "##[add-mask]x",
        "epoch 1 ##[add-mask]loss",  # the old syntax is found anywhere in the line
        "done ##[stop-commands]x1",
        "acc ##[set-output name=verdict;]passed",
        "cml-bot: pipeline failed: step 'train ##[add-mask]Regressed' exited with 1",
        "##[",  # incomplete: fenced all the same
    ],
)
def test_lines_the_runner_could_run_are_recognised(line: str) -> None:
    assert workflow.reads_as_command(line)


@pytest.mark.parametrize("line", ["epoch 1 loss 0.3", "a :: b", "x::y::z", "## [x]", "#[x]", "50%0A::x"])
def test_plain_lines_are_not_commands(line: str) -> None:
    assert not workflow.reads_as_command(line)


@pytest.mark.parametrize("space", list(DOTNET_WHITESPACE))
def test_any_leading_whitespace_the_runner_trims_is_seen_through(space: str) -> None:
    assert workflow.reads_as_command(f"{space}::add-mask::x")
