"""CI context from the environment and real GitHub webhook payloads (tests/contracts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cml_bot.context import CiContext, detect, gitlab_context, load_event
from cml_bot.errors import ConfigError

EVENTS = Path(__file__).resolve().parent / "contracts" / "github" / "events"
PR_HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


def _event(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return payload


def _github_env(event_name: str, path: Path | None = None, **extra: str) -> dict[str, str]:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "Codertocat/Hello-World",
        "GITHUB_RUN_ID": "77",
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_SHA": "f" * 40,  # the temporary merge commit on pull_request events
        **extra,
    }
    if path is not None:
        env["GITHUB_EVENT_PATH"] = str(path)
    return env


@pytest.mark.parametrize("name", ["pull_request.opened", "pull_request.synchronize"])
def test_github_pull_request_reads_the_payload_file(name: str) -> None:
    context = detect(_github_env("pull_request", EVENTS / f"{name}.json"))
    assert context == CiContext(
        platform="github",
        repo="Codertocat/Hello-World",
        api_url="https://api.github.com",
        server_url="https://github.com",
        change_number=2,
        head_sha=PR_HEAD,  # not GITHUB_SHA
        head_ref="changes",
        base_ref="master",
        event_name="pull_request",
        run_url="https://github.com/Codertocat/Hello-World/actions/runs/77",
        is_fork=False,
        default_branch="master",
        checked_out_sha="f" * 40,  # what actions/checkout checks out by default
    )
    assert context.is_change


def test_github_fork_pull_request() -> None:
    event = _event("pull_request.opened")
    event["pull_request"]["head"]["repo"]["full_name"] = "someone/Hello-World"
    assert detect(_github_env("pull_request"), event).is_fork


def test_github_enterprise_urls() -> None:
    env = _github_env(
        "pull_request",
        GITHUB_SERVER_URL="https://ghe.example.com/",
        GITHUB_API_URL="https://ghe.example.com/api/v3/",
    )
    context = detect(env, _event("pull_request.opened"))
    assert context.api_url == "https://ghe.example.com/api/v3"
    assert context.run_url == "https://ghe.example.com/Codertocat/Hello-World/actions/runs/77"


def test_github_branch_push() -> None:
    env = _github_env("push", GITHUB_REF="refs/heads/master", GITHUB_SHA="6113728f27ae82c7b1a177c8d03f9e96e0adf246")
    context = detect(env, _event("push.branch"))
    assert (context.change_number, context.head_ref, context.head_sha) == (
        None,
        "master",
        "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    )
    assert not context.is_change


def test_github_tag_push_uses_ref_name() -> None:
    env = _github_env("push", GITHUB_REF="refs/tags/simple-tag", GITHUB_REF_NAME="simple-tag")
    assert detect(env, _event("push")).head_ref == "simple-tag"


def test_github_without_event_file_or_with_a_bad_one(tmp_path: Path) -> None:
    assert load_event({}) == {}
    context = detect(_github_env("workflow_dispatch"))
    assert context.platform == "github" and context.change_number is None
    bad = tmp_path / "event.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"GITHUB_EVENT_PATH .*event\.json: cannot read the event payload"):
        detect(_github_env("pull_request", bad))
    bad.write_text("[1, 2]", encoding="utf-8")
    assert load_event({"GITHUB_EVENT_PATH": str(bad)}) == {}


def test_gitlab_merge_request() -> None:
    env = {
        "GITLAB_CI": "true",
        "CI_PROJECT_ID": "10",
        "CI_MERGE_REQUEST_PROJECT_ID": "10",
        "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "11",
        "CI_MERGE_REQUEST_IID": "5",
        "CI_API_V4_URL": "https://gitlab.example.com/api/v4/",
        "CI_SERVER_URL": "https://gitlab.example.com",
        "CI_COMMIT_SHA": "a" * 40,
        "CI_COMMIT_REF_NAME": "feature",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": "b" * 40,
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_PIPELINE_URL": "https://gitlab.example.com/g/p/-/pipelines/1",
        "CI_JOB_URL": "https://gitlab.example.com/g/p/-/jobs/2",
        "CI_DEFAULT_BRANCH": "main",
    }
    context = detect(env)
    assert context == CiContext(
        platform="gitlab",
        repo="10",
        api_url="https://gitlab.example.com/api/v4",
        server_url="https://gitlab.example.com",
        change_number=5,
        head_sha="a" * 40,
        head_ref="feature",
        base_ref="main",
        base_sha="b" * 40,
        event_name="merge_request_event",
        run_url="https://gitlab.example.com/g/p/-/pipelines/1",
        job_url="https://gitlab.example.com/g/p/-/jobs/2",
        is_fork=True,
        default_branch="main",
        checked_out_sha="a" * 40,
    )


def test_gitlab_merged_results_pipeline_reports_on_the_merge_request_head() -> None:
    """CI_COMMIT_SHA is a temporary merge commit there; the head is the source branch's sha."""
    env = {
        "GITLAB_CI": "true",
        "CI_PROJECT_ID": "10",
        "CI_MERGE_REQUEST_IID": "5",
        "CI_MERGE_REQUEST_EVENT_TYPE": "merged_result",
        "CI_COMMIT_SHA": "e" * 40,
        "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA": "a" * 40,
        "CI_MERGE_REQUEST_TARGET_BRANCH_SHA": "c" * 40,
        "CI_PIPELINE_ID": "991",
    }
    context = detect(env)
    assert (context.head_sha, context.checked_out_sha, context.pipeline_id) == ("a" * 40, "e" * 40, 991)


def test_github_workflow_run_takes_the_triggering_run_from_the_payload() -> None:
    """The trusted publish workflow: commit, branch and run link come from GitHub's event, and a
    fork's pull request (absent from pull_requests) is still a change, found later by its head."""
    run = {
        "event": "pull_request",
        "head_sha": "a" * 40,
        "head_branch": "patch-1",
        "html_url": "https://github.com/Codertocat/Hello-World/actions/runs/55",
        "pull_requests": [],
        "head_repository": {"full_name": "someone/Hello-World"},
    }
    context = detect(_github_env("workflow_run"), {"workflow_run": run})
    assert (context.head_sha, context.head_ref, context.change_number) == ("a" * 40, "patch-1", None)
    assert context.is_change and context.is_fork
    assert context.run_url == "https://github.com/Codertocat/Hello-World/actions/runs/55"
    same_repo = {**run, "pull_requests": [{"number": 4, "head": {"sha": "a" * 40}, "base": {"ref": "main"}}]}
    context = detect(_github_env("workflow_run"), {"workflow_run": same_repo, "repository": {}})
    assert (context.change_number, context.base_ref) == (4, "main")
    pushed = {**run, "event": "push"}
    assert not detect(_github_env("workflow_run"), {"workflow_run": pushed}).is_change


def test_gitlab_branch_pipeline() -> None:
    context = gitlab_context({"GITLAB_CI": "true", "CI_PROJECT_ID": "10", "CI_COMMIT_REF_NAME": "main"})
    assert (context.change_number, context.head_ref, context.is_fork, context.api_url) == (None, "main", False, None)
    assert gitlab_context({"CI_MERGE_REQUEST_IID": "x"}).change_number is None


def test_local() -> None:
    assert detect({}) == CiContext(platform="local")
    assert detect({"GITHUB_ACTIONS": "false", "GITLAB_CI": "1"}).platform == "local"
