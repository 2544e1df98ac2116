"""What cml-bot leaves on disk: file modes, and its own folders kept out of `git status`."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import GitRepo

from cml_bot.cli import Console, main
from cml_bot.results import atomic_write, make_own_folder


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_gives_the_mode_open_would(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.md", b"x")
        os.umask(0o077)
        atomic_write(tmp_path / "b.md", b"x")
        os.umask(0o002)
        atomic_write(tmp_path / "c.md", b"x")
    finally:
        os.umask(previous)
    assert (_mode(tmp_path / "a.md"), _mode(tmp_path / "b.md"), _mode(tmp_path / "c.md")) == (0o644, 0o600, 0o664)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path, umask_022: None) -> None:
    config = tmp_path / "cml-bot.yaml"
    config.write_text("old\n")
    config.chmod(0o640)
    atomic_write(config, b"new\n")
    assert config.read_text() == "new\n"
    assert _mode(config) == 0o640


def test_own_folders_get_a_gitignore_only_when_cml_bot_creates_them(tmp_path: Path) -> None:
    make_own_folder(tmp_path / ".cml-bot" / "records")
    assert (tmp_path / ".cml-bot" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert (tmp_path / ".cml-bot" / "records" / ".gitignore").is_file()
    assert not (tmp_path / ".gitignore").exists()  # tmp_path existed: not cml-bot's

    mine = tmp_path / "user-folder"
    mine.mkdir()
    make_own_folder(mine)
    assert list(mine.iterdir()) == []

    (tmp_path / "a-file").write_text("")
    with pytest.raises(OSError):
        make_own_folder(tmp_path / "a-file")


CONFIG = """\
title: Files
metrics: [metrics.json]
plots:
  - {{path: log.csv, x: epoch, y: loss}}
data:
  cache: {cache}
  files:
    - {{path: data/train.csv, url: {source}, sha256: {sha}}}
pipeline:
  - {{name: train, run: "echo trained"}}
"""


def _cli(repo: GitRepo, *args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], env={"PATH": os.environ["PATH"]}, console=Console(out, err))
    assert code == 0, err.getvalue()
    return out.getvalue()


def test_a_run_writes_readable_files_and_leaves_git_status_clean(
    repo: GitRepo, tmp_path: Path, umask_022: None
) -> None:
    source = tmp_path / "train.csv"
    source.write_text("x,label\n1,a\n")
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    repo.write("cml-bot.yaml", CONFIG.format(cache=tmp_path / "cache", source=source, sha=sha))
    repo.write("metrics.json", {"loss": 0.5})
    repo.write("log.csv", "epoch,loss\n1,0.9\n2,0.5\n")
    repo.write(".gitignore", "data/\n")
    repo.commit()

    _cli(repo, "run", "--dry-run")  # on main: pulls data, records results in .cml-bot/
    repo.git("checkout", "--quiet", "-b", "feature")
    _cli(repo, "run", "--dry-run")
    _cli(repo, "report", "--shard", "lr-0.1")

    report = repo.root / "cml-bot-report"
    images = list(report.glob("*.png"))
    assert images, "the plot was drawn"
    for written in [report / "report.md", report / "index.html", *images]:
        assert _mode(written) == 0o644, written
    for own in (".cml-bot", ".cml-bot/records", "cml-bot-report", "cml-bot-shards"):
        assert (repo.root / own / ".gitignore").is_file(), own
    assert repo.git("status", "--porcelain", "--untracked-files=all") == ""
