"""The fake Bitbucket itself, driven with plain ``requests``: one test per documented behaviour it
claims (fake_bitbucket.py cites the source of each), so the driver's tests rest on checked ground."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fake_bitbucket import (
    API_TOKEN,
    HEAD_SHA,
    PR_ID,
    READ_SCOPES,
    TOKEN,
    Account,
    FakeBitbucket,
    fake_bitbucket,
)

__all__ = ["fake_bitbucket"]

AUTH = {"Authorization": f"Bearer {TOKEN}"}
OTHER = Account("{c0ffee00-0000-4000-8000-00000000000a}", "Someone", "user")


@pytest.fixture
def api(fake_bitbucket: FakeBitbucket) -> Iterator[str]:
    yield f"{fake_bitbucket.url}/repositories/acme/models"


def comments(api: str) -> str:
    return f"{api}/pullrequests/{PR_ID}/comments"


def proxied(fake: FakeBitbucket, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A request as ``curl --proxy http://localhost:29418 http://api.bitbucket.org/2.0/...`` sends it."""
    url = f"http://api.bitbucket.org/2.0/repositories/acme/models{path}"
    return requests.request(method, url, proxies={"http": fake.proxy}, timeout=10, **kwargs)


# -- checking ------------------------------------------------------------------------------------


def test_every_request_is_checked_even_when_a_fault_answers_it(fake_bitbucket: FakeBitbucket, api: str) -> None:
    fake_bitbucket.fail("POST", "/comments$", status=502)
    answer = requests.post(comments(api), headers=AUTH, json={"content": {"raw": 5}}, timeout=10)
    assert answer.status_code == 502
    assert len(fake_bitbucket.violations) == 1 and "5 is not of type 'string'" in fake_bitbucket.violations[0]
    answer = requests.post(comments(api), headers=AUTH, json={"content": {"raw": 5}}, timeout=10)
    assert answer.status_code == 400 and len(fake_bitbucket.violations) == 2
    fake_bitbucket.violations.clear()


def test_a_body_without_type_is_accepted_like_one_with_it(fake_bitbucket: FakeBitbucket, api: str) -> None:
    for body in ({"content": {"raw": "plain"}}, {"type": "pullrequest_comment", "content": {"raw": "typed"}}):
        assert requests.post(comments(api), headers=AUTH, json=body, timeout=10).status_code == 201
    assert [c["raw"] for c in fake_bitbucket.comments_on(PR_ID)] == ["plain", "typed"]


