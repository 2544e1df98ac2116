"""A fake GitHub REST API for tests: stateful, contract-checked, and built from GitHub's documentation.

The lesson it exists for: "our own fakes agreed with our own code". Each behaviour here follows a
GitHub page, cited where it is implemented (``fake_github_routes.py`` for the endpoints, this module
for tokens, rate limits and faults); a fact no GitHub page states is marked "observed" with where it
was seen, or "unconfirmed".

Checking. Every request is checked against ``tests/contracts/github/openapi-subset.json`` (GitHub's
own OpenAPI description, see ``fake_github_contract.py``), BEFORE any injected fault is applied, so a
request that is then failed, dropped or answered with an error is checked all the same. A request
that does not match is recorded in :attr:`FakeGitHub.violations` (the ``fake_github`` fixture fails
the test at teardown when there are any) and answered 400, or with its fault. Every answer is checked
too: successful ones by openapi-core, errors against the schema the contract documents for their
status (``basic-error`` where it lists none).

Public API (everything the earlier fake had keeps its meaning):

- ``FakeGitHub(owner=, name=, repo_id=, prefix=)``; ``start()``/``stop()`` or ``with``; ``url``.
- ``add_token(token, login=None, *, kind=None, type=None, can_write=True, can_read_user=None,
  app_slug=None)`` -> :class:`Account`. ``kind`` is ``"pat"`` (a user's token: ``GET /user`` works),
  ``"github_token"`` (the Actions token: author ``github-actions[bot]``, id 41898282, ``GET /user`` 403)
  or ``"app"`` (another GitHub App's installation token: author ``<app_slug>[bot]``, ``GET /user`` 403).
  ``can_write=False`` is a read-only token (a fork pull request's ``GITHUB_TOKEN``): every write is
  refused with 403. Left out, ``kind`` follows the login (``...[bot]`` is an installation), so the old
  ``add_token(t, "github-actions[bot]", type="Bot", can_write=False, can_read_user=False)`` still works.
- ``add_pull(number, head_sha, *, state="open", head_ref=None, base_ref=None, merged=False,
  commits=None, fork=False)``: ``commits`` are the commits the pull request holds (default: its head);
  ``GET .../commits/{sha}/pulls`` lists every pull request holding ``sha``.
- ``add_comment(issue, body, login="someone", type="User", *, user_id=None)`` -> comment id;
  ``comments_on(issue)``; ``comments``; ``statuses``.
- ``add_commit``, ``push_commit``, ``commit_files``; ``refs``, ``commits``, ``trees``, ``blobs``.
- ``empty_repository``: True makes the Git database answer 409 "Git Repository is empty." until a
  contents ``PUT`` creates the first commit. ``tree_limit``: entries in a tree listing before
  ``truncated`` (GitHub's 100,000 by default).
- ``fail(method, path, kind="status", *, status=502, message=None, headers=None, times=1,
  callback=None, query=None)`` -> :class:`Fault`. ``path`` is a regex searched in the canonical
  path (``/repos/owner/name/...``, also for ``/repositories/{id}/...`` URLs), ``query`` one searched in
  the query string. Kinds: ``"status"`` (an error answer, nothing done), ``"drop"`` (the connection is
  closed before the request is handled), ``"drop-after"`` (handled, its effect applied, then the
  connection closed: "may have been applied"), ``"before"`` (``callback(fake)`` runs, then the request
  is handled, e.g. a concurrent push). A message left out is GitHub's for that answer (a secondary
  rate limit, "Git Repository is empty.", a contents conflict ...).
- ``secondary_limit(...)``, ``primary_limit(...)``, ``conflict(...)``: faults spelled as GitHub sends
  them; :func:`http_date` for a ``Retry-After`` given as an HTTP-date.
- ``requests(method=None, path="")``, ``log``, ``violations``; ``github_env(fake, event, **extra)``;
  the ``fake_github`` fixture (PR #2 at ``HEAD_SHA``, a ``TOKEN`` of kind ``"pat"``).
"""

from __future__ import annotations

