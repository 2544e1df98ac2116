"""The fake GitHub itself, against GitHub's documented behaviour.

Driven with plain ``requests`` and with the real PyGithub client, never with cml-bot code: these
tests prove the fake independently of what cml-bot does with it. Each one names the page (or the
observation) the behaviour comes from; ``fake_github.py`` and ``fake_github_routes.py`` quote them.
"""

from __future__ import annotations

import base64
import email.utils
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from fake_github import ACTIONS_BOT_ID, HEAD_SHA, TOKEN, FakeGitHub, fake_github, http_date
from fake_github_contract import check_request, check_response
from fake_github_routes import CONTENTS_FULL_LIMIT, CONTENTS_MAX, TREE_LIMIT, git_sha
from github import Auth, Github, GithubException, RateLimitExceededException

__all__ = ["fake_github"]  # the fixture, imported for pytest

REPO = "/repos/Codertocat/Hello-World"
GITHUB_TOKEN = "ghs_FAKE0ACTIONS0TOKEN0secret00000000"
APP_TOKEN = "ghs_FAKE0OTHER0APP0TOKEN0secret000000"
READ_ONLY = "ghs_FAKE0FORK0READONLY0token0secret000"
RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"


class Api:
    """Plain HTTP against the fake with one token, as curl would do it."""

    def __init__(self, fake: FakeGitHub, token: str = TOKEN) -> None:
        self.fake, self.headers = fake, {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}

    def __call__(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        url = path if path.startswith("http") else self.fake.url + path
        return requests.request(method, url, json=body, params=params or None, headers=self.headers, timeout=5)


def pygithub(fake: FakeGitHub, token: str = TOKEN) -> Github:
    return Github(base_url=fake.url, auth=Auth.Token(token), retry=None, per_page=100)


@pytest.fixture
def api(fake_github: FakeGitHub) -> Api:
    return Api(fake_github)


@pytest.fixture
def gh(fake_github: FakeGitHub) -> Iterator[Github]:
    client = pygithub(fake_github)
    yield client
    client.close()


def commit(fake: FakeGitHub, parents: list[str], files: dict[str, bytes] | None = None) -> str:
    """A commit in the fake's object store, as a push would leave it."""
    entries = {}
    for path, data in (files or {}).items():
        fake.blobs[git_sha("blob", data)] = data
        entries[path] = git_sha("blob", data)
    return fake.store_commit(fake.store_tree(entries), parents, "test")


# -- every exchange is checked against the contract ----------------------------------------


@pytest.mark.parametrize("kind", ["status", "drop", "drop-after", "before"])
def test_a_faulted_request_is_still_checked_against_the_contract(fake_github: FakeGitHub, api: Api, kind: str) -> None:
    ran: list[bool] = []
    fake_github.fail("POST", "/issues/2/comments$", kind, callback=lambda fake: ran.append(True))
    try:
        answer = api("POST", f"{REPO}/issues/2/comments", {"text": "no body"})
    except requests.ConnectionError:
        assert kind in ("drop", "drop-after")
    else:
        assert answer.status_code == (502 if kind == "status" else 400)
    assert len(fake_github.violations) == 1
    assert "'body' is a required property" in fake_github.violations[0]
    assert ran == ([True] if kind == "before" else [])
    assert fake_github.comments_on(2) == []
    fake_github.violations.clear()  # expected here; the fixture asserts none remain


def test_requests_outside_the_contract_are_violations(fake_github: FakeGitHub, api: Api) -> None:
    assert api("GET", f"{REPO}/labels").status_code == 404
    assert api("POST", f"{REPO}/statuses/{HEAD_SHA}", {"state": "done"}).status_code == 400
    assert len(fake_github.violations) == 2
    assert "no such endpoint" in fake_github.violations[0]
    assert "'done' is not one of ['error', 'failure', 'pending', 'success']" in fake_github.violations[1]
    fake_github.violations.clear()


def test_error_answers_are_checked_against_the_documented_error_schema() -> None:
    template = "/repos/{owner}/{repo}/issues/{issue_number}/comments"
    request, problem = check_request(f"{REPO}/issues/2/comments", "POST", [], [], b'{"body": "x"}', "application/json")
    assert problem is None
    # 422 is documented as validation-error: message and documentation_url required, errors a list
    good = {"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest", "errors": []}
    assert check_response(request, template, "POST", 422, good, {}) is None
    assert "'documentation_url' is a required property" in str(
        check_response(request, template, "POST", 422, {"message": "x"}, {})
    )
    # a status the contract does not list for the operation is held to basic-error
    assert check_response(request, template, "POST", 502, {"message": 7}, {}) is not None
    assert check_response(request, template, "POST", 502, {"message": "Server Error"}, {}) is None


# -- comments: anyone's may be edited with write access; a read-only token writes nothing ------


def test_a_write_token_edits_and_deletes_anyones_comment(fake_github: FakeGitHub, api: Api) -> None:
    """Repository roles: "Edit and delete anyone's comments on commits, pull requests, and issues"
    (Write, Maintain, Admin); the comment endpoints need Issues or Pull requests write, nothing more."""
    human = fake_github.add_comment(2, "a review remark", login="octocat")
    other_bot = fake_github.add_comment(2, "dependency update", login="renovate[bot]", type="Bot")
    for cid in (human, other_bot):
        answer = api("PATCH", f"{REPO}/issues/comments/{cid}", {"body": "edited"})
        assert answer.status_code == 200 and answer.json()["body"] == "edited"
        assert answer.json()["user"]["login"] in ("octocat", "renovate[bot]")  # the author stays the author
    assert api("DELETE", f"{REPO}/issues/comments/{human}").status_code == 204
    assert [c["body"] for c in fake_github.comments_on(2)] == ["edited"]


def test_the_actions_token_edits_another_bots_comment_through_pygithub(fake_github: FakeGitHub) -> None:
    fake_github.add_token(GITHUB_TOKEN, kind="github_token")
    cid = fake_github.add_comment(2, "<!-- marker -->\nsomeone else's report", login="other-app[bot]", type="Bot")
    client = pygithub(fake_github, GITHUB_TOKEN)
    comment = client.get_repo("Codertocat/Hello-World").get_issue(2).get_comment(cid)
    comment.edit("overwritten")
    assert fake_github.comments[cid]["body"] == "overwritten"
    comment.delete()
    assert cid not in fake_github.comments


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/issues/2/comments", {"body": "x"}),
        ("PATCH", "/issues/comments/{cid}", {"body": "x"}),
        ("DELETE", "/issues/comments/{cid}", None),
        ("POST", f"/statuses/{HEAD_SHA}", {"state": "success", "context": "ci"}),
        ("POST", "/git/blobs", {"content": "eA==", "encoding": "base64"}),
        ("POST", "/git/refs", {"ref": "refs/heads/new", "sha": "{tip}"}),
        ("PATCH", "/git/refs/heads/data", {"sha": "{tip}"}),
        ("PUT", "/contents/new.txt", {"message": "m", "content": "eA==", "branch": "data"}),
    ],
)
def test_a_read_only_token_is_refused_every_write(
    fake_github: FakeGitHub, method: str, path: str, body: dict[str, str] | None
) -> None:
    """A fork pull request's GITHUB_TOKEN is read-only (the GITHUB_TOKEN reference: "Maximum access for
    pull requests from public forked repositories": read for every scope)."""
    fake_github.add_token(READ_ONLY, kind="github_token", can_write=False)
    tip = fake_github.push_commit("data", {"a.txt": b"a"})
    cid = fake_github.add_comment(2, "ours", login="github-actions[bot]", type="Bot")
    filled = {k: v.format(tip=tip) for k, v in body.items()} if body else None
    answer = Api(fake_github, READ_ONLY)(method, REPO + path.format(cid=cid), filled)
    assert answer.status_code == 403
    assert answer.json()["message"] == "Resource not accessible by integration"
    assert answer.json()["documentation_url"].startswith("https://docs.github.com/rest/")
    assert fake_github.comments[cid]["body"] == "ours" and fake_github.refs["refs/heads/data"] == tip
    # reads work
    assert Api(fake_github, READ_ONLY)("GET", f"{REPO}/issues/2/comments").status_code == 200
    assert Api(fake_github, READ_ONLY)("GET", f"{REPO}/contents/a.txt", ref="data").status_code == 200


