"""The Bitbucket driver and its data-branch store against the fake Bitbucket, with the one sticky
algorithm on top, as the app uses them."""

from __future__ import annotations

import json
import logging
import math
from typing import Any, cast

import pytest
from fake_bitbucket import (
    API_TOKEN,
    HEAD_SHA,
    PR_ID,
    READ_SCOPES,
    TOKEN,
    Account,
    FakeBitbucket,
    fake_bitbucket,
    pipelines_env,
)

from cml_bot.context import bitbucket_context
from cml_bot.diff import diff
from cml_bot.errors import ForgeError, InputError, ReadOnlyTokenError
from cml_bot.forges.base import Change, CodeInsights
from cml_bot.forges.bitbucket import Bitbucket, bitbucket_forge
from cml_bot.forges.bitbucket_store import BitbucketStore
from cml_bot.forges.http import HttpError, JsonClient, Request, Response
from cml_bot.forges.sticky import CommentMode, upsert
from cml_bot.model import Image, Verdict
from cml_bot.report import Flavour, Report, marker_for
from cml_bot.results import RunResults

__all__ = ["fake_bitbucket"]

MARKER = marker_for("default", Flavour.BITBUCKET)
PNG = b"\x89PNG\r\n\x1a\n" + b"p" * 100


def forge(fake: FakeBitbucket, sleeps: list[float] | None = None, **env: str) -> Bitbucket:
    variables = {k: v for k, v in pipelines_env(fake, **env).items() if v}
    waits = sleeps if sleeps is not None else []
    return bitbucket_forge(bitbucket_context(variables), variables, sleep=waits.append)


def body(text: str) -> str:
    return f"{MARKER}\n\n## cml-bot report\n\n{text}\n"


def report(metrics: dict[str, Any], base: dict[str, Any] | None = None, rules: Any = ()) -> Report:
    return Report("Model", "default", diff(base or {}, metrics, rules))


# -- the pull request ---------------------------------------------------------------------------


def test_a_branch_pipeline_finds_the_pull_request_by_its_abbreviated_head(fake_bitbucket: FakeBitbucket) -> None:
    fake_bitbucket.add_pull(8, "0" * 40)  # another pull request, another head
    found = forge(fake_bitbucket, BITBUCKET_PR_ID="").change()
    assert found == Change(PR_ID, HEAD_SHA)


def test_without_the_commit_links_index_no_pull_request_is_found(
    fake_bitbucket: FakeBitbucket, caplog: pytest.LogCaptureFixture
) -> None:
    fake_bitbucket.commit_links_indexed = False
    assert forge(fake_bitbucket, BITBUCKET_PR_ID="").change() is None
    assert "not indexed yet" in caplog.text


def test_verify_head_compares_the_abbreviated_hash(fake_bitbucket: FakeBitbucket) -> None:
    driver = forge(fake_bitbucket)
    driver.verify_head(Change(PR_ID), HEAD_SHA)
    fake_bitbucket.add_pull(PR_ID, "b" * 40)
    with pytest.raises(ForgeError, match=f"head is bbbbbbbbbbbb, not {HEAD_SHA[:12]}; refusing"):
        driver.verify_head(Change(PR_ID), HEAD_SHA)


# -- comments ------------------------------------------------------------------------------------


def test_modes_new_and_recreate(fake_bitbucket: FakeBitbucket) -> None:
    fake_bitbucket.add_token(API_TOKEN, "ml-bot", kind="user", email="ml@example.com")
    driver = forge(fake_bitbucket, CML_BOT_TOKEN=API_TOKEN, CML_BOT_USERNAME="ml@example.com")
    thread = driver.thread(Change(PR_ID))
    first = upsert(thread, body("one"), MARKER, CommentMode.UPDATE)
    upsert(thread, body("two"), MARKER, CommentMode.NEW)
    assert [c["raw"] for c in fake_bitbucket.comments_on(PR_ID)] == [body("one"), body("two")]
    other = Account("{c0ffee00-0000-4000-8000-00000000000b}", "Reviewer", "user")
    fake_bitbucket.add_comment(PR_ID, "a review", other)
    recreated = upsert(thread, body("three"), MARKER, CommentMode.RECREATE)
    assert [c["raw"] for c in fake_bitbucket.comments_on(PR_ID)] == ["a review", body("three")]
    assert recreated.created and recreated.comment_url != first.comment_url


