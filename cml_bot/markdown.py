"""Escaping of untrusted text for GitHub/GitLab-flavoured markdown (pure).

Metric names, values, params, branch names and log lines come from the user's repository; put into
a comment unescaped they could break a table, inject HTML, forge a report marker, spoof a name with
bidi overrides, or ping people and link issues. Every piece of such text goes through one of these
functions.

Mentions and references. Both forges find ``@user``, ``@org/team``, ``@all``, ``#1``, ``GH-1``,
``owner/repo#1``, ``!1``, ``~label``, ``%milestone``, ``$1``, ``&1``, ``[vulnerability:1]``,
``*iteration:1``, ``group/project>``, commit shas and issue URLs in the *rendered* text outside
code and links (GitHub's html-pipeline ``MentionFilter``, GitLab's Banzai reference filters), so an
HTML entity such as ``&#64;`` does not stop them: CommonMark decodes it first. :func:`neutralise`
instead puts a zero-width space (U+200B) right after the sigil (before the ``>`` of a project),
where every one of those patterns needs a name or number character (as Renovate does in the release
notes it posts); the text still reads the same. GitLab's inline diff (``{+ x +}``) and emoji
(``:warning:``) are broken the same way. Inside code spans and code blocks nothing is looked up, so
only GitLab's quick actions (``/close`` at the start of a line) need care there.

Invisible characters (bidi overrides and isolates, zero-width characters, tag characters) are shown
as ``<U+202E>`` rather than passed through, so a name cannot hide or reorder text.

Long text is cut at :data:`TEXT_LIMIT` characters with a note saying how much was left out.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Collection, Sequence

TEXT_LIMIT = 1000  # characters of one untrusted string shown in the report
ZWSP = "\u200b"

# Characters with meaning anywhere inline: code, emphasis, links/images (``[`` starts both, so
# ``!`` and ``(`` need no escape), table pipes, strikethrough, HTML and math. Backslash-escaping
# ASCII punctuation is always allowed by CommonMark and renders it literally.
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]|~<>$])")
# Characters that start a block (list, heading, quote, setext underline) only at a line's start.
_BLOCK_START = re.compile(r"^(\s*)([-+#=>]|\d+[.)])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# Bidi controls (U+061C, U+200E/F, U+202A-E, U+2066-9), zero-width and other invisible format
# characters, interlinear annotations and tag characters (invisible "ASCII smuggling").
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufeff\uffa0"
    "\ufff9-\ufffb\U000e0000-\U000e007f]"
)
# What starts a mention or a reference on one forge or the other, each broken by a zero-width space
# (one pass): a sigil followed by anything but space (GitLab's iteration "*iteration:1" among them);
# GH-1 / GL-1; the "://" of a URL (no autolink, no issue URL); "www."; 7 or more hex characters with
# at least one letter (an abbreviated commit sha; runs of digits alone are numbers and are left
# alone). GitLab also links a project as "namespace/project>", the namespace optional and "&gt;"
# matched as ">" (so "b>" of "</b>" is looked up too: a ">" or "&gt;" right after a path character
# gets the space before it), shows "{+ text +}" / "{- text -}" as an inserted / deleted highlight,
# and ":name:" as an emoji (only between characters that are not letters, digits or colons).
_PING = re.compile(
    r"[@#!~%$&\[*](?=\S)"
    r"|\{(?=[+-])"
    r"|(?<![A-Za-z0-9:]):(?=[A-Za-z0-9_+-]+:(?![A-Za-z0-9:]))"
    r"|(?P<project>(?<=[A-Za-z0-9_.-])(?:>|&gt;))"
    r"|\b[Gg][HhLl]-(?=\d)"
    r"|:(?=//)"
    r"|\b[Ww]{3}(?=\.)"
    r"|(?P<hex>(?<![0-9A-Za-z_])(?=[0-9]*[a-fA-F])[0-9a-fA-F]{7,}(?![0-9A-Za-z_]))"
)
# Text of letters, digits and a few harmless characters has nothing to cut, show or escape but the
# pings above: a fast path for metric names and numbers.
_PLAIN = re.compile(r"[A-Za-z0-9_.,:;=+\- ]*")
_QUICK_ACTION = re.compile(r"^/", re.MULTILINE)


def truncate(value: str, limit: int = TEXT_LIMIT) -> str:
    """``value`` cut to ``limit`` characters, with a note saying how many were left out."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}… (+{len(value) - limit:,} characters)"