def test_a_read_only_token_through_pygithub(fake_github: FakeGitHub) -> None:
    fake_github.add_token(READ_ONLY, kind="github_token", can_write=False)
    issue = pygithub(fake_github, READ_ONLY).get_repo("Codertocat/Hello-World").get_issue(2)
    with pytest.raises(GithubException) as info:
        issue.create_comment("x")
    assert info.value.status == 403 and info.value.data["message"] == "Resource not accessible by integration"


# -- identities ----------------------------------------------------------------------------


def test_get_user_answers_a_users_token(fake_github: FakeGitHub, api: Api, gh: Github) -> None:
    answer = api("GET", "/user")
    assert answer.status_code == 200 and answer.json()["login"] == "cml-bot-user"
    assert gh.get_user().login == "cml-bot-user"


@pytest.mark.parametrize("kind", ["github_token", "app"])
def test_get_user_refuses_installation_tokens(fake_github: FakeGitHub, kind: str) -> None:
    """Get the authenticated user works with user access tokens and fine-grained PATs, not installation
    tokens (docs.github.com/en/rest/users/users; the contract: "enabledForGitHubApps": false)."""
    fake_github.add_token(GITHUB_TOKEN, kind=kind, app_slug="my-review-app")
    answer = Api(fake_github, GITHUB_TOKEN)("GET", "/user")
    assert answer.status_code == 403
    assert answer.json() == {
        "message": "Resource not accessible by integration",
        "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user",
        "status": "403",
    }
    with pytest.raises(GithubException) as info:
        _ = pygithub(fake_github, GITHUB_TOKEN).get_user().login
    assert info.value.status == 403


