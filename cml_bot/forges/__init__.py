"""Where a report is posted: a thin driver per forge behind :class:`~cml_bot.forges.base.Forge`,
one HTTP client (:mod:`.http`) and one sticky-comment algorithm (:mod:`.sticky`).

:func:`connect` picks the driver for the CI context; the drivers (and PyGithub / python-gitlab,
which load slowly) are imported only when a run posts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from cml_bot.context import CiContext
from cml_bot.errors import CmlBotError
from cml_bot.forges.base import Change, Forge
from cml_bot.forges.sticky import CommentMode, Publication

__all__ = ["Change", "CommentMode", "Forge", "Publication", "connect", "token_kind"]


def connect(context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None] = time.sleep) -> Forge:
    """The driver for the forge this run is on (GitHub Actions, GitLab CI, Bitbucket Pipelines)."""
    if context.platform == "github":
        from cml_bot.forges.github import github_forge

        return github_forge(context, env, sleep=sleep)
    if context.platform == "gitlab":
        from cml_bot.forges.gitlab import gitlab_forge

        return gitlab_forge(context, env, sleep=sleep)
    if context.platform == "bitbucket":
        from cml_bot.forges.bitbucket import bitbucket_forge

        return bitbucket_forge(context, env, sleep=sleep)
    raise CmlBotError(f"no forge to post to on platform {context.platform!r}")


def token_kind(context: CiContext, env: Mapping[str, str]) -> str:
    """ "write", "read" (GitLab's job token) or "none": what the configured token is meant for,
    known before any request (each driver's own token rule, imported only for its platform)."""
    if context.platform == "github":
        from cml_bot.forges.github import github_token

        return "write" if github_token(env) else "none"
    if context.platform == "gitlab":
        from cml_bot.forges.gitlab import token_from_env

        kind = token_from_env(env)[1]
        return {"private": "write", "job": "read"}.get(kind, "none")
    if context.platform == "bitbucket":
        from cml_bot.forges.bitbucket import bitbucket_token

        return "write" if bitbucket_token(env) else "none"
    return "none"
