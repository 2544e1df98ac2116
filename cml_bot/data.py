"""Versioned data: files pinned by URL and sha256, pulled through a content-addressed cache, or DVC.

Pulling pinned files (:func:`pull`):

- The cache holds each blob once at ``<cache>/sha256/ab/abcdef...`` (read-only), with downloads in
  progress at ``<cache>/sha256/ab/abcdef....part``. The default cache is ``data.cache`` from the
  config, else ``$CML_BOT_CACHE``, else ``~/.cache/cml-bot``; a plain folder, so ``actions/cache``
  can keep it between CI runs.
- Every byte is hashed while it is written to the ``.part`` file; only a blob whose sha256 matches
  is renamed into the cache, and only such a blob is placed in the workspace: a hard link to a
  temporary name beside the target, then an atomic rename over it (a copy when the cache is on
  another device). A blob already in the cache from an earlier run is re-hashed before it is placed.
  A killed pull leaves at most a ``.part`` file (resumed next time, with an HTTP Range request) and
  a hidden ``.<name>.cml-bot-*.tmp`` beside the target (removed next time), never a half-written
  file under a real name.
- ``<repo>/.cml-bot/data-state.json`` records size, mtime and inode of each file as placed. A file
  whose stat still matches is up to date without being read: a warm pull is a stat per file, no
  hashing and no network.
- Sources: ``https://``, ``http://`` (a ``requests`` session), ``file://`` URLs and plain paths
  (relative to the repo root), and any other fsspec protocol (``s3://``, ``gs://``, ...) when fsspec
  and its backend are installed. Connection errors, timeouts, 429 and 5xx answers are retried with
  exponential backoff, resuming where the previous attempt stopped.

Writes are atomic against a killed process, not fsync'ed against power loss; blobs taken from the
cache are verified before they are placed, which covers a cache damaged that way.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib
import io
import json
import logging
import os
import re
import shutil
import stat
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, Protocol

import yaml

from cml_bot.config import Config, DataFile, Step, parse_config, yaml_error
from cml_bot.errors import ConfigError, DataError
from cml_bot.results import atomic_write

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

STATE_FILE = ".cml-bot/data-state.json"
CHUNK = 1 << 20
HTTP_CHUNK = 1 << 16
RETRIES = 4  # attempts after the first, when an attempt makes no progress
BACKOFF = 0.5  # seconds before the first retry, doubled each time
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

    return Download(offset=start, chunks=chunks(), close=response.close)


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

    def chunks() -> Iterator[bytes]:
        try:
            while block := handle.read(CHUNK):
                yield block
        except OSError as exc:
            raise failure(exc) from None

    return Download(offset=offset, chunks=chunks(), close=handle.close)


def _extra_hint(scheme: str) -> str:
    package = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
    return f"pip install {package.get(scheme, 'fsspec')}"


# ----------------------------------------------------------------------------------------------- pull


Action = Literal["up-to-date", "verified", "cached", "downloaded"]


@dataclass(frozen=True)
class PulledFile:
    path: str
    sha256: str
    size: int
    action: Action  # up-to-date: stat unchanged; verified: re-hashed in place; cached/downloaded: placed


@dataclass(frozen=True)
class PullResult:
    files: tuple[PulledFile, ...]
    cache: Path
    seconds: float

    def count(self, action: Action) -> int:
        return sum(1 for f in self.files if f.action == action)

    @property
    def bytes_downloaded(self) -> int:
        return sum(f.size for f in self.files if f.action == "downloaded")

    @property
    def summary(self) -> str:
        counts = ", ".join(
            f"{n} {a}" for a in ("downloaded", "cached", "verified", "up-to-date") if (n := self.count(a))
        )
        return f"{len(self.files)} data files ({counts or 'none'}) in {self.seconds:.2f} s"


def default_cache(config: Config) -> Path:
    """``data.cache`` (relative to the repo), else ``$CML_BOT_CACHE``, else ``~/.cache/cml-bot``."""
    if config.data.cache:
        path = Path(config.data.cache).expanduser()
        return path if path.is_absolute() else config.root / path
    env = os.environ.get("CML_BOT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "cml-bot"


def blob_path(cache: Path, sha256: str) -> Path:
    return cache / "sha256" / sha256[:2] / sha256


def pull(
    config: Config,
    *,
    fetch: Fetcher | None = None,
    progress: Callable[[str], None] | None = None,
    jobs: int = 8,
    cache: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PullResult:
    """Make every file in ``config.data.files`` present and verified in the repo.

    ``progress`` gets one line per file as it completes (``"[3/10] data/x.csv: downloaded 1.2 MB"``),
    from worker threads but one call at a time; the caller decides how to show them. Raises
    DataError naming the file on any failure; files finished before the failure stay placed.
    """
    started = time.monotonic()
    root = config.root.resolve()
    cache = (cache if cache is not None else default_cache(config)).expanduser().resolve()
    files = config.data.files
    checked: dict[str, str] = {}
    targets = {f.path: _target(root, f.path, checked) for f in files}  # checks every path before any work
    state = _State.load(root)
    results: dict[str, PulledFile] = {}
    pending: list[DataFile] = []
    stale: set[str] = set()  # in place but known, by stat, to be another version: no need to hash it
    for f in files:
        size = state.fresh(f, targets[f.path])
        if size is not None:
            results[f.path] = PulledFile(f.path, f.sha256, size, "up-to-date")
        else:
            pending.append(f)
            if state.stale(f, targets[f.path]):
                stale.add(f.path)
    total = len(files)
    done = [len(results)]
    lock = threading.Lock()

    def report(item: PulledFile) -> None:
        with lock:
            done[0] += 1
            results[item.path] = item
            state.record(item.path, item.sha256, targets[item.path])
            if progress is not None:
                progress(f"[{done[0]}/{total}] {item.path}: {item.action} {_size(item.size)}")

    if pending:
        own: SourceFetcher | None = None
        fetcher: Fetcher
        if fetch is None:
            own = fetcher = make_fetcher(root)
        else:
            fetcher = fetch
        by_sha: dict[str, list[DataFile]] = {}
        for f in pending:
            by_sha.setdefault(f.sha256, []).append(f)
        _clean_leftovers(targets[f.path] for f in pending)
        worker = _Worker(root, cache, fetcher, sleep, targets, report, stale)
        lock_handle = _lock_cache(cache, progress)
        try:
            if jobs <= 1 or len(by_sha) == 1:
                for group in by_sha.values():
                    worker.run(group)
            else:
                with ThreadPoolExecutor(max_workers=min(jobs, len(by_sha))) as pool:
                    futures = [pool.submit(worker.run, group) for group in by_sha.values()]
                    try:
                        for future in futures:
                            future.result()
                    except BaseException:
                        worker.cancelled.set()
                        for other in futures:
                            other.cancel()
                        raise
        finally:
            lock_handle.close()
            if own is not None:
                own.close()
            state.save()
    elif state.dirty:
        state.save()
    ordered = tuple(results[f.path] for f in files)
    result = PullResult(files=ordered, cache=cache, seconds=time.monotonic() - started)
    log.info("pull: %s", result.summary)
    return result


def _lock_cache(cache: Path, progress: Callable[[str], None] | None) -> io.BufferedWriter:
    """Hold ``<cache>/.lock`` until the returned file is closed: pulls sharing a cache take turns."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        handle = (cache / ".lock").open("ab")
    except OSError as exc:
        raise DataError(f"{cache}: cannot use the data cache ({exc.strerror or exc})") from None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no locking
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        if progress is not None:
            progress(f"waiting for another pull using the cache {cache}")
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def _target(root: Path, relative: str, checked: dict[str, str] | None = None) -> Path:
    """The workspace path for ``relative``, refusing anything that resolves outside ``root``.

    ``checked`` remembers folders already resolved (the warm pull of many files in few folders).
    """
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", relative) or not pure.parts:
        raise DataError(f"{relative}: data path must stay inside the repo (no absolute path, no '..')")
    target = root.joinpath(*pure.parts)
    folder = os.path.dirname(target)
    checked = {} if checked is None else checked
    if folder not in checked:
        checked[folder] = os.path.realpath(folder)
    if not _inside(root, checked[folder]):
        raise DataError(f"{relative}: data path leaves the repo through a symlink (to {checked[folder]})")
    if os.path.islink(target):
        pointed = os.path.realpath(target)
        if not _inside(root, pointed):
            raise DataError(f"{relative}: data path is a symlink out of the repo (to {pointed})")
    return target


