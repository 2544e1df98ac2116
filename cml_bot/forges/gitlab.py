"""GitLab merge requests: the sticky note, native uploads and a ``cml-bot`` commit status.

Requests go through the shared :class:`~cml_bot.forges.http.JsonClient`; python-gitlab's
``Gitlab.http_request`` is the transport (base URL, ``PRIVATE-TOKEN`` / ``JOB-TOKEN`` headers, TLS)
with its own retries and rate-limit sleeping turned off. The project is addressed by its numeric id
(``CI_PROJECT_ID``), which avoids python-gitlab's double encoding of project paths.

Facts relied on (tests/contracts/gitlab/README.md has the sources):

- Tokens: a project access token in ``CML_BOT_TOKEN`` (or ``GITLAB_TOKEN``) writes notes, uploads
  and statuses. ``CI_JOB_TOKEN`` may not; it may read repository files of its own project, so
  recorded baselines still load. ``GITLAB_TOKEN: $CI_JOB_TOKEN`` is recognised as the job token.
- The head of a merge request is ``CI_MERGE_REQUEST_SOURCE_BRANCH_SHA`` in merged-results pipelines
  (``CI_COMMIT_SHA`` is then a temporary merge commit): the context resolves it once.
- Where a status goes (``Ci::CreateCommitStatusService``, docs "External commit statuses"): with
  ``pipeline_id`` to that pipeline, which must be for the same sha (else 404 "Pipeline for
  pipeline_id, sha and ref Not Found"); without it to the newest pipeline of that sha and ``ref``,
  else into a new ``external`` pipeline nobody looks at. So the status goes into the RUNNING pipeline
  (its ``CI_PIPELINE_ID`` on its ``CI_COMMIT_SHA``) when that pipeline is the merge request's: a
  detached pipeline runs on the head itself, a merged-results pipeline on GitLab's temporary merge
  commit of that head, and the merge request page shows that pipeline. Elsewhere (a publishing job in
  another pipeline) it goes on the head with the source branch as ``ref``. A ``409`` there means
  "retry the request" (docs: Commits API).
- Uploads answer ``{url, markdown, ...}``; links are built from ``url``, never by hand. Uploaded
  images carry a content hash in their file name, so an image already uploaded for this merge request
  (named in one of our earlier notes) is linked again instead of uploaded again.
- Notes: 1,000,000 characters; at most 5,000 per merge request.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

import requests

from cml_bot import answers
from cml_bot import markdown as md
from cml_bot.baseline import ResultStore
from cml_bot.context import CiContext
from cml_bot.errors import ForgeError, ReadOnlyTokenError
from cml_bot.forges.base import FULL_SHA, Change, check_head
from cml_bot.forges.http import ConnectionFailure, HttpError, JsonClient, Request, Response, link_next, was_sent
from cml_bot.forges.sticky import Comment, edit_refusal
from cml_bot.model import Image, Verdict
from cml_bot.plan import JOB_TOKEN_MESSAGE
from cml_bot.report import Flavour
from cml_bot.secrets import Secrets

log = logging.getLogger(__name__)

COMMENT_LIMIT = 1_000_000
STATUS_NAME = "cml-bot"
PER_PAGE = 100
FULL_REPORT_HINT = "the `cml-bot-report` artifact of this job (`report.md`)"
NO_TOKEN_MESSAGE = (
    "no GitLab token: set a project access token with api scope in the masked variable CML_BOT_TOKEN "
    "(report saved as a job artifact)"
)
NOTES_LIMIT_TEXT = "Maximum number of comments exceeded"
HINTS = {
    401: "the token was rejected (expired or revoked?); check CML_BOT_TOKEN",
    403: "the token lacks permission (it needs the api scope and at least the Developer role)",
}

TokenKind = Literal["private", "job", "none"]


def token_from_env(env: Mapping[str, str]) -> tuple[str | None, TokenKind]:
    """The token to use and its kind: CML_BOT_TOKEN, GITLAB_TOKEN (a project/personal token, unless
    it is the job token passed on), else CI_JOB_TOKEN."""
    job = env.get("CI_JOB_TOKEN", "").strip()
    for name in ("CML_BOT_TOKEN", "GITLAB_TOKEN"):
        value = env.get(name, "").strip()
        if value:
            return value, "job" if value == job else "private"
    if job:
        return job, "job"
    return None, "none"


def gitlab_transport(
    base_url: str, token: str | None, kind: TokenKind, timeout: float = 30.0
) -> tuple[Callable[[Request], Response], Callable[[], None]]:
    """python-gitlab's ``http_request``, sending exactly one request per call; error answers are
    returned (with their headers) rather than raised, so the JsonClient decides. Also returns the
    function that closes its connections."""
    import gitlab
    import gitlab.exceptions

    client = gitlab.Gitlab(
        base_url,
        private_token=token if kind == "private" else None,
        job_token=token if kind == "job" else None,
        timeout=timeout,
        retry_transient_errors=False,
    )
    last: dict[str, requests.Response] = {}

    def remember(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        last["response"] = response
        return response

    client.session.hooks["response"].append(remember)

    def send(request: Request) -> Response:
        last.clear()
        try:
            answer = client.http_request(
                request.verb.lower(),
                request.path,
                query_data=dict(request.query),
                post_data=request.json,
                files=dict(request.files) if request.files else None,
                obey_rate_limit=False,
                retry_transient_errors=False,
                max_retries=0,
            )
        except requests.exceptions.RequestException as exc:
            raise ConnectionFailure(type(exc).__name__, sent=was_sent(exc)) from None
        except gitlab.exceptions.GitlabError as exc:
            seen = last.get("response")
            if seen is None:
                raise ConnectionFailure(type(exc).__name__, sent=True) from None
            answer = seen
        headers = {str(k).lower(): str(v) for k, v in answer.headers.items()}
        return Response(answer.status_code, headers, answer.content)

    return send, client.session.close


def api_root(context: CiContext, env: Mapping[str, str]) -> str:
    api = (context.api_url or env.get("CI_API_V4_URL") or "").rstrip("/")
    if api:
        return api
    return (context.server_url or env.get("CI_SERVER_URL") or "https://gitlab.com").rstrip("/") + "/api/v4"


def gitlab_forge(
    context: CiContext,
    env: Mapping[str, str],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> GitLab:
    project = context.repo or env.get("CI_PROJECT_ID")
    if not project:
        raise ForgeError("GitLab: CI_PROJECT_ID is not set: cannot tell which project to post to")
    token, kind = token_from_env(env)
    root = api_root(context, env)
    secrets = Secrets.from_env(env, extra=[token] if token else [])
    transport, closer = gitlab_transport(root.removesuffix("/api/v4"), token, kind)
    client = JsonClient("GitLab", transport, root, redact=secrets.scrub, sleep=sleep, closer=closer, hints=HINTS)
    return GitLab(
        client,
        project=urllib.parse.quote(str(project), safe=""),
        token_kind=kind,
        head_sha=context.head_sha,
        head_ref=context.head_ref,
        number=context.change_number,
        pipeline_id=context.pipeline_id,
        pipeline_sha=context.checked_out_sha,
        merged_results=context.merged_results,
        project_url=(env.get("CI_MERGE_REQUEST_PROJECT_URL") or env.get("CI_PROJECT_URL") or "").rstrip("/") or None,
        default_branch=context.default_branch,
    )


@dataclass
class GitLab:
    """The :class:`~cml_bot.forges.base.Forge` for one GitLab project and commit."""

    client: JsonClient = field(repr=False)
    project: str  # percent-encoded id or path
    token_kind: TokenKind
    head_sha: str | None
    head_ref: str | None = None  # the source branch
    number: int | None = None  # the merge request iid of an MR pipeline
    pipeline_id: int | None = None  # the running pipeline
    pipeline_sha: str | None = None  # the commit it runs on (CI_COMMIT_SHA)
    merged_results: bool = False  # the running pipeline is the MR's merged-results pipeline
    project_url: str | None = None
    default_branch: str | None = None  # where a new data branch starts (asked from the API when unknown)
    name: str = "GitLab"
    comment_limit: int = COMMENT_LIMIT
    full_report_hint: str = FULL_REPORT_HINT
    flavour: Flavour = Flavour.GITHUB
    _change: Change | None = field(init=False, default=None, repr=False)
    _change_known: bool = field(init=False, default=False, repr=False)
    _identity: str | None = field(init=False, default=None, repr=False)
    _identity_known: bool = field(init=False, default=False, repr=False)
    _uploaded: dict[str, str] = field(init=False, default_factory=dict, repr=False)  # sha256 -> url

    @property
    def _p(self) -> str:
        return f"/projects/{self.project}"

    def close(self) -> None:
        self.client.close()

    def require_write(self) -> None:
        if self.token_kind == "job":
            raise ReadOnlyTokenError(JOB_TOKEN_MESSAGE)
        if self.token_kind == "none":
            raise ReadOnlyTokenError(NO_TOKEN_MESSAGE)

    # -- the merge request -------------------------------------------------------------------------

    def change(self) -> Change | None:
        if not self._change_known:
            self._change_known = True
            if self.number is not None:
                self._change = Change(self.number)
            elif self.head_sha:
                self._change = self._request_headed_by(self.head_sha)
            log.info(
                "GitLab: commit %s is %s",
                (self.head_sha or "?")[:10],
                f"!{self._change.number}" if self._change else "the head of no open merge request",
            )
        return self._change

    def _request_headed_by(self, sha: str) -> Change | None:
        """The open MR whose head is ``sha``; one that only contains it (stacked MRs) is not it."""
        found = self.client.json(
            Request("GET", f"{self._p}/repository/commits/{urllib.parse.quote(sha, safe='')}/merge_requests")
        )
        headed = sorted(
            int(item["iid"])
            for item in (found if isinstance(found, list) else [])
            if isinstance(item, dict)
            and item.get("state") == "opened"
            and isinstance(item.get("iid"), int)
            and item.get("sha") == sha
        )
        return Change(headed[0], sha) if headed else None

    def verify_head(self, change: Change, sha: str) -> None:
        found = self.client.json(Request("GET", f"{self._p}/merge_requests/{change.number}"))
        check_head("GitLab", f"merge request !{change.number}", answers.dig(found, "sha"), sha)

    # -- notes -------------------------------------------------------------------------------------

    def thread(self, change: Change) -> GitLabThread:
        self.require_write()
        return GitLabThread(self, change.number)

    def identity(self) -> str | None:
        if not self._identity_known:
            self._identity_known = True
            data = self.client.json_unless(Request("GET", "/user"), frozenset({401, 403}))
            user = answers.dig(data, "id")
            self._identity = str(user) if isinstance(user, int) else None
            log.info("GitLab: our notes are those by user %s", self._identity or "(unknown until we post)")
        return self._identity

    def note_url(self, iid: int, note_id: str) -> str | None:
        if self.project_url is None:
            data = self.client.json_unless(Request("GET", self._p), frozenset({403, 404}))
            web_url = answers.text(answers.dig(data, "web_url"))
            if web_url is None or not web_url.startswith(("https://", "http://")):
                return None
            self.project_url = web_url.rstrip("/")
        return f"{self.project_url}/-/merge_requests/{iid}#note_{note_id}"

    # -- images ------------------------------------------------------------------------------------

    def upload_images(self, change: Change | None, images: Sequence[Image]) -> Mapping[str, str]:
        if not images:
            return {}
        self.require_write()
        if change is None:
            log.info("GitLab: no merge request for this commit; images are not uploaded")
            return {}
        earlier = self._earlier_uploads(change)
        urls: dict[str, str] = {}
        for image in images:
            name = hashed_name(image)
            digest = hashlib.sha256(image.data).hexdigest()
            url = earlier.get(name) or self._uploaded.get(digest)
            if url is None:
                mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
                request = Request(
                    "POST", f"{self._p}/uploads", files={"file": (name, image.data, mime)}, repeatable=True
                )
                found = answers.text(answers.dig(self.client.json(request), "url"))
                if found is None or not re.fullmatch(r"/uploads/[0-9a-f]{32}/[^\s()<>]+", found):
                    raise ForgeError(f"GitLab POST {self._p}/uploads: the answer has no usable url")
                url = found
                log.info("GitLab: uploaded %s", name)
            self._uploaded[digest] = url
            urls[image.name] = url
        return urls

    def _earlier_uploads(self, change: Change) -> dict[str, str]:
        """Uploads our earlier notes on this merge request link to: file name -> url."""
        me = self.identity()
        found: dict[str, str] = {}
        for note in GitLabThread(self, change.number).comments():
            if me is None or note.author != me:
                continue
            for url in re.findall(r"\((/uploads/[0-9a-f]{32}/[^\s()<>]+)\)", note.body):
                found.setdefault(url.rsplit("/", 1)[1], url)
        return found

    # -- status ------------------------------------------------------------------------------------

    def set_status(self, verdict: Verdict, description: str, target_url: str | None) -> None:
        self.require_write()
        if not self.head_sha:
            raise ForgeError("GitLab: no head commit to set the cml-bot status on")
        state = "failed" if Verdict(verdict) in (Verdict.REGRESSED, Verdict.FAILED) else "success"
        data: dict[str, Any] = {"state": state, "name": STATUS_NAME, "description": md.field(description, 255)}
        if target_url:
            data["target_url"] = target_url
        in_pipeline = bool(
            self.pipeline_id is not None
            and self.pipeline_sha
            and (self.pipeline_sha == self.head_sha or self.merged_results)
        )
        sha = self._post_status(data, in_pipeline)
        log.info("GitLab: status %s on %s", state, sha[:10])

    def _post_status(self, data: dict[str, Any], in_pipeline: bool) -> str:
        """POST the status into the running pipeline, or on the head with the source branch as ref;
        returns the sha it went on. A pipeline GitLab does not match to that sha (404, e.g. a retried
        job whose variables name another pipeline) falls back to the head."""
        assert self.head_sha is not None
        sha, fields = self.head_sha, dict[str, Any]({"ref": self.head_ref} if self.head_ref else {})
        if in_pipeline and self.pipeline_sha is not None:
            sha, fields = self.pipeline_sha, {"pipeline_id": self.pipeline_id}
        request = Request(
            "POST",
            f"{self._p}/statuses/{urllib.parse.quote(sha, safe='')}",
            json={**data, **fields},
            conflict_is_transient=True,  # docs: 409 on a status means "retry the request"
            repeatable=True,
        )
        answer = self.client.send(request, accept=frozenset({400, 404}))
        message = " ".join(answer.body[:500].decode("utf-8", "replace").split())
        if answer.status == 404 and in_pipeline and "Pipeline for pipeline_id" in message:
            log.info("GitLab: pipeline %s is not for %s; the status goes on the head", self.pipeline_id, sha[:10])
            return self._post_status(data, in_pipeline=False)
        if answer.status == 400 and "Cannot transition status" in message:
            return sha  # our earlier attempt set this state already
        if not answer.ok:
            raise self.client.error(request, answer)
        return sha

    # -- results and merge-base --------------------------------------------------------------------

    def result_store(self, branch: str) -> ResultStore:
        from cml_bot.forges.gitlab_store import GitLabStore

        return GitLabStore(self, branch, default_branch=self.default_branch)

    def merge_base(self, base_ref: str, head_sha: str) -> str | None:
        refs = urllib.parse.urlencode([("refs[]", base_ref), ("refs[]", head_sha)])
        try:
            data = self.client.json(Request("GET", f"{self._p}/repository/merge_base?{refs}"))
        except ForgeError as exc:
            log.warning("GitLab: no merge-base of %s and %s from the API: %s", base_ref, head_sha[:10], exc)
            return None
        sha = answers.text(answers.dig(data, "id"))
        return sha if sha is not None and FULL_SHA.fullmatch(sha) else None


def hashed_name(image: Image) -> str:
    """``plot-01-loss.png`` -> ``plot-01-loss-<12 hex of sha256>.png``: same bytes, same name."""
    digest = hashlib.sha256(image.data).hexdigest()[:12]
    path = PurePosixPath(image.name)
    return f"{path.stem}-{digest}{path.suffix}"


@dataclass
class GitLabThread:
    """The notes of one merge request."""

    forge: GitLab
    iid: int

    @property
    def _path(self) -> str:
        return f"{self.forge._p}/merge_requests/{self.iid}/notes"

    def identity(self) -> str | None:
        return self.forge.identity()

    def comments(self) -> list[Comment]:
        client = self.forge.client
        first = Request("GET", self._path, {"per_page": PER_PAGE, "page": 1, "sort": "asc", "order_by": "created_at"})
        notes: dict[str, tuple[tuple[str, int], Comment]] = {}
        for page in client.pages(first, _next_page):
            items = client.decode(page, first)
            if not isinstance(items, list):
                raise ForgeError(f"GitLab GET {self._path}: expected a list of notes")
            for item in items:
                parsed = _note(item)
                if parsed is not None:
                    notes[parsed[1].id] = parsed
        return [comment for _, comment in sorted(notes.values(), key=lambda pair: pair[0])]

    def create(self, body: str, confirm: Callable[[], Comment | None]) -> Comment:
        def parse(answer: Response) -> Comment:
            parsed = _note(self.forge.client.decode(answer, Request("POST", self._path)))
            if parsed is None:
                raise ForgeError(f"GitLab POST {self._path}: the answer is not a note")
            return parsed[1]

        try:
            created = self.forge.client.create(Request("POST", self._path, json={"body": body}), parse, confirm)
        except HttpError as exc:
            if exc.status == 400 and NOTES_LIMIT_TEXT in exc.message:
                raise ForgeError(
                    f"{exc.message}: the merge request has reached GitLab's limit of 5,000 comments; use "
                    "comment mode 'update' to edit the existing one"
                ) from None
            raise
        if self.forge._identity is None:  # learnt from GitLab's answer to our own post
            self.forge._identity, self.forge._identity_known = created.author, True
        log.info("GitLab: created note %s on !%d", created.id, self.iid)
        return self._with_url(created)  # once, for a parsed answer and an adopted note alike

    def edit(self, comment: Comment, body: str) -> Comment:
        try:
            self.forge.client.send(Request("PUT", f"{self._path}/{comment.id}", json={"body": body}))
        except HttpError as exc:
            raise edit_refusal(exc, f"GitLab: may not edit our note {comment.id} on !{self.iid}") from None
        log.info("GitLab: updated note %s on !%d", comment.id, self.iid)
        return self._with_url(Comment(comment.id, body, comment.author))

    def delete(self, comment: Comment) -> None:
        try:
            self.forge.client.send(Request("DELETE", f"{self._path}/{comment.id}"), accept=frozenset({404}))
        except HttpError as exc:
            raise edit_refusal(exc, f"GitLab: may not delete our note {comment.id}") from None

    def _with_url(self, comment: Comment) -> Comment:
        return Comment(comment.id, comment.body, comment.author, self.forge.note_url(self.iid, comment.id))


def _next_page(answer: Response, request: Request) -> Request | None:
    """The next page: the ``Link`` header's ``rel="next"``, else ``X-Next-Page``; with neither (a
    proxy may drop them), a full page means there may be more."""
    url = link_next(answer)
    if url:
        return Request("GET", url)
    following = answer.header("x-next-page")
    page = int(request.query.get("page", 1))
    if following is not None:
        if not following.strip().isdigit() or int(following) <= page:
            return None
        return Request("GET", request.path, {**request.query, "page": int(following)})
    try:
        import json

        count = len(json.loads(answer.body))
    except (ValueError, TypeError):
        return None
    per_page = int(request.query.get("per_page", 20))
    return Request("GET", request.path, {**request.query, "page": page + 1}) if count >= per_page else None


def _note(item: object) -> tuple[tuple[str, int], Comment] | None:
    """A note as a (sort key, comment); system notes ("added 1 commit") are never anyone's report."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), int) or item.get("system"):
        return None
    author_id = answers.dig(item, "author", "id")
    body = item.get("body")
    comment = Comment(
        id=str(item["id"]),
        body=body if isinstance(body, str) else "",
        author=str(author_id) if isinstance(author_id, int) else "",
    )
    return (str(item.get("created_at") or ""), item["id"]), comment
