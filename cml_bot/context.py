"""Where are we running: GitHub Actions, GitLab CI or a developer's machine (pure).

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

from cml_bot.errors import ConfigError

Platform = Literal["github", "gitlab", "local"]


@dataclass(frozen=True)
class CiContext:
    platform: Platform
    repo: str | None = None  # "owner/name" on GitHub, the project id on GitLab
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

    @property
    def is_change(self) -> bool:
        return self.change_number is not None


def detect(env: Mapping[str, str], event: Mapping[str, Any] | None = None) -> CiContext:
    """Pick the platform from the environment; ``event`` overrides reading GITHUB_EVENT_PATH."""
    if env.get("GITHUB_ACTIONS") == "true":
        return github_context(env, event if event is not None else load_event(env))
    if env.get("GITLAB_CI") == "true":
        return gitlab_context(env)
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
    repo = env.get("GITHUB_REPOSITORY") or _str(_dig(event, "repository", "full_name"))
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
        "default_branch": _str(_dig(event, "repository", "default_branch")),
    }
    pull = event.get("pull_request")
    if isinstance(pull, Mapping):
        head_repo = _str(_dig(pull, "head", "repo", "full_name"))
        return CiContext(
            **common,
            change_number=_int(pull.get("number")) or _int(event.get("number")),
            head_sha=_str(_dig(pull, "head", "sha")),
            head_ref=_str(_dig(pull, "head", "ref")),
            base_ref=_str(_dig(pull, "base", "ref")),
            is_fork=head_repo is not None and repo is not None and head_repo != repo,
        )
    ref = env.get("GITHUB_REF", "")
    head_ref = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else env.get("GITHUB_REF_NAME")
    return CiContext(**common, head_sha=env.get("GITHUB_SHA") or _str(event.get("after")), head_ref=head_ref)


def gitlab_context(env: Mapping[str, str]) -> CiContext:
    iid = _int(env.get("CI_MERGE_REQUEST_IID"))
    source_project = env.get("CI_MERGE_REQUEST_SOURCE_PROJECT_ID")
    project = env.get("CI_PROJECT_ID")
    return CiContext(
        platform="gitlab",
        repo=env.get("CI_MERGE_REQUEST_PROJECT_ID") or project,
        api_url=(env.get("CI_API_V4_URL") or "").rstrip("/") or None,
        server_url=env.get("CI_SERVER_URL"),
        change_number=iid,
        head_sha=env.get("CI_COMMIT_SHA"),
        head_ref=env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or env.get("CI_COMMIT_REF_NAME"),
        base_ref=env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME"),
        base_sha=env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA") or None,
        event_name=env.get("CI_PIPELINE_SOURCE"),
        run_url=env.get("CI_PIPELINE_URL"),
        job_url=env.get("CI_JOB_URL"),
        is_fork=bool(source_project and project and source_project != project),
        default_branch=env.get("CI_DEFAULT_BRANCH"),
    )


def _dig(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