def _inside(root: Path, resolved: str) -> bool:
    base = str(root)
    return resolved == base or resolved.startswith(base.rstrip(os.sep) + os.sep)


class _State:
    """``.cml-bot/data-state.json``: what each placed file looked like, to skip re-hashing it."""

    def __init__(self, root: Path, entries: dict[str, dict[str, Any]]) -> None:
        self.path = root / STATE_FILE
        self.entries = entries
        self.dirty = False

    @classmethod
    def load(cls, root: Path) -> _State:
        try:
            raw = json.loads((root / STATE_FILE).read_text(encoding="utf-8"))
            entries = raw["files"] if raw.get("version") == 1 and isinstance(raw.get("files"), dict) else {}
        except (OSError, ValueError, AttributeError):
            entries = {}
        return cls(root, entries)

    def fresh(self, f: DataFile, target: Path) -> int | None:
        """The size of ``target`` when it is exactly as placed for ``f.sha256``, else None."""
        entry = self.entries.get(f.path)
        if not isinstance(entry, dict) or entry.get("sha256") != f.sha256:
            return None
        try:
            st = target.lstat()
        except OSError:
            return None
        if (
            stat.S_ISREG(st.st_mode)
            and entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns
            and entry.get("ino") == st.st_ino
        ):
            return st.st_size
        return None

    def stale(self, f: DataFile, target: Path) -> bool:
        """True when ``target`` is known by its stat to hold another version than ``f.sha256``."""
        entry = self.entries.get(f.path)
        if not isinstance(entry, dict) or entry.get("sha256") in (None, f.sha256):
            return False
        try:
            st = target.lstat()
        except OSError:
            return False
        return (entry.get("size"), entry.get("mtime_ns"), entry.get("ino")) == (st.st_size, st.st_mtime_ns, st.st_ino)

    def record(self, path: str, sha256: str, target: Path) -> None:
        st = target.lstat()
        self.entries[path] = {
            "sha256": sha256,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ino": st.st_ino,
        }
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ignore = self.path.parent / ".gitignore"
        if not ignore.exists():
            atomic_write(ignore, b"*\n")
        body = json.dumps({"version": 1, "files": self.entries}, indent=1, sort_keys=True).encode()
        atomic_write(self.path, body)
        self.dirty = False