import contextlib
import email.utils
import http.server
import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fake_github_contract import EVENTS, GENERIC_DOCS, Request, check_request, check_response, docs_url, example, spec
from fake_github_routes import ROUTES, Reply, Result, Route, error, find_route, git_sha
from local_server import LocalServer

__all__ = [
    "EVENTS",
    "HEAD_SHA",
    "ROUTES",
    "TOKEN",
    "Account",
    "FakeGitHub",
    "Fault",
    "example",
    "fake_github",
    "git_sha",
    "github_env",
    "http_date",
    "spec",
]

ACTIONS_BOT_LOGIN = "github-actions[bot]"
ACTIONS_BOT_ID = 41898282
"""The Actions app's bot user (GET /users/github-actions[bot]: id 41898282, type "Bot"; observed in
gist.github.com/buzztaiki/09f110b667e691518d4f87980f7da60d and in the noreply address
41898282+github-actions[bot]@users.noreply.github.com used for Actions commits)."""

PRIMARY_LIMITS = {"pat": 5000, "app": 5000, "github_token": 1000}
"""docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api: 5,000 requests per hour for a
user (PAT) and for an installation at the least; "The rate limit for GITHUB_TOKEN is 1,000 requests per
hour per repository"."""

RATE_LIMITS_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
SECONDARY_LIMIT_MESSAGE = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
"""The rate-limit page: "If you exceed a secondary rate limit, you will receive a 403 or 429 response and
an error message that indicates that you exceeded a secondary rate limit." This wording is observed
(e.g. in KnpLabs/php-github-api#1072's dump and many clients' tests); only its gist is documented."""

SERVER_ERRORS = {500: "Server Error", 502: "Server Error", 503: "Service Unavailable", 504: "Gateway Timeout"}

TokenKind = str  # "pat" | "github_token" | "app"


@dataclass
class Account:
    """What a token is: its identity, and what it may do."""

    login: str
    id: int
    type: str = "User"  # "Bot" for github-actions[bot] and apps
    can_write: bool = True
    can_read_user: bool = True  # installation tokens get 403 on GET /user
    kind: TokenKind = "pat"
    limit: int = 5000  # primary rate limit per hour (x-ratelimit-limit)
    used: int = 0  # requests counted in this window (x-ratelimit-used)

    @property
    def installation(self) -> bool:
        return self.kind in ("github_token", "app")

    @property
    def refusal(self) -> str:
        """What GitHub answers (403) when this token may not write."""
        # "Resource not accessible by integration" for installation tokens: observed on every refused
        # write of a read-only GITHUB_TOKEN (e.g. nvti/action-emoji#8, jgehrcke/github-repo-stats#58).
        # A fine-grained PAT without the permission: "Resource not accessible by personal access token"
        # (observed; unconfirmed by a docs page).
        if self.installation:
            return "Resource not accessible by integration"
        return "Resource not accessible by personal access token"


@dataclass
class Fault:
    """An injected failure of the next ``times`` requests matching ``method`` and ``path`` (and ``query``)."""

    method: str  # "POST", ... or "*"
    path: str  # regex searched in the canonical path (/repos/owner/name/...)
    kind: str = "status"  # status | drop | drop-after | before
    status: int = 502
    message: str | None = None  # None: GitHub's own message for that answer
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    callback: Callable[[FakeGitHub], None] | None = None
    query: str | None = None  # regex searched in the query string; None matches any


def http_date(seconds_from_now: float) -> str:
    """An HTTP-date ``seconds_from_now`` ahead (for a ``Retry-After`` in the date form).

    RFC 9110 §10.2.3 allows ``Retry-After: HTTP-date / delay-seconds``. GitHub documents only seconds
    ("If the retry-after response header is present, you should not retry your request until after
    that many seconds has elapsed", the rate-limit page); a client should still read both.
    """
    moment = datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)
    return email.utils.format_datetime(moment, usegmt=True)


class _Drop(Exception):
    pass


