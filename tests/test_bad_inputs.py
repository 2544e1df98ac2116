"""A corpus of bad inputs, each run through ``cml-bot report --dry-run`` in a temp git repo.

``tests/bad_inputs/<case>/`` holds ``head/`` (files of the change, laid over a valid project),
optionally ``base/`` (files laid over it on main first) and ``expect``: ``2 <text>`` for a one-line
error naming ``<text>``, ``w <text>`` for a report with a warning naming ``<text>`` (on stderr and
in the report: a metrics file missing or malformed, as DVC tolerates), or ``0`` for a report. More
cases are generated here (huge and random files are not committed). Every case must end either with
exit 2 and exactly one line on stderr (no traceback), or exit 0 with a report whose tables keep
their shape and which carries no raw HTML tag, no ``@mention`` and one marker; and no half-written
file (``*.tmp``, ``*.part``) is left.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import GitRepo
from forge_patterns import live_references, rendered_text
from markdown_it import MarkdownIt
from test_reliability import assert_tables_sound

from cml_bot import markdown as md
from cml_bot.cli import Console, main
from cml_bot.markdown import text as md_text

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
MARKER = "<!-- cml-bot report (id: default) -->"
VALID = {
    "cml-bot.yaml": "metrics: [metrics.json]\nparams: [params.yaml]\n",
    "metrics.json": '{"accuracy": 0.8, "loss": 0.4}',
    "params.yaml": "lr: 0.1\n",
}
PARSER = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
HALF_WRITTEN = re.compile(r"(\.tmp|\.part|\.partial|~)$")


def _lay(repo: GitRepo, folder: Path) -> None:
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        target = repo.root / path.relative_to(folder)
        if path.is_symlink():
            target.unlink(missing_ok=True)
            target.symlink_to(os.readlink(path))
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            shutil.copyfile(path, target)


def _prepare(repo: GitRepo, base: Path | None, head: Path | None) -> None:
    for name, text in VALID.items():
        repo.write(name, text)
    if base is not None:
        _lay(repo, base)
    repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "change")
    if head is not None:
        _lay(repo, head)
    repo.commit("change")


def _report(repo: GitRepo, tmp_path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "CML_BOT_CACHE": str(tmp_path / "cache"),
        **{k: v for k, v in os.environ.items() if k.startswith("GIT_")},
    }
    code = main(["report", "--dry-run", "--base", "main", "-C", str(repo.root)], env=env, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def _mentions(markdown: str) -> list[str]:
    """Mentions and references as the forges find them: in the rendered text, outside code."""
    return live_references(rendered_text(PARSER.render(markdown)))


# The HTML a report may produce: markdown's own tags and the <details>/<summary>/<sub> cml-bot writes.
ALLOWED_TAGS = {
    "p",
    "h2",
    "h3",
    "h4",
    "strong",
    "em",
    "code",
    "pre",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "details",
    "summary",
    "sub",
    "ul",
    "ol",
    "li",
    "blockquote",
    "br",
    "hr",
    "del",
    "s",
    "img",
    "a",
}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.bad: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag not in ALLOWED_TAGS:
            self.bad.append(tag)
        elif tag == "img" and not re.fullmatch(r"plot-\d\d-[\w.-]+\.png", values.get("src") or ""):
            self.bad.append(f"img src={values.get('src')}")  # only the report's own plot files
        elif tag == "a" and not (values.get("href") or "").startswith("https://"):
            self.bad.append(f"a href={values.get('href')}")
        if any(name.startswith("on") for name in values):
            self.bad.append(f"{tag} with an event handler")


def _unexpected_html(html: str) -> list[str]:
    """Tags and attributes no report should contain (script, iframe, foreign images, js links)."""
    parser = _Tags()
    parser.feed(html)
    return parser.bad


def check_outcome(code: int, out: str, err: str, repo: GitRepo, tmp_path: Path, expect: str) -> None:
    assert "Traceback" not in out + err
    if code == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("cml-bot: error: "), err
        assert expect.startswith("2"), f"expected {expect!r}, got the error {err.strip()!r}"
        assert expect[2:].strip() in lines[0], lines[0]
    else:
        assert code == 0, f"exit {code}: {out}{err}"
        assert expect == "0" or expect.startswith("w "), f"expected {expect!r}, got a report; {out}{err}"
        report = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8")
        if expect.startswith("w "):
            named = expect[2:].strip()
            warnings = [line for line in err.splitlines() if named in line]
            assert warnings, f"no warning naming {named!r} on stderr: {err!r}"
            assert md_text(named) in report or md.cell(named) in report, f"the report does not name {named!r}"
        assert report.count(MARKER) == 1 and report.startswith(MARKER)
        assert_tables_sound(report)
        assert _unexpected_html(PARSER.render(report)) == []
        assert _mentions(report) == []
        preview = (repo.root / "cml-bot-report" / "index.html").read_text(encoding="utf-8").lower()
        assert "<script" not in preview
    for root in (repo.root, tmp_path / "cache"):
        if root.exists():
            left = [p for p in root.rglob("*") if ".git" not in p.parts and HALF_WRITTEN.search(p.name)]
            assert left == [], left


CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) + len(GENERATED) >= 50
    expectations = [(CORPUS / c / "expect").read_text(encoding="utf-8").strip() for c in CASES]
    assert sum(e == "0" for e in expectations) >= 15
    assert sum(e.startswith(("2", "w")) for e in expectations) >= 30


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: str, repo: GitRepo, tmp_path: Path) -> None:
    folder = CORPUS / case
    expect = (folder / "expect").read_text(encoding="utf-8").strip()
    _prepare(repo, folder / "base" if (folder / "base").is_dir() else None, folder / "head")
    code, out, err = _report(repo, tmp_path)
    check_outcome(code, out, err, repo, tmp_path, expect)


# --- generated: huge and random files ---------------------------------------------------------------


def _huge_metrics(repo: GitRepo) -> str:
    metrics = {f"group{i // 1000}.metric_{i}|<b>@x</b>": i / 7 for i in range(10_000)}
    repo.write("metrics.json", json.dumps(metrics))
    return "0"


def _huge_single_value(repo: GitRepo) -> str:
    repo.write("metrics.json", json.dumps({"accuracy": 0.9, "note": "<script>|@x " * 20_000}))
    return "0"


def _huge_config(repo: GitRepo) -> str:
    repo.write("cml-bot.yaml", "metrics: [metrics.json]\ntitle: " + "x" * 5_000_000 + "\n")
    return "0"


def _random_bytes_metrics(repo: GitRepo) -> str:
    repo.write("metrics.json", random.Random(1).randbytes(200_000))
    return "w metrics.json"


def _random_bytes_config(repo: GitRepo) -> str:
    repo.write("cml-bot.yaml", random.Random(2).randbytes(50_000))
    return "2 cml-bot.yaml"


def _huge_plot(repo: GitRepo) -> str:
    repo.write("cml-bot.yaml", "metrics: [metrics.json]\nplots:\n  - {path: log.csv, x: step, y: [loss]}\n")
    rows = "".join(f"{i},{(i * 7919) % 1000 / 1000}\n" for i in range(300_000))
    repo.write("log.csv", "step,loss\n" + rows)
    return "0"


def _many_columns_csv(repo: GitRepo) -> str:
    repo.write("cml-bot.yaml", "metrics: [m.csv]\n")
    repo.write("m.csv", ",".join(f"c{i}|@x" for i in range(3_000)) + "\n" + ",".join("1" * 3_000) + "\n")
    return "0"


GENERATED: dict[str, Callable[[GitRepo], str]] = {
    "huge_metrics_10k": _huge_metrics,
    "huge_single_value": _huge_single_value,
    "huge_config_title": _huge_config,
    "random_bytes_metrics": _random_bytes_metrics,
    "random_bytes_config": _random_bytes_config,
    "huge_plot_300k_rows": _huge_plot,
    "many_columns_csv": _many_columns_csv,
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_bad_input(name: str, repo: GitRepo, tmp_path: Path) -> None:
    for file, text in VALID.items():
        repo.write(file, text)
    repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "change")
    expect = GENERATED[name](repo)
    repo.commit("change")
    code, out, err = _report(repo, tmp_path)
    check_outcome(code, out, err, repo, tmp_path, expect)
