"""The fake GitLab itself, driven by plain ``requests`` and by the real python-gitlab client (no cml-bot
code): each test asserts one documented GitLab behaviour, its status, body and headers, so the fake is
proven independently of the adapter it is used to test. Sources are in tests/contracts/gitlab/README.md.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import gitlab
import gitlab.exceptions
import pytest
import requests
from fake_gitlab import FakeGitLab
from gitlab_contract import ENDPOINTS
from gitlab_fixtures import HEAD_SHA, MR_IID, MR_PIPELINE_ID, branch_env, check_contract, fake, merged_result_env

__all__ = ["fake"]  # fixture, re-exported for pytest

PROJECT = "/projects/42"
NOTES = f"{PROJECT}/merge_requests/{MR_IID}/notes"


def call(fake: FakeGitLab, method: str, path: str, *, auth: str | None = "private", **kwargs: Any) -> requests.Response:
    """One request below /api/v4 with the project token (``auth``: private, bearer, job, job-bearer, none)."""
    headers = {
        "private": {"PRIVATE-TOKEN": fake.token},
        "bearer": {"Authorization": f"Bearer {fake.token}"},
        "job": {"JOB-TOKEN": fake.job_token},
        "job-bearer": {"Authorization": f"Bearer {fake.job_token}"},
        "job-as-private": {"PRIVATE-TOKEN": fake.job_token},
        "bad": {"PRIVATE-TOKEN": "glpat-revoked"},
        None: {},
    }[auth]
    return requests.request(method, f"{fake.api_url}{path}", headers=headers, timeout=10, **kwargs)


@pytest.fixture
def client(fake: FakeGitLab) -> Iterator[gitlab.Gitlab]:
    gl = gitlab.Gitlab(fake.url, private_token=fake.token, retry_transient_errors=False)
    yield gl
    gl.session.close()


def take_violations(fake: FakeGitLab) -> list[str]:
    """The violations so far, cleared (for tests that break the contract on purpose)."""
    found = list(fake.violations)
    fake.violations.clear()
    return found


# -- the contract ---------------------------------------------------------------------------------


def test_every_endpoint_cites_its_gitlab_docs_page() -> None:
    assert len(ENDPOINTS) == len({(e.method, e.template) for e in ENDPOINTS})
    for endpoint in ENDPOINTS:
        assert re.fullmatch(r"https://docs\.gitlab\.com/ee/api/[a-z_]+\.html#[a-z0-9-]+", endpoint.doc), endpoint


def test_a_conforming_request_leaves_no_violation(fake: FakeGitLab) -> None:
    assert call(fake, "GET", NOTES, params={"sort": "asc", "order_by": "updated_at", "per_page": 5}).status_code == 200
    assert fake.violations == []
    assert fake.requests[-1].endpoint == "/projects/:id/merge_requests/:merge_request_iid/notes"


def test_a_faulted_request_is_still_checked_against_the_contract(fake: FakeGitLab) -> None:
    fake.fail("POST", "/statuses/", status=503, message="Service Unavailable")
    answer = call(fake, "POST", f"{PROJECT}/statuses/{HEAD_SHA}", json={"state": "success", "pipeline-id": 77})
    assert answer.status_code == 503  # the fault answers ...
    assert take_violations(fake) == [  # ... and the typo is recorded all the same
        "POST /projects/:id/statuses/:sha: attribute 'pipeline-id' is not documented "
        "(https://docs.gitlab.com/ee/api/commits.html#set-commit-pipeline-status)"
    ]


def test_a_missing_required_attribute_is_answered_as_grape_does_and_recorded(fake: FakeGitLab) -> None:
    answer = call(fake, "POST", f"{PROJECT}/statuses/{HEAD_SHA}", json={"name": "x"})
    assert (answer.status_code, answer.json()) == (400, {"error": "state is missing"})
    bad = call(fake, "POST", f"{PROJECT}/statuses/{HEAD_SHA}", json={"state": "error"})
    assert (bad.status_code, bad.json()) == (400, {"error": "state does not have a valid value"})
    typed = call(fake, "GET", NOTES, params={"per_page": "many"})
    assert (typed.status_code, typed.json()) == (400, {"error": "per_page is invalid"})
    assert len(take_violations(fake)) == 3
    assert fake.statuses == []


def test_an_unknown_endpoint_or_method_is_a_violation(fake: FakeGitLab) -> None:
    assert call(fake, "GET", f"{PROJECT}/merge_requests/{MR_IID}/approvals").status_code == 404
    assert call(fake, "PUT", f"{PROJECT}/uploads").status_code == 405
    assert [v.split(":")[0] for v in take_violations(fake)] == [
        f"GET /api/v4{PROJECT}/merge_requests/{MR_IID}/approvals",
        f"PUT /api/v4{PROJECT}/uploads",
    ]


def test_the_fixture_check_fails_the_test_when_there_are_violations(fake: FakeGitLab) -> None:
    call(fake, "GET", NOTES, params={"activity": "all"})
    with pytest.raises(pytest.fail.Exception, match="1 request\\(s\\) off the GitLab contract"):
        check_contract(fake)
    take_violations(fake)


# -- tokens ---------------------------------------------------------------------------------------


def test_the_project_token_is_the_bot_user_with_either_header(fake: FakeGitLab) -> None:
    for auth in ("private", "bearer"):
        answer = call(fake, "GET", "/user", auth=auth)
        assert answer.status_code == 200 and answer.json()["username"] == "project_42_bot_cml"
    for auth in ("job", "job-bearer", "job-as-private", "bad", None):
        answer = call(fake, "GET", "/user", auth=auth)
        assert (answer.status_code, answer.json()) == (401, {"message": "401 Unauthorized"}), auth
    assert [r.auth for r in fake.requests] == [
        "private",
        "private",
        "job",
        "job",
        "job-in-private-token",
        "bad",
        "none",
    ]


def test_the_job_token_reads_what_the_ci_job_token_docs_list(fake: FakeGitLab) -> None:
    fake.write_files("cml-bot-data", {"records/a.json": b"{}"})
    allowed = [
        f"{PROJECT}/repository/files/records%2Fa.json/raw?ref=cml-bot-data",
        f"{PROJECT}/merge_requests/{MR_IID}",
        NOTES,
        f"{PROJECT}/repository/commits/{HEAD_SHA}",
        f"{PROJECT}/repository/commits/{HEAD_SHA}/merge_requests",
        f"{PROJECT}/repository/branches",
    ]
    for path in allowed:
        assert call(fake, "GET", path, auth="job").status_code == 200, path
    assert call(fake, "GET", allowed[0], auth="job-bearer").content == b"{}"


def test_the_job_token_is_ignored_elsewhere_so_the_request_is_anonymous(fake: FakeGitLab) -> None:
    refused = {
        ("POST", NOTES, "json"): 401,
        ("POST", f"{PROJECT}/statuses/{HEAD_SHA}", "json"): 401,
        ("POST", f"{PROJECT}/uploads", "file"): 401,
        ("GET", f"{PROJECT}/repository/tree?ref=main", None): 404,
        ("GET", f"{PROJECT}/repository/files/README.md?ref=main", None): 404,
        ("GET", PROJECT, None): 404,
    }
    for (method, path, body), status in refused.items():
        kwargs: dict[str, Any] = {}
        if body == "json":
            kwargs["json"] = {"body": "x"} if "notes" in path else {"state": "success"}
        if body == "file":
            kwargs["files"] = {"file": ("a.png", b"png")}
        answer = call(fake, method, path, auth="job", **kwargs)
        expected = "401 Unauthorized" if status == 401 else "404 Project Not Found"
        assert (answer.status_code, answer.json()) == (status, {"message": expected}), path
    assert fake.notes(MR_IID) == [] and fake.statuses == [] and fake.uploads == []


def test_python_gitlab_with_a_job_token_reads_a_raw_file(fake: FakeGitLab) -> None:
    fake.write_files("cml-bot-data", {"records/a.json": b'{"ok": 1}'})
    gl = gitlab.Gitlab(fake.url, job_token=fake.job_token)
    try:
        project = gl.projects.get(42, lazy=True)
        assert project.files.raw("records/a.json", ref="cml-bot-data") == b'{"ok": 1}'
        with pytest.raises(gitlab.exceptions.GitlabGetError) as caught:
            project.files.get("records/a.json", ref="cml-bot-data")  # the JSON form is not listed
    finally:
        gl.session.close()
    assert caught.value.response_code == 404


# -- notes ----------------------------------------------------------------------------------------


def test_notes_are_paginated_with_gitlabs_headers(fake: FakeGitLab) -> None:
    for i in range(45):
        fake.add_note(MR_IID, f"n{i}")
    first = call(fake, "GET", NOTES)
    assert len(first.json()) == 20 and first.json()[0]["body"] == "n44"  # newest first by default
    assert {
        k: first.headers[k] for k in ("X-Page", "X-Per-Page", "X-Next-Page", "X-Prev-Page", "X-Total", "X-Total-Pages")
    } == {
        "X-Page": "1",
        "X-Per-Page": "20",
        "X-Next-Page": "2",
        "X-Prev-Page": "",
        "X-Total": "45",
        "X-Total-Pages": "3",
    }
    assert first.links["next"]["url"].endswith("notes?page=2&per_page=20")
    assert first.links["last"]["url"].endswith("notes?page=3&per_page=20")
    last = call(fake, "GET", NOTES, params={"page": 3, "sort": "asc"})
    assert [n["body"] for n in last.json()] == [f"n{i}" for i in range(40, 45)]
    assert last.headers["X-Next-Page"] == "" and "next" not in last.links
    capped = call(fake, "GET", NOTES, params={"per_page": 500})
    assert capped.headers["X-Per-Page"] == "100" and len(capped.json()) == 45


def test_python_gitlab_follows_the_pages_of_notes(fake: FakeGitLab, client: gitlab.Gitlab) -> None:
    for i in range(130):
        fake.add_note(MR_IID, f"n{i}")
    fake.add_note(MR_IID, "changed the description", system=True)
    mr = client.projects.get(42, lazy=True).mergerequests.get(MR_IID, lazy=True)
    notes = list(mr.notes.list(iterator=True, per_page=50, sort="asc"))
    assert [n.body for n in notes][:2] == ["n0", "n1"] and len(notes) == 131
    assert notes[-1].system is True
    assert fake.count("GET", "/notes$") == 3


def test_a_note_is_limited_to_a_million_characters(fake: FakeGitLab) -> None:
    assert call(fake, "POST", NOTES, json={"body": "x" * 1_000_000}).status_code == 201
    answer = call(fake, "POST", NOTES, json={"body": "x" * 1_000_001})
    assert answer.status_code == 400 and "is too long (maximum is 1000000 characters)" in answer.json()["message"]
    assert len(fake.notes(MR_IID)) == 1
    assert take_violations(fake) == [
        "POST /projects/:id/merge_requests/:merge_request_iid/notes: body is 1,000,001 characters, over the "
        "documented 1,000,000"
    ]


def test_a_merge_request_takes_at_most_the_notes_limit(fake: FakeGitLab) -> None:
    fake.notes_limit = 2  # 5,000 on GitLab; two here to keep the test fast
    assert [call(fake, "POST", NOTES, json={"body": f"{i}"}).status_code for i in range(3)] == [201, 201, 400]
    assert call(fake, "GET", NOTES).headers["X-Total"] == "2"


def test_only_the_author_or_a_maintainer_edits_or_deletes_a_note(fake: FakeGitLab) -> None:
    alices = fake.add_note(MR_IID, "from alice")
    system = fake.add_note(MR_IID, "added 1 commit", system=True)
    own = call(fake, "POST", NOTES, json={"body": "mine"}).json()
    assert call(fake, "PUT", f"{NOTES}/{own['id']}", json={"body": "mine, edited"}).status_code == 200
    for method in ("PUT", "DELETE"):  # the bot has the Developer role
        answer = call(fake, method, f"{NOTES}/{alices['id']}", json={"body": "x"} if method == "PUT" else None)
        assert (answer.status_code, answer.json()) == (403, {"message": "403 Forbidden"})
    fake.bot_role = "maintainer"
    assert call(fake, "PUT", f"{NOTES}/{alices['id']}", json={"body": "edited by a maintainer"}).status_code == 200
    assert call(fake, "PUT", f"{NOTES}/{system['id']}", json={"body": "x"}).status_code == 403  # never a system note
    assert call(fake, "DELETE", f"{NOTES}/{system['id']}").status_code == 403
    assert call(fake, "DELETE", f"{NOTES}/{alices['id']}").status_code == 204
    assert [n["body"] for n in fake.notes(MR_IID)] == ["added 1 commit", "mine, edited"]
    assert call(fake, "GET", f"{NOTES}/{alices['id']}").status_code == 404


# -- merge requests -------------------------------------------------------------------------------


def test_the_merge_requests_of_a_commit_are_every_one_containing_it(fake: FakeGitLab, client: gitlab.Gitlab) -> None:
    fake.add_merge_request(8, sha="c1" * 20, source_branch="step-1")
    fake.add_merge_request(9, sha="c2" * 20, commits=["c1" * 20, "c2" * 20], source_branch="step-2")
    fake.add_merge_request(10, sha="c1" * 20, state="closed", source_branch="old-try")
    project = client.projects.get(42, lazy=True)
    found = project.commits.get("c1" * 20, lazy=True).merge_requests()
    assert [(m["iid"], m["sha"], m["state"]) for m in found] == [
        (10, "c1" * 20, "closed"),
        (9, "c2" * 20, "opened"),
        (8, "c1" * 20, "opened"),
    ]
    assert {(m["source_branch"], m["target_branch"]) for m in found if m["iid"] in (8, 9)} == {
        ("step-1", "main"),
        ("step-2", "main"),
    }
    opened = call(fake, "GET", f"{PROJECT}/repository/commits/{'c1' * 20}/merge_requests", params={"state": "opened"})
    assert [m["iid"] for m in opened.json()] == [9, 8]
    assert "X-Total" not in opened.headers and opened.headers["X-Page"] == "1"  # the Commits API omits totals
    single = project.mergerequests.get(9)
    assert single.sha == "c2" * 20 and single.diff_refs["head_sha"] == "c2" * 20
    assert single.diff_refs["base_sha"] == fake.branch_history("main")[0].id


# -- pipelines and commit statuses ----------------------------------------------------------------


def post_status(fake: FakeGitLab, sha: str, **data: Any) -> requests.Response:
    return call(fake, "POST", f"{PROJECT}/statuses/{sha}", json={"state": "success", "name": "cml-bot", **data})


def test_a_status_without_pipeline_id_lands_in_the_newest_pipeline_of_the_commit(fake: FakeGitLab) -> None:
    newer = fake.add_pipeline(HEAD_SHA, ref="feature")  # a branch pipeline after the MR pipeline 77
    answer = post_status(fake, HEAD_SHA)
    assert answer.status_code == 201 and answer.json()["pipeline_id"] == newer.id
    by_ref = post_status(fake, HEAD_SHA, ref=f"refs/merge-requests/{MR_IID}/head")
    assert by_ref.json()["pipeline_id"] == MR_PIPELINE_ID
    by_id = post_status(fake, HEAD_SHA, pipeline_id=MR_PIPELINE_ID, name="other")
    assert by_id.json()["pipeline_id"] == MR_PIPELINE_ID
    assert len(fake.pipelines) == 2  # nothing created


def test_a_status_on_a_commit_without_pipeline_creates_an_external_one(fake: FakeGitLab) -> None:
    fake.add_commit("e" * 40, branch="topic")
    answer = post_status(fake, "e" * 40, target_url="https://ci.example/1", description="ok")
    created = fake.pipeline(answer.json()["pipeline_id"])
    assert (created.source, created.sha, created.ref, created.status) == ("external", "e" * 40, "topic", "success")
    assert answer.json()["ref"] == "topic" and answer.json()["target_url"] == "https://ci.example/1"


def test_a_pipeline_id_of_another_commit_is_not_found(fake: FakeGitLab) -> None:
    fake.add_commit("e" * 40, branch="topic")
    answer = post_status(fake, "e" * 40, pipeline_id=MR_PIPELINE_ID)
    not_found = {"message": "404 Pipeline for pipeline_id, sha and ref Not Found"}
    assert (answer.status_code, answer.json()) == (404, not_found)
    unknown = post_status(fake, "f" * 40)
    assert (unknown.status_code, unknown.json()) == (404, {"message": "404 Commit Not Found"})
    assert fake.statuses == []


def test_merged_results_pipeline_runs_on_a_merge_commit_in_no_branch(fake: FakeGitLab) -> None:
    env, pipeline = merged_result_env(fake)
    assert env["CI_MERGE_REQUEST_EVENT_TYPE"] == "merged_result"
    assert env["CI_COMMIT_SHA"] == pipeline.sha != HEAD_SHA
    assert env["CI_MERGE_REQUEST_SOURCE_BRANCH_SHA"] == HEAD_SHA
    assert env["CI_MERGE_REQUEST_TARGET_BRANCH_SHA"] == fake.branch_history("main")[0].id
    assert env["CI_PIPELINE_ID"] == str(pipeline.id) and pipeline.ref == f"refs/merge-requests/{MR_IID}/merge"
    assert fake.branches_containing(pipeline.sha) == []
    merge = call(fake, "GET", f"{PROJECT}/repository/commits/{pipeline.sha}").json()
    assert merge["parent_ids"] == [env["CI_MERGE_REQUEST_TARGET_BRANCH_SHA"], HEAD_SHA]
    assert merge["last_pipeline"]["id"] == pipeline.id
    # The running pipeline is reached with its own sha and id; the head sha is another commit.
    assert post_status(fake, pipeline.sha, pipeline_id=pipeline.id).json()["pipeline_id"] == pipeline.id
    assert post_status(fake, HEAD_SHA, pipeline_id=pipeline.id).status_code == 404
    assert post_status(fake, pipeline.sha, name="again").json()["pipeline_id"] == pipeline.id


def test_moving_a_status_to_the_state_it_is_in_is_refused(fake: FakeGitLab) -> None:
    assert post_status(fake, HEAD_SHA, state="running").status_code == 201
    again = post_status(fake, HEAD_SHA, state="running")
    refusal = 'Cannot transition status via :run from :running (Reason(s): Status cannot transition via "run")'
    assert (again.status_code, again.json()) == (400, {"message": refusal})
    assert post_status(fake, HEAD_SHA, state="success").status_code == 201  # the same job, updated
    assert [(s["status"], s["retried"]) for s in fake.statuses] == [("success", False)]
    post_status(fake, HEAD_SHA, state="failed")  # a finished job is not updated: a new one retries it
    assert [(s["status"], s["retried"]) for s in fake.statuses] == [("success", True), ("failed", False)]
    latest = call(fake, "GET", f"{PROJECT}/repository/commits/{HEAD_SHA}/statuses").json()
    assert [s["status"] for s in latest] == ["failed"]
    every = call(fake, "GET", f"{PROJECT}/repository/commits/{HEAD_SHA}/statuses", params={"all": "true"}).json()
    assert [s["status"] for s in every] == ["success", "failed"]
    post_status(fake, HEAD_SHA, state="pending", name="queue")
    assert (
        post_status(fake, HEAD_SHA, state="pending", name="queue")
        .json()["message"]
        .startswith("Cannot transition status via :enqueue from :pending")
    )


def test_a_409_conflict_on_a_status_has_no_effect_and_a_retry_succeeds(fake: FakeGitLab) -> None:
    fake.fail("POST", "/statuses/", status=409)
    refused = post_status(fake, HEAD_SHA)
    assert refused.status_code == 409 and "in progress" in refused.json()["message"]
    assert fake.statuses == []
    assert post_status(fake, HEAD_SHA).status_code == 201
    assert len(fake.statuses) == 1


def test_a_status_description_over_255_characters_is_refused(fake: FakeGitLab) -> None:
    answer = post_status(fake, HEAD_SHA, description="x" * 256)
    assert answer.status_code == 400 and fake.statuses == []
    assert "over the documented 255" in take_violations(fake)[0]


def test_python_gitlab_sets_a_status(fake: FakeGitLab, client: gitlab.Gitlab) -> None:
    commit = client.projects.get(42, lazy=True).commits.get(HEAD_SHA, lazy=True)
    status = commit.statuses.create({"state": "failed", "name": "cml-bot", "pipeline_id": MR_PIPELINE_ID})
    assert (status.status, status.pipeline_id) == ("failed", MR_PIPELINE_ID)
    assert fake.statuses_in(MR_PIPELINE_ID)[0]["name"] == "cml-bot"


def test_a_branch_pipeline_helper_makes_a_push_pipeline(fake: FakeGitLab) -> None:
    fake.add_commit("d" * 40, branch="main")
    env, pipeline = branch_env(fake, "d" * 40, "main")
    assert (pipeline.source, pipeline.ref, env["CI_PIPELINE_SOURCE"]) == ("push", "main", "push")
    assert "CI_MERGE_REQUEST_IID" not in env and env["CI_COMMIT_BRANCH"] == "main"
    assert post_status(fake, "d" * 40).json()["pipeline_id"] == pipeline.id


# -- uploads --------------------------------------------------------------------------------------


def test_an_upload_answers_its_relative_url_and_markdown(fake: FakeGitLab, client: gitlab.Gitlab) -> None:
    uploaded = client.projects.get(42, lazy=True).upload("loss.png", filedata=b"\x89PNG data")
    assert set(uploaded) == {"id", "alt", "url", "full_path", "markdown"}
    secret = re.fullmatch(r"/uploads/([0-9a-f]{32})/loss\.png", uploaded["url"])
    assert secret is not None and uploaded["alt"] == "loss"
    assert uploaded["full_path"] == f"/-/project/42/uploads/{secret.group(1)}/loss.png"
    assert uploaded["markdown"] == f"![loss]({uploaded['url']})"
    download = call(fake, "GET", f"{PROJECT}{uploaded['url']}")
    assert (download.status_code, download.content, download.headers["Content-Type"]) == (
        200,
        b"\x89PNG data",
        "image/png",
    )


def test_an_upload_needs_a_multipart_file(fake: FakeGitLab) -> None:
    answer = call(fake, "POST", f"{PROJECT}/uploads", json={"file": "not a file"})
    assert (answer.status_code, answer.json()) == (400, {"error": "file is invalid"})
    assert any("multipart/form-data" in v for v in take_violations(fake))
    assert fake.uploads == []


def test_listing_uploads_needs_the_maintainer_role(fake: FakeGitLab) -> None:
    call(fake, "POST", f"{PROJECT}/uploads", files={"file": ("a.png", b"a")})
    assert call(fake, "GET", f"{PROJECT}/uploads").status_code == 403
    fake.bot_role = "maintainer"
    listed = call(fake, "GET", f"{PROJECT}/uploads").json()
    assert [(u["filename"], u["size"], u["uploaded_by"]["username"]) for u in listed] == [
        ("a.png", 1, "project_42_bot_cml")
    ]


# -- rate limits and faults -----------------------------------------------------------------------


def test_a_throttled_request_answers_as_rack_attack(fake: FakeGitLab) -> None:
    fake.fail("GET", "/notes$", status=429, retry_after=30)
    answer = call(fake, "GET", NOTES)
    assert (answer.status_code, answer.text, answer.headers["Retry-After"]) == (429, "Retry later", "30")
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.headers["RateLimit-Remaining"] == "0" and answer.headers["RateLimit-Name"]
    assert int(call(fake, "GET", NOTES).headers["RateLimit-Remaining"]) > 0  # on every answer
    reset = int(answer.headers["RateLimit-Reset"])
    assert parsedate_to_datetime(answer.headers["RateLimit-ResetTime"]).timestamp() == reset
    fake.fail("POST", "/notes$", status=429, throttle="application")
    limited = call(fake, "POST", NOTES, json={"body": "x"})
    assert limited.status_code == 429 and "Retry-After" not in limited.headers
    assert limited.json() == {"message": {"error": "This endpoint has been requested too many times. Try again later."}}


@pytest.mark.parametrize(("kind", "applied"), [("drop", False), ("drop_after", True), ("status_after", True)])
def test_a_fault_before_or_after_the_effect(fake: FakeGitLab, kind: str, applied: bool) -> None:
    fake.fail("POST", "/notes$", kind)  # type: ignore[arg-type]
    try:
        answer = call(fake, "POST", NOTES, json={"body": "x"})
    except requests.ConnectionError:
        assert kind.startswith("drop")
    else:
        assert kind == "status_after" and answer.status_code == 502
    assert len(fake.notes(MR_IID)) == int(applied)


def test_an_action_and_a_barrier_make_races_deterministic(fake: FakeGitLab) -> None:
    fake.fail(
        "POST",
        "/notes$",
        "pass",
        times=2,
        barrier=threading.Barrier(2),
        action=lambda server: server.add_note(MR_IID, "racer"),
    )
    threads = [
        threading.Thread(target=call, args=(fake, "POST", NOTES), kwargs={"json": {"body": f"{i}"}}) for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(n["body"] for n in fake.notes(MR_IID)) == ["0", "1", "racer", "racer"]


# -- repository -----------------------------------------------------------------------------------


def test_files_raw_and_json(fake: FakeGitLab) -> None:
    fake.write_files("data", {"dir/x.json": b"{}"})
    assert call(fake, "GET", f"{PROJECT}/repository/files/README.md/raw").content == b"# ml-project\n"  # HEAD
    assert call(fake, "GET", f"{PROJECT}/repository/files/README.md/raw", params={"ref": "HEAD"}).status_code == 200
    json_file = call(fake, "GET", f"{PROJECT}/repository/files/dir%2Fx.json", params={"ref": "data"}).json()
    assert json_file["last_commit_id"] == fake.branch_history("data")[0].id and json_file["encoding"] == "base64"
    missing_ref = call(fake, "GET", f"{PROJECT}/repository/files/dir%2Fx.json")
    assert (missing_ref.status_code, missing_ref.json()) == (400, {"error": "ref is missing"})
    take_violations(fake)
    assert call(fake, "GET", f"{PROJECT}/repository/files/nope/raw").json() == {"message": "404 File Not Found"}
    assert call(fake, "GET", f"{PROJECT}/repository/files/README.md/raw", params={"ref": "gone"}).json() == {
        "message": "404 Commit Not Found"
    }


def test_tree_branches_and_commits(fake: FakeGitLab) -> None:
    fake.write_files("data", {f"records/{i:03}.json": b"{}" for i in range(30)})
    tree = call(fake, "GET", f"{PROJECT}/repository/tree", params={"ref": "data", "path": "records", "per_page": 25})
    assert len(tree.json()) == 25 and tree.headers["X-Next-Page"] == "2"
    assert call(fake, "GET", f"{PROJECT}/repository/tree", params={"ref": "data", "path": "no"}).status_code == 404
    assert call(fake, "GET", f"{PROJECT}/repository/branches/gone").json() == {"message": "404 Branch Not Found"}
    commits = f"{PROJECT}/repository/commits"
    create = {"action": "create", "file_path": "records/000.json", "content": "{}"}
    exists = call(fake, "POST", commits, json={"branch": "data", "commit_message": "m", "actions": [create]})
    assert (exists.status_code, exists.json()) == (400, {"message": "A file with this name already exists"})
    stale = {"action": "update", "file_path": "records/000.json", "content": "[]", "last_commit_id": "0" * 40}
    answer = call(fake, "POST", commits, json={"branch": "data", "commit_message": "m", "actions": [stale]})
    assert answer.status_code == 400 and "has changed since you started editing it" in answer.json()["message"]
    branch_exists = call(
        fake,
        "POST",
        commits,
        json={
            "branch": "data",
            "start_branch": "main",
            "commit_message": "m",
            "actions": [{**create, "file_path": "new.json"}],
        },
    )
    assert branch_exists.status_code == 400 and "Branch already exists" in branch_exists.json()["message"]
    protected = call(
        fake,
        "POST",
        commits,
        json={"branch": "main", "commit_message": "m", "actions": [{**create, "file_path": "new.json"}]},
    )
    assert protected.status_code == 403  # the default branch is protected; the bot is a Developer
    made = call(
        fake,
        "POST",
        commits,
        json={"branch": "data", "commit_message": "m", "actions": [{**create, "file_path": "new.json"}]},
    )
    assert made.status_code == 201 and fake.branch_files("data")["new.json"] == b"{}"
