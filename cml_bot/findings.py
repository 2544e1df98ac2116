"""What a run tells the user besides the diff: misconfiguration and surprises, each one line, for
the report's notes and for stderr (the CLI prints :attr:`Report.warnings`); and, with ``-v``, what
was read from where (logged). The judging is pure (:mod:`cml_bot.checks`); this module looks at the workspace for names
close to a missing one (or the missing one itself, when a commit was read without it) and asks git
whether the tree has uncommitted changes or ignores a file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from cml_bot.baseline import Baseline
from cml_bot.checks import closest, closest_hint, file_findings, threshold_findings
from cml_bot.config import Config
from cml_bot.diff import Diff
from cml_bot.git import Git
from cml_bot.results import RunResults

log = logging.getLogger("cml_bot")

NEARBY_LIMIT = 400  # files listed around a missing one to find similar names
_OWN = (".cml-bot/", "cml-bot-report/", "cml-bot-bundle/", "cml-bot-shards/")


def describe_config(config: Config) -> None:
    """``-v``: which files declare what, and what will be read."""
    dvc = config.dvc_declared
    if dvc is not None and dvc.files:
        log.info("dvc.yaml files: %s (read by %s)", ", ".join(dvc.files), dvc.resolver or "cml-bot")
    log.info("metrics files: %s", ", ".join(config.metrics) or "none declared")
    params = [f"{p} ({', '.join(keys)})" if (keys := config.declared.keys_of(p)) else p for p in config.params]
    log.info("params files: %s", ", ".join(params) or "none declared")
    log.info("plots: %s", ", ".join(spec.path for spec in config.plots) or "none declared")


def uncommitted_changes(git: Git, config: Config, outputs_expected: bool) -> tuple[str, ...]:
    """Tracked files with uncommitted changes. In CI (``outputs_expected``) the declared outputs
    (metrics, plot data, dvc.lock) are left out: a training step there rewrites them on a clean
    checkout. Elsewhere any change counts: nobody can tell an edit from a fresh result."""
    changed = git.changed_files() or []
    if outputs_expected:
        outputs = {*config.metrics, *(f for spec in config.plots for f in spec.files)}
        changed = [
            path
            for path in changed
            if path not in outputs
            and PurePosixPath(path).name != "dvc.lock"
            and not any(path.startswith(folder.rstrip("/") + "/") for folder in config.metrics)
        ]
    return tuple(path for path in changed if not path.startswith(_OWN))


def run_findings(
    config: Config, git: Git, head: RunResults, baseline: Baseline, dirty: Sequence[str], head_name: str
) -> list[str]:
    """Warnings about this run's inputs, as notes for the report."""
    notes: list[str] = []
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        notes.append(
            f"Uncommitted changes in {shown}: this report shows the working tree, not commit {head_name} as "
            "committed; its results are not recorded."
        )
    missing = [path for path, why in head.problems.items() if "not found" in why]
    here = {path: _in_working_folder(git, config.root, path) for path in missing}
    # A file the working folder has is missing from the commit that was read: say why, not "closest".
    nearby = {path: _nearby(config.root, path) for path in missing if not here[path]}
    for path, finding in zip(head.problems, file_findings(head.problems, nearby), strict=True):
        notes.append(f"In this change: {finding}{here.get(path, '')}")
    base = baseline.results
    if base is not None:
        notes += [f"In {baseline.ref or 'the baseline'}: {why}" for why in base.problems.values()]
    elif baseline.missing_branch is not None:
        # Misconfiguration is never silent: a base branch that does not exist (a typo, a repository
        # without main or master, no repository at all) is a warning, not only the report's verdict line.
        notes.append(f"No baseline: {baseline.missing_branch}.")
    if config.dvc_declared is not None:
        notes += list(config.dvc_declared.notes)
    return notes


def threshold_notes(config: Config, result: Diff) -> list[str]:
    """Threshold patterns that match no metric, and gates that cannot tell better from worse."""
    return threshold_findings(config.thresholds, result)


def _nearby(root: Path, path: str) -> list[str]:
    """Files around ``path``: in its folder (or the nearest that exists) and one level below."""
    folder = (root / path).parent
    while not folder.is_dir() and folder != root and root in folder.parents:
        folder = folder.parent
    if not folder.is_dir():
        return []
    found: list[str] = []
    try:
        entries = sorted(folder.iterdir())
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_file():
                found.append(entry.relative_to(root).as_posix())
            elif entry.is_dir():
                found += [c.relative_to(root).as_posix() for c in sorted(entry.iterdir())[:50] if c.is_file()]
            if len(found) >= NEARBY_LIMIT:
                break
    except OSError:
        return found
    return found


def closest_files(root: Path, missing: Sequence[str]) -> str:
    """``"; closest: a.csv, b.csv"`` for files of names like the missing ones, or ``""``; for a missing
    file the working folder has (the revision read lacks it), why it is not in that revision."""
    git = Git(root)  # the plot path has no runner at hand; a `git check-ignore` per missing file
    here = {path: _in_working_folder(git, root, path) for path in missing}
    found = [name for path in missing if not here[path] for name in closest(path, _nearby(root, path))]
    return "".join(hint for hint in here.values() if hint) + closest_hint(list(dict.fromkeys(found)))


def _in_working_folder(git: Git, root: Path, path: str) -> str:
    """``"; ..."`` when ``path`` is a file in the working folder, so a commit read without it lacks it
    because it was never committed (gitignored, usually: a training output), else ``""``."""
    try:
        target = (root / path).resolve()
        inside = target.is_relative_to(root.resolve()) and target.is_file()
    except OSError:
        return ""
    if not inside:
        return ""
    if git.is_ignored(path):
        return f"; the working folder has {path}, but .gitignore keeps it out of commits"
    return f"; the working folder has {path}, but it is not committed"
