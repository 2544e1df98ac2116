"""A fake Bitbucket Cloud REST API (2.0) on 127.0.0.1: stateful, contract-checked, with faults.

Built from ``tests/contracts/bitbucket/`` (see ``fake_bitbucket_contract.py``); each behaviour that is
not plain storage names its source, and a fact no Atlassian page states is marked "observed" (with
where) or "unconfirmed".

Checking. Every request is checked BEFORE any injected fault, so a request that is then failed or
dropped is checked all the same: against the OpenAPI subset with openapi-core, or, for Code Insights
and the merge-base (outside the subset), against the explicit schemas of the contract module. A
request that does not match is recorded in :attr:`FakeBitbucket.violations` (the ``fake_bitbucket``
fixture fails the test at teardown when there are any) and answered 400. Every JSON answer is
checked too (the README's deviations aside).

What it keeps: one repository (``acme/models``) with pull requests, their comments, build statuses,
downloads, a small git model (commits with whole trees, branches) for ``/src``, Code Insights
reports with their annotations, and the accounts behind tokens.

Tokens (``Authorization`` header):

- ``add_token(token, kind="repository", scopes=...)``: a repository access token, ``Bearer``. It acts
  as a bot user of its own, which ``GET /user`` refuses to name: 401 "Token is invalid or not
  supported for this endpoint." (BCLOUD-23528, whose reporter shows the body).
- ``add_token(token, kind="user", email=...)``: an Atlassian API token, Basic ``email:token``; ``/user``
  answers its account.
- Scopes: writes need the scope the "Repository Access Token permissions" page gives them
  (:func:`required_scope`); a token without it gets 403 "Your credentials lack one or more required
  privilege scopes." with ``detail`` naming granted and required scopes (observed; README).
- The pipeline's authenticating proxy: a request in absolute form for ``http://api.bitbucket.org``
  (what ``curl --proxy http://localhost:29418`` sends) is served as the pipeline, without a token,
  for the Code Insights endpoints only (BCLOUD-21842: "create reports and annotations"; the proxy's
  answer for other endpoints is unconfirmed, here 403). A token sent through it is a violation.

Faults: ``fail(method, path, kind=, status=, headers=, times=)``; ``path`` is a regex searched in the
path after ``/2.0``. Kinds: ``status`` (an error answer, nothing done), ``status-after`` (done, then an
error answer: a proxy's 5xx), ``drop`` (the connection closed before anything is done) and
``drop-after`` (done, then the connection closed: "may have been applied").
"""

from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import hashlib
import http.server
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fake_bitbucket_contract import (
    ANNOTATIONS,
    ANNOTATIONS_ANSWER,
    ERROR,
    MERGE_BASE_ANSWER,
    REPORT,
    REPORT_ANSWER,
    check,
    check_request,
    check_response,
)
from local_server import LocalServer

WORKSPACE, SLUG = "acme", "models"
TOKEN = "ATCTT3xFfGN0FAKE0repository0access0token0do0not0leak"
API_TOKEN = "ATATT3xFfGF0FAKE0api0token0do0not0leak0000"
HEAD_SHA = "5d1ed32e3f0a6d0c9f4a8a1c3b3e2b7b9c4d5e6f"
BASE_SHA = "1f0b0a1e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"
PR_ID = 7
COMMENT_LIMIT = 32_768  # "a PR comment body over 32,768 characters is refused (400, atlantis#1251)"
ANNOTATIONS_PER_REPORT = 1000
BAD_TOKEN = "Token is invalid, expired, or not supported for this endpoint."  # observed: bkt#174
SCOPE_ERROR = "Your credentials lack one or more required privilege scopes."
_EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)

READ_SCOPES = frozenset({"repository", "pullrequest"})
WRITE_SCOPES = frozenset({"repository", "repository:write", "pullrequest", "pullrequest:write"})


@dataclass
class Account:
    uuid: str  # "{...}", as Bitbucket writes it
    display_name: str
    kind: str  # "repository" (access token), "user" (API token), "pipeline" (the proxy)
    scopes: frozenset[str] = WRITE_SCOPES
    email: str | None = None
    account_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        user: dict[str, Any] = {
            "type": "user",
            "uuid": self.uuid,
            "display_name": self.display_name,
            "nickname": self.display_name,
            "links": {"avatar": {"href": f"https://avatar-management.example/{self.uuid.strip('{}')}.png"}},
        }
        if self.account_id is not None:
            user["account_id"] = self.account_id
        return user


