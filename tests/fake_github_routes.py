"""The endpoints of the fake GitHub: one handler per operation of the contract that cml-bot uses.

Each handler gets the fake (its state, under its lock), the account of the token, the path
parameters, the query and the JSON body, and returns a :class:`Result` or raises :class:`Reply`
with an error. Answers start from the contract's own examples with ids, urls and bodies overwritten
from the state. Each behaviour that is not plain storage cites the GitHub page it follows; facts
that no GitHub page states are marked "observed" (with where) or "unconfirmed".
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fake_github_contract import example

if TYPE_CHECKING:
    from fake_github import Account, FakeGitHub

R = "/repos/{owner}/{repo}"

COMMENT_LIMIT = 65536
"""Characters in an issue comment body. No REST page states it; GitHub answers 422 "Body is too long
(maximum is 65536 characters)" (observed: danger/danger#424, suzuki-shunsuke/github-comment#124).
A GitHub staff answer (github.com/orgs/community/discussions/27190) puts the stored limit at 262,144
bytes, "65,536 4-byte unicode characters": unconfirmed whether GitHub accepts longer ASCII bodies.
The fake enforces the limit GitHub's message states, which is what a client must plan for."""

STATUS_DESCRIPTION_LIMIT = 140  # observed 422 "description is too long (maximum is 140 characters)"
STATUS_CONTEXT_LIMIT = 255  # observed 422 (runatlantis/atlantis#2506, #6541); the message text is unconfirmed
STATUSES_PER_CONTEXT = 1000
"""docs.github.com/en/rest/commits/statuses#create-a-commit-status: "there is a limit of 1000 statuses per
sha and context within a repository. Attempts to create more than 1000 statuses will result in a
validation error." """

CONTENTS_FULL_LIMIT = 1024 * 1024
CONTENTS_MAX = 100 * 1024 * 1024
"""docs.github.com/en/rest/repos/contents#get-repository-content: "1 MB or smaller: All features of this
endpoint are supported. Between 1-100 MB: ... the content field will be an empty string and the encoding
field will be "none". Greater than 100 MB: This endpoint is not supported." """

TREE_LIMIT = 100_000
"""docs.github.com/en/rest/git/trees#get-a-tree: "If truncated is true in the response then the number of
items in the tree array exceeded our maximum limit ... The limit for the tree array is 100,000 entries
with a maximum size of 7 MB when using the recursive parameter." (The 7 MB size limit is not modelled.)"""

EMPTY_REPOSITORY = "Git Repository is empty."
"""docs.github.com/en/rest/guides/using-the-rest-api-to-interact-with-your-git-database: "The REST API will
return a 409 Conflict if the Git repository is empty or unavailable. An unavailable repository typically
means GitHub is in the process of creating the repository." The message is observed (github/rest-api-
description#385)."""


@dataclass
class Result:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class Reply(Exception):
    """An error answer; ``documentation_url`` is filled in with the operation's page if left out."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def error(status: int, message: str, **extra: Any) -> Reply:
    """GitHub's error body: ``message``, ``documentation_url`` (added by the dispatcher), ``status``."""
    return Reply(status, {"message": message, **extra, "status": str(status)})


def validation_failed(resource: str, field_name: str | None, code: str, message: str) -> Reply:
    """422 with GitHub's ``validation-error`` body (one entry in ``errors``)."""
    entry = {"resource": resource, "code": code, "message": message}
    if field_name is not None:
        entry["field"] = field_name
    return error(422, "Validation Failed", errors=[entry])


