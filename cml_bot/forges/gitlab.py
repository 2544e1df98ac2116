"""GitLab merge requests: one sticky note, native uploads and a ``cml-bot`` commit status.

Requests go through python-gitlab's ``Gitlab.http_request`` with its own retries turned off: this
module retries transient failures itself (5xx, 429, dropped connections) with an injectable sleep,
and never repeats a note creation blindly. After a create that may have gone through, it lists the
notes again and adopts the note carrying the marker instead of posting a second one. The project
is addressed by its numeric id (``CI_PROJECT_ID``), which avoids python-gitlab's double encoding of
project paths in upload URLs.

With only ``CI_JOB_TOKEN`` nothing is attempted: GitLab refuses notes and uploads to job tokens,
so every write raises :class:`ReadOnlyTokenError` and the app saves the report as an artifact.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote

import gitlab
import gitlab.exceptions
import requests

from cml_bot.context import CiContext
from cml_bot.errors import ForgeError, ReadOnlyTokenError
from cml_bot.forges.base import CommentMode, Publication
from cml_bot.model import Image, Verdict

__all__ = [
    "COMMENT_LIMIT",
    "JOB_TOKEN_MESSAGE",
    "STATUS_NAME",
    "GitLabForge",
    "GitLabHttpError",
    "gitlab_forge",
    "token_from_env",
]

log = logging.getLogger(__name__)

COMMENT_LIMIT = 1_000_000
STATUS_NAME = "cml-bot"
JOB_TOKEN_MESSAGE = (
    "CI_JOB_TOKEN cannot post merge request notes or uploads; set a project access token with api "
    "scope in the masked variable CML_BOT_TOKEN (report saved as a job artifact)"
)
NO_TOKEN_MESSAGE = (
    "no GitLab token: set a project access token with api scope in the masked variable CML_BOT_TOKEN "
    "(report saved as a job artifact)"
)
NOTES_LIMIT_TEXT = "Maximum number of comments exceeded"

_TRANSIENT = frozenset({429, 500, 502, 503, 504, *range(520, 531)})
_CONNECTION_ERRORS = (
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
)
_MAX_ATTEMPTS = 5
_MAX_WAIT = 60.0
_PER_PAGE = 100
_MAX_PAGES = 200  # 5,000 notes per MR at most: 50 pages
_TIMEOUT = 30.0

TokenKind = Literal["private", "job", "none"]


class GitLabHttpError(ForgeError):
    """GitLab answered a request with an error status (after retries for transient ones)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class _Transient(Exception):
    """A request failed in a way worth retrying; ``applied`` says whether it may have taken effect."""

    def __init__(self, what: str, status: int | None, wait: float | None, applied: bool) -> None:
        super().__init__(what)
        self.what = what
        self.status = status
        self.wait = wait
        self.applied = applied


@dataclass(frozen=True)
class _Note:
    id: int
    body: str
    author_id: int | None
    created_at: str
    system: bool

    @property
    def order(self) -> tuple[str, int]:
        return (self.created_at, self.id)


def token_from_env(env: Mapping[str, str]) -> tuple[str | None, TokenKind]:
    """The token to use and its kind: CML_BOT_TOKEN, GITLAB_TOKEN (private), else CI_JOB_TOKEN."""
    for name in ("CML_BOT_TOKEN", "GITLAB_TOKEN"):
        value = env.get(name, "").strip()
        if value:
            return value, "private"
    job = env.get("CI_JOB_TOKEN", "").strip()
    if job:
        return job, "job"
    return None, "none"


