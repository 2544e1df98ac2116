"""GitHub: the sticky PR comment, images on an assets branch, the verdict as a commit status.

Requests go through the shared :class:`~cml_bot.forges.http.JsonClient`; PyGithub's requester is
the transport (authentication, ``GITHUB_API_URL`` for GitHub Enterprise Server, TLS), one request at
a time, with its own retries and throttling turned off.

Identity (which comments are ours, see :mod:`cml_bot.forges.sticky`): the ``creator`` of the
commit status this run set (GitHub's own answer to our write, the same author its comments carry:
the token's user, or an app's ``<slug>[bot]``); without one, the login of ``GET /user`` for a user
token. An installation token (the Actions ``GITHUB_TOKEN``, a GitHub App's) may not read ``/user``
(403, docs: "Permissions required for GitHub Apps"); then ``CML_BOT_LOGIN``, else
``github-actions[bot]`` for the Actions token. Never "any bot": with none of these, the first
comment we create tells it, and a warning names ``CML_BOT_LOGIN``.

Our comment is named on the assets branch (:class:`~cml_bot.forges.sticky.Remembering`): a file
``pr-<number>/.comment-<marker key>-<comment id>`` holding ``cml-bot comment <id> by <login>`` (the
key is 12 hex digits of the marker's sha1), seen in the tree listing already read for the images
and checked through its blob sha, with no read of the file. An update fetches that one comment
(``GET issues/comments/{id}``) instead of listing every page, and uses it only when it is on this
pull request (its ``issue_url``), by the author the file records, and ours by the sticky rules
(first line, our identity): the file is hostile input, writable by anyone who may push to the
repository. Several files, a 404, any mismatch: the listing decides, and the file is rewritten to name
its survivor (written only when it changes; a failure to write it never fails the run). A run
without images does not read the branch, so it lists (and writes no file). With the identity from the
status's ``creator``, an update on a long thread costs two requests for the comment.

The pull request: the event's, else the open PR whose head is this commit
(``GET /repos/{o}/{r}/commits/{sha}/pulls`` lists every PR that contains it, stacked PRs included).

Images go to a dedicated branch (``cml-bot-assets``): created as an orphan commit through the Git
Data API on first use, then one contents API ``PUT`` per new or changed file under
``pr-<number>/<short head sha>/<name>``, linked by commit-pinned ``{server}/{o}/{r}/raw/{commit}/{path}``
URLs, which render for exactly the people who can read the repository and never change after posting.
The branch is read once per run; a write refused with 409 (stale ``sha``, docs: "Create or update file
contents") or 422 is re-planned from a fresh read.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import requests

from cml_bot import answers
from cml_bot import markdown as md
from cml_bot.baseline import ResultStore
from cml_bot.context import CiContext
from cml_bot.errors import ForgeError
from cml_bot.forges.base import FULL_SHA, Change, check_head, write_refusal
from cml_bot.forges.http import ConnectionFailure, HttpError, JsonClient, Request, Response, link_next, was_sent
from cml_bot.forges.sticky import Comment, edit_refusal
from cml_bot.model import Image, Verdict
from cml_bot.report import Flavour
from cml_bot.secrets import Secrets

log = logging.getLogger(__name__)

COMMENT_LIMIT = 65_536
STATUS_CONTEXT = "cml-bot"
STATUS_DESCRIPTION_LIMIT = 140
ACTIONS_LOGIN = "github-actions[bot]"  # the author of comments made with the Actions GITHUB_TOKEN
MAX_IMAGE_BYTES = 25 * 1024 * 1024
MAX_WRITE_ROUNDS = 5  # read the branch -> write, again when another writer moved it
HINT_NAME = ".comment-"  # pr-<number>/.comment-<marker key>-<comment id> on the assets branch
_COMMENT_ID = re.compile(r"[0-9]{1,20}")
FULL_REPORT_HINT = "the job summary of this run and its `cml-bot-report` artifact"

_STATES = {
    Verdict.PASS: "success",
    Verdict.NO_BASELINE: "success",
    Verdict.INCONCLUSIVE: "success",  # not a failure by default (--fail-on-inconclusive fails the job)
    Verdict.REGRESSED: "failure",
    Verdict.FAILED: "error",
}


def github_token(env: Mapping[str, str]) -> str | None:
    """The token cml-bot uses on GitHub: ``CML_BOT_TOKEN``, else ``GITHUB_TOKEN``."""
    return (env.get("CML_BOT_TOKEN") or env.get("GITHUB_TOKEN") or "").strip() or None


def known_login(env: Mapping[str, str]) -> str | None:
    """The login our comments carry when the token cannot read ``/user``, if the setup tells it."""
    explicit = (env.get("CML_BOT_LOGIN") or "").strip()
    if explicit:
        return explicit
    token = github_token(env)
    if token and (
        env.get("CML_BOT_TOKEN_IS_GITHUB_TOKEN") == "true"  # set by action.yml
        or (not env.get("CML_BOT_TOKEN") and env.get("GITHUB_TOKEN"))  # the documented env name
    ):
        return ACTIONS_LOGIN
    return None


def git_blob_sha(data: bytes) -> str:
    """The object id git gives ``data`` as a blob (what GitHub returns for a stored file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def git_commit(
    client: JsonClient,
    repo_path: str,
    files: Mapping[str, bytes],
    message: str,
    parent: tuple[str, str] | None = None,
) -> tuple[str, str]:
    """Commit ``files`` through the Git Data API (blobs, a tree, a commit), on top of ``parent``
    ((commit, tree)) or as an orphan; returns (commit, tree). Moving a ref to it is the caller's.
    Every step is content-addressed or unreferenced, so repeating one after a lost answer is harmless.
    """
    for path, data in files.items():
        content = base64.b64encode(data).decode("ascii")
        request = Request("POST", f"{repo_path}/git/blobs", json={"content": content, "encoding": "base64"})
        blob = client.json(replace(request, repeatable=True))
        if answers.dig(blob, "sha") != git_blob_sha(data):
            raise ForgeError(
                f"GitHub: the blob stored for {path} is {answers.dig(blob, 'sha')}, not {git_blob_sha(data)}"
            )
    tree_body: dict[str, Any] = {
        "tree": [{"path": p, "mode": "100644", "type": "blob", "sha": git_blob_sha(d)} for p, d in files.items()]
    }
    if parent is not None:
        tree_body["base_tree"] = parent[1]
    tree = str(
        answers.dig(client.json(Request("POST", f"{repo_path}/git/trees", json=tree_body, repeatable=True)), "sha")
    )
    commit_body = {"message": message, "tree": tree, "parents": [parent[0]] if parent is not None else []}
    commit = client.json(Request("POST", f"{repo_path}/git/commits", json=commit_body, repeatable=True))
    return str(answers.dig(commit, "sha")), tree


def tree_files(client: JsonClient, repo_path: str, tree: str, branch: str, missed: str) -> dict[str, str]:
    """Every file of ``tree`` (path -> blob sha), from one recursive listing. GitHub truncates a
    listing past its limit: then a warning says what the caller may have ``missed`` on ``branch``."""
    listing = client.json(Request("GET", f"{repo_path}/git/trees/{tree}", {"recursive": 1}))
    if answers.dig(listing, "truncated"):
        log.warning("GitHub: the tree of %s is truncated; %s", branch, missed)
    entries = answers.dig(listing, "tree")
    return {
        path: sha
        for entry in (entries if isinstance(entries, list) else [])
        if answers.dig(entry, "type") == "blob"
        and (path := answers.text(answers.dig(entry, "path")))
        and (sha := answers.text(answers.dig(entry, "sha")))
    }


def github_transport(
    api_url: str, token: str, timeout: float = 30.0
) -> tuple[Callable[[Request], Response], Callable[[], None]]:
    """PyGithub's requester, sending exactly one request per call (the JsonClient retries); and the
    function that closes its connections."""
    import github

    client = github.Github(
        base_url=api_url.rstrip("/"),
        auth=github.Auth.Token(token),
        retry=None,
        per_page=100,
        timeout=int(timeout),
        seconds_between_requests=None,
        seconds_between_writes=None,
        lazy=True,
    )
    requester = client.requester
    root = api_url.rstrip("/")

    def send(request: Request) -> Response:
        url = request.path if "://" in request.path else root + request.path
        parameters = {key: str(value) for key, value in request.query.items()} or None
        try:
            status, headers, body = requester.requestJson(request.verb.upper(), url, parameters, None, request.json)
        except requests.exceptions.RequestException as exc:
            raise ConnectionFailure(type(exc).__name__, sent=was_sent(exc)) from None
        return Response(status, {str(k).lower(): str(v) for k, v in headers.items()}, (body or "").encode("utf-8"))

    return send, client.close


def github_client(
    context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None] = time.sleep
) -> JsonClient:
    """The JSON client for this repository's GitHub API, with the token of ``env``."""
    token = github_token(env)
    if not token:
        raise ForgeError("GitHub: no token; set CML_BOT_TOKEN or GITHUB_TOKEN")
    if not context.repo or context.repo.count("/") != 1:
        raise ForgeError("GitHub: the repository is unknown; set GITHUB_REPOSITORY (owner/name)")
    api_url = (context.api_url or "https://api.github.com").rstrip("/")
    transport, closer = github_transport(api_url, token)
    secrets = Secrets.from_env(env, extra=[token])
    hints = {401: "the token was rejected (expired or revoked?); check CML_BOT_TOKEN / GITHUB_TOKEN"}
    return JsonClient("GitHub", transport, api_url, redact=secrets.scrub, sleep=sleep, closer=closer, hints=hints)


