"""Point 3: no untrusted text ever starts a GitHub workflow command.

Each case runs the CLI as a GitHub Actions job (``GITHUB_ACTIONS=true``, ``--dry-run``) with hostile
text in metric names, step names and output, paths and errors, then reads stdout and stderr the way
the runner does (:func:`runner_commands`): a line starting with ``::`` after leading whitespace, or
holding the old ``##[`` anywhere, is a command, unless commands are stopped with
``::stop-commands::TOKEN``. The only
commands allowed are cml-bot's own annotations; their data, decoded, must be the hostile text as
it was. ``$GITHUB_OUTPUT`` is parsed as the runner parses it and must hold exactly cml-bot's keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import GitRepo
from fake_github import FakeGitHub, fake_github
from test_bundle_trust import fork_run, publish, tamper

from adversarial.conftest import Project
from adversarial.harness import Run, assert_clean, run_cli
from cml_bot import workflow

__all__ = ["fake_github"]  # the fixture, imported for pytest

# The commands the runner registers (actions/runner, src/Runner.Worker/*CommandExtension*), and
# ``stop-commands``; names are compared ignoring case.
REGISTERED = frozenset(
    {
        "stop-commands", "set-env", "set-output", "save-state", "add-mask", "add-path", "add-matcher",
        "remove-matcher", "warning", "error", "notice", "debug", "group", "endgroup", "echo",
    }
)  # fmt: skip


def _decode(data: str) -> str:
    return data.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


def _parse(line: str, registered: frozenset[str]) -> tuple[str, dict[str, str], str] | None:
    """One line as the runner parses it (ActionCommand.TryParseV2, then the legacy TryParse): the
    current syntax when the line, after leading whitespace, starts with ``::``; else the old one,
    ``##[name props]data``, found *anywhere* in the line (``IndexOf("##[")``)."""
    trimmed = line.lstrip()
    if trimmed.startswith("::"):
        end = trimmed.find("::", 2)
        if end >= 0:
            name, _, props_text = trimmed[2:end].partition(" ")
            if name.lower() in registered:
                pairs = [part.split("=", 1) for part in props_text.split(",") if "=" in part]
                return name, {k: _decode(v) for k, v in pairs}, _decode(trimmed[end + 2 :])
    start = line.find("##[")
    if start >= 0:
        end = line.find("]", start)
        if end >= 0:
            name, _, props_text = line[start + 3 : end].partition(" ")
            if name.lower() in registered:
                pairs = [part.split("=", 1) for part in props_text.split(";") if "=" in part]
                return "##[" + name, dict(pairs), line[end + 1 :]
    return None


def runner_commands(text: str) -> list[tuple[str, dict[str, str], str]]:
    """The workflow commands the runner would run from ``text`` (one stream), decoded. A line that
    starts with ``::`` or holds ``##[`` without parsing as a command is reported too (``?``): an
    attempt that a different name or runner version could turn into one."""
    found: list[tuple[str, dict[str, str], str]] = []
    stopped: str | None = None
    for line in re.split(r"\r\n|\r|\n", text):
        if stopped is not None:
            command = _parse(line, REGISTERED | {stopped.lower()})
            if command is not None and command[0].removeprefix("##[").lower() == stopped.lower():
                stopped = None
            continue
        command = _parse(line, REGISTERED)
        if command is None:
            if line.lstrip().startswith("::") or "##[" in line:
                found.append(("?", {}, line))
            continue
        if command[0].removeprefix("##[") == "stop-commands":
            stopped = command[2]
            continue
        found.append(command)
    return found


def assert_only_annotations(run: Run) -> list[tuple[str, dict[str, str], str]]:
    commands = runner_commands(run.out) + runner_commands(run.err)
    for name, props, _ in commands:
        assert name in ("error", "warning"), commands
        assert props.get("title", "").startswith("cml-bot"), commands
    return commands


def parse_outputs(text: str) -> dict[str, str]:
    """``$GITHUB_OUTPUT`` as the runner reads it (``name=value`` or ``name<<DELIMITER``)."""
    lines = iter(text.split("\n"))
    found = {}
    for line in lines:
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value = []
            for inner in lines:
                if inner == delimiter:
                    break
                value.append(inner)
            else:
                raise AssertionError(f"unterminated output {name}")
            found[name] = "\n".join(value)
        else:
            name, value_text = line.split("=", 1)
            found[name] = value_text
    return found


NAMES = [
    pytest.param("x\n::error::pwned", id="lf"),
    pytest.param("x\r::add-mask::pwned", id="cr"),
    pytest.param("x\r\n::set-output name=verdict::pass", id="crlf"),
    pytest.param("50%0A::set-env name=A::b", id="percent-encoded"),
    pytest.param("x\u2028::error::u2028", id="line-separator"),
    pytest.param("x\x85::warning::nel", id="nel"),
    pytest.param("::stop-commands::abc", id="stop-commands"),
    pytest.param("##[error]old style", id="old-style"),
    pytest.param("a,title=x::y:z", id="property-syntax"),
]


