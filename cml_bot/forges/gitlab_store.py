"""Recorded results in a GitLab data branch: ``records/<sha>.json`` on ``cml-bot-data``.

``cml-bot record`` on pushes to the default branch commits one file per commit through the
Commits API; merge request pipelines list ``records/`` once and read the merge-base's file as
the baseline. Nothing is cloned or pushed: every access is one REST call, with the GitLab
adapter's client, token rules and retries (:mod:`cml_bot.forges.gitlab`).

The data branch is created on the first save from the project's default branch (the Commits
API has no orphan branches), so it shares main's history and only adds the ``records/`` folder.
Every record commit says ``[skip ci]`` so it starts no pipeline on the data branch.

Concurrency: GitLab applies each commit on top of the branch's current head, so records of
different commits made at the same time all land. A race that GitLab refuses (the branch created
by someone else a moment ago, its ref moved under us, the file changed since we read it) is
planned again from a fresh read. A ``create`` refused because the file exists means the same
commit was recorded concurrently: that is success. After a failure that may have gone through
(dropped connection, 5xx), the file is read back before committing again, so a retry never
adds a second commit for the same record.

Writing needs a project access token (``CML_BOT_TOKEN`` or ``GITLAB_TOKEN``, api scope, Developer
role, allowed to push to the data branch). With only ``CI_JOB_TOKEN`` or no token at all the
factory raises :class:`~cml_bot.errors.ReadOnlyTokenError`; the app then uses its local folder.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cml_bot.context import CiContext
from cml_bot.errors import ForgeError, InputError, ReadOnlyTokenError
from cml_bot.forges.gitlab import (
    GitLabForge,
    GitLabHttpError,
    _Transient,
    gitlab_forge,
    next_page,
    token_from_env,
)
from cml_bot.results import RunResults, from_json, to_json

__all__ = ["RECORDS_FOLDER", "GitLabStore", "gitlab_store"]

log = logging.getLogger(__name__)

RECORDS_FOLDER = "records"
JOB_TOKEN_STORE_MESSAGE = (
    "CI_JOB_TOKEN cannot read or write the cml-bot data branch; set a project access token with api scope "
    "in the masked variable CML_BOT_TOKEN (results kept in a local folder instead)"
)
NO_TOKEN_STORE_MESSAGE = (
    "no GitLab token for the cml-bot data branch: set a project access token with api scope in the masked "
    "variable CML_BOT_TOKEN (results kept in a local folder instead)"
)

_SHA = re.compile(r"[0-9a-f]{7,64}")
_RECORD_NAME = re.compile(r"([0-9a-f]{7,64})\.json")
_PER_PAGE = 100
_MAX_PAGES = 1000  # 100,000 records
_MAX_ATTEMPTS = 5  # per request, as in the adapter
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


def gitlab_store(
    context: CiContext, env: Mapping[str, str], branch: str, *, sleep: Callable[[float], None] = time.sleep
) -> GitLabStore:
    """The results store in ``branch`` of the project named by the GitLab CI variables.

    Raises ReadOnlyTokenError without a project/personal token (only CI_JOB_TOKEN, or none).
    """
    _, kind = token_from_env(env)
    if kind == "job":
        raise ReadOnlyTokenError(JOB_TOKEN_STORE_MESSAGE)
    if kind == "none":
        raise ReadOnlyTokenError(NO_TOKEN_STORE_MESSAGE)
    if not branch.strip():
        raise InputError("baseline.data_branch: empty branch name")
    # The adapter's client: same base URL, token headers, retries and error messages.
    api = gitlab_forge(context, env, change_number=None, sleep=sleep)
    project_url = env.get("CI_PROJECT_URL") or None
    default = context.default_branch or env.get("CI_DEFAULT_BRANCH") or None
    return GitLabStore(api, branch, default_branch=default, project_url=project_url, sleep=sleep)


class GitLabStore:
    """A :class:`~cml_bot.baseline.ResultStore` in a GitLab branch, through the REST API."""

    def __init__(
        self,
        api: GitLabForge,
        branch: str,
        *,
        default_branch: str | None = None,
        project_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = api
        self.branch = branch
        self._default_branch = default_branch
        self._project_url = project_url.rstrip("/") if project_url else None
        self._sleep = sleep
        self._project = api._project  # already percent-encoded

    def __repr__(self) -> str:
        return f"GitLabStore(project={self._project!r}, branch={self.branch!r})"

    def close(self) -> None:
        self._api.close()

    # -- the ResultStore protocol ------------------------------------------------------------------

    def recorded(self) -> set[str]:
        """The commits with a record, from one listing of ``records/`` (all pages, no file read)."""
        path = f"/projects/{self._project}/repository/tree"
        found: set[str] = set()
        page = 1
        for _ in range(_MAX_PAGES):
            query = {"path": RECORDS_FOLDER, "ref": self.branch, "per_page": _PER_PAGE, "page": page}
            try:
                response = self._api._call("get", path, query=query)
            except GitLabHttpError as exc:
                if _missing(exc):  # no data branch yet, or no records/ folder in it
                    log.info("No results recorded in branch %s yet (%s)", self.branch, exc.message)
                    return found
                raise
            chunk = self._api._json(response, f"GET {path}")
            if not isinstance(chunk, list):
                raise ForgeError(f"GitLab GET {path}: expected a list of tree entries")
            for item in chunk:
                if isinstance(item, dict) and item.get("type") == "blob":
                    match = _RECORD_NAME.fullmatch(str(item.get("name", "")))
                    if match:
                        found.add(match.group(1))
            following = next_page(response.headers, page, len(chunk))
            if following is None:
                break
            page = following
        return found

    def load(self, sha: str) -> RunResults | None:
        if not _SHA.fullmatch(sha):
            return None
        file_path = _record_path(sha)
        path = f"/projects/{self._project}/repository/files/{quote(file_path, safe='')}/raw"
        try:
            response = self._api._call("get", path, query={"ref": self.branch})
        except GitLabHttpError as exc:
            if _missing(exc):
                return None
            raise
        return from_json(response.content, f"{self.branch}:{file_path}")

    def save(self, results: RunResults) -> str:
        """Commit ``records/<sha>.json`` to the data branch (creating the branch the first time)."""
        sha = results.sha
        if not sha or not _SHA.fullmatch(sha):
            raise InputError(f"cannot record results without a commit sha (got {sha!r})")
        file_path = _record_path(sha)
        wanted = to_json(results).encode("utf-8")
        for round_ in range(1, _MAX_ROUNDS + 1):
            current = self._read(file_path)
            if current is not None and current.content == wanted:
                log.info("Results of %s are already recorded in %s", sha[:12], self.branch)
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
            log.info("Branch %s changed while recording %s; trying again in %.1f s", self.branch, sha[:12], delay)
            self._sleep(delay)
        raise ForgeError(
            f"GitLab: could not record results of {sha[:12]} in branch {self.branch}: it kept changing "
            f"({_MAX_ROUNDS} attempts)"
        )

    # -- helpers -----------------------------------------------------------------------------------

    def _commit(self, sha: str, action: dict[str, Any], start: str | None, wanted: bytes) -> bool:
        """One commit with one action. True: recorded (by us or concurrently); False: plan again."""
        path = f"/projects/{self._project}/repository/commits"
        data: dict[str, Any] = {
            "branch": self.branch,
            "commit_message": f"cml-bot: results of {sha} [skip ci]",
            "actions": [action],
        }
        if start is not None:
            data["start_branch"] = start
            log.info("Creating branch %s from %s for cml-bot results", self.branch, start)
        last = ""
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                self._api._send("post", path, json=data)
            except _Transient as failure:
                last = failure.what
                if attempt == _MAX_ATTEMPTS:
                    break
                self._api._wait(failure, attempt, "POST", path)
                if failure.applied:
                    now = self._read(action["file_path"])
                    if now is not None and now.content == wanted:
                        log.info("The commit went through despite %s: not committing again", failure.what)
                        return True
                continue
            except GitLabHttpError as exc:
                if exc.status == 400 and _FILE_EXISTS in exc.message and action["action"] == "create":
                    log.info("Results of %s were recorded concurrently by another job", sha[:12])
                    return True
                if exc.status == 400 and any(text in exc.message for text in _RACES):
                    return False
                raise
            log.info("Recorded results of %s in branch %s", sha[:12], self.branch)
            return True
        raise GitLabHttpError(f"GitLab POST {path}: {last} (gave up after {_MAX_ATTEMPTS} attempts)", None)

    def _read(self, file_path: str) -> _File | None:
        """The file on the data branch with its last commit, or None (no file, or no branch)."""
        path = f"/projects/{self._project}/repository/files/{quote(file_path, safe='')}"
        try:
            response = self._api._call("get", path, query={"ref": self.branch})
        except GitLabHttpError as exc:
            if _missing(exc):
                return None
            raise
        data = self._api._json(response, f"GET {path}")
        if not isinstance(data, dict) or not isinstance(data.get("content"), str):
            raise ForgeError(f"GitLab GET {path}: the answer is not a file")
        try:
            content = base64.b64decode(data["content"], validate=True)
        except (binascii.Error, ValueError):
            raise ForgeError(f"GitLab GET {path}: the file content is not base64") from None
        last = data.get("last_commit_id")
        return _File(content, last if isinstance(last, str) and last else None)

    def _branch_exists(self) -> bool:
        path = f"/projects/{self._project}/repository/branches/{quote(self.branch, safe='')}"
        try:
            self._api._call("get", path)
        except GitLabHttpError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def _start_branch(self) -> str:
        """The default branch, which the new data branch starts from."""
        if self._default_branch is None:
            path = f"/projects/{self._project}"
            data = self._api._json(self._api._call("get", path), f"GET {path}")
            found = data.get("default_branch") if isinstance(data, dict) else None
            if not isinstance(found, str) or not found:
                raise ForgeError(
                    f"GitLab: cannot create branch {self.branch}: the project has no default branch to start from"
                )
            self._default_branch = found
        return self._default_branch

    def _where(self, file_path: str) -> str:
        if self._project_url:
            return f"{self._project_url}/-/blob/{quote(self.branch, safe='')}/{file_path}"
        return f"GitLab branch {self.branch}: {file_path}"


def _record_path(sha: str) -> str:
    return f"{RECORDS_FOLDER}/{sha}.json"


def _missing(exc: GitLabHttpError) -> bool:
    """A 404 about the branch, path or file; a missing (or hidden) project is an error worth showing."""
    return exc.status == 404 and "Project Not Found" not in exc.message