@pytest.mark.parametrize(
    ("kind", "login", "user_type", "user_id"),
    [
        ("pat", "cml-bot-user", "User", None),
        ("github_token", "github-actions[bot]", "Bot", ACTIONS_BOT_ID),
        ("app", "my-review-app[bot]", "Bot", None),
    ],
)
def test_a_comment_is_authored_by_the_tokens_identity(
    fake_github: FakeGitHub, kind: str, login: str, user_type: str, user_id: int | None
) -> None:
    """An installation token acts as the app's bot account ("An installation token identifies the app
    as a GitHub App bot account, such as @jenkins[bot]"); GITHUB_TOKEN is the Actions app's."""
    account = fake_github.add_token("t0ken-" + kind, kind=kind, app_slug="my-review-app")
    comment = pygithub(fake_github, "t0ken-" + kind).get_repo("Codertocat/Hello-World").get_issue(2).create_comment("x")
    assert (comment.user.login, comment.user.type, comment.user.id) == (login, user_type, user_id or account.id)
    assert fake_github.comments[comment.id]["login"] == login


def test_the_old_add_token_calls_keep_their_meaning(fake_github: FakeGitHub) -> None:
    old_bot = fake_github.add_token("a", "github-actions[bot]", type="Bot", can_write=False, can_read_user=False)
    assert (old_bot.kind, old_bot.id, old_bot.can_write, old_bot.can_read_user) == (
        "github_token",
        ACTIONS_BOT_ID,
        False,
        False,
    )
    writer = fake_github.add_token("b", "github-actions[bot]", type="Bot", can_read_user=False)
    assert (writer.kind, writer.can_write) == ("github_token", True)
    user = fake_github.add_token("c", can_write=False)
    assert (user.kind, user.login, user.can_read_user, user.can_write) == ("pat", "cml-bot-user", True, False)
    assert Api(fake_github, "c")("POST", f"{REPO}/issues/2/comments", {"body": "x"}).json()["message"] == (
        "Resource not accessible by personal access token"
    )


