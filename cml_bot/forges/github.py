"""GitHub: one sticky PR comment, images on an assets branch, the verdict as a commit status.

Built on PyGithub, pointed at ``GITHUB_API_URL`` (so GitHub Enterprise Server works). Every call goes
through :meth:`GitHubForge._call`, which retries transient failures (5xx, dropped connections, 429,
secondary rate limits) with backoff through the injected ``sleep``, turns a permission 403 into
:class:`ReadOnlyTokenError` at once and anything else into a one-line :class:`ForgeError`.

Which comment is ours: a comment that contains the marker line AND was written by the token's user.
The user comes from ``GET /user``; installation tokens (``GITHUB_TOKEN``, GitHub Apps) may not read
it (403), and then a comment counts as ours when its author is a bot (``type == "Bot"`` or a login
ending in ``[bot]``, e.g. ``github-actions[bot]``). Finding it means listing every page of comments
(a duplicate may hide on any page), and a new comment is followed by a second listing: of two runs
that both posted, the later one sees both, and every run keeps the oldest (the race rule).

So that an update does not list hundreds of comments, the assets branch names the comment: a
small file ``pr-<number>/.comment-<marker key>-<comment id>`` holding
``cml-bot comment <id> by <login>`` (the key is 12 hex digits of the marker's sha1). The file list
comes with the branch read the images need anyway. An update fetches that comment by id and edits
it when it is on this PR, carries the marker as a line of its own, and its author is the login the
file records (compared through the blob sha the listing gives, no extra read). Anything else (no
file, several, a 404, a mismatch, a refused edit) falls back to the full listing, after which the
file is rewritten to name the comment kept; it is written only when it changes (first post,
recreate, a fallback) and a failure to write it never fails the run. ``GET /user`` is skipped on
this path: only tokens that may write the repository's contents can write that file, the author it
records came from GitHub's answer to our own post, and such a writer could edit the comment directly
anyway; the worst a forged file can do is have us edit a comment on this PR that already carries our
marker line. What the fast path cannot see: a duplicate left by a run that died between posting and
its second listing while another run was posting too; the next fallback listing collapses it.

Images go to a dedicated branch (``cml-bot-assets``): created as an orphan commit through the Git
Data API on first use, then one contents API ``PUT`` per new or changed file (GitHub commits it on
the tip itself, so there is no ref to fast-forward), under ``pr-<number>/<short head sha>/<name>``,
linked by commit-pinned ``{server}/{owner}/{repo}/raw/{commit}/{path}`` URLs, which render for
anyone who can read the repository and never change after posting. The branch (tip and recursive
file list) is read once per run and kept current by this run's own writes.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import github
import requests
from github.GithubException import GithubException

from cml_bot.context import CiContext
from cml_bot.errors import ForgeError, ReadOnlyTokenError
from cml_bot.forges.base import CommentMode, Publication
from cml_bot.model import Image, Verdict

logger = logging.getLogger(__name__)

T = TypeVar("T")

COMMENT_LIMIT = 65536
STATUS_CONTEXT = "cml-bot"
STATUS_DESCRIPTION_LIMIT = 140
MAX_ATTEMPTS = 5
MAX_REF_ATTEMPTS = 5
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
MAX_IMAGE_BYTES = 25 * 1024 * 1024  # plots are small; a bundle from a fork is untrusted input
HINT_NAME = ".comment-"  # pr-<n>/.comment-<marker key>-<comment id> on the assets branch
_DIGITS = re.compile(r"[0-9]{1,20}")

_STATES = {
    Verdict.PASS: "success",
    Verdict.NO_BASELINE: "success",
    Verdict.REGRESSED: "failure",
    Verdict.FAILED: "error",
}

_TRANSIENT_EXCEPTIONS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
)


class GitHubApiError(ForgeError):
    """A request GitHub refused or that failed; ``status`` is None for connection failures."""

    def __init__(self, message: str, status: int | None, delay: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.delay = delay  # seconds to wait before trying again; None when not transient


def github_token(env: Mapping[str, str]) -> str | None:
    """The token cml-bot uses on GitHub: ``CML_BOT_TOKEN``, else ``GITHUB_TOKEN``."""
    return env.get("CML_BOT_TOKEN") or env.get("GITHUB_TOKEN") or None


def git_blob_sha(data: bytes) -> str:
    """The object id git gives ``data`` as a blob (what GitHub returns for an uploaded blob)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def github_forge(
    context: CiContext,
    env: Mapping[str, str],
    *,
    change_number: int | None = None,
    head_sha: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    assets_branch: str = "cml-bot-assets",
) -> GitHubForge:
    """Build the forge for this run; ``change_number``/``head_sha`` override the context's."""
    token = github_token(env)
    if not token:
        raise ForgeError("GitHub: no token; set CML_BOT_TOKEN or GITHUB_TOKEN")
    if not context.repo or "/" not in context.repo:
        raise ForgeError("GitHub: the repository is unknown; set GITHUB_REPOSITORY (owner/name)")
    sha = head_sha or context.head_sha
    if not sha:
        raise ForgeError("GitHub: the head commit is unknown; no pull_request payload and no GITHUB_SHA")
    return GitHubForge(
        repo=context.repo,
        token=token,
        head_sha=sha,
        change_number=change_number if change_number is not None else context.change_number,
        api_url=context.api_url or "https://api.github.com",
        server_url=context.server_url or "https://github.com",
        sleep=sleep,
        assets_branch=assets_branch,
    )


