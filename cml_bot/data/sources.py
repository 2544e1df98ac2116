"""Where pinned data comes from: HTTP(S) with resume, local files, and fsspec protocols (s3, gs, ...).

A :class:`Fetcher` opens a URL at a byte offset; :class:`RetryableError` tells the puller to try
again (resuming where it stopped). Userinfo in URLs is never shown (:func:`redact`).
"""

from __future__ import annotations

import importlib
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cml_bot.errors import DataError

if TYPE_CHECKING:
    import requests


CHUNK = 1 << 20
HTTP_CHUNK = 1 << 16
HTTP_TIMEOUT = (10.0, 60.0)  # connect, read


# --------------------------------------------------------------------------------------------- sources


class RetryableError(DataError):
    """A failure worth retrying: connection lost, timeout, HTTP 429 or 5xx."""


class ResumeRejected(RetryableError):
    """The source refused to resume where the partial download stops: start again from byte 0."""


@dataclass
class Download:
    """An open source: ``chunks`` yields the file's bytes from ``offset`` on.

    ``offset`` is where the source actually starts, 0 when it ignored a request to resume.
    Iterating may raise :class:`RetryableError` (the pull resumes) or :class:`DataError`.
    """

    offset: int
    chunks: Iterable[bytes]
    close: Callable[[], None] = field(default=lambda: None)
    size: int | None = None  # the whole file's size when the source tells it (for progress only)


class Fetcher(Protocol):
    """Open ``url`` to read from byte ``offset``; raise DataError (or RetryableError) on failure."""

    def __call__(self, url: str, offset: int) -> Download: ...


def make_fetcher(
    root: Path,
    session: requests.Session | None = None,
    *,
    fsspec_open: Callable[[str], Any] | None = None,
) -> SourceFetcher:
    """The real fetcher: HTTP(S) through ``session`` (made on first use), local files, fsspec.

    Plain paths are relative to ``root``. ``fsspec_open(url)`` returns a binary file object.
    """
    return SourceFetcher(root, session, fsspec_open)


class SourceFetcher:
    """See :func:`make_fetcher`. ``close()`` closes the HTTP session if this fetcher made it."""

    def __init__(self, root: Path, session: requests.Session | None, fsspec_open: Callable[[str], Any] | None) -> None:
        self.root = root
        self.session = session
        self.own_session = session is None
        self.fsspec_open = fsspec_open
        self.lock = threading.Lock()

    def http_session(self) -> requests.Session:
        with self.lock:
            if self.session is None:
                self.session = _new_session()
            return self.session

    def __call__(self, url: str, offset: int) -> Download:
        scheme = _scheme(url)
        if scheme in ("http", "https"):
            return _fetch_http(self.http_session(), url, offset)
        if scheme in ("", "file"):
            return _fetch_local(_local_source(self.root, url), offset)
        return _fetch_fsspec(url, offset, self.fsspec_open)

    def close(self) -> None:
        with self.lock:
            if self.own_session and self.session is not None:
                self.session.close()
                self.session = None


def _scheme(url: str) -> str:
    if re.match(r"^[A-Za-z]:[\\/]", url):  # a Windows drive, not a scheme
        return ""
    return urllib.parse.urlsplit(url).scheme.lower()


def redact(url: str) -> str:
    """``url`` safe to show: no user, password, query string or fragment (they may hold tokens)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or parts.scheme == "file":
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = "?..." if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")) + query


def _new_session() -> requests.Session:
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "cml-bot"
    return session


def _fetch_http(session: requests.Session, url: str, offset: int) -> Download:
    import requests

    headers = {"Range": f"bytes={offset}-"} if offset else {}
    # Ask for the bytes as stored: a transparently decompressed body would not match the sha256.
    headers["Accept-Encoding"] = "identity"
    shown = redact(url)
    try:
        response = session.get(url, headers=headers, stream=True, timeout=HTTP_TIMEOUT)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise RetryableError(f"{shown}: {type(exc).__name__}") from None
    except requests.RequestException as exc:
        raise DataError(f"{shown}: {type(exc).__name__}: {exc}") from None
    status = response.status_code
    if status == 416 and offset:  # the partial file is not a prefix of this resource any more
        response.close()
        raise ResumeRejected(f"{shown}: HTTP 416 for a resumed download")
    if status == 429 or status >= 500:
        response.close()
        raise RetryableError(f"{shown}: HTTP {status}")
    if status not in (200, 206):
        response.close()
        raise DataError(f"{shown}: HTTP {status} {response.reason or ''}".rstrip())
    start = 0
    if status == 206:
        match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        start = int(match.group(1)) if match else -1
        if start != offset:
            response.close()
            raise ResumeRejected(f"{shown}: unexpected Content-Range for a resumed download")

    def chunks() -> Iterator[bytes]:
        try:
            # Small reads: bytes received before a connection drops are kept, and resumed from.
            yield from response.iter_content(HTTP_CHUNK)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise RetryableError(f"{shown}: connection lost ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise DataError(f"{shown}: {type(exc).__name__}: {exc}") from None

    return Download(offset=start, chunks=chunks(), close=response.close, size=_http_size(response, start))


def _http_size(response: requests.Response, start: int) -> int | None:
    """The whole file's size from Content-Range (``bytes 100-199/200``) or Content-Length."""
    total = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
    if total:
        return int(total.group(1))
    length = response.headers.get("Content-Length", "")
    return start + int(length) if length.isdigit() else None


def _local_source(root: Path, url: str) -> Path:
    if url.lower().startswith("file:"):
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise DataError(f"{url}: file URLs on another host are not supported")
        from urllib.request import url2pathname  # imports http.client: only when needed

        return Path(url2pathname(parts.path))
    path = Path(url).expanduser()
    return path if path.is_absolute() else root / path


def _fetch_local(path: Path, offset: int) -> Download:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read source ({exc.strerror})") from None
    return _stream(handle, offset, lambda exc: DataError(f"{path}: cannot read source ({exc.strerror})"))


def _fetch_fsspec(url: str, offset: int, opener: Callable[[str], Any] | None) -> Download:
    scheme = _scheme(url)
    if opener is None:
        try:
            fsspec = importlib.import_module("fsspec")
        except ImportError:
            hint = _extra_hint(scheme)
            raise DataError(f"{redact(url)}: {scheme}:// sources need fsspec: {hint}") from None

        def opener(u: str) -> Any:
            return fsspec.open(u, "rb").open()

    try:
        handle = opener(url)
    except ImportError:
        raise DataError(f"{redact(url)}: {scheme}:// sources need {_extra_hint(scheme)}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{redact(url)}: cannot open ({exc})") from None
    return _stream(handle, offset, lambda exc: RetryableError(f"{redact(url)}: {exc}"))


def _stream(handle: Any, offset: int, failure: Callable[[OSError], Exception]) -> Download:
    """A Download reading an open file-like object from ``offset``; read errors become ``failure``."""
    if offset:
        handle.seek(offset)
    size = getattr(handle, "size", None)  # fsspec's files know it
    if not isinstance(size, int):
        try:
            size = os.fstat(handle.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            size = None

    def chunks() -> Iterator[bytes]:
        try:
            while block := handle.read(CHUNK):
                yield block
        except OSError as exc:
            raise failure(exc) from None

    return Download(offset=offset, chunks=chunks(), close=handle.close, size=size)


def _extra_hint(scheme: str) -> str:
    package = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
    return f"pip install {package.get(scheme, 'fsspec')}"
