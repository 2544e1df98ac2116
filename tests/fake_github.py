"""A fake GitHub REST API for tests: stateful, spec-checked, with fault injection.

Every request is validated against ``tests/contracts/github/openapi-subset.json`` with
openapi-core; a request that does not match is answered 400 and recorded in
:attr:`FakeGitHub.violations` (the ``fake_github`` fixture asserts there are none at teardown).
Responses start from the spec's own response examples, with ids, urls and bodies overwritten from
the fake's state, and are validated against the spec as well (an off-spec answer is a violation).
Pagination answers with a ``Link`` header spelled as GitHub spells it (absolute
``/repositories/{id}/...`` URLs, ``prev``/``next``/``last``/``first``), which the client must follow.

Faults (:meth:`FakeGitHub.fail`) match a method and a path regex and either answer an error status
(5xx, 403 + Retry-After, ...), drop the connection before handling ("drop") or after handling
("drop-after": the write happened but the client never hears of it), or run a callback first
("before", e.g. to move a ref as a concurrent push would).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import http.server
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

CONTRACTS = Path(__file__).resolve().parent / "contracts"
SPEC_PATH = CONTRACTS / "github" / "openapi-subset.json"
EVENTS = CONTRACTS / "github" / "events"

_SPEC: dict[str, Any] | None = None
_OPENAPI: OpenAPI | None = None
_LOCK = threading.Lock()


def spec() -> tuple[dict[str, Any], OpenAPI]:
    """The parsed spec and its openapi-core object, loaded once per test session."""
    global _SPEC, _OPENAPI
    with _LOCK:
        if _SPEC is None or _OPENAPI is None:
            _SPEC = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
            _OPENAPI = OpenAPI.from_dict(_SPEC)
        return _SPEC, _OPENAPI


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def example(template: str, method: str, status: int) -> Any:
    """A deep copy of the spec's first response example for one operation and status."""
    root, _ = spec()
    response = _resolve(root["paths"][template][method.lower()]["responses"][str(status)], root)
    media = response["content"]["application/json"]
    first = next(iter(media["examples"].values()))
    return copy.deepcopy(_resolve(first, root)["value"])


@dataclass
class Account:
    login: str
    id: int
    type: str = "User"  # "Bot" for github-actions[bot] and apps
    can_write: bool = True
    can_read_user: bool = True  # installation tokens get 403 on GET /user


@dataclass
class Fault:
    method: str  # "POST", ... or "*"
    path: str  # regex searched in the canonical path (/repos/owner/name/...)
    kind: str = "status"  # status | drop | drop-after | before
    status: int = 502
    message: str = "Server Error"
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    callback: Callable[[FakeGitHub], None] | None = None


