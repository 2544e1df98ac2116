"""Reading untrusted JSON answers and payloads (forge APIs, CI event files, data files) without
trusting their shape: a missing key, a list where a mapping was expected or a wrong type gives None,
never an exception; :func:`records` says what it found instead."""

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


RECORDS = "a list of records, or an object holding one list of records"


def records(document: object) -> list[dict[str, object]]:
    """A list of records (objects of fields), or the one list an object holds (dvclive's
    ``{plot name: [records]}``). Raises ValueError saying what was found instead."""
    if isinstance(document, Mapping):
        lists = [key for key, value in document.items() if isinstance(value, list)]
        if len(lists) != 1:
            found = f"lists {', '.join(repr(str(k)) for k in lists[:5])}" if lists else "no list"
            raise ValueError(f"expected {RECORDS}; found {found}")
        document = document[lists[0]]
    if not isinstance(document, list):
        raise ValueError(f"expected {RECORDS}")
    for i, item in enumerate(document):
        if not isinstance(item, dict):
            raise ValueError(f"record {i} is not an object of fields")
    return document