# -- rate limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_rate_limit(fake_github: FakeGitHub, api: Api, gh: Github, status: int) -> None:
    """The rate-limit page: "you will receive a 403 or 429 response and an error message that indicates
    that you exceeded a secondary rate limit. If the retry-after response header is present, you should
    not retry your request until after that many seconds has elapsed." """
    fake_github.secondary_limit("POST", "/comments$", status=status, retry_after=30, times=2)
    answer = api("POST", f"{REPO}/issues/2/comments", {"body": "x"})
    assert answer.status_code == status and answer.headers["Retry-After"] == "30"
    assert answer.json()["message"].startswith("You have exceeded a secondary rate limit")
    assert answer.json()["documentation_url"] == RATE_DOCS
    assert fake_github.comments_on(2) == []  # nothing was done
    with pytest.raises(GithubException) as info:
        gh.get_repo("Codertocat/Hello-World").get_issue(2).create_comment("x")
    assert info.value.status == status and info.value.headers["retry-after"] == "30"
    if status == 403:  # PyGithub knows GitHub's wording
        assert isinstance(info.value, RateLimitExceededException)


def test_retry_after_may_be_an_http_date(fake_github: FakeGitHub, api: Api) -> None:
    """RFC 9110 allows Retry-After as an HTTP-date; GitHub documents seconds only (noted in http_date)."""
    fake_github.secondary_limit("GET", "/comments$", retry_after=http_date(120))
    answer = api("GET", f"{REPO}/issues/2/comments")
    moment = email.utils.parsedate_to_datetime(answer.headers["Retry-After"])
    assert 110 <= (moment - datetime.now(timezone.utc)).total_seconds() <= 121


@pytest.mark.parametrize("status", [403, 429])
def test_a_primary_rate_limit_fault(fake_github: FakeGitHub, api: Api, status: int) -> None:
    """ "If you exceed your primary rate limit, you will receive a 403 or 429 response, and the
    x-ratelimit-remaining header will be 0 ... x-ratelimit-reset header ... in UTC epoch seconds." """
    fake_github.primary_limit("GET", "/comments$", status=status, reset_in=90)
    answer = api("GET", f"{REPO}/issues/2/comments")
    assert answer.status_code == status and answer.headers["x-ratelimit-remaining"] == "0"
    assert time.time() + 80 < int(answer.headers["x-ratelimit-reset"]) <= time.time() + 91
    assert answer.json()["message"].startswith("API rate limit exceeded")


def test_the_primary_rate_limit_is_counted_per_token(fake_github: FakeGitHub, gh: Github) -> None:
    account = fake_github.add_token(GITHUB_TOKEN, kind="github_token")
    ok = Api(fake_github, GITHUB_TOKEN)("GET", f"{REPO}/issues/2/comments")
    assert ok.headers["x-ratelimit-limit"] == "1000"  # "1,000 requests per hour per repository" for GITHUB_TOKEN
    assert (ok.headers["x-ratelimit-remaining"], ok.headers["x-ratelimit-used"]) == ("999", "1")
    assert int(ok.headers["x-ratelimit-reset"]) > time.time()
    account.used = account.limit - 1
    assert Api(fake_github, GITHUB_TOKEN)("GET", f"{REPO}/issues/2/comments").headers["x-ratelimit-remaining"] == "0"
    refused = Api(fake_github, GITHUB_TOKEN)("GET", f"{REPO}/issues/2/comments")
    assert refused.status_code == 403 and refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.json()["message"] == f"API rate limit exceeded for installation ID {ACTIONS_BOT_ID}."
    fake_github.accounts[TOKEN].used = 5000  # the PAT's own window is spent too
    with pytest.raises(RateLimitExceededException):
        list(gh.get_repo("Codertocat/Hello-World").get_issue(2).get_comments())


# -- git references ------------------------------------------------------------------------


def test_a_ref_update_that_is_not_a_fast_forward_is_422(fake_github: FakeGitHub, api: Api, gh: Github) -> None:
    base = commit(fake_github, [])
    ours, theirs = commit(fake_github, [base], {"a": b"1"}), commit(fake_github, [base], {"b": b"2"})
    fake_github.refs["refs/heads/data"] = ours
    answer = api("PATCH", f"{REPO}/git/refs/heads/data", {"sha": theirs, "force": False})
    assert answer.status_code == 422 and answer.json()["message"] == "Update is not a fast forward"
    assert answer.json()["documentation_url"] == "https://docs.github.com/rest/git/refs#update-a-reference"
    ref = gh.get_repo("Codertocat/Hello-World").get_git_ref("heads/data")
    with pytest.raises(GithubException) as info:
        ref.edit(theirs)
    assert info.value.status == 422
    ref.edit(theirs, force=True)
    assert fake_github.refs["refs/heads/data"] == theirs
    on_top = commit(fake_github, [theirs])
    assert api("PATCH", f"{REPO}/git/refs/heads/data", {"sha": on_top}).status_code == 200