def visible(value: str) -> str:
    """Invisible characters (bidi controls, zero-width characters, tags) shown as ``<U+XXXX>``."""
    return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group(0)):04X}>", value)


def neutralise(value: str) -> str:
    """Break every mention and reference in ``value`` with a zero-width space; it reads the same.

    Call it on plain text (before escaping), after :func:`visible`."""
    return _PING.sub(_break, value)


def _break(match: re.Match[str]) -> str:
    run = match.group("hex")
    if run:
        return ZWSP.join(run[i : i + 6] for i in range(0, len(run), 6))
    if match.group("project"):
        return ZWSP + match.group(0)
    return match.group(0) + ZWSP


def one_line(value: str, limit: int = TEXT_LIMIT) -> str:
    """``value`` as one plain line (no markdown): truncated, line breaks and control characters as
    spaces, invisible characters shown. For statuses, job outputs and the console."""
    value = _CONTROL.sub(" ", truncate(value, limit)).replace("\r", " ").replace("\n", " ")
    return visible(value)


def field(value: str, limit: int) -> str:
    """``value`` for a forge's plain-text field of at most ``limit`` characters (a commit status's
    description, a Code Insights title): one line, spaces collapsed, invisible characters shown by
    name, then cut hard to ``limit`` with an ellipsis (no "(+N characters)" note: the field is full)."""
    shown = " ".join(visible(_CONTROL.sub(" ", value[: limit * 2 + 100])).split())
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _plain(value: str) -> str:
    """The common first steps for inline text: cut, one line, invisibles shown, pings broken."""
    value = truncate(value)
    if not _PLAIN.fullmatch(value):
        value = visible(_CONTROL.sub(" ", value).replace("\n", " "))
    return neutralise(value)


def cell(value: str) -> str:
    """Escape ``value`` for a table cell, where only inline syntax is parsed.

    Newlines become spaces (a cell is one line); ``&`` becomes ``&amp;`` so entities cannot be forged;
    mentions and references are broken (see :func:`neutralise`).
    """
    value = _plain(value).replace("&", "&amp;")
    return _INLINE_SPECIAL.sub(r"\\\1", value)


def text(value: str) -> str:
    """Escape ``value`` so it renders literally inside a paragraph, list item or heading: as
    :func:`cell`, and a leading list/heading/quote marker is escaped too."""
    return _BLOCK_START.sub(_escape_block_start, cell(value))


def _escape_block_start(match: re.Match[str]) -> str:
    lead, token = match.group(1), match.group(2)
    if token[0].isdigit():  # "1." starts an ordered list: escape the dot
        return f"{lead}{token[:-1]}\\{token[-1]}"
    return f"{lead}\\{token}"


