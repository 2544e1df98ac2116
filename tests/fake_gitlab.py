"""A stateful GitLab REST server on 127.0.0.1, built from GitLab's documentation, for the real clients.

The contract: every request is checked against :mod:`gitlab_contract` (one entry per endpoint, from
its docs page) BEFORE anything else happens, faults included; departures are recorded in
:attr:`FakeGitLab.violations` and the ``fake`` fixture (:mod:`gitlab_fixtures`) fails the test at
teardown when any exist. The fake then answers as GitLab does (Grape's ``400 {"error": ...}``).

Behaviour, each cited where it is implemented (``tests/contracts/gitlab/README.md`` lists them):

- Tokens: ``PRIVATE-TOKEN`` or ``Authorization: Bearer`` with the project access token act as the
  bot user (``GET /user`` answers it); ``JOB-TOKEN`` (or Bearer) with ``CI_JOB_TOKEN`` acts as the
  pipeline's user only on the endpoints the CI/CD job token docs list (MR and notes reads, raw
  files, MRs of a commit, ...); elsewhere GitLab ignores it and the request is anonymous: 401 or
  404 "Project Not Found" (the project is private). A job token sent as ``PRIVATE-TOKEN`` is
  ignored the same way; an unknown token is 401.
- Notes: GitLab's offset pagination headers; 1,000,000 characters per note and 5,000 notes per MR;
  system notes; editing or deleting a note needs its author or at least the Maintainer role
  (:attr:`FakeGitLab.bot_role`, Developer by default), and nobody edits a system note.
- Merge requests: each has ``sha`` (its head), branches, ``state`` and ``diff_refs``; the MRs of a
  commit are every MR containing it (stacked MRs), newest first.
- Pipelines are state: ``POST /statuses/:sha`` attaches the status to ``pipeline_id``'s pipeline,
  else the newest pipeline of that sha (and ``ref``), else a new ``external`` pipeline on the ref
  or the first branch containing the commit; a pending/running status of the same name is updated
  in place, and moving it to the state it is in is a 400 ("Cannot transition status via :run from
  :running"). A 409 (lock held by another update: "retry the request") is injected with
  :meth:`FakeGitLab.fail` ``status=409``.
- Merged-results pipelines: :meth:`FakeGitLab.add_merged_result_pipeline` makes the temporary
  merge commit (on ``refs/merge-requests/:iid/merge``, in no branch) and its pipeline.
- Uploads: multipart ``file``; ``{id, alt, url: /uploads/<32 hex>/<name>, full_path, markdown}``.
- Rate limits: a 429 fault answers as Rack::Attack does (plain-text "Retry later", ``Retry-After``
  and ``RateLimit-*`` headers) or, with ``throttle="application"``, as an application limit does.
- Repository: branches, commits, files (JSON and raw), tree and the Commits API with GitLab's 400
  messages, each commit applied to the branch's current head under the server lock.

Code: this module holds the state, the transport, tokens, notes, merge requests, uploads and faults;
:mod:`fake_gitlab_ci` pipelines and commit statuses; :mod:`fake_gitlab_repo` the repository API.

Faults (:meth:`FakeGitLab.fail`): a status answer before or after the request took effect, a dropped
connection before or after the effect, an ``action`` callback run first, and a ``barrier`` that
holds matching requests until every party has arrived (deterministic races).

Public API (kept from earlier versions): ``FakeGitLab(token=, job_token=, project_id=,
project_path=, user_endpoint=)``, ``url``, ``api_url``, ``web_url``, ``bot``, ``others``,
``project``, ``requests``, ``faults``, ``notes_limit``, ``add_merge_request``, ``add_note``,
``notes``, ``marked_notes``, ``uploads``, ``statuses``, ``branch_files``, ``branch_history``,
``write_files``, ``fail``, ``count``, ``iter_requests``, ``Fault``, ``Recorded``, ``Commit``.
Added: ``violations``, ``bot_role``, ``pipelines``, ``add_pipeline``, ``add_merged_result_pipeline``,
``merge_request``, ``add_commit``, ``pipeline``, ``statuses_in``, ``branches_containing``, ``Pipeline``,
``Fault.throttle``, ``Recorded.endpoint``; ``add_merge_request`` takes ``source_branch``,
``target_branch`` and ``commits`` and re-adding an MR pushes a new head to it.
Changed to match GitLab: a job token may read MR notes (it may not write them: 401); a status or the
MRs of an unknown commit are 404, so tests create commits (``add_commit``, ``add_merge_request``);
``statuses`` lists status jobs, a pending/running one updated in place being one entry, each with
its ``pipeline_id``; a 429 fault answers as GitLab's throttle (plain text, ``RateLimit-*``).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from fake_gitlab_ci import Job, Pipeline, job_json, list_commit_statuses, set_commit_status
from fake_gitlab_repo import Commit, Reply, RepositoryApi, blob_id, message, paginated
from gitlab_contract import NOTE_BODY_LIMIT, FilePart, Match, check, match

__all__ = ["Commit", "FakeGitLab", "Fault", "Pipeline", "Recorded", "User", "blob_id"]

FaultKind = Literal["status", "status_after", "drop", "drop_after", "pass"]

NOTES_LIMIT = 5000  # https://docs.gitlab.com/ee/user/discussions/ "as many as 5,000 comments"
ROLES = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}
_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass
class Fault:
    """One planned failure for the next request matching ``method`` and the ``path`` regex.

    ``status``/``drop`` happen before the request has any effect; ``status_after``/``drop_after``
    after the server has applied it (the note exists, the client does not know). ``pass`` answers
    normally. ``action``, if given, runs first with the fake (e.g. a concurrent run posting a note).
    A 429 answers as GitLab's Rack::Attack throttle (``throttle="rack_attack"``) or as an
    application rate limit (``"application"``: JSON, no ``Retry-After``).
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
    throttle: Literal["rack_attack", "application"] = "rack_attack"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # raw (percent-encoded) path, without the query string
    query: dict[str, str]
    auth: str  # "private", "job", "none", "bad" or "job-in-private-token"; never the token itself
    endpoint: str | None = None  # the contract's template, None for an unknown endpoint


