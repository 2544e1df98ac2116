"""Escaping of untrusted text: properties checked by rendering with markdown-it (CommonMark + tables,
raw HTML on, as GitHub and GitLab accept it)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from forge_patterns import live_references, rendered_text
from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from cml_bot import markdown as md

PARSER = MarkdownIt("commonmark", {"html": True}).enable("table")

# Text that stresses markdown: every ASCII punctuation, whitespace, control chars, line separators.
HOSTILE = st.lists(
    st.one_of(
        st.sampled_from(list("|\\`*_[]()<>!@#&;:~$=+-.%{}'\"/ \t\n\r\x00\x0b\x0c\x1b\x7f\u2028\u2029\x85\xa0")),
        st.sampled_from(["<!--", "-->", "<script>", "&amp;", "&#64;", "@octocat", "1.", "```", "http://x", "a"]),
        st.characters(codec="utf-8"),
    ),
    max_size=30,
).map("".join)

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


class _Cells(HTMLParser):
    """Collect the rows of a rendered table: the visible text of each cell, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.tags: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


def _render_table(cells: list[str]) -> _Cells:
    header = "| " + " | ".join(f"h{i}" for i in range(len(cells))) + " |"
    rule = "|" + "---|" * len(cells)
    row = "| " + " | ".join(cells) + " |"
    parsed = _Cells()
    parsed.feed(PARSER.render(f"{header}\n{rule}\n{row}\n"))
    parsed.close()
    return parsed


def _visible(value: str) -> str:
    """What a reader should see for ``value`` in a cell: control chars and newlines as spaces,
    invisible characters named, edges trimmed (table cells are trimmed)."""
    return md.visible(_CONTROL.sub(" ", value).replace("\x00", " ")).strip()


def _read(rendered: str) -> str:
    """Rendered text as read: the zero-width spaces that break mentions are not seen."""
    return rendered.replace(md.ZWSP, "")


def _unescaped(text: str, char: str) -> list[int]:
    """Positions of ``char`` not preceded by an odd run of backslashes."""
    hits = []
    for match in re.finditer(re.escape(char), text):
        run = len(text[: match.start()]) - len(text[: match.start()].rstrip("\\"))
        if run % 2 == 0:
            hits.append(match.start())
    return hits


@settings(max_examples=300, deadline=None)
@given(HOSTILE)
@example("| <script>alert(1)</script>")
@example("@octocat please look")
@example("<!-- cml-bot report (id: default) -->")
@example("\\|")
@example("a\\")
@example("`code` and ``more``")
@example("line1\nline2\r\nline3\rline4")
@example("&#64;octocat &amp; &lt;b&gt;")
@example("[link](http://evil) ![img](x)")
@example("~~strike~~ **bold** _em_ $x$")
@example('*iteration:42 *iteration:"Sprint 3" gitlab-org/gitlab> {+ ok +} {- x -} :warning:')
def test_cell_is_one_literal_cell(value: str) -> None:
    escaped = md.cell(value)
    assert "\n" not in escaped and "\r" not in escaped
    assert not live_references(rendered_text(PARSER.render(f"| h |\n|---|\n| {escaped} |\n"))), escaped
    assert not _unescaped(escaped, "|"), escaped
    assert not _unescaped(escaped, "<"), escaped
    assert "<" not in escaped.replace("\\<", "")

    parsed = _render_table(["left", escaped, "right"])
    assert "script" not in parsed.tags
    assert len(parsed.rows) == 2, parsed.rows  # header and one body row
    assert len(parsed.rows[1]) == 3, parsed.rows
    assert parsed.rows[1][0] == "left" and parsed.rows[1][2] == "right"
    assert _read(parsed.rows[1][1]).strip() == _visible(value)
    # Only the table's own tags: no emphasis, code, links, images or raw HTML from the value.
    assert set(parsed.tags) <= {"table", "thead", "tbody", "tr", "th", "td"}, parsed.tags


@settings(max_examples=200, deadline=None)
@given(HOSTILE)
def test_cell_in_last_column_keeps_its_row(value: str) -> None:
    """A value ending in a backslash or a pipe must not swallow the row's closing pipe."""
    parsed = _render_table([md.cell(value)])
    assert len(parsed.rows) == 2 and len(parsed.rows[1]) == 1
    assert _read(parsed.rows[1][0]).strip() == _visible(value)


def _block_tokens(source: str) -> list[str]:
    return [t.type for t in PARSER.parse(source) if t.nesting >= 0 and t.type != "inline"]


@settings(max_examples=300, deadline=None)
@given(HOSTILE)
@example("# heading")
@example("- item")
@example("+ item")
@example("* item")
@example("1. first")
@example("12) twelfth")
@example("> quote")
@example("===")
@example("---")
@example("***")
@example("  - indented item")
@example("<div>")
@example("```")
@example("~~~")
@example("[ref]: http://x")
def test_text_at_line_start_is_a_plain_paragraph(value: str) -> None:
    escaped = md.text(value)
    assert "\n" not in escaped
    assert not live_references(rendered_text(PARSER.render(escaped))), escaped
    # After a previous paragraph line (setext underline risk) and on its own.
    for source in (escaped, f"Title\n{escaped}"):
        kinds = _block_tokens(source)
        forbidden = {"bullet_list_open", "ordered_list_open", "heading_open", "blockquote_open", "hr", "html_block"}
        assert not forbidden & set(kinds), (source, kinds)
        assert "fence" not in kinds, (source, kinds)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("# x", "\\# x"),
        ("- x", "\\- x"),
        ("1. x", "1\\. x"),
        ("3) x", "3\\) x"),
        ("> x", "\\> x"),
        ("a - b", "a - b"),
    ],
)
def test_text_escapes_block_markers(value: str, expected: str) -> None:
    assert md.text(value) == expected