def test_creating_an_existing_ref_is_422(fake_github: FakeGitHub, api: Api, gh: Github) -> None:
    tip = fake_github.push_commit("data", {"a": b"a"})
    answer = api("POST", f"{REPO}/git/refs", {"ref": "refs/heads/data", "sha": tip})
    assert answer.status_code == 422 and answer.json()["message"] == "Reference already exists"
    with pytest.raises(GithubException) as info:
        gh.get_repo("Codertocat/Hello-World").create_git_ref("refs/heads/data", tip)
    assert info.value.status == 422
    assert gh.get_repo("Codertocat/Hello-World").create_git_ref("refs/heads/other", tip).ref == "refs/heads/other"


def test_an_empty_repository_answers_409_until_a_contents_put(fake_github: FakeGitHub, api: Api) -> None:
    """ "The REST API will return a 409 Conflict if the Git repository is empty or unavailable ... For an
    empty repository, you can use the PUT /repos/{owner}/{repo}/contents/{path} REST API endpoint to create
    content and initialize the repository" (Using the REST API to interact with your Git database)."""
    fake_github.empty_repository = True
    for method, path, body in [
        ("POST", "/git/blobs", {"content": "x"}),
        ("GET", "/git/ref/heads/master", None),
        ("POST", "/git/refs", {"ref": "refs/heads/x", "sha": "0" * 40}),
        ("GET", f"/commits/{HEAD_SHA}/pulls", None),
    ]:
        answer = api(method, REPO + path, body)
        assert (answer.status_code, answer.json()["message"]) == (409, "Git Repository is empty."), path
    created = api("PUT", f"{REPO}/contents/README.md", {"message": "init", "content": "aGk="})
    assert created.status_code == 201
    assert api("POST", f"{REPO}/git/blobs", {"content": "x"}).status_code == 201
    assert fake_github.commit_files("master") == {"README.md": b"hi"}


def test_injected_409s_carry_githubs_messages(fake_github: FakeGitHub, api: Api) -> None:
    tip = fake_github.push_commit("data", {"a.txt": b"a"})
    fake_github.conflict("PATCH", "/git/refs/heads/")
    answer = api("PATCH", f"{REPO}/git/refs/heads/data", {"sha": tip})
    assert (answer.status_code, answer.json()["message"]) == (409, "Git Repository is empty.")
    blob = fake_github.trees[fake_github.commits[tip]["tree"]]["a.txt"]
    fake_github.conflict("PUT", "/contents/")
    answer = api("PUT", f"{REPO}/contents/a.txt", {"message": "m", "content": "Yg==", "sha": blob, "branch": "data"})
    assert answer.status_code == 409
    assert answer.json()["message"].startswith(f"refs/heads/data is at {tip} but expected ")
    assert fake_github.refs["refs/heads/data"] == tip  # nothing was written


# -- contents ------------------------------------------------------------------------------


