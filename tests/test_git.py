"""Reading files at a revision in one `git cat-file --batch`."""

from __future__ import annotations

from conftest import GitRepo

from cml_bot.git import Git


def test_show_many_reads_blobs_and_reports_missing_and_folders(repo: GitRepo) -> None:
    binary = bytes(range(256)) * 40 + b"\n\n"  # newlines and NULs inside the content
    repo.write("a.bin", binary)
    repo.write("dvclive/metrics.json", '{"acc": 1}')
    repo.write("empty.txt", "")
    sha = repo.commit()
    git = Git(repo.root)

    found = git.show_many(sha, ["a.bin", "missing.csv", "dvclive", "empty.txt", "dvclive/metrics.json"])

    assert found == {
        "a.bin": binary,
        "missing.csv": None,
        "dvclive": None,
        "empty.txt": b"",
        "dvclive/metrics.json": b'{"acc": 1}',
    }
    assert git.show_many(sha, []) == {}
    assert found["a.bin"] == git.show(sha, "a.bin")
