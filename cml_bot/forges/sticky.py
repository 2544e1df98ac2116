"""The ONE sticky-comment algorithm, used by every forge.

Which comment is ours: its FIRST line is exactly our marker (``<!-- cml-bot report (id: X) -->``)
AND its author is our identity (the token's user, or the bot the platform posts as). A comment that
quotes or pastes the marker further down, another bot's comment, a human's comment: never ours, never
edited, never deleted. Identity is never guessed ("any bot" is not an identity): when the driver
cannot tell who the token is, the first comment we create tells us (its author, from the forge's own
answer), and the run behaves as ``recreate`` for that once.

Modes: ``update`` edits the oldest of our comments in place (creating one if there is none) and
removes our duplicates; ``new`` always adds one; ``recreate`` deletes ours, then adds one at the bottom.

Losing an answer: creating is the one write that must not be repeated blindly. When the create may
have gone through (a dropped connection after sending, a 5xx), the driver's HTTP client asks
:func:`_adopt` before sending again: a comment of ours that was not there before and carries exactly
this body is the one we made.

Racing runs (two pushes in quick succession): each run lists the comments again after creating one.
The later run sees both; every run keeps the OLDEST of ours, gives it the body of the newest, and
deletes the rest, so all runs agree on the survivor and the thread ends with one comment.

A comment deleted between listing and editing (someone removed it meanwhile): the edit's 404 is
:class:`CommentGone`, and the run goes on as if it had not been listed: the next of ours is edited,
or, with none left, a new one is created (and settled) as a fresh run would.

Remembering the comment (optional, :class:`Remembering`): listing every comment costs one request
per 100 of them. A driver with a place it reads anyway (GitHub: the assets branch, read for the
images) may remember which comment is the report's. An update then fetches that one comment and
edits it, only when it passes the same :func:`is_ours` test as a listed one (the exact first line, our
identity); the driver's own check comes first (the comment is in this thread). A remembered
comment is hostile input, and any doubt (nothing remembered, gone, not ours,
deleted before the edit) goes the listing's way above. After the listing decided (update), or a
create was settled (update, recreate), the driver is told the survivor, so racing runs remember the
same comment; ``new`` makes it forget, so that the next update lists and collapses the extra comments.
The fast path does not see a duplicate left by a run that died between creating and settling while
another run was creating too; the next listing (any doubt, recreate) removes it.

GitHub implements it (a file on the assets branch, whose listing the images need anyway). GitLab and
Bitbucket do not: they read no such place in a run (GitLab finds its earlier uploads in the notes the
listing reads; Bitbucket's Downloads are written, never listed), so remembering would add requests
to every run where the listing is one page, to save some only on long threads.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cml_bot.errors import ForgeError

if TYPE_CHECKING:
    from cml_bot.forges.http import HttpError

log = logging.getLogger(__name__)


class CommentMode(str, enum.Enum):
    """How to treat an earlier comment carrying the same marker."""

    UPDATE = "update"  # edit it in place (default); create one if none exists
    NEW = "new"  # always add a new comment
    RECREATE = "recreate"  # delete the old one(s), then add a new comment at the bottom


@dataclass(frozen=True)
class Comment:
    """A comment as a driver reads it. ``author`` is the forge's stable identity of its writer
    (GitHub login, GitLab user id, Bitbucket account uuid), compared with the thread's identity."""

    id: str
    body: str
    author: str
    url: str | None = None


@dataclass(frozen=True)
class Publication:
    """What posting produced, for outputs and the CLI's closing line."""

    comment_url: str | None
    created: bool  # True when a new comment was made, False when one was updated


class Thread(Protocol):
    """The comments of one pull/merge request, as a driver exposes them."""

    def identity(self) -> str | None:
        """Our author identity (see :class:`Comment`), or None when the token cannot tell."""
        ...

    def comments(self) -> Sequence[Comment]:
        """Every comment (all pages), oldest first."""
        ...

    def create(self, body: str, confirm: Callable[[], Comment | None]) -> Comment:
        """Add a comment; after a failure that may have been applied, ``confirm()`` looks for it
        before the driver sends it again (see :meth:`cml_bot.forges.http.JsonClient.create`)."""
        ...

    def edit(self, comment: Comment, body: str) -> Comment: ...

    def delete(self, comment: Comment) -> None:
        """Remove ``comment``; one that is already gone is not an error."""
        ...


@runtime_checkable
class Remembering(Thread, Protocol):
    """A :class:`Thread` that can remember its report comment between runs (see the module doc)."""

    def recall(self, marker: str) -> Comment | None:
        """The comment remembered for ``marker``, as the forge shows it now; None when none is
        remembered, it is gone, or it is not in this thread. Never raises for a remembered id the
        forge does not know."""
        ...

    def remember(self, marker: str, comment: Comment | None) -> None:
        """Remember ``comment`` for ``marker`` (None: forget it). Best effort: a failure is logged,
        never raised (the comment is posted; the next run lists instead)."""
        ...