@dataclass
class Fault:
    method: str  # "POST", ... or "*"
    path: str  # regex searched in the path after /2.0
    kind: str = "status"  # status | status-after | drop | drop-after
    status: int = 502
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    message: str = "Bad Gateway"


@dataclass(frozen=True)
class Logged:
    method: str
    path: str  # after /2.0, as sent (percent-encoded), without the query
    query: str
    status: int | str  # or "drop"
    via: str  # the account's kind, "proxy", or "none"


@dataclass
class Result:
    status: int
    body: Any = None  # JSON, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class Reply(Exception):
    def __init__(self, status: int, message: str = "", detail: Any = None, *, raw: bytes | None = None) -> None:
        super().__init__(status)
        error: dict[str, Any] = {"message": message}
        if detail is not None:
            error["detail"] = detail
        self.result = (
            Result(status, {"type": "error", "error": error})
            if raw is None
            else Result(status, raw, content_type="text/html; charset=utf-8")
        )


class _Drop(Exception):
    pass


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it: who sends it, the path parameters (decoded), the query, the body."""

    account: Account
    p: dict[str, str]
    q: dict[str, str]
    raw: bytes
    content_type: str


Handler = Callable[["FakeBitbucket", Call], Result]
R = "/repositories/{workspace}/{repo_slug}"
_SLASHED = {"path"}  # parameters that may hold '/' unencoded


@dataclass
class Route:
    method: str
    template: str
    handler: Handler
    request_schema: dict[str, Any] | None = None  # explicit routes (outside the OpenAPI subset)
    answer_schema: dict[str, Any] | None = None
    explicit: bool = False
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        pattern = re.sub(
            r"\{(\w+)\}",
            lambda m: f"(?P<{m.group(1)}>.+)" if m.group(1) in _SLASHED else f"(?P<{m.group(1)}>[^/]+)",
            self.template,
        )
        self.regex = re.compile(f"^{pattern}$")

    def spec_path(self, params: dict[str, str]) -> str:
        return "/2.0" + re.sub(r"\{(\w+)\}", lambda m: urllib.parse.quote(params[m.group(1)], safe=""), self.template)


ROUTES: list[Route] = []


def route(
    method: str,
    template: str,
    *,
    request: dict[str, Any] | None = None,
    answer: dict[str, Any] | None = None,
    explicit: bool = False,
) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append(Route(method, template, fn, request, answer, explicit))
        return fn

    return register


def required_scope(method: str, template: str) -> str:
    """What a token needs ("Repository Access Token permissions": pull requests Write "create, comment,
    approve, decline and merge"; repositories Write "modify repositories, including the source code").
    The description asks only ``pullrequest`` for comment writes and ``repository`` for statuses; the
    fake follows the permissions page for comments and the description for statuses (no page says
    otherwise). Code Insights with a token: ``repository:write`` (unconfirmed)."""
    if template == "/user":
        return "account"
    if "/pullrequests" in template:
        return "pullrequest" if method == "GET" else "pullrequest:write"
    if method == "GET" or template.endswith("/statuses/build"):
        return "repository"
    return "repository:write"


class FakeBitbucket:
    """One fake Bitbucket Cloud with one repository, served over HTTP on 127.0.0.1."""

    web = "https://bitbucket.org"

    def __init__(self, workspace: str = WORKSPACE, slug: str = SLUG) -> None:
        self.workspace, self.slug = workspace, slug
        self.accounts: dict[str, Account] = {}  # Authorization header value -> account
        self.pulls: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}
        self.statuses: dict[tuple[str, str], dict[str, Any]] = {}
        self.downloads: dict[str, bytes] = {}
        self.commits: dict[str, dict[str, Any]] = {}  # sha -> {parents, files, message}
        self.branches: dict[str, str] = {}
        self.main_branch = "main"
        self.reports: dict[tuple[str, str], dict[str, Any]] = {}
        self.annotations: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.commit_links_indexed = True  # False: the "Pull Request Commit Links" app has not indexed
        self.hostile_next: str | None = None  # a host to send the `next` links to
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self.violations: list[str] = []
        self.pipeline = Account("{7a3c8f2e-pipeline-proxy}", "Bitbucket Pipelines", "pipeline")
        self._next_id = 1000
        self._tick = 0
        self._lock = threading.RLock()
        self._local = LocalServer(self._handle)
        main = self.add_commit({"README.md": b"models\n"}, [], branch=self.main_branch)
        self.root_commit = main

    # -- setup -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self._local.address}/2.0"

    @property
    def proxy(self) -> str:
        """The address to use as the pipeline's authenticating proxy."""
        return self.url.removesuffix("/2.0")

    @property
    def full_name(self) -> str:
        return f"{self.workspace}/{self.slug}"

    def add_token(
        self,
        token: str,
        name: str = "cml-bot",
        *,
        kind: str = "repository",
        scopes: frozenset[str] = WRITE_SCOPES,
        email: str | None = None,
    ) -> Account:
        number = len(self.accounts) + 1
        uuid = "{" + f"{number:08x}-0b0b-4c4c-8d8d-{hashlib.sha256(token.encode()).hexdigest()[:12]}" + "}"
        if kind == "repository":
            account = Account(uuid, name, kind, scopes)
            self.accounts[f"Bearer {token}"] = account
        elif kind == "user":
            account = Account(uuid, name, kind, scopes, email or f"{name}@example.com", f"557058:{number:032x}")
            basic = base64.b64encode(f"{account.email}:{token}".encode()).decode()
            self.accounts[f"Basic {basic}"] = account
        else:
            raise ValueError(f"unknown token kind {kind!r}")
        return account

    def add_commit(
        self, files: dict[str, bytes], parents: list[str], *, branch: str | None = None, sha: str | None = None
    ) -> str:
        """A commit whose tree is ``files`` (the whole tree); ``branch`` then points at it."""
        with self._lock:
            self._tick += 1
            sha = (
                sha or hashlib.sha1(f"{self._tick}{sorted(files)}{parents}".encode(), usedforsecurity=False).hexdigest()
            )
            self.commits[sha] = {"parents": list(parents), "files": dict(files), "message": "code"}
            if branch is not None:
                self.branches[branch] = sha
            return sha

    def add_pull(
        self, number: int, head: str, *, source: str = "feature", destination: str = "main", state: str = "OPEN"
    ) -> None:
        self.pulls[number] = {"id": number, "head": head, "source": source, "destination": destination, "state": state}

    def add_comment(self, pull: int, raw: str, author: Account) -> int:
        with self._lock:
            cid = self._new_id()
            self.comments[cid] = {"pull": pull, "raw": raw, "author": author, "created": self._now(), "deleted": False}
            self.comments[cid]["updated"] = self.comments[cid]["created"]
            return cid

    def comments_on(self, pull: int) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(c, id=cid) for cid, c in sorted(self.comments.items()) if c["pull"] == pull and not c["deleted"]
            ]

    def fail(
        self,
        method: str,
        path: str,
        kind: str = "status",
        *,
        status: int = 502,
        headers: dict[str, str] | None = None,
        times: int = 1,
        message: str = "Bad Gateway",
    ) -> Fault:
        if kind not in ("status", "status-after", "drop", "drop-after"):
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(method, path, kind, status, dict(headers or {}), times, message)
        self.faults.append(fault)
        return fault

    def requests(self, method: str | None = None, path: str = "") -> list[Logged]:
        return [r for r in self.log if (method is None or r.method == method) and re.search(path, r.path)]

    def files_at(self, branch_or_sha: str) -> dict[str, bytes]:
        return dict(self.commits[self.branches.get(branch_or_sha, branch_or_sha)]["files"])

    # -- server ----------------------------------------------------------------------------

    def start(self) -> FakeBitbucket:
        self._local.start()
        return self

    def stop(self) -> None:
        self._local.stop()

    def __enter__(self) -> FakeBitbucket:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ------------------------------------------------------------------

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        method = handler.command
        split = urllib.parse.urlsplit(handler.path)
        proxied = bool(split.scheme)  # absolute form: a request through the pipeline's proxy
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if proxied and (split.scheme, split.netloc) != ("http", "api.bitbucket.org"):
            self.violations.append(f"{method} {handler.path}: the proxy only serves http://api.bitbucket.org")
        path = split.path.removeprefix("/2.0") if split.path.startswith("/2.0/") else None
        via = "proxy" if proxied else "none"
        try:
            result, via = self._dispatch(handler, method, path, split.query, raw, proxied)
        except _Drop:
            self.log.append(Logged(method, path or split.path, split.query, "drop", via))
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        self.log.append(Logged(method, path or split.path, split.query, result.status, via))
        payload = (
            result.body
            if isinstance(result.body, bytes)
            else b""
            if result.body is None
            else json.dumps(result.body).encode()
        )
        handler.send_response(result.status)
        if payload:
            handler.send_header("Content-Type", result.content_type)
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in result.headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if payload:
            handler.wfile.write(payload)

    def _dispatch(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        method: str,
        path: str | None,
        raw_query: str,
        raw: bytes,
        proxied: bool,
    ) -> tuple[Result, str]:
        """Check the request, then apply a fault, then answer it; the answer is checked as well."""
        query = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
        content_type = handler.headers.get("Content-Type") or ""
        matched = self._route(method, path)
        invalid: str | None = None
        checked = None
        if matched is None:
            invalid = f"{method} {path}: no such endpoint in the contract"
        elif matched[0].explicit:
            invalid = self._check_explicit(matched[0], raw, content_type)
        else:
            checked, invalid = check_request(
                matched[0].spec_path(matched[1]), method, query, list(handler.headers.items()), raw, content_type
            )
        if invalid is not None:
            self.violations.append(f"{method} {matched[0].template if matched else path}: {invalid}")
        if proxied and handler.headers.get("Authorization"):
            self.violations.append(f"{method} {path}: a token was sent through the pipeline's proxy")

        fault = self._take_fault(method, path or "")
        if fault is not None and fault.kind == "drop":
            raise _Drop
        via = "proxy" if proxied else "none"
        if fault is not None and fault.kind == "status":
            result = Reply(fault.status, fault.message).result
            result.headers.update(fault.headers)
        else:
            result, via = self._answer(handler, matched, invalid, dict(query), raw, content_type, proxied)
            if fault is not None and fault.kind == "status-after":
                result = Reply(fault.status, fault.message).result
                result.headers.update(fault.headers)
        self._check_answer(method, matched, checked, result)
        if fault is not None and fault.kind == "drop-after":
            raise _Drop
        return result, via

    def _route(self, method: str, path: str | None) -> tuple[Route, dict[str, str]] | None:
        for candidate in ROUTES if path is not None else ():
            match = candidate.regex.match(path or "") if candidate.method == method else None
            if match:
                return candidate, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
        return None

    def _check_explicit(self, target: Route, raw: bytes, content_type: str) -> str | None:
        if target.request_schema is None:
            return None
        if not content_type.startswith("application/json"):
            return f"expected a JSON body, got {content_type or 'none'}"
        try:
            return check(target.request_schema, json.loads(raw))
        except ValueError:
            return "the body is not JSON"

    def _check_answer(
        self, method: str, matched: tuple[Route, dict[str, str]] | None, checked: Any, result: Result
    ) -> None:
        if matched is None or isinstance(result.body, bytes) or result.status in (204, 302):
            return  # files, HTML error pages (README deviations), empty answers
        target = matched[0]
        if result.status >= 400:
            problem = check(ERROR, result.body)
        elif target.explicit:
            problem = check(target.answer_schema, result.body) if target.answer_schema else None
        elif "/downloads" in target.template or target.template.endswith("/src"):
            problem = None  # DEVIATIONS["downloads"], DEVIATIONS["src-post"]
        else:
            problem = check_response(checked, result.status, result.body, result.headers)
        if problem is not None:
            self.violations.append(f"fake answered {method} {target.template} {result.status} off-contract: {problem}")

    def _answer(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        matched: tuple[Route, dict[str, str]] | None,
        invalid: str | None,
        query: dict[str, str],
        raw: bytes,
        content_type: str,
        proxied: bool,
    ) -> tuple[Result, str]:
        via = "proxy" if proxied else "none"
        try:
            account = self.pipeline if proxied else self.accounts.get(handler.headers.get("Authorization") or "")
            if account is None:
                raise Reply(401, BAD_TOKEN)
            via = account.kind if not proxied else "proxy"
            if matched is None:
                raise Reply(404, "Resource not found")
            target, params = matched
            if proxied and "/reports/" not in target.template:
                raise Reply(403, "the pipeline's proxy does not authorise this endpoint (unconfirmed)")
            if "workspace" in params and (params["workspace"], params["repo_slug"]) != (self.workspace, self.slug):
                raise Reply(404, "Repository not found")
            if invalid is not None:
                raise Reply(400, f"fake: the request does not match the contract: {invalid}")
            if target.template == "/user" and account.kind == "repository":
                raise Reply(401, "Token is invalid or not supported for this endpoint.")  # BCLOUD-23528
            needed = required_scope(target.method, target.template)
            if not proxied and needed not in account.scopes and needed != "account":
                raise Reply(403, SCOPE_ERROR, {"required": [needed], "granted": sorted(account.scopes)})
            with self._lock:
                return target.handler(self, Call(account, params, query, raw, content_type)), via
        except Reply as reply:
            return reply.result, via

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method in ("*", method) and re.search(fault.path, path):
                    fault.times -= 1
                    return fault
        return None

    # -- helpers for handlers --------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _now(self) -> str:
        self._tick += 1
        return (_EPOCH + timedelta(seconds=self._tick)).isoformat().replace("+00:00", "Z")

    def api(self, path: str) -> str:
        return f"{self.url}{path}"

    def repo_api(self, path: str = "") -> str:
        return self.api(f"/repositories/{self.full_name}{path}")

    def page(self, items: list[Any], query: dict[str, str], path: str) -> dict[str, Any]:
        """One page of ``items`` as Bitbucket pages lists: ``pagelen`` 10 by default, 100 at most,
        ``next`` an absolute URL while there are more."""
        pagelen = min(max(int(query.get("pagelen") or 10), 1), 100)
        number = max(int(query.get("page") or 1), 1)
        body: dict[str, Any] = {
            "values": items[(number - 1) * pagelen : number * pagelen],
            "page": number,
            "pagelen": pagelen,
            "size": len(items),
        }
        if number * pagelen < len(items):
            following = urllib.parse.urlencode({**query, "page": str(number + 1)})
            base = self.api(path) if self.hostile_next is None else f"{self.hostile_next}/2.0{path}"
            body["next"] = f"{base}?{following}"
        return body

    def comment_json(self, cid: int) -> dict[str, Any]:
        c = self.comments[cid]
        return {
            "type": "pullrequest_comment",
            "id": cid,
            "created_on": c["created"],
            "updated_on": c["updated"],
            "content": {"type": "rendered", "raw": c["raw"], "markup": "markdown"},
            "user": c["author"].as_json(),
            "deleted": c["deleted"],
            "links": {
                "self": {"href": self.repo_api(f"/pullrequests/{c['pull']}/comments/{cid}")},
                "html": {"href": f"{self.web}/{self.full_name}/pull-requests/{c['pull']}#comment-{cid}"},
            },
        }

    def pull_json(self, number: int) -> dict[str, Any]:
        pull = self.pulls[number]

        def end(branch: str, sha: str) -> dict[str, Any]:
            # Bitbucket abbreviates these hashes to 12 characters (observed: sfdx-hardis's bitbucket.ts)
            return {
                "branch": {"name": branch},
                "commit": {"hash": sha[:12]},
                "repository": {"type": "repository", "full_name": self.full_name},
            }

        return {
            "type": "pullrequest",
            "id": number,
            "title": f"Pull request {number}",
            "state": pull["state"],
            "source": end(pull["source"], pull["head"]),
            "destination": end(pull["destination"], self.branches.get(pull["destination"], self.root_commit)),
            "links": {"html": {"href": f"{self.web}/{self.full_name}/pull-requests/{number}"}},
        }

    def resolve(self, revision: str) -> str | None:
        sha = self.branches.get(revision, revision)
        return sha if sha in self.commits else None

    def ancestors(self, sha: str) -> list[str]:
        seen: list[str] = []
        todo = [sha]
        while todo:
            current = todo.pop(0)
            if current not in seen and current in self.commits:
                seen.append(current)
                todo.extend(self.commits[current]["parents"])
        return seen


