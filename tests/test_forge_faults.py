"""Forge answers that are not what they first look like, on every driver:

- a 403 on a write that is a rate limit or a locked conversation, not a token that may not write;
- GitHub's secondary rate limit without ``Retry-After``: at least a minute before trying again;
- a comment deleted between listing and editing: a new one is made, as a fresh run would;
- a GitHub App installation token (``GET /user`` refused) finding its own comment again.

The drivers run against the fake forges (every request checked against the contracts); the retry
policy and the sticky algorithm also run alone, with an injected clock and sleep (no real waiting).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections.abc import Callable

import pytest
from fake_bitbucket import API_TOKEN, PR_ID, FakeBitbucket, fake_bitbucket, pipelines_env
from fake_github import SECONDARY_LIMIT_MESSAGE, FakeGitHub, fake_github, github_env
from fake_gitlab import FakeGitLab
from gitlab_fixtures import MARKER as GITLAB_MARKER
from gitlab_fixtures import MR_IID, fake, make_forge, sleeps

from cml_bot.context import bitbucket_context, detect
from cml_bot.errors import ForgeError, ReadOnlyTokenError
from cml_bot.forges.base import Change, write_refusal
from cml_bot.forges.bitbucket import bitbucket_forge
from cml_bot.forges.github import GitHub, github_forge
from cml_bot.forges.gitlab import GitLab
from cml_bot.forges.http import HttpError, JsonClient, Request, Response, RetryPolicy
from cml_bot.forges.sticky import (
    Comment,
    CommentGone,
    CommentMode,
    EditRefused,
    Publication,
    Thread,
    edit_refusal,
    upsert,
)
from cml_bot.model import Verdict
from cml_bot.report import Flavour, marker_for

__all__ = ["fake", "fake_bitbucket", "fake_github", "make_forge", "sleeps"]  # fixtures, for pytest

MARKER = "<!-- cml-bot report (id: default) -->"
APP_TOKEN = "ghs_FAKE0APP0INSTALLATION0TOKEN0secret00"
# GitHub's answer to a comment on a locked conversation: 403 with this message (observed in
# renovatebot/renovate#6215 and probot/stale#25; documentation_url help.github.com/articles/locking-conversations).
LOCKED_MESSAGE = "Unable to create comment because issue is locked."


def body(text: str, marker: str = MARKER) -> str:
    return f"{marker}\n## cml-bot\n{text}\n"


# -- the retry policy: GitHub's secondary rate limit without a time ------------------------------


def scripted(*answers: Response, deadline: float = 300.0) -> tuple[JsonClient, list[float], list[Request]]:
    """A client answering from ``answers``, with a clock that only moves when it sleeps."""
    clock, sleeps_done, sent = [0.0], [], []
    queue = list(answers)

    def transport(request: Request) -> Response:
        sent.append(request)
        return queue.pop(0)

    def sleep(seconds: float) -> None:
        sleeps_done.append(seconds)
        clock[0] += seconds

    client = JsonClient(
        "GitHub",
        transport,
        "https://api.github.com",
        policy=RetryPolicy(deadline=deadline),
        sleep=sleep,
        clock=lambda: clock[0],
        now=lambda: 1_800_000_000.0,
        rng=random.Random(3),
    )
    return client, sleeps_done, sent


def github_answer(status: int, message: str, **headers: str) -> Response:
    # The rate-limit page (docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api):
    # a secondary limit is "a 403 or 429 response and an error message that indicates that you exceeded
    # a secondary rate limit"; "If the retry-after response header is present ... Otherwise, wait for
    # at least one minute before retrying ... wait for an exponentially increasing amount of time".
    data = json.dumps({"message": message, "documentation_url": "https://docs.github.com/rest"}).encode()
    return Response(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, data)


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_limit_without_retry_after_waits_a_minute_then_longer(status: int) -> None:
    refused = github_answer(status, SECONDARY_LIMIT_MESSAGE, x_ratelimit_remaining="4000")
    client, waited, sent = scripted(refused, refused, refused, refused)
    with pytest.raises(HttpError) as raised:
        client.send(Request("GET", "/repos/o/r/issues/2/comments"))
    # 60 s, then 120 s; the next (240 s) would pass the 300 s deadline: one clear line, no hammering
    assert len(sent) == 3 and len(waited) == 2
    assert 60.0 <= waited[0] <= 61.0 and 120.0 <= waited[1] <= 121.0
    assert "rate limited" in str(raised.value) and "past the deadline" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_secondary_limit_that_lifts_is_retried_after_a_minute() -> None:
    client, waited, _ = scripted(github_answer(403, SECONDARY_LIMIT_MESSAGE), Response(200, {}, b"[]"))
    assert client.json(Request("GET", "/repos/o/r/issues/2/comments")) == []
    assert len(waited) == 1 and waited[0] >= 60.0


def test_a_secondary_limit_past_a_short_deadline_gives_up_without_waiting() -> None:
    client, waited, sent = scripted(github_answer(403, SECONDARY_LIMIT_MESSAGE), deadline=30.0)
    with pytest.raises(HttpError, match=r"rate limited: .*wait 6\d s, past the deadline of 30 s"):
        client.send(Request("GET", "/x"))
    assert waited == [] and len(sent) == 1


def test_a_429_without_a_secondary_limit_message_keeps_the_short_backoff() -> None:
    client, waited, _ = scripted(Response(429, {}, b"Retry later"), Response(200, {}, b"{}"))
    client.send(Request("GET", "/x"))
    assert len(waited) == 1 and waited[0] < 2.0


# -- a write's 403: only a missing permission is a read-only token ------------------------------


def refused(message: str, **headers: str) -> HttpError:
    answer = github_answer(403, message, **headers)
    return HttpError(f"GitHub POST /repos/o/r/issues/2/comments: 403 {message}", 403, answer)


@pytest.mark.parametrize(
    "answer",
    [
        github_answer(403, "API rate limit exceeded for installation ID 1.", x_ratelimit_remaining="0"),
        github_answer(403, SECONDARY_LIMIT_MESSAGE, retry_after="600"),
        github_answer(403, SECONDARY_LIMIT_MESSAGE),
    ],
    ids=["primary", "secondary-retry-after", "secondary-no-header"],
)
def test_a_rate_limited_write_is_a_failure_not_a_read_only_token(answer: Response) -> None:
    # What the client raises once its retries cannot outlast the limit, as a comment's POST and as
    # an edit's PATCH would see it: neither a token without permission nor an edit to fix.
    client, _, _ = scripted(*[answer] * 8, deadline=30.0)
    with pytest.raises(HttpError) as raised:
        client.send(Request("POST", "/repos/o/r/issues/2/comments", json={"body": "x"}))
    written = write_refusal(raised.value, "comment on PR #2")
    edited = edit_refusal(raised.value, "editing comment 1", " (the token needs pull-requests: write)")
    for mapped in (written, edited):
        assert not isinstance(mapped, ReadOnlyTokenError | EditRefused)
        assert "rate limit" in str(mapped) and "run it again later" in str(mapped)


def test_a_locked_conversation_is_a_failure_not_a_read_only_token() -> None:
    mapped = write_refusal(refused(LOCKED_MESSAGE), "comment on PR #2")
    assert not isinstance(mapped, ReadOnlyTokenError)
    assert "locked" in str(mapped)


def test_a_permission_403_is_still_a_read_only_token() -> None:
    mapped = write_refusal(refused("Resource not accessible by integration"), "comment on PR #2")
    assert isinstance(mapped, ReadOnlyTokenError)


def gh_forge(fake: FakeGitHub, waits: list[float] | None = None, **env: str) -> GitHub:
    environ = github_env(fake, "pull_request.opened", **env)
    return github_forge(detect(environ), environ, sleep=(waits if waits is not None else []).append)


def test_github_comment_on_a_locked_pull_request_fails_visibly(fake_github: FakeGitHub) -> None:
    fake_github.fail("POST", r"/issues/2/comments$", status=403, message=LOCKED_MESSAGE)
    forge = gh_forge(fake_github)
    with pytest.raises(ForgeError, match="locked") as raised:
        upsert(forge.thread(Change(2)), body("x"), MARKER, CommentMode.UPDATE)
    assert not isinstance(raised.value, ReadOnlyTokenError)


def test_github_comment_past_the_primary_rate_limit_fails_visibly(fake_github: FakeGitHub) -> None:
    # "x-ratelimit-remaining: 0" until a reset an hour away: past the deadline, so given up at once
    fake_github.primary_limit("POST", r"/issues/2/comments$", reset_in=3600)
    waits: list[float] = []
    forge = gh_forge(fake_github, waits)
    with pytest.raises(ForgeError, match="rate limit") as raised:
        upsert(forge.thread(Change(2)), body("x"), MARKER, CommentMode.UPDATE)
    assert not isinstance(raised.value, ReadOnlyTokenError)
    assert waits == [] and fake_github.comments_on(2) == []


def test_github_status_past_a_secondary_limit_fails_visibly_after_waiting_minutes(fake_github: FakeGitHub) -> None:
    fake_github.secondary_limit("POST", "/statuses/", retry_after=None, times=5)
    waits: list[float] = []
    with pytest.raises(ForgeError, match="rate limit") as raised:
        gh_forge(fake_github, waits).set_status(Verdict.PASS, "ok", None)
    assert not isinstance(raised.value, ReadOnlyTokenError)
    # each wait at least a minute, doubling (the driver's clock is real, so only the sleeps count)
    assert waits and all(later >= 2 * earlier - 2 for earlier, later in itertools.pairwise(waits))
    assert min(waits) >= 60.0 and sum(waits) <= 2 * 300
    assert len(fake_github.requests("POST", "/statuses/")) == len(waits) + 1


# -- a comment deleted between listing and editing -----------------------------------------------


class DeletedBeforeEdit:
    """A driver's thread, except that someone deletes the comment we are about to edit, once, just
    after we listed it (``remove`` deletes it in the fake's state)."""

    def __init__(self, thread: Thread, remove: Callable[[str], None]) -> None:
        self.thread, self.remove, self.removed = thread, remove, False

    def identity(self) -> str | None:
        return self.thread.identity()

    def comments(self) -> list[Comment]:
        return list(self.thread.comments())

    def create(self, text: str, confirm: Callable[[], Comment | None]) -> Comment:
        return self.thread.create(text, confirm)

    def edit(self, comment: Comment, text: str) -> Comment:
        if not self.removed:
            self.removed = True
            self.remove(comment.id)
        return self.thread.edit(comment, text)

    def delete(self, comment: Comment) -> None:
        self.thread.delete(comment)


def test_github_comment_deleted_before_the_edit_is_posted_anew(fake_github: FakeGitHub) -> None:
    old = fake_github.add_comment(2, body("old"), "cml-bot-user")
    thread = DeletedBeforeEdit(gh_forge(fake_github).thread(Change(2)), lambda cid: fake_github.comments.pop(int(cid)))

    publication = upsert(thread, body("new"), MARKER, CommentMode.UPDATE)

    [comment] = fake_github.comments_on(2)
    assert comment["body"] == body("new") and comment["id"] != old
    assert publication.created and publication.comment_url and publication.comment_url.endswith(str(comment["id"]))
    assert [status for _, _, status in fake_github.requests("PATCH")] == [404]
    assert len(fake_github.requests("POST", r"/issues/2/comments$")) == 1


def test_gitlab_note_deleted_before_the_edit_is_posted_anew(
    fake: FakeGitLab, make_forge: Callable[..., GitLab]
) -> None:
    old = fake.add_note(MR_IID, body("old", GITLAB_MARKER), author=fake.bot.id)

    def remove(note_id: str) -> None:
        with fake._lock:
            notes = fake.project.notes[MR_IID]
            notes[:] = [n for n in notes if str(n["id"]) != note_id]

    thread = DeletedBeforeEdit(make_forge().thread(Change(MR_IID)), remove)
    publication = upsert(thread, body("new", GITLAB_MARKER), GITLAB_MARKER, CommentMode.UPDATE)

    [note] = fake.marked_notes(MR_IID, GITLAB_MARKER)
    assert note["body"] == body("new", GITLAB_MARKER) and note["id"] != old["id"]
    assert publication.created
    assert fake.count("PUT", rf"/notes/{old['id']}$") == 1 and fake.count("POST", r"/notes$") == 1


def test_bitbucket_comment_deleted_before_the_edit_is_posted_anew(fake_bitbucket: FakeBitbucket) -> None:
    account = fake_bitbucket.add_token(API_TOKEN, "ml-bot", kind="user", email="ml@example.com")
    marker = marker_for("default", Flavour.BITBUCKET)
    old = fake_bitbucket.add_comment(PR_ID, body("old", marker), account)
    env = pipelines_env(fake_bitbucket, CML_BOT_TOKEN=API_TOKEN, CML_BOT_USERNAME="ml@example.com")
    driver = bitbucket_forge(bitbucket_context(env), env, sleep=lambda _: None)

    def remove(cid: str) -> None:  # Bitbucket keeps a deleted comment listed with "deleted": true
        fake_bitbucket.comments[int(cid)].update(deleted=True, raw="")

    thread = DeletedBeforeEdit(driver.thread(Change(PR_ID)), remove)
    publication = upsert(thread, body("new", marker), marker, CommentMode.UPDATE)

    [comment] = fake_bitbucket.comments_on(PR_ID)
    assert comment["raw"] == body("new", marker) and comment["id"] != old
    assert publication.created
    assert [r.status for r in fake_bitbucket.requests("PUT", r"/comments/\d+$")] == [404]


class Gone:
    """An in-memory thread where the listed comments in ``gone`` were deleted by someone else."""

    def __init__(self, items: list[Comment], identity: str | None, author: str, gone: set[str]) -> None:
        self.items, self._identity, self.author, self.gone = list(items), identity, author, gone
        self.deleted: list[str] = []

    def identity(self) -> str | None:
        return self._identity

    def comments(self) -> list[Comment]:
        return list(self.items)  # a listing that still shows the deleted ones (it lags)

    def create(self, text: str, confirm: Callable[[], Comment | None]) -> Comment:
        made = Comment(str(900 + len(self.items)), text, self.author, f"https://forge/c/{900 + len(self.items)}")
        self.items.append(made)
        return made

    def edit(self, comment: Comment, text: str) -> Comment:
        if comment.id in self.gone:
            raise CommentGone(f"comment {comment.id} is gone")
        return Comment(comment.id, text, comment.author, comment.url)

    def delete(self, comment: Comment) -> None:
        self.deleted.append(comment.id)


def test_update_edits_the_next_of_ours_when_the_oldest_is_gone() -> None:
    a, b = Comment("1", body("a"), "me", "u1"), Comment("2", body("b"), "me", "u2")
    thread = Gone([a, b], "me", "me", gone={"1"})
    assert upsert(thread, body("new"), MARKER, CommentMode.UPDATE) == Publication("u2", created=False)
    assert thread.deleted == []


def test_settling_when_the_oldest_is_gone_keeps_our_new_comment() -> None:
    # identity unknown: we create, then settle among ours; the oldest of ours was deleted meanwhile
    older = Comment("1", body("older"), "app[bot]", "u1")
    thread = Gone([older], None, "app[bot]", gone={"1"})
    publication = upsert(thread, body("new"), MARKER, CommentMode.UPDATE)
    assert publication.created and publication.comment_url == "https://forge/c/901"
    assert thread.deleted == []


# -- a GitHub App installation token without CML_BOT_LOGIN ---------------------------------------


def app_run(fake: FakeGitHub, text: str) -> Publication:
    """What a run does on GitHub: the status first (its answer names the token), then the comment."""
    forge = gh_forge(fake, CML_BOT_TOKEN=APP_TOKEN)
    forge.set_status(Verdict.PASS, "ok", None)
    return upsert(forge.thread(Change(2)), body(text), MARKER, CommentMode.UPDATE)


def test_an_app_token_finds_its_comment_again_from_the_status_it_set(fake_github: FakeGitHub) -> None:
    # An installation token: GET /user answers 403, comments and statuses are by "<slug>[bot]"
    # (fake_github.add_token kind "app"; see the routes for /user and the status "creator").
    fake_github.add_token(APP_TOKEN, kind="app", app_slug="my-app")
    theirs = fake_github.add_comment(2, body("another app's"), "other-app[bot]", "Bot")

    runs = [app_run(fake_github, f"run {n}") for n in (1, 2, 3)]

    assert [p.created for p in runs] == [True, False, False]
    assert len(fake_github.requests("POST", r"/issues/2/comments$")) == 1
    assert fake_github.requests("DELETE") == []
    ours = [c for c in fake_github.comments_on(2) if c["login"] == "my-app[bot]"]
    assert [c["body"] for c in ours] == [body("run 3")]
    assert fake_github.comments[theirs]["body"] == body("another app's")  # never "any bot"
    # who we are comes from the status's creator: /user (403 for an installation token) is not asked
    assert fake_github.requests("GET", "^/user$") == []


def test_an_app_token_that_may_not_set_statuses_warns_to_set_cml_bot_login(
    fake_github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    fake_github.add_token(APP_TOKEN, kind="app", app_slug="my-app")
    forge = gh_forge(fake_github, CML_BOT_TOKEN=APP_TOKEN)
    with caplog.at_level(logging.WARNING):
        upsert(forge.thread(Change(2)), body("one"), MARKER, CommentMode.UPDATE)
    assert "CML_BOT_LOGIN" in caplog.text and "my-app[bot]" in caplog.text
    # told explicitly, the next run edits in place
    forge = gh_forge(fake_github, CML_BOT_TOKEN=APP_TOKEN, CML_BOT_LOGIN="my-app[bot]")
    assert upsert(forge.thread(Change(2)), body("two"), MARKER, CommentMode.UPDATE).created is False
    assert [c["body"] for c in fake_github.comments_on(2)] == [body("two")]