def test_answers_off_the_contract_are_recorded(
    fake_bitbucket: FakeBitbucket, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = fake_bitbucket.pull_json
    monkeypatch.setattr(fake_bitbucket, "pull_json", lambda number: {**original(number), "state": "WHATEVER"})
    requests.get(f"{api}/pullrequests/{PR_ID}", headers=AUTH, timeout=10)
    assert any("off-contract" in v and "WHATEVER" in v for v in fake_bitbucket.violations)
    fake_bitbucket.violations.clear()


def test_an_unknown_endpoint_is_a_violation(fake_bitbucket: FakeBitbucket, api: str) -> None:
    assert requests.get(f"{api}/issues", headers=AUTH, timeout=10).status_code == 404
    assert fake_bitbucket.violations == [
        "GET /repositories/acme/models/issues: GET /repositories/acme/models/issues: no such endpoint in the contract"
    ]
    fake_bitbucket.violations.clear()


# -- tokens and identity -------------------------------------------------------------------------


def test_user_answers_an_api_token_and_refuses_a_repository_access_token(fake_bitbucket: FakeBitbucket) -> None:
    account = fake_bitbucket.add_token(API_TOKEN, "ml-bot", kind="user", email="ml@example.com")
    basic = "Basic " + base64.b64encode(f"ml@example.com:{API_TOKEN}".encode()).decode()
    me = requests.get(f"{fake_bitbucket.url}/user", headers={"Authorization": basic}, timeout=10)
    assert me.status_code == 200 and me.json()["uuid"] == account.uuid and me.json()["account_id"]
    bot = requests.get(f"{fake_bitbucket.url}/user", headers=AUTH, timeout=10)
    assert bot.status_code == 401
    assert bot.json() == {"type": "error", "error": {"message": "Token is invalid or not supported for this endpoint."}}
    wrong = requests.get(f"{fake_bitbucket.url}/user", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and "invalid, expired" in wrong.json()["error"]["message"]


def test_a_read_only_token_is_refused_writes_with_the_missing_scope(fake_bitbucket: FakeBitbucket, api: str) -> None:
    fake_bitbucket.add_token("reader-token-0000000000", "reader", scopes=READ_SCOPES)
    headers = {"Authorization": "Bearer reader-token-0000000000"}
    assert requests.get(comments(api), headers=headers, timeout=10).status_code == 200
    refused = requests.post(comments(api), headers=headers, json={"content": {"raw": "x"}}, timeout=10)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["message"] == "Your credentials lack one or more required privilege scopes."
    assert error["detail"] == {"required": ["pullrequest:write"], "granted": ["pullrequest", "repository"]}


def test_only_a_comments_author_edits_or_deletes_it(fake_bitbucket: FakeBitbucket, api: str) -> None:
    theirs = fake_bitbucket.add_comment(PR_ID, "their words", OTHER)
    ours = requests.post(comments(api), headers=AUTH, json={"content": {"raw": "ours"}}, timeout=10).json()["id"]
    body = {"content": {"raw": "changed"}}
    assert requests.put(f"{comments(api)}/{theirs}", headers=AUTH, json=body, timeout=10).status_code == 403
    assert requests.delete(f"{comments(api)}/{theirs}", headers=AUTH, timeout=10).status_code == 403
    assert (
        requests.put(f"{comments(api)}/{ours}", headers=AUTH, json=body, timeout=10).json()["content"]["raw"]
        == "changed"
    )
    assert requests.delete(f"{comments(api)}/{ours}", headers=AUTH, timeout=10).status_code == 204
    assert requests.put(f"{comments(api)}/{ours}", headers=AUTH, json=body, timeout=10).status_code == 404
    listed = requests.get(comments(api), headers=AUTH, timeout=10).json()["values"]
    assert [(c["id"], c["deleted"]) for c in listed] == [(theirs, False), (ours, True)]
    assert [c["raw"] for c in fake_bitbucket.comments_on(PR_ID)] == ["their words"]


def test_a_comment_over_32768_characters_gets_an_html_400(fake_bitbucket: FakeBitbucket, api: str) -> None:
    assert (
        requests.post(comments(api), headers=AUTH, json={"content": {"raw": "x" * 32_768}}, timeout=10).status_code
        == 201
    )
    refused = requests.post(comments(api), headers=AUTH, json={"content": {"raw": "x" * 32_769}}, timeout=10)
    assert (refused.status_code, refused.text) == (400, "<h1>Bad Request (400)</h1>")


# -- pagination ----------------------------------------------------------------------------------


def test_lists_are_pages_with_an_absolute_next(fake_bitbucket: FakeBitbucket, api: str) -> None:
    for i in range(25):
        fake_bitbucket.add_comment(PR_ID, f"c{i}", OTHER)
    first = requests.get(comments(api), headers=AUTH, timeout=10).json()
    assert (len(first["values"]), first["page"], first["pagelen"], first["size"]) == (10, 1, 10, 25)
    assert first["next"] == f"{comments(api)}?page=2"
    last = requests.get(f"{comments(api)}?page=3", headers=AUTH, timeout=10).json()
    assert len(last["values"]) == 5 and "next" not in last
    capped = requests.get(comments(api), headers=AUTH, params={"pagelen": 500}, timeout=10).json()
    assert capped["pagelen"] == 100 and "next" not in capped
    fake_bitbucket.hostile_next = "http://evil.example"
    assert requests.get(comments(api), headers=AUTH, timeout=10).json()["next"].startswith("http://evil.example/2.0/")


def test_the_pull_requests_of_a_commit_need_the_commit_links_index(fake_bitbucket: FakeBitbucket, api: str) -> None:
    found = requests.get(f"{api}/commit/{HEAD_SHA}/pullrequests", headers=AUTH, timeout=10).json()
    assert [(p["id"], p["source"]["commit"]["hash"]) for p in found["values"]] == [(PR_ID, HEAD_SHA[:12])]
    fake_bitbucket.commit_links_indexed = False
    assert requests.get(f"{api}/commit/{HEAD_SHA}/pullrequests", headers=AUTH, timeout=10).status_code == 404


# -- faults --------------------------------------------------------------------------------------


def test_faults_before_and_after_the_effect(fake_bitbucket: FakeBitbucket, api: str) -> None:
    fake_bitbucket.fail("POST", "/comments$", status=429, headers={"Retry-After": "3"})
    limited = requests.post(comments(api), headers=AUTH, json={"content": {"raw": "a"}}, timeout=10)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    fake_bitbucket.fail("POST", "/comments$", "drop")
    with pytest.raises(requests.ConnectionError):
        requests.post(comments(api), headers=AUTH, json={"content": {"raw": "b"}}, timeout=10)
    fake_bitbucket.fail("POST", "/comments$", "drop-after")
    with pytest.raises(requests.ConnectionError):
        requests.post(comments(api), headers=AUTH, json={"content": {"raw": "c"}}, timeout=10)
    fake_bitbucket.fail("POST", "/comments$", "status-after", status=503)
    assert requests.post(comments(api), headers=AUTH, json={"content": {"raw": "d"}}, timeout=10).status_code == 503
    assert [c["raw"] for c in fake_bitbucket.comments_on(PR_ID)] == ["c", "d"]
    assert [r.status for r in fake_bitbucket.requests("POST")] == [429, "drop", "drop", 503]


# -- statuses, downloads, source -----------------------------------------------------------------


def test_a_build_status_key_is_overwritten_and_at_most_40_characters(fake_bitbucket: FakeBitbucket, api: str) -> None:
    url = f"{api}/commit/{HEAD_SHA}/statuses/build"
    for state in ("INPROGRESS", "SUCCESSFUL"):
        body = {"type": "commitstatus", "key": "cml-bot", "state": state, "url": "https://ci.example/1"}
        assert requests.post(url, headers=AUTH, json=body, timeout=10).status_code == 201
    assert [s["state"] for s in fake_bitbucket.statuses.values()] == ["SUCCESSFUL"]
    long_key = {"key": "k" * 41, "state": "FAILED", "url": "https://ci.example/1"}
    assert requests.post(url, headers=AUTH, json=long_key, timeout=10).status_code == 400
    no_url = {"key": "cml-bot", "state": "FAILED"}
    assert requests.post(url, headers=AUTH, json=no_url, timeout=10).status_code == 400


def test_downloads_are_replaced_by_name_and_served_by_redirect(fake_bitbucket: FakeBitbucket, api: str) -> None:
    for data in (b"one", b"two"):
        upload = requests.post(
            f"{api}/downloads", headers=AUTH, files={"files": ("plot.png", data, "image/png")}, timeout=10
        )
        assert upload.status_code == 201
    assert fake_bitbucket.downloads == {"plot.png": b"two"}
    found = requests.get(f"{api}/downloads/plot.png", headers=AUTH, allow_redirects=False, timeout=10)
    assert found.status_code == 302 and "Signature=" in found.headers["Location"]
    assert requests.get(f"{api}/downloads/other.png", headers=AUTH, timeout=10).status_code == 404


def test_src_commits_files_on_a_branch_and_refuses_a_stale_parent(fake_bitbucket: FakeBitbucket, api: str) -> None:
    def commit(path: str, data: bytes, **form: str) -> requests.Response:
        return requests.post(f"{api}/src", headers=AUTH, data=form, files={path: ("f", data, "text/plain")}, timeout=10)

    first = commit("records/a.json", b"A", message="one [skip ci]", branch="data")
    assert first.status_code == 201
    tip = first.headers["Location"].rsplit("/", 1)[1]
    assert fake_bitbucket.branches["data"] == tip
    assert fake_bitbucket.commits[tip]["parents"] == [fake_bitbucket.branches["main"]]  # from main's tip
    assert fake_bitbucket.files_at("data") == {"README.md": b"models\n", "records/a.json": b"A"}
    assert commit("records/b.json", b"B", branch="data", parents=fake_bitbucket.root_commit).status_code == 409
    assert commit("records/b.json", b"B", branch="data", parents=tip).status_code == 201
    raw = requests.get(f"{api}/src/data/records/a.json", headers=AUTH, timeout=10)
    assert (raw.status_code, raw.content) == (200, b"A")
    listing = requests.get(f"{api}/src/data/records/", headers=AUTH, params={"pagelen": 1}, timeout=10).json()
    assert [e["path"] for e in listing["values"]] == ["records/a.json"] and "next" in listing
    assert requests.get(f"{api}/src/data/nothing/", headers=AUTH, timeout=10).status_code == 404
    branch = requests.get(f"{api}/refs/branches/data", headers=AUTH, timeout=10).json()
    assert branch["target"]["hash"] == fake_bitbucket.branches["data"]


def test_merge_base_of_a_revspec(fake_bitbucket: FakeBitbucket, api: str) -> None:
    main = fake_bitbucket.branches["main"]
    ahead = fake_bitbucket.add_commit({}, [main], branch="main")
    found = requests.get(f"{api}/merge-base/{HEAD_SHA}..main", headers=AUTH, timeout=10).json()
    assert found == {"type": "commit", "hash": fake_bitbucket.root_commit} and ahead != main


# -- Code Insights ------------------------------------------------------------------------------

REPORT = {"title": "t", "details": "d", "report_type": "TEST", "result": "PASSED"}


def test_code_insights_go_through_the_pipeline_proxy_without_a_token(fake_bitbucket: FakeBitbucket) -> None:
    path = f"/commit/{HEAD_SHA}/reports/r1"
    assert proxied(fake_bitbucket, "PUT", path, json=REPORT).json()["external_id"] == "r1"
    annotations = [{"external_id": f"a{i}", "annotation_type": "BUG", "summary": "s"} for i in range(3)]
    assert len(proxied(fake_bitbucket, "POST", f"{path}/annotations", json=annotations).json()) == 3
    assert {r.via for r in fake_bitbucket.log} == {"proxy"}
    assert proxied(fake_bitbucket, "DELETE", path).status_code == 204
    assert (HEAD_SHA, "r1") not in fake_bitbucket.annotations
    # Other endpoints are not authorised through it; a token must never travel through it.
    assert proxied(fake_bitbucket, "GET", f"/pullrequests/{PR_ID}").status_code == 403
    proxied(fake_bitbucket, "PUT", path, json=REPORT, headers=AUTH)
    assert fake_bitbucket.violations == [
        f"PUT /repositories/acme/models{path}: a token was sent through the pipeline's proxy"
    ]
    fake_bitbucket.violations.clear()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"data": [{"title": f"f{i}", "type": "NUMBER", "value": i} for i in range(11)]}, "data: fails maxItems: 10"),
        ({"data": [{"title": "x", "type": "NUMBER", "value": "12"}]}, "'12' is not of type 'number'"),
        ({"data": [{"title": "x", "type": "PERCENTAGE", "value": 140}]}, "140 is greater than the maximum of 100"),
        ({"result": "GREEN"}, "'GREEN' is not one of"),
        ({"report_type": None}, "None is not one of"),
    ],
)
def test_a_report_off_the_reference_is_a_violation(
    fake_bitbucket: FakeBitbucket, change: dict[str, Any], problem: str
) -> None:
    answer = proxied(fake_bitbucket, "PUT", f"/commit/{HEAD_SHA}/reports/r1", json={**REPORT, **change})
    assert answer.status_code == 400
    assert len(fake_bitbucket.violations) == 1 and problem in fake_bitbucket.violations[0]
    fake_bitbucket.violations.clear()


def test_annotations_come_100_at_most_per_request_and_1000_per_report(fake_bitbucket: FakeBitbucket) -> None:
    path = f"/commit/{HEAD_SHA}/reports/r1"
    proxied(fake_bitbucket, "PUT", path, json=REPORT)

    def batch(start: int, count: int) -> list[dict[str, Any]]:
        return [{"external_id": f"a{i}", "annotation_type": "BUG", "summary": "s"} for i in range(start, start + count)]

    assert proxied(fake_bitbucket, "POST", f"{path}/annotations", json=batch(0, 101)).status_code == 400
    assert "(body): fails maxItems: 100" in fake_bitbucket.violations.pop()
    for start in range(0, 1000, 100):
        assert proxied(fake_bitbucket, "POST", f"{path}/annotations", json=batch(start, 100)).status_code == 200
    assert proxied(fake_bitbucket, "POST", f"{path}/annotations", json=batch(0, 100)).status_code == 200  # updates
    refused = proxied(fake_bitbucket, "POST", f"{path}/annotations", json=batch(1000, 1))
    assert refused.status_code == 400 and "at most 1000" in refused.json()["error"]["message"]
    assert len(fake_bitbucket.annotations[(HEAD_SHA, "r1")]) == 1000