# -- the user ------------------------------------------------------------------------------------


@route("GET", "/user")
def _user(fake: FakeBitbucket, call: Call) -> Result:
    return Result(200, {**call.account.as_json(), "account_status": "active", "created_on": "2020-01-01T00:00:00Z"})


# -- pull requests and comments ------------------------------------------------------------------


def _pull(fake: FakeBitbucket, p: dict[str, str]) -> int:
    number = int(p["pull_request_id"]) if p["pull_request_id"].isdigit() else -1
    if number not in fake.pulls:
        raise Reply(404, "Pull request not found")
    return number


@route("GET", R + "/pullrequests/{pull_request_id}")
def _get_pull(fake: FakeBitbucket, call: Call) -> Result:
    return Result(200, fake.pull_json(_pull(fake, call.p)))


@route("GET", R + "/commit/{commit}/pullrequests")
def _commit_pulls(fake: FakeBitbucket, call: Call) -> Result:
    # "404: Either the repository does not exist, or pull request commit links have not yet been indexed."
    if not fake.commit_links_indexed:
        raise Reply(404, "Pull request commit links have not been indexed for this repository")
    sha = call.p["commit"]
    holding = [
        n
        for n, pull in sorted(fake.pulls.items())
        if sha in fake.ancestors(pull["head"]) or pull["head"].startswith(sha)
    ]
    path = f"/repositories/{fake.full_name}/commit/{sha}/pullrequests"
    return Result(200, fake.page([fake.pull_json(n) for n in holding], call.q, path))


