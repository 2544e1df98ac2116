"""GitHubForge against the fake GitHub server, through the real PyGithub client."""

from __future__ import annotations

import json
import logging
import re
import urllib.parse

import pytest
import requests
from fake_github import EVENTS, HEAD_SHA, TOKEN, FakeGitHub, fake_github, git_sha, github_env

from cml_bot.context import detect
from cml_bot.errors import ForgeError, ReadOnlyTokenError
from cml_bot.forges.base import CommentMode, Publication
from cml_bot.forges.github import GitHubForge, github_forge
from cml_bot.model import Image, Verdict

__all__ = ["fake_github"]  # the fixture, imported for pytest

MARKER = "<!-- cml-bot report (id: default) -->"
BOT_TOKEN = "ghs_FAKE0INSTALLATION0TOKEN0secret0000"


def body(text: str) -> str:
    return f"{MARKER}\n## cml-bot\n{text}\n"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_forge(fake: FakeGitHub, sleeps: Sleeps, event: str = "pull_request.opened", **env: str) -> GitHubForge:
    environ = github_env(fake, event, **env)
    return github_forge(detect(environ), environ, sleep=sleeps)


def mine(fake: FakeGitHub, issue: int = 2) -> list[dict[str, object]]:
    return [c for c in fake.comments_on(issue) if MARKER in str(c["body"])]


# -- comments ------------------------------------------------------------------------------


