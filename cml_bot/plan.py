"""What a run does, decided once from where it runs and what it was asked (pure).

As python-coverage-comment-action picks its "activity" from the event, :func:`plan` picks for one
run: post the report on the forge, or save it as a bundle for a trusted ``cml-bot publish``; record
this commit's results as a baseline or not; and says in one line why nothing was posted. The app
then does exactly that; nothing else in cml-bot decides it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cml_bot.context import CiContext

# Why GitLab's CI_JOB_TOKEN posts nothing: said before any request (here) and by the GitLab driver.
JOB_TOKEN_MESSAGE = (
    "CI_JOB_TOKEN cannot post merge request notes or uploads; set a project access token with api "
    "scope in the masked variable CML_BOT_TOKEN (report saved as a job artifact)"
)


@dataclass(frozen=True)
class Access:
    """What the run's credentials allow on the forge, as far as can be told before asking it."""

    can_write: bool
    why_not: str | None = None  # one line, when ``can_write`` is False


@dataclass(frozen=True)
class Request:
    """What the user asked for, from the command line."""

    dry_run: bool = False
    post: bool = True  # False: `--no-post`, the training step of a split job (no token there)
    record: bool | None = None  # None: record on pushes to the baseline branch
    publishing: bool = False  # `cml-bot publish`: a saved bundle, judged and posted here


@dataclass(frozen=True)
class Plan:
    post: bool  # post the comment and the status
    save_bundle: bool  # save the evaluation for `cml-bot publish`
    record: bool  # store this commit's results for later comparisons
    why_not_posted: str | None = None  # one line for the user when a CI run posts nothing


def plan(context: CiContext, asked: Request, access: Access, branch: str | None, baseline_branch: str | None) -> Plan:
    """Decide one run. ``branch`` is the branch being built (the CI's, or the checkout's locally);
    ``baseline_branch`` the base branch results are compared with (None for an exact comparison)."""
    on_baseline_push = not context.is_change and branch is not None and branch == baseline_branch
    record = asked.record if asked.record is not None else on_baseline_push
    if asked.dry_run or context.platform == "local":
        why = "dry run: nothing posted" if context.platform != "local" else None
        return Plan(post=False, save_bundle=False, record=record and not asked.publishing, why_not_posted=why)
    if not asked.post:
        # The token is not in this step: the publish step posts, and records, with it.
        return Plan(
            post=False,
            save_bundle=True,
            record=False,
            why_not_posted="--no-post: saved for `cml-bot publish` in a step with the token",
        )
    if not access.can_write:
        # Saved for a job that holds a write token (GitHub's workflow_run, a protected GitLab job).
        return Plan(post=False, save_bundle=not asked.publishing, record=False, why_not_posted=access.why_not)
    return Plan(post=True, save_bundle=False, record=record)


def access_for(context: CiContext, token_kind: str) -> Access:
    """What the token allows, known before any request. ``token_kind``: "write" (a token that
    should write), "read" (GitLab's CI_JOB_TOKEN), "none"."""
    forge = {"github": "GitHub", "gitlab": "GitLab", "bitbucket": "Bitbucket"}.get(context.platform, context.platform)
    if token_kind == "none" and context.platform == "bitbucket":
        return Access(
            False,
            "no Bitbucket token: set a repository access token in the secured variable CML_BOT_TOKEN "
            "(report saved as an artifact)",
        )
    if token_kind == "none":
        variable = "CML_BOT_TOKEN or GITHUB_TOKEN" if context.platform == "github" else "CML_BOT_TOKEN"
        return Access(False, f"no {forge} token ({variable}): the report is saved, not posted")
    if token_kind == "read":
        return Access(False, JOB_TOKEN_MESSAGE)
    if context.platform == "github" and context.is_fork and context.event_name == "pull_request":
        return Access(
            False,
            "a pull request from a fork gets a read-only token: the report is saved as a bundle for the "
            "trusted publish workflow (docs/github.md)",
        )
    return Access(True)