class FakeGitHub:
    """The state of one fake GitHub with one repository, served over HTTP on 127.0.0.1."""

    server_url = "https://github.com"

    def __init__(
        self,
        *,
        owner: str = "Codertocat",
        name: str = "Hello-World",
        repo_id: int = 186853002,
        prefix: str = "",
    ) -> None:
        self.owner, self.name, self.repo_id, self.prefix = owner, name, repo_id, prefix.rstrip("/")
        self.default_branch = "master"  # the contents API's ref when none is given
        self.empty_repository = False  # True: the Git database answers 409 until a contents PUT
        self.tree_limit = 100_000  # fake_github_routes.TREE_LIMIT, lowered by tests of truncation
        self.accounts: dict[str, Account] = {}
        self.pulls: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}  # id -> {issue, body, login, type, user_id}
        self.statuses: list[dict[str, Any]] = []
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[str, dict[str, str]] = {}  # sha -> {path: blob sha} (flat)
        self.commits: dict[str, dict[str, Any]] = {}  # sha -> {tree, parents, message}
        self.refs: dict[str, str] = {}  # "refs/heads/x" -> commit sha
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int | str]] = []  # (method, path?query as sent, status | "drop")
        self.violations: list[str] = []
        self.rate_window_reset = int(time.time()) + 3600  # x-ratelimit-reset, UTC epoch seconds
        self._next_id = 1000
        self._next_app_id = 90000
        self._clock = 0
        self._lock = threading.RLock()
        self._local = LocalServer(self._handle)

    # -- setup -----------------------------------------------------------------------------

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def url(self) -> str:
        """The API root the client should use (GITHUB_API_URL)."""
        return f"http://{self._local.address}{self.prefix}"

    def add_token(
        self,
        token: str,
        login: str | None = None,
        *,
        kind: TokenKind | None = None,
        type: str | None = None,
        can_write: bool = True,
        can_read_user: bool | None = None,
        app_slug: str | None = None,
    ) -> Account:
        """Register ``token``; see the module docstring for the kinds."""
        if kind is None:
            bot = (login or "").endswith("[bot]") or type == "Bot" or app_slug is not None
            kind = ("github_token" if login in (None, ACTIONS_BOT_LOGIN) else "app") if bot else "pat"
        if kind == "github_token":
            account = Account(login or ACTIONS_BOT_LOGIN, ACTIONS_BOT_ID, "Bot", can_write, False, kind)
        elif kind == "app":
            self._next_app_id += 1
            name = login or f"{app_slug or 'cml-bot-app'}[bot]"
            account = Account(name, self._next_app_id, "Bot", can_write, False, kind)
        elif kind == "pat":
            account = Account(login or "cml-bot-user", 5000 + len(self.accounts), type or "User", can_write, True, kind)
        else:
            raise ValueError(f"unknown token kind {kind!r}")
        if can_read_user is not None:  # the old explicit switch wins
            account.can_read_user = can_read_user
        account.limit = PRIMARY_LIMITS[kind]
        self.accounts[token] = account
        return account

    def add_pull(
        self,
        number: int,
        head_sha: str,
        *,
        state: str = "open",
        head_ref: str | None = None,
        base_ref: str | None = None,
        merged: bool = False,
        commits: list[str] | None = None,
        fork: bool = False,
    ) -> None:
        """A pull request (replacing one of the same number); ``commits`` default to its head."""
        if merged and state != "closed":
            raise ValueError("a merged pull request is closed")
        held = list(commits) if commits is not None else [head_sha]
        if head_sha not in held:
            held.append(head_sha)
        self.pulls[number] = {
            "number": number,
            "head_sha": head_sha,
            "head_ref": head_ref or ("changes" if number == 2 else f"feature-{number}"),
            "head_owner": "a-fork" if fork else self.owner,
            "base_ref": base_ref or self.default_branch,
            "state": state,
            "merged": merged,
            "commits": held,
            "fork": fork,
        }

    def add_comment(
        self, issue: int, body: str, login: str = "someone", type: str = "User", *, user_id: int | None = None
    ) -> int:
        with self._lock:
            cid = self.new_id()
            self.comments[cid] = {
                "issue": issue,
                "body": body,
                "login": login,
                "type": type,
                "user_id": user_id if user_id is not None else 100 + sum(map(ord, login)),
                "created": self.tick(),
            }
            return cid

    def comments_on(self, issue: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c, id=cid) for cid, c in sorted(self.comments.items()) if c["issue"] == issue]

    def fail(
        self,
        method: str,
        path: str,
        kind: str = "status",
        *,
        status: int = 502,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        callback: Callable[[FakeGitHub], None] | None = None,
        query: str | None = None,
    ) -> Fault:
        if kind not in ("status", "drop", "drop-after", "before"):
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(method, path, kind, status, message, dict(headers or {}), times, callback, query)
        self.faults.append(fault)
        return fault

    def secondary_limit(
        self,
        method: str = "*",
        path: str = "",
        *,
        status: int = 403,
        retry_after: int | str | None = 60,
        times: int = 1,
    ) -> Fault:
        """A secondary rate limit: 403 or 429 with a message saying so, and ``Retry-After`` in seconds
        (or an HTTP-date string, or none: the docs then say wait at least a minute)."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return self.fail(method, path, status=status, message=SECONDARY_LIMIT_MESSAGE, headers=headers, times=times)

    def primary_limit(
        self, method: str = "*", path: str = "", *, status: int = 403, reset_in: float = 60, times: int = 1
    ) -> Fault:
        """The primary rate limit spent: 403 or 429, ``x-ratelimit-remaining: 0``, ``x-ratelimit-reset``
        in UTC epoch seconds (the rate-limit page, "Exceeding the rate limit")."""
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": str(int(time.time() + reset_in)),
            "x-ratelimit-resource": "core",
        }
        return self.fail(method, path, status=status, headers=headers, times=times)

    def conflict(self, method: str, path: str, *, message: str | None = None, times: int = 1) -> Fault:
        """409 Conflict with GitHub's message for the endpoint (see :meth:`_fault_message`)."""
        return self.fail(method, path, status=409, message=message, times=times)

    def requests(self, method: str | None = None, path: str = "") -> list[tuple[str, str, int | str]]:
        return [r for r in self.log if (method is None or r[0] == method) and re.search(path, r[1])]

    def commit_files(self, ref_or_sha: str) -> dict[str, bytes]:
        """The files at a commit (or at a branch name), for assertions."""
        sha = self.refs.get(f"refs/heads/{ref_or_sha}", ref_or_sha)
        tree = self.trees[self.commits[sha]["tree"]]
        return {path: self.blobs[blob] for path, blob in tree.items()}

    def add_commit(self, sha: str, parents: list[str], *, branch: str | None = None) -> str:
        """Mirror a commit of the code's history (an empty tree), e.g. for the compare API;
        ``branch`` then points at it."""
        with self._lock:
            self.commits[sha] = {"tree": self.store_tree({}), "parents": list(parents), "message": "code"}
            if branch is not None:
                self.refs[f"refs/heads/{branch}"] = sha
            return sha

    def push_commit(self, branch: str, files: dict[str, bytes], message: str = "concurrent push") -> str:
        """Advance (or create) a branch by one commit adding ``files``, as another writer would."""
        with self._lock:
            ref = f"refs/heads/{branch}"
            parent = self.refs.get(ref)
            entries = dict(self.trees[self.commits[parent]["tree"]]) if parent else {}
            for path, data in files.items():
                blob = git_sha("blob", data)
                self.blobs[blob] = data
                entries[path] = blob
            tree = self.store_tree(entries)
            commit = self.store_commit(tree, [parent] if parent else [], message)
            self.refs[ref] = commit
            return commit

    # -- server ----------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        self._local.start()
        return self

    def stop(self) -> None:
        self._local.stop()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ------------------------------------------------------------------

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        method = handler.command
        split = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = split.path
        if self.prefix and path.startswith(self.prefix + "/"):
            path = path[len(self.prefix) :]
        shown = path + (f"?{split.query}" if split.query else "")  # as requested, for assertions
        alias = re.match(rf"^/repositories/{self.repo_id}(/.*)?$", path)
        if alias:  # GitHub's Link headers use /repositories/{id}/...: the same resource
            path = f"/repos/{self.full_name}{alias.group(1) or ''}"
        try:
            status, body, headers = self._dispatch(handler, method, path, split.query, raw)
        except _Drop:
            self.log.append((method, shown, "drop"))
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        self.log.append((method, shown, status))
        payload = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if payload:
            handler.wfile.write(payload)

    def _dispatch(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        method: str,
        path: str,
        raw_query: str,
        raw: bytes,
    ) -> tuple[int, Any, dict[str, str]]:
        """Check the request, then apply a fault, then handle it; the answer is checked as well."""
        query = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
        matched = find_route(method, path)
        request: Request | None = None
        invalid: str | None = None
        if matched is None:
            self.violations.append(f"{method} {path}: no such endpoint in the OpenAPI subset")
        else:
            route, params = matched
            content_type = handler.headers.get("Content-Type") or ""
            request, invalid = check_request(
                route.spec_path(params), method, query, list(handler.headers.items()), raw, content_type
            )
            if invalid is not None:
                self.violations.append(f"{method} {route.template}: {invalid}")

        fault = self._take_fault(method, path, raw_query)
        if fault is not None and fault.kind == "drop":
            raise _Drop
        if fault is not None and fault.kind == "status":
            result = self._fault_answer(fault, method, path, raw)
        else:
            if fault is not None and fault.kind == "before" and fault.callback is not None:
                fault.callback(self)
            result = self._answer(handler, matched, invalid, query, raw)

        if isinstance(result.body, dict) and result.status >= 400:  # GitHub names the operation's page
            page = docs_url(matched[0].template, matched[0].method) if matched is not None else GENERIC_DOCS
            result.body.setdefault("documentation_url", page)
        if matched is not None and request is not None:
            route = matched[0]
            problem = check_response(request, route.template, route.method, result.status, result.body, result.headers)
            if problem is not None:
                self.violations.append(
                    f"fake answered {route.method} {route.template} {result.status} off-spec: {problem}"
                )
        if fault is not None and fault.kind == "drop-after":
            raise _Drop
        return result.status, result.body, result.headers

    def _answer(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        matched: tuple[Route, dict[str, str]] | None,
        invalid: str | None,
        query: list[tuple[str, str]],
        raw: bytes,
    ) -> Result:
        """What GitHub answers a request (no fault): auth, permissions, rate limit, then the endpoint."""
        account: Account | None = None
        try:
            account = self._auth(handler.headers.get("Authorization", ""))
            if matched is None:
                raise error(404, "Not Found")
            route, params = matched
            if "owner" in params and (params["owner"], params["repo"]) != (self.owner, self.name):
                raise error(404, "Not Found")
            if invalid is not None:
                raise error(400, f"fake: request does not match the OpenAPI subset: {invalid}")
            self._count(account)
            if route.method != "GET" and not account.can_write:
                # A read-only token (a fork pull request's GITHUB_TOKEN: "Maximum access for pull requests
                # from public forked repositories: read", docs.github.com/en/actions/reference/
                # github_token-reference) is refused on every write.
                raise error(403, account.refusal)
            body = json.loads(raw) if raw else None
            with self._lock:
                result = route.handler(self, account, params, dict(query), body)
        except Reply as reply:
            result = Result(reply.status, reply.body, dict(reply.headers))
        if account is not None:
            result.headers = {**self._rate_headers(account), **result.headers}
        return result

    def _take_fault(self, method: str, path: str, query: str = "") -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if (
                    fault.times > 0
                    and fault.method in ("*", method)
                    and re.search(fault.path, path)
                    and (fault.query is None or re.search(fault.query, query))
                ):
                    fault.times -= 1
                    return fault
        return None

    def _fault_answer(self, fault: Fault, method: str, path: str, raw: bytes) -> Result:
        message = fault.message if fault.message is not None else self._fault_message(fault, path, raw)
        body: dict[str, Any] = {"message": message, "status": str(fault.status)}
        headers = {k.lower(): v for k, v in fault.headers.items()}
        if fault.status in (403, 429) and ("retry-after" in headers or headers.get("x-ratelimit-remaining") == "0"):
            body["documentation_url"] = RATE_LIMITS_DOCS
        return Result(fault.status, body, dict(fault.headers))

    def _fault_message(self, fault: Fault, path: str, raw: bytes) -> str:
        """GitHub's message for an injected answer that names none."""
        headers = {k.lower(): v for k, v in fault.headers.items()}
        if fault.status in (403, 429) and headers.get("x-ratelimit-remaining") == "0":
            # observed wording: "API rate limit exceeded for user ID 1." / "... for installation ID 1."
            return "API rate limit exceeded for user ID 1."
        if fault.status in (403, 429):
            return SECONDARY_LIMIT_MESSAGE
        if fault.status == 409 and "/contents/" in path:
            # "If you use this endpoint and the Delete a file endpoint in parallel, the concurrent requests
            # will conflict and you will receive errors" (docs.github.com/en/rest/repos/contents). The wording
            # "refs/heads/<branch> is at <sha> but expected <sha>" is observed (elifesciences/elife-bot#378).
            try:
                branch = json.loads(raw).get("branch") or self.default_branch
            except (ValueError, AttributeError):
                branch = self.default_branch
            tip = self.refs.get(f"refs/heads/{branch}", "0" * 40)
            return f"refs/heads/{branch} is at {tip} but expected {git_sha('commit', tip.encode())}"
        if fault.status == 409:
            return "Git Repository is empty."  # fake_github_routes.EMPTY_REPOSITORY
        return SERVER_ERRORS.get(fault.status, "Server Error")

    def _auth(self, header: str) -> Account:
        scheme, _, token = header.partition(" ")
        account = self.accounts.get(token) if scheme.lower() in ("token", "bearer") else None
        if account is None:
            raise error(401, "Bad credentials", documentation_url=GENERIC_DOCS)
        return account

    def _count(self, account: Account) -> None:
        """Count the request against the token's primary rate limit; refuse it once spent."""
        with self._lock:
            if time.time() >= self.rate_window_reset:
                self.rate_window_reset = int(time.time()) + 3600
                for other in self.accounts.values():
                    other.used = 0
            if account.used >= account.limit:
                # the rate-limit page: "403 or 429 response, and the x-ratelimit-remaining header will be 0"
                who = "installation" if account.installation else "user"
                reply = error(403, f"API rate limit exceeded for {who} ID {account.id}.")
                reply.body["documentation_url"] = RATE_LIMITS_DOCS
                reply.headers = self._rate_headers(account)
                raise reply
            account.used += 1

    def _rate_headers(self, account: Account) -> dict[str, str]:
        """The x-ratelimit-* headers GitHub sends with each response (the rate-limit page)."""
        return {
            "x-ratelimit-limit": str(account.limit),
            "x-ratelimit-remaining": str(max(0, account.limit - account.used)),
            "x-ratelimit-used": str(account.used),
            "x-ratelimit-reset": str(self.rate_window_reset),
            "x-ratelimit-resource": "core",
        }

    # -- helpers for handlers --------------------------------------------------------------

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def tick(self) -> int:
        self._clock += 1
        return self._clock

    def api(self, path: str) -> str:
        return f"{self.url}{path}"

    def repo_api(self, path: str = "") -> str:
        return self.api(f"/repos/{self.full_name}{path}")

    def html(self, path: str = "") -> str:
        return f"{self.server_url}/{self.full_name}{path}"

    def user_json(self, login: str, type: str, user_id: int, template: dict[str, Any]) -> dict[str, Any]:
        user = dict(template)
        html = (
            f"{self.server_url}/apps/{login.removesuffix('[bot]')}" if type == "Bot" else f"{self.server_url}/{login}"
        )
        user.update(
            login=login, id=user_id, type=type, url=self.api(f"/users/{urllib.parse.quote(login)}"), html_url=html
        )
        return user

    def comment_json(self, cid: int, template: dict[str, Any]) -> dict[str, Any]:
        c = self.comments[cid]
        out = dict(template)
        out.update(
            id=cid,
            node_id=f"IC_{cid}",
            url=self.repo_api(f"/issues/comments/{cid}"),
            html_url=self.html(f"/pull/{c['issue']}#issuecomment-{cid}"),
            issue_url=self.repo_api(f"/issues/{c['issue']}"),
            body=c["body"],
            user=self.user_json(c["login"], c["type"], c["user_id"], template["user"]),
        )
        return out

    def store_tree(self, entries: dict[str, str]) -> str:
        sha = git_sha("tree", json.dumps(sorted(entries.items())).encode())
        self.trees[sha] = dict(entries)
        return sha

    def store_commit(self, tree: str, parents: list[str], message: str) -> str:
        data = json.dumps([tree, parents, message, self.tick()]).encode()
        sha = git_sha("commit", data)
        self.commits[sha] = {"tree": tree, "parents": list(parents), "message": message}
        return sha

    _store_tree = store_tree  # the names tests used before
    _store_commit = store_commit

    def ancestors(self, sha: str) -> Iterator[str]:
        todo = [sha]
        while todo:
            current = todo.pop()
            yield current
            todo.extend(self.commits.get(current, {}).get("parents", []))

    def paginate(self, items: list[Any], query: dict[str, str], path: str) -> tuple[list[Any], dict[str, str]]:
        """One page of ``items`` and its ``Link`` header. ``per_page`` is "max 100" (the contract's
        per-page parameter; docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api)."""
        per_page = min(max(int(query.get("per_page", "30")), 1), 100)
        page = max(int(query.get("page", "1")), 1)
        last = max(1, -(-len(items) // per_page))
        link = self._link(path, query, page, last)
        return items[(page - 1) * per_page : page * per_page], ({"Link": link} if link else {})

    def _link(self, path: str, query: dict[str, str], page: int, last: int) -> str:
        """GitHub's Link header: absolute /repositories/{id} URLs, prev, next, last, first."""
        base = f"{self.url}/repositories/{self.repo_id}{path}"

        def at(n: int) -> str:
            params = {k: v for k, v in query.items() if k != "page"}
            params["page"] = str(n)
            return f"<{base}?{urllib.parse.urlencode(params)}>"

        parts = []
        if page > 1:
            parts.append(f'{at(page - 1)}; rel="prev"')
        if page < last:
            parts.append(f'{at(page + 1)}; rel="next"')
            parts.append(f'{at(last)}; rel="last"')
        if page > 1:
            parts.append(f'{at(1)}; rel="first"')
        return ", ".join(parts)


TOKEN = "ghp_FAKE0SECRET0TOKEN0do0not0leak0123456"
HEAD_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"  # pull_request.opened.json: PR #2's head


def github_env(fake: FakeGitHub, event: str = "pull_request.opened", **extra: str) -> dict[str, str]:
    """The environment of a GitHub Actions job on ``event``, pointed at the fake."""
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event.split(".")[0],
        "GITHUB_EVENT_PATH": str(EVENTS / f"{event}.json"),
        "GITHUB_API_URL": fake.url,
        "GITHUB_SERVER_URL": fake.server_url,
        "GITHUB_REPOSITORY": fake.full_name,
        "GITHUB_RUN_ID": "42",
        "GITHUB_TOKEN": TOKEN,
    }
    env.update(extra)
    return env


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """A started fake with PR #2 (head ec26c3e) and a write token; no contract violations allowed."""
    fake = FakeGitHub()
    fake.add_token(TOKEN, "cml-bot-user")
    fake.add_pull(2, HEAD_SHA)
    with fake:
        yield fake
    assert not fake.violations, "requests or answers outside the OpenAPI subset:\n" + "\n".join(fake.violations)
