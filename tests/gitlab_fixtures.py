"""Pytest fixtures for the GitLab adapter: a running fake GitLab and the CI variables pointing at it.

``fake``: a started :class:`~fake_gitlab.FakeGitLab` with merge request !3 (head ``HEAD_SHA`` on
branch ``feature``) and its merge request pipeline 77; the test fails at teardown if any request
departed from the GitLab contract (:attr:`FakeGitLab.violations`).

Environments, as GitLab sets them (https://docs.gitlab.com/ee/ci/variables/predefined_variables.html):
:func:`ci_env` a merge request pipeline, :func:`merged_result_env` a merged-results pipeline,
:func:`branch_env` a branch (push) pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fake_gitlab import FakeGitLab, Pipeline

from cml_bot.context import gitlab_context
from cml_bot.forges.base import Change
from cml_bot.forges.gitlab import GitLab, gitlab_forge
from cml_bot.forges.sticky import CommentMode, Publication, upsert
from cml_bot.model import Image

MR_IID = 3
HEAD_SHA = "0123456789abcdef0123456789abcdef01234567"
BASE_SHA = "fedcba9876543210fedcba9876543210fedcba98"
MARKER = "<!-- cml-bot report (id: default) -->"
MR_PIPELINE_ID = 77


def check_contract(server: FakeGitLab) -> None:
    """Fail the test if any request departed from the GitLab contract."""
    if server.violations:
        listed = "\n  ".join(server.violations[:20])
        pytest.fail(f"{len(server.violations)} request(s) off the GitLab contract:\n  {listed}", pytrace=False)


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        server.add_merge_request(MR_IID, sha=HEAD_SHA, source_branch="feature")
        server.add_pipeline(
            HEAD_SHA,
            source="merge_request_event",
            merge_request_iid=MR_IID,
            event_type="detached",
            pipeline_id=MR_PIPELINE_ID,
        )
        yield server
        check_contract(server)


def ci_env(fake: FakeGitLab, **overrides: str | None) -> dict[str, str]:
    """The variables GitLab sets in a merge request pipeline, with CML_BOT_TOKEN set; None removes one."""
    mr = fake.project.merge_requests.get(MR_IID, {})
    env = {
        "GITLAB_CI": "true",
        "CI": "true",
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_API_V4_URL": fake.api_url,
        "CI_SERVER_URL": fake.url,
        "CI_PROJECT_ID": str(fake.project.id),
        "CI_PROJECT_PATH": fake.project.path,
        "CI_PROJECT_URL": fake.web_url,
        "CI_MERGE_REQUEST_IID": str(MR_IID),
        "CI_MERGE_REQUEST_PROJECT_ID": str(fake.project.id),
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": BASE_SHA,
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": mr.get("source_branch", "feature"),
        "CI_MERGE_REQUEST_EVENT_TYPE": "detached",
        "CI_MERGE_REQUEST_REF_PATH": f"refs/merge-requests/{MR_IID}/head",
        "CI_COMMIT_SHA": HEAD_SHA,
        "CI_COMMIT_REF_NAME": mr.get("source_branch", "feature"),
        "CI_DEFAULT_BRANCH": "main",
        "CI_PIPELINE_ID": str(MR_PIPELINE_ID),
        "CI_PIPELINE_URL": f"{fake.web_url}/-/pipelines/{MR_PIPELINE_ID}",
        "CI_JOB_URL": f"{fake.web_url}/-/jobs/991",
        "CI_JOB_TOKEN": fake.job_token,
        "CML_BOT_TOKEN": fake.token,
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def merged_result_env(
    fake: FakeGitLab,
    *,
    iid: int = MR_IID,
    merge_sha: str | None = None,
    target_sha: str | None = None,
    diff_base_sha: str | None = None,
    **overrides: str | None,
) -> tuple[dict[str, str], Pipeline]:
    """A merged-results pipeline of MR ``iid`` in the fake, and the variables its job sees.

    https://docs.gitlab.com/ee/ci/variables/predefined_variables.html#predefined-variables-for-merge-request-pipelines:
    ``CI_MERGE_REQUEST_EVENT_TYPE`` is ``merged_result``; ``CI_COMMIT_SHA`` is the temporary merge
    commit the pipeline runs on; ``CI_MERGE_REQUEST_SOURCE_BRANCH_SHA`` (the MR head) and
    ``CI_MERGE_REQUEST_TARGET_BRANCH_SHA`` (the target's tip) are set only in merged-results
    pipelines. ``merge_sha``/``target_sha`` let a test use commits of a real local repository.
    """
    pipeline = fake.add_merged_result_pipeline(iid, merge_sha=merge_sha, target_sha=target_sha)
    mr = fake.merge_request(iid)
    env = ci_env(
        fake,
        CI_MERGE_REQUEST_IID=str(iid),
        CI_MERGE_REQUEST_EVENT_TYPE="merged_result",
        CI_MERGE_REQUEST_REF_PATH=f"refs/merge-requests/{iid}/head",
        CI_MERGE_REQUEST_SOURCE_BRANCH_NAME=mr["source_branch"],
        CI_MERGE_REQUEST_TARGET_BRANCH_NAME=mr["target_branch"],
        CI_MERGE_REQUEST_SOURCE_BRANCH_SHA=mr["sha"],
        CI_MERGE_REQUEST_TARGET_BRANCH_SHA=mr["diff_refs"]["start_sha"],
        CI_MERGE_REQUEST_DIFF_BASE_SHA=diff_base_sha or mr["diff_refs"]["base_sha"],
        CI_COMMIT_SHA=pipeline.sha,
        CI_COMMIT_REF_NAME=mr["source_branch"],
        CI_PIPELINE_ID=str(pipeline.id),
        CI_PIPELINE_IID=str(pipeline.iid),
        CI_PIPELINE_URL=f"{fake.web_url}/-/pipelines/{pipeline.id}",
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env, pipeline


def branch_env(fake: FakeGitLab, sha: str, branch: str, **overrides: str | None) -> tuple[dict[str, str], Pipeline]:
    """A branch pipeline (a push) for ``sha`` on ``branch``: no merge request variables."""
    pipeline = fake.add_pipeline(sha, ref=branch, source="push")
    env = ci_env(
        fake,
        CI_PIPELINE_SOURCE="push",
        CI_MERGE_REQUEST_IID=None,
        CI_MERGE_REQUEST_PROJECT_ID=None,
        CI_MERGE_REQUEST_DIFF_BASE_SHA=None,
        CI_MERGE_REQUEST_TARGET_BRANCH_NAME=None,
        CI_MERGE_REQUEST_SOURCE_BRANCH_NAME=None,
        CI_MERGE_REQUEST_EVENT_TYPE=None,
        CI_MERGE_REQUEST_REF_PATH=None,
        CI_COMMIT_SHA=sha,
        CI_COMMIT_REF_NAME=branch,
        CI_COMMIT_BRANCH=branch,
        CI_PIPELINE_ID=str(pipeline.id),
        CI_PIPELINE_URL=f"{fake.web_url}/-/pipelines/{pipeline.id}",
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env, pipeline


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_forge(fake: FakeGitLab, sleeps: list[float]) -> Iterator[Callable[..., GitLab]]:
    """Build forges through the real factory from CI variables; closes their sessions afterwards."""
    made: list[GitLab] = []

    def make(**overrides: str | None) -> GitLab:
        env = ci_env(fake, **overrides)
        forge = gitlab_forge(gitlab_context(env), env, sleep=sleeps.append)
        made.append(forge)
        return forge

    yield make
    for forge in made:
        forge.close()


def post(forge: GitLab, text: str, marker: str, mode: CommentMode) -> Publication:
    """What the app does with a report body: the sticky note on the commit's merge request."""
    change = forge.change()
    if change is None:
        return Publication(None, False)
    return upsert(forge.thread(change), text, marker, mode)


def upload(forge: GitLab, images: list[Image], change: Change | None = None) -> dict[str, str]:
    return dict(forge.upload_images(change or forge.change(), images))
