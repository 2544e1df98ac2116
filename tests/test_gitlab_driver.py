"""The GitLab driver against a fake GitLab on 127.0.0.1, driven by the real python-gitlab client, with
the one sticky algorithm (cml_bot.forges.sticky) on top, as the app uses them."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import pytest
from fake_gitlab import FakeGitLab
from gitlab_fixtures import (
    HEAD_SHA,
    MARKER,
    MR_IID,
    branch_env,
    ci_env,
    fake,
    make_forge,
    merged_result_env,
    post,
    sleeps,
    upload,
)

from cml_bot.context import gitlab_context
from cml_bot.errors import ForgeError, ReadOnlyTokenError
from cml_bot.forges.base import Change
from cml_bot.forges.gitlab import (
    COMMENT_LIMIT,
    JOB_TOKEN_MESSAGE,
    GitLab,
    gitlab_forge,
    hashed_name,
    token_from_env,
)
from cml_bot.forges.http import HttpError
from cml_bot.forges.sticky import CommentMode
from cml_bot.model import Image, Verdict

__all__ = ["fake", "make_forge", "sleeps"]  # fixtures, re-exported for pytest

MakeForge = Callable[..., GitLab]
NOTES = rf"/merge_requests/{MR_IID}/notes$"
PNG_A = b"\x89PNG\r\n\x1a\n" + b"a" * 300
PNG_B = b"\x89PNG\r\n\x1a\n" + b"b" * 200


def report(text: str) -> str:
    return f"{MARKER}\n## cml-bot report\n\n{text}\n"


# -- first post, update, modes -------------------------------------------------------------------


def test_first_post_creates_one_note_and_links_to_it(fake: FakeGitLab, make_forge: MakeForge) -> None:
    fake.add_note(MR_IID, "Looks good to me")
    forge = make_forge()

    publication = post(forge, report("first"), MARKER, CommentMode.UPDATE)

    notes = fake.marked_notes(MR_IID, MARKER)
    assert len(notes) == 1
    assert notes[0]["body"] == report("first")
    assert notes[0]["author"]["id"] == fake.bot.id
    assert publication.created is True
    assert publication.comment_url == f"{fake.web_url}/-/merge_requests/{MR_IID}#note_{notes[0]['id']}"
    assert fake.count("POST", NOTES) == 1
    assert {r.auth for r in fake.requests} == {"private"}
    assert forge.comment_limit == COMMENT_LIMIT == 1_000_000


def test_second_run_updates_the_note_found_on_page_3_of_many(fake: FakeGitLab, make_forge: MakeForge) -> None:
    for i in range(209):
        fake.add_note(MR_IID, f"comment {i}", author=7 + i % 2)
    ours = fake.add_note(MR_IID, report("old"), author=fake.bot.id)
    for i in range(45):
        fake.add_note(MR_IID, f"later comment {i}")
    fake.add_note(MR_IID, "merged the branch", system=True)
    forge = make_forge()

    publication = post(forge, report("new"), MARKER, CommentMode.UPDATE)

    assert publication.created is False
    assert publication.comment_url is not None
    assert publication.comment_url.endswith(f"#note_{ours['id']}")
    assert [n["body"] for n in fake.marked_notes(MR_IID, MARKER)] == [report("new")]
    assert fake.count("POST", NOTES) == 0
    assert fake.count("PUT", rf"{NOTES[:-1]}/{ours['id']}$") == 1
    pages = [r.query for r in fake.requests if r.method == "GET" and r.path.endswith("/notes")]
    assert [q["page"] for q in pages] == ["1", "2", "3"]
    assert {q["per_page"] for q in pages} == {"100"}
    assert len(fake.notes(MR_IID)) == 256


def test_update_with_the_same_body_sends_no_write(fake: FakeGitLab, make_forge: MakeForge) -> None:
    fake.add_note(MR_IID, report("same"), author=fake.bot.id)
    publication = post(make_forge(), report("same"), MARKER, CommentMode.UPDATE)
    assert publication.created is False
    assert fake.count("PUT", "/notes/") == 0 and fake.count("POST", NOTES) == 0


def test_notes_by_other_users_carrying_the_marker_are_left_alone(fake: FakeGitLab, make_forge: MakeForge) -> None:
    quoted = fake.add_note(MR_IID, report("pasted by a human"), author=7)
    fake.add_note(MR_IID, f"> {MARKER}\n> quoted in a reply", author=fake.bot.id)

    publication = post(make_forge(), report("bot"), MARKER, CommentMode.UPDATE)

    assert publication.created is True
    bodies = {n["id"]: n["body"] for n in fake.marked_notes(MR_IID, MARKER)}
    assert bodies[quoted["id"]] == report("pasted by a human")
    expected = [report("pasted by a human"), report("bot"), f"> {MARKER}\n> quoted in a reply"]
    assert sorted(bodies.values()) == sorted(expected)


def test_without_the_user_endpoint_the_marker_alone_finds_the_note(make_forge: MakeForge) -> None:
    with FakeGitLab(user_endpoint=False) as server:
        server.add_merge_request(MR_IID, sha=HEAD_SHA)
        ours = server.add_note(MR_IID, report("old"), author=server.bot.id)
        env = ci_env(server)
        forge = gitlab_forge(gitlab_context(env), env, sleep=lambda _: None)
        try:
            publication = post(forge, report("new"), MARKER, CommentMode.UPDATE)
        finally:
            forge.close()
        assert publication.created is False
        assert server.notes(MR_IID)[0]["id"] == ours["id"]
        assert server.notes(MR_IID)[0]["body"] == report("new")
        assert server.count("GET", "^/api/v4/user$") == 1


def test_mode_new_adds_a_note_each_time(fake: FakeGitLab, make_forge: MakeForge) -> None:
    fake.add_note(MR_IID, report("one"), author=fake.bot.id)
    publication = post(make_forge(), report("two"), MARKER, CommentMode.NEW)
    assert publication.created is True
    assert [n["body"] for n in fake.marked_notes(MR_IID, MARKER)] == [report("one"), report("two")]


def test_mode_recreate_deletes_the_old_note_and_posts_at_the_bottom(fake: FakeGitLab, make_forge: MakeForge) -> None:
    old = fake.add_note(MR_IID, report("old"), author=fake.bot.id)
    fake.add_note(MR_IID, "a reply")
    publication = post(make_forge(), report("new"), MARKER, CommentMode.RECREATE)
    notes = fake.notes(MR_IID)
    assert [n["body"] for n in notes] == ["a reply", report("new")]
    assert old["id"] not in {n["id"] for n in notes}
    assert publication.created is True
    assert publication.comment_url is not None and publication.comment_url.endswith(f"#note_{notes[-1]['id']}")


def test_concurrent_runs_leave_one_note_the_oldest_with_the_newest_body(
    fake: FakeGitLab, make_forge: MakeForge
) -> None:
    forge = make_forge()
    racer: dict[str, int] = {}

    def other_run_posts(server: FakeGitLab) -> None:
        racer["id"] = server._new_note(MR_IID, report("other run"), server.bot)["id"]

    fake.fail("POST", NOTES, "pass", action=other_run_posts)

    publication = post(forge, report("this run"), MARKER, CommentMode.UPDATE)

    notes = fake.marked_notes(MR_IID, MARKER)
    assert [(n["id"], n["body"]) for n in notes] == [(racer["id"], report("this run"))]
    assert publication.created is False
    assert publication.comment_url is not None and publication.comment_url.endswith(f"#note_{racer['id']}")
    assert fake.count("DELETE", "/notes/") == 1


def test_branch_pipeline_finds_the_open_merge_request_of_the_commit(fake: FakeGitLab, make_forge: MakeForge) -> None:
    fake.add_merge_request(9, sha="b" * 40, state="merged")
    fake.add_merge_request(10, sha="b" * 40)
    forge = make_forge(CI_MERGE_REQUEST_IID=None, CI_PIPELINE_SOURCE="push", CI_COMMIT_SHA="b" * 40)
    publication = post(forge, report("x"), MARKER, CommentMode.UPDATE)
    assert publication.created is True
    assert len(fake.marked_notes(10, MARKER)) == 1
    assert fake.marked_notes(9, MARKER) == []


def test_branch_pipeline_without_a_merge_request_posts_nothing(fake: FakeGitLab, make_forge: MakeForge) -> None:
    fake.add_commit("c" * 40, branch="topic")  # pushed, no merge request yet
    forge = make_forge(CI_MERGE_REQUEST_IID=None, CI_PIPELINE_SOURCE="push", CI_COMMIT_SHA="c" * 40)
    assert upload(forge, [Image("a.png", PNG_A)]) == {}
    publication = post(forge, report("x"), MARKER, CommentMode.UPDATE)
    assert (publication.comment_url, publication.created) == (None, False)
    assert not any(r.method in ("POST", "PUT", "DELETE") for r in fake.requests)


def test_explicit_change_number_overrides_the_context(fake: FakeGitLab) -> None:
    fake.add_merge_request(11, sha="d" * 40)
    env = ci_env(fake, CI_MERGE_REQUEST_IID=None)
    context = dataclasses.replace(gitlab_context(env), change_number=11, head_sha="d" * 40)
    forge = gitlab_forge(context, env, sleep=lambda _: None)
    try:
        post(forge, report("x"), MARKER, CommentMode.UPDATE)
        forge.set_status(Verdict.PASS, "ok", None)
    finally:
        forge.close()
    assert len(fake.marked_notes(11, MARKER)) == 1
    assert [s["sha"] for s in fake.statuses] == ["d" * 40]


# -- uploads -------------------------------------------------------------------------------------


def test_each_distinct_image_is_uploaded_once_and_linked_by_its_relative_url(
    fake: FakeGitLab, make_forge: MakeForge
) -> None:
    forge = make_forge()
    images = [Image("plot-01-loss.png", PNG_A), Image("plot-02-acc.png", PNG_B), Image("copy.png", PNG_A)]

    urls = upload(forge, images)
    again = upload(forge, images[:2])

    uploads = fake.uploads
    assert [(u["filename"], u["data"]) for u in uploads] == [
        (hashed_name(Image("plot-01-loss.png", PNG_A)), PNG_A),
        (hashed_name(Image("plot-02-acc.png", PNG_B)), PNG_B),
    ]
    assert urls == {
        "plot-01-loss.png": uploads[0]["url"],
        "plot-02-acc.png": uploads[1]["url"],
        "copy.png": uploads[0]["url"],
    }
    assert all(url.startswith("/uploads/") for url in urls.values())
    assert again == {k: urls[k] for k in ("plot-01-loss.png", "plot-02-acc.png")}
    assert {r.path for r in fake.requests if r.method == "POST"} == {f"/api/v4/projects/{fake.project.id}/uploads"}


def test_upload_retries_a_dropped_connection(fake: FakeGitLab, make_forge: MakeForge, sleeps: list[float]) -> None:
    fake.fail("POST", "/uploads$", "drop")
    urls = upload(make_forge(), [Image("a.png", PNG_A)])
    assert urls == {"a.png": fake.uploads[0]["url"]}
    assert len(fake.uploads) == 1
    assert len(sleeps) == 1


# -- read-only token -----------------------------------------------------------------------------


def test_job_token_only_raises_one_clear_line_without_trying(fake: FakeGitLab, make_forge: MakeForge) -> None:
    forge = make_forge(CML_BOT_TOKEN=None)
    with pytest.raises(ReadOnlyTokenError) as uploading:
        upload(forge, [Image("a.png", PNG_A)], change=Change(MR_IID))
    with pytest.raises(ReadOnlyTokenError) as comment:
        forge.thread(Change(MR_IID))
    with pytest.raises(ReadOnlyTokenError):
        forge.set_status(Verdict.PASS, "ok", None)
    assert str(uploading.value) == str(comment.value) == JOB_TOKEN_MESSAGE
    assert "\n" not in JOB_TOKEN_MESSAGE and "CML_BOT_TOKEN" in JOB_TOKEN_MESSAGE
    assert fake.requests == []
    assert fake.job_token not in JOB_TOKEN_MESSAGE


def test_no_token_at_all_is_read_only_too(fake: FakeGitLab, make_forge: MakeForge) -> None:
    forge = make_forge(CML_BOT_TOKEN=None, CI_JOB_TOKEN=None)
    with pytest.raises(ReadOnlyTokenError, match="CML_BOT_TOKEN"):
        post(forge, report("x"), MARKER, CommentMode.UPDATE)
    assert fake.requests == []


def test_job_token_may_read_notes_but_not_post_them(fake: FakeGitLab) -> None:
    """The fake answers job tokens as GitLab documents (ci/jobs/ci_job_token: notes are read-only)."""
    import gitlab

    client = gitlab.Gitlab(fake.url, job_token=fake.job_token)
    notes = f"/projects/{fake.project.id}/merge_requests/{MR_IID}/notes"
    try:
        assert client.http_request("get", notes).status_code == 200
        with pytest.raises(gitlab.exceptions.GitlabAuthenticationError) as caught:
            client.http_request("post", notes, post_data={"body": "hi"})
    finally:
        client.session.close()
    assert caught.value.response_code == 401  # the job token is ignored there: unauthenticated
    assert [r.auth for r in fake.requests] == ["job", "job"]
    assert fake.notes(MR_IID) == []


def test_token_precedence() -> None:
    assert token_from_env({"CML_BOT_TOKEN": "a", "GITLAB_TOKEN": "b", "CI_JOB_TOKEN": "c"}) == ("a", "private")
    assert token_from_env({"CML_BOT_TOKEN": "", "GITLAB_TOKEN": "b", "CI_JOB_TOKEN": "c"}) == ("b", "private")
    assert token_from_env({"CI_JOB_TOKEN": "c"}) == ("c", "job")
    assert token_from_env({}) == (None, "none")


# -- faults without duplicates -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"),
    [("drop_after", 0), ("status_after", 502), ("drop", 0), ("status", 503)],
)
def test_a_failed_create_never_duplicates_the_note(
    fake: FakeGitLab, make_forge: MakeForge, sleeps: list[float], kind: str, status: int
) -> None:
    fake.fail("POST", NOTES, kind, status=status or 502)  # type: ignore[arg-type]

    publication = post(make_forge(), report("x"), MARKER, CommentMode.UPDATE)

    notes = fake.marked_notes(MR_IID, MARKER)
    assert len(notes) == 1
    assert publication.comment_url is not None and publication.comment_url.endswith(f"#note_{notes[0]['id']}")
    went_through = kind.endswith("_after")
    assert fake.count("POST", NOTES) == (1 if went_through else 2)
    assert len(sleeps) == 1


def test_a_failed_create_in_mode_new_does_not_mistake_the_old_note_for_the_new_one(
    fake: FakeGitLab, make_forge: MakeForge
) -> None:
    fake.add_note(MR_IID, report("old"), author=fake.bot.id)
    fake.fail("POST", NOTES, "drop")
    post(make_forge(), report("new"), MARKER, CommentMode.NEW)
    assert [n["body"] for n in fake.marked_notes(MR_IID, MARKER)] == [report("old"), report("new")]


def test_rate_limit_honours_retry_after(fake: FakeGitLab, make_forge: MakeForge, sleeps: list[float]) -> None:
    fake.fail("GET", NOTES, "status", status=429, retry_after=7, message="Too Many Requests")
    fake.fail("POST", NOTES, "status", status=429, retry_after=90, message="Too Many Requests")

    post(make_forge(), report("x"), MARKER, CommentMode.UPDATE)

    assert len(sleeps) == 2 and 7 <= sleeps[0] <= 8 and 90 <= sleeps[1] <= 91
    assert len(fake.marked_notes(MR_IID, MARKER)) == 1
    assert fake.count("POST", NOTES) == 2  # a 429 was not applied: posting again cannot duplicate


def test_a_retry_after_past_the_deadline_fails_at_once(
    fake: FakeGitLab, make_forge: MakeForge, sleeps: list[float]
) -> None:
    fake.fail("POST", NOTES, "status", status=429, retry_after=3600, message="Too Many Requests")
    with pytest.raises(ForgeError, match="past the deadline"):
        post(make_forge(), report("x"), MARKER, CommentMode.UPDATE)
    assert sleeps == [] and fake.marked_notes(MR_IID, MARKER) == []


def test_server_errors_on_update_and_list_are_retried(
    fake: FakeGitLab, make_forge: MakeForge, sleeps: list[float]
) -> None:
    ours = fake.add_note(MR_IID, report("old"), author=fake.bot.id)
    fake.fail("GET", NOTES, "drop")
    fake.fail("PUT", "/notes/", "status", status=500, message="Internal Server Error", times=2)

    post(make_forge(), report("new"), MARKER, CommentMode.UPDATE)

    assert [(n["id"], n["body"]) for n in fake.notes(MR_IID)] == [(ours["id"], report("new"))]
    assert len(sleeps) == 3 and 0.5 <= sleeps[0] <= 1 and 0.5 <= sleeps[1] <= 1 and 1 <= sleeps[2] <= 2


def test_a_persistent_outage_gives_up_with_one_line(
    fake: FakeGitLab, make_forge: MakeForge, sleeps: list[float]
) -> None:
    fake.fail("GET", NOTES, "status", status=503, message="Service Unavailable", times=100)
    with pytest.raises(HttpError) as caught:
        post(make_forge(), report("x"), MARKER, CommentMode.UPDATE)
    message = str(caught.value)
    assert "\n" not in message
    assert "GET /projects/42/merge_requests/3/notes" in message and "503" in message
    assert caught.value.exit_code == 1
    assert len(sleeps) == 5
    assert fake.count("POST", NOTES) == 0


def test_the_notes_limit_is_a_clear_forge_error(fake: FakeGitLab, make_forge: MakeForge) -> None:
    fake.notes_limit = 3
    for i in range(3):
        fake.add_note(MR_IID, f"c{i}")
    with pytest.raises(ForgeError, match=r"limit of 5,000 comments") as caught:
        post(make_forge(), report("x"), MARKER, CommentMode.UPDATE)
    assert "Maximum number of comments exceeded" in str(caught.value)
    assert fake.count("POST", NOTES) == 1


def test_a_revoked_token_is_a_forge_error_not_read_only(fake: FakeGitLab, make_forge: MakeForge) -> None:
    forge = make_forge(CML_BOT_TOKEN="glpat-revoked-token-555")
    with pytest.raises(ForgeError) as caught:
        post(forge, report("x"), MARKER, CommentMode.UPDATE)
    assert not isinstance(caught.value, ReadOnlyTokenError)
    assert "401" in str(caught.value) and "glpat-revoked-token-555" not in str(caught.value)


# -- commit status -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "state"),
    [
        (Verdict.PASS, "success"),
        (Verdict.NO_BASELINE, "success"),
        (Verdict.REGRESSED, "failed"),
        (Verdict.FAILED, "failed"),
    ],
)
def test_commit_status_carries_the_verdict(
    fake: FakeGitLab, make_forge: MakeForge, verdict: Verdict, state: str
) -> None:
    make_forge().set_status(verdict, "accuracy 0.91 (+0.02)\n", target_url="https://ci.example/jobs/991")
    assert [(s["sha"], s["name"], s["status"], s["target_url"], s["description"]) for s in fake.statuses] == [
        (HEAD_SHA, "cml-bot", state, "https://ci.example/jobs/991", "accuracy 0.91 (+0.02)")
    ]


def test_commit_status_is_retried_after_a_server_error(
    fake: FakeGitLab, make_forge: MakeForge, sleeps: list[float]
) -> None:
    fake.fail("POST", "/statuses/", "status", status=502)
    make_forge().set_status(Verdict.REGRESSED, "x" * 400, target_url=None)
    assert len(fake.statuses) == 1
    assert fake.statuses[0]["target_url"] is None
    assert len(fake.statuses[0]["description"]) == 255
    assert len(sleeps) == 1


# -- secrets -------------------------------------------------------------------------------------


def test_the_token_never_reaches_output_logs_or_errors(
    fake: FakeGitLab,
    make_forge: MakeForge,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail("POST", "/uploads$", "drop_after")
    fake.fail("POST", NOTES, "status_after", status=502)
    fake.fail("PUT", "/notes/", "status", status=429, retry_after=1)
    fake.fail("POST", "/statuses/", "status", status=500, times=10)
    forge = make_forge()
    errors: list[str] = []

    upload(forge, [Image("a.png", PNG_A)])
    post(forge, report("one"), MARKER, CommentMode.UPDATE)
    post(forge, report("two"), MARKER, CommentMode.UPDATE)
    with pytest.raises(ForgeError) as caught:
        forge.set_status(Verdict.PASS, "ok", None)
    errors.append(str(caught.value))
    errors.append(repr(caught.value))
    bad = make_forge(CML_BOT_TOKEN=None, GITLAB_TOKEN="glpat-wrong-token-777")
    with pytest.raises(ForgeError) as caught:
        post(bad, report("x"), MARKER, CommentMode.UPDATE)
    errors.append(str(caught.value))
    job = make_forge(CML_BOT_TOKEN=None)
    with pytest.raises(ReadOnlyTokenError) as read_only:
        post(job, report("x"), MARKER, CommentMode.UPDATE)
    errors.append(str(read_only.value))

    out, err = capsys.readouterr()
    logged = caplog.text + "".join(repr(r.args) + str(r.msg) for r in caplog.records)
    seen = "\n".join([out, err, logged, *errors, repr(forge), repr(bad), repr(job)])
    assert caplog.records, "expected retry warnings to be logged"
    for secret in (fake.token, fake.job_token, "glpat-wrong-token-777"):
        assert secret not in seen


def test_missing_project_id_is_a_forge_error(fake: FakeGitLab) -> None:
    env = ci_env(fake, CI_PROJECT_ID=None, CI_MERGE_REQUEST_PROJECT_ID=None)
    with pytest.raises(ForgeError, match="CI_PROJECT_ID"):
        gitlab_forge(gitlab_context(env), env)


def test_verify_change_head_accepts_the_merge_request_head_only(fake: FakeGitLab, make_forge: MakeForge) -> None:
    forge = make_forge()
    forge.verify_head(Change(MR_IID), HEAD_SHA)
    with pytest.raises(ForgeError, match=r"merge request !3 head is 0123456789ab, not eeeeeeeeeeee"):
        forge.verify_head(Change(MR_IID), "e" * 40)
    assert fake.count("GET", rf"/merge_requests/{MR_IID}$") == 2


# -- GitLab as documented: statuses in the running pipeline, 409, the MR whose head is the commit --


def test_merged_results_status_lands_in_the_running_pipeline(fake: FakeGitLab, sleeps: list[float]) -> None:
    fake.add_merge_request(5, sha="5" * 40, source_branch="five")  # no branch pipeline: merged results only
    env, pipeline = merged_result_env(fake, iid=5)
    forge = gitlab_forge(gitlab_context(env), env, sleep=sleeps.append)
    try:
        forge.set_status(Verdict.PASS, "accuracy 0.91", target_url=env["CI_PIPELINE_URL"])
    finally:
        forge.close()
    assert [s["pipeline_id"] for s in fake.statuses] == [pipeline.id]
    assert [p.source for p in fake.pipelines if p.source == "external"] == []


def test_a_409_on_the_status_is_retried(fake: FakeGitLab, sleeps: list[float]) -> None:
    fake.fail("POST", "/statuses/", status=409)
    env = ci_env(fake)
    forge = gitlab_forge(gitlab_context(env), env, sleep=sleeps.append)
    try:
        forge.set_status(Verdict.PASS, "ok", target_url=None)
    finally:
        forge.close()
    assert [s["status"] for s in fake.statuses] == ["success"]


def test_a_branch_pipeline_posts_on_the_merge_request_whose_head_is_the_commit(
    fake: FakeGitLab, sleeps: list[float]
) -> None:
    first, second = "c1" * 20, "c2" * 20
    fake.add_merge_request(8, sha=first, source_branch="step-1")
    fake.add_merge_request(9, sha=second, commits=[first, second], source_branch="step-2")  # stacked on step-1
    env, _ = branch_env(fake, first, "step-1")
    forge = gitlab_forge(gitlab_context(env), env, sleep=sleeps.append)
    try:
        post(forge, report("x"), MARKER, CommentMode.UPDATE)
    finally:
        forge.close()
    assert (len(fake.marked_notes(8, MARKER)), len(fake.marked_notes(9, MARKER))) == (1, 0)
