"""The GitHub defects of issue 11, reproduced against the documentation-built fake GitHub.

Each test states what GitHub's documented behaviour requires of cml-bot's GitHub driver, and is a
strict xfail until the forge rewrite (issue 11) fixes it: when a fix lands the test passes, pytest
reports XPASS as a failure, and the marker must go. The fake behaviour each one relies on is proved
on its own in ``test_fake_github.py``.
"""

from __future__ import annotations

import pytest
from fake_github import FakeGitHub, fake_github, github_env

from cml_bot.context import detect
from cml_bot.forges.base import CommentMode
from cml_bot.forges.github import GitHubForge, github_forge
from cml_bot.forges.github_store import GitHubStore, github_store
from cml_bot.results import RunResults

__all__ = ["fake_github"]  # the fixture, imported for pytest

MARKER = "<!-- cml-bot report (id: default) -->"
GITHUB_TOKEN = "ghs_FAKE0ACTIONS0TOKEN0secret00000000"


def body(text: str) -> str:
    return f"{MARKER}\n## cml-bot\n{text}\n"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def forge_for(fake: FakeGitHub, event: str = "pull_request.opened", **env: str) -> GitHubForge:
    environ = github_env(fake, event, **env)
    return github_forge(detect(environ), environ, sleep=Sleeps())


def store_for(fake: FakeGitHub) -> GitHubStore:
    environ = github_env(fake)
    return github_store(detect(environ), environ, "cml-bot-data", sleep=Sleeps())


@pytest.mark.xfail(strict=True, reason="issue 11: with GITHUB_TOKEN any Bot comment holding the marker counts as ours")
@pytest.mark.parametrize(
    "theirs",
    [
        f"Summary of the checks:\n> {MARKER}\n> ## cml-bot",  # a bot quoting our report
        body("copied by another bot"),  # even the marker as the first line: the author is not us
    ],
    ids=["quoted", "first-line"],
)
def test_another_bots_comment_holding_the_marker_is_never_edited(fake_github: FakeGitHub, theirs: str) -> None:
    """GITHUB_TOKEN comments as github-actions[bot] (an installation token acts as the app's bot) and may
    edit anyone's comment (write access), so only the author tells ours from another bot's."""
    fake_github.add_token(GITHUB_TOKEN, kind="github_token")
    other = fake_github.add_comment(2, theirs, login="coverage-reporter[bot]", type="Bot")
    forge_for(fake_github, GITHUB_TOKEN=GITHUB_TOKEN).upsert_comment(body("ours"), MARKER, CommentMode.UPDATE)
    assert fake_github.comments[other]["body"] == theirs
    assert [c["body"] for c in fake_github.comments_on(2) if c["login"] == "github-actions[bot]"] == [body("ours")]


@pytest.mark.xfail(strict=True, reason="issue 11: a transient error on one page restarts the whole comment listing")
def test_transient_errors_on_later_pages_are_retried_per_page(fake_github: FakeGitHub) -> None:
    """Each page is one request; the rate-limit/troubleshooting pages ask to retry the failed request.
    Page 2 fails twice and page 3 three times: every request succeeds within 5 attempts of its own."""
    for i in range(250):
        fake_github.add_comment(2, f"chatter {i}", login=f"user{i % 7}")
    fake_github.fail("GET", r"/issues/2/comments$", status=502, query=r"(^|&)page=2(&|$)", times=2)
    fake_github.fail("GET", r"/issues/2/comments$", status=502, query=r"(^|&)page=3(&|$)", times=3)
    forge_for(fake_github).upsert_comment(body("x"), MARKER, CommentMode.UPDATE)
    assert [c["body"] for c in fake_github.comments_on(2) if c["login"] == "cml-bot-user"] == [body("x")]


@pytest.mark.xfail(strict=True, reason="issue 11: 409 Conflict on a ref update is not handled")
def test_a_409_on_the_ref_update_is_retried(fake_github: FakeGitHub) -> None:
    """The Git database answers 409 Conflict while the repository is "unavailable" (Using the REST API to
    interact with your Git database); "Update a reference" documents 409."""
    store_for(fake_github).save(RunResults(sha="a" * 40, metrics={"accuracy": 0.8}))
    fake_github.conflict("PATCH", r"/git/refs/heads/cml-bot-data$")
    store_for(fake_github).save(RunResults(sha="b" * 40, metrics={"accuracy": 0.9}))
    assert store_for(fake_github).recorded() == {"a" * 40, "b" * 40}


@pytest.mark.xfail(strict=True, reason="issue 11: with stacked PRs the lowest open PR number is taken")
def test_the_pull_request_is_the_one_whose_head_is_the_commit(fake_github: FakeGitHub) -> None:
    """commits/{sha}/pulls lists every pull request holding the commit: with stacked branches, several
    open ones. The commit is the head of PR #3 and only contained in PR #1 (a later commit is its head)."""
    base = "1" * 40
    fake_github.add_pull(1, "f" * 40, head_ref="stack-top", commits=[base, "f" * 40])
    fake_github.add_pull(3, base, head_ref="stack-bottom")
    forge_for(fake_github, "push.branch", GITHUB_SHA=base).upsert_comment(body("x"), MARKER, CommentMode.UPDATE)
    assert fake_github.comments_on(1) == []
    assert [c["body"] for c in fake_github.comments_on(3)] == [body("x")]
    assert fake_github.comments_on(2) == []
