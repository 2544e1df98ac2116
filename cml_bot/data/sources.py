"""Where pinned data comes from: HTTP(S) with resume, local files, and fsspec protocols (s3, gs, ...).

A :class:`Fetcher` opens a URL at a byte offset; :class:`RetryableError` tells the puller to try
again (resuming where it stopped). Userinfo and queries of URLs are never shown (:func:`cml_bot.secrets.redact_url`).
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
from cml_bot.files import NotRegularFile, open_regular
from cml_bot.secrets import redact_url, redact_urls, url_scheme

if TYPE_CHECKING:
    import requests


CHUNK = 1 << 20
HTTP_CHUNK = 1 << 16
CONNECT_TIMEOUT = 10.0  # seconds to connect
READ_TIMEOUT = 30.0  # seconds for the first byte of the answer, then between two reads


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
    total: int | None = None  # the whole file's size, when the source says it


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
    return url_scheme(url) or ""  # config refuses what is not a URL before anything is pulled


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
    import urllib3.exceptions

    headers = {"Range": f"bytes={offset}-"} if offset else {}
    # Ask for the bytes as stored: a transparently decompressed body would not match the sha256.
    headers["Accept-Encoding"] = "identity"
    shown = redact_url(url)
    try:
        response = session.get(url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise RetryableError(f"{shown}: {type(exc).__name__}") from None
    except (requests.RequestException, ValueError) as exc:  # ValueError: e.g. a port out of range
        raise DataError(f"{shown}: {type(exc).__name__}: {redact_urls(' '.join(str(exc).split()))[:200]}") from None
    status = response.status_code
    if status == 416 and offset:  # the partial file is not a prefix of this resource any more
        response.close()
        raise ResumeRejected(f"{shown}: HTTP 416 for a resumed download")
    if status == 429 or status >= 500:
        response.close()
        raise RetryableError(f"{shown}: HTTP {status}")
    if status not in (200, 206):
        response.close()
        raise DataError(f"{shown}: HTTP {status} {' '.join((response.reason or '').split())[:100]}".rstrip())
    start = 0
    total = _number(response.headers.get("Content-Length"))
    if status == 206:
        match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
        start = int(match.group(1)) if match else -1
        if start != offset:
            response.close()
            raise ResumeRejected(f"{shown}: unexpected Content-Range for a resumed download")
        total = _number(match.group(2)) if match else None
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        total = None  # the length on the wire, not of the file
    raw = response.raw
    # read1 returns what has arrived (at most HTTP_CHUNK), so a source trickling a byte at a time is
    # seen, and timed, byte by byte rather than once per 64 KB. A body the server compressed anyway
    # is decoded (as requests would), and the decoded bytes are what the size cap counts.
    read = raw.read1 if hasattr(raw, "read1") else raw.read

    def chunks() -> Iterator[bytes]:
        try:
            while block := read(HTTP_CHUNK, decode_content=True):
                yield block
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise RetryableError(f"{shown}: connection lost ({type(exc).__name__})") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise RetryableError(f"{shown}: connection lost ({type(exc).__name__})") from None

    return Download(offset=start, chunks=chunks(), close=response.close, total=total)


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


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
        fd, _ = open_regular(path)  # a FIFO is not waited for: refused like any other non-regular file
    except NotRegularFile:
        raise DataError(f"{path}: the source is not a regular file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read source ({exc.strerror})") from None
    handle = os.fdopen(fd, "rb")
    return _stream(handle, offset, lambda exc: DataError(f"{path}: cannot read source ({exc.strerror})"))


def _fetch_fsspec(url: str, offset: int, opener: Callable[[str], Any] | None) -> Download:
    scheme = _scheme(url)
    if opener is None:
        try:
            fsspec = importlib.import_module("fsspec")
        except ImportError:
            hint = _extra_hint(scheme)
            raise DataError(f"{redact_url(url)}: {scheme}:// sources need fsspec: {hint}") from None

        def opener(u: str) -> Any:
            return fsspec.open(u, "rb").open()

    try:
        handle = opener(url)
    except ImportError:
        raise DataError(f"{redact_url(url)}: {scheme}:// sources need {_extra_hint(scheme)}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{redact_url(url)}: cannot open ({redact_urls(' '.join(str(exc).split()))[:200]})") from None
    return _stream(handle, offset, lambda exc: RetryableError(f"{redact_url(url)}: {redact_urls(str(exc))[:200]}"))


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

    return Download(offset=offset, chunks=chunks(), close=handle.close, total=size)


def _extra_hint(scheme: str) -> str:
    package = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
    return f"pip install {package.get(scheme, 'fsspec')}"