@dataclass
class _Req:
    """What openapi-core needs to validate a request (its Request protocol)."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str


@dataclass
class _Resp:
    """A response for openapi-core (its Response protocol)."""

    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class _Drop(Exception):
    pass


def git_sha(kind: str, data: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


def _error(status: int, message: str) -> _Reply:
    return _Reply(
        status,
        {"message": message, "documentation_url": "https://docs.github.com/rest", "status": str(status)},
    )


class FakeGitHub:
    """The state of one fake GitHub with one repository, served over HTTP on 127.0.0.1."""

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
        self.accounts: dict[str, Account] = {}
        self.pulls: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}  # id -> {issue, body, login, type}
        self.statuses: list[dict[str, Any]] = []
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[str, dict[str, str]] = {}  # sha -> {path: blob sha} (flat)
        self.commits: dict[str, dict[str, Any]] = {}  # sha -> {tree, parents, message}
        self.refs: dict[str, str] = {}  # "refs/heads/x" -> commit sha
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int | str]] = []  # (method, path?query as sent, status | "drop")
        self.violations: list[str] = []
        self._next_id = 1000
        self._clock = 0
        self._lock = threading.RLock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- setup -----------------------------------------------------------------------------

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def url(self) -> str:
        """The API root the client should use (GITHUB_API_URL)."""
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.prefix}"

    server_url = "https://github.com"

    def add_token(
        self,
        token: str,
        login: str = "cml-bot-user",
        *,
        type: str = "User",
        can_write: bool = True,
        can_read_user: bool = True,
    ) -> Account:
        account = Account(login, 5000 + len(self.accounts), type, can_write, can_read_user)
        self.accounts[token] = account
        return account

    def add_pull(self, number: int, head_sha: str, *, state: str = "open") -> None:
        self.pulls[number] = {"number": number, "head_sha": head_sha, "state": state}

    def add_comment(self, issue: int, body: str, login: str = "someone", type: str = "User") -> int:
        with self._lock:
            cid = self._new_id()
            self.comments[cid] = {
                "issue": issue,
                "body": body,
                "login": login,
                "type": type,
                "created": self._tick(),
            }
            return cid

    def comments_on(self, issue: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c, id=cid) for cid, c in sorted(self.comments.items()) if c["issue"] == issue]

    def fail(self, method: str, path: str, kind: str = "status", **kwargs: Any) -> Fault:
        fault = Fault(method, path, kind, **kwargs)
        self.faults.append(fault)
        return fault

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
            self.commits[sha] = {"tree": self._store_tree({}), "parents": list(parents), "message": "code"}
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
            tree = self._store_tree(entries)
            commit = self._store_commit(tree, [parent] if parent else [], message)
            self.refs[ref] = commit
            return commit

    # -- server ----------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self)

            do_POST = do_PATCH = do_DELETE = do_PUT = do_GET

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

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
        query = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        try:
            status, body, headers = self._dispatch(handler, method, path, query, raw)
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
        query: list[tuple[str, str]],
        raw: bytes,
    ) -> tuple[int, Any, dict[str, str]]:
        fault = self._take_fault(method, path)
        if fault is not None and fault.kind == "drop":
            raise _Drop
        if fault is not None and fault.kind == "status":
            reply = _error(fault.status, fault.message)
            return reply.status, reply.body, dict(fault.headers)
        if fault is not None and fault.kind == "before" and fault.callback is not None:
            fault.callback(self)
        try:
            route, params = self._route(method, path)
            request = self._validate(handler, method, route, params, query, raw)
            account = self._auth(handler.headers.get("Authorization", ""))
            if method != "GET" and not account.can_write:
                raise _error(403, "Resource not accessible by integration")
            body = json.loads(raw) if raw else None
            with self._lock:
                result = route.handler(self, account, params, dict(query), body)
        except _Reply as reply:
            if fault is not None and fault.kind == "drop-after":
                raise _Drop from None
            return reply.status, reply.body, reply.headers
        self._validate_response(request, route, result)
        if fault is not None and fault.kind == "drop-after":
            raise _Drop
        return result.status, result.body, result.headers

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method in ("*", method) and re.search(fault.path, path):
                    fault.times -= 1
                    return fault
        return None

    def _route(self, method: str, path: str) -> tuple[_Route, dict[str, str]]:
        for route in ROUTES:
            if route.method != method:
                continue
            match = route.regex.match(path)
            if match:
                params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                if "owner" in params and (params["owner"], params["repo"]) != (self.owner, self.name):
                    raise _error(404, "Not Found")
                return route, params
        self.violations.append(f"{method} {path}: no such endpoint in the OpenAPI subset")
        raise _error(404, "Not Found")

    def _validate(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        method: str,
        route: _Route,
        params: dict[str, str],
        query: list[tuple[str, str]],
        raw: bytes,
    ) -> _Req:
        # openapi-core does not match a path parameter containing '/': encode it (refs, paths).
        spec_path = re.sub(r"\{(\w+)\}", lambda m: urllib.parse.quote(params[m.group(1)], safe=""), route.template)
        content_type = (handler.headers.get("Content-Type") or "").lower()
        request = _Req(
            host_url="https://api.github.com",
            path=spec_path,
            method=method.lower(),
            parameters=RequestParameters(
                query=ImmutableMultiDict(query), header=Headers(list(handler.headers.items()))
            ),
            body=raw or None,
            content_type=content_type if raw else "",
        )
        _, openapi = spec()
        try:
            openapi.validate_request(request)
        except Exception as exc:
            detail = "; ".join(str(e) for e in getattr(exc, "schema_errors", [])) or str(exc)
            cause = exc.__cause__
            if cause is not None:
                detail += f" ({cause})"
            self.violations.append(f"{method} {route.template}: {detail}")
            raise _error(400, f"fake: request does not match the OpenAPI subset: {detail}") from None
        return request

    def _validate_response(self, request: _Req, route: _Route, result: _Result) -> None:
        """The fake's own answers must match the spec too (they start from its examples)."""
        payload = b"" if result.body is None else json.dumps(result.body).encode()
        response = _Resp(result.status, "application/json" if payload else "", Headers(result.headers), payload)
        _, openapi = spec()
        try:
            openapi.validate_response(request, response)
        except Exception as exc:
            detail = "; ".join(str(e) for e in getattr(exc, "schema_errors", [])) or str(exc)
            self.violations.append(f"fake answered {route.method} {route.template} off-spec: {detail[:500]}")

    def _auth(self, header: str) -> Account:
        scheme, _, token = header.partition(" ")
        account = self.accounts.get(token) if scheme.lower() in ("token", "bearer") else None
        if account is None:
            raise _error(401, "Bad credentials")
        return account

    # -- helpers for handlers --------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def api(self, path: str) -> str:
        return f"{self.url}{path}"

    def repo_api(self, path: str = "") -> str:
        return self.api(f"/repos/{self.full_name}{path}")

    def html(self, path: str = "") -> str:
        return f"{self.server_url}/{self.full_name}{path}"

    def _user(self, login: str, type: str, template: dict[str, Any]) -> dict[str, Any]:
        user = dict(template)
        user.update(login=login, type=type, url=self.api(f"/users/{login}"), html_url=f"{self.server_url}/{login}")
        return user

    def _comment_json(self, cid: int, template: dict[str, Any]) -> dict[str, Any]:
        c = self.comments[cid]
        out = copy.deepcopy(template)
        out.update(
            id=cid,
            node_id=f"IC_{cid}",
            url=self.repo_api(f"/issues/comments/{cid}"),
            html_url=self.html(f"/pull/{c['issue']}#issuecomment-{cid}"),
            issue_url=self.repo_api(f"/issues/{c['issue']}"),
            body=c["body"],
            user=self._user(c["login"], c["type"], out["user"]),
        )
        return out

    def _store_tree(self, entries: dict[str, str]) -> str:
        sha = git_sha("tree", json.dumps(sorted(entries.items())).encode())
        self.trees[sha] = dict(entries)
        return sha

    def _store_commit(self, tree: str, parents: list[str], message: str) -> str:
        data = json.dumps([tree, parents, message, self._tick()]).encode()
        sha = git_sha("commit", data)
        self.commits[sha] = {"tree": tree, "parents": list(parents), "message": message}
        return sha

    def _ancestors(self, sha: str) -> Iterator[str]:
        todo = [sha]
        while todo:
            current = todo.pop()
            yield current
            todo.extend(self.commits.get(current, {}).get("parents", []))

    def _link(self, path: str, query: dict[str, str], page: int, last: int) -> str:
        """GitHub's Link header: absolute /repositories/{id} URLs, prev, next, last, first."""
        base = f"{self.url}/repositories/{self.repo_id}{path.removeprefix(f'/repos/{self.full_name}')}"

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