def first_line(body: str) -> str:
    return body.split("\n", 1)[0].rstrip("\r")


def is_ours(comment: Comment, marker: str, identity: str | None) -> bool:
    return identity is not None and comment.author == identity and first_line(comment.body) == marker


def upsert(thread: Thread, body: str, marker: str, mode: CommentMode) -> Publication:
    """Post ``body`` (whose first line is ``marker``) as the one comment of this report."""
    if first_line(body) != marker:
        raise ValueError("the comment body must start with the marker line")
    mode = CommentMode(mode)
    me = thread.identity()
    if me is None:
        log.info("the token's identity is unknown: posting a new comment and learning it from the answer")
    memory = thread if isinstance(thread, Remembering) else None
    if mode is CommentMode.UPDATE and memory is not None and me is not None:
        remembered = _update_remembered(memory, body, marker, me)
        if remembered is not None:
            return remembered
    everything = list(thread.comments())
    ours = [c for c in everything if is_ours(c, marker, me)]
    if mode is CommentMode.UPDATE:
        for index, listed in enumerate(ours):
            keep = _edited(thread, listed, body)
            if keep is None:  # deleted meanwhile: the next of ours
                continue
            _delete_all(thread, ours[index + 1 :])
            if memory is not None:
                memory.remember(marker, keep)
            return Publication(keep.url, created=False)
    if mode is CommentMode.RECREATE:
        _delete_all(thread, ours)
    known = {c.id for c in everything}
    created = thread.create(body, lambda: _adopt(thread, marker, me, known, body))
    if mode is CommentMode.NEW:
        if memory is not None:
            memory.remember(marker, None)
        return Publication(created.url, created=True)
    survivor, publication = _settle(thread, marker, created)
    if memory is not None:
        memory.remember(marker, survivor)
    return publication


def _update_remembered(memory: Remembering, body: str, marker: str, me: str) -> Publication | None:
    """Edit the remembered comment when it is ours (the listing's rule); None on any doubt."""
    comment = memory.recall(marker)
    if comment is None:
        return None
    if not is_ours(comment, marker, me):
        log.info("the remembered comment %s is not this report's comment by %s; listing the comments", comment.id, me)
        return None
    edited = _edited(memory, comment, body)
    return None if edited is None else Publication(edited.url, created=False)  # gone: list them


def _adopt(thread: Thread, marker: str, me: str | None, known: Collection[str], body: str) -> Comment | None:
    """The comment our lost create made, if it is there: new since we listed, ours, this body."""
    for comment in thread.comments():
        if comment.id in known or comment.body != body or first_line(comment.body) != marker:
            continue
        if me is None or comment.author == me:
            return comment
    return None


def _settle(thread: Thread, marker: str, created: Comment) -> tuple[Comment, Publication]:
    """After creating: of all our comments keep the oldest with the newest body (see the module doc).
    Returns the survivor and what was published."""
    me = created.author
    ours = [c for c in thread.comments() if is_ours(c, marker, me)]
    if created.id not in {c.id for c in ours}:
        ours.append(created)  # a listing that lags behind our own write
    while len(ours) > 1:
        keep, newest = ours[0], ours[-1]
        log.info("%d comments carry this report's marker; keeping the oldest (%s)", len(ours), keep.id)
        edited = _edited(thread, keep, newest.body)
        if edited is None:  # deleted meanwhile: the next oldest is the survivor
            ours = ours[1:]
            continue
        _delete_all(thread, ours[1:])
        return edited, Publication(edited.url, created=edited.id == created.id)
    return created, Publication(created.url, created=True)


def _edited(thread: Thread, comment: Comment, body: str) -> Comment | None:
    """``comment`` with ``body`` (edited unless it has it already), or None when it was deleted
    since it was listed or recalled (the edit's 404)."""
    if comment.body == body:
        return comment
    try:
        return thread.edit(comment, body)
    except CommentGone:
        log.info("comment %s was deleted meanwhile", comment.id)
        return None


def _delete_all(thread: Thread, comments: Sequence[Comment]) -> None:
    for comment in comments:
        thread.delete(comment)


class EditRefused(ForgeError):
    """The forge refused to edit or delete a comment we wrote (403): a permissions problem to fix,
    never a reason to fall back to something else."""


class CommentGone(ForgeError):
    """The comment to edit is not there any more (404: deleted since it was listed)."""


def edit_refusal(exc: HttpError, what: str, fix: str = "") -> ForgeError:
    """A 403 on editing or deleting our own comment is :class:`EditRefused` (``what`` names the
    attempt, ``fix`` may say what the token needs); a 404 is :class:`CommentGone`; any other error is
    unchanged (a rate limit the retries did not outlast, too: not a permission to fix)."""
    from cml_bot.forges.http import RateLimitedError

    if exc.status == 403 and not isinstance(exc, RateLimitedError):
        return EditRefused(f"{what} ({exc.message}){fix}")
    if exc.status == 404:
        return CommentGone(f"{what}: it is gone ({exc.message})")
    return exc