def test_contents_put_checks_the_files_sha(fake_github: FakeGitHub, api: Api, gh: Github) -> None:
    """``sha`` is "Required if you are updating a file. The blob SHA of the file being replaced." Observed
    answers: a stale sha 409 "<path> does not match <sha>", none 422, a sha for a new file ignored."""
    fake_github.push_commit("data", {"a.txt": b"one"})
    stale = git_sha("blob", b"older")
    put = {"message": "m", "content": base64.b64encode(b"two").decode(), "branch": "data"}
    answer = api("PUT", f"{REPO}/contents/a.txt", {**put, "sha": stale})
    assert (answer.status_code, answer.json()["message"]) == (409, f"a.txt does not match {stale}")
    answer = api("PUT", f"{REPO}/contents/a.txt", put)
    assert (answer.status_code, answer.json()["message"]) == (422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
    assert api("PUT", f"{REPO}/contents/new.txt", {**put, "sha": stale}).status_code == 201
    answer = api("DELETE", f"{REPO}/contents/a.txt", {"message": "m", "sha": stale, "branch": "data"})
    assert answer.status_code == 409
    assert (
        api("DELETE", f"{REPO}/contents/gone.txt", {"message": "m", "sha": stale, "branch": "data"}).status_code == 404
    )
    repo = gh.get_repo("Codertocat/Hello-World")
    with pytest.raises(GithubException) as info:
        repo.update_file("a.txt", "m", b"two", stale, branch="data")
    assert info.value.status == 409
    current = repo.get_contents("a.txt", ref="data")
    assert not isinstance(current, list)
    repo.update_file("a.txt", "m", b"two", current.sha, branch="data")
    assert fake_github.commit_files("data")["a.txt"] == b"two"


@pytest.mark.parametrize(
    ("size", "status", "encoding"),
    [(CONTENTS_FULL_LIMIT, 200, "base64"), (CONTENTS_FULL_LIMIT + 1, 200, "none"), (CONTENTS_MAX + 1, 403, None)],
)
def test_contents_reads_follow_the_size_rules(
    fake_github: FakeGitHub, api: Api, size: int, status: int, encoding: str | None
) -> None:
    """ "1 MB or smaller: All features ... Between 1-100 MB: ... the content field will be an empty string
    and the encoding field will be "none". Greater than 100 MB: This endpoint is not supported." """
    assert (CONTENTS_FULL_LIMIT, CONTENTS_MAX) == (1024 * 1024, 100 * 1024 * 1024)
    data = b"x" * size
    fake_github.push_commit("data", {"big.bin": data})
    answer = api("GET", f"{REPO}/contents/big.bin", ref="data")
    assert answer.status_code == status
    if status == 403:
        assert answer.json()["errors"] == [{"resource": "Blob", "field": "data", "code": "too_large"}]
        return
    got = answer.json()
    assert (got["encoding"], got["size"], got["sha"]) == (encoding, size, git_sha("blob", data))
    assert base64.b64decode(got["content"]) == (data if encoding == "base64" else b"")


def test_contents_through_pygithub(fake_github: FakeGitHub, gh: Github) -> None:
    fake_github.push_commit("data", {"small.txt": b"hello", "big.bin": b"y" * (CONTENTS_FULL_LIMIT + 1)})
    repo = gh.get_repo("Codertocat/Hello-World")
    small, big = repo.get_contents("small.txt", ref="data"), repo.get_contents("big.bin", ref="data")
    assert not isinstance(small, list) and not isinstance(big, list)
    assert small.decoded_content == b"hello"
    assert (big.encoding, big.content, big.size) == ("none", "", CONTENTS_FULL_LIMIT + 1)


# -- pull requests of a commit -------------------------------------------------------------


def test_commit_pulls_lists_every_pull_request_holding_the_commit(
    fake_github: FakeGitHub, api: Api, gh: Github
) -> None:
    """ "If the commit is not present in the default branch, it will return merged and open pull requests
    associated with the commit" (Commits: List pull requests associated with a commit)."""
    a, b = fake_github.add_commit("a" * 40, []), fake_github.add_commit("b" * 40, ["a" * 40])
    fake_github.add_pull(10, a, head_ref="part-1")  # the commit is this one's head
    fake_github.add_pull(11, b, head_ref="part-2", base_ref="part-1", commits=[a, b])  # stacked on it
    fake_github.add_pull(12, b, head_ref="all", commits=[a, b], state="closed", merged=True)
    fake_github.add_pull(13, a, head_ref="abandoned", state="closed")
    fake_github.add_pull(14, a, head_ref="forked", fork=True)  # open fork PRs are not listed
    fake_github.add_pull(15, "c" * 40)
    listed = {p["number"]: p for p in api("GET", f"{REPO}/commits/{a}/pulls").json()}
    assert set(listed) == {10, 11, 12, 13}
    assert [(listed[n]["state"], listed[n]["head"]["sha"], listed[n]["head"]["ref"]) for n in (10, 11)] == [
        ("open", a, "part-1"),
        ("open", b, "part-2"),
    ]
    assert listed[11]["base"]["ref"] == "part-1" and listed[10]["base"]["ref"] == "master"
    assert listed[12]["merged_at"] is not None and listed[13]["merged_at"] is None
    pulls = gh.get_repo("Codertocat/Hello-World").get_commit(a).get_pulls()
    assert sorted(p.number for p in pulls) == [10, 11, 12, 13]
    assert [p.number for p in gh.get_repo("Codertocat/Hello-World").get_commit(b).get_pulls()] == [12, 11]


def test_commit_pulls_accepts_a_branch_name(fake_github: FakeGitHub, api: Api) -> None:
    """ "To list the open or merged pull requests associated with a branch, you can set the commit_sha
    parameter to the branch name." """
    tip = fake_github.push_commit("feature/x", {"a": b"a"})
    fake_github.add_pull(20, tip, head_ref="feature/x")
    assert [p["number"] for p in api("GET", f"{REPO}/commits/feature%2Fx/pulls").json()] == [20]


# -- pagination ----------------------------------------------------------------------------


def test_pages_hold_at_most_100_and_link_through_repository_ids(fake_github: FakeGitHub, api: Api) -> None:
    """per_page: "The number of results per page (max 100)"; GitHub's Link URLs name the repository by id."""
    ids = [fake_github.add_comment(2, f"c{i}") for i in range(250)]
    page = api("GET", f"{REPO}/issues/2/comments", per_page=500)
    assert len(page.json()) == 100
    seen, url = [c["id"] for c in page.json()], page.links["next"]["url"]
    assert f"/repositories/{fake_github.repo_id}/issues/2/comments?" in url
    while True:
        page = api("GET", url)
        seen += [c["id"] for c in page.json()]
        if "next" not in page.links:
            break
        url = page.links["next"]["url"]
    assert seen == ids  # "ordered by ascending ID"
    assert api("GET", f"{REPO}/issues/2/comments").links["last"]["url"].endswith("page=9")  # 30 by default


def test_pygithub_follows_the_pages(fake_github: FakeGitHub, gh: Github) -> None:
    ids = [fake_github.add_comment(2, f"c{i}") for i in range(250)]
    comments = gh.get_repo("Codertocat/Hello-World").get_issue(2).get_comments()
    assert [c.id for c in comments] == ids
    assert len(fake_github.requests("GET", f"^/repositories/{fake_github.repo_id}/issues/2/comments")) == 2


# -- documented limits ---------------------------------------------------------------------


def test_a_comment_body_holds_65536_characters(fake_github: FakeGitHub, api: Api, gh: Github) -> None:
    assert api("POST", f"{REPO}/issues/2/comments", {"body": "é" * 65536}).status_code == 201
    answer = api("POST", f"{REPO}/issues/2/comments", {"body": "x" * 65537})
    assert answer.status_code == 422 and answer.json()["message"] == "Validation Failed"
    assert answer.json()["errors"] == [
        {
            "resource": "IssueComment",
            "code": "unprocessable",
            "field": "data",
            "message": "Body is too long (maximum is 65536 characters)",
        }
    ]
    [cid] = fake_github.comments
    edit = api("PATCH", f"{REPO}/issues/comments/{cid}", {"body": "x" * 65537})
    assert (
        edit.status_code == 422
        and edit.json()["errors"][0]["message"] == "body is too long (maximum is 65536 characters)"
    )
    with pytest.raises(GithubException) as info:
        gh.get_repo("Codertocat/Hello-World").get_issue(2).create_comment("x" * 65537)
    assert info.value.status == 422


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"description": "d" * 140}, None),
        ({"description": "d" * 141}, "description is too long (maximum is 140 characters)"),
        ({"context": "c" * 255}, None),
        ({"context": "c" * 256}, "context is too long (maximum is 255 characters)"),
        ({"target_url": "https://ci.example/run/1"}, None),
        ({"target_url": "ftp://ci.example/run/1"}, "target_url must use http(s) scheme"),
    ],
)
def test_commit_status_limits(fake_github: FakeGitHub, api: Api, change: dict[str, str], problem: str | None) -> None:
    answer = api("POST", f"{REPO}/statuses/{HEAD_SHA}", {"state": "success", "context": "ci", **change})
    if problem is None:
        assert answer.status_code == 201 and answer.json()["creator"]["login"] == "cml-bot-user"
    else:
        assert answer.status_code == 422 and answer.json()["errors"][0]["message"] == problem
        assert fake_github.statuses == []