@route("GET", R + "/pullrequests/{pull_request_id}/comments")
def _list_comments(fake: FakeBitbucket, call: Call) -> Result:
    number = _pull(fake, call.p)
    # Deleted comments stay listed with "deleted": true (their replies keep a parent).
    ids = [cid for cid, c in sorted(fake.comments.items()) if c["pull"] == number]
    path = f"/repositories/{fake.full_name}/pullrequests/{number}/comments"
    return Result(200, fake.page([fake.comment_json(cid) for cid in ids], call.q, path))


def _raw_content(raw: bytes) -> str:
    body = json.loads(raw)
    text = body.get("content", {}).get("raw") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text:
        raise Reply(400, "content.raw: This field is required.")
    if len(text) > COMMENT_LIMIT:
        # Django's own 400 page, not JSON (observed: atlantis#1251); DEVIATIONS["too-long"]
        raise Reply(400, raw=b"<h1>Bad Request (400)</h1>")
    return text


@route("POST", R + "/pullrequests/{pull_request_id}/comments")
def _add_comment(fake: FakeBitbucket, call: Call) -> Result:
    cid = fake.add_comment(_pull(fake, call.p), _raw_content(call.raw), call.account)
    return Result(
        201,
        fake.comment_json(cid),
        {"Location": fake.repo_api(f"/pullrequests/{call.p['pull_request_id']}/comments/{cid}")},
    )