def hash_file(path: Path) -> tuple[str, int]:
    """sha256 hex digest and size of ``path``."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class _Worker:
    def __init__(
        self,
        root: Path,
        cache: Path,
        fetch: Fetcher,
        sleep: Callable[[float], None],
        targets: Mapping[str, Path],
        report: Callable[[PulledFile], None],
        stale: set[str],
    ) -> None:
        self.stale = stale
        self.root = root
        self.cache = cache
        self.fetch = fetch
        self.sleep = sleep
        self.targets = targets
        self.report = report
        self.cancelled = threading.Event()
        self.made: set[Path] = set()
        self.made_lock = threading.Lock()

    def makedirs(self, folder: Path) -> None:
        """``mkdir -p``, once per folder and pull (a syscall saved per file of a big pull)."""
        with self.made_lock:
            if folder in self.made:
                return
        folder.mkdir(parents=True, exist_ok=True)
        with self.made_lock:
            self.made.add(folder)

    def run(self, group: Sequence[DataFile]) -> None:
        """Bring every file of ``group`` (all with the same sha256) into place."""
        if self.cancelled.is_set():
            return
        sha = group[0].sha256
        blob = blob_path(self.cache, sha)
        remaining = []
        for f in group:  # a file already right in place only needs re-hashing (its stat changed)
            target = self.targets[f.path]
            if f.path not in self.stale and target.is_file() and not target.is_symlink():
                digest, size = _hash_or_none(target)
                if digest == sha:
                    self.report(PulledFile(f.path, sha, size, "verified"))
                    continue
                if _same_inode(target, blob):  # a hard link to a blob edited in place: the blob is bad too
                    _unlink_blob(blob)
            remaining.append(f)
        if not remaining:
            return
        action: Action = "cached"
        cached = _cached_size(blob, sha)
        if cached is None:
            size = self.download(remaining[0], blob)
            action = "downloaded"
        else:
            size = cached
        for f in remaining:
            _place(blob, self.targets[f.path], f.path, self.makedirs)
            self.report(PulledFile(f.path, sha, size, action))

    def download(self, f: DataFile, blob: Path) -> int:
        """Fetch ``f`` into the cache, verified; return its size."""
        self.makedirs(blob.parent)
        part = blob.with_name(blob.name + ".part")
        failures = 0
        restarted = False
        while True:
            if self.cancelled.is_set():
                raise DataError(f"{f.path}: pull cancelled")
            before = _file_size(part)
            try:
                digest, size = self._attempt(f, part)
            except ResumeRejected as exc:
                log.info("%s: %s; starting again", f.path, exc)
                _unlink(part)
                if restarted:
                    raise DataError(f"{f.path}: {exc}") from None
                restarted = True
                continue
            except RetryableError as exc:
                if _file_size(part) > before:  # progress was made: resume at once
                    failures = 0
                    log.info("%s: %s; resuming", f.path, exc)
                    continue
                failures += 1
                if failures > RETRIES:
                    raise DataError(f"{f.path}: download failed after {failures} attempts: {exc}") from None
                delay = BACKOFF * 2 ** (failures - 1)
                log.info("%s: %s; retrying in %.1f s", f.path, exc, delay)
                self.sleep(delay)
                continue
            if digest == f.sha256:
                break
            _unlink(part)
            if before and not restarted:  # the resumed prefix may be what was wrong: try once from scratch
                log.info("%s: sha256 mismatch after resuming; downloading again from the start", f.path)
                restarted = True
                continue
            raise DataError(
                f"{f.path}: sha256 mismatch for {redact(f.url)}: expected {f.sha256}, got {digest} (nothing was placed)"
            )
        os.chmod(part, 0o444)
        os.replace(part, blob)
        return size

    def _attempt(self, f: DataFile, part: Path) -> tuple[str, int]:
        """Append to ``part`` from where it stops; return the sha256 and size of the whole file."""
        digest = hashlib.sha256()
        have = 0
        if part.exists():
            try:
                with part.open("rb") as handle:
                    while block := handle.read(CHUNK):
                        digest.update(block)
                        have += len(block)
            except OSError:
                _unlink(part)
                digest, have = hashlib.sha256(), 0
        download = self.fetch(f.url, have)
        try:
            if download.offset == have:
                mode = "ab"
            elif download.offset == 0:  # the source ignored the request to resume
                digest, have = hashlib.sha256(), 0
                mode = "wb"
            else:
                raise ResumeRejected(f"{redact(f.url)}: source resumed at {download.offset}, not {have}")
            with part.open(mode) as out:
                for block in download.chunks:
                    if self.cancelled.is_set():
                        raise DataError(f"{f.path}: pull cancelled")
                    out.write(block)
                    digest.update(block)
                    have += len(block)
        finally:
            download.close()
        return digest.hexdigest(), have


def _hash_or_none(path: Path) -> tuple[str | None, int]:
    try:
        return hash_file(path)
    except OSError:
        return None, 0


def _cached_size(blob: Path, sha: str) -> int | None:
    """Size of the cached blob when it is present and its content is right (a bad one is removed)."""
    if not blob.is_file():
        return None
    digest, size = _hash_or_none(blob)
    if digest == sha:
        return size
    log.warning("cache blob %s is damaged; downloading again", blob)
    _unlink_blob(blob)
    return None


def _same_inode(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _unlink_blob(blob: Path) -> None:
    with contextlib.suppress(OSError):
        os.chmod(blob, 0o644)
    _unlink(blob)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _clean_leftovers(targets: Iterable[Path]) -> None:
    """Remove temporaries an interrupted pull left beside ``targets`` (one listing per folder)."""
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        by_folder.setdefault(target.parent, set()).add(target.name)
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            leftover = name.startswith(".") and name.endswith(".tmp") and ".cml-bot-" in name
            if leftover and name[1:].split(".cml-bot-", 1)[0] in names:
                _unlink(Path(entry.path))


def _place(blob: Path, target: Path, shown: str, makedirs: Callable[[Path], None]) -> None:
    """Put ``blob`` at ``target`` atomically: hard link when possible, else copy."""
    try:
        makedirs(target.parent)
    except OSError as exc:
        raise DataError(f"{shown}: cannot create folder {target.parent} ({exc.strerror})") from None
    tmp = target.with_name(f".{target.name}.cml-bot-{os.getpid()}-{threading.get_ident()}.tmp")
    _unlink(tmp)
    try:
        try:
            os.link(blob, tmp)
        except OSError:  # another device, or a filesystem without hard links
            shutil.copyfile(blob, tmp)
            os.chmod(tmp, 0o444)
        if target.is_dir() and not target.is_symlink():
            raise DataError(f"{shown}: a folder is in the way")
        os.replace(tmp, target)
    except OSError as exc:
        _unlink(tmp)
        raise DataError(f"{shown}: cannot place file ({exc.strerror or exc})") from None
    except BaseException:
        _unlink(tmp)
        raise


# ------------------------------------------------------------------------------------------- data add


def add_file(config_root: Path, path: str, url: str, config_file: Path) -> DataFile:
    """Hash ``path`` (relative to ``config_root``, or absolute inside it) and pin it in ``config_file``.

    The entry under ``data.files`` with the same path is replaced, otherwise one is appended. The
    file is edited as text at the place the YAML parser reports, so comments and layout elsewhere
    stay as they were; where ``data`` is written in flow style (``[...]``/``{...}``) only that section
    is re-emitted. The result is validated with the config parser before it is written atomically.
    """
    root = config_root.resolve()
    given = Path(path).expanduser()
    absolute = given if given.is_absolute() else root / given
    try:
        relative = absolute.resolve().relative_to(root).as_posix()
    except ValueError:
        raise DataError(f"{path}: not inside the repo {root}") from None
    _target(root, relative)
    source = root / relative
    if not source.is_file():
        raise DataError(f"{path}: not a file")
    if not url.strip():
        raise DataError(f"{path}: a source URL is required")
    sha, _ = hash_file(source)
    entry = DataFile(path=relative, url=url.strip(), sha256=sha)
    try:
        text = config_file.read_text(encoding="utf-8") if config_file.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{config_file}: cannot read ({exc})") from None
    new_text = set_data_entry(text, entry, str(config_file.name))
    try:
        parsed = parse_config(yaml.safe_load(new_text), root, config_file.name)
    except yaml.YAMLError as exc:  # pragma: no cover - set_data_entry emits valid YAML
        raise DataError(f"{config_file}: could not add the entry ({exc})") from None
    if entry not in parsed.data.files:  # pragma: no cover - a bug in set_data_entry
        raise DataError(f"{config_file}: could not add the entry for {relative}")
    atomic_write(config_file, new_text.encode("utf-8"))
    return entry


def set_data_entry(text: str, entry: DataFile, shown: str = "cml-bot.yaml") -> str:
    """``text`` (a cml-bot.yaml) with ``entry`` added to or replaced in ``data.files``. Pure."""
    try:
        root_node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}:{yaml_error(exc)} (cannot add a data entry)") from None
    if root_node is None:
        return _append_block(text, entry)
    if not isinstance(root_node, yaml.MappingNode) or root_node.flow_style:
        raise ConfigError(f"{shown}: expected a mapping at the top level")
    data_pair = next(((k, v) for k, v in root_node.value if k.value == "data"), None)
    if data_pair is None:
        return _append_block(text, entry)
    data_key, data_node = data_pair
    files_node = data_node
    if isinstance(data_node, yaml.MappingNode):
        pair = next(((k, v) for k, v in data_node.value if k.value == "files"), None)
        files_node = pair[1] if pair is not None else None
    edited = _edit_block_sequence(text, files_node, entry) if files_node is not None else None
    if edited is not None:
        return edited
    # Anything else (flow style, empty list, null, no files key): re-emit the data section alone.
    loaded = yaml.safe_load(text) or {}
    data = loaded.get("data")
    if isinstance(data, list) or data is None:
        data = {"files": data or []}
    if not isinstance(data, dict):
        raise ConfigError(f"{shown} at data: expected a mapping")
    files = [f for f in (data.get("files") or []) if not (isinstance(f, dict) and f.get("path") == entry.path)]
    files.append({"path": entry.path, "url": entry.url, "sha256": entry.sha256})
    data["files"] = files
    section = yaml.safe_dump({"data": data}, sort_keys=False, default_flow_style=False, width=1 << 20)
    start = text.rfind("\n", 0, data_key.start_mark.index) + 1
    end = _content_end(data_node)
    rest = text[end:]
    comment = re.match(r"[ \t]*(#[^\n]*)", rest)  # a comment after the section's last value stays
    if comment:
        section += comment.group(1) + "\n"
        rest = rest[comment.end() :]
    if rest.startswith("\n"):
        rest = rest[1:]
    return text[:start] + section + rest


def _edit_block_sequence(text: str, node: yaml.Node, entry: DataFile) -> str | None:
    """Replace or append ``entry`` in a block sequence of block mappings; None for other shapes."""
    if not isinstance(node, yaml.SequenceNode) or node.flow_style or not node.value:
        return None
    items = node.value
    if any(not isinstance(i, yaml.MappingNode) or i.flow_style for i in items):
        return None
    dash_col = node.start_mark.column
    for item in items:  # each item must start on its dash's line: "- path: ..."
        dash = item.start_mark.index - (item.start_mark.column - dash_col)
        if item.start_mark.column <= dash_col or text[dash] != "-":
            return None
    key_col = items[0].start_mark.column
    block = _entry_block(entry, dash_col, key_col - dash_col)
    for item in items:
        path = next((v for k, v in item.value if k.value == "path"), None)
        if isinstance(path, yaml.ScalarNode) and _same_path(path.value, entry.path):
            start = item.start_mark.index - (item.start_mark.column - dash_col)
            return text[:start] + block.lstrip(" ") + text[_content_end(item) :]
    end = _content_end(items[-1])
    newline = text.find("\n", end)  # after a trailing comment on the last item's line
    if newline < 0:
        return text + "\n" + block + "\n"
    return text[: newline + 1] + block + "\n" + text[newline + 1 :]


def _same_path(a: str, b: str) -> bool:
    return PurePosixPath(a.replace("\\", "/")) == PurePosixPath(b)


def _content_end(node: yaml.Node) -> int:
    """Index just after the last character of ``node``'s own content (not trailing comments)."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return int(node.end_mark.index)
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:  # pragma: no cover
        children = []
    return max((_content_end(c) for c in children), default=int(node.end_mark.index))


