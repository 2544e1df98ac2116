"""Recorded results in a GitLab data branch: ``records/<sha>.json`` on ``cml-bot-data``.

``cml-bot record`` on pushes to the default branch commits one file per commit through the
Commits API; merge request pipelines read the merge-base's file as the baseline. Nothing is cloned
or pushed: every access is one REST call through the GitLab driver's client (one retry policy).

Reading works with ``CI_JOB_TOKEN``: GitLab lets the job token read repository files of its own
project (``GET /projects/:id/repository/files/:path/raw``), but not list the tree, so with it the
store cannot list (``recorded()`` is None) and the baseline code asks for the commits it wants one
by one. Writing needs a project access token (``CML_BOT_TOKEN``, api scope, allowed to push to the
data branch).

The data branch is created on the first save from the project's default branch (the Commits API has
no orphan branches), so it shares main's history and only adds ``records/``. Every record commit
says ``[skip ci]``. Concurrency: GitLab applies each commit on top of the branch's current head, so
records of different commits made at the same time all land; a race GitLab refuses (the branch
created meanwhile, its ref moved, the file changed) is planned again from a fresh read, and a
``create`` refused because the file exists means the same commit was recorded concurrently. After
a failure that may have gone through, the file is read back before committing again.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cml_bot import answers
from cml_bot.errors import ForgeError, InputError
from cml_bot.forges.http import HttpError, Request, Response
from cml_bot.results import RunResults, from_json, to_json

if TYPE_CHECKING:
    from cml_bot.forges.gitlab import GitLab

__all__ = ["RECORDS_FOLDER", "GitLabStore"]

log = logging.getLogger(__name__)

RECORDS_FOLDER = "records"
_SHA = re.compile(r"[0-9a-f]{7,64}")
_RECORD_NAME = re.compile(r"([0-9a-f]{7,64})\.json")
_MAX_ROUNDS = 6  # read -> commit rounds when a concurrent writer got in the way

# 400 answers of POST /repository/commits that mean "someone else changed the branch; look again".
_FILE_EXISTS = "A file with this name already exists"
_RACES = (
    "already exists",  # "... tried to create 'cml-bot-data' for you: Branch already exists"
    "You can only create or edit files when you are on a branch",  # the branch is gone
    "doesn't exist",  # update of a file deleted meanwhile
    "does not exist",
    "has changed since you started editing it",  # last_commit_id is stale
    "refresh and try again",  # "Could not update refs/heads/...": the ref moved during the commit
    "Could not update",
)


@dataclass(frozen=True)
class _File:
    content: bytes
    last_commit_id: str | None


class GitLabStore:
    """A :class:`~cml_bot.baseline.ResultStore` in a GitLab branch, through the REST API."""

    def __init__(self, forge: GitLab, branch: str, default_branch: str | None = None) -> None:
        if not branch.strip():
            raise InputError("baseline.data_branch: empty branch name")
        self.forge = forge
        self.client = forge.client
        self.branch = branch
        self._default_branch = default_branch

    def __repr__(self) -> str:
        return f"GitLabStore(project={self.forge.project!r}, branch={self.branch!r})"

    @property
    def _p(self) -> str:
        return f"/projects/{self.forge.project}"

    # -- the ResultStore protocol ------------------------------------------------------------------

    def recorded(self) -> set[str] | None:
        """The commits with a record, from one listing of ``records/`` (all pages); None when the
        token may not list (the job token): ask :meth:`load` for each commit instead."""
        if self.forge.token_kind != "private":
            return None
        from cml_bot.forges.gitlab import _next_page

        first = Request(
            "GET",
            f"{self._p}/repository/tree",
            {"path": RECORDS_FOLDER, "ref": self.branch, "per_page": 100, "page": 1},
        )
        found: set[str] = set()
        try:
            for page in self.client.pages(first, _next_page):
                chunk = self.client.decode(page, first)
                if not isinstance(chunk, list):
                    raise ForgeError(f"GitLab GET {self._p}/repository/tree: expected a list of tree entries")
                for item in chunk:
                    if isinstance(item, dict) and item.get("type") == "blob":
                        match = _RECORD_NAME.fullmatch(str(item.get("name", "")))
                        if match:
                            found.add(match.group(1))
        except HttpError as exc:
            if _missing(exc):  # no data branch yet, or no records/ folder in it
                log.info("GitLab: no results recorded in branch %s yet", self.branch)
                return set()
            raise
        return found

    def load(self, sha: str) -> RunResults | None:
        if not _SHA.fullmatch(sha):
            return None
        file_path = _record_path(sha)
        request = Request(
            "GET", f"{self._p}/repository/files/{urllib.parse.quote(file_path, safe='')}/raw", {"ref": self.branch}
        )
        answer = self.client.send(request, accept=frozenset({404}))
        if answer.status == 404:
            return None
        return from_json(answer.body, f"{self.branch}:{file_path}")

    def save(self, results: RunResults) -> str:
        """Commit ``records/<sha>.json`` to the data branch (creating the branch the first time)."""
        self.forge.require_write()
        sha = results.sha
        if not sha or not _SHA.fullmatch(sha):
            raise InputError(f"cannot record results without a commit sha (got {sha!r})")
        file_path = _record_path(sha)
        wanted = to_json(results).encode("utf-8")
        for round_ in range(1, _MAX_ROUNDS + 1):
            current = self._read(file_path)
            if current is not None and current.content == wanted:
                log.info("GitLab: results of %s are already recorded in %s", sha[:12], self.branch)
                return self._where(file_path)
            action: dict[str, Any] = {
                "action": "create" if current is None else "update",
                "file_path": file_path,
                "content": wanted.decode("utf-8"),
                "encoding": "text",
            }
            start = None
            if current is None:
                start = None if self._branch_exists() else self._start_branch()
            elif current.last_commit_id:
                action["last_commit_id"] = current.last_commit_id
            if self._commit(sha, action, start, wanted):
                return self._where(file_path)
            delay = min(0.5 * round_, 5.0)
            log.info("GitLab: branch %s changed while recording %s; again in %.1f s", self.branch, sha[:12], delay)
            self.client.sleep(delay)
        raise ForgeError(
            f"GitLab: could not record results of {sha[:12]} in branch {self.branch}: it kept changing "
            f"({_MAX_ROUNDS} attempts)"
        )

    # -- helpers -----------------------------------------------------------------------------------

    def _commit(self, sha: str, action: dict[str, Any], start: str | None, wanted: bytes) -> bool:
        """One commit with one action. True: recorded (by us or concurrently); False: plan again."""
        data: dict[str, Any] = {
            "branch": self.branch,
            "commit_message": f"cml-bot: results of {sha} [skip ci]",
            "actions": [action],
        }
        if start is not None:
            data["start_branch"] = start
            log.info("GitLab: creating branch %s from %s for cml-bot results", self.branch, start)

        def landed() -> Response | None:
            now = self._read(action["file_path"])
            return Response(201, {}, b"") if now is not None and now.content == wanted else None

        request = Request("POST", f"{self._p}/repository/commits", json=data)
        answer = self.client.create(
            request,
            lambda response: response,
            landed,
            accept=frozenset({400}),
        )
        if answer.status == 400:
            message = answer.body[:1000].decode("utf-8", "replace")
            if _FILE_EXISTS in message and action["action"] == "create":
                log.info("GitLab: results of %s were recorded concurrently by another job", sha[:12])
                return True
            if any(text in message for text in _RACES):
                return False
            raise self.client.error(request, answer)
        log.info("GitLab: recorded results of %s in branch %s", sha[:12], self.branch)
        return True

    def _read(self, file_path: str) -> _File | None:
        """The file on the data branch with its last commit, or None (no file, or no branch)."""
        request = Request(
            "GET", f"{self._p}/repository/files/{urllib.parse.quote(file_path, safe='')}", {"ref": self.branch}
        )
        answer = self.client.send(request, accept=frozenset({404}))
        if answer.status == 404:
            return None
        data = self.client.decode(answer, request)
        if not isinstance(data, dict) or not isinstance(data.get("content"), str):
            raise ForgeError(f"GitLab {request.describe()}: the answer is not a file")
        try:
            content = base64.b64decode(data["content"], validate=True)
        except (binascii.Error, ValueError):
            raise ForgeError(f"GitLab {request.describe()}: the file content is not base64") from None
        return _File(content, answers.text(data.get("last_commit_id")))

    def _branch_exists(self) -> bool:
        request = Request("GET", f"{self._p}/repository/branches/{urllib.parse.quote(self.branch, safe='')}")
        return self.client.send(request, accept=frozenset({404})).status != 404

    def _start_branch(self) -> str:
        """The default branch, which the new data branch starts from."""
        if self._default_branch is None:
            found = answers.text(answers.dig(self.client.json(Request("GET", self._p)), "default_branch"))
            if found is None:
                raise ForgeError(
                    f"GitLab: cannot create branch {self.branch}: the project has no default branch to start from"
                )
            self._default_branch = found
        return self._default_branch

    def _where(self, file_path: str) -> str:
        if self.forge.project_url:
            return f"{self.forge.project_url}/-/blob/{urllib.parse.quote(self.branch, safe='')}/{file_path}"
        return f"GitLab branch {self.branch}: {file_path}"


def _record_path(sha: str) -> str:
    return f"{RECORDS_FOLDER}/{sha}.json"


def _missing(exc: HttpError) -> bool:
    """A 404 about the branch, path or file; a missing (or hidden) project is an error worth showing."""
    return exc.status == 404 and "Project Not Found" not in exc.message
