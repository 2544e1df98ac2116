"""Folders and files named on the command line (``--out``, ``--junit``, ``-C``): a user's files are
never removed or hidden from git, and a wrong path is one line and exit 2, before anything runs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import GitRepo

from cml_bot.cli import Console, main
from cml_bot.errors import InputError
from cml_bot.forges.local import MANIFEST_FILE, ReportFolder
from cml_bot.model import Image

PNG = b"\x89PNG\r\n\x1a\n user's picture"


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), env={"PATH": "/usr/bin:/bin"}, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def project(repo: GitRepo) -> GitRepo:
    repo.write("cml-bot.yaml", "title: Paths\nmetrics: [metrics.json]\n")
    repo.write("metrics.json", {"accuracy": 0.9})
    repo.write("docs/architecture.png", PNG)
    repo.write("docs/guide.md", "# Guide\n")
    repo.write("logo.png", PNG)
    repo.commit("project with tracked images")
    return repo


def _one_error(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cml-bot: error: "), err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


@pytest.mark.parametrize("out", ["docs", "."])
def test_out_into_a_folder_of_the_users_files_is_refused_and_removes_nothing(project: GitRepo, out: str) -> None:
    code, _, err = _cli("report", "--dry-run", "-C", str(project.root), "--out", str(project.root / out))
    assert code == 2
    assert "holds files cml-bot did not write" in _one_error(err)
    assert (project.root / "docs" / "architecture.png").read_bytes() == PNG
    assert (project.root / "logo.png").read_bytes() == PNG
    assert project.git("status", "--porcelain") == ""  # nothing deleted, nothing written


def test_out_into_an_existing_empty_folder_writes_no_gitignore(project: GitRepo) -> None:
    reports = project.root / "reports"
    reports.mkdir()
    code, _, err = _cli("report", "--dry-run", "-C", str(project.root), "--out", str(reports))
    assert code == 0, err
    assert (reports / "report.md").is_file()
    assert not (reports / ".gitignore").exists()
    (reports / "notes.md").write_text("mine\n")
    assert "?? reports/" in project.git("status", "--porcelain")  # the user's new files stay visible
    # The next run replaces its own report and keeps the user's file.
    code, _, err = _cli("report", "--dry-run", "-C", str(project.root), "--out", str(reports))
    assert code == 0, err
    assert (reports / "notes.md").read_text() == "mine\n"


def test_a_folder_cml_bot_creates_is_ignored_by_git(project: GitRepo) -> None:
    code, _, err = _cli("report", "--dry-run", "-C", str(project.root), "--out", str(project.root / "new" / "report"))
    assert code == 0, err
    assert (project.root / "new" / "report" / ".gitignore").is_file()
    code, _, err = _cli("report", "--dry-run", "-C", str(project.root))  # the default folder
    assert code == 0, err
    assert project.git("status", "--porcelain", "--untracked-files=all") == ""


def test_the_default_folder_is_cml_bots_even_when_someone_made_it(project: GitRepo) -> None:
    (project.root / "cml-bot-report").mkdir()
    code, _, err = _cli("report", "--dry-run", "-C", str(project.root))
    assert code == 0, err
    assert project.git("status", "--porcelain", "--untracked-files=all") == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--out", "metrics.json"], "report folder {root}/metrics.json is a file"),
        (["--out", "metrics.json/x"], "{root}/metrics.json is a file, not a folder"),
        (["--junit", "docs"], "--junit {root}/docs: is a folder"),
        (["--junit", "metrics.json/junit.xml"], "{root}/metrics.json is a file, not a folder"),
    ],
)
def test_an_output_path_that_cannot_be_written_is_a_usage_error(
    project: GitRepo, args: list[str], expected: str
) -> None:
    absolute = [str(project.root / a) if not a.startswith("--") else a for a in args]
    code, _, err = _cli("report", "--dry-run", "-C", str(project.root), *absolute)
    assert code == 2
    assert expected.format(root=project.root) in _one_error(err)
    assert not (project.root / "cml-bot-report").exists()  # refused before anything ran


@pytest.mark.parametrize(("where", "expected"), [("nowhere", "no such folder"), ("metrics.json", "not a folder")])
def test_a_wrong_directory_is_named_as_such(project: GitRepo, where: str, expected: str) -> None:
    for command in (["report", "--dry-run"], ["diff", "main"], ["record"], ["pull"]):
        code, _, err = _cli(*command, "-C", str(project.root / where))
        assert code == 2, command
        line = _one_error(err)
        assert f"-C {project.root / where}: {expected}" in line
        assert "git is not installed" not in line


def test_git_names_a_missing_working_folder_not_a_missing_git(tmp_path: Path) -> None:
    from cml_bot.git import run_git

    with pytest.raises(InputError, match="no such folder"):
        run_git(["status"], tmp_path / "gone")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="not a folder"):
        run_git(["status"], tmp_path / "file")


def _image(name: str) -> Image:
    return Image(name=name, data=b"\x89PNG new")


def test_a_report_folder_removes_only_what_cml_bot_wrote(tmp_path: Path) -> None:
    folder = ReportFolder(tmp_path / "report")
    folder.prepare()
    folder.write_images([_image("loss.png")])
    folder.write_report("# one\n")
    (tmp_path / "report" / "mine.png").write_bytes(PNG)  # the user's, added since

    again = ReportFolder(tmp_path / "report")
    again.prepare()
    assert not (tmp_path / "report" / "loss.png").exists()  # the earlier run's image is gone
    assert (tmp_path / "report" / "mine.png").read_bytes() == PNG
    with pytest.raises(InputError, match=r"mine\.png is not cml-bot.s"):
        again.write_images([_image("mine.png")])  # never replaced
    assert (tmp_path / "report" / "mine.png").read_bytes() == PNG


def test_a_hostile_manifest_removes_nothing_outside_the_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.png").write_bytes(PNG)
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / MANIFEST_FILE).write_text("../keep.png\n/etc/passwd\n..\nreport.md\n")
    ReportFolder(folder).prepare()
    assert (tmp_path / "keep.png").read_bytes() == PNG


def test_a_report_folder_from_before_the_manifest_is_still_cleaned(tmp_path: Path) -> None:
    folder = tmp_path / "cml-bot-report"
    folder.mkdir()
    (folder / ".gitignore").write_text("# written by cml-bot\n*\n")  # what older versions wrote
    (folder / "old-plot.png").write_bytes(PNG)
    (folder / "report.md").write_text("old\n")
    ReportFolder(folder).prepare()
    assert not (folder / "old-plot.png").exists()
    # ... but the same mark on a folder holding other files is no licence to clean it.
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / ".gitignore").write_text("# written by cml-bot\n*\n")
    (docs / "architecture.png").write_bytes(PNG)
    (docs / "guide.md").write_text("# Guide\n")
    with pytest.raises(InputError, match="did not write"):
        ReportFolder(docs).prepare()
    assert (docs / "architecture.png").read_bytes() == PNG


def test_a_folder_s_gitignore_or_manifest_that_never_ends_is_not_read_whole(tmp_path: Path) -> None:
    # Both files may come from a checkout: a link to /dev/zero must be refused, not read forever.
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / ".gitignore").symlink_to("/dev/zero")
    (linked / "plot.png").write_bytes(PNG)
    with pytest.raises(InputError, match="did not write"):  # not marked as cml-bot's
        ReportFolder.check(linked)
    manifest = tmp_path / "manifest"
    manifest.mkdir()
    (manifest / MANIFEST_FILE).symlink_to("/dev/zero")
    with pytest.raises(InputError):  # not a manifest cml-bot wrote: refused, never read
        ReportFolder(manifest).prepare()
    big = tmp_path / "big"
    big.mkdir()
    (tmp_path / "huge").write_bytes(b"x" * 2_000_000)
    (big / MANIFEST_FILE).symlink_to(tmp_path / "huge")
    with pytest.raises(InputError, match=r"limit|larger|over"):  # read at most 1 MB of it
        ReportFolder(big).prepare()
