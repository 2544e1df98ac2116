"""Data may never be placed inside the repository's git folder, however the path reaches it: a
committed symlink (``data -> .git``), a symlink to a folder inside it, another case (``.GIT``), or a
``.git`` file naming the git folder elsewhere in the repo. A file written there (``.git/config`` with
``core.fsmonitor``) runs a command at the next git call, the posting step's included."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from cml_bot.config import Config, DataConfig, DataFile, load_config
from cml_bot.data import pull
from cml_bot.data.cache import target_path
from cml_bot.errors import DataError

PAYLOAD = b'[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = "touch PWNED; false"\n'


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True)
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    return root


def pinned(root: Path, path: str, source: str = "payload.cfg") -> Config:
    (root / source).write_bytes(PAYLOAD)
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    return Config(root=root, data=DataConfig(files=(DataFile(path, source, digest, len(PAYLOAD)),), cache=".cache"))


def test_a_symlinked_folder_to_git_cannot_overwrite_its_config(repo: Path) -> None:
    """The audit's attack, end to end: the config file as a committed repo holds it, a real pull."""
    config_before = (repo / ".git" / "config").read_bytes()
    (repo / "data").symlink_to(".git")
    (repo / "payload.cfg").write_bytes(PAYLOAD)
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    (repo / "cml-bot.yaml").write_text(
        f"data:\n  cache: .cache\n  files:\n    - {{path: data/config, url: payload.cfg, sha256: {digest}}}\n"
    )

    with pytest.raises(DataError, match=r"data/config: data may not be placed inside \.git/ \(through a symlink"):
        pull(load_config(repo))

    assert (repo / ".git" / "config").read_bytes() == config_before
    git(repo, "status")
    assert not (repo / "PWNED").exists()


@pytest.mark.parametrize(
    ("link", "to", "path"),
    [
        ("data", ".git", "data/hooks/pre-commit"),  # a folder that does not exist yet under it
        ("data", ".git/hooks", "data/post-checkout"),  # a folder inside .git
        ("a/b", "../.git", "a/b/config"),  # a relative link deeper down
    ],
)
def test_every_symlinked_way_into_git_is_refused(repo: Path, link: str, to: str, path: str) -> None:
    (repo / link).parent.mkdir(parents=True, exist_ok=True)
    (repo / link).symlink_to(to)

    with pytest.raises(DataError, match=r"inside \.git/"):
        pull(pinned(repo, path))

    assert not any(p.name in ("pre-commit", "post-checkout") for p in (repo / ".git").rglob("*"))


def test_a_data_file_that_is_a_symlink_into_git_is_refused(repo: Path) -> None:
    (repo / "x.cfg").symlink_to(".git/config")

    with pytest.raises(DataError, match=r"inside \.git/"):
        target_path(repo.resolve(), "x.cfg")


def test_a_git_folder_in_another_case_is_refused_through_a_symlink(repo: Path) -> None:
    """On a case-insensitive file system ``.GIT`` is the git folder; refused by name everywhere."""
    (repo / "nested").mkdir()
    (repo / "nested" / ".GIT").mkdir()
    (repo / "data").symlink_to("nested/.GIT")

    with pytest.raises(DataError, match=r"inside \.git/"):
        target_path(repo.resolve(), "data/config")


def test_the_git_folder_named_by_a_git_file_is_refused(tmp_path: Path) -> None:
    """A checkout whose ``.git`` is a file (``gitdir: ...``, as in worktrees and submodules) whose git
    folder lies inside the repo under another name: found by what the file names, not by its name."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "--separate-git-dir", str(root / "gitstore"))
    assert (root / ".git").is_file()
    (root / "data").symlink_to("gitstore")

    with pytest.raises(DataError, match=r"inside \.git/"):
        target_path(root.resolve(), "data/config")
    with pytest.raises(DataError, match=r"inside \.git/"):
        target_path(root.resolve(), "gitstore/config")


def test_ordinary_symlinked_folders_inside_the_repo_still_work(repo: Path) -> None:
    (repo / "real").mkdir()
    (repo / "data").symlink_to("real")
    (repo / "gitignored.txt").write_text("a file whose name has git in it\n")

    pull(pinned(repo, "data/config"))

    assert (repo / "real" / "config").read_bytes() == PAYLOAD
    assert os.path.realpath(target_path(repo.resolve(), "data/x")) == str((repo / "real" / "x").resolve())


def test_the_text_check_knows_the_names_windows_opens_as_git() -> None:
    from cml_bot.config import in_git_folder

    assert in_git_folder(".GIT./config") and in_git_folder("sub/.git /hooks/x")
    assert not in_git_folder(".github/data.csv") and not in_git_folder("data/.gitkeep")
