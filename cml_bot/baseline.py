"""Where the baseline's results come from, named in the report.

"Diff against main" means against the commit this change branched from (the merge-base), never
main's moving tip: the compared pair differs only by the change. When CI checked out GitHub's
merge commit of a pull request (``pull_request`` events; GitLab's merged results pipelines), the
results are the merge's, so the baseline is its first parent (the base branch as merged into).
In order:

1. an explicit ``--baseline FILE`` given on the command line;
2. results recorded for the base commit (``cml-bot record`` on pushes to the default branch);
3. the nearest recorded first-parent ancestor of the base commit, saying how many commits older;
4. the metrics files as committed at the base commit (DVC style: git, and DVC's cache or remote
   for outputs DVC keeps there), with the dvc.yaml files of that commit, and a committed
   TensorBoard logdir;
5. ``baseline.file`` from the config;
6. no baseline, with the reason in the report's verdict line.

The base branch: ``--base``; else the pull/merge request's target; else ``baseline.branch`` from
the config; else the forge's default branch; else the clone's ``origin/HEAD``; else ``main`` or
``master``, whichever exists. The report says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from cml_bot.checks import closest, closest_hint
from cml_bot.config import Config, Declarations, merge_declarations
from cml_bot.errors import InputError
from cml_bot.git import Git, GitTree
from cml_bot.metrics import Tree, read_values
from cml_bot.results import RunResults, read_results

ANCESTOR_SEARCH_LIMIT = 200


PROBE_LIMIT = 30  # commits asked for one by one when the store cannot list (GitLab's job token)


class ResultStore(Protocol):
    """Recorded results by commit: a local folder, or a data branch on GitHub/GitLab."""

    def recorded(self) -> set[str] | None:
        """The commits that have results (one listing); None when the store cannot list, and
        :meth:`load` is to be asked for each wanted commit instead."""
        ...

    def load(self, sha: str) -> RunResults | None: ...

    def save(self, results: RunResults) -> str:
        """Store one commit's results; concurrent saves of other commits are never lost.
        Returns where they went, for the user."""
        ...


class RememberedStore:
    """A store whose listing and loads are asked once per run: the baseline search, the trend and
    ``diff A B`` ask the same questions, and a forge's store may answer each with paginated calls."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self._listing: tuple[set[str] | None] | None = None  # (the answer,) once asked
        self._loaded: dict[str, RunResults | None] = {}

    def recorded(self) -> set[str] | None:
        if self._listing is None:
            self._listing = (self.store.recorded(),)
        return self._listing[0]

    def load(self, sha: str) -> RunResults | None:
        if sha not in self._loaded:
            self._loaded[sha] = self.store.load(sha)
        return self._loaded[sha]

    def save(self, results: RunResults) -> str:
        self._listing = None  # the listing changed; loads of other commits still hold
        self._loaded.pop(results.sha or "", None)
        return self.store.save(results)


@dataclass(frozen=True)
class Baseline:
    results: RunResults | None
    sha: str | None  # the base commit (or the commit the results belong to)
    ref: str | None  # the baseline's name in tables and legends: a branch, a short sha, a file name
    source: str  # one sentence for the report: where the results came from
    branch: str | None = None  # the base branch, when the baseline is a branch's (records, trend)
    caveat: str | None = None  # what the verdict line must say (outputs DVC could not reach, ...)
    compared: str | None = None  # which pair was compared, one sentence for the run facts
    merge_base: str | None = None  # the base commit searched from (``sha`` may be an older recorded one)
    missing_branch: str | None = None  # why the base branch is not there (a typo, no repository), a warning


@dataclass(frozen=True)
class BaseBranch:
    """The branch a change is compared with, and how it was chosen (one phrase for the report)."""

    name: str
    how: str


def base_branch(config: Config, git: Git, target: str | None, forge_default: str | None, forge: str) -> BaseBranch:
    """The base branch: the pull/merge request's target, ``baseline.branch``, the forge's default
    branch, the clone's ``origin/HEAD``, then ``main`` or ``master``, whichever exists."""
    if target:
        return BaseBranch(target, f"the target branch of the {'merge' if forge == 'gitlab' else 'pull'} request")
    if config.baseline_branch:
        return BaseBranch(config.baseline_branch, "baseline.branch in the config")
    if forge_default:
        return BaseBranch(forge_default, f"the default branch on {forge}")
    remote = git.remote_head()
    if remote:
        return BaseBranch(remote, "the clone's default branch (origin/HEAD)")
    for name in ("main", "master"):
        if git.branch_ref(name) is not None:
            return BaseBranch(name, f"the branch named {name} in this clone")
    return BaseBranch("main", "main by default (no origin/HEAD, no main or master branch)")