def gitlab_forge(
    context: CiContext,
    env: Mapping[str, str],
    *,
    change_number: int | None = None,
    head_sha: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> GitLabForge:
    """Build the forge for the project and merge request named by ``context`` (GitLab CI variables)."""
    project = context.repo or env.get("CI_PROJECT_ID")
    if not project:
        raise ForgeError("CI_PROJECT_ID is not set: cannot tell which GitLab project to post to")
    token, kind = token_from_env(env)
    client = gitlab.Gitlab(
        _base_url(context, env),
        private_token=token if kind == "private" else None,
        job_token=token if kind == "job" else None,
        timeout=_TIMEOUT,
        retry_transient_errors=False,
    )
    sha = head_sha or env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA") or context.head_sha
    project_url = env.get("CI_MERGE_REQUEST_PROJECT_URL") or env.get("CI_PROJECT_URL")
    return GitLabForge(
        client,
        project,
        change_number=change_number if change_number is not None else context.change_number,
        head_sha=sha or None,
        token_kind=kind,
        project_url=project_url or None,
        sleep=sleep,
    )


def _base_url(context: CiContext, env: Mapping[str, str]) -> str:
    api = (context.api_url or env.get("CI_API_V4_URL") or "").rstrip("/")
    if api:
        return api.removesuffix("/api/v4")
    return (context.server_url or env.get("CI_SERVER_URL") or "https://gitlab.com").rstrip("/")


class GitLabForge:
    """The :class:`~cml_bot.forges.base.Forge` for one GitLab project and merge request."""

    def __init__(
        self,
        client: gitlab.Gitlab,
        project: str,
        *,
        change_number: int | None,
        head_sha: str | None,
        token_kind: TokenKind,
        project_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._gl = client
        self._project = quote(str(project), safe="")
        self._iid = change_number
        self._iid_looked_up = change_number is not None
        self._sha = head_sha
        self._token_kind = token_kind
        self._project_url = project_url.rstrip("/") if project_url else None
        self._sleep = sleep
        self._uploads: dict[str, str] = {}  # sha256 of the content -> upload url
        self._user: int | None = None
        self._user_looked_up = False
        self._last_headers: Mapping[str, str] = {}
        client.session.hooks["response"].append(self._remember_headers)

    def __repr__(self) -> str:
        return f"GitLabForge(project={self._project!r}, merge_request={self._iid!r})"

    def close(self) -> None:
        self._gl.session.close()

    @property
    def comment_limit(self) -> int:
        return COMMENT_LIMIT

    # -- the Forge protocol ------------------------------------------------------------------------

    def upload_images(self, images: Sequence[Image]) -> Mapping[str, str]:
        self._require_write()
        urls: dict[str, str] = {}
        if images and self._merge_request() is None:
            log.info("No open merge request for commit %s: not uploading images", self._sha)
            return urls
        for image in images:
            digest = hashlib.sha256(image.data).hexdigest()
            url = self._uploads.get(digest)
            if url is None:
                mime = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
                path = f"/projects/{self._project}/uploads"
                files = {"file": (image.name, image.data, mime)}
                data = self._json(self._call("post", path, files=files), f"POST {path}")
                found = data.get("url") if isinstance(data, dict) else None
                if not isinstance(found, str) or not found:
                    raise ForgeError(f"GitLab POST /projects/{self._project}/uploads: the answer has no url")
                url = found
                self._uploads[digest] = url
                log.info("Uploaded %s to GitLab", image.name)
            urls[image.name] = url
        return urls

    def upsert_comment(self, body: str, marker: str, mode: CommentMode) -> Publication:
        if not _has_marker(body, marker):
            raise ValueError("the comment body must contain the marker line")
        if len(body) > COMMENT_LIMIT:
            raise ForgeError(
                f"the report is {len(body):,} characters, over GitLab's limit of {COMMENT_LIMIT:,} per note"
            )
        self._require_write()
        iid = self._merge_request()
        if iid is None:
            log.info("No open merge request for commit %s: the report is not posted", self._sha)
            return Publication(None, False)
        me = self._user_id()
        mode = CommentMode(mode)
        existing = self._marked(self._list_notes(iid), marker, me)
        if mode is CommentMode.UPDATE and existing:
            target = existing[0]
            if target.body != body:
                self._update_note(iid, target.id, body)
                log.info("Updated note %s on merge request !%s", target.id, iid)
            else:
                log.info("Note %s on merge request !%s is already up to date", target.id, iid)
            return Publication(self._note_url(iid, target.id), False)
        if mode is CommentMode.RECREATE:
            for note in existing:
                self._delete_note(iid, note.id)
            existing = []
        created = self._create_note(iid, body, marker, me, known={n.id for n in existing})
        log.info("Created note %s on merge request !%s", created.id, iid)
        if mode is CommentMode.NEW:
            return Publication(self._note_url(iid, created.id), True)
        return self._settle(iid, body, marker, created)

    def set_status(self, verdict: Verdict, description: str, target_url: str | None) -> None:
        self._require_write()
        if not self._sha:
            raise ForgeError("no commit SHA (CI_COMMIT_SHA) to set the cml-bot status on")
        state = "success" if Verdict(verdict) in (Verdict.PASS, Verdict.NO_BASELINE) else "failed"
        data: dict[str, Any] = {
            "state": state,
            "name": STATUS_NAME,
            "description": " ".join(description.split())[:255],
        }
        if target_url:
            data["target_url"] = target_url
        path = f"/projects/{self._project}/statuses/{quote(self._sha, safe='')}"
        try:
            self._call("post", path, json=data)
        except GitLabHttpError as exc:
            # A retried POST whose first attempt went through: GitLab refuses the same transition.
            if exc.status == 400 and "Cannot transition status" in exc.message:
                return
            raise
        log.info("Set the %s status to %s on %s", STATUS_NAME, state, self._sha[:12])

    def verify_change_head(self, expected_sha: str) -> None:
        """Raise ForgeError unless the MR's head is ``expected_sha`` (a bundle posts on its own MR only)."""
        iid = self._merge_request()
        if iid is None:
            raise ForgeError(f"GitLab: no merge request to check for commit {expected_sha[:12]}")
        path = f"/projects/{self._project}/merge_requests/{iid}"
        found = self._json(self._call("get", path), f"GET {path}")
        actual = found.get("sha") if isinstance(found, dict) else None
        if actual != expected_sha:
            raise ForgeError(
                f"GitLab: merge request !{iid} head is {str(actual)[:12]}, not {expected_sha[:12]}; "
                "refusing to post a bundle made for another commit"
            )

    # -- notes -------------------------------------------------------------------------------------

    def _notes_path(self, iid: int) -> str:
        return f"/projects/{self._project}/merge_requests/{iid}/notes"

    def _list_notes(self, iid: int) -> list[_Note]:
        """Every note of the merge request, following ``X-Next-Page`` across all pages."""
        notes: list[_Note] = []
        page = 1
        for _ in range(_MAX_PAGES):
            query = {"per_page": _PER_PAGE, "page": page, "sort": "asc", "order_by": "created_at"}
            response = self._call("get", self._notes_path(iid), query=query)
            chunk = self._json(response, f"GET {self._notes_path(iid)}")
            if not isinstance(chunk, list):
                raise ForgeError(f"GitLab GET {self._notes_path(iid)}: expected a list of notes")
            notes.extend(note for note in (_parse_note(item) for item in chunk) if note is not None)
            following = next_page(response.headers, page, len(chunk))
            if following is None:
                break
            page = following
        unique = {note.id: note for note in notes}
        return sorted(unique.values(), key=lambda note: note.order)

    def _marked(self, notes: Sequence[_Note], marker: str, me: int | None) -> list[_Note]:
        return [
            note
            for note in notes
            if not note.system and _has_marker(note.body, marker) and (me is None or note.author_id == me)
        ]

    def _create_note(self, iid: int, body: str, marker: str, me: int | None, known: set[int]) -> _Note:
        """POST the note once; after a failure that may have gone through, look before posting again."""
        path = self._notes_path(iid)
        last = ""
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                response = self._send("post", path, json={"body": body})
            except _Transient as failure:
                last = failure.what
                if attempt == _MAX_ATTEMPTS:
                    break
                self._wait(failure, attempt, "POST", path)
                if failure.applied:
                    fresh = [n for n in self._marked(self._list_notes(iid), marker, me) if n.id not in known]
                    mine = [n for n in fresh if n.body == body] or fresh
                    if mine:
                        log.info("The note went through despite %s: not posting again", failure.what)
                        return mine[-1]
                continue
            note = _parse_note(self._json(response, f"POST {path}"))
            if note is None:
                raise ForgeError(f"GitLab POST {path}: the answer is not a note")
            return note
        raise GitLabHttpError(f"GitLab POST {path}: {last} (gave up after {_MAX_ATTEMPTS} attempts)", None)

    def _settle(self, iid: int, body: str, marker: str, created: _Note) -> Publication:
        """Race rule: if concurrent runs created several notes, keep the oldest and delete the others."""
        same = [
            note for note in self._marked(self._list_notes(iid), marker, None) if note.author_id == created.author_id
        ]
        if len(same) <= 1:
            return Publication(self._note_url(iid, created.id), True)
        keep, *extra = same
        for note in extra:
            self._delete_note(iid, note.id)
        log.info("Removed %d duplicate note(s) left by a concurrent run; kept note %s", len(extra), keep.id)
        if keep.id == created.id:
            return Publication(self._note_url(iid, keep.id), True)
        if keep.body != body:
            self._update_note(iid, keep.id, body)
        return Publication(self._note_url(iid, keep.id), False)

    def _update_note(self, iid: int, note_id: int, body: str) -> None:
        self._call("put", f"{self._notes_path(iid)}/{note_id}", json={"body": body})

    def _delete_note(self, iid: int, note_id: int) -> None:
        try:
            self._call("delete", f"{self._notes_path(iid)}/{note_id}")
        except GitLabHttpError as exc:
            if exc.status != 404:  # already gone (a concurrent run, or our retried DELETE)
                raise

    def _note_url(self, iid: int, note_id: int) -> str | None:
        if self._project_url is None:
            try:
                data = self._json(self._call("get", f"/projects/{self._project}"), "GET project")
            except ForgeError as exc:
                log.debug("Cannot tell the project's web URL: %s", exc)
                return None
            web_url = data.get("web_url") if isinstance(data, dict) else None
            if not isinstance(web_url, str) or not web_url:
                return None
            self._project_url = web_url.rstrip("/")
        return f"{self._project_url}/-/merge_requests/{iid}#note_{note_id}"

    # -- lookups -----------------------------------------------------------------------------------

    def _merge_request(self) -> int | None:
        """The MR iid; on a branch pipeline, the first open MR whose head is this commit."""
        if self._iid_looked_up:
            return self._iid
        self._iid_looked_up = True
        if not self._sha:
            return None
        path = f"/projects/{self._project}/repository/commits/{quote(self._sha, safe='')}/merge_requests"
        found = self._json(self._call("get", path), f"GET {path}")
        for item in found if isinstance(found, list) else []:
            if isinstance(item, dict) and item.get("state") == "opened" and isinstance(item.get("iid"), int):
                self._iid = int(item["iid"])
                log.info("Commit %s belongs to merge request !%s", self._sha[:12], self._iid)
                break
        return self._iid

    def _user_id(self) -> int | None:
        """The token's user, to match only our own notes; None when ``/user`` is not allowed."""
        if not self._user_looked_up:
            self._user_looked_up = True
            try:
                data = self._json(self._call("get", "/user"), "GET /user")
            except GitLabHttpError as exc:
                if exc.status == 401:
                    raise
                log.debug("Cannot read the token's user (%s): matching notes by marker only", exc)
                return None
            user = data.get("id") if isinstance(data, dict) else None
            self._user = user if isinstance(user, int) else None
        return self._user

    # -- HTTP --------------------------------------------------------------------------------------

    def _require_write(self) -> None:
        if self._token_kind == "job":
            raise ReadOnlyTokenError(JOB_TOKEN_MESSAGE)
        if self._token_kind == "none":
            raise ReadOnlyTokenError(NO_TOKEN_MESSAGE)

    def _remember_headers(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self._last_headers = response.headers
        return response

    def _call(
        self,
        verb: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
    ) -> requests.Response:
        """One request, retried on transient failures (for requests that are safe to repeat)."""
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                return self._send(verb, path, query=query, json=json, files=files)
            except _Transient as failure:
                if attempt == _MAX_ATTEMPTS:
                    gave_up = f"{failure.what} (gave up after {_MAX_ATTEMPTS} attempts)"
                    where = f"GitLab {verb.upper()} {path}"
                    raise GitLabHttpError(f"{where}: {gave_up}", failure.status) from None
                self._wait(failure, attempt, verb.upper(), path)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        verb: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
    ) -> requests.Response:
        """One attempt; raises _Transient for failures worth retrying, GitLabHttpError for the rest."""
        self._last_headers = {}
        try:
            return self._gl.http_request(
                verb,
                path,
                query_data=query,
                post_data=json,
                files=files,
                obey_rate_limit=False,
                retry_transient_errors=False,
                max_retries=0,
            )
        except _CONNECTION_ERRORS as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})", None, None, applied=True) from None
        except gitlab.exceptions.GitlabHttpError as exc:
            status = exc.response_code
            message = self._redact(_one_line(exc.error_message))
            retry_after = _retry_after(self._last_headers)
            if status in _TRANSIENT or (status == 403 and retry_after is not None):
                raise _Transient(
                    f"{status} {message}", status, retry_after, applied=status != 429 and status != 403
                ) from None
            raise self._failure(verb, path, status, message) from None
        except gitlab.exceptions.GitlabError as exc:  # redirects, parsing, 401 (GitlabAuthenticationError)
            message = self._redact(_one_line(exc.error_message))
            if exc.response_code in (401, 403):
                raise self._failure(verb, path, exc.response_code, message) from None
            raise GitLabHttpError(f"GitLab {verb.upper()} {path}: {message}", exc.response_code) from None

    def _failure(self, verb: str, path: str, status: int | None, message: str) -> ForgeError:
        where = f"GitLab {verb.upper()} {path}"
        if status == 400 and NOTES_LIMIT_TEXT in message:
            return GitLabHttpError(
                f"{where}: 400 {NOTES_LIMIT_TEXT}: the merge request has reached GitLab's limit of 5,000 "
                "comments; cml-bot cannot add a note (use comment mode 'update' to edit the existing one)",
                status,
            )
        if status in (401, 403) and self._token_kind == "job":
            return ReadOnlyTokenError(JOB_TOKEN_MESSAGE)
        if status == 401:
            return GitLabHttpError(
                f"{where}: 401 {message}: the token was rejected (expired or revoked?); check CML_BOT_TOKEN",
                status,
            )
        if status == 403:
            return GitLabHttpError(
                f"{where}: 403 {message}: the token lacks permission (it needs the api scope and at least "
                "the Developer role)",
                status,
            )
        return GitLabHttpError(f"{where}: {status} {message}", status)

    def _wait(self, failure: _Transient, attempt: int, verb: str, path: str) -> None:
        delay = failure.wait if failure.wait is not None else float(2 ** (attempt - 1))
        delay = min(max(delay, 0.0), _MAX_WAIT)
        log.warning(
            "GitLab %s %s failed (%s); retrying in %.0f s (attempt %d of %d)",
            verb,
            path,
            failure.what,
            delay,
            attempt + 1,
            _MAX_ATTEMPTS,
        )
        self._sleep(delay)

    def _json(self, response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ForgeError(f"GitLab {what}: the answer is not JSON") from None

    def _redact(self, text: str) -> str:
        for secret in (self._gl.private_token, self._gl.job_token):
            if secret:
                text = text.replace(secret, "***")
        return text


def _has_marker(body: str, marker: str) -> bool:
    wanted = marker.strip()
    return any(line.strip() == wanted for line in body.splitlines())


def _parse_note(item: object) -> _Note | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        return None
    author = item.get("author")
    author_id = author.get("id") if isinstance(author, dict) else None
    body = item.get("body")
    return _Note(
        id=item["id"],
        body=body if isinstance(body, str) else "",
        author_id=author_id if isinstance(author_id, int) else None,
        created_at=str(item.get("created_at") or ""),
        system=bool(item.get("system")),
    )


def _one_line(message: object) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    text = " ".join(str(message).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def next_page(headers: Mapping[str, str], page: int, count: int) -> int | None:
    """The page after ``page`` from GitLab's ``X-Next-Page`` header, or None on the last page.

    Without the header (not just empty: some proxies drop it), a full page means there may be more.
    """
    following = headers.get("X-Next-Page")
    if following is None:
        return page + 1 if count >= _PER_PAGE else None
    if not following.strip().isdigit() or int(following) <= page:
        return None
    return int(following)
