"""Bitbucket Cloud pull requests: the sticky comment, plots in the repository's Downloads, a
``cml-bot`` build status and a Code Insights report on the head commit.

Requests go through the shared :class:`~cml_bot.forges.http.JsonClient`; the transport is a plain
``requests`` session sending one request per call (Bitbucket publishes no Python client, and the
third-party ones retry and paginate on their own, which the JsonClient does once for every forge).

Facts relied on (tests/contracts/bitbucket/README.md and docs/bitbucket.md give the sources):

- Tokens: ``CML_BOT_TOKEN`` holds a repository access token (``Authorization: Bearer``), or, with
  ``CML_BOT_USERNAME`` (the account's email), an Atlassian API token (Basic).
- Identity: ``GET /user`` names the account of an API token; a repository access token acts as a
  bot user that ``/user`` refuses to name (401 "Token is invalid or not supported for this
  endpoint.", BCLOUD-23528). Its uuid can be given in ``CML_BOT_ACCOUNT``; otherwise the first
  comment cml-bot creates tells it (:mod:`cml_bot.forges.sticky`) and a warning says what to set.
- Lists are pages of ``{values, next, ...}``: the ``next`` URL is followed, on the API's host only.
- A pull request's ``source.commit.hash`` is abbreviated (12 characters): compared as a prefix.
- Markdown: Python-Markdown with raw HTML escaped, so the report is rendered with
  :attr:`~cml_bot.report.Flavour.BITBUCKET`; a comment holds at most 32,768 characters.
- Images: uploaded to the repository's Downloads (``POST /downloads``, replaced when the name exists)
  under content-hashed names, linked as ``https://bitbucket.org/{workspace}/{slug}/downloads/{name}``,
  which serves only readers of the repository (docs/bitbucket.md says why not a branch).
- Code Insights (``.../commit/{sha}/reports/{id}``, outside the OpenAPI description): at most 10 data
  fields, 100 annotations per request and 1,000 per report. Inside Pipelines these calls go through
  the pipeline's authenticating proxy (``http://localhost:29418``, plain ``http://api.bitbucket.org``),
  never with our token; ``CML_BOT_INSIGHTS_PROXY`` overrides it ("" uses the token instead).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import mimetypes
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from cml_bot import answers
from cml_bot import markdown as md
from cml_bot.baseline import ResultStore
from cml_bot.context import CiContext
from cml_bot.diff import numeric
from cml_bot.errors import ForgeError
from cml_bot.forges.base import FULL_SHA, Change, check_head, write_refusal
from cml_bot.forges.http import ConnectionFailure, HttpError, JsonClient, Request, Response, was_sent
from cml_bot.forges.sticky import Comment, edit_refusal
from cml_bot.model import Image, Verdict
from cml_bot.report import Flavour, Report, verdict_summary
from cml_bot.secrets import Secrets

log = logging.getLogger(__name__)

COMMENT_LIMIT = 32_768
PAGELEN = 100
STATUS_KEY = "cml-bot"  # at most 40 characters
FULL_REPORT_HINT = "the `cml-bot-report` artifact of this pipeline step (`report.md`)"
INSIGHTS_PROXY = "http://localhost:29418"
PROXIED_API = "http://api.bitbucket.org/2.0"  # what the proxy expects: plain http, Bitbucket's host
MAX_DATA_FIELDS = 10
ANNOTATIONS_PER_REQUEST = 100
ANNOTATIONS_PER_REPORT = 1000
TEXT_LIMIT = 2000  # a Code Insights report's details; Cloud documents no limit, Data Center 2,000
SUMMARY_LIMIT = 450  # a report's title and an annotation's summary (Data Center's limit, likewise)
DATA_TITLE_LIMIT = 100  # a data field's title
MAX_IMAGE_BYTES = 25 * 1024 * 1024
HINTS = {
    401: "the token was rejected (expired or revoked?); check CML_BOT_TOKEN",
    403: "the token lacks a scope (repository access token: Repositories write, Pull requests write)",
}

_FAILED = {Verdict.REGRESSED, Verdict.FAILED}  # any other verdict, even one added later, passes


def bitbucket_token(env: Mapping[str, str]) -> str | None:
    return (env.get("CML_BOT_TOKEN") or "").strip() or None


def authorization(env: Mapping[str, str], token: str) -> str:
    """Bearer for an access token; Basic with ``CML_BOT_USERNAME`` for an Atlassian API token."""
    user = (env.get("CML_BOT_USERNAME") or "").strip()
    if user:
        return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode("ascii")
    return f"Bearer {token}"


def bitbucket_transport(
    api_root: str, auth: str | None, proxy: str | None = None, timeout: float = 30.0
) -> tuple[Callable[[Request], Response], Callable[[], None]]:
    """One ``requests`` call per request, redirects not followed (a redirect could carry the
    token elsewhere), through ``proxy`` when given; and the function that closes the session."""
    session = requests.Session()
    if proxy:
        session.trust_env = False  # the pipeline's proxy, never one from the environment
        session.proxies = {"http": proxy, "https": proxy}
    session.headers["Accept"] = "application/json"
    if auth:
        session.headers["Authorization"] = auth
    root = api_root.rstrip("/")

    def send(request: Request) -> Response:
        url = request.path if "://" in request.path else root + request.path
        multipart = request.files is not None or request.form is not None
        try:
            answer = session.request(
                request.verb.upper(),
                url,
                params={key: str(value) for key, value in request.query.items()} or None,
                json=None if multipart else request.json,
                data=dict(request.form) if request.form else None,
                files=dict(request.files) if request.files else None,
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise ConnectionFailure(type(exc).__name__, sent=was_sent(exc)) from None
        headers = {str(k).lower(): str(v) for k, v in answer.headers.items()}
        return Response(answer.status_code, headers, answer.content)

    return send, session.close


def bitbucket_forge(
    context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None] = time.sleep
) -> Bitbucket:
    token = bitbucket_token(env)
    if not token:
        raise ForgeError("Bitbucket: no token; set a repository access token in CML_BOT_TOKEN")
    if not context.repo or context.repo.count("/") != 1:
        raise ForgeError("Bitbucket: the repository is unknown; BITBUCKET_WORKSPACE and BITBUCKET_REPO_SLUG are unset")
    if not context.head_sha:
        raise ForgeError("Bitbucket: the head commit is unknown; BITBUCKET_COMMIT is unset")
    api = (context.api_url or "https://api.bitbucket.org/2.0").rstrip("/")
    secrets = Secrets.from_env(env, extra=[token, authorization(env, token)])
    transport, closer = bitbucket_transport(api, authorization(env, token))
    client = JsonClient("Bitbucket", transport, api, redact=secrets.scrub, sleep=sleep, closer=closer, hints=HINTS)
    insights = client
    in_pipelines = bool(env.get("BITBUCKET_BUILD_NUMBER"))
    proxy = env.get("CML_BOT_INSIGHTS_PROXY", INSIGHTS_PROXY if in_pipelines else "").strip()
    if proxy:
        proxied, close_proxied = bitbucket_transport(PROXIED_API, None, proxy)
        insights = JsonClient(
            "Bitbucket (pipeline proxy)", proxied, PROXIED_API, redact=secrets.scrub, sleep=sleep, closer=close_proxied
        )
    workspace, slug = context.repo.split("/")
    return Bitbucket(
        client,
        insights,
        workspace=workspace,
        slug=slug,
        head_sha=context.head_sha,
        number=context.change_number,
        server_url=(context.server_url or "https://bitbucket.org").rstrip("/"),
        account=_uuid(env.get("CML_BOT_ACCOUNT")),
    )


@dataclass
class Bitbucket:
    """The :class:`~cml_bot.forges.base.Forge` (and :class:`~cml_bot.forges.base.CodeInsights`)
    for one Bitbucket Cloud repository and commit."""

    client: JsonClient = field(repr=False)
    insights: JsonClient = field(repr=False)  # the pipeline's proxy, or ``client``
    workspace: str
    slug: str
    head_sha: str
    number: int | None = None  # BITBUCKET_PR_ID in pull-request pipelines
    server_url: str = "https://bitbucket.org"
    account: str | None = None  # our comments' author when /user may not be read (CML_BOT_ACCOUNT)
    name: str = "Bitbucket"
    comment_limit: int = COMMENT_LIMIT
    full_report_hint: str = FULL_REPORT_HINT
    flavour: Flavour = Flavour.BITBUCKET
    _change: Change | None = field(init=False, default=None, repr=False)
    _change_known: bool = field(init=False, default=False, repr=False)
    _identity: str | None = field(init=False, default=None, repr=False)
    _identity_known: bool = field(init=False, default=False, repr=False)

    @property
    def repo_path(self) -> str:
        return f"/repositories/{_q(self.workspace)}/{_q(self.slug)}"

    @property
    def web_url(self) -> str:
        return f"{self.server_url}/{_q(self.workspace)}/{_q(self.slug)}"

    def close(self) -> None:
        self.client.close()
        if self.insights is not self.client:
            self.insights.close()

    # -- the pull request --------------------------------------------------------------------------

    def change(self) -> Change | None:
        if not self._change_known:
            self._change_known = True
            self._change = Change(self.number) if self.number is not None else self._pull_headed_by(self.head_sha)
            where = f"pull request #{self._change.number}" if self._change else "the head of no open pull request"
            log.info("Bitbucket: commit %s is %s", self.head_sha[:10], where)
        return self._change

    def _pull_headed_by(self, sha: str) -> Change | None:
        """The open pull request whose head is ``sha`` (listed by the "Pull Request Commit Links"
        app; 404 while it has not indexed the repository, so then none is found)."""
        first = Request("GET", f"{self.repo_path}/commit/{_q(sha)}/pullrequests", {"pagelen": 50})
        try:
            pages = [self.client.decode(page, first) for page in self.client.pages(first, next_page)]
        except HttpError as exc:
            if exc.status != 404:
                raise
            log.warning("Bitbucket: the pull requests of %s are not indexed yet; not posting a comment", sha[:10])
            return None
        headed = sorted(
            pull["id"]
            for page in pages
            for pull in page_values(page)
            if pull.get("state") == "OPEN"
            and isinstance(pull.get("id"), int)
            and _same_commit(answers.dig(pull, "source", "commit", "hash"), sha)
        )
        return Change(headed[0], sha) if headed else None

    def verify_head(self, change: Change, sha: str) -> None:
        pull = self.client.json(Request("GET", f"{self.repo_path}/pullrequests/{change.number}"))
        actual = answers.dig(pull, "source", "commit", "hash")
        check_head("Bitbucket", f"pull request #{change.number}", actual, sha, same=_same_commit(actual, sha))

    # -- comments ----------------------------------------------------------------------------------

    def thread(self, change: Change) -> BitbucketThread:
        return BitbucketThread(self, change.number)

    def identity(self) -> str | None:
        if not self._identity_known:
            self._identity_known = True
            user = self.client.json_unless(Request("GET", "/user"), frozenset({401, 403}))
            # An API token's account; a repository access token's bot user, which /user does not name.
            self._identity = _uuid(answers.dig(user, "uuid")) if user is not None else self.account
            log.info("Bitbucket: our comments are those by %s", self._identity or "(unknown until we post)")
        return self._identity

    # -- images ------------------------------------------------------------------------------------

    def upload_images(self, change: Change | None, images: Sequence[Image]) -> Mapping[str, str]:
        if not images or change is None:
            return {}
        urls: dict[str, str] = {}
        for image in images:
            if len(image.data) > MAX_IMAGE_BYTES:
                raise ForgeError(f"Bitbucket: image {image.name} is {len(image.data)} bytes, over {MAX_IMAGE_BYTES}")
            # Content-hashed: a name never changes what it shows, and a second upload is harmless.
            name = f"cml-bot-{hashlib.sha256(image.data).hexdigest()[:16]}-{image.name}"
            path = f"{self.repo_path}/downloads/{_q(name)}"
            if self.client.send(Request("GET", path), accept=frozenset({302, 404})).status == 404:
                mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
                files = {"files": (name, image.data, mime)}
                upload = Request("POST", f"{self.repo_path}/downloads", files=files, repeatable=True)
                self._write(upload, "upload plots to the repository's Downloads")
                log.info("Bitbucket: uploaded %s", name)
            urls[image.name] = f"{self.web_url}/downloads/{_q(name)}"
        return urls

    # -- status and Code Insights ------------------------------------------------------------------

    def set_status(self, verdict: Verdict, description: str, target_url: str | None) -> None:
        body = {
            "type": "commitstatus",
            "key": STATUS_KEY,
            "name": "cml-bot",
            "state": "FAILED" if verdict in _FAILED else "SUCCESSFUL",
            "description": md.field(description, 255),
            "url": target_url or self.web_url,  # required by Bitbucket
        }
        # The same key overwrites the status: repeating it is harmless.
        path = f"{self.repo_path}/commit/{self.head_sha}/statuses/build"
        self._write(Request("POST", path, json=body, repeatable=True), "set the build status")
        log.info("Bitbucket: build status %s on %s", body["state"], self.head_sha[:10])

    def code_insights_pending(self, title: str, report_id: str, link: str | None) -> None:
        """A PENDING report on the head commit while the pipeline runs; :meth:`code_insights`
        replaces it with the result."""
        body: dict[str, Any] = {
            "type": "report",
            "title": md.field(title, SUMMARY_LIMIT) or "cml-bot",
            "details": "cml-bot is running the pipeline; the result follows when it ends.",
            "report_type": "TEST",
            "reporter": "cml-bot",
            "result": "PENDING",
        }
        if link:
            body["link"] = link
        self.insights.send(Request("PUT", self._report_path(report_id), json=body))
        log.info("Bitbucket: Code Insights report PENDING on %s", self.head_sha[:10])

    def code_insights(self, report: Report, link: str | None) -> None:
        """The report's verdict (PASSED/FAILED), headline metrics and failed gates as a Code
        Insights report on the head commit, replacing this report id's earlier one (or the
        pending one)."""
        path = self._report_path(report.report_id)
        self.insights.send(Request("DELETE", path), accept=frozenset({404}))  # its annotations go with it
        body: dict[str, Any] = {
            "type": "report",
            "title": md.field(report.title, SUMMARY_LIMIT) or "cml-bot",
            "details": md.field(verdict_summary(report), TEXT_LIMIT),
            "report_type": "TEST",
            "reporter": "cml-bot",
            "result": "FAILED" if report.verdict in _FAILED else "PASSED",
            "data": _data_fields(report),
        }
        if link:
            body["link"] = link
        self.insights.send(Request("PUT", path, json=body))
        annotations = [
            {
                "type": "report_annotation",
                "external_id": f"gate-{number}",
                "annotation_type": "BUG",
                "summary": md.field(text, SUMMARY_LIMIT),
                "severity": "HIGH",
                "result": "FAILED",
            }
            for number, text in enumerate(_failed_gates(report), start=1)
        ]
        if len(annotations) > ANNOTATIONS_PER_REPORT:
            log.warning("Bitbucket: %d failed gates; Code Insights shows the first 1,000", len(annotations))
            annotations = annotations[:ANNOTATIONS_PER_REPORT]
        for start in range(0, len(annotations), ANNOTATIONS_PER_REQUEST):
            chunk = annotations[start : start + ANNOTATIONS_PER_REQUEST]  # created or updated by external_id
            self.insights.send(Request("POST", f"{path}/annotations", json=chunk, repeatable=True))
        log.info("Bitbucket: Code Insights report %s with %d annotations", body["result"], len(annotations))

    def _report_path(self, report_id: str) -> str:
        return f"{self.repo_path}/commit/{self.head_sha}/reports/cml-bot-{_q(report_id)}"

    def _write(self, request: Request, what: str) -> Response:
        try:
            return self.client.send(request)
        except HttpError as exc:
            raise write_refusal(exc, what) from None

    # -- results and merge-base --------------------------------------------------------------------

    def result_store(self, branch: str) -> ResultStore:
        from cml_bot.forges.bitbucket_store import BitbucketStore

        return BitbucketStore(self.client, self.repo_path, branch, web_url=self.web_url)

    def merge_base(self, base_ref: str, head_sha: str) -> str | None:
        path = f"{self.repo_path}/merge-base/{_q(head_sha)}..{_q(base_ref)}"
        try:
            sha = answers.dig(self.client.json(Request("GET", path)), "hash")
        except ForgeError as exc:
            log.warning("Bitbucket: no merge-base of %s and %s from the API: %s", base_ref, head_sha[:10], exc)
            return None
        return sha if isinstance(sha, str) and FULL_SHA.fullmatch(sha) else None


@dataclass
class BitbucketThread:
    """The comments of one pull request."""

    forge: Bitbucket
    number: int

    @property
    def _path(self) -> str:
        return f"{self.forge.repo_path}/pullrequests/{self.number}/comments"

    def identity(self) -> str | None:
        return self.forge.identity()

    def comments(self) -> list[Comment]:
        client, first = self.forge.client, Request("GET", self._path, {"pagelen": PAGELEN})
        found = {
            comment.id: comment
            for page in client.pages(first, next_page)
            for item in page_values(client.decode(page, first))
            if not item.get("deleted") and (comment := _comment(item)) is not None
        }
        return [found[key] for key in sorted(found, key=int)]

    def create(self, body: str, confirm: Callable[[], Comment | None]) -> Comment:
        def parse(answer: Response) -> Comment:
            comment = _comment(self.forge.client.decode(answer, Request("POST", self._path)))
            if comment is None:
                raise ForgeError(f"Bitbucket POST {self._path}: the answer is not a comment")
            return comment

        request = Request("POST", self._path, json={"type": "pullrequest_comment", "content": {"raw": body}})
        try:
            created = self.forge.client.create(request, parse, confirm)
        except HttpError as exc:
            raise write_refusal(exc, f"comment on pull request #{self.number}") from None
        if self.forge._identity is None:  # learnt from Bitbucket's answer to our own comment
            self.forge._identity, self.forge._identity_known = created.author, True
            log.warning(
                "Bitbucket: the token's account is %s; set CML_BOT_ACCOUNT to it so that later runs "
                "update this comment in place instead of adding and removing one",
                created.author,
            )
        log.info("Bitbucket: posted comment %s on pull request #%d", created.id, self.number)
        return created

    def edit(self, comment: Comment, body: str) -> Comment:
        request = Request(
            "PUT", f"{self._path}/{comment.id}", json={"type": "pullrequest_comment", "content": {"raw": body}}
        )
        try:
            answer = self.forge.client.json(request)
        except HttpError as exc:
            raise edit_refusal(exc, f"Bitbucket: may not edit our comment {comment.id}") from None
        log.info("Bitbucket: updated comment %s on pull request #%d", comment.id, self.number)
        return _comment(answer) or Comment(comment.id, body, comment.author, comment.url)

    def delete(self, comment: Comment) -> None:
        try:
            self.forge.client.send(Request("DELETE", f"{self._path}/{comment.id}"), accept=frozenset({404}))
        except HttpError as exc:
            raise edit_refusal(exc, f"Bitbucket: may not delete our comment {comment.id}") from None


def next_page(answer: Response, request: Request) -> Request | None:
    """Bitbucket's pages name the next one in the body (``next``); the client follows it only on
    the API's own host."""
    try:
        following = json.loads(answer.body).get("next")
    except (ValueError, AttributeError):
        return None
    return Request("GET", following) if isinstance(following, str) and following else None


