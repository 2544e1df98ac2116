"""Pulling pinned files through the content-addressed cache (see :mod:`cml_bot.data`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from cml_bot.config import Config, DataFile, in_git_folder, is_git_name
from cml_bot.data.sources import CHUNK, Fetcher, ResumeRejected, RetryableError, SourceFetcher, make_fetcher
from cml_bot.errors import CmlBotError, DataError
from cml_bot.files import NotRegularFile, describe_size, open_regular, read_limited
from cml_bot.results import atomic_write
from cml_bot.secrets import redact_url

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

STATE_FILE = ".cml-bot/data-state.json"
RETRIES = 4  # attempts after the first, when an attempt makes no progress
BACKOFF = 0.5  # seconds before the first retry, doubled each time
# A file's deadline: DEADLINE_SLACK seconds, plus its size at MIN_THROUGHPUT bytes per second (all
# attempts together). Without a pinned size, the bytes received so far set the pace, and at most
# UNPINNED_MAX_BYTES are accepted.
MIN_THROUGHPUT = 100_000
DEADLINE_SLACK = 60.0
UNPINNED_MAX_BYTES = 10_000_000_000
LOCK_TIMEOUT = 900.0  # seconds to wait for another pull using the same cache
LOCK_POLL = 0.2

# ----------------------------------------------------------------------------------------------- pull


Action = Literal["up-to-date", "verified", "cached", "downloaded"]
# Called as a download advances: (repo path, bytes of the file received so far, the file's size or None).
Transfer = Callable[[str, int, int | None], None]


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
        files = f"{len(self.files)} data file{'' if len(self.files) == 1 else 's'}"
        return f"{files} ({counts or 'none'}) in {self.seconds:.2f} s"


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
    transfer: Transfer | None = None,
    jobs: int = 8,
    cache: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PullResult:
    """Make every file in ``config.data.files`` present and verified in the repo.

    ``progress`` gets one line per file as it completes (``"[3/10] data/x.csv: downloaded 1.2 MB"``),
    from worker threads but one call at a time; the caller decides how to show them. ``transfer``
    gets byte-level progress of each download (after every block; same threads, same lock). Raises
    DataError naming the file on any failure; files finished before the failure stay placed.
    """
    started = time.monotonic()
    root = config.root.resolve()
    cache = (cache if cache is not None else default_cache(config)).expanduser().resolve()
    files = config.data.files
    checked: dict[str, str] = {}
    targets = {f.path: target_path(root, f.path, checked) for f in files}  # checks every path before any work
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
                progress(f"[{done[0]}/{total}] {item.path}: {item.action} {describe_size(item.size)}")

    def received(path: str, count: int, size: int | None) -> None:
        if transfer is not None:
            with lock:
                transfer(path, count, size)

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
        worker = _Worker(root, cache, fetcher, sleep, targets, report, stale, received)
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


def _lock_cache(cache: Path, progress: Callable[[str], None] | None, timeout: float | None = None) -> Any:
    """Hold ``<cache>/.lock`` until the returned file is closed: pulls sharing a cache take turns.

    The holder writes its pid, host and start time into the file, so a waiting pull can say who it
    waits for; it waits at most ``timeout`` seconds (default :data:`LOCK_TIMEOUT`). The lock is the
    kernel's (``flock``), released when the holder exits however it ends."""
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    lock = cache / ".lock"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        handle = _open_regular(lock, os.O_RDWR | os.O_CREAT, "r+b")
    except OSError as exc:
        raise DataError(f"{cache}: cannot use the data cache ({exc.strerror or exc})") from None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no locking
        return handle
    started = time.monotonic()
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            holder = _lock_holder(handle)
            waited = time.monotonic() - started
            if waited >= timeout:
                handle.close()
                raise DataError(
                    f"{cache}: the data cache is locked by {holder}; gave up after {waited:.0f} s "
                    "(another pull is using it; try again when it ends)"
                ) from None
            if not announced and progress is not None:
                progress(f"waiting for the data cache {cache}, locked by {holder}")
                announced = True
            time.sleep(min(LOCK_POLL, max(0.0, timeout - waited)))
    try:
        handle.seek(0)
        handle.truncate()
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        handle.write(json.dumps(info).encode("utf-8"))
        handle.flush()
    except OSError:
        pass  # the lock holds without the note
    return handle