def test_identity_from_the_api_token_or_from_cml_bot_account(fake_bitbucket: FakeBitbucket) -> None:
    account = fake_bitbucket.add_token(API_TOKEN, "ml-bot", kind="user", email="ml@example.com")
    assert forge(fake_bitbucket, CML_BOT_TOKEN=API_TOKEN, CML_BOT_USERNAME="ml@example.com").identity() == (
        account.uuid.strip("{}")
    )
    assert forge(fake_bitbucket).identity() is None  # a repository access token: /user answers 401
    given = "{ABCDEF00-0000-4000-8000-000000000000}"
    assert forge(fake_bitbucket, CML_BOT_ACCOUNT=given).identity() == "abcdef00-0000-4000-8000-000000000000"


def test_a_next_link_off_the_api_host_is_never_followed(fake_bitbucket: FakeBitbucket) -> None:
    other = Account("{c0ffee00-0000-4000-8000-00000000000c}", "Reviewer", "user")
    for i in range(120):
        fake_bitbucket.add_comment(PR_ID, f"note {i}", other)
    fake_bitbucket.hostile_next = "http://evil.example"
    with pytest.raises(HttpError, match="refusing to follow a link off"):
        forge(fake_bitbucket).thread(Change(PR_ID)).comments()
    assert len(fake_bitbucket.requests("GET", "/comments$")) == 1


def test_a_refused_edit_is_a_clear_error(fake_bitbucket: FakeBitbucket) -> None:
    driver = forge(fake_bitbucket, CML_BOT_ACCOUNT="{c0ffee00-0000-4000-8000-00000000000d}")
    impostor = Account("{c0ffee00-0000-4000-8000-00000000000d}", "Someone", "user")
    fake_bitbucket.add_comment(PR_ID, body("theirs"), impostor)  # CML_BOT_ACCOUNT names the wrong account
    with pytest.raises(ForgeError, match=r"may not edit our comment \d+ .*You can only edit your own comments"):
        upsert(driver.thread(Change(PR_ID)), body("ours"), MARKER, CommentMode.UPDATE)


@pytest.mark.parametrize("kind", ["drop-after", "status-after"])
def test_a_lost_answer_to_a_create_is_adopted_not_repeated(fake_bitbucket: FakeBitbucket, kind: str) -> None:
    fake_bitbucket.add_token(API_TOKEN, "ml-bot", kind="user", email="ml@example.com")
    fake_bitbucket.fail("POST", "/comments$", kind, status=502)
    sleeps: list[float] = []
    driver = forge(fake_bitbucket, sleeps, CML_BOT_TOKEN=API_TOKEN, CML_BOT_USERNAME="ml@example.com")
    publication = upsert(driver.thread(Change(PR_ID)), body("once"), MARKER, CommentMode.UPDATE)
    assert [c["raw"] for c in fake_bitbucket.comments_on(PR_ID)] == [body("once")]
    assert publication.created and len(sleeps) == 1
    assert len(fake_bitbucket.requests("POST", "/comments$")) == 1


# -- images, status, Code Insights ----------------------------------------------------------------


def test_images_go_to_downloads_once_under_content_hashed_names(fake_bitbucket: FakeBitbucket) -> None:
    driver = forge(fake_bitbucket)
    images = [Image("loss.png", PNG), Image("trend.png", PNG + b"t")]
    urls = driver.upload_images(Change(PR_ID), images)
    assert set(urls) == {"loss.png", "trend.png"} and len(fake_bitbucket.downloads) == 2
    for image in images:
        name = urls[image.name].rsplit("/", 1)[1]
        assert urls[image.name] == f"https://bitbucket.org/acme/models/downloads/{name}"
        assert fake_bitbucket.downloads[name] == image.data and name.endswith(f"-{image.name}")
    assert forge(fake_bitbucket).upload_images(Change(PR_ID), images) == urls
    assert len(fake_bitbucket.requests("POST", "/downloads$")) == 2  # the second run found them
    assert driver.upload_images(None, images) == {}  # no pull request: no comment to show them in