def _data_fields(report: Report) -> list[dict[str, Any]]:
    """At most 10 typed fields: the verdict, the failed-gate count, then the gated metrics and the
    other numeric ones, in the report's order."""
    fields: list[dict[str, Any]] = [
        {"title": "Verdict", "type": "TEXT", "value": report.verdict.value},
        {"title": "Failed gates", "type": "NUMBER", "value": len(_failed_gates(report))},
    ]
    metrics = sorted(report.diff.metrics if not report.shards else (), key=lambda m: not m.gated)
    for metric in metrics:
        value = numeric(metric.head)
        if len(fields) < MAX_DATA_FIELDS and value is not None and math.isfinite(value):
            fields.append({"title": md.field(metric.name, DATA_TITLE_LIMIT), "type": "NUMBER", "value": value})
    return fields


def _failed_gates(report: Report) -> list[str]:
    """One plain sentence per failed gate (and per failed pipeline step)."""
    failed = report.pipeline.failed_step if report.pipeline is not None else None
    lines = [f"pipeline step {failed.name} failed"] if failed is not None else []
    diffs = [(f"{s.name}: ", s.diff) for s in report.shards] if report.shards else [("", report.diff)]
    for prefix, diff in diffs:
        lines += [f"{prefix}{m.name}: {'; '.join(m.failures)}" for m in diff.regressions]
    return lines


def _comment(item: object) -> Comment | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        return None
    raw = answers.dig(item, "content", "raw")
    url = answers.dig(item, "links", "html", "href")
    return Comment(
        id=str(item["id"]),
        body=raw if isinstance(raw, str) else "",
        author=_uuid(answers.dig(item, "user", "uuid")) or "",
        url=url if isinstance(url, str) and url.startswith(("https://", "http://")) else None,
    )


def _same_commit(short: object, sha: str) -> bool:
    """Bitbucket abbreviates pull requests' commit hashes (12 characters)."""
    return isinstance(short, str) and len(short) >= 7 and sha.lower().startswith(short.lower())


def _uuid(value: object) -> str | None:
    """An account uuid as compared: no braces, lower case."""
    if not isinstance(value, str):
        return None
    return value.strip().strip("{}").lower() or None


def page_values(page: object) -> list[dict[str, Any]]:
    values = page.get("values") if isinstance(page, dict) else None
    return [item for item in values if isinstance(item, dict)] if isinstance(values, list) else []


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")
