"""The project's dvc.yaml files, wherever they are, and what they declare: metrics and params files
(with the keys a stage tracks) and plots, in the workspace or at a commit.

Every ``dvc.yaml`` below the project root counts (subfolder projects, ``dvc init --subdir``,
dvclive's ``dvcyaml="results/dvc.yaml"``), each read with DVC's rules. Plain files are read by
cml-bot itself (:mod:`cml_bot.dvcproject.plain`); a file using templating, ``vars``, ``foreach`` or
``matrix`` is resolved by DVC (:mod:`cml_bot.dvcproject.api`, the ``dvc`` extra), imported only then.
The base's outputs that DVC keeps in its cache (``cache: true``, the default) are read through DVC,
from the local cache or the configured remote: :class:`CommitTree`.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cml_bot import __version__
from cml_bot.config import CONFIG_MAX_BYTES, Declarations
from cml_bot.dvcproject import plain
from cml_bot.errors import ConfigError, InputError
from cml_bot.files import MAX_FILE_BYTES
from cml_bot.git import Git, GitTree
from cml_bot.metrics import Tree, WorkspaceTree, decode_text, load_yaml

log = logging.getLogger(__name__)

DVC_FILE = "dvc.yaml"
DVC_DIR = ".dvc"
INSTALL = f"pip install 'cml-bot[dvc]=={__version__}'"
# Folders never searched for dvc.yaml outside git (in git, .gitignore decides).
_SKIPPED = frozenset({".git", ".dvc", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache"})

__all__ = ["CommitTree", "Layout", "declarations", "find_layout"]


@dataclass(frozen=True)
class Layout:
    """Where the dvc.yaml files and DVC repositories are, relative to the project ``root``."""

    root: Path
    files: tuple[str, ...]  # dvc.yaml files in the workspace
    repos: tuple[Path, ...]  # DVC repository roots (absolute) holding them: the project's, nested ones
    enclosing: Path | None  # the DVC repository the project root is in (at it or above it)

    def repo_of(self, file: str) -> Path | None:
        """The DVC repository a dvc.yaml belongs to: the nearest one above it, else None."""
        folder = (self.root / file).parent
        best: Path | None = None
        for repo in self.repos:
            if folder.is_relative_to(repo) and (best is None or repo.is_relative_to(best)):
                best = repo
        return best

    def place(self, repo: Path) -> Callable[[str], str | None]:
        """Maps a path relative to ``repo`` to one relative to the project (None: outside it)."""
        if repo.is_relative_to(self.root):
            prefix = repo.relative_to(self.root).as_posix()
            return lambda path: path if prefix in ("", ".") else posixpath.join(prefix, path)
        inner = self.root.relative_to(repo).as_posix() + "/"
        return lambda path: path[len(inner) :] if path.startswith(inner) else None


def find_layout(root: Path, git: Git | None = None) -> Layout:
    """The dvc.yaml files below ``root`` (from git when it is a work tree, so ignored folders are
    skipped; else a walk) and the DVC repositories they belong to."""
    root = root.resolve()
    files = git.worktree_files(f"**/{DVC_FILE}") if git is not None else None
    if files is None:
        files = _walk(root)
    # Not only regular files: a FIFO or a device named dvc.yaml is refused when read, never skipped.
    files = [f for f in files if PurePosixPath(f).name == DVC_FILE and not (root / f).is_dir()]
    if DVC_FILE not in files and ((root / DVC_FILE).exists() or (root / DVC_FILE).is_symlink()):
        files.insert(0, DVC_FILE)  # git lists no FIFO or device: the project's own one is read (and refused)
    enclosing = _enclosing_repo(root)
    repos = {enclosing} if enclosing is not None else set()
    for file in files:
        folder = (root / file).parent
        while folder != root and folder.is_relative_to(root):
            if (folder / DVC_DIR).is_dir():
                repos.add(folder)
                break
            folder = folder.parent
    return Layout(root, tuple(files), tuple(sorted(repos)), enclosing)


def _enclosing_repo(root: Path) -> Path | None:
    for folder in (root, *root.parents):
        if (folder / DVC_DIR).is_dir():
            return folder
        if (folder / ".git").exists():  # DVC does not look above the git repository
            return None
    return None


def _walk(root: Path) -> list[str]:
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED)
        if DVC_FILE in names:
            found.append((Path(folder) / DVC_FILE).relative_to(root).as_posix())
    return sorted(found)


def declarations(layout: Layout, git: Git | None = None, rev: str | None = None) -> Declarations:
    """What the dvc.yaml files declare in the workspace (``rev`` None) or at commit ``rev``."""
    # dvc.yaml files are read with cml-bot.yaml's limit, in the workspace as at a commit.
    exists: Callable[[str], bool]
    if rev is None:
        tree: Tree = WorkspaceTree(layout.root, CONFIG_MAX_BYTES)
        files = list(layout.files)
        exists = lambda path: _is_file(layout.root / path)  # noqa: E731
    else:
        assert git is not None
        tree = GitTree(git, rev, max_bytes=CONFIG_MAX_BYTES)
        listing = git.files(rev)  # the commit's listing, read once per run (see Git.files)
        files = [f for f in listing if PurePosixPath(f).name == DVC_FILE]
        exists = set(listing).__contains__
    contents = tree.read_many(files)
    documents = {file: _parse(data, file) for file, data in contents.items() if data is not None}
    groups: dict[Path | None, dict[str, object]] = {}
    for file, raw in documents.items():
        groups.setdefault(layout.repo_of(file), {})[file] = raw
    parts = [_resolve_group(layout, repo, group, tree, exists, rev) for repo, group in groups.items()]
    if not parts and layout.enclosing is not None:
        # A DVC repository without dvc.yaml still has its params.yaml (DVC always reads it).
        parts.append(_resolve_group(layout, layout.enclosing, {}, tree, exists, rev))
    return _merged(parts)


def _is_file(path: Path) -> bool:
    """Whether there is something to read at ``path``, as WorkspaceTree decides (not a folder;
    a FIFO or a device is read, and refused, later)."""
    return path.exists() and not path.is_dir()


def _resolve_group(
    layout: Layout,
    repo: Path | None,
    documents: Mapping[str, object],
    tree: Tree,
    exists: Callable[[str], bool],
    rev: str | None,
) -> Declarations:
    reasons = [reason for file, raw in documents.items() if (reason := plain.needs_dvc(raw, file)) is not None]
    if not reasons:
        roots: tuple[str, ...] = ()
        if repo is not None and repo.is_relative_to(layout.root):
            place = repo.relative_to(layout.root).as_posix()
            roots = ("" if place == "." else place,)
        return plain.resolve(documents, roots, tree.files_under, exists)
    reason = reasons[0]
    if repo is None:
        raise ConfigError(f"{reason}, which only DVC resolves, and only inside a DVC repository (run `dvc init`)")
    from cml_bot.dvcproject import api

    if not api.available():
        raise ConfigError(f"{reason}, which only DVC resolves: install it with {INSTALL}")
    log.info("%s: resolved through DVC (%s)", ", ".join(documents), reason)
    resolved = api.resolve(repo, rev)
    return api.as_declarations(layout.place(repo), resolved, f"DVC {api.version()}")


def _merged(parts: Sequence[Declarations]) -> Declarations:
    if len(parts) == 1:
        return parts[0]
    params: dict[str, tuple[str, ...] | None] = {}
    for part in parts:
        for file in part.params:
            keys = part.keys_of(file) or None
            if file not in params:
                params[file] = keys
            elif params[file] is not None:
                params[file] = None if keys is None else tuple(dict.fromkeys((*(params[file] or ()), *keys)))
    return Declarations(
        metrics=tuple(dict.fromkeys(m for p in parts for m in p.metrics)),
        params=tuple(params),
        param_keys=tuple((file, keys) for file, keys in params.items() if keys),
        plots=tuple(dict.fromkeys(s for p in parts for s in p.plots)),
        cached=tuple(dict.fromkeys(c for p in parts for c in p.cached)),
        files=tuple(dict.fromkeys(f for p in parts for f in p.files)),
        resolver=", ".join(dict.fromkeys(p.resolver for p in parts if p.resolver)),
        notes=tuple(dict.fromkeys(n for p in parts for n in p.notes)),
    )


def _parse(data: bytes, shown: str) -> object:
    """A dvc.yaml's YAML, read as DVC reads it (YAML 1.2, as the metrics and params files it names:
    ``no`` is text, ``0042`` is 42); a repeated key is an error naming it. Problems are ConfigErrors."""
    try:
        return load_yaml(decode_text(data, shown), shown)
    except InputError as exc:
        raise ConfigError(str(exc)) from None


class CommitTree:
    """The files of a commit: from git, and the outputs DVC keeps in its cache through DVC (its
    local cache, else the configured remote). What DVC cannot reach is kept in ``unreachable``."""

    def __init__(
        self,
        git: Git,
        revision: str,
        layout: Layout,
        cached: Sequence[str],
        label: str | None = None,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.git_tree = GitTree(git, revision, label, max_bytes)
        self.max_bytes = max_bytes
        self.label = self.git_tree.label
        self.revision = revision
        self.layout = layout
        self.cached = tuple(cached)
        self.unreachable: dict[str, str] = {}

    def files_under(self, path: str) -> list[str] | None:
        return self.git_tree.files_under(path)

    def missing_reason(self, path: str) -> str | None:
        return self.unreachable.get(path)

    def read_many(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        found = self.git_tree.read_many(paths)
        wanted = [p for p, data in found.items() if data is None and self._is_cached(p)]
        if wanted:
            found.update(self._through_dvc(wanted))
        return found

    def _is_cached(self, path: str) -> bool:
        return any(path == out or path.startswith(out.rstrip("/") + "/") for out in self.cached)

    def _through_dvc(self, paths: list[str]) -> dict[str, bytes | None]:
        from cml_bot.dvcproject import api

        found: dict[str, bytes | None] = {}
        if not api.available():
            for path in paths:
                self.unreachable[path] = f"{path}: kept in DVC's cache; {INSTALL} to read it from the cache or remote"
                found[path] = None
            return found
        by_repo: dict[Path, list[str]] = {}
        for path in paths:
            repo = self.layout.repo_of(path) or self.layout.enclosing
            if repo is None:
                found[path] = None
                continue
            by_repo.setdefault(repo, []).append(path)
        for repo, group in by_repo.items():
            inside = {(self.layout.root / p).resolve().relative_to(repo).as_posix(): p for p in group}
            log.info("reading %s at %s through DVC", ", ".join(group), self.revision[:7])
            for repo_path, result in api.read_outputs(repo, self.revision, list(inside), self.max_bytes).items():
                path = inside[repo_path]
                if isinstance(result, bytes):
                    found[path] = result
                else:
                    self.unreachable[path] = f"{path}: kept in DVC's cache and unreachable ({result})"
                    found[path] = None
        return found
