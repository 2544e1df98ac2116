"""The exceptions cml-bot raises for problems the user can fix.

Every module raises a subclass of :class:`CmlBotError`; the CLI turns it into one line on stderr
and the exception's exit code, never a traceback.
"""

from __future__ import annotations


class CmlBotError(Exception):
    """A failure caused by input, configuration or environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(CmlBotError):
    """cml-bot.yaml (or dvc.yaml) is missing, malformed or has a wrong value."""


class InputError(CmlBotError):
    """A metrics, params or plot file cannot be read or parsed."""


class DataError(CmlBotError):
    """Pinned data could not be pulled or verified."""


class SourceError(CmlBotError):
    """A metrics source (an MLflow tracking server) refused or failed a request."""


class ForgeError(CmlBotError):
    """GitHub or GitLab refused or failed a request after retries."""

    exit_code = 1


class ReadOnlyTokenError(ForgeError):
    """The token may read but not write (fork PRs, CI_JOB_TOKEN): the report goes to a bundle."""


class HeadMovedError(ForgeError):
    """The pull/merge request's head is no longer the commit the report was made for (a newer push):
    posting it would overwrite the newer run's report."""
