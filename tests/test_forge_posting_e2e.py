"""End to end (``cml_bot.cli.main`` against the fake forges): what a run does when posting meets a
rate limit, a GitHub App's installation token, or a pull request that moved on to a newer commit."""

from __future__ import annotations

from pathlib import Path

from conftest import GitRepo
from fake_bitbucket import API_TOKEN, PR_ID, FakeBitbucket, fake_bitbucket
from fake_github import HEAD_SHA, FakeGitHub, fake_github
from test_bitbucket_e2e import advance, step_env
from test_bitbucket_e2e import cli as bitbucket_cli
from test_bitbucket_e2e import pull_request_repo as bitbucket_repo
from test_github_e2e import MARKER, actions_env, cli, pull_request_repo

__all__ = ["fake_bitbucket", "fake_github"]  # the fixtures, imported for pytest

APP_TOKEN = "ghs_FAKE0APP0INSTALLATION0TOKEN0secret00"
NEWER = "0123456789abcdef0123456789abcdef01234567"


def test_a_rate_limited_comment_fails_the_job_instead_of_saving_a_bundle(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    pull_request_repo(repo)
    # the primary limit spent until an hour from now (the rate-limit page: 403, x-ratelimit-remaining 0)
    fake_github.primary_limit("POST", r"/issues/2/comments$", reset_in=3600)
    bundle = tmp_path / "bundle"

    code, out, err = cli(
        ["report", "--base", "main", "--bundle-dir", str(bundle)], actions_env(fake_github, tmp_path), repo
    )

    assert code == 1, out + err
    assert "rate limit" in err and "may not comment" not in out + err
    assert not bundle.exists() and "cml-bot publish" not in out + err
    assert fake_github.comments_on(2) == []


def test_an_app_token_edits_its_comment_in_place_run_after_run(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    pull_request_repo(repo)
    fake_github.add_token(APP_TOKEN, kind="app", app_slug="my-app")  # GET /user answers 403
    env = actions_env(fake_github, tmp_path, CML_BOT_TOKEN=APP_TOKEN)

    for _ in range(3):
        code, out, err = cli(["report", "--base", "main"], env, repo)
        assert code == 0, out + err

    [comment] = fake_github.comments_on(2)
    assert comment["login"] == "my-app[bot]" and comment["body"].startswith(MARKER)
    assert len(fake_github.requests("POST", r"/issues/2/comments$")) == 1
    assert fake_github.requests("DELETE", "/comments/") == []


def test_a_run_for_an_older_head_leaves_the_newer_comment_alone_on_github(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    pull_request_repo(repo)
    env = actions_env(fake_github, tmp_path)
    code, out, err = cli(["report", "--base", "main"], env, repo)
    assert code == 0, out + err
    fake_github.add_pull(2, NEWER)  # a newer push; its run posted first
    [comment] = fake_github.comments_on(2)
    fake_github.comments[comment["id"]]["body"] = f"{MARKER}\nthe newer run's report\n"
    before = len(fake_github.log)

    code, out, err = cli(["report", "--base", "main"], env, repo)  # the older run finishes last

    assert code == 0, out + err
    assert [c["body"] for c in fake_github.comments_on(2)] == [f"{MARKER}\nthe newer run's report\n"]
    [line] = [line for line in (out + err).splitlines() if "not posted" in line]
    assert NEWER[:12] in line and HEAD_SHA[:12] in line and "report folder" in line
    assert (repo.root / "cml-bot-report" / "report.md").is_file()
    # one request asked for the head; no comment was listed, edited or created
    asked = [(m, p.split("?")[0]) for m, p, _ in fake_github.log[before:]]
    assert asked.count(("GET", "/repos/Codertocat/Hello-World/pulls/2")) == 1
    assert not [p for _, p in asked if "/comments" in p]


def test_the_head_check_costs_one_request_on_a_second_run(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    pull_request_repo(repo)
    env = actions_env(fake_github, tmp_path)
    assert cli(["report", "--base", "main"], env, repo)[0] == 0
    before = len(fake_github.log)
    assert cli(["report", "--base", "main"], env, repo)[0] == 0
    asked = [(m, p.split("?")[0]) for m, p, _ in fake_github.log[before:]]
    assert [p for m, p in asked if "/pulls" in p] == ["/repos/Codertocat/Hello-World/pulls/2"]


def test_a_run_for_an_older_head_leaves_the_newer_comment_alone_on_bitbucket(
    fake_bitbucket: FakeBitbucket, repo: GitRepo, tmp_path: Path
) -> None:
    # Bitbucket Pipelines has no cancel-in-progress: the older push's pipeline may finish last.
    old = bitbucket_repo(repo, fake_bitbucket)
    account = fake_bitbucket.add_token(API_TOKEN, "ml-bot", kind="user", email="ml-bot@example.com")
    env = step_env(fake_bitbucket, old, CML_BOT_TOKEN=API_TOKEN, CML_BOT_USERNAME="ml-bot@example.com")
    new = advance(repo, fake_bitbucket, {"accuracy": 0.9})
    newer_report = "[cml-bot report (id: default)]: #\n\nthe newer run's report\n"
    fake_bitbucket.add_comment(PR_ID, newer_report, account)
    repo.git("checkout", "--quiet", old)

    code, out, err = bitbucket_cli(["report"], env, repo)

    assert code == 0, out + err
    assert [c["raw"] for c in fake_bitbucket.comments_on(PR_ID)] == [newer_report]
    assert fake_bitbucket.requests("PUT", "/comments/") == [] and fake_bitbucket.requests("POST", "/comments$") == []
    [line] = [line for line in (out + err).splitlines() if "not posted" in line]
    assert new[:12] in line and old[:12] in line
    assert (repo.root / "cml-bot-report" / "report.md").is_file()
    # the verdict still goes on the commit it was made for (a status is per commit)
    assert fake_bitbucket.statuses[(old, "cml-bot")]["state"] == "SUCCESSFUL"
