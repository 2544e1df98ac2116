"""The one retry policy and JSON client every forge request goes through (no network: a scripted
transport stands in for PyGithub's / python-gitlab's)."""

from __future__ import annotations

import email.utils
import json
import random
import socket
from collections.abc import Callable

import pytest

from cml_bot.forges.http import (
    ConnectionFailure,
    HttpError,
    JsonClient,
    Request,
    Response,
    RetryPolicy,
    link_next,
    server_wait,
)

NOW = 1_800_000_000.0


def answer(status: int, body: object = None, **headers: str) -> Response:
    data = b"" if body is None else json.dumps(body).encode()
    return Response(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, data)


class Script:
    """A transport answering from a list; records what was sent."""

    def __init__(self, *answers: Response | ConnectionFailure) -> None:
        self.answers = list(answers)
        self.sent: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.sent.append(request)
        item = self.answers.pop(0)
        if isinstance(item, ConnectionFailure):
            raise item
        return item


def client(transport: Callable[[Request], Response], sleeps: list[float], **policy: float) -> JsonClient:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    return JsonClient(
        "Forge",
        transport,
        "https://api.example.com/v4",
        redact=lambda text: text.replace("s3cr3t-token", "***"),
        policy=RetryPolicy(**policy),  # type: ignore[arg-type]
        sleep=sleep,
        clock=lambda: clock[0],
        now=lambda: NOW,
        rng=random.Random(7),
    )


def test_success_needs_one_request() -> None:
    script = Script(answer(200, {"ok": True}))
    assert client(script, []).json(Request("GET", "/x")) == {"ok": True}
    assert len(script.sent) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 520])
def test_transient_statuses_are_retried(status: int) -> None:
    sleeps: list[float] = []
    script = Script(answer(status, {"message": "busy"}), answer(200, {}))
    client(script, sleeps).send(Request("GET", "/x"))
    assert len(script.sent) == 2 and len(sleeps) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422, 501])
def test_other_errors_fail_at_once_with_the_message(status: int) -> None:
    script = Script(answer(status, {"message": "nope s3cr3t-token"}))
    with pytest.raises(HttpError) as raised:
        client(script, []).send(Request("GET", "/x"))
    assert raised.value.status == status
    assert str(raised.value) == f"Forge GET /x: {status} nope ***"  # redacted
    assert len(script.sent) == 1


def test_409_is_retried_where_the_api_says_retry() -> None:
    script = Script(answer(409, {"message": "conflict"}), answer(201, {}))
    client(script, []).send(Request("POST", "/statuses/abc", json={}, conflict_is_transient=True, repeatable=True))
    assert len(script.sent) == 2


def test_a_403_rate_limit_waits_what_retry_after_says_in_seconds() -> None:
    sleeps: list[float] = []
    script = Script(answer(403, {"message": "You have exceeded a secondary rate limit"}, retry_after="30"), answer(200))
    client(script, sleeps).send(Request("GET", "/x"))
    assert 30 <= sleeps[0] <= 31


def test_retry_after_as_an_http_date() -> None:
    date = email.utils.formatdate(NOW + 12, usegmt=True)
    assert server_wait(answer(429, retry_after=date), NOW) == pytest.approx(12, abs=1)
    sleeps: list[float] = []
    client(Script(answer(429, retry_after=date), answer(200)), sleeps).send(Request("GET", "/x"))
    assert 11 <= sleeps[0] <= 14


def test_primary_rate_limit_waits_until_the_reset() -> None:
    reset = str(int(NOW) + 20)
    hit = answer(403, {"message": "API rate limit exceeded"}, x_ratelimit_remaining="0", x_ratelimit_reset=reset)
    assert server_wait(hit, NOW) == pytest.approx(21)


def test_a_403_that_is_not_a_rate_limit_is_a_refusal() -> None:
    script = Script(answer(403, {"message": "Resource not accessible by integration"}))
    with pytest.raises(HttpError) as raised:
        client(script, []).send(Request("POST", "/c", json={}))
    assert raised.value.status == 403 and len(script.sent) == 1


def test_a_wait_past_the_deadline_fails_at_once_instead_of_sleeping() -> None:
    sleeps: list[float] = []
    script = Script(answer(429, {"message": "slow down"}, retry_after="3600"))
    with pytest.raises(HttpError) as raised:
        client(script, sleeps, deadline=300).send(Request("GET", "/x"))
    assert sleeps == [] and "past the deadline" in str(raised.value)


def test_backoff_grows_with_jitter_and_gives_up_after_the_attempts() -> None:
    sleeps: list[float] = []
    script = Script(*[answer(502)] * 6)
    with pytest.raises(HttpError) as raised:
        client(script, sleeps, attempts=6).send(Request("GET", "/x"))
    assert len(script.sent) == 6 and len(sleeps) == 5
    assert "after 6 attempts" in str(raised.value)
    for attempt, waited in enumerate(sleeps, start=1):
        full = min(60.0, 2.0 ** (attempt - 1))
        assert full / 2 <= waited <= full  # full jitter within the upper half
    assert len(set(sleeps)) == len(sleeps)


