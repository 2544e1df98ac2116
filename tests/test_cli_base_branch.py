"""A base branch that cannot be found is a warning on stderr that names the problem, never only a
line inside the report: a typo in baseline.branch, a repository without main or master, a folder
that is not a git repository; the CI advice (fetch-depth) only for a shallow clone."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from conftest import GitRepo

from cml_bot.cli import Console, main

CONFIG = "title: Base\nmetrics: [metrics.json]\n"


def _report(root: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["report", "--dry-run", "-C", str(root)], env={"PATH": "/usr/bin:/bin"}, console=Console(out, err))
    report = (root / "cml-bot-report" / "report.md").read_text(encoding="utf-8")
    return code, err.getvalue(), report


def _project(repo: GitRepo, config: str = CONFIG) -> None:
    repo.write("cml-bot.yaml", config)
    repo.write("metrics.json", {"accuracy": 0.9})
    repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.91})
    repo.commit("feature")


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("cml-bot: warning: No baseline")]


def test_a_misspelt_base_branch_is_a_warning_naming_the_closest_branch(repo: GitRepo) -> None:
    _project(repo, CONFIG + "baseline: {branch: mian}\n")
    code, err, report = _report(repo.root)
    assert code == 0
    assert _warnings(err) == ["cml-bot: warning: No baseline: branch mian not found; closest: main."]
    assert "fetch-depth" not in err + report  # not a CI checkout: no CI advice
    assert "branch mian not found; closest: main" in report


def test_a_repository_without_main_or_master_lists_its_branches(repo: GitRepo) -> None:
    _project(repo)
    repo.git("branch", "--quiet", "-m", "main", "trunk")
    code, err, _ = _report(repo.root)
    assert code == 0
    [warning] = _warnings(err)
    assert "branch main not found (the branches here: feature, trunk); set baseline.branch" in warning
    assert "fetch-depth" not in warning


def test_a_folder_that_is_not_a_repository_is_called_that(tmp_path: Path) -> None:
    (tmp_path / "cml-bot.yaml").write_text(CONFIG)
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.9}')
    code, err, report = _report(tmp_path)
    assert code == 0
    [warning] = _warnings(err)
    assert "not a git repository" in warning and "branch main" not in warning
    assert "fetch-depth" not in err + report


def test_a_shallow_clone_gets_the_ci_advice(repo: GitRepo, tmp_path: Path) -> None:
    _project(repo, CONFIG + "baseline: {branch: main}\n")  # a CI checkout of the feature branch alone
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", "--branch", "feature", repo.root.as_uri(), str(clone)], check=True
    )
    code, err, _ = _report(clone)
    assert code == 0
    [warning] = _warnings(err)
    assert "branch main not found in this shallow clone" in warning and "fetch-depth: 0" in warning
