"""Escaping of untrusted text for GitHub/GitLab-flavoured markdown (pure).

Metric names, values, params, branch names and log lines come from the user's repository; put into
a comment unescaped they could break a table, inject HTML, ping people with ``@name`` or forge a
report marker. Every piece of such text goes through one of these functions.
"""

from __future__ import annotations

import re
import urllib.parse

# Characters with meaning anywhere inline: code, emphasis, links/images (``[`` starts both, so
# ``!`` and ``(`` need no escape), table pipes, strikethrough, HTML and math. Backslash-escaping
# ASCII punctuation is always allowed by CommonMark and renders it literally.
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]|~<>$])")
# Characters that start a block (list, heading, quote, setext underline) only at a line's start.
_BLOCK_START = re.compile(r"^(\s*)([-+#=>]|\d+[.)])")
_MENTION = re.compile(r"@")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


def cell(value: str) -> str:
    """Escape ``value`` for a table cell, where only inline syntax is parsed.

    Newlines become spaces (a cell is one line); ``&`` becomes ``&amp;`` so entities cannot be forged;
    ``@`` becomes ``&#64;`` so no one is mentioned.
    """
    value = _CONTROL.sub(" ", value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    value = value.replace("&", "&amp;")
    value = _INLINE_SPECIAL.sub(r"\\\1", value)
    return _MENTION.sub("&#64;", value)


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
    """Escape ``value`` for raw HTML such as ``<summary>`` (markdown is not parsed there)."""
    value = _CONTROL.sub(" ", value).replace("\n", " ").replace("\r", " ")
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return value.replace("@", "&#64;")


def code_block(lines: list[str] | tuple[str, ...], language: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run inside, so it cannot be closed
    early. Content is literal in a code block; only ``@`` mentions are not an issue there."""
    body = "\n".join(_CONTROL.sub(" ", line).replace("\r", "") for line in lines)
    body = body.replace("<!--", "<!-\u200b-")  # a logged report marker must not look like ours
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{body}\n{fence}"


def code_span(value: str) -> str:
    """Inline code for short untrusted text inside a table cell.

    GFM splits cells on ``|`` even inside code spans unless it is written ``\\|``; the backslash is
    removed when the table is parsed, so the code shows the plain pipe.
    """
    value = _CONTROL.sub(" ", value).replace("\n", " ").replace("\r", " ").replace("|", "\\|")
    value = value.replace("<!--", "<!-\u200b-")  # as in code_block: no second report marker
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") or not value.strip() else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def link_target(url: str) -> str:
    """A URL as a link target: spaces, angle brackets and parentheses percent-encoded."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def untrusted_link_target(url: str) -> str:
    """A URL from untrusted data (a record, a bundle) as a link target inside a table cell: every
    character outside plain URL syntax percent-encoded, so it can neither end the link nor split
    the cell (``|``, brackets, quotes, backslashes, spaces)."""
    return urllib.parse.quote(url, safe=":/?#@!$&*+,;=%-._~")
