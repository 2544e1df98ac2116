"""Where are we running: GitHub Actions, GitLab CI, Bitbucket Pipelines or a developer's machine (pure).

Built from the environment mapping and, on GitHub, the event payload's parsed JSON, so tests pass
plain dicts. The head commit of a pull request comes from the payload (``pull_request.head.sha``),
not ``GITHUB_SHA``, which on ``pull_request`` events is a temporary merge commit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cml_bot import answers
from cml_bot.errors import ConfigError

Platform = Literal["github", "gitlab", "bitbucket", "local"]


@dataclass(frozen=True)
class CiContext:
    platform: Platform
    repo: str | None = None  # "owner/name" on GitHub, the project id on GitLab, "workspace/slug" on Bitbucket
    api_url: str | None = None
    server_url: str | None = None
    change_number: int | None = None  # PR number / MR iid; None on a push
    head_sha: str | None = None
    head_ref: str | None = None  # branch name of the change (untrusted text)
    base_ref: str | None = None  # target branch of the change
    base_sha: str | None = None  # merge-base when the platform tells it (GitLab), else None
    event_name: str | None = None
    run_url: str | None = None
    job_url: str | None = None
    is_fork: bool = False
    default_branch: str | None = None
    checked_out_sha: str | None = None  # the commit in the workspace: a merge commit on PR events
    pipeline_id: int | None = None  # GitLab: the running pipeline (where the status belongs)
    change_event: bool = False  # about a pull request whose number the event does not give (forks)
    merged_results: bool = False  # GitLab: the pipeline runs on a temporary merge commit of the MR

    @property
    def is_change(self) -> bool:
        return self.change_number is not None or self.change_event


def detect(env: Mapping[str, str], event: Mapping[str, Any] | None = None) -> CiContext:
    """Pick the platform from the environment; ``event`` overrides reading GITHUB_EVENT_PATH."""
    if env.get("GITHUB_ACTIONS") == "true":
        return github_context(env, event if event is not None else load_event(env))
    if env.get("GITLAB_CI") == "true":
        return gitlab_context(env)
    if env.get("BITBUCKET_BUILD_NUMBER"):
        return bitbucket_context(env)
    return CiContext(platform="local")


def load_event(env: Mapping[str, str]) -> Mapping[str, Any]:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"GITHUB_EVENT_PATH {path}: cannot read the event payload ({exc})") from None
    return payload if isinstance(payload, dict) else {}


def github_context(env: Mapping[str, str], event: Mapping[str, Any]) -> CiContext:
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    repo = env.get("GITHUB_REPOSITORY") or answers.text(answers.dig(event, "repository", "full_name"))
    run_id = env.get("GITHUB_RUN_ID")
    run_url = f"{server}/{repo}/actions/runs/{run_id}" if repo and run_id else None
    event_name = env.get("GITHUB_EVENT_NAME")
    common: dict[str, Any] = {
        "platform": "github",
        "repo": repo,
        "api_url": env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
        "server_url": server,
        "event_name": event_name,
        "run_url": run_url,
        "default_branch": answers.text(answers.dig(event, "repository", "default_branch")),
    }
    pull = event.get("pull_request")
    triggering = event.get("workflow_run")
    if event_name == "workflow_run" and isinstance(triggering, Mapping):
        return _workflow_run_context(common, repo, triggering)
    if isinstance(pull, Mapping):
        head_repo = answers.text(answers.dig(pull, "head", "repo", "full_name"))
        return CiContext(
            **common,
            change_number=_int(pull.get("number")) or _int(event.get("number")),
            head_sha=answers.text(answers.dig(pull, "head", "sha")),
            head_ref=answers.text(answers.dig(pull, "head", "ref")),
            base_ref=answers.text(answers.dig(pull, "base", "ref")),
            is_fork=head_repo is not None and repo is not None and head_repo != repo,
            checked_out_sha=env.get("GITHUB_SHA") or None,  # refs/pull/N/merge, unless checked out otherwise
        )
    ref = env.get("GITHUB_REF", "")
    head_ref = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else env.get("GITHUB_REF_NAME")
    sha = env.get("GITHUB_SHA") or answers.text(event.get("after"))
    return CiContext(**common, head_sha=sha, head_ref=head_ref, checked_out_sha=sha)


def _workflow_run_context(common: dict[str, Any], repo: str | None, run: Mapping[str, Any]) -> CiContext:
    """A ``workflow_run`` job (the trusted publish workflow): the commit and branch are those of the
    run that triggered it, as GitHub reports them (never what a bundle says). A fork's pull request
    is not listed in ``pull_requests``; the forge finds it by its head commit."""
    head_sha = answers.text(run.get("head_sha"))
    pulls = [p for p in run.get("pull_requests") or [] if isinstance(p, Mapping)]
    number = next((_int(p.get("number")) for p in pulls if answers.dig(p, "head", "sha") == head_sha), None)
    head_repo = answers.text(answers.dig(run, "head_repository", "full_name"))
    base_ref = next((answers.text(answers.dig(p, "base", "ref")) for p in pulls), None)
    return CiContext(
        **{**common, "run_url": answers.text(run.get("html_url")) or common["run_url"]},
        change_number=number,
        change_event=run.get("event") in ("pull_request", "pull_request_target"),
        head_sha=head_sha,
        head_ref=answers.text(run.get("head_branch")),
        base_ref=base_ref,
        is_fork=head_repo is not None and repo is not None and head_repo != repo,
    )


def gitlab_context(env: Mapping[str, str]) -> CiContext:
    """In merged-results pipelines ``CI_COMMIT_SHA`` is a temporary merge commit; the merge
    request's head is ``CI_MERGE_REQUEST_SOURCE_BRANCH_SHA`` (set only there)."""
    iid = _int(env.get("CI_MERGE_REQUEST_IID"))
    commit = env.get("CI_COMMIT_SHA") or None
    source_project = env.get("CI_MERGE_REQUEST_SOURCE_PROJECT_ID")
    project = env.get("CI_PROJECT_ID")
    return CiContext(
        platform="gitlab",
        repo=env.get("CI_MERGE_REQUEST_PROJECT_ID") or project,
        api_url=(env.get("CI_API_V4_URL") or "").rstrip("/") or None,
        server_url=env.get("CI_SERVER_URL"),
        change_number=iid,
        head_sha=env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA") or commit,
        head_ref=env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or env.get("CI_COMMIT_REF_NAME"),
        base_ref=env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME"),
        base_sha=env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA") or None,
        event_name=env.get("CI_PIPELINE_SOURCE"),
        run_url=env.get("CI_PIPELINE_URL"),
        job_url=env.get("CI_JOB_URL"),
        is_fork=bool(source_project and project and source_project != project),
        default_branch=env.get("CI_DEFAULT_BRANCH"),
        checked_out_sha=commit,
        pipeline_id=_int(env.get("CI_PIPELINE_ID")),
        merged_results=env.get("CI_MERGE_REQUEST_EVENT_TYPE") in ("merged_result", "merge_train"),
    )