@dataclass(frozen=True)
class Checkout:
    """What CI checked out: the change's head, or a merge of it into the base branch."""

    sha: str | None  # the commit the workspace is at
    merge_parent: str | None = None  # the base-branch parent when ``sha`` is a merge made by the forge
    kind: str = ""  # "GitHub's merge commit", "GitLab's merged results commit"


def detect_checkout(git: Git, platform: str, change_head: str | None, merged_results: bool = False) -> Checkout:
    """A pull request run on GitHub's merge commit (``pull_request`` events check out
    ``refs/pull/N/merge``: HEAD is a merge whose second parent is the PR's head), or a GitLab
    merged results pipeline: the results include the base branch's newer commits."""
    head = git.rev("HEAD")
    if head is None:
        return Checkout(None)
    parents = git.parents(head)
    if len(parents) != 2:
        return Checkout(head)
    if platform == "github" and change_head and head != change_head and parents[1] == change_head:
        return Checkout(head, parents[0], "GitHub's merge commit")
    if platform == "gitlab" and merged_results:
        return Checkout(head, parents[0], "GitLab's merged results commit")
    return Checkout(head)


@dataclass(frozen=True)
class BaseCommit:
    sha: str | None  # None: none could be found (``how`` says why)
    how: str  # how it was found, a phrase for the report ("the merge-base with main")
    label: str  # its name in tables and legends: a branch, a tag, a short sha
    branch: str | None  # the branch it stands for (records, trend), None for an exact commit
    missing_branch: bool = False  # ``how`` says the branch does not exist


def find_base_commit(
    git: Git,
    head_sha: str | None,
    branch: str,
    given_sha: str | None,
    base_rev: str | None,
    checkout: Checkout | None = None,
) -> BaseCommit:
    """The commit to compare with. ``given_sha`` is the platform's merge-base (GitLab, GitHub's
    compare API); ``base_rev`` is ``--base``: a branch means its merge-base, a sha or a tag that
    very commit."""
    if base_rev:
        sha = git.rev(base_rev)
        if sha is None:
            raise InputError(f"--base {base_rev}: no such commit, branch or tag in this repository")
        if not git.is_branch(base_rev):
            kind = "tag" if git.rev(f"refs/tags/{base_rev}") else "commit"
            name = git.describe_rev(base_rev)
            return BaseCommit(sha, f"{kind} {name} given with --base", name, None)
        # A branch name: where this change left it, never the branch's moving tip.
        head = head_sha or git.rev("HEAD")
        merge_base = git.merge_base(head, sha) if head else None
        if merge_base is None or merge_base == head:
            return BaseCommit(sha, f"{base_rev} given with --base", base_rev, base_rev)
        return BaseCommit(merge_base, f"the merge-base with {base_rev} (given with --base)", base_rev, base_rev)
    if checkout is not None and checkout.merge_parent:
        how = f"the first parent of {checkout.kind} {(checkout.sha or '')[:7]} ({branch} as merged into)"
        return BaseCommit(checkout.merge_parent, how, branch, branch)
    if given_sha:
        return BaseCommit(given_sha, f"the merge-base with {branch} reported by the CI", branch, branch)
    branch_sha = git.branch_ref(branch)
    if branch_sha is None:
        return BaseCommit(None, missing_branch(git, branch), branch, branch, missing_branch=True)
    head = head_sha or git.rev("HEAD")
    if head is None:
        return BaseCommit(None, "this directory has no commits", branch, branch)
    merge_base = git.merge_base(head, branch_sha)
    if merge_base is None:
        shallow = " (the clone is shallow: fetch full history)" if git.is_shallow() else ""
        return BaseCommit(None, f"no common ancestor with {branch}{shallow}", branch, branch)
    if merge_base == head:
        # Running on the base branch itself: compare with the previous commit.
        parents = git.ancestors(head, 2)
        if len(parents) < 2:
            return BaseCommit(None, f"this is the first commit of {branch}", branch, branch)
        return BaseCommit(parents[1], f"the previous commit on {branch}", branch, branch)
    return BaseCommit(merge_base, f"the merge-base with {branch}", branch, branch)


