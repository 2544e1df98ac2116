"""What GitHub and GitLab would turn into a mention, a reference or a quick action, to check
rendered reports with (test helper).

Both forges look for mentions and references in the text of the RENDERED comment, outside ``<code>``,
``<pre>`` and ``<a>`` (html-pipeline's filters on GitHub, Banzai's on GitLab; see
tests/contracts/gitlab/README.md), so the patterns run on :func:`rendered_text`.

- GitHub: html-pipeline's ``MentionPattern`` (``@user``) and its team form (``@org/team``); the
  references of "Autolinked references and URLs": ``#26``, ``GH-26``, ``owner/repo#26``, commit
  shas (7 to 40 hex digits), ``owner@sha``, URLs (``https://``, ``www.``).
- GitLab: the ``reference_pattern`` of users (``@user``, ``@group``, ``@all``), issues (``#1``,
  ``GL-1``, ``group/project#1``; no word boundary needed before ``#``), merge requests (``!1``),
  snippets (``$1``), epics (``&1``), labels (``~bug``, ``~"a b"``, ``~1``), milestones (``%v1``,
  ``%"a b"``, ``%1``), vulnerabilities (``[vulnerability:1]``), iterations (``*iteration:1``,
  ``*iteration:"Sprint 3"``), projects (``namespace/project>``, the namespace optional, ``&gt;`` for ``>``:
  ``Project.markdown_reference_pattern``),
  commits; quick actions (a line of the raw markdown starting with ``/`` outside a block fenced with
  exactly three backticks). Not references but shown as more than text: inline diff highlights
  (``{+ x +}``, ``{- x -}``, ``[+ x +]``) and emoji (``:warning:``, between characters that are not
  letters, digits or colons).

A run of digits alone is treated as a number, not as an abbreviated sha: neither forge links it
unless a commit with exactly that abbreviation exists, and breaking numbers would spoil copying them.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

PATTERNS = {
    "github mention": re.compile(
        r"(?:^|\W)@((?>[a-z0-9][a-z0-9-]*))(?!/)(?=\.+[ \t\W]|\.+$|[^0-9a-zA-Z_.]|$)", re.I | re.M
    ),
    "github team": re.compile(r"(?:^|\W)@([a-z0-9][a-z0-9-]*)/([a-z][a-z0-9_-]*)", re.I | re.M),
    "github issue": re.compile(r"(?:^|[^\w/])(?:[\w.-]+/[\w.-]+)?#\d+\b", re.M),
    "github GH-": re.compile(r"\bGH-\d+\b", re.I),
    "sha": re.compile(r"(?<![\w@/])(?=[0-9]*[a-f])[0-9a-f]{7,40}(?![\w/])", re.I),
    "url": re.compile(r"(?i)\b(?:[a-z][a-z0-9+.-]*://|www\.)[\w-]"),
    "gitlab user": re.compile(r"(?<!\w)@[a-zA-Z0-9_.][a-zA-Z0-9_.-]*"),
    "gitlab issue": re.compile(r"#\d+|\bGL-\d+", re.I),
    "gitlab merge request": re.compile(r"!\d+"),
    "gitlab snippet": re.compile(r"\$\d+"),
    "gitlab epic": re.compile(r"&\d+"),
    "gitlab label": re.compile(r"~(?:\d+|\"[^\"]+\"|[A-Za-z0-9_\-?.&]+)"),
    "gitlab milestone": re.compile(r"%(?:\d+|\"[^\"]+\"|[A-Za-z0-9_\-.]+)"),
    "gitlab vulnerability": re.compile(r"\[vulnerability:\d+\]"),
    "gitlab iteration": re.compile(r"\*iteration:(?:\d+|\"[^\"]+\"|[A-Za-z0-9_\-.]+)"),
    "gitlab project": re.compile(
        r"(?<![A-Za-z0-9_.])/?(?:[A-Za-z0-9_.][A-Za-z0-9_.-]*/)*[A-Za-z0-9_.][A-Za-z0-9_.-]*(?:>|&gt;)"
    ),
    "gitlab inline diff": re.compile(r"(?<![\w\\])(?:\{\+.+?\+\}|\{-.+?-\}|\[\+.+?\+\]|\[-.+?-\])"),
    "gitlab emoji": re.compile(r"(?<![A-Za-z0-9:]):[a-z0-9_+-]+:(?![A-Za-z0-9:])"),
}
# GitLab's quick-action extractor (Gitlab::QuickActions::Extractor): fenced ``` code, an HTML
# block and a >>> quote are skipped; any other line starting with "/name" is a command.
_QUICK_ACTIONS = re.compile(
    r"(?P<code>^```.+?\n```$)|(?P<html>^<[^>]+?>\n.+?\n</[^>]+?>$)|(?P<quote>^>>>.+?\n>>>$)|(?P<cmd>^/[a-z_]+)",
    re.M | re.S | re.I,
)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipped = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("code", "pre", "a"):
            self.skipped += 1
        elif tag in ("td", "th", "p", "li", "summary", "br", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "pre", "a"):
            self.skipped -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipped:
            self.parts.append(data)


def rendered_text(html: str) -> str:
    """The text of rendered HTML where the forges look for mentions (entities decoded)."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def live_references(text: str) -> list[str]:
    """Every mention or reference a forge would find in ``text`` (see :func:`rendered_text`)."""
    found = []
    for name, pattern in PATTERNS.items():
        found += [f"{name}: {match.group(0).strip()}" for match in pattern.finditer(text)]
    return found


def quick_actions(markdown: str) -> list[str]:
    """Lines of raw markdown GitLab would run as quick actions."""
    source = markdown.replace("\r", "")
    return [m.group("cmd") for m in _QUICK_ACTIONS.finditer(source) if m.group("cmd")]
