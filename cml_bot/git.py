"""Read-only access to the local git repository: commits, merge-bases and files at a revision.

All calls go through one injectable ``runner`` so tests can use real git in temp repos, and so the
only subprocesses cml-bot starts are git here and the user's commands in :mod:`cml_bot.pipeline`.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cml_bot.errors import CmlBotError, InputError
from cml_bot.files import FILE_LIMIT_SETTING, MAX_FILE_BYTES, describe_size, folder_problem

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")

Runner = Callable[[Sequence[str], Path, bytes | None], "subprocess.CompletedProcess[bytes]"]


def run_git(args: Sequence[str], cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    except (FileNotFoundError, NotADirectoryError):
        # The same error for a missing program and a missing working folder: tell them apart.
        problem = folder_problem(cwd)
        if problem is not None:
            raise InputError(f"{cwd}: {problem}") from None
        raise CmlBotError("git is not installed or not on PATH") from None


@dataclass(frozen=True)
class Git:
    root: Path
    runner: Runner = run_git
    # File listings of commits (by full sha: they never change), read once per run.
    _listings: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return self.runner(args, self.root, None)

    def _out(self, *args: str) -> str | None:
        result = self._run(*args)
        if result.returncode != 0:
            return None
        return result.stdout.decode("utf-8", "replace").strip()

    def rev(self, revision: str) -> str | None:
        """The full commit sha of ``revision``, or None if it does not resolve."""
        return self._out("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}") or None

    def current_branch(self) -> str | None:
        out = self._out("symbolic-ref", "--quiet", "--short", "HEAD")
        return out or None

    def merge_base(self, a: str, b: str) -> str | None:
        return self._out("merge-base", a, b) or None

    def ancestors(self, revision: str, limit: int) -> list[str]:
        """``revision`` and its first-parent ancestors, newest first."""
        out = self._out("rev-list", "--first-parent", f"--max-count={limit}", revision)
        return out.split() if out else []

    def show(self, revision: str, path: str) -> bytes | None:
        """The content of ``path`` (relative to ``root``) at ``revision``, or None when it is not there."""
        result = self._run("show", f"{revision}:{self.prefix}{path}")
        return result.stdout if result.returncode == 0 else None

    def files(self, revision: str | None, under: str = "") -> list[str]:
        """Tracked file paths (relative to ``root``, below folder ``under``) at ``revision``, or in
        the index when None."""
        if revision is not None and _FULL_SHA.match(revision):
            if revision not in self._listings:
                out = self._out("ls-tree", "-r", "-z", "--name-only", revision)
                self._listings[revision] = [path for path in out.split("\0") if path] if out else []
            listing = self._listings[revision]
            return [path for path in listing if path.startswith(under)] if under else list(listing)
        spec = ["--", under] if under else []
        if revision is None:
            out = self._out("ls-files", "-z", *spec)
        else:
            out = self._out("ls-tree", "-r", "-z", "--name-only", revision, *spec)
        return [path for path in out.split("\0") if path] if out else []

    def worktree_files(self, pattern: str) -> list[str] | None:
        """Files matching the glob ``pattern`` in the work tree, tracked or untracked but not ignored
        (relative to ``root``); None outside a git work tree."""
        result = self._run("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", f":(glob){pattern}")
        if result.returncode != 0:
            return None
        return sorted({path for path in result.stdout.decode("utf-8", "replace").split("\0") if path})

    def changed_files(self) -> list[str] | None:
        """Tracked files (relative to ``root``, below it) with uncommitted changes, staged or not;
        None outside a git work tree."""
        result = self._run("status", "--porcelain=v1", "-z", "--untracked-files=no", "--", ".")
        if result.returncode != 0:
            return None
        entries = result.stdout.decode("utf-8", "replace").split("\0")
        changed, skip = [], False
        for entry in entries:
            if skip:  # the source path of a rename
                skip = False
                continue
            if len(entry) > 3:
                changed.append(entry[3:])
                skip = entry[0] in "RC"
        # porcelain paths are relative to the repository's top: make them relative to root
        prefix = self.prefix
        return sorted(path.removeprefix(prefix) for path in changed if path.startswith(prefix))

    def parents(self, revision: str) -> list[str]:
        """The parents of a commit, first parent first, from the commit itself: a shallow clone
        knows them even when it does not have them."""
        out = self._out("cat-file", "commit", revision)
        if not out:
            return []
        header = out.split("\n\n", 1)[0]
        return [line.split()[1] for line in header.splitlines() if line.startswith("parent ")]

    def remote_head(self, remote: str = "origin") -> str | None:
        """The branch ``origin/HEAD`` names (the remote's default branch when the clone recorded it)."""
        out = self._out("symbolic-ref", "--quiet", "--short", f"refs/remotes/{remote}/HEAD")
        return out.removeprefix(f"{remote}/") if out else None

    def describe_rev(self, revision: str) -> str:
        """A short name for a revision the user gave: a branch or tag as given, a sha cut to 7."""
        sha = self.rev(revision)
        if sha is not None and sha.startswith(revision.lower()) and len(revision) >= 7:
            return sha[:7]
        return revision

    @functools.cached_property
    def prefix(self) -> str:
        """Where ``root`` is inside the repository (``proj/``, or ``""`` at the top): ``rev:path``
        names a path from the top, so paths relative to ``root`` need it (``-C proj``)."""
        return self._out("rev-parse", "--show-prefix") or ""

    def object_sizes(self, revision: str, paths: Sequence[str]) -> dict[str, int | None]:
        """The size of each file (relative to ``root``) at ``revision``, None when it is not a
        file there, from one ``git cat-file --batch-check`` (nothing is read)."""
        if not paths:
            return {}
        request = "".join(f"{revision}:{self.prefix}{path}\n" for path in paths).encode("utf-8")
        lines = self.runner(["cat-file", "--batch-check"], self.root, request).stdout.splitlines()
        sizes: dict[str, int | None] = {}
        for path, line in zip(paths, lines, strict=False):
            header = line.split()
            sizes[path] = int(header[2]) if len(header) == 3 and header[1] == b"blob" else None
        return sizes

    def show_many(self, revision: str, paths: Sequence[str]) -> dict[str, bytes | None]:
        """The contents of several files (relative to ``root``) at ``revision`` from one
        ``git cat-file --batch``."""
        if not paths:
            return {}
        prefix = self.prefix
        request = "".join(f"{revision}:{prefix}{path}\n" for path in paths).encode("utf-8")
        result = self.runner(["cat-file", "--batch"], self.root, request)
        found: dict[str, bytes | None] = {}
        out, offset = result.stdout, 0
        for path in paths:
            end = out.find(b"\n", offset)
            if end < 0:
                found[path] = None
                continue
            header = out[offset:end].split()
            offset = end + 1
            if len(header) == 3 and header[1] == b"blob":
                size = int(header[2])
                found[path] = out[offset : offset + size]
                offset += size + 1
            elif len(header) == 3:  # a tree or another object: skip its body
                offset += int(header[2]) + 1
                found[path] = None
            else:  # "<name> missing"
                found[path] = None
        return found

    def is_repository(self) -> bool:
        """Whether ``root`` is inside a git work tree."""
        return self._out("rev-parse", "--is-inside-work-tree") == "true"

    def branches(self) -> list[str]:
        """The branch names here, local and remote-tracking (``origin/`` dropped), sorted."""
        out = self._out("for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes")
        names = set()
        for ref in (out or "").splitlines():
            if ref.startswith("refs/heads/"):
                names.add(ref.removeprefix("refs/heads/"))
            elif ref.startswith("refs/remotes/") and not ref.endswith("/HEAD"):
                names.add(ref.removeprefix("refs/remotes/").split("/", 1)[-1])
        return sorted(names)

    def is_ignored(self, path: str) -> bool:
        """Whether ``.gitignore`` (or another exclude file) keeps ``path`` (relative to ``root``) out of commits."""
        return self._run("check-ignore", "--quiet", "--", path).returncode == 0

    def is_shallow(self) -> bool:
        return self._out("rev-parse", "--is-shallow-repository") == "true"

    def is_branch(self, name: str) -> bool:
        """Whether ``name`` is a branch here (local, or remote-tracking: ``main``, ``origin/main``)."""
        refs = (f"refs/heads/{name}", f"refs/remotes/origin/{name}", f"refs/remotes/{name}")
        return bool(self._out("for-each-ref", "--count=1", "--format=%(refname)", *refs))

    def branch_ref(self, branch: str) -> str | None:
        """The commit a base branch name stands for: the remote-tracking branch first (CI checkouts),
        then a local branch."""
        for candidate in (f"refs/remotes/origin/{branch}", f"refs/heads/{branch}", branch):
            sha = self.rev(candidate)
            if sha:
                return sha
        return None


class GitTree:
    """The files of ``revision`` as committed, read through ``git`` (paths relative to its root)."""

    def __init__(self, git: Git, revision: str, label: str | None = None, max_bytes: int = MAX_FILE_BYTES) -> None:
        self.git = git
        self.revision = revision
        self.label = label or revision[:7]
        self.max_bytes = max_bytes  # limits.file_mb, as for the workspace: any commit may be hostile

    def read_many(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        """The files as committed; one over ``max_bytes`` is an error, found before it is read."""
        for path, size in self.git.object_sizes(self.revision, list(paths)).items():
            if size is not None and size > self.max_bytes:
                raise InputError(
                    f"{path} at {self.label}: is {describe_size(size)}, more than the limit of "
                    f"{describe_size(self.max_bytes)} ({FILE_LIMIT_SETTING})"
                )
        return self.git.show_many(self.revision, list(paths))

    def files_under(self, path: str) -> list[str] | None:
        folder = path.rstrip("/")
        found = self.git.files(self.revision, folder + "/")
        return sorted(found) if found else None

    def missing_reason(self, path: str) -> str | None:
        return None