def github_client(api_url: str, token: str, timeout: int = 15) -> github.Github:
    """PyGithub pointed at ``api_url``; it never retries nor sleeps on its own (:func:`call_github` does)."""
    # No throttling between requests: a report is a dozen calls; secondary limits are retried.
    return github.Github(
        base_url=api_url.rstrip("/"),
        auth=github.Auth.Token(token),
        retry=None,
        per_page=100,
        timeout=timeout,
        seconds_between_requests=None,
        seconds_between_writes=None,
        lazy=True,
    )


def call_github(what: str, fn: Callable[[], T], sleep: Callable[[float], None], *, retry: bool = True) -> T:
    """Run ``fn`` (one request), retrying transient failures through ``sleep``; map errors to
    :class:`GitHubApiError` / :class:`ReadOnlyTokenError` (shared by the forge and the results store)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except GithubException as exc:
            delay = GitHubForge._transient_delay(exc, attempt)
            if delay is None or not retry or attempt >= MAX_ATTEMPTS:
                raise GitHubForge._error(what, exc, delay) from None
            logger.info("GitHub %s: %s, retrying in %.0f s", what, _describe(exc), delay)
        except _TRANSIENT_EXCEPTIONS as exc:
            if not retry or attempt >= MAX_ATTEMPTS:
                raise GitHubApiError(
                    f"GitHub {what}: connection failed ({type(exc).__name__}) after {attempt} attempt(s)",
                    None,
                    _backoff(attempt),
                ) from None
            delay = _backoff(attempt)
            logger.info("GitHub %s: connection failed (%s), retrying in %.0f s", what, type(exc).__name__, delay)
        sleep(delay)


@dataclass
class _Comment:
    id: int
    body: str
    login: str
    user_type: str
    html_url: str
    url: str


@dataclass(frozen=True)
class _Branch:
    """A branch tip: its commit, its tree and every file in it (path -> blob sha)."""

    commit: str
    tree: str
    files: Mapping[str, str]


@dataclass
class GitHubForge:
    """The :class:`~cml_bot.forges.base.Forge` for GitHub pull requests."""

    repo: str
    token: str = field(repr=False)
    head_sha: str
    change_number: int | None = None
    api_url: str = "https://api.github.com"
    server_url: str = "https://github.com"
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    assets_branch: str = "cml-bot-assets"
    timeout: int = 15
    _gh: github.Github = field(init=False, repr=False)
    _login: str | None = field(init=False, default=None, repr=False)
    _login_known: bool = field(init=False, default=False, repr=False)
    _number_known: bool = field(init=False, default=False, repr=False)
    _assets: _Branch | None = field(init=False, default=None, repr=False)
    _assets_known: bool = field(init=False, default=False, repr=False)

    def __post_init__(self) -> None:
        self.api_url = self.api_url.rstrip("/")
        self.server_url = self.server_url.rstrip("/")
        self._gh = github_client(self.api_url, self.token, self.timeout)
        self._number_known = self.change_number is not None

    @property
    def comment_limit(self) -> int:
        return COMMENT_LIMIT

    @property
    def _repo_path(self) -> str:
        return f"/repos/{self.repo}"

    # -- requests --------------------------------------------------------------------------

    def _request(
        self,
        verb: str,
        path: str,
        *,
        parameters: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        retry: bool = True,
    ) -> Any:
        """One API call (``path`` relative to the API root) through :meth:`_call`; returns the JSON."""

        def send() -> Any:
            _, data = self._gh.requester.requestJsonAndCheck(
                verb, self.api_url + path, parameters=parameters, input=body
            )
            return data

        return self._call(f"{verb} {path}", send, retry=retry)

    def _call(self, what: str, fn: Callable[[], T], *, retry: bool = True) -> T:
        """Run ``fn``, retrying transient failures; map errors to ForgeError / ReadOnlyTokenError."""
        return call_github(what, fn, self.sleep, retry=retry)

    @staticmethod
    def _transient_delay(exc: GithubException, attempt: int) -> float | None:
        """Seconds to wait before retrying ``exc``, or None when it is not worth retrying."""
        status = exc.status
        headers = {str(k).lower(): str(v) for k, v in (exc.headers or {}).items()}
        retry_after = _seconds(headers.get("retry-after"))
        if status in (403, 429) and (
            retry_after is not None
            or "rate limit" in _message(exc).lower()
            or headers.get("x-ratelimit-remaining") == "0"
        ):
            return min(retry_after, BACKOFF_CAP) if retry_after is not None else _backoff(attempt)
        if status == 429 or status >= 500:
            return min(retry_after, BACKOFF_CAP) if retry_after is not None else _backoff(attempt)
        return None

    @staticmethod
    def _error(what: str, exc: GithubException, delay: float | None) -> ForgeError:
        message = f"GitHub {what}: {_describe(exc)}"
        if exc.status == 403 and delay is None:
            return ReadOnlyTokenError(message + " (the token may not write here, e.g. a fork pull request)")
        return GitHubApiError(message, exc.status, delay)

    # -- the pull request ------------------------------------------------------------------

    def _number(self) -> int | None:
        """The PR number: from the context, else the head commit's associated open PR (or None)."""
        if not self._number_known:
            pulls = self._request("GET", f"{self._repo_path}/commits/{self.head_sha}/pulls")
            open_pulls = sorted(
                (p for p in pulls if isinstance(p, dict) and p.get("state") == "open"),
                key=lambda p: int(p["number"]),
            )
            self.change_number = int(open_pulls[0]["number"]) if open_pulls else None
            self._number_known = True
            logger.info(
                "GitHub: commit %s belongs to %s",
                self.head_sha[:7],
                f"PR #{self.change_number}" if self.change_number else "no open pull request",
            )
        return self.change_number

    def verify_change_head(self, expected_sha: str) -> None:
        """Raise ForgeError unless the PR's head is ``expected_sha`` (a bundle posts on its own PR only)."""
        number = self._number()
        if number is None:
            raise ForgeError(f"GitHub: no pull request to check for commit {expected_sha[:12]}")
        pull = self._request("GET", f"{self._repo_path}/pulls/{number}")
        actual = pull.get("head", {}).get("sha") if isinstance(pull, dict) else None
        if actual != expected_sha:
            raise ForgeError(
                f"GitHub: PR #{number} head is {str(actual)[:12]}, not {expected_sha[:12]}; "
                "refusing to post a bundle made for another commit"
            )

    # -- comments --------------------------------------------------------------------------

    def _me(self) -> str | None:
        """The token's login, or None when the token may not read /user (installation tokens)."""
        if not self._login_known:
            try:
                user = self._request("GET", "/user")
                self._login = str(user["login"])
            except ReadOnlyTokenError:
                self._login = None
            except GitHubApiError as exc:
                if exc.status != 401:
                    raise
                self._login = None
            self._login_known = True
            logger.info(
                "GitHub: matching comments by %s",
                f"author {self._login}" if self._login else "bot authors (GET /user refused)",
            )
        return self._login

    def _is_mine(self, comment: _Comment, marker: str, ours: Collection[int] = ()) -> bool:
        if marker not in comment.body:
            return False
        if comment.id in ours:  # posted by this run: no need to ask who we are
            return True
        login = self._me()
        if login is not None:
            return comment.login == login
        return comment.user_type == "Bot" or comment.login.endswith("[bot]")

    def _list_comments(self, number: int) -> list[_Comment]:
        """Every comment on the PR, all pages (100 per page), oldest first."""
        issue = self._gh.get_repo(self.repo).get_issue(number)

        def fetch() -> list[_Comment]:
            return [
                _Comment(
                    id=c.id,
                    body=c.body or "",
                    login=c.user.login if c.user else "",
                    user_type=c.user.type if c.user else "",
                    html_url=c.html_url,
                    url=c.url,
                )
                for c in issue.get_comments()
            ]

        comments = self._call(f"GET {self._repo_path}/issues/{number}/comments", fetch)
        return sorted(comments, key=lambda c: c.id)

    def _mine(self, number: int, marker: str, ours: Collection[int] = ()) -> list[_Comment]:
        return [c for c in self._list_comments(number) if self._is_mine(c, marker, ours)]

    def _edit(self, comment: _Comment, body: str) -> None:
        if comment.body == body:
            return
        self._request("PATCH", f"{self._repo_path}/issues/comments/{comment.id}", body={"body": body})
        comment.body = body

    def _delete(self, comment: _Comment) -> None:
        try:
            self._request("DELETE", f"{self._repo_path}/issues/comments/{comment.id}")
        except GitHubApiError as exc:
            if exc.status != 404:  # already gone (a racing run deleted it): fine
                raise

    def _create(self, number: int, body: str, marker: str, known: set[int]) -> _Comment:
        """POST the comment once: after a failure that may have gone through, look before reposting.

        ``known`` are the ids of our marked comments before posting; a new one with our body is ours.
        """
        what = f"POST {self._repo_path}/issues/{number}/comments"
        attempt = 0
        while True:
            attempt += 1
            try:
                data = self._request(
                    "POST", f"{self._repo_path}/issues/{number}/comments", body={"body": body}, retry=False
                )
                return _comment_from(data)
            except GitHubApiError as exc:
                if exc.delay is None or attempt >= MAX_ATTEMPTS:
                    raise
                cause, delay = exc, exc.delay
            self.sleep(max(delay, _backoff(attempt)))
            landed = [c for c in self._mine(number, marker) if c.id not in known and c.body == body]
            if landed:
                logger.info("GitHub %s: the failed attempt did post comment %d; not posting again", what, landed[0].id)
                return landed[0]
            logger.info("GitHub %s: %s, posting again", what, cause.message)

    def upsert_comment(self, body: str, marker: str, mode: CommentMode) -> Publication:
        if marker not in body:
            raise ForgeError("GitHub: the comment body does not contain its marker")
        if len(body) > COMMENT_LIMIT:
            raise ForgeError(f"GitHub: the comment has {len(body)} characters, over {COMMENT_LIMIT}")
        number = self._number()
        if number is None:
            logger.info("GitHub: no pull request for %s; the report goes to the job summary only", self.head_sha[:7])
            return Publication(None, False)
        mode = CommentMode(mode)
        if mode is CommentMode.UPDATE:
            hinted = self._hinted(number, marker)
            if hinted is not None and self._edit_hinted(hinted, body):
                logger.info("GitHub: updated comment %d on PR #%d (named on %s)", hinted.id, number, self.assets_branch)
                return Publication(hinted.html_url, False)
        mine = self._mine(number, marker)
        if mode is CommentMode.UPDATE and mine:
            keep = mine[0]
            self._edit(keep, body)
            for extra in mine[1:]:
                self._delete(extra)
            logger.info("GitHub: updated comment %d on PR #%d", keep.id, number)
            self._remember(number, marker, keep)
            return Publication(keep.html_url, False)
        if mode is CommentMode.RECREATE:
            for old in mine:
                self._delete(old)
        created = self._create(number, body, marker, known={c.id for c in mine})
        logger.info("GitHub: posted comment %d on PR #%d", created.id, number)
        if mode is CommentMode.NEW:
            return Publication(created.html_url, True)
        survivor = self._settle_race(number, marker, created)
        self._remember(number, marker, survivor)
        return Publication(survivor.html_url, survivor.id == created.id)

    def _settle_race(self, number: int, marker: str, created: _Comment) -> _Comment:
        """Two runs may both have created a comment: keep the oldest with the newest body.

        Every run lists after posting, so the later poster sees the earlier one's comment and all
        runs agree on the survivor (the oldest). Returns it.
        """
        mine = self._mine(number, marker, ours={created.id})
        if len(mine) <= 1:
            return mine[0] if mine else created
        keep, newest = mine[0], mine[-1]
        logger.info("GitHub: %d comments carry the marker on PR #%d; keeping %d", len(mine), number, keep.id)
        self._edit(keep, newest.body)
        for extra in mine[1:]:
            self._delete(extra)
        return keep

    # -- where the comment is: a hint on the assets branch ---------------------------------

    def _hint_prefix(self, number: int, marker: str) -> str:
        key = hashlib.sha1(marker.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]
        return f"pr-{number}/{HINT_NAME}{key}-"

    def _hints(self, number: int, marker: str) -> dict[str, str]:
        """The hint files for this PR and marker on the assets branch (path -> blob sha)."""
        tip = self._assets_tip()
        if tip is None:
            return {}
        prefix = self._hint_prefix(number, marker)
        return {
            path: blob
            for path, blob in tip.files.items()
            if path.startswith(prefix) and _DIGITS.fullmatch(path[len(prefix) :])
        }

    def _hinted(self, number: int, marker: str) -> _Comment | None:
        """The comment the assets branch names, when it still is this report's comment on this PR."""
        try:
            hints = self._hints(number, marker)
        except ForgeError as exc:
            logger.info("GitHub: %s unreadable (%s); looking through the comments", self.assets_branch, exc)
            return None
        if len(hints) != 1:
            if hints:
                logger.info("GitHub: %d hints for one comment on %s; ignored", len(hints), self.assets_branch)
            return None
        [(path, blob)] = hints.items()
        cid = int(path.rsplit("-", 1)[1])
        try:
            data = self._request("GET", f"{self._repo_path}/issues/comments/{cid}")
        except ReadOnlyTokenError:
            return None
        except GitHubApiError as exc:
            if exc.status not in (404, 410):
                raise
            logger.info(
                "GitHub: comment %d (named on %s) is gone; looking through the comments", cid, self.assets_branch
            )
            return None
        comment = _comment_from(data)
        if not (
            str(data.get("issue_url", "")).endswith(f"/issues/{number}")
            and marker in (line.strip() for line in comment.body.splitlines())
            and blob == git_blob_sha(_hint_content(cid, comment.login))
        ):
            logger.info(
                "GitHub: comment %d (named on %s) is not this report's; looking through the comments",
                cid,
                self.assets_branch,
            )
            return None
        return comment

    def _edit_hinted(self, comment: _Comment, body: str) -> bool:
        """Edit the hinted comment; False when it vanished or may not be edited (the scan decides)."""
        try:
            self._edit(comment, body)
        except ReadOnlyTokenError:
            return False
        except GitHubApiError as exc:
            if exc.status not in (404, 410):
                raise
            return False
        return True

    def _remember(self, number: int, marker: str, comment: _Comment) -> None:
        """Name ``comment`` on the assets branch (only when that changes), for the next run's fast path.

        Best effort: the comment is posted already, and a missing or wrong hint only costs the next
        run a full look through the comments.
        """
        content = _hint_content(comment.id, comment.login)
        path = f"{self._hint_prefix(number, marker)}{comment.id}"
        try:
            hints = self._hints(number, marker)
            if hints == {path: git_blob_sha(content)}:
                return
            stale = [other for other in hints if other != path]
            self._write_assets({path: content}, f"cml-bot: the report on PR #{number} is comment {comment.id}", stale)
        except ForgeError as exc:
            logger.info("GitHub: could not name comment %d on %s: %s", comment.id, self.assets_branch, exc)
            return
        logger.info("GitHub: named comment %d on %s", comment.id, self.assets_branch)

    # -- images ----------------------------------------------------------------------------

    def _folder(self) -> str:
        number = self._number()
        short = self.head_sha[:7]
        return f"pr-{number}/{short}" if number is not None else f"commit-{short}"

    def _raw_url(self, commit: str, path: str) -> str:
        quoted = urllib.parse.quote(path)
        return f"{self.server_url}/{self.repo}/raw/{commit}/{quoted}"

    def _assets_tip(self, *, refresh: bool = False) -> _Branch | None:
        """The assets branch's tip and files, read once per run (branch, then its recursive tree);
        None when the branch does not exist yet. Writes of this run keep it current."""
        if self._assets_known and not refresh:
            return self._assets
        branch = urllib.parse.quote(self.assets_branch)
        try:
            data = self._request("GET", f"{self._repo_path}/branches/{branch}")
        except GitHubApiError as exc:
            if exc.status != 404:
                raise
            tip = None
        else:
            commit = str(data["commit"]["sha"])
            tree_sha = str(data["commit"]["commit"]["tree"]["sha"])
            tree = self._request("GET", f"{self._repo_path}/git/trees/{tree_sha}", parameters={"recursive": 1})
            if tree.get("truncated"):
                logger.warning("GitHub: the tree of %s is truncated; some files may be uploaded again", branch)
            files = {str(e["path"]): str(e["sha"]) for e in tree.get("tree", []) if e.get("type") == "blob"}
            tip = _Branch(commit, tree_sha, files)
        self._assets, self._assets_known = tip, True
        return tip

    def _write_assets(self, files: Mapping[str, bytes], message: str, remove: Sequence[str] = ()) -> dict[str, str]:
        """Put ``files`` (path -> bytes) on the assets branch and delete the paths in ``remove``;
        returns path -> a commit of the branch that holds it (for pinned URLs).

        Files already there with the same bytes cost nothing. On an existing branch each changed
        file is one contents API request (one commit, made on the branch tip by GitHub itself);
        a missing branch is created as an orphan through the Git Data API. When another writer got
        in between (409/422), the branch is read again and only what is still missing is written.
        """
        shas = {path: git_blob_sha(data) for path, data in files.items()}
        pinned: dict[str, str] = {}
        for attempt in range(1, MAX_REF_ATTEMPTS + 1):
            tip = self._assets_tip(refresh=attempt > 1)
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
                    if path in tip.files:
                        self._delete_file(path, tip.files[path], message)
            except GitHubApiError as exc:
                if exc.status not in (409, 422):
                    raise
                logger.info("GitHub: %s changed meanwhile (attempt %d), reading it again", self.assets_branch, attempt)
                continue
            return pinned
        raise ForgeError(
            f"GitHub: could not update branch {self.assets_branch} after {MAX_REF_ATTEMPTS} attempts (it kept moving)"
        )

    def _contents_path(self, path: str) -> str:
        return f"{self._repo_path}/contents/{urllib.parse.quote(path)}"

    def _put_file(self, path: str, data: bytes, sha: str, current: str | None, message: str) -> str:
        body: dict[str, Any] = {
            "message": message,
            "content": base64.b64encode(data).decode("ascii"),
            "branch": self.assets_branch,
        }
        if current is not None:
            body["sha"] = current
        answer = self._request("PUT", self._contents_path(path), body=body)
        if answer.get("content", {}).get("sha") != sha:
            raise ForgeError(f"GitHub: {path} was stored as {answer.get('content', {}).get('sha')}, not {sha}")
        return self._moved(answer, path, sha)

    def _delete_file(self, path: str, current: str, message: str) -> None:
        body = {"message": message, "sha": current, "branch": self.assets_branch}
        try:
            answer = self._request("DELETE", self._contents_path(path), body=body)
        except GitHubApiError as exc:
            if exc.status != 404:  # already gone
                raise
            return
        self._moved(answer, path, None)

    def _moved(self, answer: Any, path: str, sha: str | None) -> str:
        """Keep the cached tip current after a contents API write; returns the new commit."""
        commit = str(answer["commit"]["sha"])
        tip = self._assets
        if tip is not None:
            files = dict(tip.files)
            if sha is None:
                files.pop(path, None)
            else:
                files[path] = sha
            self._assets = _Branch(commit, str(answer["commit"]["tree"]["sha"]), files)
        return commit

    def _create_assets_branch(self, files: Mapping[str, bytes], shas: Mapping[str, str], message: str) -> str | None:
        """Create the assets branch as an orphan commit holding ``files``; None when another run
        created it first (GitHub answers 422: the caller reads the branch and writes on top)."""
        for blob_sha, data in {shas[path]: data for path, data in files.items()}.items():
            content = base64.b64encode(data).decode("ascii")
            blob = self._request(
                "POST", f"{self._repo_path}/git/blobs", body={"content": content, "encoding": "base64"}
            )
            if blob.get("sha") != blob_sha:
                raise ForgeError(f"GitHub: blob {blob.get('sha')} uploaded for {blob_sha}")
        entries = [{"path": p, "mode": "100644", "type": "blob", "sha": shas[p]} for p in files]
        tree = str(self._request("POST", f"{self._repo_path}/git/trees", body={"tree": entries})["sha"])
        commit = self._request(
            "POST", f"{self._repo_path}/git/commits", body={"message": message, "tree": tree, "parents": []}
        )
        commit_sha = str(commit["sha"])
        try:
            self._request(
                "POST",
                f"{self._repo_path}/git/refs",
                body={"ref": f"refs/heads/{self.assets_branch}", "sha": commit_sha},
            )
        except GitHubApiError as exc:
            if exc.status != 422:
                raise
            logger.info("GitHub: %s was created meanwhile by another run", self.assets_branch)
            return None
        logger.info("GitHub: created the orphan branch %s", self.assets_branch)
        self._assets, self._assets_known = _Branch(commit_sha, tree, dict(shas)), True
        return commit_sha

    def upload_images(self, images: Sequence[Image]) -> Mapping[str, str]:
        if not images:
            return {}
        for image in images:
            if len(image.data) > MAX_IMAGE_BYTES:
                raise ForgeError(f"GitHub: image {image.name} is {len(image.data)} bytes, over {MAX_IMAGE_BYTES}")
        folder = self._folder()
        files = {f"{folder}/{image.name}": image.data for image in images}
        pinned = self._write_assets(files, f"cml-bot: images for {folder}")
        logger.info("GitHub: %d image(s) on %s", len(files), self.assets_branch)
        return {
            image.name: self._raw_url(pinned[f"{folder}/{image.name}"], f"{folder}/{image.name}") for image in images
        }

    # -- status ----------------------------------------------------------------------------

    def set_status(self, verdict: Verdict, description: str, target_url: str | None) -> None:
        text = " ".join(description.split())
        if len(text) > STATUS_DESCRIPTION_LIMIT:
            text = text[: STATUS_DESCRIPTION_LIMIT - 1] + "…"
        body: dict[str, Any] = {
            "state": _STATES[Verdict(verdict)],
            "description": text,
            "context": STATUS_CONTEXT,
        }
        if target_url:
            body["target_url"] = target_url
        self._request("POST", f"{self._repo_path}/statuses/{self.head_sha}", body=body)
        logger.info("GitHub: status %s on %s", body["state"], self.head_sha[:7])


def _comment_from(data: Any) -> _Comment:
    user = data.get("user") or {}
    return _Comment(
        id=int(data["id"]),
        body=str(data.get("body") or ""),
        login=str(user.get("login", "")),
        user_type=str(user.get("type", "")),
        html_url=str(data["html_url"]),
        url=str(data["url"]),
    )


def _hint_content(comment_id: int, login: str) -> bytes:
    """What a hint file holds: the comment and its author (checked through the blob sha)."""
    return f"cml-bot comment {comment_id} by {login}\n".encode()


def _message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict):
        return str(data.get("message", ""))
    return str(data or "")


def _describe(exc: GithubException) -> str:
    message = " ".join(_message(exc).split())[:200]
    return f"{exc.status} {message}".strip()


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