def html_text(value: str) -> str:
    """Escape ``value`` for raw HTML such as ``<summary>`` (markdown is not parsed there, but
    mentions and references are still found in its text)."""
    value = _plain(value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def code_block(lines: list[str] | tuple[str, ...], language: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run inside, so it cannot be closed
    early. Content is literal and no mention is looked up in it; a line starting with ``/`` gets a
    zero-width space first, because GitLab's quick-action parser only skips code fenced with exactly
    three backticks."""
    shown = (visible(_CONTROL.sub(" ", truncate(line)).replace("\r", "")) for line in lines)
    body = _QUICK_ACTION.sub(ZWSP + "/", "\n".join(shown))
    body = body.replace("<!--", "<!-\u200b-")  # a logged report marker must not look like ours
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{body}\n{fence}"


def code_span(value: str) -> str:
    """Inline code for short untrusted text inside a table cell.

    GFM splits cells on ``|`` even inside code spans unless it is written ``\\|``; the backslash is
    removed when the table is parsed, so the code shows the plain pipe.
    """
    value = visible(_CONTROL.sub(" ", truncate(value)).replace("\n", " ").replace("\r", " ")).replace("|", "\\|")
    value = value.replace("<!--", "<!-\u200b-")  # as in code_block: no second report marker
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") or not value.strip() else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def link_target(url: str) -> str:
    """A URL as a link target: spaces, angle brackets and parentheses percent-encoded."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Collection[int] = ()) -> str:
    """A GFM table of cells already escaped; the columns at the indexes in ``numeric`` are
    right-aligned (``---:``), so digits line up. Columns are not padded to the widest cell, so the
    table's size is the size of what it shows (one long cell cannot multiply every row)."""
    rule = "".join("---:|" if i in numeric else "---|" for i in range(len(headers)))
    lines = ["| " + " | ".join(headers) + " |", "|" + rule]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def details(summary: str, body: str, open_: bool = False) -> str:
    """A collapsible block (``summary`` already escaped); Bitbucket's rendering flattens it."""
    attr = " open" if open_ else ""
    return f"<details{attr}><summary>{summary}</summary>\n\n{body}\n\n</details>"


# --- Bitbucket Cloud ------------------------------------------------------------------------------
#
# Bitbucket Cloud renders comments with Python-Markdown and escapes raw HTML: an HTML comment (the
# report's marker), <details>, <summary> and <sub> would be shown as text (The-PR-Agent/pr-agent#3283,
# dependabot-core#5481). Whether it decodes entities is not documented, so none are left for it to
# decode, and `\` escapes only what Python-Markdown can escape are kept (a `\<` would show its
# backslash). Mentions: `@name` / `@{account id}`; references: `#123`. A zero-width space after `@`,
# `#` and `<` stops each of them (mention, reference, tag or autolink) and renders as nothing.

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HTML_MARKER = re.compile(r"<!-- (.+) -->")
_SUMMARY = re.compile(r"<details(?: open)?><summary>(.*)</summary>")
_SUB = re.compile(r"<sub>(.*)</sub>")
# Spans left as they are: code spans (their text is literal) and link targets (URLs).
_LITERAL = re.compile(r"(?<!\\)(`+).+?(?<!`)\1(?!`)|\]\([^)\s]*\)")
_BITBUCKET_TEXT = (
    (re.compile(r"&amp;(?=#?\w+;)"), "&" + ZWSP),  # a literal "&lt;" stays literal
    (re.compile(r"&amp;"), "&"),
    (re.compile(r"\\<"), "<" + ZWSP),  # Python-Markdown cannot escape "<"; no tag or autolink
    (re.compile(r"\\~"), "~" + ZWSP),  # nor "~": no "~~" strikethrough
    (re.compile(r"\\\$"), "$"),  # no maths on Bitbucket
    (re.compile(r"#(?=\d)"), "#" + ZWSP),  # "#12" would link issue or pull request 12
)


def bitbucket_marker(marker: str) -> str:
    """The report marker ``<!-- X -->`` as Bitbucket keeps it hidden: a link reference definition
    nothing refers to (``[X]: #``), which Python-Markdown consumes and renders as nothing."""
    found = _HTML_MARKER.fullmatch(marker)
    if found is None or "[" in found.group(1) or "]" in found.group(1):
        raise ValueError(f"not a report marker: {marker!r}")
    return f"[{found.group(1)}]: #"


def bitbucket(document: str) -> str:
    """A document rendered for GitHub/GitLab (escaped with this module) as Bitbucket Cloud renders
    it: the marker hidden as a reference definition, ``<details>`` blocks as plain sections with a
    bold title, ``<sub>`` as emphasis, and user text free of entities and of live mentions,
    references and tags. Code blocks, code spans and link targets are left as they are."""
    out: list[str] = []
    fence: str | None = None
    for number, line in enumerate(document.split("\n")):
        if fence is not None:
            out.append(line)
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            continue
        opening = _FENCE.match(line)
        if opening:
            fence = opening.group(1)
            out.append(line)
        elif number == 0 and _HTML_MARKER.fullmatch(line):
            out += [bitbucket_marker(line), ""]  # a blank line: the definition stands alone
        elif summary := _SUMMARY.fullmatch(line):
            out.append(f"**{summary.group(1)}**")
        elif line != "</details>":
            sub = _SUB.fullmatch(line)
            out.append(f"_{_bitbucket_text(sub.group(1))}_" if sub else _bitbucket_text(line))
    return "\n".join(out)


def _bitbucket_text(line: str) -> str:
    pieces, start = [], 0
    for literal in _LITERAL.finditer(line):
        pieces += [_bitbucket_plain(line[start : literal.start()]), literal.group(0)]
        start = literal.end()
    pieces.append(_bitbucket_plain(line[start:]))
    return "".join(pieces)


def _bitbucket_plain(text: str) -> str:
    for pattern, replacement in _BITBUCKET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def untrusted_link_target(url: str) -> str:
    """A URL from untrusted data (a record, a bundle) as a link target inside a table cell: every
    character outside plain URL syntax percent-encoded, so it can neither end the link nor split
    the cell (``|``, brackets, quotes, backslashes, spaces)."""
    return urllib.parse.quote(url, safe=":/?#@!$&*+,;=%-._~")
