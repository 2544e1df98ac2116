"""One JSON client and ONE retry policy for every request cml-bot makes to a forge.

The real clients (PyGithub's requester, python-gitlab's ``http_request``) are the transports: they
carry authentication, the base URL and TLS settings, and send exactly one request each time; they
never retry nor sleep on their own. Everything else is decided here, once for every forge:

- What is worth retrying (:meth:`RetryPolicy.wait`): a dropped connection or timeout, 429, 5xx
  (not 501/505), a 403 or 429 that says "rate limit" (``Retry-After`` in seconds or as an HTTP date,
  ``x-ratelimit-remaining: 0`` with ``x-ratelimit-reset``, or a "secondary rate limit" message), and
  409 where the API documents "retry the request" (the caller says so per request).
- How long to wait: the server's ``Retry-After`` / reset time when it gives one; for GitHub's
  secondary rate limit without either, at least a minute, doubling on each further refusal (GitHub:
  "wait for at least one minute before retrying ... Continuing to make requests while you are rate
  limited may result in the banning of your integration"); else exponential backoff with full
  jitter. Never past the request's total deadline (a server that asks for an hour fails the request
  at once, with a clear message, instead of holding the job).
- Retries are per request, so a transient error on page 7 of a listing retries page 7 only.
- Writes that may have been applied (a dropped connection after the request was sent, a 5xx from a
  proxy) are never blindly repeated when repeating would duplicate the effect: :meth:`JsonClient.create`
  asks the caller's ``confirm`` function whether the effect is already visible before sending again.

Every error message is passed through the client's ``redact`` before it is raised (an API answer may
echo a token). Links to follow (``Link: rel="next"``, a ``next`` URL in a body) are followed only when
they stay on the API's own scheme and host: a hostile answer cannot send our token elsewhere.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests

from cml_bot.errors import ForgeError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Verbs whose repetition has the same effect as doing it once (RFC 9110, 9.2.2).
IDEMPOTENT_VERBS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
NOT_RETRIED_5XX = frozenset({501, 505})  # "not implemented" / "version not supported" never heal
# docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api ("Handle rate limit
# errors appropriately"): with neither ``retry-after`` nor ``x-ratelimit-remaining: 0``, "wait for at
# least one minute before retrying", and "an exponentially increasing amount of time" while it lasts.
SECONDARY_LIMIT_WAIT = 60.0


@dataclass(frozen=True)
class Request:
    """One HTTP request. ``path`` is relative to the API root (already percent-encoded), or an
    absolute URL on the API's host (a pagination link)."""

    verb: str
    path: str
    query: Mapping[str, str | int] = field(default_factory=dict)
    json: Any = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None  # multipart: field -> (filename, data, type)
    form: Mapping[str, str] | None = None  # multipart fields without a file, beside ``files``
    conflict_is_transient: bool = False  # 409 means "retry the request" for this endpoint
    repeatable: bool = False  # a POST whose repetition is harmless (content-addressed, a status)

    @property
    def idempotent(self) -> bool:
        return self.repeatable or self.verb.upper() in IDEMPOTENT_VERBS

    def describe(self) -> str:
        path = urllib.parse.urlsplit(self.path).path if "://" in self.path else self.path
        return f"{self.verb.upper()} {path}"


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # keys in lower case
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class ConnectionFailure(Exception):
    """The transport got no answer. ``sent`` is False only when the request surely never left
    (the connection could not be opened); otherwise it may have been applied."""

    def __init__(self, what: str, *, sent: bool) -> None:
        super().__init__(what)
        self.what = what
        self.sent = sent