def test_1000_statuses_per_sha_and_context(fake_github: FakeGitHub, api: Api) -> None:
    """ "there is a limit of 1000 statuses per sha and context within a repository" (Create a commit status)."""
    fake_github.statuses += [{"sha": HEAD_SHA, "state": "success", "context": "ci"}] * 1000
    answer = api("POST", f"{REPO}/statuses/{HEAD_SHA}", {"state": "success", "context": "CI"})  # case-insensitive
    assert answer.status_code == 422
    assert api("POST", f"{REPO}/statuses/{HEAD_SHA}", {"state": "success", "context": "other"}).status_code == 201


def test_a_tree_listing_is_truncated_past_the_limit(fake_github: FakeGitHub, api: Api) -> None:
    """ "If truncated is true ... the number of items in the tree array exceeded our maximum limit ... 100,000
    entries" (Git trees). Tested with the limit lowered: 100,000 entries would only slow the test."""
    assert fake_github.tree_limit == TREE_LIMIT == 100_000
    tip = fake_github.push_commit("data", {f"d/{i}.txt": b"%d" % i for i in range(4)})
    tree = fake_github.commits[tip]["tree"]
    assert api("GET", f"{REPO}/git/trees/{tree}", recursive="1").json()["truncated"] is False
    fake_github.tree_limit = 3
    listing = api("GET", f"{REPO}/git/trees/{tree}", recursive="1").json()
    assert listing["truncated"] is True and len(listing["tree"]) == 3