def github_forge(
    context: CiContext,
    env: Mapping[str, str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    assets_branch: str = "cml-bot-assets",
) -> GitHub:
    client = github_client(context, env, sleep=sleep)
    if not context.head_sha:
        raise ForgeError("GitHub: the head commit is unknown; no pull_request payload and no GITHUB_SHA")
    return GitHub(
        client,
        repo=str(context.repo),
        head_sha=context.head_sha,
        number=context.change_number,
        server_url=(context.server_url or "https://github.com").rstrip("/"),
        login=known_login(env),
        assets_branch=assets_branch,
    )


@dataclass(frozen=True)
class _Branch:
    """A branch tip: its commit, its tree and every file in it (path -> blob sha)."""

    commit: str
    tree: str
    files: Mapping[str, str]


@dataclass
class GitHub:
    """The :class:`~cml_bot.forges.base.Forge` for one GitHub repository and commit."""

    client: JsonClient = field(repr=False)
    repo: str
    head_sha: str
    number: int | None = None  # the event's pull request, when there is one
    server_url: str = "https://github.com"
    login: str | None = None  # our comments' author when /user may not be read
    assets_branch: str = "cml-bot-assets"
    name: str = "GitHub"
    comment_limit: int = COMMENT_LIMIT
    full_report_hint: str = FULL_REPORT_HINT
    flavour: Flavour = Flavour.GITHUB
    _change: Change | None = field(init=False, default=None, repr=False)
    _change_known: bool = field(init=False, default=False, repr=False)
    _identity: str | None = field(init=False, default=None, repr=False)
    _identity_known: bool = field(init=False, default=False, repr=False)
    _assets: _Branch | None = field(init=False, default=None, repr=False)
    _assets_known: bool = field(init=False, default=False, repr=False)

    @property
    def repo_path(self) -> str:
        return f"/repos/{self.repo}"

    def close(self) -> None:
        self.client.close()

    # -- the pull request --------------------------------------------------------------------------

    def change(self) -> Change | None:
        if not self._change_known:
            self._change_known = True
            if self.number is not None:
                self._change = Change(self.number)
            else:
                self._change = self._pull_headed_by(self.head_sha)
            log.info(
                "GitHub: commit %s is %s",
                self.head_sha[:10],
                f"PR #{self._change.number}" if self._change else "the head of no open pull request",
            )
        return self._change

    def _pull_headed_by(self, sha: str) -> Change | None:
        """The open PR whose head is ``sha``; a PR that only contains it (stacked PRs) is not it."""
        pulls = self.client.json(Request("GET", f"{self.repo_path}/commits/{sha}/pulls", {"per_page": 100}))
        candidates = pulls if isinstance(pulls, list) else []
        headed = sorted(
            int(p["number"])
            for p in candidates
            if isinstance(p, dict)
            and p.get("state") == "open"
            and isinstance(p.get("number"), int)
            and answers.dig(p, "head", "sha") == sha
        )
        return Change(headed[0], sha) if headed else None

    def verify_head(self, change: Change, sha: str) -> None:
        pull = self.client.json(Request("GET", f"{self.repo_path}/pulls/{change.number}"))
        check_head("GitHub", f"PR #{change.number}", answers.dig(pull, "head", "sha"), sha)

    # -- comments ----------------------------------------------------------------------------------

    def thread(self, change: Change) -> GitHubThread:
        return GitHubThread(self, change.number)

    def identity(self) -> str | None:
        if not self._identity_known:
            # Unless set_status already learnt it: an installation token (GITHUB_TOKEN, a GitHub App)
            # may not read /user.
            self._identity_known = True
            user = self.client.json_unless(Request("GET", "/user"), frozenset({401, 403}))
            self._identity = answers.text(answers.dig(user, "login")) if user is not None else self.login
            if self._identity is None:
                log.warning(
                    "GitHub: the token may not read /user (a GitHub App's installation token?) and "
                    "CML_BOT_LOGIN is not set: its earlier comments cannot be told from others'; set "
                    "CML_BOT_LOGIN to the app's bot login (<app-slug>[bot])"
                )
            log.info("GitHub: our comments are those by %s", self._identity or "(unknown until we post)")
        return self._identity

    # -- status ------------------------------------------------------------------------------------

    def set_status(self, verdict: Verdict, description: str, target_url: str | None) -> None:
        text = md.field(description, STATUS_DESCRIPTION_LIMIT)
        body: dict[str, Any] = {
            "state": _STATES.get(Verdict(verdict), "success"),
            "description": text,
            "context": STATUS_CONTEXT,
        }
        if target_url:
            body["target_url"] = target_url
        # A repeated status is harmless: the newest with this context is the one shown.
        request = Request("POST", f"{self.repo_path}/statuses/{self.head_sha}", json=body, repeatable=True)
        answer = self._write(request, "set the commit status")
        # Who set it ("creator", docs: "Create a commit status"): the token's own identity, the one
        # thing /user will not tell an installation token. Only this answer to our own write counts.
        try:
            creator = answers.text(answers.dig(self.client.decode(answer, request), "creator", "login"))
        except HttpError:
            creator = None
        # It names the token's identity (the user of a personal token, the bot of an installation
        # token): our comments are those by it, with no need to ask /user.
        if creator and self._identity is None:
            self._identity, self._identity_known = creator, True
            log.info("GitHub: our comments are those by %s (the status's creator)", creator)
        log.info("GitHub: status %s on %s", body["state"], self.head_sha[:10])

    def _write(self, request: Request, what: str, accept: frozenset[int] = frozenset()) -> Response:
        """A write whose 403 means the token may not write here (e.g. a fork's read-only token)."""
        try:
            return self.client.send(request, accept=accept)
        except HttpError as exc:
            raise write_refusal(exc, what) from None

    # -- results and merge-base --------------------------------------------------------------------

    def result_store(self, branch: str) -> ResultStore:
        from cml_bot.forges.github_store import GitHubStore

        return GitHubStore(self.client, self.repo, branch, server_url=self.server_url)

    def merge_base(self, base_ref: str, head_sha: str) -> str | None:
        basehead = f"{urllib.parse.quote(base_ref, safe='')}...{urllib.parse.quote(head_sha, safe='')}"
        request = Request("GET", f"{self.repo_path}/compare/{basehead}", {"per_page": 1})
        try:
            data = self.client.json(request)
        except ForgeError as exc:
            log.warning("GitHub: no merge-base of %s and %s from the compare API: %s", base_ref, head_sha[:10], exc)
            return None
        sha = answers.text(answers.dig(data, "merge_base_commit", "sha"))
        return sha if sha and FULL_SHA.fullmatch(sha) else None

    # -- images ------------------------------------------------------------------------------------

    def upload_images(self, change: Change | None, images: Sequence[Image]) -> Mapping[str, str]:
        if not images:
            return {}
        for image in images:
            if len(image.data) > MAX_IMAGE_BYTES:
                raise ForgeError(f"GitHub: image {image.name} is {len(image.data)} bytes, over {MAX_IMAGE_BYTES}")
        short = self.head_sha[:7]
        folder = f"pr-{change.number}/{short}" if change is not None else f"commit-{short}"
        files = {f"{folder}/{image.name}": image.data for image in images}
        pinned = self._write_assets(files, f"cml-bot: images for {folder}")
        return {image.name: self._raw_url(pinned[path], path) for image in images if (path := f"{folder}/{image.name}")}

    def _raw_url(self, commit: str, path: str) -> str:
        return f"{self.server_url}/{self.repo}/raw/{commit}/{urllib.parse.quote(path)}"

    def _assets_tip(self, *, refresh: bool = False) -> _Branch | None:
        """The assets branch's tip and files, read once per run; None when it does not exist yet."""
        if self._assets_known and not refresh:
            return self._assets
        branch = urllib.parse.quote(self.assets_branch, safe="")
        data = self.client.json_unless(Request("GET", f"{self.repo_path}/branches/{branch}"), frozenset({404}))
        tip = None
        if data is not None:
            commit = str(answers.dig(data, "commit", "sha"))
            tree_sha = str(answers.dig(data, "commit", "commit", "tree", "sha"))
            files = tree_files(self.client, self.repo_path, tree_sha, branch, "some files may be uploaded again")
            tip = _Branch(commit, tree_sha, files)
        self._assets, self._assets_known = tip, True
        return tip

    def _write_assets(self, files: Mapping[str, bytes], message: str, remove: Collection[str] = ()) -> dict[str, str]:
        """Put ``files`` on the assets branch and delete the paths in ``remove``; path -> a commit
        of the branch that holds it.

        Files already there with the same bytes cost nothing; each changed file is one contents API
        ``PUT``, each removed one a ``DELETE``; a missing branch is created as an orphan. When another
        writer got in between (409/422), the branch is read again and only what is still to do is done.
        """
        shas = {path: git_blob_sha(data) for path, data in files.items()}
        pinned: dict[str, str] = {}
        for round_ in range(1, MAX_WRITE_ROUNDS + 1):
            tip = self._assets_tip(refresh=round_ > 1)
            if tip is None and not files:
                return {}  # nothing to remove from a branch that is not there
            if tip is None:
                commit = self._create_assets_branch(files, shas, message)
                if commit is not None:
                    return {path: commit for path in files}
                continue
            for path in files:
                if tip.files.get(path) == shas[path]:
                    pinned.setdefault(path, tip.commit)
            try:
                for path in files:
                    if path not in pinned:
                        pinned[path] = self._put_file(path, files[path], shas[path], tip.files.get(path), message)
                for path in remove:
                    current = self._assets.files.get(path) if self._assets is not None else None
                    if current is not None:
                        self._delete_file(path, current, message)
            except HttpError as exc:
                if exc.status not in (409, 422):
                    raise write_refusal(exc, f"write to branch {self.assets_branch}") from None
                log.info("GitHub: %s changed meanwhile (round %d); reading it again", self.assets_branch, round_)
                continue
            return pinned
        raise ForgeError(f"GitHub: could not write to branch {self.assets_branch}: it kept moving")

    def _put_file(self, path: str, data: bytes, sha: str, current: str | None, message: str) -> str:
        body: dict[str, Any] = {
            "message": message,
            "content": base64.b64encode(data).decode("ascii"),
            "branch": self.assets_branch,
        }
        if current is not None:
            body["sha"] = current
        # A repeated PUT of the same bytes on the branch is refused (409, stale sha) or a no-op.
        answer = self.client.json(Request("PUT", f"{self.repo_path}/contents/{urllib.parse.quote(path)}", json=body))
        stored = answers.dig(answer, "content", "sha")
        if stored != sha:
            raise ForgeError(f"GitHub: {path} was stored as {stored}, not {sha}")
        return self._moved(answer, path, sha)

    def _delete_file(self, path: str, current: str, message: str) -> None:
        body = {"message": message, "sha": current, "branch": self.assets_branch}
        request = Request("DELETE", f"{self.repo_path}/contents/{urllib.parse.quote(path)}", json=body)
        answer = self.client.send(request, accept=frozenset({404}))  # 404: deleted already (a racing run)
        if answer.status != 404:
            self._moved(self.client.decode(answer, request), path, None)
        elif self._assets is not None:
            self._assets = replace(self._assets, files={p: s for p, s in self._assets.files.items() if p != path})

    def _moved(self, answer: object, path: str, sha: str | None) -> str:
        """Keep the branch read this run current after a contents API write (``sha`` None: the file
        was deleted); returns the new commit."""
        commit, tree = str(answers.dig(answer, "commit", "sha")), str(answers.dig(answer, "commit", "tree", "sha"))
        if self._assets is not None:
            files = {p: s for p, s in self._assets.files.items() if p != path}
            if sha is not None:
                files[path] = sha
            self._assets = _Branch(commit, tree, files)
        return commit

    def _create_assets_branch(self, files: Mapping[str, bytes], shas: Mapping[str, str], message: str) -> str | None:
        """Create the assets branch as an orphan commit holding ``files``; None when another run
        created it first (422): the caller reads it and writes on top."""
        try:
            commit, tree = git_commit(self.client, self.repo_path, files, message)
            ref = {"ref": f"refs/heads/{self.assets_branch}", "sha": commit}
            create = Request(
                "POST", f"{self.repo_path}/git/refs", json=ref, repeatable=True, conflict_is_transient=True
            )
            answer = self.client.send(create, accept=frozenset({422}))
        except HttpError as exc:
            raise write_refusal(exc, f"create branch {self.assets_branch}") from None
        if answer.status == 422:  # "Reference already exists": another run, or our lost attempt
            log.info("GitHub: %s exists already; writing on top of it", self.assets_branch)
            return None
        log.info("GitHub: created the orphan branch %s", self.assets_branch)
        self._assets, self._assets_known = _Branch(commit, tree, dict(shas)), True
        return commit


@dataclass
class GitHubThread:
    """The issue comments of one pull request."""

    forge: GitHub
    number: int

    @property
    def _path(self) -> str:
        return f"{self.forge.repo_path}/issues/{self.number}/comments"

    def identity(self) -> str | None:
        return self.forge.identity()

    def comments(self) -> list[Comment]:
        client = self.forge.client
        found: dict[str, tuple[int, Comment]] = {}

        def following(answer: Response, request: Request) -> Request | None:
            url = link_next(answer)
            return Request("GET", url) if url else None

        for page in client.pages(Request("GET", self._path, {"per_page": 100}), following):
            items = client.decode(page, Request("GET", self._path))
            if not isinstance(items, list):
                raise ForgeError(f"GitHub GET {self._path}: expected a list of comments")
            for item in items:
                comment = _comment(item)
                if comment is not None:
                    found[comment.id] = (int(comment.id), comment)
        return [comment for _, comment in sorted(found.values(), key=lambda pair: pair[0])]

    def create(self, body: str, confirm: Callable[[], Comment | None]) -> Comment:
        def parse(answer: Response) -> Comment:
            comment = _comment(self.forge.client.decode(answer, Request("POST", self._path)))
            if comment is None:
                raise ForgeError(f"GitHub POST {self._path}: the answer is not a comment")
            return comment

        try:
            created = self.forge.client.create(Request("POST", self._path, json={"body": body}), parse, confirm)
        except HttpError as exc:
            raise write_refusal(exc, f"comment on PR #{self.number}") from None
        if self.forge._identity is None:  # learnt from GitHub's answer to our own post
            self.forge._identity, self.forge._identity_known = created.author, True
            log.warning(
                "GitHub: the token's login is %s; set CML_BOT_LOGIN to it so that later runs update this "
                "comment in place instead of adding and removing one",
                created.author,
            )
        log.info("GitHub: posted comment %s on PR #%d", created.id, self.number)
        return created

    def edit(self, comment: Comment, body: str) -> Comment:
        path = f"{self.forge.repo_path}/issues/comments/{comment.id}"
        try:
            answer = self.forge.client.json(Request("PATCH", path, json={"body": body}))
        except HttpError as exc:
            raise edit_refusal(
                exc,
                f"GitHub: may not edit our comment {comment.id} on PR #{self.number}",
                "; the token needs pull-requests: write (or issues: write)",
            ) from None
        log.info("GitHub: updated comment %s on PR #%d", comment.id, self.number)
        return _comment(answer) or Comment(comment.id, body, comment.author, comment.url)

    def delete(self, comment: Comment) -> None:
        path = f"{self.forge.repo_path}/issues/comments/{comment.id}"
        try:
            self.forge.client.send(Request("DELETE", path), accept=frozenset({404}))  # 404: already gone
        except HttpError as exc:
            raise edit_refusal(exc, f"GitHub: may not delete our comment {comment.id}") from None

    # -- the comment named on the assets branch (sticky.Remembering) ---------------------------------

    def _hint_prefix(self, marker: str) -> str:
        key = hashlib.sha1(marker.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]
        return f"pr-{self.number}/{HINT_NAME}{key}-"

    def _hints(self, marker: str) -> dict[str, str] | None:
        """This report's hint files (path -> blob sha) in the assets branch as this run read it for
        the images; None when it did not read it (or it does not exist)."""
        tip = self.forge._assets if self.forge._assets_known else None
        if tip is None:
            return None
        prefix = self._hint_prefix(marker)
        return {
            path: blob
            for path, blob in tip.files.items()
            if path.startswith(prefix) and _COMMENT_ID.fullmatch(path[len(prefix) :])
        }

    def recall(self, marker: str) -> Comment | None:
        hints = self._hints(marker)
        if not hints:
            return None
        if len(hints) > 1:  # racing recreates, or a hand-made file: the listing decides
            log.info("GitHub: %d comments named for one report on %s", len(hints), self._branch)
            return None
        [path] = hints
        cid = path[len(self._hint_prefix(marker)) :]
        try:
            data = self.forge.client.json(Request("GET", f"{self.forge.repo_path}/issues/comments/{cid}"))
        except HttpError as exc:  # 404: deleted; anything else is doubt too, and the listing decides
            log.info("GitHub: comment %s named on %s cannot be read (%s)", cid, self._branch, exc)
            return None
        comment = _comment(data)
        issue = urllib.parse.urlsplit(answers.text(answers.dig(data, "issue_url")) or "").path.lower()
        if comment is None or comment.id != cid or not issue.endswith(self._issue_path.lower()):
            log.info("GitHub: comment %s named on %s is not on PR #%d", cid, self._branch, self.number)
            return None
        return comment  # whether it is ours (author, marker line) sticky decides, as for a listed one

    def remember(self, marker: str, comment: Comment | None) -> None:
        hints = self._hints(marker)
        if hints is None:  # no assets branch read this run (no images): the hint lives beside them
            return
        if comment is not None and not _COMMENT_ID.fullmatch(comment.id):
            return
        wanted = {} if comment is None else {f"{self._hint_prefix(marker)}{comment.id}": _hint_content(comment)}
        if hints == {path: git_blob_sha(data) for path, data in wanted.items()}:
            return  # written only when it changes
        what = f"comment {comment.id}" if comment is not None else "a new comment each run"
        message = f"cml-bot: the report on PR #{self.number} is {what}"
        try:
            self.forge._write_assets(wanted, message, remove=set(hints) - set(wanted))
        except ForgeError as exc:  # best effort: the comment is posted; the next run lists
            log.info("GitHub: could not name the comment on %s: %s", self._branch, exc)
            return
        log.info("GitHub: %s names %s for PR #%d's report", self._branch, what, self.number)

    @property
    def _issue_path(self) -> str:
        return f"/repos/{self.forge.repo}/issues/{self.number}"

    @property
    def _branch(self) -> str:
        return self.forge.assets_branch


def _hint_content(comment: Comment) -> bytes:
    """What a hint file holds, for a human reading the branch (its blob sha, in the listing this
    run read, tells whether it needs writing again)."""
    return f"cml-bot comment {comment.id} by {comment.author}\n".encode()


def _comment(item: object) -> Comment | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        return None
    body = item.get("body")
    return Comment(
        id=str(item["id"]),
        body=body if isinstance(body, str) else "",
        author=answers.text(answers.dig(item, "user", "login")) or "",
        url=answers.text(item.get("html_url")),
    )