def _own_comment(fake: FakeBitbucket, call: Call, what: str) -> int:
    number, cid = _pull(fake, call.p), int(call.p["comment_id"]) if call.p["comment_id"].isdigit() else -1
    comment = fake.comments.get(cid)
    if comment is None or comment["pull"] != number or comment["deleted"]:
        raise Reply(404, "Comment not found")
    # Only a comment's author edits or deletes it (BCLOUD-8725, "Why we're limited to being able to
    # edit / delete only our own comments?"); the message wording is unconfirmed.
    if comment["author"].uuid != call.account.uuid:
        raise Reply(403, f"You can only {what} your own comments.")
    return cid


@route("PUT", R + "/pullrequests/{pull_request_id}/comments/{comment_id}")
def _edit_comment(fake: FakeBitbucket, call: Call) -> Result:
    cid = _own_comment(fake, call, "edit")
    fake.comments[cid].update(raw=_raw_content(call.raw), updated=fake._now())
    return Result(200, fake.comment_json(cid))


@route("DELETE", R + "/pullrequests/{pull_request_id}/comments/{comment_id}")
def _delete_comment(fake: FakeBitbucket, call: Call) -> Result:
    cid = _own_comment(fake, call, "delete")
    fake.comments[cid].update(deleted=True, raw="")
    return Result(204)