# -- faults --------------------------------------------------------------------------------


def test_a_status_fault_answers_and_does_nothing(fake_github: FakeGitHub, api: Api) -> None:
    fake_github.fail("POST", "/comments$", status=503, headers={"Retry-After": "7"})
    answer = api("POST", f"{REPO}/issues/2/comments", {"body": "x"})
    assert (answer.status_code, answer.json()["message"], answer.headers["Retry-After"]) == (
        503,
        "Service Unavailable",
        "7",
    )
    assert fake_github.comments_on(2) == []
    assert api("POST", f"{REPO}/issues/2/comments", {"body": "x"}).status_code == 201  # times=1: spent


def test_a_drop_before_handling_has_no_effect(fake_github: FakeGitHub, api: Api) -> None:
    fake_github.fail("POST", "/comments$", "drop")
    with pytest.raises(requests.ConnectionError):
        api("POST", f"{REPO}/issues/2/comments", {"body": "x"})
    assert fake_github.comments_on(2) == [] and fake_github.requests("POST")[0][2] == "drop"


def test_a_drop_after_handling_keeps_the_effect(fake_github: FakeGitHub, api: Api) -> None:
    """The write happened but its answer was lost: the client cannot tell ("may have been applied")."""
    fake_github.fail("POST", "/comments$", "drop-after")
    with pytest.raises(requests.ConnectionError):
        api("POST", f"{REPO}/issues/2/comments", {"body": "x"})
    assert [c["body"] for c in fake_github.comments_on(2)] == ["x"]


def test_a_callback_runs_before_handling(fake_github: FakeGitHub, api: Api) -> None:
    tip = fake_github.push_commit("data", {"a": b"a"})
    moved = commit(fake_github, [tip])
    fake_github.fail("PATCH", "/git/refs/", "before", callback=lambda fake: fake.push_commit("data", {"b": b"b"}))
    answer = api("PATCH", f"{REPO}/git/refs/heads/data", {"sha": moved})  # the branch moved just before
    assert answer.status_code == 422 and answer.json()["message"] == "Update is not a fast forward"


def test_a_fault_may_match_one_page(fake_github: FakeGitHub, api: Api) -> None:
    for i in range(150):
        fake_github.add_comment(2, f"c{i}")
    fake_github.fail("GET", "/issues/2/comments$", status=502, query=r"(^|&)page=2(&|$)")
    assert api("GET", f"{REPO}/issues/2/comments", per_page=100).status_code == 200
    assert api("GET", f"{REPO}/issues/2/comments", per_page=100, page=2).status_code == 502
    assert api("GET", f"{REPO}/issues/2/comments", per_page=100, page=2).status_code == 200
