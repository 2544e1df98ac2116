"""The small interface every destination of a report implements.

The app renders a report once it knows where images live, so publishing is three steps:
``upload_images`` (name -> URL to use in markdown), ``upsert_comment`` (the one sticky comment,
found by its hidden marker) and ``set_status`` (the verdict as a commit status / check).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cml_bot.model import Image, Verdict


class CommentMode(str, enum.Enum):
    """How to treat an earlier comment carrying the same marker."""

    UPDATE = "update"  # edit it in place (default); create one if none exists
    NEW = "new"  # always add a new comment
    RECREATE = "recreate"  # delete the old one(s), then add a new comment at the bottom


@dataclass(frozen=True)
class Publication:
    """What publishing produced, for outputs and the CLI's closing line."""

    comment_url: str | None
    created: bool  # True when a new comment was made, False when one was updated


class Forge(Protocol):
    """A destination for reports. Implementations: local folder, GitHub, GitLab."""

    @property
    def comment_limit(self) -> int:
        """Largest comment body in characters the destination accepts."""
        ...

    def upload_images(self, images: Sequence[Image]) -> Mapping[str, str]:
        """Store the images privately; return image name -> URL (or relative path) for markdown."""
        ...

    def upsert_comment(self, body: str, marker: str, mode: CommentMode) -> Publication:
        """Post ``body`` as the one comment identified by ``marker`` (a line contained in ``body``)."""
        ...

    def set_status(self, verdict: Verdict, description: str, target_url: str | None) -> None:
        """Record the verdict on the head commit (commit status or check run)."""
        ...