# -- statuses and downloads ----------------------------------------------------------------------


@route("POST", R + "/commit/{node}/statuses/build")
def _set_status(fake: FakeBitbucket, call: Call) -> Result:
    body = json.loads(call.raw)
    if fake.resolve(call.p["node"]) is None:
        raise Reply(404, "Commit not found")
    for name in ("key", "state", "url"):  # "url" is required (the reference's request body)
        if not body.get(name):
            raise Reply(400, f"{name}: This field is required.")
    if len(body["key"]) > 40:  # README: "a build status key is at most 40 characters"
        raise Reply(400, "key: Ensure this value has at most 40 characters")
    key = (call.p["node"], body["key"])
    now = fake._now()
    created = fake.statuses.get(key, {}).get("created_on", now)
    status = {
        **{k: v for k, v in body.items() if k != "type"},
        "type": "build",
        "created_on": created,
        "updated_on": now,
    }
    status["uuid"] = "{" + hashlib.sha1(repr(key).encode(), usedforsecurity=False).hexdigest()[:32] + "}"
    fake.statuses[key] = (
        status  # "If the specified key already exists, the existing status object will be overwritten."
    )
    return Result(201, status)


@route("GET", R + "/downloads/{filename}")
def _get_download(fake: FakeBitbucket, call: Call) -> Result:
    if call.p["filename"] not in fake.downloads:
        raise Reply(404, "No such file")
    # A redirect to the file's storage, signed for this reader (observed: bbuseruploads.s3.amazonaws.com)
    return Result(302, None, {"Location": f"https://bbuseruploads.example/{call.p['filename']}?Signature=fake"})


