"""What the CLI does with an exception it did not expect (as pre-commit's error handler does).

A full disk is the user's environment, not a bug: :func:`disk_error` finds it anywhere in an
exception's chain, and the CLI says so in one line. Anything else is a bug in cml-bot: the CLI
prints one scrubbed line and :func:`write_crash_log` keeps the traceback, with the versions that
matter, in a log file the user can attach to a report. Both are scrubbed of secrets.
"""

from __future__ import annotations

import datetime
import errno
import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from cml_bot import __version__
from cml_bot.secrets import Secrets

_DISK_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}


def disk_error(exc: BaseException) -> str | None:
    """``"no space left on device (/path)"`` when ``exc`` or an exception in its chain is a full
    disk, a quota or a read-only file system; None otherwise."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_ERRORS:
            where = f" ({current.filename})" if current.filename else ""
            return f"{_DISK_ERRORS[current.errno]}{where}"
        current = current.__cause__ or current.__context__
    return None


def crash_folder(env: Mapping[str, str]) -> Path:
    """Where the log goes: the runner's temp folder on GitHub, else $TMPDIR, else the system's."""
    for name in ("RUNNER_TEMP", "TMPDIR"):
        if env.get(name):
            return Path(env[name])
    return Path(tempfile.gettempdir())


def write_crash_log(exc: BaseException, argv: Sequence[str], env: Mapping[str, str], secrets: Secrets) -> Path:
    """Write the scrubbed traceback and versions to a new file; return its path (OSError if it
    cannot be written)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    path = crash_folder(env) / f"cml-bot-error-{now:%Y%m%d-%H%M%S}-{os.getpid()}.log"
    body = "\n".join(
        [
            f"cml-bot {__version__}: internal error",
            f"command: cml-bot {' '.join(argv)}",
            f"python: {sys.version.split()[0]} ({sys.executable})",
            f"platform: {platform.platform()}",
            f"time: {now.isoformat(timespec='seconds')}",
            "",
            *traceback.format_exception(type(exc), exc, exc.__traceback__),
        ]
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
        handle.write(secrets.scrub(body))
    return path
