"""Where the baseline's results come from, stated in the report.

"Diff against main" means against the commit this change branched from (the merge-base), never
main's moving tip. In order:

1. an explicit ``--baseline FILE`` given on the command line;
2. results recorded for the merge-base (``cml-bot record`` on pushes to main);
3. the nearest recorded first-parent ancestor of the merge-base, saying how many commits older;
4. the metrics files as committed at the merge-base (DVC style, ``git show``);
5. ``baseline.file`` from the config;
6. no baseline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cml_bot.config import Config
from cml_bot.errors import InputError
from cml_bot.git import Git
from cml_bot.metrics import Value, combine, parse_values, read_values
from cml_bot.results import RunResults

ANCESTOR_SEARCH_LIMIT = 200
_HEX = re.compile(r"^[0-9a-fA-F]{7,40}$")


class ResultStore(Protocol):
    """Recorded results by commit: a local folder, or a data branch on GitHub/GitLab."""

    def recorded(self) -> set[str]:
        """The commits that have results (one listing)."""
        ...

    def load(self, sha: str) -> RunResults | None: ...

    def save(self, results: RunResults) -> str:
        """Store one commit's results; concurrent saves of other commits are never lost.
        Returns where they went, for the user."""
        ...


@dataclass(frozen=True)
class Baseline:
    results: RunResults | None
    sha: str | None  # the merge-base (or the commit the results belong to)
    ref: str | None  # the target branch name, for labels
    source: str  # one sentence for the report


def find_base_commit(
    git: Git, head_sha: str | None, branch: str, given_sha: str | None, base_rev: str | None
) -> tuple[str | None, str]:
    """The base commit and how it was found. ``given_sha`` is the platform's merge-base (GitLab)."""
    if base_rev:
        sha = git.rev(base_rev)
        if sha is None:
            raise InputError(f"--base {base_rev}: no such commit or branch in this repository")
        if _HEX.match(base_rev):
            return sha, f"commit {base_rev} given with --base"
        # A branch name: where this change left it, never the branch's moving tip.
        head = head_sha or git.rev("HEAD")
        merge_base = git.merge_base(head, sha) if head else None
        if merge_base is None or merge_base == head:
            return sha, f"{base_rev} given with --base"
        return merge_base, f"the merge-base with {base_rev} (given with --base)"
    if given_sha:
        return given_sha, f"the merge-base with {branch} reported by the CI"
    branch_sha = git.branch_ref(branch)
    if branch_sha is None:
        return None, f"branch {branch} not found (fetch it, e.g. actions/checkout with fetch-depth: 0)"
    head = head_sha or git.rev("HEAD")
    if head is None:
        return None, "this directory has no commits"
    merge_base = git.merge_base(head, branch_sha)
    if merge_base is None:
        shallow = " (the clone is shallow: fetch full history)" if git.is_shallow() else ""
        return None, f"no common ancestor with {branch}{shallow}"
    if merge_base == head:
        # Running on the base branch itself: compare with the previous commit.
        parents = git.ancestors(head, 2)
        if len(parents) < 2:
            return None, f"this is the first commit of {branch}"
        return parents[1], f"the previous commit on {branch}"
    return merge_base, f"the merge-base with {branch}"


def resolve_baseline(
    config: Config,
    git: Git,
    store: ResultStore,
    head_sha: str | None,
    *,
    branch: str | None = None,
    given_sha: str | None = None,
    base_rev: str | None = None,
    explicit_file: Path | None = None,
) -> Baseline:
    branch = branch or config.baseline_branch
    if explicit_file is not None:
        metrics = read_values(explicit_file, str(explicit_file))
        return Baseline(
            RunResults(sha=None, metrics=metrics), None, branch, f"the file {explicit_file.name} given with --baseline"
        )
    sha, how = find_base_commit(git, head_sha, branch, given_sha, base_rev)
    if sha is not None:
        available = store.recorded()
        recorded = store.load(sha) if sha in available else None
        if recorded is not None:
            return Baseline(recorded, sha, branch, f"recorded results of {how} ({sha[:10]})")
        for distance, ancestor in enumerate(git.ancestors(sha, ANCESTOR_SEARCH_LIMIT)[1:], start=1):
            recorded = store.load(ancestor) if ancestor in available else None
            if recorded is not None:
                plural = "s" if distance > 1 else ""
                return Baseline(
                    recorded,
                    ancestor,
                    branch,
                    f"recorded results of {ancestor[:10]}, {distance} commit{plural} older than "
                    f"{how} ({sha[:10]}), the nearest recorded",
                )
        committed = committed_results(config, git, sha)
        if committed is not None:
            return Baseline(committed, sha, branch, f"metrics files as committed at {how} ({sha[:10]})")
    if config.baseline_file:
        path = config.root / config.baseline_file
        if path.exists():
            metrics = read_values(path, config.baseline_file)
            return Baseline(
                RunResults(sha=None, metrics=metrics),
                sha,
                branch,
                f"the file {config.baseline_file} named in baseline.file",
            )
    reason = how if sha is None else f"nothing recorded or committed for {how} ({sha[:10]})"
    return Baseline(None, sha, branch, f"no baseline: {reason}")


def committed_results(config: Config, git: Git, sha: str) -> RunResults | None:
    """Metrics, params and plot files as committed at ``sha``; None if no metrics file is there.
    All files come from one ``git cat-file --batch`` (plot data can be large)."""
    predictions = [config.predictions.path] if config.predictions is not None else []
    contents = git.show_many(
        sha, list(dict.fromkeys([*config.metrics, *config.params, *(p.path for p in config.plots), *predictions]))
    )
    folders = [f"{path}/metrics.json" for path in config.metrics if contents.get(path) is None]  # dvclive
    contents.update(git.show_many(sha, folders))
    metric_files = _parsed(config.metrics, contents)
    if not metric_files:
        return None
    paths = [spec.path for spec in config.plots] + predictions
    files = {path: data for path in paths if (data := contents.get(path)) is not None}
    return RunResults(
        sha=sha, metrics=combine(metric_files), params=combine(_parsed(config.params, contents)), files=files
    )


def _parsed(paths: Sequence[str], contents: Mapping[str, bytes | None]) -> list[tuple[str, dict[str, Value]]]:
    found = []
    for path in paths:
        name, data = path, contents.get(path)
        if data is None:  # a dvclive output folder
            name = f"{path}/metrics.json"
            data = contents.get(name)
        if data is not None:
            found.append((path, parse_values(data, name)))
    return found


def trend_history(git: Git, store: ResultStore, sha: str | None, count: int) -> list[RunResults]:
    """Up to ``count`` recorded first-parent ancestors of ``sha`` (itself included), oldest first."""
    if sha is None or count <= 0:
        return []
    available = store.recorded()
    found = []
    for ancestor in git.ancestors(sha, ANCESTOR_SEARCH_LIMIT):
        if ancestor in available:
            results = store.load(ancestor)
            if results is not None:
                found.append(results)
            if len(found) == count:
                break
    return found[::-1]
