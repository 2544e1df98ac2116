"""Bitbucket Pipelines: the context from its variables, and what a run may do with its token."""

from __future__ import annotations

from cml_bot.context import detect
from cml_bot.forges import token_kind
from cml_bot.plan import Request, access_for, plan

PIPELINE = {
    "CI": "true",
    "BITBUCKET_BUILD_NUMBER": "118",
    "BITBUCKET_WORKSPACE": "acme",
    "BITBUCKET_REPO_SLUG": "models",
    "BITBUCKET_REPO_FULL_NAME": "acme/models",
    "BITBUCKET_COMMIT": "5d1ed32e3f0a6d0c9f4a8a1c3b3e2b7b9c4d5e6f",
    "BITBUCKET_BRANCH": "feature/lr",
}
PULL_REQUEST = {**PIPELINE, "BITBUCKET_PR_ID": "7", "BITBUCKET_PR_DESTINATION_BRANCH": "main"}


def test_a_pull_request_pipeline() -> None:
    context = detect(PULL_REQUEST)
    assert (context.platform, context.repo, context.change_number) == ("bitbucket", "acme/models", 7)
    assert (context.head_sha, context.head_ref, context.base_ref) == (
        PIPELINE["BITBUCKET_COMMIT"],
        "feature/lr",
        "main",
    )
    assert context.is_change and context.event_name == "pull-request"
    assert context.api_url == "https://api.bitbucket.org/2.0" and context.server_url == "https://bitbucket.org"
    assert context.run_url == "https://bitbucket.org/acme/models/pipelines/results/118"


def test_a_branch_pipeline_and_the_repository_from_workspace_and_slug() -> None:
    env = {k: v for k, v in PIPELINE.items() if k != "BITBUCKET_REPO_FULL_NAME"}
    context = detect({**env, "CML_BOT_API_URL": "http://127.0.0.1:9/2.0/"})
    assert (context.repo, context.change_number, context.base_ref, context.is_change) == (
        "acme/models",
        None,
        None,
        False,
    )
    assert context.api_url == "http://127.0.0.1:9/2.0"


def test_the_token_decides_what_a_run_may_do() -> None:
    context = detect(PULL_REQUEST)
    assert token_kind(context, PULL_REQUEST) == "none"
    access = access_for(context, "none")
    assert not access.can_write and access.why_not == (
        "no Bitbucket token: set a repository access token in the secured variable CML_BOT_TOKEN "
        "(report saved as an artifact)"
    )
    decided = plan(context, Request(), access, "feature/lr", "main")
    assert (decided.post, decided.save_bundle, decided.why_not_posted) == (False, True, access.why_not)
    with_token = {**PULL_REQUEST, "CML_BOT_TOKEN": "secret-token-value"}
    assert token_kind(context, with_token) == "write" and access_for(context, "write").can_write


def test_a_push_to_main_records() -> None:
    push = {**PIPELINE, "BITBUCKET_BRANCH": "main"}
    context = detect(push)
    decided = plan(context, Request(), access_for(context, "write"), context.head_ref, "main")
    assert decided.record and decided.post