@dataclass
class User:
    id: int
    username: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "name": self.username,
            "state": "active",
            "avatar_url": None,
            "web_url": f"https://gitlab.example/{self.username}",
        }


@dataclass
class Project:
    id: int
    path: str  # "group/name"
    default_branch: str = "main"
    branches: dict[str, str] = field(default_factory=dict)  # name -> head commit id
    refs: dict[str, str] = field(default_factory=dict)  # other refs (refs/merge-requests/1/merge) -> id
    commits: dict[str, Commit] = field(default_factory=dict)
    merge_requests: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # MR iid -> notes
    uploads: list[dict[str, Any]] = field(default_factory=list)
    pipelines: list[Pipeline] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    commit_merge_requests: dict[str, list[int]] = field(default_factory=dict)  # sha -> MR iids containing it


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
        bot_role: str = "developer",
    ) -> None:
        self.token = token
        self.job_token = job_token
        self.user_endpoint = user_endpoint
        self.bot_role = bot_role
        self.notes_limit = NOTES_LIMIT
        self.bot = User(100, "project_42_bot_cml")
        self.others = {7: User(7, "alice"), 8: User(8, "bob")}
        self.job_user = self.others[7]  # the job token acts as the user who triggered the pipeline
        self.project = Project(project_id, project_path)
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.faults: list[Fault] = []
        self._lock = threading.RLock()
        self._ids = 1000
        self._clock = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.repo = RepositoryApi(self)
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
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
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

    def add_merge_request(
        self,
        iid: int,
        *,
        sha: str = "a" * 40,
        state: str = "opened",
        source_branch: str | None = None,
        target_branch: str | None = None,
        commits: list[str] | None = None,
    ) -> dict[str, Any]:
        """An MR whose source branch holds ``commits`` (default: just ``sha``) on top of the target.

        Adding an MR that exists pushes ``commits`` (or ``sha``) onto its source branch: the head
        moves and the older commits stay part of the MR, as after a push in GitLab.
        """
        with self._lock:
            project = self.project
            new = [*(commits or []), sha] if not commits or commits[-1] != sha else list(commits)
            existing = project.merge_requests.get(iid)
            if existing is None:
                target = target_branch or project.default_branch
                source = source_branch or f"feature-{iid}"
                base = project.branches.get(target) or project.branches[project.default_branch]
                parent = project.branches.get(source, base)
            else:
                target, source, base = existing["target_branch"], existing["source_branch"], existing["_base"]
                parent = existing["sha"]
            for commit_sha in new:
                if commit_sha != parent:
                    self._ensure_commit(commit_sha, parent, f"change {commit_sha[:8]}")
                parent = commit_sha
            project.branches[source] = sha
            mr = existing or {
                "id": 5000 + iid,
                "iid": iid,
                "project_id": project.id,
                "title": f"MR {iid}",
                "description": "",
                "source_project_id": project.id,
                "target_project_id": project.id,
                "draft": False,
                "work_in_progress": False,
                "merge_commit_sha": None,
                "squash_commit_sha": None,
                "author": self.others[7].as_json(),
                "web_url": f"{self.web_url}/-/merge_requests/{iid}",
                "created_at": self._now(),
                "_base": base,
                "_commits": [],
            }
            mr.update(state=state, sha=sha, source_branch=source, target_branch=target, updated_at=self._now())
            mr["diff_refs"] = {"base_sha": base, "head_sha": sha, "start_sha": project.branches.get(target, base)}
            for commit_sha in new:
                if commit_sha not in mr["_commits"]:
                    mr["_commits"].append(commit_sha)
                iids = project.commit_merge_requests.setdefault(commit_sha, [])
                if iid not in iids:
                    iids.append(iid)
            project.merge_requests[iid] = mr
            project.notes.setdefault(iid, [])
            return _public(mr)

    def add_commit(self, sha: str, *, branch: str | None = None) -> None:
        """A commit with this id (e.g. from a real local repository) pushed onto ``branch``.

        The branch is created from the default branch when missing; without a branch the commit
        is only reachable by its id.
        """
        with self._lock:
            project = self.project
            parent = project.branches.get(branch or "", project.branches[project.default_branch])
            self._ensure_commit(sha, parent, f"commit {sha[:8]}")
            if branch is not None:
                project.branches[branch] = sha

    def merge_request(self, iid: int) -> dict[str, Any]:
        with self._lock:
            return _public(self.project.merge_requests[iid])

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
        """Every external status job, oldest first (a retried one too), as the API shows it."""
        with self._lock:
            return [job_json(self, job) | {"retried": job.retried} for job in self.project.jobs]

    @property
    def pipelines(self) -> list[Pipeline]:
        with self._lock:
            return list(self.project.pipelines)

    def pipeline(self, pipeline_id: int) -> Pipeline:
        with self._lock:
            return next(p for p in self.project.pipelines if p.id == pipeline_id)

    def statuses_in(self, pipeline_id: int) -> list[dict[str, Any]]:
        return [s for s in self.statuses if s["pipeline_id"] == pipeline_id]

    def add_pipeline(
        self,
        sha: str,
        *,
        ref: str | None = None,
        source: str = "push",
        merge_request_iid: int | None = None,
        event_type: str | None = None,
        pipeline_id: int | None = None,
        status: str = "running",
    ) -> Pipeline:
        """A pipeline for ``sha`` (a branch pipeline on the branch holding it, unless ``ref`` says)."""
        with self._lock:
            if sha not in self.project.commits:
                raise KeyError(f"no commit {sha} in the fake repository")
            if ref is None:
                if merge_request_iid is not None:
                    ref = f"refs/merge-requests/{merge_request_iid}/head"
                else:
                    ref = (self.branches_containing(sha) or [self.project.default_branch])[0]
            return self._new_pipeline(sha, ref, source, merge_request_iid, event_type, pipeline_id, status)

    def add_merged_result_pipeline(
        self,
        iid: int,
        *,
        merge_sha: str | None = None,
        target_sha: str | None = None,
        pipeline_id: int | None = None,
    ) -> Pipeline:
        """A merged-results pipeline of MR ``iid``: GitLab's temporary merge commit and its pipeline.

        https://docs.gitlab.com/ee/ci/pipelines/merged_results_pipelines.html: "GitLab creates an
        internal commit with the merged results ... This commit does not exist in either branch".
        ``target_sha`` (default: the target branch's tip) becomes the target's tip if it is new.
        """
        with self._lock:
            project = self.project
            mr = project.merge_requests[iid]
            target = mr["target_branch"]
            tip = target_sha or project.branches[target]
            if tip not in project.commits:
                self._ensure_commit(tip, project.branches[target], "target moves on")
                project.branches[target] = tip
            merge_sha = merge_sha or hashlib.sha1(f"merge:{iid}:{tip}:{mr['sha']}".encode()).hexdigest()
            if merge_sha not in project.commits:
                files = {**project.commits[tip].files, **project.commits[mr["sha"]].files}
                message = f"Merge branch '{mr['source_branch']}' into '{target}'"
                project.commits[merge_sha] = Commit(
                    merge_sha, (tip, mr["sha"]), message, files, dict.fromkeys(files, merge_sha), self._now()
                )
            project.refs[f"refs/merge-requests/{iid}/merge"] = merge_sha
            mr["diff_refs"]["start_sha"] = tip
            return self._new_pipeline(
                merge_sha,
                f"refs/merge-requests/{iid}/merge",
                "merge_request_event",
                iid,
                "merged_result",
                pipeline_id,
                "running",
            )

    def branches_containing(self, sha: str) -> list[str]:
        """Branch names whose history holds ``sha``, by name (``branch_names_contains``)."""
        with self._lock:
            return sorted(name for name, head in self.project.branches.items() if sha in self._ancestry(head))

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
            "attachment": None,
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

    def _new_pipeline(
        self,
        sha: str,
        ref: str,
        source: str,
        iid: int | None,
        event_type: str | None,
        pipeline_id: int | None,
        status: str,
    ) -> Pipeline:
        pipelines = self.project.pipelines
        if pipeline_id is None:
            pipeline_id = max([p.id for p in pipelines] + [200]) + 1
        pipeline = Pipeline(pipeline_id, len(pipelines) + 1, sha, ref, source, iid, event_type, status)
        pipelines.append(pipeline)
        return pipeline

    def _ensure_commit(self, sha: str, parent: str, message: str) -> None:
        """A commit with a given id (one a test made in a real local repository) on top of ``parent``."""
        if sha not in self.project.commits:
            base = self.project.commits[parent]
            self.project.commits[sha] = Commit(
                sha, (parent,), message, dict(base.files), dict(base.last_commit), self._now()
            )

    def _ancestry(self, head: str) -> set[str]:
        seen: set[str] = set()
        todo = [head]
        while todo:
            sha = todo.pop()
            if sha not in seen and sha in self.project.commits:
                seen.add(sha)
                todo.extend(self.project.commits[sha].parent_ids)
        return seen

    def _commit_to(
        self, branch: str, message: str, changes: dict[str, bytes | None], *, start: str | None = None
    ) -> Commit:
        """A commit on ``branch``'s head, or on ``start`` (a branch or sha) creating ``branch``; None deletes."""
        project = self.project
        parent_id = project.branches.get(start or branch) or (start if start in project.commits else None)
        parent = project.commits[parent_id] if parent_id else None
        number = len(project.commits) + 1  # own counter: note ids and note times stay as they were
        sha = hashlib.sha1(f"{parent_id}:{number}:{message}".encode()).hexdigest()
        files = dict(parent.files) if parent else {}
        last_commit = dict(parent.last_commit) if parent else {}
        for path, content in changes.items():
            if content is None:
                files.pop(path, None)
                last_commit.pop(path, None)
            else:
                files[path] = content
                last_commit[path] = sha
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