@route("POST", R + "/downloads")
def _upload(fake: FakeBitbucket, call: Call) -> Result:
    files = [
        (name, data)
        for field_name, name, data in _multipart(call.raw, call.content_type)
        if field_name == "files" and name
    ]
    if not files:
        raise Reply(400, "files: no file was uploaded")
    for name, data in files:  # "When a file is uploaded with the same name ... the existing file will be replaced."
        fake.downloads[name] = data
    return Result(201)


# -- source: branches and commits ----------------------------------------------------------------


@route("GET", R + "/refs/branches/{name}")
def _branch(fake: FakeBitbucket, call: Call) -> Result:
    sha = fake.branches.get(call.p["name"])
    if sha is None:
        raise Reply(404, f'Branch "{call.p["name"]}" not found')
    target = {
        "type": "commit",
        "hash": sha,
        "parents": [{"type": "commit", "hash": x} for x in fake.commits[sha]["parents"]],
    }
    return Result(
        200,
        {
            "type": "branch",
            "name": call.p["name"],
            "target": target,
            "links": {"html": {"href": f"{fake.web}/{fake.full_name}/branch/{call.p['name']}"}},
        },
    )


@route("POST", R + "/src")
def _commit(fake: FakeBitbucket, call: Call) -> Result:
    """The reference's POST /src: form fields ``message``, ``branch``, ``parents``; file fields named by
    their path. A new branch without ``parents`` starts from the main branch's tip; with ``parents`` on
    an existing branch, "it is asserted that the parent is the branch's tip ... When this is not the
    case, a 409 is returned." Answers 201 with the new commit in ``Location`` (DEVIATIONS["src-post"])."""
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for name, filename, data in _multipart(call.raw, call.content_type):
        if filename is None and name in ("message", "branch", "parents", "author", "files"):
            fields[name] = data.decode()
        else:
            files[name.lstrip("/")] = data
    branch = fields.get("branch") or fake.main_branch
    tip = fake.branches.get(branch)
    parents = [x for x in fields.get("parents", "").split(",") if x]
    if tip is not None and parents and parents[0] != tip:
        raise Reply(409, f"Branch {branch} has moved: {parents[0]} is not its tip")
    base = parents[0] if parents else tip or fake.branches[fake.main_branch]
    if base not in fake.commits:
        raise Reply(404, f"Commit {base} not found")
    sha = fake.add_commit({**fake.commits[base]["files"], **files}, [base], branch=branch)
    fake.commits[sha].update(
        message=fields.get("message", "Edited online with Bitbucket"), author=call.account.display_name
    )
    return Result(201, None, {"Location": fake.repo_api(f"/commit/{sha}")})


@route("GET", R + "/src/{node}/{path}")
def _read_src(fake: FakeBitbucket, call: Call) -> Result:
    sha = fake.resolve(call.p["node"])
    if sha is None:
        raise Reply(404, f"Commit {call.p['node']} not found")
    files = fake.commits[sha]["files"]
    if not call.p["path"].endswith("/"):
        if call.p["path"] not in files:
            raise Reply(404, f"No such file or directory: {call.p['path']}")
        return Result(200, files[call.p["path"]], content_type="application/octet-stream")  # DEVIATIONS["src-file"]
    folder = call.p["path"]
    entries = [
        {
            "type": "commit_file",
            "path": path,
            "size": len(data),
            "attributes": [],
            "commit": {"type": "commit", "hash": sha},
        }
        for path, data in sorted(files.items())
        if path.startswith(folder) and "/" not in path[len(folder) :]
    ]
    if not entries:
        raise Reply(404, f"No such file or directory: {folder}")
    return Result(
        200,
        fake.page(entries, call.q, f"/repositories/{fake.full_name}/src/{call.p['node']}/{urllib.parse.quote(folder)}"),
    )


@route("GET", R + "/merge-base/{revspec}", answer=MERGE_BASE_ANSWER, explicit=True)
def _merge_base(fake: FakeBitbucket, call: Call) -> Result:
    first, _, second = call.p["revspec"].partition("..")
    a, b = fake.resolve(first), fake.resolve(second)
    if a is None or b is None:
        raise Reply(404, f"Unknown revision in {call.p['revspec']}")
    common = next((sha for sha in fake.ancestors(b) if sha in fake.ancestors(a)), None)
    if common is None:
        raise Reply(404, "No merge base")
    return Result(200, {"type": "commit", "hash": common})


# -- Code Insights (the "Reports" reference; outside the OpenAPI subset) ------------------------

REPORTS = R + "/commit/{commit}/reports/{reportId}"


