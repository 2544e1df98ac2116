"""The small interface every forge driver implements (GitHub, GitLab, Bitbucket).

A driver is thin: it knows its forge's endpoints, its token rules and its documented quirks, and
sends every request through the shared :class:`~cml_bot.forges.http.JsonClient` (one retry policy).
What to do with comments is decided once, in :mod:`cml_bot.forges.sticky`; what a run does, in
:mod:`cml_bot.plan`; the app composes them. Publishing a report is:

1. ``change()``: the pull/merge request this run reports on (the one whose head is the commit);
2. ``verify_head(sha)`` when the report was computed elsewhere (a bundle): refuse unless the
   request's head is still that commit;
3. ``upload_images(change, images)``: image name -> URL usable in the comment;
4. ``thread(change)``: the comments, for :func:`cml_bot.forges.sticky.upsert`;
5. ``set_status(...)``: the verdict on the head commit.

``result_store(branch)`` gives the recorded results of the base branch (a data branch on the forge),
``merge_base(...)`` the merge-base when the clone is too shallow to tell.

A forge with more to show than a status (Bitbucket's Code Insights) also implements
:class:`CodeInsights`; the app checks for it after setting the status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cml_bot.baseline import ResultStore
from cml_bot.errors import ForgeError, HeadMovedError, ReadOnlyTokenError
from cml_bot.forges.sticky import CommentMode, Publication, Thread
from cml_bot.model import Image, Verdict
from cml_bot.report import Flavour, Report

if TYPE_CHECKING:
    from cml_bot.forges.http import HttpError

__all__ = ["FULL_SHA", "Change", "CodeInsights", "CommentMode", "Flavour", "Forge", "Publication", "Thread"]

# A full commit id as the forges' APIs spell it: SHA-1 or SHA-256, lower-case hex. An answer's sha is
# checked against it before it is used in a path or a link (a hostile answer could name anything).
FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class Change:
    """A pull request (GitHub) or merge request (GitLab): its number / iid and head commit."""

    number: int
    head_sha: str | None = None  # as the forge reported it; None when not asked


class Forge(Protocol):
    @property
    def name(self) -> str:
        """ "GitHub", "GitLab": how messages name the forge."""
        ...

    @property
    def comment_limit(self) -> int:
        """Largest comment body in characters the forge accepts."""
        ...

    @property
    def full_report_hint(self) -> str:
        """Where the untrimmed report is on this forge, for the footer of a trimmed comment."""
        ...

    @property
    def flavour(self) -> Flavour:
        """The markdown the forge renders comments with (the report is rendered for it)."""
        ...

    def change(self) -> Change | None:
        """The open pull/merge request whose head is this run's commit; None when there is none."""
        ...

    def verify_head(self, change: Change, sha: str) -> None:
        """Raise :class:`~cml_bot.errors.HeadMovedError` unless ``change``'s head commit is ``sha``
        (asked from the forge now; see :func:`check_head`)."""
        ...

    def upload_images(self, change: Change | None, images: Sequence[Image]) -> Mapping[str, str]:
        """Store the images where the comment's readers (and only they) can see them; name -> URL."""
        ...

    def thread(self, change: Change) -> Thread: ...

    def set_status(self, verdict: Verdict, description: str, target_url: str | None) -> None:
        """Record the verdict on the head commit (a commit status named ``cml-bot``)."""
        ...

    def result_store(self, branch: str) -> ResultStore: ...

    def merge_base(self, base_ref: str, head_sha: str) -> str | None:
        """The merge-base of ``head_sha`` and branch ``base_ref`` from the forge; None if it cannot tell."""
        ...


@runtime_checkable
class CodeInsights(Protocol):
    """A forge that shows a report beside the pull request (Bitbucket's Code Insights): the
    verdict, headline metrics and one annotation per failed gate, on the head commit."""

    def code_insights_pending(self, title: str, report_id: str, link: str | None) -> None:
        """Show that the report is being made (before the pipeline runs)."""
        ...

    def code_insights(self, report: Report, link: str | None) -> None: ...


def check_head(forge: str, change: str, actual: object, sha: str, same: bool | None = None) -> None:
    """Refuse to post when the pull/merge request's head (``actual``, from the forge now) is not the
    commit the report was made for. ``same`` overrides the plain comparison (abbreviated shas)."""
    if not (actual == sha if same is None else same):
        raise HeadMovedError(
            f"{forge}: {change} head is {str(actual)[:12]}, not {sha[:12]}; refusing to post a report made for "
            "another commit"
        )


# GitHub's answer to a comment on a locked conversation (403; observed in renovatebot/renovate#6215,
# documentation_url help.github.com/articles/locking-conversations): not a token without permission.
LOCKED_TEXT = "because issue is locked"


def write_refusal(exc: HttpError, what: str) -> ForgeError:
    """A write's 403 that means the token may not ``what`` here (a fork's read-only token, a missing
    scope) is :class:`ReadOnlyTokenError`, for which the report goes to a bundle. A 403 for another
    reason is a failure to show, never a bundle: a rate limit the client's retries did not outlast (a
    403 with ``Retry-After``, ``x-ratelimit-remaining: 0`` or a "rate limit" message) or a locked
    conversation. Any other error is unchanged."""
    from cml_bot.forges.http import HttpError, RateLimitedError

    if exc.status != 403 or isinstance(exc, RateLimitedError):
        return exc
    if LOCKED_TEXT in exc.message.lower():
        return HttpError(f"{exc.message} (the conversation is locked: unlock it to let cml-bot {what})", 403)
    return ReadOnlyTokenError(f"{exc.message} (the token may not {what})")