def test_a_read_only_token_cannot_upload_or_comment(fake_bitbucket: FakeBitbucket) -> None:
    fake_bitbucket.add_token("reader-token-000000000000", "reader", scopes=READ_SCOPES)
    driver = forge(fake_bitbucket, CML_BOT_TOKEN="reader-token-000000000000")
    with pytest.raises(ReadOnlyTokenError, match="may not upload plots"):
        driver.upload_images(Change(PR_ID), [Image("loss.png", PNG)])
    with pytest.raises(ReadOnlyTokenError, match="may not comment on pull request #7"):
        upsert(driver.thread(Change(PR_ID)), body("x"), MARKER, CommentMode.UPDATE)
    with pytest.raises(ReadOnlyTokenError, match="may not write branch cml-bot-data"):
        driver.result_store("cml-bot-data").save(RunResults(sha=HEAD_SHA, metrics={"a": 1.0}))


@pytest.mark.parametrize(
    ("verdict", "state"),
    [
        (Verdict.PASS, "SUCCESSFUL"),
        (Verdict.NO_BASELINE, "SUCCESSFUL"),
        (Verdict.REGRESSED, "FAILED"),
        (Verdict.FAILED, "FAILED"),
    ],
)
def test_the_build_status_maps_the_verdict(fake_bitbucket: FakeBitbucket, verdict: Verdict, state: str) -> None:
    forge(fake_bitbucket).set_status(verdict, "a   summary\nof it", "https://ci.example/42")
    status = fake_bitbucket.statuses[(HEAD_SHA, "cml-bot")]
    assert (status["state"], status["description"], status["url"]) == (
        state,
        "a summary of it",
        "https://ci.example/42",
    )


def test_a_verdict_added_later_passes_with_the_verdict_in_the_description(fake_bitbucket: FakeBitbucket) -> None:
    driver = forge(fake_bitbucket)
    driver.set_status(cast(Verdict, "inconclusive"), "inconclusive: too noisy to tell", None)
    status = fake_bitbucket.statuses[(HEAD_SHA, "cml-bot")]
    assert (status["state"], status["description"]) == ("SUCCESSFUL", "inconclusive: too noisy to tell")
    assert status["url"] == "https://bitbucket.org/acme/models"  # Bitbucket requires one


def test_code_insights_has_ten_fields_at_most_and_one_annotation_per_failed_gate(fake_bitbucket: FakeBitbucket) -> None:
    from cml_bot.config import Threshold

    names = [f"m{i:03d}" for i in range(250)]
    base = {name: 0.9 for name in names} | {"free": 1.0, "nan": 1.0}
    head = {name: 0.5 for name in names} | {"free": 2.0, "nan": math.nan}
    rules = tuple(Threshold(name, max_drop=0.01) for name in names)
    driver = forge(fake_bitbucket)
    assert isinstance(driver, CodeInsights)
    driver.code_insights(report(head, base, rules), "https://ci.example/42")
    stored = fake_bitbucket.reports[(HEAD_SHA, "cml-bot-default")]
    assert stored["result"] == "FAILED" and len(stored["data"]) == 10
    assert [f["title"] for f in stored["data"][:3]] == ["Verdict", "Failed gates", "m000"]
    assert all(f["type"] == "NUMBER" for f in stored["data"][1:])
    annotations = fake_bitbucket.annotations[(HEAD_SHA, "cml-bot-default")]
    assert len(annotations) == 250 and annotations["gate-1"]["summary"].startswith("m000: ")
    assert len(fake_bitbucket.requests("POST", "/annotations$")) == 3
    # A later run on the same commit replaces the report: no stale annotation survives.
    driver.code_insights(report({"free": 2.0}, {"free": 1.0}), None)
    assert fake_bitbucket.reports[(HEAD_SHA, "cml-bot-default")]["result"] == "PASSED"
    assert (HEAD_SHA, "cml-bot-default") not in fake_bitbucket.annotations


