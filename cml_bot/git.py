"""Read-only access to the local git repository: commits, merge-bases and files at a revision.

All calls go through one injectable ``runner`` so tests can use real git in temp repos, and so the
only subprocesses cml-bot starts are git here and the user's commands in :mod:`cml_bot.pipeline`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cml_bot.errors import CmlBotError

Runner = Callable[[Sequence[str], Path, bytes | None], "subprocess.CompletedProcess[bytes]"]


def run_git(args: Sequence[str], cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise CmlBotError("git is not installed or not on PATH") from None


@dataclass(frozen=True)
class Git:
    root: Path
    runner: Runner = run_git

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
        """The content of ``path`` at ``revision``, or None when it is not there."""
        result = self._run("show", f"{revision}:{path}")
        return result.stdout if result.returncode == 0 else None

    def files(self, revision: str | None) -> list[str]:
        """Tracked file paths at ``revision``, or in the index when None."""
        out = self._out("ls-files") if revision is None else self._out("ls-tree", "-r", "--name-only", revision)
        return out.splitlines() if out else []

    def show_many(self, revision: str, paths: Sequence[str]) -> dict[str, bytes | None]:
        """The contents of several files at ``revision`` from one ``git cat-file --batch``."""
        if not paths:
            return {}
        request = "".join(f"{revision}:{path}\n" for path in paths).encode("utf-8")
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

    def is_shallow(self) -> bool:
        return self._out("rev-parse", "--is-shallow-repository") == "true"

    def branch_ref(self, branch: str) -> str | None:
        """The commit a base branch name stands for: the remote-tracking branch first (CI checkouts),
        then a local branch."""
        for candidate in (f"refs/remotes/origin/{branch}", f"refs/heads/{branch}", branch):
            sha = self.rev(candidate)
            if sha:
                return sha
        return None
