"""Reading files a pull request controls: regular files only, size-capped, duplicate keys refused.

A metrics file may be a FIFO (reading it would wait forever), a symlink to ``/dev/zero`` (reading
it would never end) or a 200 MB string; a JSON or YAML mapping may repeat a key (the parser keeps
the last one silently, so a duplicated gate could replace ``min: 0.9``). Every such file is read
through :func:`read_limited` and parsed with :func:`load_json` / :class:`UniqueKeySafeLoader`.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cml_bot.errors import CmlBotError, InputError

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
_CHUNK = 1 << 20
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def describe_size(n: float) -> str:
    """A byte count (or rate) for people: ``999 bytes``, ``1.5 KB``, ``12.0 MB``, ``3.2 GB`` (decimal units)."""
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n:,.0f} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


class NotRegularFile(OSError):
    """:func:`open_regular` found something else than a regular file; ``kind`` says what
    ("a FIFO", "a folder", ...)."""

    def __init__(self, mode: int) -> None:
        self.kind = _kind(mode)
        super().__init__(f"is {self.kind}, not a regular file")


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> tuple[int, os.stat_result]:
    """An open descriptor of ``path`` and its ``fstat``, when it is a regular file (checked on the
    open descriptor, so a swap after an earlier ``stat`` is caught). A FIFO is never waited for
    (``O_NONBLOCK``; a regular file is then read blocking as usual); the descriptor is not inherited
    (``O_CLOEXEC``). Anything else raises :class:`NotRegularFile`, closed; ``os.open``'s own errors
    (``FileNotFoundError``, ...) pass through."""
    fd = os.open(path, flags | _NONBLOCK | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(info.st_mode)
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as an existing folder ("no such folder", "not a folder"), or None."""
    if path.is_dir():
        return None
    return "no such folder" if not path.exists() else "not a folder"


def file_in_the_way(path: Path) -> Path | None:
    """``path`` or the nearest of its folders that exists, when that is not a folder (a file, a
    dangling link): nothing can be written at ``path`` then."""
    for place in (path, *path.parents):
        if place.is_symlink() or place.exists():
            return None if place.is_dir() else place
    return None


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


FILE_LIMIT_SETTING = "limits.file_mb in cml-bot.yaml"
MAX_FILE_BYTES = 50_000_000  # one metrics, params or plot file: the default of limits.file_mb


def read_limited(
    path: Path,
    limit: int,
    shown: str | None = None,
    error: Callable[[str], CmlBotError] | None = None,
    setting: str | None = None,
) -> bytes:
    """The bytes of ``path``, a regular file (a symlink to one is followed) of at most ``limit``
    bytes. Anything else is refused without reading it: a FIFO or device is never opened for a
    blocking read (``O_NONBLOCK``, then checked again on the open descriptor), and a file that grows
    past ``limit`` while it is read is refused too. Errors are one line: ``error(message)``, by
    default an :class:`InputError` naming ``shown``. ``setting`` names where the limit is set, when
    the user can set it."""
    shown = str(path) if shown is None else shown

    def fail(what: str) -> CmlBotError:
        message = " ".join(f"{shown}: {what}".split())  # one line, whatever the name holds
        return error(message) if error is not None else InputError(message)

    try:
        before = os.stat(path)
    except FileNotFoundError:
        raise fail("file not found") from None
    except OSError as exc:
        raise fail(f"cannot read ({exc.strerror or exc})") from None
    where = f" ({setting})" if setting else ""
    _check(before, limit, fail, where)
    try:
        fd, opened = open_regular(path)  # it may have been swapped since the stat above
    except NotRegularFile as exc:
        raise fail(_refused(exc.kind)) from None
    except OSError as exc:
        raise fail(f"cannot read ({exc.strerror or exc})") from None
    try:
        _check(opened, limit, fail, where)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise fail(f"is larger than the limit of {describe_size(limit)}{where}")
        return b"".join(chunks)
    except OSError as exc:
        raise fail(f"cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _check(info: os.stat_result, limit: int, fail: Callable[[str], CmlBotError], where: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise fail(_refused(_kind(info.st_mode)))
    if info.st_size > limit:
        raise fail(f"is {describe_size(info.st_size)}, more than the limit of {describe_size(limit)}{where}")


def _refused(kind: str) -> str:
    return f"is {kind}, not a regular file; refusing to read it"


class DuplicateKeyError(ValueError):
    """A JSON object or YAML mapping names the same key twice."""

    def __init__(self, key: object, line: int | None = None) -> None:
        self.key = key
        self.line = line
        where = f" (line {line})" if line is not None else ""
        shown = repr(key) if not isinstance(key, str) else repr(key[:200])
        super().__init__(f"duplicate key {shown}{where}: each key may appear once")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(key)
        result[key] = value
    return result


def load_json(text: str | bytes) -> Any:
    """``json.loads`` that refuses a key repeated within one object (:class:`DuplicateKeyError`)."""
    return json.loads(text, object_pairs_hook=_unique_pairs)


class _UniqueKeys:
    """A YAML constructor mixin: a mapping that repeats a key is an error naming the key and its
    line. Keys brought in by a merge (``<<: *base``) may be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=False)  # type: ignore[attr-defined]
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base constructor says so
                break
            if duplicate:
                raise DuplicateKeyError(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc, no-any-return]


class UniqueKeySafeLoader(_UniqueKeys, yaml.SafeLoader):
    """PyYAML's safe loader, duplicate keys refused."""


class UniqueKeyFastLoader(_UniqueKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader when installed (about 7x faster), duplicate keys refused."""