BRANCHES_SHOWN = 5  # branch names listed when none is like the missing one


def missing_branch(git: Git, branch: str) -> str:
    """Why base branch ``branch`` cannot be read, in one phrase that says what to do: not a
    repository; a shallow clone (CI) that did not fetch it; or a name no branch here has."""
    if not git.is_repository():
        return "not a git repository: no base branch to compare with; give --baseline FILE to compare with a file"
    if git.is_shallow():
        return f"branch {branch} not found in this shallow clone (fetch it, e.g. actions/checkout with fetch-depth: 0)"
    names = git.branches()
    like = closest(branch, names)
    if like:
        return f"branch {branch} not found{closest_hint(like)}"
    shown = ", ".join(names[:BRANCHES_SHOWN]) + (" ..." if len(names) > BRANCHES_SHOWN else "")
    here = f"the branches here: {shown}" if names else "there are no branches here yet"
    return f"branch {branch} not found ({here}); set baseline.branch in cml-bot.yaml"


def resolve_baseline(
    config: Config,
    git: Git,
    store: ResultStore,
    head_sha: str | None,
    *,
    branch: str,
    given_sha: str | None = None,
    base_rev: str | None = None,
    explicit_file: Path | None = None,
    checkout: Checkout | None = None,
) -> Baseline:
    """The baseline of ``head_sha`` against base branch ``branch`` (see :func:`base_branch`)."""
    if explicit_file is not None:
        metrics = read_values(explicit_file, str(explicit_file))
        return Baseline(
            RunResults(sha=None, metrics=metrics),
            None,
            explicit_file.name,
            f"the file {explicit_file.name} given with --baseline",
            compared=f"this change with the file {explicit_file.name}",
        )
    base = find_base_commit(git, head_sha, branch, given_sha, base_rev, checkout)
    sha, how, label, on_branch = base.sha, base.how, base.label, base.branch
    compared = _compared(checkout, head_sha, sha, how)
    caveat = None
    if sha is not None:
        found = recorded_results(git, store, sha, how)
        if found is not None:
            results, source = found
            return Baseline(results, results.sha, label, source, on_branch, compared=compared, merge_base=sha)
        committed, caveat = committed_results(config, git, sha)
        if committed is not None:
            source = f"metrics files as committed at {how} ({sha[:10]})"
            return Baseline(committed, sha, label, source, on_branch, caveat, compared, merge_base=sha)
    if config.baseline_file:
        path = config.root / config.baseline_file
        if path.exists():
            metrics = read_values(path, config.baseline_file)
            source = f"the file {config.baseline_file} named in baseline.file"
            results = RunResults(sha=None, metrics=metrics)
            return Baseline(results, sha, config.baseline_file, source, on_branch, caveat, merge_base=sha)
    reason = how if sha is None else f"nothing recorded or committed for {how} ({sha[:10]})"
    if caveat:
        reason = f"{how} ({(sha or '')[:10]}): {caveat}"
    missing = how if base.missing_branch else None
    return Baseline(None, sha, label, f"no baseline: {reason}", on_branch, caveat, compared, sha, missing)


def _compared(checkout: Checkout | None, head_sha: str | None, base_sha: str | None, how: str) -> str | None:
    if base_sha is None:
        return None
    if checkout is not None and checkout.merge_parent == base_sha and checkout.sha:
        return f"{checkout.kind} {checkout.sha[:7]} (checked out) with its first parent {base_sha[:7]}"
    head = (checkout.sha if checkout is not None and checkout.sha else head_sha) or "this change"
    return f"{head[:7]} with {how} ({base_sha[:7]})"


