"""A small stateful GitLab REST server on 127.0.0.1 for driving the real python-gitlab client.

It answers the endpoints cml-bot uses the way ``tests/contracts/gitlab/README.md`` describes:
paginated note lists (``X-Page``, ``X-Per-Page``, ``X-Next-Page``, ``X-Prev-Page``, ``X-Total``,
``X-Total-Pages`` and ``Link``), 201 bodies for created notes, uploads and statuses, multipart
uploads parsed from the request, ``PRIVATE-TOKEN`` versus ``JOB-TOKEN`` authentication (a job token
gets 403 on notes, uploads and statuses) and GitLab's 5,000-notes limit.

It also keeps a small git repository (branches, commits, files) for the data branch cml-bot records
results in: the repository tree listing (paginated like notes; 404 for a missing ref or path), the
files API (raw and JSON with base64 content and ``last_commit_id``), branches, and the Commits API
with ``create``/``update`` actions, ``start_branch`` and ``last_commit_id``, giving GitLab's 400
messages for a file that already exists, a branch that does not exist, and a stale file. Each
commit applies to the branch's current head under the server lock, as GitLab does.

Faults are planned with :meth:`FakeGitLab.fail`: a status answer (5xx, 429 + Retry-After) before or
after the request took effect, or a dropped connection (socket closed without an answer), again
before or after the effect, which is what makes a client post duplicates. A fault may carry a
``barrier``: matching requests wait there (outside the lock) until every party has arrived, which
makes concurrent clients race deterministically.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

FaultKind = Literal["status", "status_after", "drop", "drop_after", "pass"]

NOTES_LIMIT = 5000
_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
_STATUS_STATES = {"pending", "running", "success", "failed", "canceled", "skipped"}


@dataclass
class Fault:
    """One planned failure for the next request matching ``method`` and the ``path`` regex.

    ``status``/``drop`` happen before the request has any effect; ``status_after``/``drop_after``
    after the server has applied it (the note exists, the client does not know). ``pass`` answers
    normally. ``action``, if given, runs first with the fake (e.g. a concurrent run posting a note).
    """

    method: str
    path: str
    kind: FaultKind = "status"
    status: int = 502
    retry_after: int | None = None
    message: str = "Bad Gateway"
    times: int = 1
    action: Callable[[FakeGitLab], object] | None = None
    barrier: threading.Barrier | None = None  # matching requests wait here, outside the lock


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # raw (percent-encoded) path, without the query string
    query: dict[str, str]
    auth: str  # "private", "job", "none" or "bad"; never the token itself


@dataclass
class User:
    id: int
    username: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "name": self.username, "state": "active"}


@dataclass(frozen=True)
class Commit:
    id: str
    parent_ids: tuple[str, ...]
    message: str
    files: dict[str, bytes]  # the whole tree at this commit: path -> content
    last_commit: dict[str, str]  # path -> id of the commit that last changed it
    created_at: str

    def as_json(self) -> dict[str, Any]:
        title = self.message.splitlines()[0] if self.message else ""
        return {
            "id": self.id,
            "short_id": self.id[:8],
            "title": title,
            "message": self.message,
            "parent_ids": list(self.parent_ids),
            "author_name": "project_42_bot_cml",
            "created_at": self.created_at,
            "committed_date": self.created_at,
        }


@dataclass
class Project:
    id: int
    path: str  # "group/name"
    default_branch: str = "main"
    branches: dict[str, str] = field(default_factory=dict)  # name -> head commit id
    commits: dict[str, Commit] = field(default_factory=dict)
    merge_requests: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # MR iid -> notes
    uploads: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    commit_merge_requests: dict[str, list[int]] = field(default_factory=dict)  # sha -> MR iids


class FakeGitLab:
    """Start with ``with FakeGitLab() as gl:``; ``gl.api_url`` is the ``CI_API_V4_URL`` to use."""

    def __init__(
        self,
        *,
        token: str = "glpat-fake-secret-0123456789",
        job_token: str = "glcbt-fake-job-token-9876543210",
        project_id: int = 42,
        project_path: str = "group/ml-project",
        user_endpoint: bool = True,
    ) -> None:
        self.token = token
        self.job_token = job_token
        self.user_endpoint = user_endpoint
        self.notes_limit = NOTES_LIMIT
        self.bot = User(100, "project_42_bot_cml")
        self.others = {7: User(7, "alice"), 8: User(8, "bob")}
        self.project = Project(project_id, project_path)
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self._lock = threading.RLock()
        self._ids = 1000
        self._clock = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._commit_to(
            self.project.default_branch,
            "Initial commit",
            {"README.md": b"# ml-project\n", ".gitlab-ci.yml": b"include: cml-bot.yml\n"},
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> FakeGitLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v4"

    @property
    def web_url(self) -> str:
        return f"{self.url}/{self.project.path}"

    # -- state set-up and inspection ---------------------------------------------------------------

    def add_merge_request(self, iid: int, *, sha: str = "a" * 40, state: str = "opened") -> None:
        with self._lock:
            self.project.merge_requests[iid] = {
                "id": 5000 + iid,
                "iid": iid,
                "project_id": self.project.id,
                "state": state,
                "sha": sha,
                "title": f"MR {iid}",
                "web_url": f"{self.web_url}/-/merge_requests/{iid}",
            }
            self.project.notes.setdefault(iid, [])
            self.project.commit_merge_requests.setdefault(sha, []).append(iid)

    def add_note(self, iid: int, body: str, *, author: int = 7, system: bool = False) -> dict[str, Any]:
        with self._lock:
            return self._new_note(iid, body, self._user(author), system=system)

    def notes(self, iid: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(n) for n in self.project.notes.get(iid, [])]

    def marked_notes(self, iid: int, marker: str) -> list[dict[str, Any]]:
        return [n for n in self.notes(iid) if marker in n["body"]]

    @property
    def uploads(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.project.uploads)

    @property
    def statuses(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.project.statuses)

    def branch_files(self, branch: str) -> dict[str, bytes]:
        """The files at the head of ``branch`` ({} if it does not exist)."""
        with self._lock:
            head = self.project.branches.get(branch)
            return dict(self.project.commits[head].files) if head else {}

    def branch_history(self, branch: str) -> list[Commit]:
        """The commits of ``branch``, newest first (first parents)."""
        with self._lock:
            found = []
            sha = self.project.branches.get(branch)
            while sha:
                commit = self.project.commits[sha]
                found.append(commit)
                sha = commit.parent_ids[0] if commit.parent_ids else None
            return found

    def write_files(self, branch: str, files: dict[str, bytes], message: str = "set-up") -> Commit:
        """Commit ``files`` to ``branch`` (created from the default branch if missing), as a test set-up."""
        with self._lock:
            start = None if branch in self.project.branches else self.project.default_branch
            return self._commit_to(branch, message, files, start=start)

    def fail(self, method: str, path: str, kind: FaultKind = "status", **kwargs: Any) -> Fault:
        fault = Fault(method.upper(), path, kind, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def count(self, method: str, path_regex: str) -> int:
        return sum(1 for r in self.requests if r.method == method.upper() and re.search(path_regex, r.path))

    def iter_requests(self) -> Iterator[Recorded]:
        return iter(list(self.requests))

    # -- internals (called with the lock held) -----------------------------------------------------

    def _user(self, user_id: int) -> User:
        return self.bot if user_id == self.bot.id else self.others[user_id]

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _now(self) -> str:
        self._clock += 1
        return (_EPOCH + timedelta(seconds=self._clock)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def _new_note(self, iid: int, body: str, user: User, *, system: bool = False) -> dict[str, Any]:
        now = self._now()
        note = {
            "id": self._next_id(),
            "type": None,
            "body": body,
            "author": user.as_json(),
            "created_at": now,
            "updated_at": now,
            "system": system,
            "noteable_id": 5000 + iid,
            "noteable_type": "MergeRequest",
            "noteable_iid": iid,
            "project_id": self.project.id,
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }
        self.project.notes.setdefault(iid, []).append(note)
        return note

    def _commit_to(self, branch: str, message: str, changes: dict[str, bytes], *, start: str | None = None) -> Commit:
        """A commit on ``branch``'s head, or on ``start``'s head creating ``branch``."""
        project = self.project
        parent_id = project.branches.get(start or branch)
        parent = project.commits[parent_id] if parent_id else None
        number = len(project.commits) + 1  # own counter: note ids and note times stay as they were
        sha = hashlib.sha1(f"{parent_id}:{number}:{message}".encode()).hexdigest()
        files = dict(parent.files) if parent else {}
        files.update(changes)
        last_commit = dict(parent.last_commit) if parent else {}
        last_commit.update(dict.fromkeys(changes, sha))
        when = (_EPOCH + timedelta(hours=1, seconds=number)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        commit = Commit(sha, (parent_id,) if parent_id else (), message, files, last_commit, when)
        project.commits[sha] = commit
        project.branches[branch] = sha
        return commit

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.method == method and re.search(fault.path, path):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeGitLab
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = -1  # headers and body leave in one write (flushed after each request)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        fake = self.server_fake
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        auth = self._auth()
        with fake._lock:
            fake.requests.append(Recorded(method, path, query, auth))
            fault = fake._take_fault(method, path)
            if fault is not None and fault.action is not None:
                fault.action(fake)
        if fault is not None and fault.barrier is not None:
            fault.barrier.wait(timeout=10)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            return
        if fault is not None and fault.kind == "status":
            self._send_fault(fault)
            return
        try:
            with fake._lock:
                reply = self._route(method, path, query, raw, auth)
        except _Reply as exc:
            reply = exc
        if fault is not None and fault.kind == "drop_after":
            self.close_connection = True
            return
        if fault is not None and fault.kind == "status_after":
            self._send_fault(fault)
            return
        self._send(reply.status, reply.body, reply.headers)

    def _auth(self) -> str:
        fake = self.server_fake
        private = self.headers.get("PRIVATE-TOKEN")
        job = self.headers.get("JOB-TOKEN")
        if private is not None:
            return "private" if private == fake.token else "bad"
        if job is not None:
            return "job" if job == fake.job_token else "bad"
        return "none"

    def _send_fault(self, fault: Fault) -> None:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        self._send(fault.status, {"message": fault.message}, headers)

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        raw_file = isinstance(body, bytes)
        data = body if raw_file else b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if raw_file:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        elif body is not None:
            self.send_header("Content-Type", "application/json")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # -- routing -----------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, str], raw: bytes, auth: str) -> _Reply:
        fake = self.server_fake
        if auth in ("bad", "none"):
            raise _Reply(401, {"message": "401 Unauthorized"})
        if path == "/api/v4/user" and method == "GET":
            if auth == "job" or not fake.user_endpoint:
                raise _Reply(403, {"message": "403 Forbidden"})
            return _Reply(200, fake.bot.as_json())
        project = fake.project
        ids = {str(project.id), quote(project.path, safe="")}
        match = re.fullmatch(r"/api/v4/projects/([^/]+)(/.*)?", path)
        if not match:
            raise _Reply(404, {"error": "404 Not Found"})
        if match.group(1) not in ids:
            raise _Reply(404, {"message": "404 Project Not Found"})
        rest = match.group(2) or ""
        if rest == "" and method == "GET":
            return _Reply(200, {
                "id": project.id, "path_with_namespace": project.path, "web_url": fake.web_url,
                "default_branch": project.default_branch,
            })
        if rest.startswith("/repository/") and not rest.startswith("/repository/commits/"):
            reply = self._repository(method, rest, query, raw, auth)
            if reply is not None:
                return reply
        if (m := re.fullmatch(r"/merge_requests/(\d+)", rest)) and method == "GET":
            return _Reply(200, project.merge_requests[self._merge_request(int(m.group(1)))])
        if m := re.fullmatch(r"/merge_requests/(\d+)/notes", rest):
            self._forbid_job(auth)
            iid = self._merge_request(int(m.group(1)))
            if method == "GET":
                return self._list_notes(iid, query)
            if method == "POST":
                body = self._json(raw).get("body")
                if not isinstance(body, str) or not body:
                    raise _Reply(400, {"message": "400 Bad request - body is missing"})
                if len(body) > 1_000_000:
                    raise _Reply(400, {"message": {"note": ["is too long (maximum is 1000000 characters)"]}})
                if len(project.notes[iid]) >= fake.notes_limit:
                    raise _Reply(400, {"message": "Maximum number of comments exceeded"})
                return _Reply(201, fake._new_note(iid, body, fake.bot))
        if m := re.fullmatch(r"/merge_requests/(\d+)/notes/(\d+)", rest):
            self._forbid_job(auth)
            iid = self._merge_request(int(m.group(1)))
            note_id = int(m.group(2))
            notes = project.notes[iid]
            note = next((n for n in notes if n["id"] == note_id), None)
            if note is None:
                raise _Reply(404, {"message": "404 Not found"})
            if method == "GET":
                return _Reply(200, note)
            if note["author"]["id"] != fake.bot.id:
                raise _Reply(403, {"message": "403 Forbidden"})
            if method == "PUT":
                body = self._json(raw).get("body")
                if not isinstance(body, str) or not body:
                    raise _Reply(400, {"message": "400 Bad request - body is missing"})
                note["body"] = body
                note["updated_at"] = fake._now()
                return _Reply(200, note)
            if method == "DELETE":
                notes.remove(note)
                return _Reply(204)
        if rest == "/uploads" and method == "POST":
            self._forbid_job(auth)
            return self._upload(raw)
        if (m := re.fullmatch(r"/statuses/([0-9a-f]{7,40})", rest)) and method == "POST":
            self._forbid_job(auth)
            return self._status(m.group(1), self._json(raw))
        m = re.fullmatch(r"/repository/commits/([0-9a-f]{7,40})/merge_requests", rest)
        if m and method == "GET":
            iids = project.commit_merge_requests.get(m.group(1), [])
            return _Reply(200, [project.merge_requests[i] for i in iids])
        raise _Reply(404, {"error": "404 Not Found"})

    def _forbid_job(self, auth: str) -> None:
        if auth == "job":
            raise _Reply(403, {"message": "403 Forbidden"})

    def _merge_request(self, iid: int) -> int:
        if iid not in self.server_fake.project.merge_requests:
            raise _Reply(404, {"message": "404 Not found"})
        return iid

    def _json(self, raw: bytes) -> dict[str, Any]:
        if self.headers.get_content_type() != "application/json":
            raise _Reply(415, {"message": "415 Unsupported Media Type"})
        try:
            value = json.loads(raw)
        except ValueError:
            raise _Reply(400, {"message": "400 Bad request - invalid JSON"}) from None
        if not isinstance(value, dict):
            raise _Reply(400, {"message": "400 Bad request"})
        return value

    def _list_notes(self, iid: int, query: dict[str, str]) -> _Reply:
        notes = list(self.server_fake.project.notes[iid])
        order_by = query.get("order_by", "created_at")
        if order_by not in ("created_at", "updated_at"):
            raise _Reply(400, {"error": "order_by does not have a valid value"})
        reverse = query.get("sort", "desc") == "desc"  # GitLab's default: newest first
        notes.sort(key=lambda n: (n[order_by], n["id"]), reverse=reverse)
        base = f"{self.server_fake.api_url}/projects/{self.server_fake.project.id}/merge_requests/{iid}/notes"
        return self._paginated(notes, query, base)

    def _paginated(self, items: list[Any], query: dict[str, str], base: str) -> _Reply:
        """One page of ``items`` with GitLab's offset-pagination headers (default 20 per page, at most 100)."""
        notes = items
        try:
            page = max(1, int(query.get("page", "1")))
            per_page = min(100, max(1, int(query.get("per_page", "20"))))
        except ValueError:
            raise _Reply(400, {"error": "page is invalid"}) from None
        total = len(notes)
        pages = max(1, -(-total // per_page))
        chunk = notes[(page - 1) * per_page : page * per_page]

        def link(p: int) -> str:
            rest = {k: v for k, v in query.items() if k not in ("page", "per_page")}
            extra = "".join(f"&{k}={quote(v)}" for k, v in sorted(rest.items()))
            return f"<{base}?page={p}&per_page={per_page}{extra}>"

        links = []
        if page < pages:
            links.append(f'{link(page + 1)}; rel="next"')
        if page > 1:
            links.append(f'{link(page - 1)}; rel="prev"')
        links.append(f'{link(1)}; rel="first"')
        links.append(f'{link(pages)}; rel="last"')
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Next-Page": str(page + 1) if page < pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
            "X-Total": str(total),
            "X-Total-Pages": str(pages),
            "Link": ", ".join(links),
        }
        return _Reply(200, chunk, headers)

    # -- repository: tree, files, branches, commits -----------------------------------------------

    def _repository(self, method: str, rest: str, query: dict[str, str], raw: bytes, auth: str) -> _Reply | None:
        self._forbid_job(auth)
        fake = self.server_fake
        project = fake.project
        if rest == "/repository/tree" and method == "GET":
            return self._tree(self._resolve(query.get("ref"), "404 Tree Not Found"), query)
        if m := re.fullmatch(r"/repository/files/([^/]+)(/raw)?", rest):
            if method != "GET":
                return None
            commit = self._resolve(query.get("ref") or None, "404 Commit Not Found", required=True)
            file_path = unquote(m.group(1))
            if file_path not in commit.files:
                raise _Reply(404, {"message": "404 File Not Found"})
            content = commit.files[file_path]
            if m.group(2):
                return _Reply(200, content)
            return _Reply(200, {
                "file_name": file_path.rsplit("/", 1)[-1],
                "file_path": file_path,
                "size": len(content),
                "encoding": "base64",
                "content": base64.b64encode(content).decode("ascii"),
                "content_sha256": hashlib.sha256(content).hexdigest(),
                "ref": query["ref"],
                "blob_id": _blob_id(content),
                "commit_id": commit.id,
                "last_commit_id": commit.last_commit[file_path],
            })
        if (m := re.fullmatch(r"/repository/branches/([^/]+)", rest)) and method == "GET":
            name = unquote(m.group(1))
            if name not in project.branches:
                raise _Reply(404, {"message": "404 Branch Not Found"})
            return _Reply(200, {
                "name": name,
                "commit": project.commits[project.branches[name]].as_json(),
                "default": name == project.default_branch,
                "protected": name == project.default_branch,
                "merged": False,
            })
        if rest == "/repository/commits" and method == "POST":
            return self._create_commit(self._json(raw))
        return None

    def _resolve(self, ref: str | None, missing: str, *, required: bool = False) -> Commit:
        project = self.server_fake.project
        if ref is None:
            if required:
                raise _Reply(400, {"error": "ref is missing"})
            ref = project.default_branch
        sha = project.branches.get(ref) or (ref if ref in project.commits else None)
        if sha is None:
            raise _Reply(404, {"message": missing})
        return project.commits[sha]

    def _tree(self, commit: Commit, query: dict[str, str]) -> _Reply:
        """Direct children of ``path``: folders first, then files, each by name (GitLab's order)."""
        folder = query.get("path", "").strip("/")
        prefix = f"{folder}/" if folder else ""
        folders: set[str] = set()
        files: list[str] = []
        for path in commit.files:
            if not path.startswith(prefix):
                continue
            name, _, deeper = path[len(prefix):].partition("/")
            if deeper:
                folders.add(name)
            else:
                files.append(name)
        if folder and not folders and not files:
            raise _Reply(404, {"message": "404 Tree Not Found"})
        entries = [
            {"id": hashlib.sha1(f"tree:{prefix}{n}".encode()).hexdigest(), "name": n, "type": "tree",
             "path": f"{prefix}{n}", "mode": "040000"}
            for n in sorted(folders)
        ] + [
            {"id": _blob_id(commit.files[f"{prefix}{n}"]), "name": n, "type": "blob",
             "path": f"{prefix}{n}", "mode": "100644"}
            for n in sorted(files)
        ]
        base = f"{self.server_fake.api_url}/projects/{self.server_fake.project.id}/repository/tree"
        return self._paginated(entries, query, base)

    def _create_commit(self, data: dict[str, Any]) -> _Reply:
        """POST /repository/commits: GitLab's checks and 400 messages, then one commit on the branch head."""
        fake = self.server_fake
        project = fake.project
        branch, message, actions = data.get("branch"), data.get("commit_message"), data.get("actions")
        if not isinstance(branch, str) or not branch:
            raise _Reply(400, {"error": "branch is missing"})
        if not isinstance(message, str) or not message:
            raise _Reply(400, {"error": "commit_message is missing"})
        if not isinstance(actions, list) or not actions:
            raise _Reply(400, {"error": "actions is missing"})
        start = data.get("start_branch") or branch
        if start not in project.branches:
            raise _Reply(400, {"message": "You can only create or edit files when you are on a branch"})
        if start != branch and branch in project.branches:
            raise _Reply(400, {
                "message": f"Something went wrong when we tried to create '{branch}' for you: Branch already exists"
            })
        base = project.commits[project.branches[start]]
        changes: dict[str, bytes] = {}
        for action in actions:
            if not isinstance(action, dict) or action.get("action") not in ("create", "update"):
                raise _Reply(400, {"error": "actions[0][action] does not have a valid value"})
            path, content = action.get("file_path"), action.get("content")
            if not isinstance(path, str) or not path or not isinstance(content, str):
                raise _Reply(400, {"error": "actions[0][file_path] is missing"})
            encoded = content.encode("utf-8")
            if action.get("encoding") == "base64":
                encoded = base64.b64decode(content)
            if action["action"] == "create" and path in base.files:
                raise _Reply(400, {"message": "A file with this name already exists"})
            if action["action"] == "update":
                if path not in base.files:
                    raise _Reply(400, {"message": "A file with this name doesn't exist"})
                last = action.get("last_commit_id")
                if last and last != base.last_commit[path]:
                    raise _Reply(400, {
                        "message": "You are attempting to update a file that has changed since you started editing it."
                    })
            changes[path] = encoded
        commit = fake._commit_to(branch, message, changes, start=start if start != branch else None)
        return _Reply(201, commit.as_json())

    def _upload(self, raw: bytes) -> _Reply:
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            raise _Reply(400, {"error": "file is missing"})
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
        )
        if not message.is_multipart():
            raise _Reply(400, {"error": "file is missing"})
        upload = None
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                upload = part
        if upload is None or not upload.get_filename():
            raise _Reply(400, {"error": "file is missing"})
        filename = str(upload.get_filename())
        payload = upload.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fake = self.server_fake
        project = fake.project
        secret = hashlib.sha256(f"{len(project.uploads)}:{filename}".encode() + data).hexdigest()[:32]
        url = f"/uploads/{secret}/{filename}"
        alt = filename.rsplit(".", 1)[0]
        record = {
            "id": len(project.uploads) + 1,
            "alt": alt,
            "url": url,
            "full_path": f"/-/project/{project.id}/uploads/{secret}/{filename}",
            "markdown": f"![{alt}]({url})",
        }
        project.uploads.append({**record, "filename": filename, "data": data})
        return _Reply(201, record)

    def _status(self, sha: str, data: dict[str, Any]) -> _Reply:
        state = data.get("state")
        if state not in _STATUS_STATES:
            raise _Reply(400, {"error": "state does not have a valid value"})
        fake = self.server_fake
        record = {
            "id": fake._next_id(),
            "sha": sha,
            "ref": data.get("ref"),
            "status": state,
            "name": data.get("name") or "default",
            "target_url": data.get("target_url"),
            "description": data.get("description"),
            "created_at": fake._now(),
            "author": fake.bot.as_json(),
        }
        fake.project.statuses.append(record)
        return _Reply(201, record)


def _blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