def _pre_blocks(source: str) -> list[str]:
    class Pre(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.blocks: list[str] = []
            self.depth = 0
            self.tags: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)
            if tag == "pre":
                self.blocks.append("")
                self.depth += 1

        def handle_endtag(self, tag: str) -> None:
            if tag == "pre":
                self.depth -= 1

        def handle_data(self, data: str) -> None:
            if self.depth:
                self.blocks[-1] += data

    parser = Pre()
    parser.feed(PARSER.render(source))
    parser.close()
    assert parser.tags[:2] == ["pre", "code"], parser.tags
    assert parser.tags.count("pre") == 1, parser.tags
    return parser.blocks


GITLAB_ONLY = [
    pytest.param("*iteration:42", "gitlab iteration", id="iteration"),
    pytest.param('*iteration:"Sprint 3"', "gitlab iteration", id="iteration-quoted"),
    pytest.param("gitlab-org/gitlab>", "gitlab project", id="project"),
    pytest.param("see group/sub/project> now", "gitlab project", id="project-nested"),
    pytest.param("the gitlab> project", "gitlab project", id="project-same-namespace"),
    pytest.param("g/p&gt;", "gitlab project", id="project-escaped"),
    pytest.param("{+ APPROVED BY SECURITY +}", "gitlab inline diff", id="diff-added"),
    pytest.param("{- removed -}", "gitlab inline diff", id="diff-removed"),
    pytest.param(":warning: check", "gitlab emoji", id="emoji"),
]


@pytest.mark.parametrize(("value", "pattern"), GITLAB_ONLY)
def test_gitlab_iterations_projects_inline_diffs_and_emoji_stay_text(value: str, pattern: str) -> None:
    raw = live_references(rendered_text(PARSER.render(f"| h |\n|---|\n| {value} |\n")))
    assert any(found.startswith(pattern) for found in raw), raw  # the check sees the raw text
    for escaped in (md.cell(value), md.text(value), md.html_text(value)):
        text = rendered_text(PARSER.render(f"| h |\n|---|\n| {escaped} |\n"))
        assert not live_references(text), (escaped, live_references(text))
        assert _read(text).strip().endswith(value)  # reads the same (after the header "h")


def test_times_and_arrows_are_left_alone() -> None:
    """Colons between digits are no emoji, and an arrow's ">" gets only an invisible space."""
    assert md.cell("12:30:45 ratio 3:1") == "12:30:45 ratio 3:1"
    assert _read(md.cell("a->b")) == "a-\\>b"


@settings(max_examples=200, deadline=None)
@given(st.lists(HOSTILE.map(lambda s: s.replace("\n", " ")), max_size=8))
@example(["```", "````", "end"])
@example(["<!-- cml-bot report (id: default) -->"])
@example(["~~~", "    indented", "</pre>"])
def test_code_block_is_one_pre_block(lines: list[str]) -> None:
    block = md.code_block(lines)
    # Followed by more markdown: nothing after the block may end up inside it.
    (text,) = _pre_blocks(block + "\n\nafter")
    assert "<!--" not in block
    for line in lines:
        shown = md.visible(_CONTROL.sub(" ", line)).replace("<!--", "<!-\u200b-")
        assert shown.lstrip("/") in text


def test_code_block_fence_outlasts_backtick_runs() -> None:
    block = md.code_block(["a ``````` b"])
    assert block.startswith("````````\n") and block.endswith("\n````````")


@settings(max_examples=200, deadline=None)
@given(HOSTILE)
@example("a|b")
@example("`")
@example(" ")
@example("")
@example("<!-- cml-bot report (id: default) -->")
def test_code_span_stays_in_its_cell(value: str) -> None:
    assert "<!--" not in md.code_span(value)
    parsed = _render_table([md.code_span(value), "z"])
    assert len(parsed.rows) == 2 and len(parsed.rows[1]) == 2, parsed.rows
    assert parsed.rows[1][1] == "z"


def test_html_text_escapes_tags_quotes_and_mentions() -> None:
    # "/b>" could be GitLab's reference to a project "b": its ">" gets a zero-width space in front.
    assert md.html_text('<b a="1">@me & you\n</b>') == ("&lt;b a=&quot;1&quot;&gt;@\u200bme &amp; you &lt;/b\u200b&gt;")


def test_link_target_encodes_breaking_characters() -> None:
    assert md.link_target("http://x/a b(c)<d>") == "http://x/a%20b%28c%29%3Cd%3E"


def test_table_right_aligns_the_numeric_columns() -> None:
    text = md.table(["Name", "Value", "Note"], [["a", "1.5", "x"], ["b", "10", "y"]], numeric={1})
    assert text.split("\n")[1] == "|---|---:|---|"
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert '<th style="text-align:right">Value</th>' in html and '<td style="text-align:right">10</td>' in html
    assert md.table(["a"], [["1"]]).split("\n")[1] == "|---|"  # left (the default) unless numeric


def test_a_forge_field_is_one_line_invisibles_named_and_never_over_its_limit() -> None:
    from cml_bot.markdown import field

    assert field("acc\u202eycarucca\u200b\nline2\r\tend", 200) == "acc<U+202E>ycarucca<U+200B> line2 end"
    cut = field("x" * 50 + "\u202e" * 50, 140)
    assert len(cut) == 140 and cut.endswith("…")
    assert field("a" * 10_000_000, 255) == "a" * 254 + "…"  # whatever the length, no more than asked