def _lock_holder(handle: Any) -> str:
    """Who holds the lock, from what the holder wrote into the lock file."""
    try:
        handle.seek(0)
        info = json.loads(handle.read(4096) or b"{}")
        pid, host, since = int(info["pid"]), str(info["host"])[:100], str(info["since"])[:40]
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (unknown)"
    return f"pid {pid} on {host} since {since}"


def _open_regular(path: Path, flags: int, how: str) -> Any:
    """Open a cache entry without following a symlink (binary, Python mode ``how``); anything
    there that is not a regular file (a symlink, a folder, a FIFO) is removed first and replaced.
    Without ``O_CREAT`` in ``flags`` a missing entry raises FileNotFoundError."""
    _replace_irregular(path)
    try:
        fd, _ = open_regular(path, flags | _NOFOLLOW)
    except NotRegularFile:  # swapped in between
        raise DataError(f"{path}: not a regular file in the cache; refusing to use it") from None
    return os.fdopen(fd, how)


def _replace_irregular(path: Path) -> None:
    """Remove ``path`` when it exists but is not a regular file (a cache entry someone replaced)."""
    try:
        info = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISREG(info.st_mode):
        return
    log.warning("%s: not a regular file in the cache; replacing it", path)
    _remove(path)


def _remove(path: Path) -> None:
    """Remove whatever is at ``path`` (a file, a link, a folder); nothing if it is gone (its folder
    too, or a file in its folder's place)."""
    try:
        if stat.S_ISDIR(path.lstat().st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        pass


def _real_folder(folder: Path, cache: Path) -> None:
    """Make ``folder`` (inside ``cache``) a real directory: a symlink or file in its place is removed."""
    for part in reversed([folder, *folder.parents]):
        if part == cache or not part.is_relative_to(cache) or part == part.parent:
            continue
        try:
            info = part.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            log.warning("%s: not a folder in the cache; replacing it", part)
            _unlink(part)


def target_path(root: Path, relative: str, checked: dict[str, str] | None = None) -> Path:
    """The workspace path for ``relative``, refusing anything that resolves outside ``root``.

    ``checked`` remembers folders already resolved (the warm pull of many files in few folders).
    """
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", relative) or not pure.parts:
        raise DataError(f"{relative}: data path must stay inside the repo (no absolute path, no '..')")
    if in_git_folder(relative):
        raise DataError(f"{relative}: data may not be placed inside .git/")
    target = root.joinpath(*pure.parts)
    folder = os.path.dirname(target)
    checked = {} if checked is None else checked
    if folder not in checked:
        resolved = os.path.realpath(folder)
        if not _inside(root, resolved):
            raise DataError(f"{relative}: data path leaves the repo through a symlink (to {resolved})")
        _refuse_git_folder(root, resolved, relative)
        checked[folder] = resolved  # remembered only once every check passed
    if os.path.islink(target):
        pointed = os.path.realpath(target)
        if not _inside(root, pointed):
            raise DataError(f"{relative}: data path is a symlink out of the repo (to {pointed})")
        _refuse_git_folder(root, pointed, relative)
    return target


def _inside(root: Path, resolved: str) -> bool:
    base = str(root)
    return resolved == base or resolved.startswith(base.rstrip(os.sep) + os.sep)


def _refuse_git_folder(root: Path, resolved: str, relative: str) -> None:
    """Refuse ``resolved`` (a real path inside ``root``) when it or a folder above it is a git folder.

    The path's text was checked already; this is where a committed symlink (``data -> .git``) leads.
    A file written there (``.git/config`` with ``core.fsmonitor``, a hook) runs commands at the next
    git call, the posting step's included. Refused by name (``.git`` in any case, with the trailing
    dots and spaces Windows ignores) and by identity: the folder that ``<root>/.git`` is, or that a
    ``.git`` file names (``gitdir:``, as worktrees and submodules have), under whatever name."""
    identities: set[tuple[int, int]] | None = None
    path = Path(resolved)
    for part in (path, *path.parents):
        if part == root or not part.is_relative_to(root):
            break
        if is_git_name(part.name):
            raise DataError(f"{relative}: data may not be placed inside .git/ (through a symlink to {resolved})")
        try:
            info = part.stat()
        except OSError:  # not there yet: pull creates it
            continue
        if identities is None:
            identities = _git_folder_identities(root)
        if (info.st_dev, info.st_ino) in identities:
            raise DataError(f"{relative}: data may not be placed inside .git/ (through a symlink to {resolved})")


def _git_folder_identities(root: Path) -> set[tuple[int, int]]:
    """(device, inode) of the repo's git folders: ``<root>/.git``, or the folder a ``.git`` file
    names (``gitdir: <path>``) and its common folder (``commondir``, a worktree's main git folder)."""
    found: set[tuple[int, int]] = set()
    dot_git = root / ".git"
    folders = [dot_git]
    if dot_git.is_file():
        named = _pointer(dot_git, "gitdir:")
        if named is not None:
            gitdir = (root / named).resolve()
            folders.append(gitdir)
            common = _pointer(gitdir / "commondir", "")
            if common is not None:
                folders.append((gitdir / common).resolve())
    for folder in folders:
        try:
            info = folder.stat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            found.add((info.st_dev, info.st_ino))
    return found


def _pointer(path: Path, prefix: str) -> str | None:
    """The path written in a small pointer file (``.git``'s ``gitdir: X``, ``commondir``), or None."""
    try:
        line = read_limited(path, 4096).decode("utf-8", "replace").splitlines()[0].strip()
    except (CmlBotError, IndexError):  # missing, not a regular file (a FIFO is never opened), too long
        return None
    if not line.startswith(prefix):
        return None
    return line[len(prefix) :].strip() or None


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
    with path.open("rb") as handle:
        digest, size = _hash_stream(handle)
    return digest.hexdigest(), size


def _hash_stream(handle: BinaryIO) -> tuple[Any, int]:
    """The sha256 state and size of what ``handle`` has left to read (read in CHUNK blocks)."""
    digest = hashlib.sha256()
    size = 0
    while block := handle.read(CHUNK):
        digest.update(block)
        size += len(block)
    return digest, size


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
        received: Transfer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stale = stale
        self.clock = clock
        self.received = received
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
        _real_folder(blob.parent, self.cache)
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
        """Fetch ``f`` into the cache, verified; return its size. On any failure nothing of it
        stays in the cache (the ``.part`` file is removed)."""
        try:
            self.makedirs(blob.parent)
        except OSError as exc:
            raise DataError(f"{f.path}: cannot use the data cache {self.cache} ({exc.strerror or exc})") from None
        part = blob.with_name(blob.name + ".part")
        try:
            return self._download(f, blob, part, _Pace(f, self.clock))
        except OSError as exc:  # the cache's disk: full, read-only, ...
            raise DataError(f"{f.path}: cannot write to the data cache {self.cache} ({exc.strerror or exc})") from None
        finally:
            _remove(part)

    def _download(self, f: DataFile, blob: Path, part: Path, pace: _Pace) -> int:
        failures = 0
        restarted = False
        while True:
            if self.cancelled.is_set():
                raise DataError(f"{f.path}: pull cancelled")
            before = _file_size(part)
            try:
                digest, size = self._attempt(f, part, pace)
            except ResumeRejected as exc:
                log.info("%s: %s; starting again", f.path, exc)
                _remove(part)
                if restarted:
                    raise DataError(f"{f.path}: {exc}") from None
                restarted = True
                continue
            except RetryableError as exc:
                pace.check(_file_size(part), redact_url(f.url))
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
            if digest == f.sha256 and (f.size is None or size == f.size):
                break
            _remove(part)
            if before and not restarted:  # the resumed prefix may be what was wrong: try once from scratch
                log.info("%s: sha256 mismatch after resuming; downloading again from the start", f.path)
                restarted = True
                continue
            raise DataError(
                f"{f.path}: sha256 mismatch for {redact_url(f.url)}: expected {f.sha256}, got {digest} "
                "(nothing was placed)"
            )
        os.chmod(part, 0o444)
        _replace_irregular(blob)
        os.replace(part, blob)
        return size

    def _attempt(self, f: DataFile, part: Path, pace: _Pace) -> tuple[str, int]:
        """Append to ``part`` from where it stops; return the sha256 and size of the whole file."""
        limit = f.size if f.size is not None else UNPINNED_MAX_BYTES
        digest, have = _hash_part(part, limit)
        download = self.fetch(f.url, have)
        try:
            if download.total is not None and download.total > limit:
                raise DataError(_too_large(f, download.total))
            if download.offset == have:
                flags, how = os.O_WRONLY | os.O_CREAT | os.O_APPEND, "ab"
            elif download.offset == 0:  # the source ignored the request to resume
                digest, have = hashlib.sha256(), 0
                flags, how = os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "wb"
            else:
                raise ResumeRejected(f"{redact_url(f.url)}: source resumed at {download.offset}, not {have}")
            self.received(f.path, have, download.total)
            with _open_regular(part, flags, how) as out:
                for block in download.chunks:
                    if self.cancelled.is_set():
                        raise DataError(f"{f.path}: pull cancelled")
                    if have + len(block) > limit:
                        raise DataError(_too_large(f, None))
                    out.write(block)
                    digest.update(block)
                    have += len(block)
                    pace.check(have, redact_url(f.url))
                    self.received(f.path, have, download.total)
        finally:
            download.close()
        return digest.hexdigest(), have


class _Pace:
    """The deadline of one file: :data:`DEADLINE_SLACK` plus its size (or, unpinned, the bytes
    received so far) at :data:`MIN_THROUGHPUT` bytes per second, over all attempts."""

    def __init__(self, f: DataFile, clock: Callable[[], float]) -> None:
        self.f = f
        self.clock = clock
        self.started = clock()

    def check(self, have: int, shown: str) -> None:
        elapsed = self.clock() - self.started
        allowed = DEADLINE_SLACK + max(self.f.size or 0, have) / MIN_THROUGHPUT
        if elapsed > allowed:
            raise DataError(
                f"{self.f.path}: download from {shown} too slow: {describe_size(have)} in {elapsed:.0f} s "
                f"(at least {describe_size(MIN_THROUGHPUT)}/s is needed; nothing was placed)"
            )


def _too_large(f: DataFile, announced: int | None) -> str:
    what = f"announces {announced:,} bytes" if announced is not None else "sends more"
    if f.size is not None:
        return f"{f.path}: the source {what} than the pinned size of {f.size:,} bytes; refusing it"
    return (
        f"{f.path}: the source {what} than {describe_size(UNPINNED_MAX_BYTES)}, the limit for an entry without "
        "`size:`; refusing it (run `cml-bot data add` again to pin its size)"
    )


def _hash_part(part: Path, limit: int) -> tuple[Any, int]:
    """The sha256 state and size of a partial download to resume; a bad one is removed."""
    try:
        with _open_regular(part, os.O_RDONLY, "rb") as handle:
            digest, have = _hash_stream(handle)
    except FileNotFoundError:
        return hashlib.sha256(), 0
    except OSError:
        _remove(part)
        return hashlib.sha256(), 0
    if have > limit:
        _remove(part)
        return hashlib.sha256(), 0
    return digest, have


def _hash_or_none(path: Path) -> tuple[str | None, int]:
    try:
        return hash_file(path)
    except OSError:
        return None, 0


def _cached_size(blob: Path, sha: str) -> int | None:
    """Size of the cached blob when it is present and its content is right; a bad blob, or
    anything that is not a regular file, is removed."""
    try:
        with _open_regular(blob, os.O_RDONLY, "rb") as handle:
            digest, size = _hash_stream(handle)
    except FileNotFoundError:
        return None
    except OSError:
        _unlink_blob(blob)
        return None
    if digest.hexdigest() == sha:
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
        if not blob.is_symlink():
            os.chmod(blob, 0o644)
    _remove(blob)


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