def git_sha(kind: str, data: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


Handler = Callable[["FakeGitHub", "Account", dict[str, str], dict[str, str], Any], Result]
_SLASHED = ("ref", "path", "basehead", "branch", "commit_sha", "sha")  # parameters that may hold '/'


@dataclass
class Route:
    method: str
    template: str
    handler: Handler
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        pattern = re.sub(
            r"\{(\w+)\}",
            lambda m: f"(?P<{m.group(1)}>.+)" if m.group(1) in _SLASHED else f"(?P<{m.group(1)}>[^/]+)",
            self.template,
        )
        self.regex = re.compile(f"^{pattern}$")

    def spec_path(self, params: dict[str, str]) -> str:
        """The path with each parameter percent-encoded, as the contract checker matches it."""
        return re.sub(r"\{(\w+)\}", lambda m: urllib.parse.quote(params[m.group(1)], safe=""), self.template)


ROUTES: list[Route] = []


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append(Route(method, template, fn))
        return fn

    return register


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for candidate in ROUTES:
        if candidate.method != method:
            continue
        match = candidate.regex.match(path)
        if match:
            return candidate, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
    return None


def _require_git_database(fake: FakeGitHub) -> None:
    if fake.empty_repository:
        raise error(409, EMPTY_REPOSITORY)


# -- the user --------------------------------------------------------------------------------


@route("GET", "/user")
def _get_user(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    # docs.github.com/en/rest/users/users#get-the-authenticated-user works with "GitHub App user access
    # tokens" and "Fine-grained personal access tokens", not installation tokens; the contract marks it
    # "enabledForGitHubApps": false. GITHUB_TOKEN "is a GitHub App installation access token"
    # (docs.github.com/en/actions/concepts/security/github_token). Observed answer for it:
    # 403 "Resource not accessible by integration" (actions/create-github-app-token#258).
    if not account.can_read_user:
        raise error(403, "Resource not accessible by integration")
    user = example("/user", "GET", 200)
    user["user_view_type"] = "private"  # as GitHub sends it; the example alone matches both oneOf branches
    user.update(login=account.login, id=account.id, type=account.type, url=fake.api(f"/users/{account.login}"))
    return Result(200, user)


# -- the repository and its issues -----------------------------------------------------------


@route("GET", R)
def _get_repo(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    out = example(R, "GET", 200)
    out.update(
        id=fake.repo_id,
        name=fake.name,
        full_name=fake.full_name,
        default_branch=fake.default_branch,
        url=fake.repo_api(),
        html_url=fake.html(),
        language=None,  # required by the schema, missing from the example
    )
    if isinstance(out.get("source"), dict):
        out["source"].setdefault("language", None)
    out["owner"] = dict(out["owner"], login=fake.owner, url=fake.api(f"/users/{fake.owner}"))
    return Result(200, out)


@route("GET", R + "/issues/{issue_number}")
def _get_issue(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    number = int(p["issue_number"])
    if number not in fake.pulls:
        raise error(404, "Not Found")
    out = example(R + "/issues/{issue_number}", "GET", 200)
    out.update(
        number=number,
        state="open" if fake.pulls[number]["state"] == "open" else "closed",
        url=fake.repo_api(f"/issues/{number}"),
        html_url=fake.html(f"/pull/{number}"),
        comments_url=fake.repo_api(f"/issues/{number}/comments"),
        comments=len(fake.comments_on(number)),
    )
    return Result(200, out)


# -- issue comments --------------------------------------------------------------------------


@route("GET", R + "/issues/{issue_number}/comments")
def _list_comments(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    issue = int(p["issue_number"])
    if issue not in fake.pulls:
        raise error(404, "Not Found")
    # "By default, issue comments are ordered by ascending ID." (docs.github.com/en/rest/issues/comments)
    ids = [cid for cid, c in sorted(fake.comments.items()) if c["issue"] == issue]
    template = example(R + "/issues/{issue_number}/comments", "GET", 200)[0]
    page, headers = fake.paginate(ids, q, f"/issues/{issue}/comments")
    return Result(200, [fake.comment_json(cid, template) for cid in page], headers)


def _check_comment_length(body: str, *, created: bool) -> None:
    # The two endpoints spell the refusal differently (observed: objectstack-ai/objectstack#18934 for the
    # create side, suzuki-shunsuke/github-comment#124 for the edit side).
    if len(body) <= COMMENT_LIMIT:
        return
    if created:
        raise validation_failed(
            "IssueComment", "data", "unprocessable", "Body is too long (maximum is 65536 characters)"
        )
    raise validation_failed("IssueComment", "body", "custom", "body is too long (maximum is 65536 characters)")


@route("POST", R + "/issues/{issue_number}/comments")
def _create_comment(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    issue = int(p["issue_number"])
    if issue not in fake.pulls:
        raise error(404, "Not Found")
    _check_comment_length(b["body"], created=True)
    # The author is the token's identity: the PAT's user, or the app's bot for an installation token
    # ("An installation token identifies the app as a GitHub App bot account, such as @jenkins[bot]":
    # docs.github.com/en/apps/oauth-apps/building-oauth-apps/differences-between-github-apps-and-oauth-apps).
    cid = fake.add_comment(issue, b["body"], account.login, account.type, user_id=account.id)
    body = fake.comment_json(cid, example(R + "/issues/{issue_number}/comments", "POST", 201))
    return Result(201, body, {"Location": body["url"]})


@route("GET", R + "/issues/comments/{comment_id}")
def _get_comment(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    cid = int(p["comment_id"])
    if cid not in fake.comments:
        raise error(404, "Not Found")
    return Result(200, fake.comment_json(cid, example(R + "/issues/comments/{comment_id}", "GET", 200)))


# Editing and deleting: ANY comment of the repository, whoever wrote it, given write access.
# docs.github.com/en/organizations/managing-user-access-to-your-organizations-repositories/
# managing-repository-roles/repository-roles-for-an-organization: "Edit and delete anyone's comments on
# commits, pull requests, and issues" is granted to Write, Maintain and Admin. For tokens,
# docs.github.com/en/rest/issues/comments#update-an-issue-comment (and #delete-an-issue-comment) work with
# installation tokens and need "Issues" or "Pull requests" repository permission (write); nothing there
# restricts them to the token's own comments. (A read-only token is refused before this: see dispatch.)


@route("PATCH", R + "/issues/comments/{comment_id}")
def _update_comment(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    cid = int(p["comment_id"])
    comment = fake.comments.get(cid)
    if comment is None:
        raise error(404, "Not Found")
    _check_comment_length(b["body"], created=False)
    comment["body"] = b["body"]
    comment["updated"] = fake.tick()
    return Result(200, fake.comment_json(cid, example(R + "/issues/comments/{comment_id}", "PATCH", 200)))


@route("DELETE", R + "/issues/comments/{comment_id}")
def _delete_comment(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    cid = int(p["comment_id"])
    if cid not in fake.comments:
        raise error(404, "Not Found")
    del fake.comments[cid]
    return Result(204)


# -- pull requests ---------------------------------------------------------------------------


def _pull_json(fake: FakeGitHub, number: int, template: dict[str, Any]) -> dict[str, Any]:
    pull = fake.pulls[number]
    out = copy.deepcopy(template)
    out.update(
        number=number,
        state=pull["state"],
        url=fake.repo_api(f"/pulls/{number}"),
        html_url=fake.html(f"/pull/{number}"),
        issue_url=fake.repo_api(f"/issues/{number}"),
        comments_url=fake.repo_api(f"/issues/{number}/comments"),
        merged_at="2011-01-26T19:01:12Z" if pull["merged"] else None,
    )
    head_owner = pull["head_owner"]
    out["head"] = dict(
        out["head"], sha=pull["head_sha"], ref=pull["head_ref"], label=f"{head_owner}:{pull['head_ref']}"
    )
    base_sha = fake.refs.get(f"refs/heads/{pull['base_ref']}", out["base"]["sha"])
    out["base"] = dict(out["base"], sha=base_sha, ref=pull["base_ref"], label=f"{fake.owner}:{pull['base_ref']}")
    if "merged" in out:
        out["merged"] = pull["merged"]
    for team in out.get("requested_teams") or []:
        team.setdefault("type", "organization")  # required by the schema, missing from the example
    return out


@route("GET", R + "/commits/{commit_sha}/pulls")
def _commit_pulls(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    # docs.github.com/en/rest/commits/commits#list-pull-requests-associated-with-a-commit: "Lists the merged
    # pull request that introduced the commit to the repository. If the commit is not present in the
    # default branch, it will return merged and open pull requests associated with the commit. To list the
    # open or merged pull requests associated with a branch, you can set the commit_sha parameter to the
    # branch name." So: EVERY pull request holding the commit, several open ones with stacked branches.
    # Observed beyond the docs: closed (unmerged) ones are listed too (github/docs#21701), open ones from
    # forks are not (google/go-github#2241). The order is unconfirmed; the fake lists newest first.
    _require_git_database(fake)
    sha = fake.refs.get(f"refs/heads/{p['commit_sha']}", p["commit_sha"])
    numbers = [
        n
        for n, pull in sorted(fake.pulls.items(), reverse=True)
        if sha in pull["commits"] and not (pull["fork"] and not pull["merged"])
    ]
    template = example(R + "/commits/{commit_sha}/pulls", "GET", 200)[0]
    page, headers = fake.paginate(numbers, q, f"/commits/{p['commit_sha']}/pulls")
    return Result(200, [_pull_json(fake, n, template) for n in page], headers)


@route("GET", R + "/pulls/{pull_number}")
def _get_pull(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    number = int(p["pull_number"])
    if number not in fake.pulls:
        raise error(404, "Not Found")
    return Result(200, _pull_json(fake, number, example(R + "/pulls/{pull_number}", "GET", 200)))


# -- commit statuses -------------------------------------------------------------------------


@route("POST", R + "/statuses/{sha}")
def _create_status(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    # The states are the contract's enum (error, failure, pending, success): another is a contract
    # violation. The limits below are observed answers (GitHub's REST page states only the 1000 limit).
    description, context = b.get("description") or "", b.get("context", "default")
    target_url = b.get("target_url")
    if len(description) > STATUS_DESCRIPTION_LIMIT:
        raise validation_failed(
            "Status", "description", "custom", "description is too long (maximum is 140 characters)"
        )
    if len(context) > STATUS_CONTEXT_LIMIT:
        raise validation_failed("Status", "context", "custom", "context is too long (maximum is 255 characters)")
    if target_url and urllib.parse.urlsplit(target_url).scheme not in ("http", "https"):
        # observed: jenkinsci/ghprb-plugin#661
        raise validation_failed("Status", "target_url", "custom", "target_url must use http(s) scheme")
    same = [s for s in fake.statuses if s["sha"] == p["sha"] and s["context"].lower() == context.lower()]
    if len(same) >= STATUSES_PER_CONTEXT:
        # the message is observed (elastic/beats-tester#217)
        raise validation_failed(
            "Status", None, "custom", "This SHA and context has reached the maximum number of statuses."
        )
    status = example(R + "/statuses/{sha}", "POST", 201)
    status.update(
        id=fake.new_id(),
        url=fake.repo_api(f"/statuses/{p['sha']}"),
        state=b["state"],
        description=b.get("description"),
        target_url=target_url,
        context=context,
    )
    status["creator"] = fake.user_json(account.login, account.type, account.id, status["creator"])
    fake.statuses.append({"sha": p["sha"], **{k: status[k] for k in ("state", "description", "target_url", "context")}})
    return Result(201, status, {"Location": status["url"]})


# -- git references --------------------------------------------------------------------------


def _ref_json(fake: FakeGitHub, ref: str, template: dict[str, Any]) -> dict[str, Any]:
    sha = fake.refs[ref]
    out = copy.deepcopy(template)
    out.update(ref=ref, url=fake.repo_api(f"/git/{ref}"), node_id=f"REF_{ref}")
    out["object"] = {"type": "commit", "sha": sha, "url": fake.repo_api(f"/git/commits/{sha}")}
    return out


@route("GET", R + "/git/ref/{ref}")
def _get_ref(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    _require_git_database(fake)
    ref = "refs/" + p["ref"]
    if ref not in fake.refs:
        raise error(404, "Not Found")
    return Result(200, _ref_json(fake, ref, example(R + "/git/ref/{ref}", "GET", 200)))


@route("POST", R + "/git/refs")
def _create_ref(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    # docs.github.com/en/rest/git/refs#create-a-reference: 409 (Conflict) and 422 are its documented errors;
    # "You are unable to create new references for empty repositories". The 422 messages are observed
    # (renovatebot/renovate#20281: "Reference already exists"; octokit/octokit.js#562: "Object does not exist").
    _require_git_database(fake)
    ref = b["ref"]
    if not ref.startswith("refs/") or ref.count("/") < 2:
        raise error(422, "Reference name is invalid")
    if ref in fake.refs:
        raise error(422, "Reference already exists")
    if b["sha"] not in fake.commits:
        raise error(422, "Object does not exist")
    fake.refs[ref] = b["sha"]
    out = _ref_json(fake, ref, example(R + "/git/refs", "POST", 201))
    return Result(201, out, {"Location": out["url"]})


@route("PATCH", R + "/git/refs/{ref}")
def _update_ref(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    # docs.github.com/en/rest/git/refs#update-a-reference: "force ... false to make sure you're not
    # overwriting work"; documented errors 409 and 422. The message is observed ("Update is not a fast
    # forward", e.g. webspace-sdk/webspace-engine#104).
    _require_git_database(fake)
    ref = "refs/" + p["ref"]
    if ref not in fake.refs:
        raise error(422, "Reference does not exist")
    if b["sha"] not in fake.commits:
        raise error(422, "Object does not exist")
    if not b.get("force") and fake.refs[ref] not in fake.ancestors(b["sha"]):
        raise error(422, "Update is not a fast forward")
    fake.refs[ref] = b["sha"]
    return Result(200, _ref_json(fake, ref, example(R + "/git/refs/{ref}", "PATCH", 200)))


@route("DELETE", R + "/git/refs/{ref}")
def _delete_ref(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    _require_git_database(fake)
    ref = "refs/" + p["ref"]
    if ref not in fake.refs:
        raise error(422, "Reference does not exist")
    del fake.refs[ref]
    return Result(204)


# -- git objects -----------------------------------------------------------------------------


@route("POST", R + "/git/blobs")
def _create_blob(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    _require_git_database(fake)
    data = base64.b64decode(b["content"]) if b.get("encoding") == "base64" else b["content"].encode()
    sha = git_sha("blob", data)
    fake.blobs[sha] = data
    blob = example(R + "/git/blobs", "POST", 201)
    blob.update(sha=sha, url=fake.repo_api(f"/git/blobs/{sha}"))
    return Result(201, blob, {"Location": blob["url"]})


def _tree_json(fake: FakeGitHub, sha: str, template: dict[str, Any], recursive: bool) -> dict[str, Any]:
    entries = fake.trees[sha]
    listing: dict[str, dict[str, Any]] = {}
    for path, blob in sorted(entries.items()):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if recursive or depth == 1:
                listing.setdefault(
                    folder,
                    {"path": folder, "mode": "040000", "type": "tree", "sha": git_sha("tree", folder.encode())},
                )
        if recursive or len(parts) == 1:
            listing[path] = {
                "path": path,
                "mode": "100644",
                "type": "blob",
                "sha": blob,
                "size": len(fake.blobs[blob]),
                "url": fake.repo_api(f"/git/blobs/{blob}"),
            }
    for entry in listing.values():
        entry.setdefault("url", fake.repo_api(f"/git/trees/{entry['sha']}"))
    items = list(listing.values())
    out = copy.deepcopy(template)
    out.update(
        sha=sha,
        url=fake.repo_api(f"/git/trees/{sha}"),
        tree=items[: fake.tree_limit],
        truncated=len(items) > fake.tree_limit,  # see TREE_LIMIT
    )
    return out


@route("POST", R + "/git/trees")
def _create_tree(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    _require_git_database(fake)
    entries: dict[str, str] = {}
    if "base_tree" in b:
        if b["base_tree"] not in fake.trees:
            raise error(422, "base_tree is not a valid tree")
        entries.update(fake.trees[b["base_tree"]])
    for entry in b["tree"]:
        if entry.get("sha") not in fake.blobs:
            raise error(422, f"tree.sha {entry.get('sha')} is not a valid blob")
        entries[entry["path"]] = entry["sha"]
    sha = fake.store_tree(entries)
    tree = _tree_json(fake, sha, example(R + "/git/trees", "POST", 201), recursive=False)
    return Result(201, tree, {"Location": tree["url"]})


@route("GET", R + "/git/trees/{tree_sha}")
def _get_tree(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    _require_git_database(fake)
    if p["tree_sha"] not in fake.trees:
        raise error(404, "Not Found")
    recursive = "recursive" in q
    return Result(200, _tree_json(fake, p["tree_sha"], example(R + "/git/trees/{tree_sha}", "GET", 200), recursive))


def _commit_json(fake: FakeGitHub, sha: str, template: dict[str, Any]) -> dict[str, Any]:
    commit = fake.commits[sha]
    out = copy.deepcopy(template)
    out.update(
        sha=sha,
        node_id=f"C_{sha[:8]}",
        url=fake.repo_api(f"/git/commits/{sha}"),
        html_url=fake.html(f"/commit/{sha}"),
        message=commit["message"],
        tree={"sha": commit["tree"], "url": fake.repo_api(f"/git/trees/{commit['tree']}")},
        parents=[
            {"sha": s, "url": fake.repo_api(f"/git/commits/{s}"), "html_url": fake.html(f"/commit/{s}")}
            for s in commit["parents"]
        ],
    )
    return out


@route("POST", R + "/git/commits")
def _create_commit(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    _require_git_database(fake)
    if b["tree"] not in fake.trees:
        raise error(422, "Tree SHA does not exist")
    for parent in b.get("parents", []):
        if parent not in fake.commits:
            raise error(422, "Parent SHA does not exist or is not a commit object")
    sha = fake.store_commit(b["tree"], b.get("parents", []), b["message"])
    commit = _commit_json(fake, sha, example(R + "/git/commits", "POST", 201))
    return Result(201, commit, {"Location": commit["url"]})


@route("GET", R + "/git/commits/{commit_sha}")
def _get_commit(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    _require_git_database(fake)
    if p["commit_sha"] not in fake.commits:
        raise error(404, "Not Found")
    return Result(200, _commit_json(fake, p["commit_sha"], example(R + "/git/commits/{commit_sha}", "GET", 200)))


# -- contents --------------------------------------------------------------------------------


def commit_of(fake: FakeGitHub, name: str) -> str | None:
    """A commit sha from a branch name or a (known) commit sha, as GitHub resolves refs."""
    if f"refs/heads/{name}" in fake.refs:
        return fake.refs[f"refs/heads/{name}"]
    return name if name in fake.commits else None


@route("GET", R + "/contents/{path}")
def _get_content(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    if fake.empty_repository:
        raise error(404, "This repository is empty.")
    ref = q.get("ref") or fake.default_branch
    commit = commit_of(fake, ref)
    if commit is None:
        raise error(404, f"No commit found for the ref {ref}")
    tree = fake.trees[fake.commits[commit]["tree"]]
    path = p["path"].strip("/")
    if path not in tree:
        if any(name.startswith(path + "/") for name in tree):
            fake.violations.append(f"GET contents/{path}: directory listings are not implemented by the fake")
        raise error(404, "Not Found")
    blob = tree[path]
    data = fake.blobs[blob]
    if len(data) > CONTENTS_MAX:
        # "Greater than 100 MB: This endpoint is not supported." The answer is unconfirmed: this is the one
        # GitHub gave for files over 1 MB before 1-100 MB files were served (octokit/octokit.rb#1104).
        raise error(
            403,
            "This API returns blobs up to 1 MB in size. The requested blob is too large to fetch via the API, "
            "but you can use the Git Data API to request blobs up to 100 MB in size.",
            errors=[{"resource": "Blob", "field": "data", "code": "too_large"}],
        )
    out = example(R + "/contents/{path}", "GET", 200)
    if len(data) > CONTENTS_FULL_LIMIT:
        # see CONTENTS_MAX; the docs say this of the object media type, and the default one answers the
        # same (observed: githubocto/flat-viewer#41)
        encoding, content = "none", ""
    else:
        encoded = base64.b64encode(data).decode("ascii")
        encoding = "base64"
        content = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n"  # as GitHub wraps it
    out.update(
        type="file",
        encoding=encoding,
        size=len(data),
        name=path.rsplit("/", 1)[-1],
        path=path,
        content=content,
        sha=blob,
        url=fake.repo_api(f"/contents/{path}?ref={ref}"),
        git_url=fake.repo_api(f"/git/blobs/{blob}"),
        html_url=fake.html(f"/blob/{ref}/{path}"),
        download_url=f"https://raw.githubusercontent.com/{fake.full_name}/{ref}/{path}",
    )
    out["_links"] = {"git": out["git_url"], "self": out["url"], "html": out["html_url"]}
    return Result(200, out)


def _file_commit(fake: FakeGitHub, commit: str, path: str | None, template: dict[str, Any]) -> dict[str, Any]:
    """The contents API's answer to a write (schema ``file-commit``)."""
    out = copy.deepcopy(template)
    tree = fake.commits[commit]["tree"]
    if path is None:
        out["content"] = None
    else:
        blob = fake.trees[tree][path]
        out["content"].update(
            name=path.rsplit("/", 1)[-1],
            path=path,
            sha=blob,
            size=len(fake.blobs[blob]),
            url=fake.repo_api(f"/contents/{path}"),
            git_url=fake.repo_api(f"/git/blobs/{blob}"),
        )
    out["commit"].update(
        sha=commit,
        url=fake.repo_api(f"/git/commits/{commit}"),
        html_url=fake.html(f"/commit/{commit}"),
        message=fake.commits[commit]["message"],
        tree={"sha": tree, "url": fake.repo_api(f"/git/trees/{tree}")},
        parents=[{"sha": s, "url": fake.repo_api(f"/git/commits/{s}")} for s in fake.commits[commit]["parents"]],
    )
    return out


def _write_content(fake: FakeGitHub, p: dict[str, str], b: Any, data: bytes | None) -> tuple[str, bool]:
    """Commit one file change on a branch's tip as GitHub's contents API does: (commit, created).

    docs.github.com/en/rest/repos/contents#create-or-update-file-contents: ``sha`` is "Required if you are
    updating a file. The blob SHA of the file being replaced." Observed answers (live probe quoted in
    pome-sh/digital-twins#400; octokit/octokit.rb#992): no ``sha`` for an existing file is 422
    'Invalid request.\\n\\n"sha" wasn't supplied.'; a ``sha`` that is not the file's is 409
    "<path> does not match <sha>"; a ``sha`` given for a new file is ignored (201); an unknown branch
    is checked first (404).
    """
    branch = b.get("branch") or fake.default_branch
    ref = f"refs/heads/{branch}"
    path = p["path"].strip("/")
    if fake.empty_repository and data is not None:
        # "For an empty repository, you can use the PUT /repos/{owner}/{repo}/contents/{path} REST API
        # endpoint to create content and initialize the repository" (see EMPTY_REPOSITORY)
        blob = git_sha("blob", data)
        fake.blobs[blob] = data
        fake.refs[ref] = fake.store_commit(fake.store_tree({path: blob}), [], b["message"])
        fake.empty_repository = False
        return fake.refs[ref], True
    if ref not in fake.refs:
        raise error(404, f"Branch {branch} not found")
    entries = dict(fake.trees[fake.commits[fake.refs[ref]]["tree"]])
    current = entries.get(path)
    if current is None and data is None:
        raise error(404, "Not Found")
    if current is not None and "sha" not in b:
        raise error(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
    if current is not None and b["sha"] != current:
        raise error(409, f"{path} does not match {b['sha']}")
    if data is None:
        del entries[path]
    else:
        blob = git_sha("blob", data)
        fake.blobs[blob] = data
        entries[path] = blob
    commit = fake.store_commit(fake.store_tree(entries), [fake.refs[ref]], b["message"])
    fake.refs[ref] = commit
    return commit, current is None


@route("PUT", R + "/contents/{path}")
def _put_content(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    commit, created = _write_content(fake, p, b, base64.b64decode(b["content"]))
    status = 201 if created else 200
    out = _file_commit(fake, commit, p["path"].strip("/"), example(R + "/contents/{path}", "PUT", status))
    return Result(status, out)


@route("DELETE", R + "/contents/{path}")
def _delete_content(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    commit, _ = _write_content(fake, p, b, None)
    return Result(200, _file_commit(fake, commit, None, example(R + "/contents/{path}", "DELETE", 200)))


# -- branches and comparisons ----------------------------------------------------------------


@route("GET", R + "/branches/{branch}")
def _get_branch(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    ref = f"refs/heads/{p['branch']}"
    if ref not in fake.refs:
        raise error(404, "Branch not found")
    out = example(R + "/branches/{branch}", "GET", 200)
    out.update(name=p["branch"], protected=False)
    out["commit"] = _commit_summary(fake, fake.refs[ref], out["commit"])
    out["_links"] = {"self": fake.repo_api(f"/branches/{p['branch']}"), "html": fake.html(f"/tree/{p['branch']}")}
    out["protection_url"] = fake.repo_api(f"/branches/{p['branch']}/protection")
    return Result(200, out)


def _commit_summary(fake: FakeGitHub, sha: str, template: dict[str, Any]) -> dict[str, Any]:
    """A commit in the compare API's shape (schema ``commit``), from the contract's example."""
    commit = fake.commits[sha]
    out = copy.deepcopy(template)
    out.update(
        sha=sha,
        node_id=f"C_{sha[:8]}",
        url=fake.repo_api(f"/commits/{sha}"),
        html_url=fake.html(f"/commit/{sha}"),
        comments_url=fake.repo_api(f"/commits/{sha}/comments"),
        parents=[
            {"sha": s, "url": fake.repo_api(f"/commits/{s}"), "html_url": fake.html(f"/commit/{s}")}
            for s in commit["parents"]
        ],
    )
    out["commit"] = dict(out["commit"], url=fake.repo_api(f"/git/commits/{sha}"), message=commit["message"])
    out["commit"]["tree"] = {"sha": commit["tree"], "url": fake.repo_api(f"/git/trees/{commit['tree']}")}
    return out


@route("GET", R + "/commits/{ref}")
def _get_commit_summary(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    _require_git_database(fake)
    sha = commit_of(fake, p["ref"])
    if sha is None:
        raise error(422, f"No commit found for SHA: {p['ref']}")  # observed wording
    out = _commit_summary(fake, sha, example(R + "/commits/{ref}", "GET", 200))
    out["files"] = []  # the fake keeps no diffs (and the example's file lacks required fields)
    return Result(200, out)


@route("GET", R + "/compare/{basehead}")
def _compare(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> Result:
    base_name, dots, head_name = p["basehead"].partition("...")
    if not dots:
        raise error(404, "Not Found")
    base, head = commit_of(fake, base_name), commit_of(fake, head_name)
    if base is None or head is None:
        raise error(404, "Not Found")
    base_side = set(fake.ancestors(base))
    head_side = set(fake.ancestors(head))
    # Breadth-first from head: the first commit base also reaches is the (nearest) merge-base.
    merge_base, queue, seen = None, [head], set()
    while queue and merge_base is None:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.add(current)
        if current in base_side:
            merge_base = current
        queue.extend(fake.commits.get(current, {}).get("parents", []))
    if merge_base is None:
        raise error(404, f"No common ancestor between {base_name} and {head_name}.")
    ahead = [sha for sha in head_side if sha not in base_side]
    behind = [sha for sha in base_side if sha not in head_side]
    status = "identical" if base == head else "ahead" if not behind else "behind" if not ahead else "diverged"
    out = example(R + "/compare/{basehead}", "GET", 200)
    template = out["base_commit"]
    out.update(
        url=fake.repo_api(f"/compare/{p['basehead']}"),
        html_url=fake.html(f"/compare/{p['basehead']}"),
        permalink_url=fake.html(f"/compare/{fake.owner}:{base}...{fake.owner}:{head}"),
        diff_url=fake.html(f"/compare/{p['basehead']}.diff"),
        patch_url=fake.html(f"/compare/{p['basehead']}.patch"),
        base_commit=_commit_summary(fake, base, template),
        merge_base_commit=_commit_summary(fake, merge_base, template),
        status=status,
        ahead_by=len(ahead),
        behind_by=len(behind),
        total_commits=len(ahead),
        commits=[_commit_summary(fake, sha, template) for sha in sorted(ahead)],
        files=[],
    )
    return Result(200, out)
