"""Pulling pinned files through the content-addressed cache (see :mod:`cml_bot.data`)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from cml_bot.config import Config, DataFile
from cml_bot.data.sources import CHUNK, Fetcher, ResumeRejected, RetryableError, SourceFetcher, make_fetcher, redact
from cml_bot.errors import DataError
from cml_bot.results import atomic_write

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

STATE_FILE = ".cml-bot/data-state.json"
RETRIES = 4  # attempts after the first, when an attempt makes no progress
BACKOFF = 0.5  # seconds before the first retry, doubled each time

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
                progress(f"[{done[0]}/{total}] {item.path}: {item.action} {_size(item.size)}")

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


def target_path(root: Path, relative: str, checked: dict[str, str] | None = None) -> Path:
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
        received: Transfer,
    ) -> None:
        self.stale = stale
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
            self.received(f.path, have, download.size)
            with part.open(mode) as out:
                for block in download.chunks:
                    if self.cancelled.is_set():
                        raise DataError(f"{f.path}: pull cancelled")
                    out.write(block)
                    digest.update(block)
                    have += len(block)
                    self.received(f.path, have, download.size)
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