def _public(mr: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mr.items() if not k.startswith("_")}


@dataclass(frozen=True)
class Caller:
    kind: str  # see Recorded.auth
    user: User | None  # None: anonymous (GitLab ignored the token, or there was none)


def unauthorized() -> Reply:
    return message(401, "401 Unauthorized")


def forbidden() -> Reply:
    return message(403, "403 Forbidden")


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

    # -- one request: contract, record, faults, behaviour ------------------------------------------

    def _handle(self, method: str) -> None:
        fake = self.server_fake
        parts = urlsplit(self.path)
        path = parts.path
        queries = parse_qs(parts.query, keep_blank_values=True)
        query = {k: v[-1] for k, v in queries.items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body, body_problem = self._parse_body(raw)
        found = match(method, path)
        with fake._lock:
            violations = self._violations(method, path, found, queries, body, body_problem, raw)
            fake.violations.extend(violations)
            caller = self._caller(found.endpoint.job_token if isinstance(found, Match) else False)
            endpoint = found.endpoint.template if isinstance(found, Match) else None
            fake.requests.append(Recorded(method, path, query, caller.kind, endpoint))
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
                reply = self._answer(method, found, queries, query, body, body_problem, caller)
        except Reply as exc:
            reply = exc
        except Exception as exc:  # a defect of the fake: fail the test rather than drop the connection
            with fake._lock:
                fake.violations.append(f"the fake itself failed on {method} {path}: {exc!r}")
            reply = message(500, "500 Internal Server Error")
        if fault is not None and fault.kind == "drop_after":
            self.close_connection = True
            return
        if fault is not None and fault.kind == "status_after":
            self._send_fault(fault)
            return
        self._send(reply.status, reply.body, reply.headers)

    def _parse_body(self, raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
        """The body's attributes (JSON, form or multipart) and, if it cannot be read, why."""
        if not raw:
            return None, None
        content_type = self.headers.get("Content-Type", "")
        kind = content_type.split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                value = json.loads(raw)
            except ValueError:
                return None, "the body is not valid JSON"
            return (value, None) if isinstance(value, dict) else (None, "the JSON body is not an object")
        if kind == "application/x-www-form-urlencoded":
            return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}, None
        if kind == "multipart/form-data":
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
            )
            if not message.is_multipart():
                return None, "the multipart body cannot be parsed"
            fields: dict[str, Any] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                if not isinstance(name, str):
                    continue
                filename = part.get_filename()
                fields[name] = (
                    FilePart(str(filename), part.get_content_type(), data)
                    if filename
                    else (data.decode("utf-8", "replace"))
                )
            return fields, None
        return None, f"unsupported Content-Type {content_type!r}"

    def _violations(
        self,
        method: str,
        path: str,
        found: Match | str | None,
        queries: dict[str, list[str]],
        body: dict[str, Any] | None,
        body_problem: str | None,
        raw: bytes,
    ) -> list[str]:
        if found is None:
            return [f"{method} {path}: no such endpoint in the GitLab contract"]
        if isinstance(found, str):
            return [f"{method} {path}: method not allowed on this endpoint"]
        endpoint = found.endpoint
        where = f"{method} {endpoint.template}"
        problems = [p.violation for p in check(found, queries, body)]
        if body_problem:
            problems.append(f"{where}: {body_problem}")
        if raw and endpoint.body == "none":
            problems.append(f"{where}: a body on a request that takes none")
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if raw and endpoint.body == "multipart" and content_type != "multipart/form-data":
            problems.append(f"{where}: the file must be sent as multipart/form-data ({endpoint.doc})")
        return problems

    def _caller(self, job_token_allowed: bool) -> Caller:
        """Who GitLab takes the request to be from (lib/gitlab/auth/auth_finders.rb)."""
        fake = self.server_fake
        private = self.headers.get("PRIVATE-TOKEN")
        job = self.headers.get("JOB-TOKEN")
        authorization = self.headers.get("Authorization", "")
        bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
        if private is not None:
            if private == fake.job_token:
                # A job token (glcbt-) in PRIVATE-TOKEN is skipped as a personal token: anonymous.
                return Caller("job-in-private-token", None)
            return Caller("private", fake.bot) if private == fake.token else Caller("bad", None)
        if job is not None or bearer == fake.job_token:
            if (job if job is not None else bearer) != fake.job_token:
                return Caller("bad", None)
            # Only endpoints listed under "Job token access" accept it; elsewhere it is ignored.
            return Caller("job", fake.job_user if job_token_allowed else None)
        if bearer is not None:
            return Caller("private", fake.bot) if bearer == fake.token else Caller("bad", None)
        return Caller("none", None)

    def _send_fault(self, fault: Fault) -> None:
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.status == 429 and fault.throttle == "rack_attack":
            # https://docs.gitlab.com/ee/administration/settings/user_and_ip_rate_limits.html: a 429
            # with a plain-text body ("Retry later" by default), RateLimit-* headers, RateLimit-ResetTime
            # and Retry-After.
            wait = fault.retry_after if fault.retry_after is not None else 60
            reset = int(time.time()) + wait
            headers.update(
                {
                    "RateLimit-Name": "throttle_authenticated_api",
                    "RateLimit-Limit": "120",
                    "RateLimit-Observed": "121",
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(reset),
                    "RateLimit-ResetTime": formatdate(reset, usegmt=True),
                    "Retry-After": str(wait),
                }
            )
            text = fault.message if fault.message not in ("Bad Gateway", "") else "Retry later"
            self._send(429, text.encode(), headers)
            return
        if fault.status == 429:
            # An application rate limit (e.g. notes creation): JSON, no headers (same docs page).
            self._send(
                429,
                {"message": {"error": "This endpoint has been requested too many times. Try again later."}},
                headers,
            )
            return
        if fault.status == 409 and fault.message == "Bad Gateway":
            # POST /statuses/:sha while another update holds the lock: "retry the request".
            self._send(409, {"message": "409 Conflict: Another update to this commit status is in progress"}, headers)
            return
        self._send(fault.status, {"message": fault.message}, headers)

    def _rate_limit_headers(self) -> dict[str, str]:
        """ "Headers returned for all requests" (user_and_ip_rate_limits.html); GitLab.com allows 2,000/min."""
        observed = len(self.server_fake.requests)
        return {
            "RateLimit-Name": "throttle_authenticated_api",
            "RateLimit-Limit": "2000",
            "RateLimit-Observed": str(observed),
            "RateLimit-Remaining": str(max(0, 2000 - observed)),
            "RateLimit-Reset": str(int(time.time()) // 60 * 60 + 60),
        }

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        headers = {**self._rate_limit_headers(), **headers}
        raw_file = isinstance(body, bytes)
        data = body if raw_file else b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if raw_file:
            self.send_header("Content-Type", headers.pop("Content-Type", "text/plain; charset=utf-8"))
        elif body is not None:
            self.send_header("Content-Type", "application/json")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # -- behaviour -----------------------------------------------------------------------------------

    def _answer(
        self,
        method: str,
        found: Match | str | None,
        queries: dict[str, list[str]],
        query: dict[str, str],
        body: dict[str, Any] | None,
        body_problem: str | None,
        caller: Caller,
    ) -> Reply:
        if found is None:
            raise Reply(404, {"error": "404 Not Found"})
        if isinstance(found, str):
            raise Reply(405, {"error": "405 Not Allowed"})
        endpoint = found.endpoint
        if caller.kind == "bad":
            raise unauthorized()
        if caller.user is None and endpoint.unauthenticated == 401:
            raise unauthorized()
        if body_problem:
            if "Content-Type" in body_problem:
                raise Reply(415, {"error": "The provided content-type is not supported."})
            raise message(400, f"400 Bad request - {body_problem}")
        errors = [p.error for p in check(found, queries, body) if p.error]
        if errors:
            raise Reply(400, {"error": ", ".join(errors)})  # Grape's validation answer
        if endpoint.name == "current user":
            if not self.server_fake.user_endpoint:
                raise Reply(
                    403,
                    {
                        "error": "insufficient_scope",
                        "error_description": "The request requires higher privileges than provided by "
                        "the access token.",
                        "scope": "api read_user",
                    },
                )
            assert caller.user is not None
            return Reply(200, caller.user.as_json())
        self._project(found.path["id"], caller)
        params = {**query, **(body or {})}
        handler = getattr(self, "_" + endpoint.name.replace(" ", "_"), None)
        if handler is None:
            may_push_protected = self._role(caller) >= ROLES["maintainer"]
            return self.server_fake.repo.answer(endpoint.name, found.path, params, may_push_protected)
        result: Reply = handler(found.path, params, caller)
        return result

    def _project(self, raw_id: str, caller: Caller) -> Project:
        project = self.server_fake.project
        if unquote(raw_id) not in (str(project.id), project.path) or caller.user is None:
            # A private project is 404 to anyone who cannot read it (find_project!).
            raise message(404, "404 Project Not Found")
        return project

    def _role(self, caller: Caller) -> int:
        fake = self.server_fake
        return ROLES[fake.bot_role] if caller.user is fake.bot else ROLES["developer"]

    def _mr(self, path: dict[str, str], what: str = "404 Not found") -> dict[str, Any]:
        mr = self.server_fake.project.merge_requests.get(int(path["merge_request_iid"]))
        if mr is None:
            raise message(404, what)
        return mr

    # https://docs.gitlab.com/ee/api/projects.html#get-a-single-project
    def _get_project(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        fake = self.server_fake
        project = fake.project
        return Reply(
            200,
            {
                "id": project.id,
                "path_with_namespace": project.path,
                "web_url": fake.web_url,
                "default_branch": project.default_branch,
                "visibility": "private",
            },
        )

    # https://docs.gitlab.com/ee/api/merge_requests.html#get-single-mr: sha is the head, diff_refs
    def _get_merge_request(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        return Reply(200, _public(self._mr(path)))

    # https://docs.gitlab.com/ee/api/notes.html#list-all-merge-request-notes: sort desc and
    # order_by created_at by default, ties broken by id (lib/api/notes.rb), paginated 20 per page.
    def _list_merge_request_notes(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        fake = self.server_fake
        mr = self._mr(path, "404 MergeRequest Not Found")
        notes = list(fake.project.notes[mr["iid"]])
        order_by = params.get("order_by", "created_at")
        notes.sort(key=lambda n: (n[order_by], n["id"]), reverse=params.get("sort", "desc") == "desc")
        base = f"{fake.api_url}/projects/{fake.project.id}/merge_requests/{mr['iid']}/notes"
        return paginated(notes, params, base)

    def _find_note(self, path: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        notes = self.server_fake.project.notes[self._mr(path, "404 MergeRequest Not Found")["iid"]]
        note = next((n for n in notes if n["id"] == int(path["note_id"])), None)
        if note is None:
            raise message(404, "404 Not found")
        return notes, note

    def _get_merge_request_note(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        return Reply(200, self._find_note(path)[1])

    # https://docs.gitlab.com/ee/api/notes.html#create-new-merge-request-note: "Limited to 1,000,000
    # characters"; https://docs.gitlab.com/ee/user/discussions/: "as many as 5,000 comments".
    def _create_merge_request_note(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        fake = self.server_fake
        iid = self._mr(path, "404 MergeRequest Not Found")["iid"]
        body = self._note_body(params)
        if len(fake.project.notes[iid]) >= fake.notes_limit:
            raise message(400, "Maximum number of comments exceeded")
        assert caller.user is not None
        return Reply(201, fake._new_note(iid, body, caller.user))

    def _note_body(self, params: dict[str, Any]) -> str:
        body = params["body"]
        if not body.strip():
            raise message(400, '400 Bad request - Note {:note=>["can\'t be blank"]}')
        if len(body) > NOTE_BODY_LIMIT:
            raise message(400, '400 Bad request - Note {:note=>["is too long (maximum is 1000000 characters)"]}')
        return str(body)

    def _may_admin_note(self, note: dict[str, Any], caller: Caller) -> None:
        """Edit or delete: the author, or at least a Maintainer; never a system note.

        https://docs.gitlab.com/ee/user/discussions/#edit-a-comment: "You can edit your own comment at
        any time. Anyone with at least the Maintainer role can also edit a comment made by someone
        else." Deleting needs the same ``admin_note`` ability (lib/api/helpers/notes_helpers.rb), and
        a system note is not editable by anyone (app/policies/note_policy.rb).
        """
        assert caller.user is not None
        if note["system"]:
            raise forbidden()
        if note["author"]["id"] != caller.user.id and self._role(caller) < ROLES["maintainer"]:
            raise forbidden()

    def _update_merge_request_note(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        _, note = self._find_note(path)
        self._may_admin_note(note, caller)
        note["body"] = self._note_body(params)
        note["updated_at"] = self.server_fake._now()
        return Reply(200, note)

    def _delete_merge_request_note(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        notes, note = self._find_note(path)
        self._may_admin_note(note, caller)
        notes.remove(note)
        return Reply(204)

    # https://docs.gitlab.com/ee/api/project_markdown_uploads.html#upload-a-file
    def _upload_a_file(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        fake = self.server_fake
        project = fake.project
        upload = params["file"]
        filename = upload.filename.rsplit("/", 1)[-1]
        secret = hashlib.sha256(f"{len(project.uploads)}:{filename}".encode() + upload.data).hexdigest()[:32]
        url = f"/uploads/{secret}/{filename}"
        alt = filename.rsplit(".", 1)[0]
        record = {
            "id": len(project.uploads) + 1,
            "alt": alt,
            "url": url,
            "full_path": f"/-/project/{project.id}/uploads/{secret}/{filename}",  # 17.1+ pattern
            "markdown": f"![{alt}]({url})",
        }
        assert caller.user is not None
        project.uploads.append(
            {
                **record,
                "filename": filename,
                "data": upload.data,
                "secret": secret,
                "created_at": fake._now(),
                "uploaded_by": caller.user.id,
            }
        )
        return Reply(201, record)

    # https://docs.gitlab.com/ee/api/project_markdown_uploads.html#list-uploads: Maintainer role,
    # newest first.
    def _list_uploads(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        fake = self.server_fake
        if self._role(caller) < ROLES["maintainer"]:
            raise forbidden()
        items = [
            {
                "id": u["id"],
                "size": len(u["data"]),
                "filename": u["filename"],
                "created_at": u["created_at"],
                "uploaded_by": {
                    k: v for k, v in fake._user(u["uploaded_by"]).as_json().items() if k in ("id", "name", "username")
                },
            }
            for u in sorted(fake.project.uploads, key=lambda u: u["created_at"], reverse=True)
        ]
        return paginated(items, params, f"{fake.api_url}/projects/{fake.project.id}/uploads")

    # https://docs.gitlab.com/ee/api/project_markdown_uploads.html#download-an-uploaded-file-by-secret-and-filename
    def _download_an_upload(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        secret, filename = unquote(path["secret"]), unquote(path["filename"])
        for upload in self.server_fake.project.uploads:
            if upload["secret"] == secret and upload["filename"] == filename:
                kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
                return Reply(200, upload["data"], {"Content-Type": kind})
        raise message(404, "404 Not found")

    def _set_commit_status(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        assert caller.user is not None
        if self._role(caller) < ROLES["developer"]:
            raise forbidden()
        return set_commit_status(self.server_fake, unquote(path["sha"]), params, caller.user.id)

    def _list_commit_statuses(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        return list_commit_statuses(self.server_fake, unquote(path["sha"]), params)

    # https://docs.gitlab.com/ee/api/commits.html#list-merge-requests-associated-with-a-commit:
    # every MR containing the commit, any state unless ``state`` says. The order is not documented;
    # the fake answers newest first, so a client taking "the first open one" is caught out.
    def _merge_requests_of_a_commit(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Reply:
        fake = self.server_fake
        sha = unquote(path["sha"])
        if sha not in fake.project.commits:
            raise message(404, "404 Commit Not Found")
        iids = sorted(fake.project.commit_merge_requests.get(sha, []), reverse=True)
        found = [_public(fake.project.merge_requests[i]) for i in iids]
        found = [{k: v for k, v in mr.items() if k != "diff_refs"} for mr in found]  # the list entity
        if params.get("state"):
            found = [mr for mr in found if mr["state"] == params["state"]]
        base = f"{fake.api_url}/projects/{fake.project.id}/repository/commits/{sha}/merge_requests"
        return paginated(found, params, base, totals=False)