def recorded_results(git: Git, store: ResultStore, sha: str, how: str) -> tuple[RunResults, str] | None:
    """Results recorded for ``sha``, else for its nearest recorded first-parent ancestor."""
    available = store.recorded()
    recorded = store.load(sha) if available is None or sha in available else None
    if recorded is not None:
        return recorded, f"recorded results of {how} ({sha[:10]})"
    limit = ANCESTOR_SEARCH_LIMIT if available is not None else PROBE_LIMIT
    for distance, ancestor in enumerate(git.ancestors(sha, limit)[1:], start=1):
        recorded = store.load(ancestor) if available is None or ancestor in available else None
        if recorded is not None:
            plural = "s" if distance > 1 else ""
            source = (
                f"recorded results of {ancestor[:10]}, {distance} commit{plural} older than "
                f"{how} ({sha[:10]}), the nearest recorded"
            )
            return replace(recorded, sha=recorded.sha or ancestor), source
    return None


def declared_at(config: Config, git: Git, sha: str) -> Declarations:
    """What to read at commit ``sha``: cml-bot.yaml's declarations (this checkout's) and what the
    dvc.yaml files of that commit declare (DVC reads each revision's own)."""
    own = config.own or config.declared
    if config.layout is None or not (config.layout.files or config.layout.repos or config.dvc_declared):
        return own
    from cml_bot import dvcproject

    return merge_declarations(own, dvcproject.declarations(config.layout, git, rev=sha))


def committed_results(config: Config, git: Git, sha: str) -> tuple[RunResults | None, str | None]:
    """Metrics, params and plot files as committed at ``sha`` (None if none of them is there),
    and what the verdict line must say about files DVC keeps in its cache and could not reach.
    Files come from one ``git cat-file --batch`` (plot data can be large)."""
    declared = declared_at(config, git, sha)
    tree: Tree
    if config.layout is not None and declared.cached:
        from cml_bot.dvcproject import CommitTree

        tree = CommitTree(git, sha, config.layout, declared.cached, max_bytes=config.limits.file_bytes)
    else:
        tree = GitTree(git, sha, max_bytes=config.limits.file_bytes)
    results = read_results(declared, tree, sha)
    if config.tensorboard is not None:  # the logdir as committed, for teams that commit it
        from cml_bot.sources.tensorboard import committed_scalars

        scalars = committed_scalars(config.tensorboard, git, sha)
        if scalars is not None:
            results = replace(
                results, metrics={**results.metrics, **scalars.metrics}, files={**results.files, **scalars.files}
            )
    unreachable = getattr(tree, "unreachable", {})
    caveat = _unreachable_caveat(unreachable) if unreachable else None
    nothing = not (results.metrics or results.params or results.files)
    if nothing and (not results.problems or all(f in unreachable for f in results.problems)):
        return None, caveat
    return results, caveat


def _unreachable_caveat(unreachable: Mapping[str, str]) -> str:
    files = list(unreachable)
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    first = next(iter(unreachable.values()))
    why = first.split(": ", 1)[-1]
    return f"base outputs {shown} unreachable: {why}"


def exact_results(
    config: Config, git: Git, store: ResultStore, rev: str
) -> tuple[RunResults | None, str, str, str | None]:
    """The results of exactly ``rev`` (``cml-bot diff A B``): recorded for that commit, else as
    committed (and in DVC's cache). Returns them, where they came from, its name and a caveat."""
    sha = git.rev(rev)
    if sha is None:
        raise InputError(f"{rev}: no such commit, branch or tag in this repository")
    name = git.describe_rev(rev)
    available = store.recorded()
    if available is None or sha in available:
        recorded = store.load(sha)
        if recorded is not None:
            return replace(recorded, sha=sha), f"recorded results of {name} ({sha[:10]})", name, None
    committed, caveat = committed_results(config, git, sha)
    return committed, f"metrics files as committed at {name} ({sha[:10]})", name, caveat


def trend_history(git: Git, store: ResultStore, sha: str | None, count: int) -> list[RunResults]:
    """Up to ``count`` recorded first-parent ancestors of ``sha`` (itself included), oldest first."""
    if sha is None or count <= 0:
        return []
    available = store.recorded()
    found = []
    for ancestor in git.ancestors(sha, ANCESTOR_SEARCH_LIMIT if available is not None else PROBE_LIMIT):
        if available is None or ancestor in available:
            results = store.load(ancestor)
            if results is not None:
                found.append(results)
            if len(found) == count:
                break
    return found[::-1]
