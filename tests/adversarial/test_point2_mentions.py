"""Point 2: untrusted text pings no one, links nothing and hides nothing, on either forge.

Each case plants hostile text where a pull request controls it (metric names, values, params, step
names, log lines), runs the real CLI, renders the report it wrote with markdown-it (CommonMark, GFM
tables, raw HTML, as both forges accept it), and looks for live mentions, references and quick
actions with the patterns of both forges (tests/forge_patterns.py). The text must still read the
same once the zero-width spaces are ignored; invisible characters must be shown by name.
"""

from __future__ import annotations

import json
import unicodedata

import pytest
from forge_patterns import live_references, quick_actions, rendered_text
from markdown_it import MarkdownIt

from adversarial.conftest import Project
from adversarial.harness import assert_clean
from cml_bot import markdown as md

PARSER = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")

HOSTILE = [
    pytest.param("@alice", id="user"),
    pytest.param("@all", id="all"),
    pytest.param("@org/team", id="team"),
    pytest.param("ping @octocat.", id="user-dot"),
    pytest.param("fixes #1", id="issue"),
    pytest.param("owner/repo#7", id="cross-repo"),
    pytest.param("GH-42", id="gh-prefix"),
    pytest.param("GL-3", id="gl-prefix"),
    pytest.param("see !12", id="merge-request"),
    pytest.param("~bug", id="label"),
    pytest.param('~"feature request"', id="label-quoted"),
    pytest.param("%v1.0", id="milestone"),
    pytest.param("$123", id="snippet"),
    pytest.param("&45", id="epic"),
    pytest.param("[vulnerability:1]", id="vulnerability"),
    pytest.param("deadbeefcafe1234", id="sha"),
    pytest.param("octo@deadbeef", id="user-sha"),
    pytest.param("https://github.com/octo/repo/issues/1", id="issue-url"),
    pytest.param("www.example.com/x", id="www"),
    pytest.param("mail me@example.com", id="email"),
    pytest.param("&#64;alice &commat;bob", id="entities"),
    pytest.param("*iteration:42", id="iteration"),
    pytest.param('*iteration:"Sprint 3"', id="iteration-quoted"),
    pytest.param("gitlab-org/gitlab>", id="project"),
    pytest.param("{+ APPROVED BY SECURITY +}", id="inline-diff"),
    pytest.param(":warning: check", id="emoji"),
]


def render(project: Project) -> str:
    """The text the forges scan: the report rendered, outside code and links."""
    return rendered_text(PARSER.render(project.out.joinpath("report.md").read_text(encoding="utf-8")))


def as_read(text: str) -> str:
    return text.replace(md.ZWSP, "")


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_metric_name_and_value(project: Project, name: str) -> None:
    project.config("thresholds:\n  '*': {min: 0.95}\n")
    project.write("metrics.json", {name: 0.5, "accuracy": 0.9, "note": f"value {name}"})
    run = project.run("report")
    assert_clean(run, code=0, roots=(project.root, project.home))
    text = render(project)
    assert not live_references(text), live_references(text)
    assert name in as_read(text)  # still reads the same
    assert f"value {name}" in as_read(text)


@pytest.mark.parametrize(
    "name",
    [pytest.param("@alice", id="user"), pytest.param("#1 and !2", id="refs"), pytest.param("@all ~bug", id="mix")],
)
def test_a_hostile_param_and_step_name(project: Project, name: str) -> None:
    project.config(f"pipeline:\n  - name: {json.dumps(name)}\n    run: exit 4\n")
    project.write("params.yaml", f"lr: 0.2\n{json.dumps(name)}: {json.dumps(name)}\n")
    run = project.run("run")
    assert_clean(run, code=1, roots=(project.root, project.home), one_line=False)
    text = render(project)
    assert not live_references(text), live_references(text)
    assert f"Step {name} exited with 4" in as_read(text)


def test_quick_actions_in_a_log_tail(project: Project) -> None:
    """GitLab runs ``/close`` at the start of a line outside a block fenced with exactly three
    backticks; a log with backticks makes the fence longer, so the line itself is broken."""
    project.config("pipeline:\n  - name: s\n    run: \"printf '```\\n/close\\n/merge\\n/approve\\n'; exit 1\"\n")
    run = project.run("run")
    assert_clean(run, code=1, roots=(project.root, project.home), one_line=False)
    report = project.out.joinpath("report.md").read_text(encoding="utf-8")
    assert not quick_actions(report), quick_actions(report)
    assert "/close" in as_read(report)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        pytest.param("admin\u202e\u2066txt.exe", "admin<U+202E><U+2066>txt.exe", id="bidi"),
        pytest.param("ad\u200bmin\u200d", "ad<U+200B>min<U+200D>", id="zero-width"),
        pytest.param("a\U000e0041\U000e0042b", "a<U+E0041><U+E0042>b", id="tags"),
        pytest.param("x\u2060y\ufeffz", "x<U+2060>y<U+FEFF>z", id="joiner-bom"),
    ],
)
def test_invisible_characters_are_shown(project: Project, name: str, shown: str) -> None:
    project.write("metrics.json", {name: 0.5, "accuracy": 0.9})
    project.config(f"pipeline:\n  - name: s\n    run: printf '{name}\\n'; exit 1\n")
    run = project.run("run")
    assert_clean(run, code=1, roots=(project.root, project.home), one_line=False)
    report = project.out.joinpath("report.md").read_text(encoding="utf-8")
    for char in name:
        if unicodedata.category(char) == "Cf":  # format characters: invisible
            assert char not in report.replace(md.ZWSP, ""), hex(ord(char))
    assert shown in as_read(render(project))  # in the metrics table
    assert shown in report  # and in the log tail (a code block)
    assert shown in run.out or shown in run.err or "pipeline failed" in run.out


def test_html_entities_do_not_smuggle_a_mention() -> None:
    """CommonMark decodes entities before the forges look: ``&#64;`` must not be produced."""
    for value in ("@alice", "&#64;alice", "&commat;alice", "@\u200balice"):
        escaped = md.cell(value)
        assert "&#64;" not in escaped
        text = rendered_text(PARSER.render(f"| h |\n|---|\n| {escaped} |\n"))
        assert not live_references(text), (value, text)