def _entry_block(entry: DataFile, indent: int, gap: int) -> str:
    pad = " " * indent
    inner = " " * (indent + gap)
    return (
        f"{pad}-{' ' * (gap - 1)}path: {_scalar(entry.path)}\n"
        f"{inner}url: {_scalar(entry.url)}\n"
        f"{inner}sha256: {_scalar(entry.sha256)}"
    )


def _append_block(text: str, entry: DataFile) -> str:
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "data:\n  files:\n" + _entry_block(entry, 2, 2) + "\n"


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when it reads back unchanged, else double-quoted."""
    try:
        if yaml.safe_load(f"k: {value}") == {"k": value} and "#" not in value:
            return value
    except yaml.YAMLError:
        pass
    return json.dumps(value)


# ------------------------------------------------------------------------------------------------ DVC


def is_dvc_repo(root: Path) -> bool:
    return (root / ".dvc").is_dir()


def dvc_executable() -> str | None:
    """``dvc`` on PATH, else beside the running Python (an unactivated virtualenv)."""
    import sys

    found = shutil.which("dvc")
    if found:
        return found
    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def dvc_pull(
    root: Path,
    echo: Callable[[str], None] | None = None,
    *,
    args: Sequence[str] = (),
    timeout: float | None = None,
) -> None:
    """Run ``dvc pull [args]`` in ``root``, passing its output lines to ``echo``.

    Raises DataError when dvc is not installed or the pull fails (with dvc's last output line).
    """
    import shlex

    from cml_bot.pipeline import run_step

    exe = dvc_executable()
    if exe is None:
        raise DataError("dvc not installed: pip install dvc")
    command = " ".join(shlex.quote(part) for part in (exe, "pull", *args))
    result = run_step(Step(name="dvc pull", run=command), root, echo=echo, timeout=timeout)
    if not result.ok:
        last = next((line for line in reversed(result.log_tail) if line.strip()), "")
        why = "timed out" if result.timed_out else f"exit {result.returncode}"
        raise DataError(f"dvc pull failed in {root} ({why}){': ' + last.strip() if last else ''}")


# --------------------------------------------------------------------------------------- data changes


@dataclass(frozen=True)
class DataChange:
    path: str
    base_sha256: str | None  # None: new at head
    head_sha256: str | None  # None: removed at head
    base_rows: int | None = None
    head_rows: int | None = None
    columns_added: tuple[str, ...] = ()
    columns_removed: tuple[str, ...] = ()
    label_counts: tuple[tuple[str, int, int], ...] = ()  # (label, base count, head count), only when changed

    @property
    def changed(self) -> bool:
        return self.base_sha256 != self.head_sha256


@dataclass(frozen=True)
class _Table:
    rows: int
    columns: tuple[str, ...]
    labels: Counter[str] | None  # None: no label column in this table


def data_changes(
    base: Mapping[str, bytes | None],
    head: Mapping[str, bytes | None],
    label_column: str | None,
) -> list[DataChange]:
    """Compare data files at base and head (path -> content, None or absent: not there). Pure.

    One entry per path present on either side, sorted by path, unchanged ones included (``changed``
    tells). CSV/TSV (and Parquet when pyarrow is installed) also get row counts, column changes
    and, when ``label_column`` is present, the labels whose count changed.
    """
    changes = []
    for path in sorted(set(base) | set(head)):
        old, new = base.get(path), head.get(path)
        if old is None and new is None:
            continue
        old_sha = hashlib.sha256(old).hexdigest() if old is not None else None
        new_sha = hashlib.sha256(new).hexdigest() if new is not None else None
        old_table = _table(path, old, label_column)
        new_table = old_table if new_sha == old_sha else _table(path, new, label_column)
        if old_table is None and new_table is None:
            changes.append(DataChange(path, old_sha, new_sha))
            continue
        both = old_table is not None and new_table is not None
        old_cols = old_table.columns if old_table else ()
        new_cols = new_table.columns if new_table else ()
        labels: tuple[tuple[str, int, int], ...] = ()
        old_labels = old_table.labels if old_table else None
        new_labels = new_table.labels if new_table else None
        if old_labels is not None or new_labels is not None:
            before, after = old_labels or Counter(), new_labels or Counter()
            labels = tuple(
                (label, before[label], after[label])
                for label in sorted(set(before) | set(after))
                if before[label] != after[label]
            )
        changes.append(
            DataChange(
                path,
                old_sha,
                new_sha,
                base_rows=old_table.rows if old_table else None,
                head_rows=new_table.rows if new_table else None,
                columns_added=tuple(c for c in new_cols if c not in old_cols) if both else (),
                columns_removed=tuple(c for c in old_cols if c not in new_cols) if both else (),
                label_counts=labels,
            )
        )
    return changes


def _table(path: str, content: bytes | None, label_column: str | None) -> _Table | None:
    if content is None:
        return None
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _csv_table(content, "\t" if suffix == ".tsv" else ",", label_column)
    if suffix in (".parquet", ".pq"):
        return _parquet_table(content, label_column)
    return None


def _csv_table(content: bytes, delimiter: str, label_column: str | None) -> _Table | None:
    text = content.decode("utf-8-sig", errors="replace")
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return _Table(0, (), None)
        columns = tuple(c.strip() for c in header)
        index = columns.index(label_column) if label_column and label_column in columns else None
        labels: Counter[str] | None = Counter() if index is not None else None
        rows = 0
        for row in reader:
            if not row:
                continue
            rows += 1
            if labels is not None and index is not None:
                labels[row[index].strip() if index < len(row) else ""] += 1
    except csv.Error:
        return None
    return _Table(rows, columns, labels)


def _parquet_table(content: bytes, label_column: str | None) -> _Table | None:
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        return None
    import pandas as pd

    try:
        frame = pd.read_parquet(io.BytesIO(content))
    except Exception:  # a damaged or foreign file: report its hash only
        return None
    columns = tuple(str(c) for c in frame.columns)
    labels: Counter[str] | None = None
    if label_column and label_column in frame.columns:
        labels = Counter({str(k): int(v) for k, v in frame[label_column].value_counts(dropna=False).items()})
    return _Table(len(frame), columns, labels)


__all__ = [
    "DataChange",
    "Download",
    "Fetcher",
    "PullResult",
    "PulledFile",
    "RetryableError",
    "SourceFetcher",
    "add_file",
    "blob_path",
    "data_changes",
    "default_cache",
    "dvc_pull",
    "hash_file",
    "is_dvc_repo",
    "make_fetcher",
    "pull",
    "redact",
    "set_data_entry",
]
