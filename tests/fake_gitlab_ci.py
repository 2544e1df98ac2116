"""Pipelines and external commit statuses of the fake GitLab.

GitLab keeps every commit status as a job in the ``external`` stage of one pipeline; which pipeline
is decided when the status is posted. Where it lands is what a test of cml-bot must be able to
assert, so pipelines are state here. Sources: https://docs.gitlab.com/ee/api/commits.html#set-commit-pipeline-status,
https://docs.gitlab.com/ee/ci/ci_cd_for_external_repos/external_commit_statuses.html, and for the order
of the checks and their messages ``app/services/ci/create_commit_status_service.rb`` and the
``CommitStatus`` state machine (``app/models/commit_status.rb``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fake_gitlab_repo import Reply, message, paginated

if TYPE_CHECKING:
    from fake_gitlab import FakeGitLab

OPEN_JOB = ("pending", "running")
# CommitStatus events and the states each may leave from; "!" events refuse, the others are skipped.
TRANSITIONS = {
    "enqueue": ("created",),
    "run": ("pending",),
    "success": ("created", "pending", "running"),
    "drop": ("created", "pending", "running"),
    "cancel": ("created", "pending", "running"),
    "skip": ("created",),
}
EVENTS = {
    "pending": ["enqueue!"],
    "running": ["enqueue", "run!"],
    "success": ["success!"],
    "failed": ["drop!"],
    "canceled": ["cancel!"],
    "skipped": ["skip!"],
}
RESULT = {
    "enqueue": "pending",
    "run": "running",
    "success": "success",
    "drop": "failed",
    "cancel": "canceled",
    "skip": "skipped",
}


@dataclass
class Pipeline:
    """A pipeline as GitLab keeps it: ``sha`` and ``ref`` decide where an external status lands."""

    id: int
    iid: int
    sha: str
    ref: str
    source: str  # push, merge_request_event, external, ...
    merge_request_iid: int | None = None
    event_type: str | None = None  # detached, merged_result, merge_train (merge request pipelines)
    status: str = "running"

    def as_json(self, web_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "iid": self.iid,
            "sha": self.sha,
            "ref": self.ref,
            "source": self.source,
            "status": self.status,
            "web_url": f"{web_url}/-/pipelines/{self.id}",
        }


@dataclass
class Job:
    """An external commit status: a job in the ``external`` stage of one pipeline."""

    id: int
    pipeline_id: int
    sha: str
    ref: str
    name: str
    user_id: int
    status: str = "created"
    target_url: str | None = None
    description: str | None = None
    coverage: float | None = None
    created_at: str = ""
    retried: bool = False


def job_json(fake: FakeGitLab, job: Job) -> dict[str, Any]:
    """The CommitStatus entity (commits.html#set-commit-pipeline-status response attributes)."""
    finished = job.status not in ("created", "pending", "running")
    return {
        "id": job.id,
        "sha": job.sha,
        "ref": job.ref,
        "status": job.status,
        "name": job.name,
        "target_url": job.target_url,
        "description": job.description,
        "coverage": job.coverage,
        "created_at": job.created_at,
        "started_at": None if job.status in ("created", "pending") else job.created_at,
        "finished_at": job.created_at if finished else None,
        "allow_failure": False,
        "author": fake._user(job.user_id).as_json(),
        "pipeline_id": job.pipeline_id,
    }


def set_commit_status(fake: FakeGitLab, sha: str, params: dict[str, Any], user_id: int) -> Reply:
    """``POST /projects/:id/statuses/:sha`` (called with the fake's lock held, caller authorised)."""
    project = fake.project
    if sha not in project.commits:
        raise message(404, "404 Commit Not Found")
    wanted_ref, pipeline_id = params.get("ref"), params.get("pipeline_id")
    # "GitLab searches for the most recent non-archived CI pipeline for the given commit SHA and ref.
    # You can also search directly for a pipeline by including the pipeline_id parameter."
    candidates = [p for p in reversed(project.pipelines) if p.sha == sha]  # newest_first(sha:), where(sha:)
    if wanted_ref is not None:
        candidates = [p for p in candidates if p.ref == wanted_ref]
    if pipeline_id is not None:
        candidates = [p for p in candidates if p.id == int(pipeline_id)]
    pipeline = candidates[0] if candidates else None
    ref = wanted_ref or (pipeline.ref if pipeline else None) or next(iter(fake.branches_containing(sha)), None)
    if ref is None:  # a commit in no branch (a merge commit of refs/merge-requests/:iid/merge)
        raise message(404, "404 References for commit Not Found")
    if pipeline_id is not None and pipeline is None:
        raise message(404, "404 Pipeline for pipeline_id, sha and ref Not Found")
    for key in ("description", "target_url", "ref"):  # "Must be 255 characters or fewer."
        if len(str(params.get(key) or "")) > 255:
            raise message(400, {key: ["is too long (maximum is 255 characters)"]})
    target_url = params.get("target_url")
    if target_url is not None and not re.match(r"https?://[^\s/]+", target_url):
        raise message(400, {"target_url": ["is blocked: Only allowed schemes are http, https"]})
    if pipeline is None:
        # "If no suitable pipeline exists, GitLab creates a new pipeline ... CI_PIPELINE_SOURCE is external."
        pipeline = fake._new_pipeline(sha, ref, "external", None, None, None, "pending")
    name = params.get("name") or params.get("context") or "default"
    # "If a running or pending job with the same name, user and sha already exists in the target
    # pipeline, GitLab updates its status"; otherwise a new job, and the old one is retried (hidden).
    job = next(
        (
            j
            for j in project.jobs
            if j.pipeline_id == pipeline.id
            and j.status in OPEN_JOB
            and j.ref == ref
            and j.name == name
            and j.user_id == user_id
        ),
        None,
    )
    fresh = job is None
    if job is None:
        job = Job(fake._next_id(), pipeline.id, sha, ref, name, user_id, created_at=fake._now())
    for event in EVENTS[params["state"]]:
        bare = event.rstrip("!")
        if job.status not in TRANSITIONS[bare]:
            if event.endswith("!"):  # observed: 400 "Cannot transition status via :run from :running"
                raise message(
                    400,
                    f"Cannot transition status via :{bare} from :{job.status} "
                    f'(Reason(s): Status cannot transition via "{bare}")',
                )
            continue
        job.status = RESULT[bare]
    for key in ("target_url", "description"):
        if key in params:
            setattr(job, key, params[key])
    if "coverage" in params:
        job.coverage = float(params["coverage"])
    if fresh:
        for older in project.jobs:
            if older.pipeline_id == pipeline.id and older.name == name and older.ref == ref:
                older.retried = True
        project.jobs.append(job)
    if pipeline.source == "external":
        pipeline.status = job.status
    return Reply(201, job_json(fake, job))


def list_commit_statuses(fake: FakeGitLab, sha: str, params: dict[str, Any]) -> Reply:
    """``GET /projects/:id/repository/commits/:sha/statuses``: the latest (not retried) by default."""
    if sha not in fake.project.commits:
        raise message(404, "404 Commit Not Found")
    jobs = [j for j in fake.project.jobs if j.sha == sha]
    if str(params.get("all", "false")).lower() not in ("true", "1", "t", "yes"):
        jobs = [j for j in jobs if not j.retried]
    for key in ("ref", "name"):
        if params.get(key) is not None:
            jobs = [j for j in jobs if getattr(j, key) == params[key]]
    if params.get("pipeline_id") is not None:
        jobs = [j for j in jobs if j.pipeline_id == int(params["pipeline_id"])]
    order = "pipeline_id" if params.get("order_by") == "pipeline_id" else "id"
    jobs.sort(key=lambda j: getattr(j, order), reverse=params.get("sort") == "desc")
    base = f"{fake.api_url}/projects/{fake.project.id}/repository/commits/{sha}/statuses"
    return paginated([job_json(fake, j) for j in jobs], params, base, totals=False)