BITBUCKET_API = "https://api.bitbucket.org/2.0"
BITBUCKET_SERVER = "https://bitbucket.org"


def bitbucket_context(env: Mapping[str, str]) -> CiContext:
    """Bitbucket Pipelines. ``BITBUCKET_PR_ID`` is set only in pull-request pipelines, whose
    ``BITBUCKET_COMMIT`` is the head of the source branch. The API root is Bitbucket Cloud's unless
    ``CML_BOT_API_URL`` names another (tests, a proxy)."""
    workspace, slug = env.get("BITBUCKET_WORKSPACE"), env.get("BITBUCKET_REPO_SLUG")
    repo = env.get("BITBUCKET_REPO_FULL_NAME") or (f"{workspace}/{slug}" if workspace and slug else None)
    build = env.get("BITBUCKET_BUILD_NUMBER")
    number = _int(env.get("BITBUCKET_PR_ID"))
    return CiContext(
        platform="bitbucket",
        repo=repo,
        api_url=(env.get("CML_BOT_API_URL") or BITBUCKET_API).rstrip("/"),
        server_url=BITBUCKET_SERVER,
        change_number=number,
        head_sha=env.get("BITBUCKET_COMMIT") or None,
        head_ref=env.get("BITBUCKET_BRANCH") or None,
        base_ref=env.get("BITBUCKET_PR_DESTINATION_BRANCH") or None,
        event_name="pull-request" if number is not None else "push",
        run_url=f"{BITBUCKET_SERVER}/{repo}/pipelines/results/{build}" if repo and build else None,
    )


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