@pytest.mark.parametrize("name", NAMES)
def test_a_hostile_metric_name_in_annotations_and_summary(project: Project, name: str) -> None:
    project.config("thresholds:\n  '*': {min: 0.95}\n")
    project.write("metrics.json", {name: 0.5})
    run = project.run("report", "--dry-run", env=project.env(actions=True))
    assert_clean(run, code=0, roots=(project.root, project.home), one_line=False)
    commands = assert_only_annotations(run)
    # the regression annotation carries the name, decoded exactly (line breaks shown as spaces)
    assert any(cmd == "error" and data.endswith("is below the minimum 0.95") for cmd, _, data in commands), commands
    assert set(parse_outputs(project.outputs.read_text(encoding="utf-8"))) == {"verdict", "report-path", "comment-url"}
    summary_lines = [line for line in run.out.splitlines() if line.startswith("cml-bot: regressed")]
    assert len(summary_lines) == 1, run.out


@pytest.mark.parametrize(
    "output",
    [
        pytest.param("::add-mask::leaked-value", id="add-mask"),
        pytest.param("   ::set-env name=LD_PRELOAD::/tmp/x.so", id="indented"),
        pytest.param("::stop-commands::evil\n::error::inside\n::evil::\n::error::after", id="own-stop"),
        pytest.param("##[set-output name=a;]b", id="old-style"),
        pytest.param("\t::add-path::/tmp/evil", id="tab"),
        # The old syntax is found anywhere in a line (ActionCommand.TryParse: IndexOf("##[")).
        pytest.param("epoch 1 ##[add-mask]loss", id="old-style-mid-line"),
        pytest.param("done ##[stop-commands]x1\n##[error]after the stop", id="old-style-stop-mid-line"),
        pytest.param("loss 0.3 ##[set-output name=verdict;]passed", id="old-style-set-output"),
    ],
)
def test_a_step_printing_workflow_commands(project: Project, output: str) -> None:
    (project.home / "out.txt").write_text(output + "\n", encoding="utf-8")
    project.config(f"pipeline:\n  - name: s\n    run: cat {project.home / 'out.txt'}\n")
    run = project.run("run", "--dry-run", env=project.env(actions=True))
    assert_clean(run, code=0, roots=(project.root, project.home))
    assert runner_commands(run.out) == [], runner_commands(run.out)
    # and the output left the runner processing commands (no stop-commands of its own in force)
    assert runner_commands(run.out + "\n::error::probe") == [("error", {}, "probe")]
    for line in output.split("\n"):
        assert line in run.out  # shown as it was, only not run


def test_a_hostile_step_name_in_the_failure_line(project: Project) -> None:
    project.config('pipeline:\n  - name: "s\\n::add-path::/tmp/evil\\r::error::x"\n    run: exit 2\n')
    run = project.run("run", "--dry-run", env=project.env(actions=True))
    assert_clean(run, code=1, roots=(project.root, project.home), one_line=False)
    assert runner_commands(run.out) == [] and runner_commands(run.err) == []
    [summary] = [line for line in run.out.splitlines() if line.startswith("cml-bot: pipeline failed")]
    assert "%0A" not in summary and "/tmp/evil" in summary


def test_a_hostile_output_folder_in_outputs_and_lines(project: Project) -> None:
    out = project.home / "o\nverdict<<EOF\npass\nEOF\n::error::x"
    run = run_cli(
        ["report", "--dry-run", "-C", str(project.root), "--out", str(out)],
        project.env(actions=True),
        watch=[project.root, project.home],
    )
    assert_clean(run, code=0, roots=(project.root, project.home))
    assert assert_only_annotations(run) == []
    outputs = parse_outputs(project.outputs.read_text(encoding="utf-8"))
    assert set(outputs) == {"verdict", "report-path", "comment-url"}
    assert outputs["report-path"] == str(out / "report.md")  # the injected lines stay inside the value


def test_a_config_error_with_a_command_in_a_key(project: Project) -> None:
    project.write("cml-bot.yaml", 'metrics: [metrics.json]\n"x\\n::add-mask::pwned": 1\n')
    run = project.run("report", "--dry-run", env=project.env(actions=True))
    assert_clean(run, code=2, roots=(project.root, project.home))
    commands = assert_only_annotations(run)
    assert [cmd for cmd, _, _ in commands] == ["error"] and "unknown key" in commands[0][2]