def test_a_dropped_connection_is_retried_for_reads() -> None:
    script = Script(ConnectionFailure("ConnectionError", sent=True), answer(200, []))
    assert client(script, []).json(Request("GET", "/x")) == []


def test_a_write_that_may_have_been_applied_is_not_sent_twice_blindly() -> None:
    script = Script(ConnectionFailure("ConnectionError", sent=True))
    with pytest.raises(HttpError) as raised:
        client(script, []).send(Request("POST", "/notes", json={"body": "x"}))
    assert "may have been applied" in str(raised.value) and len(script.sent) == 1


def test_a_write_that_never_left_is_sent_again() -> None:
    script = Script(ConnectionFailure("ConnectTimeout", sent=False), answer(201, {"id": 1}))
    assert client(script, []).json(Request("POST", "/notes", json={"body": "x"})) == {"id": 1}


def test_create_adopts_what_a_lost_answer_made() -> None:
    script = Script(ConnectionFailure("ChunkedEncodingError", sent=True))
    looked: list[int] = []

    def confirm() -> dict[str, int] | None:
        looked.append(1)
        return {"id": 9}

    made = client(script, []).create(Request("POST", "/notes", json={}), lambda r: json.loads(r.body), confirm)
    assert made == {"id": 9} and len(script.sent) == 1 and looked == [1]


def test_create_sends_again_when_the_effect_is_not_there() -> None:
    script = Script(answer(502), answer(201, {"id": 2}))
    made = client(script, []).create(Request("POST", "/notes", json={}), lambda r: json.loads(r.body), lambda: None)
    assert made == {"id": 2} and len(script.sent) == 2


def test_pages_retry_the_failing_page_only() -> None:
    pages = {1: [1, 2], 2: [3, 4], 3: [5]}
    failed: set[int] = set()

    def transport(request: Request) -> Response:
        page = int(request.query.get("page", 1))
        if page == 2 and page not in failed:
            failed.add(page)
            return answer(503)
        return answer(200, pages[page], x_next_page=str(page + 1) if page < 3 else "")

    def following(response: Response, request: Request) -> Request | None:
        nxt = response.header("x-next-page")
        return Request("GET", "/items", {"page": int(nxt)}) if nxt else None

    sent: list[int] = []

    def recording(request: Request) -> Response:
        sent.append(int(request.query.get("page", 1)))
        return transport(request)

    got = [
        item
        for page in client(recording, []).pages(Request("GET", "/items"), following)
        for item in json.loads(page.body)
    ]
    assert got == [1, 2, 3, 4, 5]
    assert sent == [1, 2, 2, 3]  # page 1 is not read again


def test_a_link_off_the_api_host_is_never_followed() -> None:
    script = Script(answer(200, [], link='<https://evil.example/steal?page=2>; rel="next"'))
    c = client(script, [])
    first = c.send(Request("GET", "/items"))
    url = link_next(first)
    assert url == "https://evil.example/steal?page=2"
    with pytest.raises(HttpError, match="refusing to follow"):
        c.send(Request("GET", url))
    assert len(script.sent) == 1


def test_a_listing_that_links_to_itself_stops() -> None:
    def transport(request: Request) -> Response:
        return answer(200, [1], link='<https://api.example.com/v4/items?page=1>; rel="next"')

    c = client(transport, [])
    with pytest.raises(HttpError, match="links back"):
        list(
            c.pages(
                Request("GET", "https://api.example.com/v4/items?page=1"),
                lambda r, q: Request("GET", link_next(r) or ""),
            )
        )


def test_link_next_reads_rfc8288_headers() -> None:
    header = '<https://a/x?page=3>; rel="next", <https://a/x?page=9>; rel="last"'
    assert link_next(answer(200, link=header)) == "https://a/x?page=3"
    assert link_next(answer(200, link='<https://a/x?page=1>; rel="prev"')) is None
    assert link_next(answer(200)) is None


def test_an_answer_that_is_not_json_is_a_clear_error() -> None:
    script = Script(Response(200, {}, b"<html>proxy</html>"))
    with pytest.raises(HttpError, match="not JSON"):
        client(script, []).json(Request("GET", "/x"))


@pytest.mark.parametrize("driver", ["github", "gitlab", "bitbucket"])
def test_a_refused_connection_never_left_on_every_driver(driver: str) -> None:
    """The drivers' real transports against a closed port on 127.0.0.1: the request surely never
    reached the forge, so a write may be sent again without asking whether it was applied."""
    from cml_bot.forges.bitbucket import bitbucket_transport
    from cml_bot.forges.github import github_transport
    from cml_bot.forges.gitlab import gitlab_transport

    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        root = f"http://127.0.0.1:{probe.getsockname()[1]}"
    transports = {
        "github": lambda: github_transport(root, "t0ken", timeout=5),
        "gitlab": lambda: gitlab_transport(root, "t0ken", "private", timeout=5),
        "bitbucket": lambda: bitbucket_transport(root, "Bearer t0ken", timeout=5),
    }
    send, close = transports[driver]()
    try:
        with pytest.raises(ConnectionFailure) as failure:
            send(Request("POST", "/notes", json={"body": "x"}))
    finally:
        close()
    assert failure.value.sent is False
