"""DVC repos: `dvc pull` through a real dvc with a local remote (skipped when dvc is not installed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cml_bot.data import dvc_executable, dvc_pull, is_dvc_repo
from cml_bot.errors import DataError

DVC = dvc_executable()
needs_dvc = pytest.mark.skipif(DVC is None, reason="dvc is not installed (pip install dvc)")


def dvc(root: Path, *args: str) -> None:
    assert DVC is not None
    subprocess.run([DVC, *args], cwd=root, check=True, capture_output=True, timeout=120)


@pytest.fixture
def dvc_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DVC project (no git) whose data/train.csv is pushed to a local remote and then removed."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    root = tmp_path / "project"
    root.mkdir()
    dvc(root, "init", "--no-scm", "-q")
    remote = tmp_path / "remote"
    (root / ".dvc" / "config").write_text(
        f"[core]\n    no_scm = True\n    remote = local\n['remote \"local\"']\n    url = {remote}\n"
    )
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_text("x,label\n1,a\n2,b\n")
    dvc(root, "add", "-q", "data/train.csv")
    dvc(root, "push", "-q")
    (root / "data" / "train.csv").unlink()
    shutil.rmtree(root / ".dvc" / "cache")
    return root


@needs_dvc
def test_dvc_pull_restores_data_from_a_local_remote_with_output_passed_through(dvc_repo: Path) -> None:
    lines: list[str] = []
    assert is_dvc_repo(dvc_repo)

    dvc_pull(dvc_repo, lines.append)

    assert (dvc_repo / "data" / "train.csv").read_text() == "x,label\n1,a\n2,b\n"
    assert lines[0].startswith("$ ") and lines[0].endswith(" pull")
    assert "A       data/train.csv" in lines[1:], lines  # dvc's own report of what it added


@needs_dvc
def test_failed_dvc_pull_is_a_data_error_with_dvcs_message(dvc_repo: Path, tmp_path: Path) -> None:
    shutil.rmtree(tmp_path / "remote")

    with pytest.raises(DataError, match=r"dvc pull failed in .*\(exit \d+\)"):
        dvc_pull(dvc_repo)

    assert not (dvc_repo / "data" / "train.csv").exists()


def test_dvc_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))

    with pytest.raises(DataError, match=r"^dvc not installed: pip install dvc$"):
        dvc_pull(tmp_path)


def test_is_dvc_repo(tmp_path: Path) -> None:
    assert not is_dvc_repo(tmp_path)
    (tmp_path / ".dvc").mkdir()
    assert is_dvc_repo(tmp_path)