HIDDEN = "acc\u202eycarucca\u200b\nline2\u2028\U000e0041"  # bidi override, zero-width, newlines, a tag


def insight_texts(fake: FakeBitbucket) -> list[str]:
    """Every text field of the stored Code Insights report and its annotations."""
    stored = fake.reports[(HEAD_SHA, "cml-bot-default")]
    texts = [stored["title"], stored["details"], *(f["title"] for f in stored.get("data", []))]
    texts += [str(f["value"]) for f in stored.get("data", []) if f["type"] == "TEXT"]
    for annotation in fake.annotations.get((HEAD_SHA, "cml-bot-default"), {}).values():
        texts += [annotation["summary"], annotation.get("details", "")]
    return texts


def test_code_insights_fields_show_invisible_characters_by_name(fake_bitbucket: FakeBitbucket) -> None:
    from cml_bot.config import Threshold

    driver = forge(fake_bitbucket)
    driver.code_insights_pending(f"Model {HIDDEN}", "default", None)
    assert insight_texts(fake_bitbucket)[0] == "Model acc<U+202E>ycarucca<U+200B> line2 <U+E0041>"
    long = "x\u200b" * 200
    rules = (Threshold(HIDDEN, max_drop=0.01), Threshold(long, max_drop=0.01))
    hostile = Report(f"Model {HIDDEN}", "default", diff({HIDDEN: 0.9, long: 0.9}, {HIDDEN: 0.5, long: 0.5}, rules))

    driver.code_insights(hostile, None)

    texts = insight_texts(fake_bitbucket)
    for text in texts:
        assert not any(c in text for c in "\u202e\u200b\n\r\u2028\U000e0041"), repr(text)
    stored = fake_bitbucket.reports[(HEAD_SHA, "cml-bot-default")]
    assert "acc<U+202E>ycarucca<U+200B> line2 <U+E0041>" in stored["data"][2]["title"]
    assert all(len(f["title"]) <= 100 for f in stored["data"])  # cut after the names were shown
    summaries = [a["summary"] for a in fake_bitbucket.annotations[(HEAD_SHA, "cml-bot-default")].values()]
    assert any(summary.startswith("acc<U+202E>ycarucca<U+200B> line2 <U+E0041>: dropped") for summary in summaries)
    assert all(len(summary) <= 450 for summary in summaries)


def test_more_than_1000_failed_gates_keep_the_first_1000(
    fake_bitbucket: FakeBitbucket, caplog: pytest.LogCaptureFixture
) -> None:
    from cml_bot.config import Threshold

    names = [f"m{i:04d}" for i in range(1100)]
    rules = tuple(Threshold(name, max_drop=0.01) for name in names)
    forge(fake_bitbucket).code_insights(report(dict.fromkeys(names, 0.1), dict.fromkeys(names, 0.9), rules), None)
    assert len(fake_bitbucket.annotations[(HEAD_SHA, "cml-bot-default")]) == 1000
    assert len(fake_bitbucket.requests("POST", "/annotations$")) == 10
    assert "1100 failed gates; Code Insights shows the first 1,000" in caplog.text


def test_code_insights_with_the_token_outside_pipelines(fake_bitbucket: FakeBitbucket) -> None:
    forge(fake_bitbucket, CML_BOT_INSIGHTS_PROXY="", BITBUCKET_BUILD_NUMBER="").code_insights(report({"a": 1.0}), None)
    assert {r.via for r in fake_bitbucket.requests(path="/reports/")} == {"repository"}


# -- merge-base and the data branch ---------------------------------------------------------------


def test_merge_base_from_the_api(fake_bitbucket: FakeBitbucket) -> None:
    driver = forge(fake_bitbucket)
    assert driver.merge_base("main", HEAD_SHA) == fake_bitbucket.root_commit
    assert driver.merge_base("no-such-branch", HEAD_SHA) is None