def was_sent(exc: requests.exceptions.RequestException) -> bool:
    """Whether a request that failed with ``exc`` may have reached the forge: False only when the
    connection could not be opened (refused, a name that does not resolve, a connect timeout), so
    even a write is safe to send again. One rule for every driver's transport."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    text = repr(exc)  # requests wraps urllib3's NewConnectionError in a ConnectionError
    return not any(word in text for word in ("NewConnectionError", "Failed to establish", "NameResolution"))


# Send one request and return the answer, whatever its status; raise ConnectionFailure when there is
# no answer. Implementations wrap PyGithub's and python-gitlab's clients (see the drivers).
Transport = Callable[[Request], Response]


class HttpError(ForgeError):
    """A forge request failed: an error answer (``status``) or no answer at all (``status`` None)."""

    def __init__(self, message: str, status: int | None, response: Response | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.response = response


class RateLimitedError(HttpError):
    """The forge's rate limit outlasted the retries: a failure to show (run it again later), never
    a missing permission, whatever the status (GitHub sends its limits as 403 too)."""


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a request again. One instance serves every forge."""

    attempts: int = 6  # sends per request, the first included
    base_delay: float = 1.0
    max_delay: float = 60.0  # cap of one backoff wait (not of a server's Retry-After)
    deadline: float = 300.0  # seconds one request may take in all, waits included

    def wait(
        self,
        request: Request,
        answer: Response | ConnectionFailure,
        attempt: int,
        now: float,
        rng: random.Random,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None when ``answer`` is not transient.

        ``now`` is wall-clock time (for ``Retry-After`` dates and rate-limit reset times).
        """
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1)) * rng.uniform(0.5, 1.0)
        if isinstance(answer, ConnectionFailure):
            return backoff
        status = answer.status
        asked = server_wait(answer, now)
        if rate_limited(answer):
            if asked is not None:
                return asked + rng.uniform(0.0, 1.0)
            if _says_secondary_limit(answer):  # GitHub, with no time given: a minute, then doubling
                return SECONDARY_LIMIT_WAIT * 2.0 ** (attempt - 1) + rng.uniform(0.0, 1.0)
            return backoff
        if status >= 500 and status not in NOT_RETRIED_5XX:
            return asked if asked is not None else backoff
        if status == 409 and request.conflict_is_transient:
            return asked if asked is not None else backoff
        return None


def server_wait(answer: Response, now: float) -> float | None:
    """What the server asked us to wait: ``Retry-After`` (seconds or an HTTP date), or the time
    until ``x-ratelimit-reset`` when ``x-ratelimit-remaining`` is 0 (GitHub's primary limit)."""
    retry_after = answer.header("retry-after")
    if retry_after is not None:
        value = retry_after.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, when.timestamp() - now)
    if answer.header("x-ratelimit-remaining") == "0":
        reset = answer.header("x-ratelimit-reset") or ""
        if reset.strip().isdigit():
            return max(0.0, float(reset) - now) + 1.0
    return None


def rate_limited(answer: Response) -> bool:
    """Whether ``answer`` refuses because of a rate limit, not a permission: 429, or a 403 with
    ``Retry-After``, ``x-ratelimit-remaining: 0`` or a message saying "rate limit" (GitHub sends its
    primary and secondary limits as 403 or 429: the rate-limit page cited above)."""
    if answer.status == 429:
        return True
    return answer.status == 403 and (
        answer.header("retry-after") is not None
        or answer.header("x-ratelimit-remaining") == "0"
        or "rate limit" in _text(answer)
    )


def _says_secondary_limit(answer: Response) -> bool:
    """GitHub's secondary rate limit ("You have exceeded a secondary rate limit ...")."""
    return "secondary rate limit" in _text(answer)


def _text(answer: Response) -> str:
    return answer.body[:2000].decode("utf-8", "replace").lower()


@dataclass
class JsonClient:
    """Requests to one forge's API through ``transport``, under ``policy``.

    ``name`` prefixes messages ("GitHub", "GitLab"); ``api_root`` is the absolute API URL, used
    to check that links to follow stay on its host. ``clock`` is monotonic (deadlines), ``now``
    wall-clock (server dates); both and ``sleep``/``rng`` are injectable for tests.
    """

    name: str
    transport: Transport
    api_root: str
    redact: Callable[[str], str] = lambda text: text
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    closer: Callable[[], None] = lambda: None  # releases the transport's connections
    hints: Mapping[int, str] = field(default_factory=dict)  # what an error status means on this forge

    def close(self) -> None:
        self.closer()

    # -- single requests ---------------------------------------------------------------------------

    def send(self, request: Request, *, accept: frozenset[int] = frozenset()) -> Response:
        """Send ``request``, retrying what the policy calls transient; return a 2xx answer, or one
        whose status is in ``accept`` (e.g. 404 for "not there"); raise HttpError otherwise.

        A non-idempotent request whose failure may have been applied is not repeated: use
        :meth:`create` for those.
        """
        return self._send(request, accept, confirm=None)

    def create(
        self,
        request: Request,
        parse: Callable[[Response], T],
        confirm: Callable[[], T | None],
        *,
        accept: frozenset[int] = frozenset(),
    ) -> T:
        """A write that must happen once (a new comment, a commit): after a failure that may have
        been applied, ``confirm()`` looks for its effect; when found, that is the result, else the
        request is sent again."""
        found: list[T] = []

        def confirmed() -> bool:
            result = confirm()
            if result is None:
                return False
            found.append(result)
            return True

        response = self._send(request, accept, confirm=confirmed)
        return found[0] if found else parse(response)

    def json(self, request: Request) -> Any:
        """:meth:`send` and decode the JSON answer."""
        return self.decode(self.send(request), request)

    def json_unless(self, request: Request, refused: frozenset[int]) -> Any:
        """The decoded answer, or None when the forge answers one of the ``refused`` statuses
        (e.g. 401/403 for a token that may not read it); any other error raises as :meth:`send`."""
        answer = self.send(request, accept=refused)
        return self.decode(answer, request) if answer.ok else None

    def decode(self, response: Response, request: Request) -> Any:
        import json

        try:
            return json.loads(response.body) if response.body else None
        except ValueError:
            raise HttpError(
                f"{self.name} {request.describe()}: the answer is not JSON ({response.status})", response.status
            ) from None

    # -- listings ----------------------------------------------------------------------------------

    def pages(
        self,
        first: Request,
        following: Callable[[Response, Request], Request | None],
        *,
        max_pages: int = 1000,
    ) -> Iterator[Response]:
        """Every page of a listing: ``following(answer, request)`` names the next page's request
        (or None on the last). Each page is one request with its own retries."""
        request: Request | None = first
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for _ in range(max_pages):
            if request is None:
                return
            key = (request.path, tuple(sorted((k, str(v)) for k, v in request.query.items())))
            if key in seen:  # a server that links a page to itself would loop forever
                raise HttpError(f"{self.name} {request.describe()}: the listing links back to a page it gave", None)
            seen.add(key)
            response = self.send(request)
            yield response
            request = following(response, request)
        raise HttpError(f"{self.name} {first.describe()}: more than {max_pages} pages; giving up", None)

    def same_host(self, url: str) -> bool:
        """Whether ``url`` (a link from an answer) points at this API's scheme and host."""
        mine = urllib.parse.urlsplit(self.api_root)
        theirs = urllib.parse.urlsplit(url)
        return (theirs.scheme, theirs.netloc) == (mine.scheme, mine.netloc)

    # -- the loop ----------------------------------------------------------------------------------

    def _send(self, request: Request, accept: frozenset[int], confirm: Callable[[], bool] | None) -> Response:
        if "://" in request.path and not self.same_host(request.path):
            raise HttpError(f"{self.name}: refusing to follow a link off {self.api_root}", None)
        started = self.clock()
        what = request.describe()
        attempt = 0
        while True:
            attempt += 1
            try:
                answer: Response | ConnectionFailure = self.transport(request)
            except ConnectionFailure as failure:
                answer = failure
            if isinstance(answer, Response) and (answer.ok or answer.status in accept):
                return answer
            delay = self.policy.wait(request, answer, attempt, self.now(), self.rng)
            problem = self.describe(answer)
            if delay is None:
                assert isinstance(answer, Response)
                raise self.error(request, answer)
            if attempt >= self.policy.attempts:
                raise self._gave_up(what, problem, answer, f"after {attempt} attempts")
            if self.clock() - started + delay > self.policy.deadline:
                why = f"the server asks to wait {math.ceil(delay)} s, past the deadline of {self.policy.deadline:g} s"
                raise self._gave_up(what, problem, answer, why)
            may_have_applied = isinstance(answer, ConnectionFailure) and answer.sent
            if isinstance(answer, Response):
                may_have_applied = answer.status >= 500 and answer.status != 503
            log.info(
                "%s %s: %s; retrying in %.1f s (attempt %d of %d)",
                self.name,
                what,
                problem,
                delay,
                attempt + 1,
                self.policy.attempts,
            )
            self.sleep(delay)
            if not request.idempotent and may_have_applied:
                if confirm is None:
                    raise self._gave_up(what, problem, answer, "and it may have been applied; not sending it twice")
                if confirm():
                    log.info("%s %s went through despite %s", self.name, what, problem)
                    return Response(200, {}, b"")

    def error(self, request: Request, answer: Response) -> HttpError:
        """The error for an answer the caller accepted from :meth:`send` and then refuses: the same
        redacted line (and the forge's hint for the status) as a failure :meth:`send` raises."""
        hint = self.hints.get(answer.status)
        return HttpError(
            f"{self.name} {request.describe()}: {self.describe(answer)}{': ' + hint if hint else ''}",
            answer.status,
            answer,
        )

    def describe(self, answer: Response | ConnectionFailure) -> str:
        """One redacted line: the status and the API's message."""
        if isinstance(answer, ConnectionFailure):
            return self.redact(f"no answer ({answer.what})")
        message = ""
        try:
            import json

            data = json.loads(answer.body)
            if isinstance(data, Mapping):
                raw = data.get("message") or data.get("error") or data.get("detail")
                if isinstance(raw, Mapping):  # GitLab: {"message": {"field": ["error"]}}; Bitbucket
                    raw = raw.get("message") or raw
                message = str(raw or "")
        except ValueError:
            message = answer.body[:200].decode("utf-8", "replace")
        text = " ".join(message.split())
        if len(text) > 300:
            text = text[:300] + "..."
        return self.redact(f"{answer.status} {text}".strip())

    def _gave_up(self, what: str, problem: str, answer: Response | ConnectionFailure, why: str) -> HttpError:
        if isinstance(answer, Response) and rate_limited(answer):
            message = f"{self.name} {what}: {problem} (rate limited: {why}); the API's rate limit, run it again later"
            return RateLimitedError(message, answer.status, answer)
        status = answer.status if isinstance(answer, Response) else None
        response = answer if isinstance(answer, Response) else None
        return HttpError(f"{self.name} {what}: {problem} ({why})", status, response)


def link_next(response: Response) -> str | None:
    """The ``rel="next"`` URL of an RFC 8288 ``Link`` header (GitHub, GitLab), or None."""
    header = response.header("link")
    if not header:
        return None
    for part in header.split(","):
        if ";" not in part:
            continue
        target, _, params = part.partition(";")
        rels = [p.strip() for p in params.split(";")]
        if any(p.replace(" ", "") in ('rel="next"', "rel=next") for p in rels):
            return target.strip().strip("<>")
    return None
