"""GitHub Actions workflow commands and step outputs, escaped as GitHub documents (pure).

The runner reads every line a step prints, on stdout and stderr, and runs it as a command when,
after leading whitespace, it starts with ``::``, or else when it holds the old ``##[name]`` syntax
*anywhere* in the line (the runner's legacy parser, ``ActionCommand.TryParse``, looks for ``##[``
with ``IndexOf``; ``add-mask``, ``stop-commands`` and ``set-output`` are all reachable that way).
Untrusted text (a metric name with a newline, a log line) must therefore never start a line of its
own, nor bring ``##[`` into one:

- inside a command, the message is escaped as "data" (``%`` ``\\r`` ``\\n`` as ``%25`` ``%0D``
  ``%0A``) and each property value as well as ``:`` and ``,`` (``%3A`` ``%2C``);
- a plain line never holds a raw line break (:func:`one_physical_line`), and a line that would
  still read as a command (:func:`reads_as_command`) is printed between
  ``::stop-commands::<random>`` and ``::<random>::``, GitHub's documented way to print text
  verbatim without running it (:func:`fenced`);
- a step output is written to ``$GITHUB_OUTPUT`` as ``name<<DELIMITER`` ... ``DELIMITER`` with a
  random delimiter that does not occur in the value (:func:`output_entry`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

_LINE_BREAKS = {"\x85": "<U+0085>", "\u2028": "<U+2028>", "\u2029": "<U+2029>"}


def escape_data(text: str) -> str:
    """A command's message: ``%``, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A command's property value (``title=...``): as data, and ``:`` and ``,`` too."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, **properties: str) -> str:
    """One workflow command line, e.g. ``command("error", "x", title="cml-bot")``. ``name`` and the
    property names are cml-bot's own; the values and the message may be anything."""
    props = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items())
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def one_physical_line(text: str) -> str:
    """``text`` with no line break left: CR and LF escaped as in command data (``%0D``, ``%0A``),
    other line separators shown as ``<U+2028>``. ``%`` itself is left alone: the runner decodes
    nothing in a plain line, and escaping it would only garble "95%" in training logs."""
    text = text.replace("\r", "%0D").replace("\n", "%0A")
    for char, shown in _LINE_BREAKS.items():
        text = text.replace(char, shown)
    return text


def reads_as_command(line: str) -> bool:
    """True when the runner could read ``line`` (one physical line) as a workflow command: it starts
    with ``::`` after leading whitespace (the runner's ``TrimStart`` strips no more than
    :meth:`str.lstrip`), or it holds ``##[`` anywhere. Cautious: a line that would not parse (no
    closing ``::`` or ``]``, an unknown name) is fenced all the same."""
    return line.lstrip().startswith("::") or "##[" in line


def fenced(line: str, token: str | None = None) -> list[str]:
    """``line`` between ``::stop-commands::`` and the matching resume line: printed, never run."""
    token = token or secrets.token_hex(16)
    return [f"::stop-commands::{token}", line, f"::{token}::"]


def output_entry(name: str, value: str, new_delimiter: Callable[[], str] | None = None) -> str:
    """A ``$GITHUB_OUTPUT`` entry for any ``value`` (several lines included)."""
    make = new_delimiter or (lambda: f"ghadelimiter_{secrets.token_hex(16)}")
    delimiter = make()
    while delimiter in value or delimiter in name:
        delimiter = make()
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"