def results(sha: str, value: float) -> RunResults:
    return RunResults(sha=sha, metrics={"accuracy": value})


def test_records_are_committed_listed_across_pages_and_loaded(fake_bitbucket: FakeBitbucket) -> None:
    store = forge(fake_bitbucket).result_store("cml-bot-data")
    assert store.recorded() == set() and store.load("a" * 40) is None
    first = "a" * 40
    where = store.save(results(first, 0.5))
    tip = fake_bitbucket.branches["cml-bot-data"]
    assert where == f"https://bitbucket.org/acme/models/src/{tip}/records/{first}.json"
    assert fake_bitbucket.commits[tip]["parents"] == [fake_bitbucket.branches["main"]]  # no orphan branches
    others = [f"{i:040x}" for i in range(104)]
    files = fake_bitbucket.files_at("cml-bot-data")
    files |= {f"records/{sha}.json": json.dumps(results(sha, 0.1).__dict__).encode() for sha in others}
    fake_bitbucket.add_commit(files, [tip], branch="cml-bot-data")

    fresh = forge(fake_bitbucket).result_store("cml-bot-data")
    assert fresh.recorded() == {first, *others}
    assert len(fake_bitbucket.requests("GET", "/records/$")) == 2  # pagelen 100: two pages
    loaded = fresh.load(first)
    assert loaded is not None and loaded.metrics == {"accuracy": 0.5}


def test_a_record_racing_another_is_committed_on_the_new_tip(fake_bitbucket: FakeBitbucket) -> None:
    sleeps: list[float] = []
    store = forge(fake_bitbucket, sleeps).result_store("cml-bot-data")
    store.save(results("a" * 40, 0.1))
    fake_bitbucket.fail("POST", "/src$", status=409, message="Branch moved")  # another job's record landed
    store.save(results("b" * 40, 0.2))
    files = fake_bitbucket.files_at("cml-bot-data")
    assert {"records/" + "a" * 40 + ".json", "records/" + "b" * 40 + ".json"} <= set(files)
    assert sleeps == [0.25]


@pytest.mark.parametrize("kind", ["drop-after", "status-after"])
def test_a_record_whose_answer_was_lost_is_not_committed_twice(fake_bitbucket: FakeBitbucket, kind: str) -> None:
    store = forge(fake_bitbucket).result_store("cml-bot-data")
    fake_bitbucket.fail("POST", "/src$", kind, status=500)
    where = store.save(results("c" * 40, 0.3))
    assert len([c for c in fake_bitbucket.commits.values() if "results of" in c["message"]]) == 1
    assert where.endswith("records/" + "c" * 40 + ".json")


def test_a_record_needs_a_full_sha(fake_bitbucket: FakeBitbucket) -> None:
    store = forge(fake_bitbucket).result_store("cml-bot-data")
    assert isinstance(store, BitbucketStore)
    with pytest.raises(InputError, match="full commit sha"):
        store.save(results("abc", 0.1))


def test_the_token_is_in_no_message(fake_bitbucket: FakeBitbucket, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    fake_bitbucket.fail("GET", "/comments$", status=400, message=f"bad request for {TOKEN}")
    driver = forge(fake_bitbucket)
    with pytest.raises(HttpError) as raised:
        driver.thread(Change(PR_ID)).comments()
    assert TOKEN not in str(raised.value) and "***" in str(raised.value)
    assert TOKEN not in caplog.text and TOKEN not in repr(driver)


@pytest.mark.parametrize("body", [{"target": None}, {"target": "main"}, {"target": {"hash": 7}}, []])
def test_a_branch_answer_without_a_commit_is_a_clear_error(body: object) -> None:
    """A hostile or broken ``refs/branches`` answer ("target": null, ...) names no commit: one line."""

    def transport(request: Request) -> Response:
        return Response(200, {}, json.dumps(body).encode())

    client = JsonClient("Bitbucket", transport, "https://api.example")
    store = BitbucketStore(client, "/repositories/w/r", "data", web_url="https://bitbucket.org/w/r")
    with pytest.raises(ForgeError, match="the answer names no commit"):
        store.recorded()
