"""Pytest fixtures for the GitLab adapter: a running fake GitLab and the CI variables pointing at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fake_gitlab import FakeGitLab

from cml_bot.context import gitlab_context
from cml_bot.forges.base import Change
from cml_bot.forges.gitlab import GitLab, gitlab_forge
from cml_bot.forges.sticky import CommentMode, Publication, upsert
from cml_bot.model import Image

MR_IID = 3
HEAD_SHA = "0123456789abcdef0123456789abcdef01234567"
BASE_SHA = "fedcba9876543210fedcba9876543210fedcba98"
MARKER = "<!-- cml-bot report (id: default) -->"


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        server.add_merge_request(MR_IID, sha=HEAD_SHA)
        yield server


def ci_env(fake: FakeGitLab, **overrides: str | None) -> dict[str, str]:
    """The variables GitLab sets in a merge request pipeline, with CML_BOT_TOKEN set; None removes one."""
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
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
        "CI_COMMIT_SHA": HEAD_SHA,
        "CI_COMMIT_REF_NAME": "feature",
        "CI_DEFAULT_BRANCH": "main",
        "CI_PIPELINE_URL": f"{fake.web_url}/-/pipelines/77",
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
