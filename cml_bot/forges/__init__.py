"""Where a report goes: GitHub, GitLab or a local folder, behind the :class:`Forge` protocol."""

from cml_bot.forges.base import CommentMode, Forge, Publication

__all__ = ["CommentMode", "Forge", "Publication"]