def test_first_post_creates_one_comment(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    forge = make_forge(fake_github, sleeps)
    assert forge.comment_limit == 65536
    publication = forge.upsert_comment(body("first"), MARKER, CommentMode.UPDATE)
    [comment] = fake_github.comments_on(2)
    assert comment["body"] == body("first")
    assert comment["login"] == "cml-bot-user"
    assert publication == Publication(
        f"https://github.com/Codertocat/Hello-World/pull/2#issuecomment-{comment['id']}", True
    )
    assert sleeps == []


def test_update_edits_the_same_comment_in_place(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    forge = make_forge(fake_github, sleeps)
    first = forge.upsert_comment(body("first"), MARKER, CommentMode.UPDATE)
    second = make_forge(fake_github, sleeps).upsert_comment(body("second"), MARKER, CommentMode.UPDATE)
    assert [c["body"] for c in fake_github.comments_on(2)] == [body("second")]
    assert second == Publication(first.comment_url, False)
    assert len(fake_github.requests("PATCH", r"/issues/comments/\d+$")) == 1


def test_finds_its_comment_on_page_three_of_250(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    for i in range(230):
        fake_github.add_comment(2, f"chatter {i}", login=f"user{i % 7}")
    ours = fake_github.add_comment(2, body("old"), login="cml-bot-user")
    for i in range(40):
        fake_github.add_comment(2, f"more chatter {i}")
    publication = make_forge(fake_github, sleeps).upsert_comment(body("new"), MARKER, CommentMode.UPDATE)
    assert [c["id"] for c in mine(fake_github)] == [ours]
    assert fake_github.comments[ours]["body"] == body("new")
    assert publication.created is False and publication.comment_url is not None
    assert publication.comment_url.endswith(f"#issuecomment-{ours}")
    lists = [path for _, path, _ in fake_github.requests("GET", "/comments")]
    # 100 per page, then GitHub's own Link URLs (/repositories/{id}/...) up to page 3
    assert lists[0].endswith("/issues/2/comments?per_page=100")
    followed = [urllib.parse.urlsplit(p) for p in lists[1:]]
    assert [u.path for u in followed] == ["/repositories/186853002/issues/2/comments"] * 2
    assert [dict(urllib.parse.parse_qsl(u.query)) for u in followed] == [
        {"per_page": "100", "page": "2"},
        {"per_page": "100", "page": "3"},
    ]
    assert not fake_github.requests("POST", "/comments")


def test_link_header_is_spelled_like_githubs(fake_github: FakeGitHub) -> None:
    for i in range(250):
        fake_github.add_comment(2, f"c{i}")
    headers = {"Authorization": f"token {TOKEN}"}
    url = f"{fake_github.url}/repos/Codertocat/Hello-World/issues/2/comments?per_page=100&page=2"
    response = requests.get(url, headers=headers, timeout=5)
    base = f"{fake_github.url}/repositories/186853002/issues/2/comments?per_page=100&page="
    assert response.headers["Link"] == (
        f'<{base}1>; rel="prev", <{base}3>; rel="next", <{base}3>; rel="last", <{base}1>; rel="first"'
    )
    assert len(response.json()) == 100


def test_someone_elses_comment_with_the_marker_is_left_alone(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    quoted = fake_github.add_comment(2, f"> {MARKER}\nwhy is this failing?", login="octocat")
    make_forge(fake_github, sleeps).upsert_comment(body("ours"), MARKER, CommentMode.UPDATE)
    comments = fake_github.comments_on(2)
    assert [c["login"] for c in comments] == ["octocat", "cml-bot-user"]
    assert fake_github.comments[quoted]["body"].startswith("> ")


def test_recreate_deletes_the_old_comment_and_posts_at_the_bottom(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    forge = make_forge(fake_github, sleeps)
    old = forge.upsert_comment(body("old"), MARKER, CommentMode.UPDATE)
    fake_github.add_comment(2, "a review remark", login="octocat")
    new = forge.upsert_comment(body("new"), MARKER, CommentMode.RECREATE)
    comments = fake_github.comments_on(2)
    assert [c["body"] for c in comments] == ["a review remark", body("new")]
    assert new.created is True and new.comment_url != old.comment_url


def test_new_mode_always_adds_a_comment(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    forge = make_forge(fake_github, sleeps)
    forge.upsert_comment(body("one"), MARKER, CommentMode.NEW)
    forge.upsert_comment(body("two"), MARKER, CommentMode.NEW)
    assert [c["body"] for c in mine(fake_github)] == [body("one"), body("two")]


def test_installation_token_matches_bot_authors(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    """GITHUB_TOKEN cannot read /user (403): a marked comment by a bot is ours, a human's is not."""
    fake_github.add_token(BOT_TOKEN, "github-actions[bot]", type="Bot", can_read_user=False)
    human = fake_github.add_comment(2, body("pasted by a human"), login="octocat")
    ours = fake_github.add_comment(2, body("old"), login="github-actions[bot]", type="Bot")
    forge = make_forge(fake_github, sleeps, GITHUB_TOKEN=BOT_TOKEN)
    publication = forge.upsert_comment(body("new"), MARKER, CommentMode.UPDATE)
    assert publication.created is False
    assert fake_github.comments[ours]["body"] == body("new")
    assert fake_github.comments[human]["body"] == body("pasted by a human")
    assert fake_github.requests("GET", "^/user$") == [("GET", "/user", 403)]


def test_cml_bot_token_wins_over_github_token(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    fake_github.add_token(BOT_TOKEN, "github-actions[bot]", type="Bot", can_read_user=False)
    forge = make_forge(fake_github, sleeps, GITHUB_TOKEN=BOT_TOKEN, CML_BOT_TOKEN=TOKEN)
    forge.upsert_comment(body("x"), MARKER, CommentMode.UPDATE)
    assert [c["login"] for c in fake_github.comments_on(2)] == ["cml-bot-user"]


def test_racing_runs_leave_one_comment_the_oldest_with_the_newest_body(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    def other_run_posts(fake: FakeGitHub) -> None:  # lands between our listing and our POST
        fake.add_comment(2, body("other run"), login="cml-bot-user")

    fake_github.fail("POST", "/issues/2/comments$", "before", callback=other_run_posts)
    publication = make_forge(fake_github, sleeps).upsert_comment(body("ours"), MARKER, CommentMode.UPDATE)
    [survivor] = mine(fake_github)
    assert survivor["body"] == body("ours")  # ours was created last, so it is the newest body
    assert publication == Publication(
        f"https://github.com/Codertocat/Hello-World/pull/2#issuecomment-{survivor['id']}", False
    )


def test_existing_duplicates_are_collapsed_on_update(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    first = fake_github.add_comment(2, body("a"), login="cml-bot-user")
    fake_github.add_comment(2, body("b"), login="cml-bot-user")
    make_forge(fake_github, sleeps).upsert_comment(body("c"), MARKER, CommentMode.UPDATE)
    assert [(c["id"], c["body"]) for c in mine(fake_github)] == [(first, body("c"))]


def test_no_pull_request_posts_nothing(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    forge = make_forge(fake_github, sleeps, "push.branch", GITHUB_SHA="6113728f27ae82c7b1a177c8d03f9e96e0adf246")
    assert forge.upsert_comment(body("x"), MARKER, CommentMode.UPDATE) == Publication(None, False)
    assert fake_github.comments_on(2) == []
    assert fake_github.requests("GET", "/commits/6113728f27ae82c7b1a177c8d03f9e96e0adf246/pulls")
    assert not fake_github.requests("POST")


def test_push_of_a_pr_branch_finds_the_pr_by_commit(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    fake_github.add_pull(1, HEAD_SHA, state="closed")
    forge = make_forge(fake_github, sleeps, "push.branch", GITHUB_SHA=HEAD_SHA)
    forge.upsert_comment(body("x"), MARKER, CommentMode.UPDATE)
    assert len(fake_github.comments_on(2)) == 1 and fake_github.comments_on(1) == []


def test_change_number_and_head_override_the_context(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    fake_github.add_pull(7, "a" * 40)
    environ = github_env(fake_github)
    forge = github_forge(detect(environ), environ, change_number=7, head_sha="a" * 40, sleep=sleeps)
    forge.upsert_comment(body("x"), MARKER, CommentMode.UPDATE)
    forge.set_status(Verdict.PASS, "ok", None)
    assert len(fake_github.comments_on(7)) == 1
    assert fake_github.statuses[0]["sha"] == "a" * 40


def test_github_enterprise_api_prefix(sleeps: Sleeps) -> None:
    fake = FakeGitHub(prefix="/api/v3")
    fake.add_token(TOKEN)
    fake.add_pull(2, HEAD_SHA)
    with fake:
        forge = make_forge(fake, sleeps)
        forge.upsert_comment(body("ghes"), MARKER, CommentMode.UPDATE)
        forge.upsert_comment(body("ghes 2"), MARKER, CommentMode.UPDATE)
        assert fake.url.endswith("/api/v3")
    assert [c["body"] for c in fake.comments_on(2)] == [body("ghes 2")]
    assert fake.violations == []


# -- the hint: the assets branch names the comment -----------------------------------------


def hints(fake: FakeGitHub) -> dict[str, bytes]:
    ref = "refs/heads/cml-bot-assets"
    if ref not in fake.refs:
        return {}
    return {path: data for path, data in fake.commit_files("cml-bot-assets").items() if "/.comment-" in path}


def hint_path(fake: FakeGitHub) -> str:
    [path] = hints(fake)
    return path


def comment_requests(fake: FakeGitHub, since: int) -> list[tuple[str, str]]:
    return [(m, path) for m, path, _ in fake.log[since:] if "/comments" in path or path == "/user"]


def test_first_post_names_the_comment_on_the_assets_branch(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    make_forge(fake_github, sleeps).upsert_comment(body("first"), MARKER, CommentMode.UPDATE)
    [comment] = fake_github.comments_on(2)
    assert hints(fake_github) == {hint_path(fake_github): f"cml-bot comment {comment['id']} by cml-bot-user\n".encode()}
    assert re.fullmatch(rf"pr-2/\.comment-[0-9a-f]{{12}}-{comment['id']}", hint_path(fake_github))
    assert not fake_github.requests("GET", "^/user$")  # our own new comment needs no "who am I"


def test_update_uses_the_hint_two_requests_among_300_comments(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    make_forge(fake_github, sleeps).upsert_comment(body("first"), MARKER, CommentMode.UPDATE)
    [ours] = fake_github.comments_on(2)
    for i in range(300):
        fake_github.add_comment(2, f"chatter {i}", login=f"user{i % 7}")
    assets = fake_github.refs["refs/heads/cml-bot-assets"]
    start = len(fake_github.log)
    publication = make_forge(fake_github, sleeps).upsert_comment(body("second"), MARKER, CommentMode.UPDATE)
    assert publication == Publication(
        f"https://github.com/Codertocat/Hello-World/pull/2#issuecomment-{ours['id']}", False
    )
    assert fake_github.comments[ours["id"]]["body"] == body("second")
    # read the branch (once), fetch the comment by id, edit it: no listing, no GET /user, no hint write
    assert [(m, re.sub(r"\?.*", "", path)) for m, path, _ in fake_github.log[start:]] == [
        ("GET", "/repos/Codertocat/Hello-World/branches/cml-bot-assets"),
        ("GET", f"/repos/Codertocat/Hello-World/git/trees/{fake_github.commits[assets]['tree']}"),
        ("GET", f"/repos/Codertocat/Hello-World/issues/comments/{ours['id']}"),
        ("PATCH", f"/repos/Codertocat/Hello-World/issues/comments/{ours['id']}"),
    ]
    assert fake_github.refs["refs/heads/cml-bot-assets"] == assets


def test_hint_shares_the_branch_read_with_the_images(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    make_forge(fake_github, sleeps).upsert_comment(body("first"), MARKER, CommentMode.UPDATE)
    start = len(fake_github.log)
    forge = make_forge(fake_github, sleeps)
    forge.upload_images([Image("a.png", PNG_A)])
    forge.upsert_comment(body("second"), MARKER, CommentMode.UPDATE)
    assert [m for m, _, _ in fake_github.log[start:]] == ["GET", "GET", "PUT", "GET", "PATCH"]
    assert set(fake_github.commit_files("cml-bot-assets")) == {"pr-2/ec26c3e/a.png", hint_path(fake_github)}


def stale_hint(fake: FakeGitHub, comment_id: int, login: str = "cml-bot-user") -> str:
    """A hint for comment ``comment_id``, written as a run of ``login`` would have (replacing any)."""
    path = re.sub(r"-\d+$", f"-{comment_id}", hint_path(fake))
    files = {p: d for p, d in fake.commit_files("cml-bot-assets").items() if "/.comment-" not in p}
    files[path] = f"cml-bot comment {comment_id} by {login}\n".encode()
    tree = fake._store_tree({p: git_sha("blob", d) for p, d in files.items()})
    for data in files.values():
        fake.blobs[git_sha("blob", data)] = data
    fake.refs["refs/heads/cml-bot-assets"] = fake._store_commit(tree, [], "rewritten")
    return path


def assert_scan_then_one_comment(fake: FakeGitHub, start: int, survivor: int, text: str) -> None:
    assert [(c["id"], c["body"]) for c in mine(fake) if c["login"] == "cml-bot-user"] == [(survivor, body(text))]
    assert any(re.search(r"/issues/2/comments\?", path) for _, path, _ in fake.log[start:])  # the listing decided
    assert hint_path(fake).endswith(f"-{survivor}")  # and the hint names the survivor again
    assert hints(fake)[hint_path(fake)] == f"cml-bot comment {survivor} by cml-bot-user\n".encode()


def test_hint_to_a_deleted_comment_falls_back_to_the_scan(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    make_forge(fake_github, sleeps).upsert_comment(body("first"), MARKER, CommentMode.UPDATE)
    [first] = fake_github.comments_on(2)
    del fake_github.comments[first["id"]]  # someone deleted our comment
    start = len(fake_github.log)
    publication = make_forge(fake_github, sleeps).upsert_comment(body("second"), MARKER, CommentMode.UPDATE)
    [second] = fake_github.comments_on(2)
    assert publication.created is True
    assert fake_github.requests("GET", f"/issues/comments/{first['id']}$") == [
        ("GET", f"/repos/Codertocat/Hello-World/issues/comments/{first['id']}", 404)
    ]
    assert_scan_then_one_comment(fake_github, start, second["id"], "second")


def test_hint_to_someone_elses_comment_without_the_marker_is_ignored(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    make_forge(fake_github, sleeps).upsert_comment(body("first"), MARKER, CommentMode.UPDATE)
    [ours] = fake_github.comments_on(2)
    theirs = fake_github.add_comment(2, "LGTM", login="octocat")
    stale_hint(fake_github, theirs, login="octocat")
    start = len(fake_github.log)
    make_forge(fake_github, sleeps).upsert_comment(body("second"), MARKER, CommentMode.UPDATE)
    assert fake_github.comments[theirs]["body"] == "LGTM"
    assert not fake_github.requests("PATCH", f"/issues/comments/{theirs}$")
    assert_scan_then_one_comment(fake_github, start, ours["id"], "second")


@pytest.mark.parametrize("case", ["quoted marker", "other author than recorded", "other pull request", "two hints"])
def test_hint_that_does_not_check_out_is_ignored(fake_github: FakeGitHub, sleeps: Sleeps, case: str) -> None:
    make_forge(fake_github, sleeps).upsert_comment(body("first"), MARKER, CommentMode.UPDATE)
    [ours] = fake_github.comments_on(2)
    if case == "quoted marker":  # the marker, but not as its own line
        target = fake_github.add_comment(2, f"> {MARKER}\nwhy?", login="octocat")
        stale_hint(fake_github, target, login="octocat")
    elif case == "other author than recorded":  # a human pasted our report; the hint says we wrote it
        target = fake_github.add_comment(2, body("pasted"), login="octocat")
        stale_hint(fake_github, target)
    elif case == "other pull request":
        fake_github.add_pull(3, "b" * 40)
        target = fake_github.add_comment(3, body("on PR 3"), login="cml-bot-user")
        stale_hint(fake_github, target)
    else:
        target = ours["id"]
        fake_github.push_commit("cml-bot-assets", {re.sub(r"-\d+$", "-1", hint_path(fake_github)): b"x"})
    before = fake_github.comments[target]["body"]
    start = len(fake_github.log)
    make_forge(fake_github, sleeps).upsert_comment(body("second"), MARKER, CommentMode.UPDATE)
    assert fake_github.comments[target]["body"] == (body("second") if case == "two hints" else before)
    if case != "two hints":  # never even tried: GitHub lets maintainers edit anyone's comment
        assert not fake_github.requests("PATCH", f"/issues/comments/{target}$")
    assert_scan_then_one_comment(fake_github, start, ours["id"], "second")


def test_recreate_moves_the_hint_to_the_new_comment(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    forge = make_forge(fake_github, sleeps)
    forge.upsert_comment(body("old"), MARKER, CommentMode.UPDATE)
    new = make_forge(fake_github, sleeps).upsert_comment(body("new"), MARKER, CommentMode.RECREATE)
    [comment] = fake_github.comments_on(2)
    assert new.created is True and comment["body"] == body("new")
    assert hint_path(fake_github).endswith(f"-{comment['id']}")  # the old hint was deleted, not left beside
    make_forge(fake_github, sleeps).upsert_comment(body("newer"), MARKER, CommentMode.UPDATE)
    assert [c["body"] for c in fake_github.comments_on(2)] == [body("newer")]


def test_racing_first_posts_end_with_one_comment_and_the_hint_on_it(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    def other_run(fake: FakeGitHub) -> None:  # a whole run between our listing and our POST
        make_forge(fake, Sleeps()).upsert_comment(body("other run"), MARKER, CommentMode.UPDATE)

    fake_github.fail("POST", "/issues/2/comments$", "before", callback=other_run)
    publication = make_forge(fake_github, sleeps).upsert_comment(body("ours"), MARKER, CommentMode.UPDATE)
    [survivor] = mine(fake_github)
    assert survivor["body"] == body("ours") and publication.created is False
    assert hint_path(fake_github).endswith(f"-{survivor['id']}")
    start = len(fake_github.log)
    make_forge(fake_github, sleeps).upsert_comment(body("next"), MARKER, CommentMode.UPDATE)
    assert comment_requests(fake_github, start) == [
        ("GET", f"/repos/Codertocat/Hello-World/issues/comments/{survivor['id']}"),
        ("PATCH", f"/repos/Codertocat/Hello-World/issues/comments/{survivor['id']}"),
    ]


def test_racing_hint_writes_agree(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    def other_run(fake: FakeGitHub) -> None:  # finds our new comment by the scan and names it first
        make_forge(fake, Sleeps()).upsert_comment(body("other run"), MARKER, CommentMode.UPDATE)

    make_forge(fake_github, sleeps).upload_images([Image("a.png", PNG_A)])  # the branch exists
    fake_github.fail("PUT", "/contents/pr-2/", "before", callback=other_run)
    forge = make_forge(fake_github, sleeps)
    forge.upload_images([Image("a.png", PNG_A)])
    forge.upsert_comment(body("ours"), MARKER, CommentMode.UPDATE)
    [survivor] = mine(fake_github)
    assert survivor["body"] == body("other run")
    assert hint_path(fake_github).endswith(f"-{survivor['id']}")
    assert [status for _, _, status in fake_github.requests("PUT")] == [201, 422]  # theirs, then ours: same


def test_a_hint_that_cannot_be_written_does_not_fail_the_post(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    fake_github.fail("POST", "/git/blobs$", status=403, message="Resource not accessible by integration")
    publication = make_forge(fake_github, sleeps).upsert_comment(body("x"), MARKER, CommentMode.UPDATE)
    assert publication.created is True and len(mine(fake_github)) == 1
    assert hints(fake_github) == {}
    make_forge(fake_github, sleeps).upsert_comment(body("y"), MARKER, CommentMode.UPDATE)  # scans, then names it
    assert [c["body"] for c in mine(fake_github)] == [body("y")] and len(hints(fake_github)) == 1


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        ("status", {"status": 502}),
        ("status", {"status": 503, "headers": {"Retry-After": "7"}}),
        ("drop", {}),
        ("drop-after", {}),  # the comment was created but the response never arrived
        (
            "status",
            {"status": 403, "message": "You have exceeded a secondary rate limit.", "headers": {"Retry-After": "30"}},
        ),
    ],
)
def test_faults_on_create_never_duplicate(
    fake_github: FakeGitHub, sleeps: Sleeps, kind: str, kwargs: dict[str, object]
) -> None:
    fake_github.fail("POST", "/issues/2/comments$", kind, times=2, **kwargs)
    publication = make_forge(fake_github, sleeps).upsert_comment(body("x"), MARKER, CommentMode.UPDATE)
    assert [c["body"] for c in fake_github.comments_on(2)] == [body("x")]
    assert publication.comment_url is not None
    if kind == "drop-after":
        assert len(fake_github.requests("POST", "/comments$")) == 1  # found on re-listing, not reposted
    else:
        assert len(fake_github.requests("POST", "/comments$")) == 3
    assert len(sleeps) >= 1
    retry_after = kwargs.get("headers", {}).get("Retry-After")  # type: ignore[attr-defined]
    if retry_after:
        assert sleeps[:2] == [float(retry_after)] * 2


@pytest.mark.parametrize("kind", ["status", "drop"])
def test_faults_on_reads_and_updates_are_retried(fake_github: FakeGitHub, sleeps: Sleeps, kind: str) -> None:
    ours = fake_github.add_comment(2, body("old"), login="cml-bot-user")
    fake_github.fail("GET", "/issues/2/comments$", kind, status=500, times=2)
    fake_github.fail("PATCH", "/issues/comments/", kind, status=502)
    fake_github.fail("GET", "^/user$", kind, status=504)
    make_forge(fake_github, sleeps).upsert_comment(body("new"), MARKER, CommentMode.UPDATE)
    assert [(c["id"], c["body"]) for c in fake_github.comments_on(2)] == [(ours, body("new"))]
    assert sleeps == [1.0, 2.0, 1.0, 1.0]  # comments twice (backoff doubles), /user once, PATCH once


def test_retry_after_is_capped(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    fake_github.fail("POST", "/statuses/", status=429, headers={"Retry-After": "3600"})
    make_forge(fake_github, sleeps).set_status(Verdict.PASS, "ok", None)
    assert sleeps == [60.0]
    assert len(fake_github.statuses) == 1


def test_persistent_5xx_gives_up_with_a_clear_message(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    fake_github.fail("GET", "/issues/2/comments$", status=502, message="Bad Gateway", times=99)
    with pytest.raises(ForgeError) as info:
        make_forge(fake_github, sleeps).upsert_comment(body("x"), MARKER, CommentMode.UPDATE)
    assert str(info.value) == "GitHub GET /repos/Codertocat/Hello-World/issues/2/comments: 502 Bad Gateway"
    assert not isinstance(info.value, ReadOnlyTokenError)
    assert sleeps == [1.0, 2.0, 4.0, 8.0]
    assert fake_github.comments_on(2) == []


def test_read_only_token_raises_at_once(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    fake_github.add_token(BOT_TOKEN, "github-actions[bot]", type="Bot", can_write=False, can_read_user=False)
    forge = make_forge(fake_github, sleeps, GITHUB_TOKEN=BOT_TOKEN)
    with pytest.raises(ReadOnlyTokenError, match="403 Resource not accessible by integration"):
        forge.upsert_comment(body("x"), MARKER, CommentMode.UPDATE)
    with pytest.raises(ReadOnlyTokenError):
        forge.upload_images([Image("plot.png", b"png")])
    assert len(fake_github.requests("POST")) == 2  # one comment attempt, one blob attempt: no retries
    assert sleeps == []


def test_bad_credentials_is_a_forge_error(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    forge = make_forge(fake_github, sleeps, GITHUB_TOKEN="ghp_wrong0secret")
    with pytest.raises(ForgeError, match="401 Bad credentials") as info:
        forge.upsert_comment(body("x"), MARKER, CommentMode.UPDATE)
    assert not isinstance(info.value, ReadOnlyTokenError)
    assert "ghp_wrong0secret" not in str(info.value)


def test_missing_token_or_repo() -> None:
    environ = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": str(EVENTS / "pull_request.opened.json")}
    with pytest.raises(ForgeError, match="no token"):
        github_forge(detect(environ), environ)


# -- verify_change_head --------------------------------------------------------------------


def test_verify_change_head(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    forge = make_forge(fake_github, sleeps)
    forge.verify_change_head(HEAD_SHA)
    with pytest.raises(ForgeError, match="PR #2 head is ec26c3e57ca3, not 000000000000"):
        forge.verify_change_head("0" * 40)


# -- images --------------------------------------------------------------------------------

PNG_A = b"\x89PNG\r\n\x1a\n" + b"a" * 100
PNG_B = b"\x89PNG\r\n\x1a\n" + b"b" * 100


def test_images_go_to_an_orphan_assets_branch_with_pinned_urls(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    forge = make_forge(fake_github, sleeps)
    urls = forge.upload_images([Image("plot-01-loss.png", PNG_A), Image("plot-02-acc.png", PNG_B)])
    commit = fake_github.refs["refs/heads/cml-bot-assets"]
    assert fake_github.commits[commit]["parents"] == []
    assert fake_github.commit_files("cml-bot-assets") == {
        "pr-2/ec26c3e/plot-01-loss.png": PNG_A,
        "pr-2/ec26c3e/plot-02-acc.png": PNG_B,
    }
    assert urls == {
        "plot-01-loss.png": f"https://github.com/Codertocat/Hello-World/raw/{commit}/pr-2/ec26c3e/plot-01-loss.png",
        "plot-02-acc.png": f"https://github.com/Codertocat/Hello-World/raw/{commit}/pr-2/ec26c3e/plot-02-acc.png",
    }
    assert fake_github.requests("POST", "/git/refs$") == [("POST", "/repos/Codertocat/Hello-World/git/refs", 201)]


def test_images_append_to_the_branch_one_request_per_new_image(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    forge = make_forge(fake_github, sleeps)
    first = forge.upload_images([Image("a.png", PNG_A)])
    first_commit = fake_github.refs["refs/heads/cml-bot-assets"]
    served = len(fake_github.log)
    again = forge.upload_images([Image("a.png", PNG_A)])
    assert again == first  # already there, and the branch is not read twice in one run
    assert len(fake_github.log) == served

    environ = github_env(fake_github)
    other = github_forge(detect(environ), environ, head_sha="f" * 40, change_number=2, sleep=sleeps)
    urls = other.upload_images([Image("a.png", PNG_A), Image("b.png", PNG_B)])
    head = fake_github.refs["refs/heads/cml-bot-assets"]
    assert [(m, re.sub(r"\?.*", "", path)) for m, path, _ in fake_github.log[served:]] == [
        ("GET", "/repos/Codertocat/Hello-World/branches/cml-bot-assets"),
        ("GET", f"/repos/Codertocat/Hello-World/git/trees/{fake_github.commits[first_commit]['tree']}"),
        ("PUT", "/repos/Codertocat/Hello-World/contents/pr-2/fffffff/a.png"),
        ("PUT", "/repos/Codertocat/Hello-World/contents/pr-2/fffffff/b.png"),
    ]
    middle = fake_github.commits[head]["parents"][0]
    assert fake_github.commits[middle]["parents"] == [first_commit]
    assert fake_github.commit_files(head) == {
        "pr-2/ec26c3e/a.png": PNG_A,
        "pr-2/fffffff/a.png": PNG_A,
        "pr-2/fffffff/b.png": PNG_B,
    }
    assert urls == {  # each pinned to a commit holding it
        "a.png": f"https://github.com/Codertocat/Hello-World/raw/{middle}/pr-2/fffffff/a.png",
        "b.png": f"https://github.com/Codertocat/Hello-World/raw/{head}/pr-2/fffffff/b.png",
    }


def test_a_concurrent_push_elsewhere_on_the_branch_does_not_conflict(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    fake_github.push_commit("cml-bot-assets", {"pr-1/abcdef0/x.png": b"x"})

    def concurrent_push(fake: FakeGitHub) -> None:
        fake.push_commit("cml-bot-assets", {"pr-3/1234567/y.png": b"y"})

    fake_github.fail("PUT", "/contents/", "before", callback=concurrent_push)
    urls = make_forge(fake_github, sleeps).upload_images([Image("a.png", PNG_A)])
    assert [status for _, _, status in fake_github.requests("PUT")] == [201]
    head = fake_github.refs["refs/heads/cml-bot-assets"]
    assert set(fake_github.commit_files(head)) == {"pr-1/abcdef0/x.png", "pr-3/1234567/y.png", "pr-2/ec26c3e/a.png"}
    assert urls["a.png"].endswith(f"/raw/{head}/pr-2/ec26c3e/a.png")


@pytest.mark.parametrize("same_bytes", [True, False])
def test_a_concurrent_run_writing_the_same_image_is_read_again(
    fake_github: FakeGitHub, sleeps: Sleeps, same_bytes: bool
) -> None:
    fake_github.push_commit("cml-bot-assets", {"pr-1/abcdef0/x.png": b"x"})

    def other_run(fake: FakeGitHub) -> None:  # a rerun of the same commit got there first
        fake.push_commit("cml-bot-assets", {"pr-2/ec26c3e/a.png": PNG_A if same_bytes else PNG_B})

    fake_github.fail("PUT", "/contents/", "before", callback=other_run)
    urls = make_forge(fake_github, sleeps).upload_images([Image("a.png", PNG_A)])
    head = fake_github.refs["refs/heads/cml-bot-assets"]
    assert fake_github.commit_files(head)["pr-2/ec26c3e/a.png"] == PNG_A
    assert urls["a.png"].endswith(f"/raw/{head}/pr-2/ec26c3e/a.png")
    # 422: the file exists and no sha was given; read again, then nothing to do or an update with its sha
    assert [status for _, _, status in fake_github.requests("PUT")] == ([422] if same_bytes else [422, 200])
    assert len(fake_github.requests("GET", "/branches/")) == 2


def test_drop_after_a_put_is_not_written_twice(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    fake_github.push_commit("cml-bot-assets", {"pr-1/abcdef0/x.png": b"x"})
    fake_github.fail("PUT", "/contents/", "drop-after")  # stored, but the answer was lost
    urls = make_forge(fake_github, sleeps).upload_images([Image("a.png", PNG_A)])
    head = fake_github.refs["refs/heads/cml-bot-assets"]
    assert [status for _, _, status in fake_github.requests("PUT")] == ["drop", 422]
    assert fake_github.commits[fake_github.commits[head]["parents"][0]]["parents"] == []  # one commit added
    assert urls["a.png"].endswith(f"/raw/{head}/pr-2/ec26c3e/a.png")


def test_orphan_branch_created_concurrently(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    def other_run_creates_it(fake: FakeGitHub) -> None:
        fake.push_commit("cml-bot-assets", {"pr-9/0000000/z.png": b"z"})

    fake_github.fail("POST", "/git/refs$", "before", callback=other_run_creates_it)
    make_forge(fake_github, sleeps).upload_images([Image("a.png", PNG_A)])
    assert set(fake_github.commit_files("cml-bot-assets")) == {"pr-9/0000000/z.png", "pr-2/ec26c3e/a.png"}


def test_oversized_image_is_refused_before_any_request(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    with pytest.raises(ForgeError, match=r"image huge\.png is 26214401 bytes"):
        make_forge(fake_github, sleeps).upload_images([Image("huge.png", b"x" * (25 * 1024 * 1024 + 1))])
    assert fake_github.log == []


def test_no_images_no_requests(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    assert make_forge(fake_github, sleeps).upload_images([]) == {}
    assert fake_github.log == []


def test_custom_assets_branch(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    environ = github_env(fake_github)
    forge = github_forge(detect(environ), environ, sleep=sleeps, assets_branch="ml/plots")
    urls = forge.upload_images([Image("a.png", PNG_A)])
    assert "refs/heads/ml/plots" in fake_github.refs
    assert "/raw/" in urls["a.png"]


# -- status --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "state"),
    [
        (Verdict.PASS, "success"),
        (Verdict.NO_BASELINE, "success"),
        (Verdict.REGRESSED, "failure"),
        (Verdict.FAILED, "error"),
    ],
)
def test_status_maps_the_verdict(fake_github: FakeGitHub, sleeps: Sleeps, verdict: Verdict, state: str) -> None:
    make_forge(fake_github, sleeps).set_status(verdict, "accuracy 0.91 (+0.01)", "https://example.test/run")
    assert fake_github.statuses == [
        {
            "sha": HEAD_SHA,
            "state": state,
            "description": "accuracy 0.91 (+0.01)",
            "target_url": "https://example.test/run",
            "context": "cml-bot",
        }
    ]


def test_status_description_is_trimmed_to_140(fake_github: FakeGitHub, sleeps: Sleeps) -> None:
    make_forge(fake_github, sleeps).set_status(Verdict.REGRESSED, "x" * 500, None)
    [status] = fake_github.statuses
    assert len(status["description"]) == 140 and status["description"].endswith("…")
    assert status["target_url"] is None


# -- the token -----------------------------------------------------------------------------


def test_token_never_in_logs_errors_or_repr(
    fake_github: FakeGitHub, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    forge = make_forge(fake_github, sleeps)
    assert TOKEN not in repr(forge)
    fake_github.fail("POST", "/comments$", "drop")
    fake_github.fail("POST", "/git/blobs", status=500)
    forge.upload_images([Image("a.png", PNG_A)])
    forge.upsert_comment(body("x"), MARKER, CommentMode.UPDATE)
    forge.set_status(Verdict.PASS, "ok", None)
    fake_github.fail("*", "", status=502, times=99)
    with pytest.raises(ForgeError) as info:
        forge.upsert_comment(body("y"), MARKER, CommentMode.UPDATE)
    fake_github.faults.clear()
    fake_github.add_token(BOT_TOKEN, can_write=False)
    with pytest.raises(ReadOnlyTokenError) as read_only:
        make_forge(fake_github, sleeps, GITHUB_TOKEN=BOT_TOKEN).set_status(Verdict.PASS, "ok", None)
    records = [logging.Formatter().format(r) for r in caplog.records]
    assert any("GET" in r for r in records)  # PyGithub's debug lines were captured
    for text in [*records, str(info.value), repr(info.value), str(read_only.value)]:
        assert TOKEN not in text and BOT_TOKEN not in text
    assert "Authorization" not in json.dumps(fake_github.statuses)


# -- the fake itself -----------------------------------------------------------------------


def test_fake_records_requests_outside_the_spec(fake_github: FakeGitHub) -> None:
    headers = {"Authorization": f"token {TOKEN}"}
    bad = requests.post(f"{fake_github.repo_api('/issues/2/comments')}", json={"text": "x"}, headers=headers, timeout=5)
    unknown = requests.get(f"{fake_github.repo_api('/labels')}", headers=headers, timeout=5)
    assert (bad.status_code, unknown.status_code) == (400, 404)
    assert len(fake_github.violations) == 2
    assert re.search("'body' is a required property", fake_github.violations[0])
    fake_github.violations.clear()  # expected here; the fixture asserts none remain