@dataclass
class _Result:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[FakeGitHub, Account, dict[str, str], dict[str, str], Any], _Result]
_SLASHED = ("ref", "path", "basehead", "branch")  # path parameters that may contain '/'


@dataclass
class _Route:
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


ROUTES: list[_Route] = []


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append(_Route(method, template, fn))
        return fn

    return register


R = "/repos/{owner}/{repo}"


@route("GET", "/user")
def _get_user(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    if not account.can_read_user:
        raise _error(403, "Resource not accessible by integration")
    user = example("/user", "GET", 200)
    user["user_view_type"] = "private"  # as GitHub sends it; the example alone matches both oneOf branches
    user.update(login=account.login, id=account.id, type=account.type, url=fake.api(f"/users/{account.login}"))
    return _Result(200, user)


@route("GET", R + "/issues/{issue_number}/comments")
def _list_comments(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    issue = int(p["issue_number"])
    if issue not in fake.pulls:
        raise _error(404, "Not Found")
    per_page = min(int(q.get("per_page", "30")), 100)
    page = max(int(q.get("page", "1")), 1)
    ids = [cid for cid, c in sorted(fake.comments.items()) if c["issue"] == issue]
    last = max(1, -(-len(ids) // per_page))
    template = example(R + "/issues/{issue_number}/comments", "GET", 200)[0]
    items = [fake._comment_json(cid, template) for cid in ids[(page - 1) * per_page : page * per_page]]
    headers = {}
    link = fake._link(f"/repos/{fake.full_name}/issues/{issue}/comments", q, page, last)
    if link:
        headers["Link"] = link
    return _Result(200, items, headers)


@route("POST", R + "/issues/{issue_number}/comments")
def _create_comment(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    issue = int(p["issue_number"])
    if issue not in fake.pulls:
        raise _error(404, "Not Found")
    if len(b["body"]) > 65536:
        raise _error(422, "Validation Failed: body is too long (maximum is 65536 characters)")
    cid = fake.add_comment(issue, b["body"], account.login, account.type)
    body = fake._comment_json(cid, example(R + "/issues/{issue_number}/comments", "POST", 201))
    return _Result(201, body, {"Location": body["url"]})


@route("GET", R + "/issues/comments/{comment_id}")
def _get_comment(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    cid = int(p["comment_id"])
    if cid not in fake.comments:
        raise _error(404, "Not Found")
    return _Result(200, fake._comment_json(cid, example(R + "/issues/comments/{comment_id}", "GET", 200)))


@route("PATCH", R + "/issues/comments/{comment_id}")
def _update_comment(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    cid = int(p["comment_id"])
    comment = fake.comments.get(cid)
    if comment is None:
        raise _error(404, "Not Found")
    if comment["login"] != account.login:
        raise _error(403, "You cannot edit this comment")
    comment["body"] = b["body"]
    return _Result(200, fake._comment_json(cid, example(R + "/issues/comments/{comment_id}", "PATCH", 200)))


@route("DELETE", R + "/issues/comments/{comment_id}")
def _delete_comment(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    cid = int(p["comment_id"])
    comment = fake.comments.get(cid)
    if comment is None:
        raise _error(404, "Not Found")
    if comment["login"] != account.login:
        raise _error(403, "You cannot delete this comment")
    del fake.comments[cid]
    return _Result(204)


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
    )
    out["head"]["sha"] = pull["head_sha"]
    for team in out.get("requested_teams") or []:
        team.setdefault("type", "organization")  # required by the schema, missing from the example
    return out


@route("GET", R + "/commits/{commit_sha}/pulls")
def _commit_pulls(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    template = example(R + "/commits/{commit_sha}/pulls", "GET", 200)[0]
    numbers = [n for n, pull in sorted(fake.pulls.items()) if pull["head_sha"] == p["commit_sha"]]
    return _Result(200, [_pull_json(fake, n, template) for n in numbers])


@route("GET", R + "/pulls/{pull_number}")
def _get_pull(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    number = int(p["pull_number"])
    if number not in fake.pulls:
        raise _error(404, "Not Found")
    return _Result(200, _pull_json(fake, number, example(R + "/pulls/{pull_number}", "GET", 200)))


@route("POST", R + "/statuses/{sha}")
def _create_status(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    if len(b.get("description") or "") > 140:
        raise _error(422, "Validation Failed: description is too long (maximum is 140 characters)")
    status = example(R + "/statuses/{sha}", "POST", 201)
    status.update(
        id=fake._new_id(),
        url=fake.repo_api(f"/statuses/{p['sha']}"),
        state=b["state"],
        description=b.get("description"),
        target_url=b.get("target_url"),
        context=b.get("context", "default"),
    )
    status["creator"] = fake._user(account.login, account.type, status["creator"])
    fake.statuses.append({"sha": p["sha"], **{k: status[k] for k in ("state", "description", "target_url", "context")}})
    return _Result(201, status)


def _ref_json(fake: FakeGitHub, ref: str, template: dict[str, Any]) -> dict[str, Any]:
    sha = fake.refs[ref]
    out = copy.deepcopy(template)
    out.update(ref=ref, url=fake.repo_api(f"/git/{ref}"), node_id=f"REF_{ref}")
    out["object"] = {"type": "commit", "sha": sha, "url": fake.repo_api(f"/git/commits/{sha}")}
    return out


@route("GET", R + "/git/ref/{ref}")
def _get_ref(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    ref = "refs/" + p["ref"]
    if ref not in fake.refs:
        raise _error(404, "Not Found")
    return _Result(200, _ref_json(fake, ref, example(R + "/git/ref/{ref}", "GET", 200)))


@route("POST", R + "/git/refs")
def _create_ref(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    ref = b["ref"]
    if not ref.startswith("refs/") or ref.count("/") < 2:
        raise _error(422, "Reference name is invalid")
    if ref in fake.refs:
        raise _error(422, "Reference already exists")
    if b["sha"] not in fake.commits:
        raise _error(422, "Object does not exist")
    fake.refs[ref] = b["sha"]
    return _Result(201, _ref_json(fake, ref, example(R + "/git/refs", "POST", 201)))


@route("PATCH", R + "/git/refs/{ref}")
def _update_ref(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    ref = "refs/" + p["ref"]
    if ref not in fake.refs:
        raise _error(422, "Reference does not exist")
    if b["sha"] not in fake.commits:
        raise _error(422, "Object does not exist")
    if not b.get("force") and fake.refs[ref] not in fake._ancestors(b["sha"]):
        raise _error(422, "Update is not a fast forward")
    fake.refs[ref] = b["sha"]
    return _Result(200, _ref_json(fake, ref, example(R + "/git/refs/{ref}", "PATCH", 200)))


@route("POST", R + "/git/blobs")
def _create_blob(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    data = base64.b64decode(b["content"]) if b.get("encoding") == "base64" else b["content"].encode()
    sha = git_sha("blob", data)
    fake.blobs[sha] = data
    blob = example(R + "/git/blobs", "POST", 201)
    blob.update(sha=sha, url=fake.repo_api(f"/git/blobs/{sha}"))
    return _Result(201, blob, {"Location": blob["url"]})


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
                    {
                        "path": folder,
                        "mode": "040000",
                        "type": "tree",
                        "sha": git_sha("tree", folder.encode()),
                    },
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
    out = copy.deepcopy(template)
    out.update(sha=sha, url=fake.repo_api(f"/git/trees/{sha}"), tree=list(listing.values()), truncated=False)
    return out


@route("POST", R + "/git/trees")
def _create_tree(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    entries: dict[str, str] = {}
    if "base_tree" in b:
        if b["base_tree"] not in fake.trees:
            raise _error(422, "base_tree is not a valid tree")
        entries.update(fake.trees[b["base_tree"]])
    for entry in b["tree"]:
        if entry.get("sha") not in fake.blobs:
            raise _error(422, f"tree.sha {entry.get('sha')} is not a valid blob")
        entries[entry["path"]] = entry["sha"]
    sha = fake._store_tree(entries)
    tree = _tree_json(fake, sha, example(R + "/git/trees", "POST", 201), recursive=False)
    return _Result(201, tree, {"Location": tree["url"]})


@route("GET", R + "/git/trees/{tree_sha}")
def _get_tree(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    if p["tree_sha"] not in fake.trees:
        raise _error(404, "Not Found")
    recursive = "recursive" in q
    return _Result(200, _tree_json(fake, p["tree_sha"], example(R + "/git/trees/{tree_sha}", "GET", 200), recursive))


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
def _create_commit(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    if b["tree"] not in fake.trees:
        raise _error(422, "Tree SHA does not exist")
    for parent in b.get("parents", []):
        if parent not in fake.commits:
            raise _error(422, "Parent SHA does not exist or is not a commit object")
    sha = fake._store_commit(b["tree"], b.get("parents", []), b["message"])
    commit = _commit_json(fake, sha, example(R + "/git/commits", "POST", 201))
    return _Result(201, commit, {"Location": commit["url"]})


@route("GET", R + "/git/commits/{commit_sha}")
def _get_commit(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    if p["commit_sha"] not in fake.commits:
        raise _error(404, "Not Found")
    return _Result(200, _commit_json(fake, p["commit_sha"], example(R + "/git/commits/{commit_sha}", "GET", 200)))


CONTENTS_LIMIT = 1024 * 1024  # the contents API's default media type returns files up to 1 MB


def _commit_of(fake: FakeGitHub, name: str) -> str | None:
    """A commit sha from a branch name or a (known) commit sha, as GitHub resolves refs."""
    if f"refs/heads/{name}" in fake.refs:
        return fake.refs[f"refs/heads/{name}"]
    return name if name in fake.commits else None


@route("GET", R + "/contents/{path}")
def _get_content(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    commit = _commit_of(fake, q.get("ref") or fake.default_branch)
    if commit is None:
        raise _error(404, f"No commit found for the ref {q.get('ref') or fake.default_branch}")
    tree = fake.trees[fake.commits[commit]["tree"]]
    path = p["path"].strip("/")
    if path not in tree:
        if any(name.startswith(path + "/") for name in tree):
            fake.violations.append(f"GET contents/{path}: directory listings are not implemented by the fake")
        raise _error(404, "Not Found")
    blob = tree[path]
    data = fake.blobs[blob]
    if len(data) > CONTENTS_LIMIT:
        reply = _error(
            403,
            "This API returns blobs up to 1 MB in size. The requested blob is too large to fetch via the API, "
            "but you can use the Git Data API to request blobs up to 100 MB in size.",
        )
        reply.body["errors"] = [{"resource": "Blob", "field": "data", "code": "too_large"}]
        raise reply
    out = example(R + "/contents/{path}", "GET", 200)
    encoded = base64.b64encode(data).decode("ascii")
    ref = q.get("ref") or fake.default_branch
    out.update(
        type="file",
        encoding="base64",
        size=len(data),
        name=path.rsplit("/", 1)[-1],
        path=path,
        content="\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n",  # as GitHub wraps it
        sha=blob,
        url=fake.repo_api(f"/contents/{path}?ref={ref}"),
        git_url=fake.repo_api(f"/git/blobs/{blob}"),
        html_url=fake.html(f"/blob/{ref}/{path}"),
        download_url=f"https://raw.githubusercontent.com/{fake.full_name}/{ref}/{path}",
    )
    out["_links"] = {"git": out["git_url"], "self": out["url"], "html": out["html_url"]}
    return _Result(200, out)


@route("GET", R + "/branches/{branch}")
def _get_branch(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    ref = f"refs/heads/{p['branch']}"
    if ref not in fake.refs:
        raise _error(404, "Branch not found")
    out = example(R + "/branches/{branch}", "GET", 200)
    out.update(name=p["branch"], protected=False)
    out["commit"] = _commit_summary(fake, fake.refs[ref], out["commit"])
    out["_links"] = {"self": fake.repo_api(f"/branches/{p['branch']}"), "html": fake.html(f"/tree/{p['branch']}")}
    out["protection_url"] = fake.repo_api(f"/branches/{p['branch']}/protection")
    return _Result(200, out)


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
    """Commit one file change on a branch's tip as GitHub's contents API does: (commit, created)."""
    branch = b.get("branch") or fake.default_branch
    ref = f"refs/heads/{branch}"
    if ref not in fake.refs:
        raise _error(404, f"Branch {branch} not found")
    path = p["path"].strip("/")
    entries = dict(fake.trees[fake.commits[fake.refs[ref]]["tree"]])
    current = entries.get(path)
    if current is not None and "sha" not in b:
        raise _error(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
    if "sha" in b and b["sha"] != current:
        if current is None and data is None:
            raise _error(404, "Not Found")
        raise _error(409, f"{path} does not match {b['sha']}")
    if data is None:
        del entries[path]
    else:
        blob = git_sha("blob", data)
        fake.blobs[blob] = data
        entries[path] = blob
    commit = fake._store_commit(fake._store_tree(entries), [fake.refs[ref]], b["message"])
    fake.refs[ref] = commit
    return commit, current is None


@route("PUT", R + "/contents/{path}")
def _put_content(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    commit, created = _write_content(fake, p, b, base64.b64decode(b["content"]))
    status = 201 if created else 200
    out = _file_commit(fake, commit, p["path"].strip("/"), example(R + "/contents/{path}", "PUT", status))
    return _Result(status, out)


@route("DELETE", R + "/contents/{path}")
def _delete_content(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    commit, _ = _write_content(fake, p, b, None)
    return _Result(200, _file_commit(fake, commit, None, example(R + "/contents/{path}", "DELETE", 200)))


def _commit_summary(fake: FakeGitHub, sha: str, template: dict[str, Any]) -> dict[str, Any]:
    """A commit in the compare API's shape (schema ``commit``), from the spec's example."""
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


@route("GET", R + "/compare/{basehead}")
def _compare(fake: FakeGitHub, account: Account, p: dict[str, str], q: dict[str, str], b: Any) -> _Result:
    base_name, dots, head_name = p["basehead"].partition("...")
    if not dots:
        raise _error(404, "Not Found")
    base, head = _commit_of(fake, base_name), _commit_of(fake, head_name)
    if base is None or head is None:
        raise _error(404, "Not Found")
    base_side = set(fake._ancestors(base))
    head_side = set(fake._ancestors(head))
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
        raise _error(404, f"No common ancestor between {base_name} and {head_name}.")
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
    return _Result(200, out)


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
    """A started fake with PR #2 (head ec26c3e) and a write token; no spec violations allowed."""
    fake = FakeGitHub()
    fake.add_token(TOKEN, "cml-bot-user")
    fake.add_pull(2, HEAD_SHA)
    with fake:
        yield fake
    assert fake.violations == [], "requests outside the OpenAPI subset"
