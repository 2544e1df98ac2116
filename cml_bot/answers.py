"""Reading untrusted JSON answers and payloads (forge APIs, CI event files) without trusting their
shape: a missing key, a list where a mapping was expected or a wrong type gives None, never an
exception."""

from __future__ import annotations

from collections.abc import Mapping


def dig(value: object, *keys: str) -> object:
    """``value[k1][k2]...``, or None as soon as a level is not a mapping or lacks the key."""
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def text(value: object) -> str | None:
    """``value`` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None