@route("PUT", REPORTS, request=REPORT, answer=REPORT_ANSWER, explicit=True)
def _put_report(fake: FakeBitbucket, call: Call) -> Result:
    if fake.resolve(call.p["commit"]) is None:
        raise Reply(404, "Commit not found")
    key = (call.p["commit"], call.p["reportId"])
    report = {**json.loads(call.raw), "type": "report", "external_id": call.p["reportId"]}
    report["uuid"] = "{" + hashlib.sha1(repr(key).encode(), usedforsecurity=False).hexdigest()[:32] + "}"
    fake.reports[key] = report
    return Result(200, report)


@route("GET", REPORTS, answer=REPORT_ANSWER, explicit=True)
def _get_report(fake: FakeBitbucket, call: Call) -> Result:
    report = fake.reports.get((call.p["commit"], call.p["reportId"]))
    if report is None:
        raise Reply(404, "Report not found")
    return Result(200, report)


@route("DELETE", REPORTS, explicit=True)
def _delete_report(fake: FakeBitbucket, call: Call) -> Result:
    key = (call.p["commit"], call.p["reportId"])
    if fake.reports.pop(key, None) is None:
        raise Reply(404, "Report not found")
    fake.annotations.pop(key, None)  # a report's annotations go with it
    return Result(204)


@route("POST", REPORTS + "/annotations", request=ANNOTATIONS, answer=ANNOTATIONS_ANSWER, explicit=True)
def _annotate(fake: FakeBitbucket, call: Call) -> Result:
    key = (call.p["commit"], call.p["reportId"])
    if key not in fake.reports:
        raise Reply(404, "Report not found")
    kept = fake.annotations.setdefault(key, {})
    incoming = {item["external_id"]: item for item in json.loads(call.raw)}  # created or updated by external_id
    if len({*kept, *incoming}) > ANNOTATIONS_PER_REPORT:
        raise Reply(400, f"A report can have at most {ANNOTATIONS_PER_REPORT} annotations")
    for external_id, item in incoming.items():
        uuid = "{" + hashlib.sha1(f"{key}{external_id}".encode(), usedforsecurity=False).hexdigest()[:32] + "}"
        kept[external_id] = {**item, "type": "report_annotation", "uuid": uuid}
    return Result(200, [kept[x] for x in incoming])


def _multipart(raw: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    """(field name, file name or None, data) of each part of a multipart/form-data body."""
    if not content_type.startswith("multipart/form-data"):
        raise Reply(400, "expected multipart/form-data")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    parts = []
    for part in message.iter_parts():
        params = dict(part.get_params(header="content-disposition") or [])
        payload = part.get_payload(decode=True)
        parts.append(
            (str(params.get("name", "")), params.get("filename"), payload if isinstance(payload, bytes) else b"")
        )
    return parts


def pipelines_env(fake: FakeBitbucket, *, pull: int | None = PR_ID, **extra: str) -> dict[str, str]:
    """The variables of a Bitbucket Pipelines step (a pull-request pipeline by default), pointed at
    the fake: its API root and its proxy address."""
    env = {
        "CI": "true",
        "BITBUCKET_BUILD_NUMBER": "42",
        "BITBUCKET_WORKSPACE": fake.workspace,
        "BITBUCKET_REPO_SLUG": fake.slug,
        "BITBUCKET_REPO_FULL_NAME": fake.full_name,
        "BITBUCKET_COMMIT": HEAD_SHA,
        "BITBUCKET_BRANCH": "feature",
        "BITBUCKET_GIT_HTTP_ORIGIN": f"http://bitbucket.org/{fake.full_name}",
        "CML_BOT_API_URL": fake.url,
        "CML_BOT_INSIGHTS_PROXY": fake.proxy,
        "CML_BOT_TOKEN": TOKEN,
    }
    if pull is not None:
        env |= {"BITBUCKET_PR_ID": str(pull), "BITBUCKET_PR_DESTINATION_BRANCH": "main"}
    env.update(extra)
    return env


@pytest.fixture
def fake_bitbucket() -> Iterator[FakeBitbucket]:
    """A started fake with pull request #7 (head HEAD_SHA) and a repository access token TOKEN;
    no contract violations allowed."""
    fake = FakeBitbucket()
    fake.add_token(TOKEN, "cml-bot")
    fake.add_commit({"README.md": b"models\n"}, [fake.root_commit], sha=HEAD_SHA, branch="feature")
    fake.add_pull(PR_ID, HEAD_SHA)
    with fake:
        yield fake
    assert not fake.violations, "requests or answers outside the contract:\n" + "\n".join(fake.violations)