def test_an_internal_error_with_a_command_in_its_message(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from cml_bot import evaluation as app

    def explode(*args: object, **kwargs: object) -> object:
        raise ValueError("bad\n::add-mask::pwned\r::set-output name=x::y")

    monkeypatch.setattr(app, "collect_results", explode)
    run = project.run("report", "--dry-run", env=project.env(actions=True))
    assert_clean(run, code=3, roots=(project.root, project.home))
    assert [cmd for cmd, _, _ in assert_only_annotations(run)] == ["error"]


def test_a_log_record_with_a_command(project: Project) -> None:
    project.config('pipeline:\n  - name: "n\\n::add-mask::pwned"\n    run: "true"\n')
    run = project.run("-v", "run", "--dry-run", env=project.env(actions=True))
    assert_clean(run, code=0, roots=(project.root, project.home))
    assert runner_commands(run.err) == [] and "step n%0A::add-mask::pwned" in run.err


def test_workflow_helpers_escape_as_github_documents() -> None:
    assert workflow.escape_data("a%b\r\nc") == "a%25b%0D%0Ac"
    assert workflow.escape_property("t:1,2%\n") == "t%3A1%2C2%25%0A"
    assert workflow.command("error", "x\n::y", title="a:b,c") == "::error title=a%3Ab%2Cc::x%0A::y"
    fence = workflow.fenced("::add-mask::x")
    assert fence[1] == "::add-mask::x" and fence[0] == f"::stop-commands::{fence[2][2:-2]}"
    assert workflow.fenced("x")[0] != workflow.fenced("x")[0]  # a fresh token each time
    delimiters = iter(["EOF", "EOF2"])
    assert workflow.output_entry("k", "a\nEOF\nb", lambda: next(delimiters)) == "k<<EOF2\na\nEOF\nb\nEOF2\n"
    assert workflow.one_physical_line("a\nb\rc\u2028d") == "a%0Ab%0Dc<U+2028>d"


def test_a_usage_error_quoting_a_hostile_argument(project: Project) -> None:
    run = run_cli(["report", "--base"], project.env(actions=True), watch=[project.home])
    assert run.code == 2
    # argparse quotes an unrecognized argument raw, newline and all
    run = run_cli(["report", "extra\n::add-mask::pwned"], project.env(actions=True), watch=[project.home])
    assert run.code == 2 and runner_commands(run.err) == [] and runner_commands(run.out) == []
    assert "unrecognized arguments: extra" in run.err and "::add-mask::pwned" in run.err  # shown, not run


def test_an_old_style_command_inside_a_metric_name_in_a_threshold_warning(project: Project) -> None:
    # "thresholds: 'acc' matches no metric; closest: <name>": the hostile name is in the middle of a line.
    project.config("thresholds:\n  acc: {min: 0.5}\n")
    project.write("metrics.json", {"acc ##[set-output name=verdict;]passed": 0.9})
    run = project.run("report", "--dry-run", env=project.env(actions=True))
    assert_clean(run, code=0, roots=(project.root, project.home), one_line=False)
    warning = [line for line in run.err_lines if "matches no metric" in line]
    assert warning and "##[set-output name=verdict;]passed" in warning[0], run.err  # shown, not run
    assert runner_commands(run.err) == [] and runner_commands(run.out) == []


def test_the_runner_model_finds_old_style_commands_mid_line() -> None:
    """The model the cases above rely on, checked against what the runner's parsers do."""
    assert runner_commands("epoch ##[add-mask]x") == [("##[add-mask", {}, "x")]
    assert runner_commands("x ##[set-output name=a;]b") == [("##[set-output", {"name": "a"}, "b")]
    assert runner_commands("  ::error title=t%3A1::m ##[add-mask]x") == [("error", {"title": "t:1"}, "m ##[add-mask]x")]
    assert runner_commands("::stop-commands::t\nx ##[add-mask]y\n##[t]\n::error::z") == [("error", {}, "z")]
    assert runner_commands("a ##[not-a-command]b") == [("?", {}, "a ##[not-a-command]b")]
    assert runner_commands("plain ## [text] and :: here") == []


def test_a_tampered_bundle_names_a_step_with_an_old_style_command(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    """The fork's bundle reaches the trusted ``publish`` job: its step name ends up in the middle of
    "cml-bot: pipeline failed: step '...' exited with 1" on that job's stdout."""
    bundle = fork_run(fake_github, repo, tmp_path)

    def attack(document: dict[str, Any]) -> None:
        metrics = document["head"]["metrics"]
        metrics["accuracy ##[stop-commands]pwn"] = metrics.pop("accuracy")
        document["pipeline"] = [
            {
                "name": "train ##[add-mask]Regressed",
                "command": "python t.py",
                "returncode": 1,
                "duration": 1.0,
                "log_tail": ["ok ##[error]forged"],
                "timed_out": False,
            }
        ]

    tamper(bundle, attack)
    code, out, err = publish(fake_github, repo, tmp_path, bundle)
    assert code in (0, 1), out + err
    assert "step 'train ##[add-mask]Regressed' exited with 1" in out  # shown, not run
    for stream in (out, err):
        commands = runner_commands(stream)
        assert all(name in ("error", "warning") for name, _, _ in commands), commands
