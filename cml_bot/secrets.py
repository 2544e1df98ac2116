"""Which environment variables may hold a forge token (stdlib only: the CLI imports it at start)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Never shown, never written, never passed to the project's own commands.
TOKEN_VARIABLES = (
    "CML_BOT_TOKEN",
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "CI_JOB_TOKEN",
    "INPUT_GITHUB-TOKEN",
    "INPUT_GITHUB_TOKEN",
)


def scrub(text: str, env: Mapping[str, str]) -> str:
    """Replace any token value found in ``text`` with ``***`` (a library's message may echo one)."""
    for name in TOKEN_VARIABLES:
        value = env.get(name)
        if value and len(value) >= 8:
            text = text.replace(value, "***")
    return text


def without_tokens(env: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key not in TOKEN_VARIABLES}


class Secrets:
    """The secret values of this run, to be replaced in any text before it is shown or written.

    Minimal form (forge tokens by value); the trust-boundary work extends it with every secret-marked
    variable and the encoded forms of each value.
    """

    def __init__(self, values: frozenset[str]) -> None:
        self.values = values

    @classmethod
    def from_env(cls, env: Mapping[str, str], extra: Iterable[str] = ()) -> Secrets:
        found = {env[name] for name in TOKEN_VARIABLES if env.get(name)}
        found.update(value for value in extra if value)
        return cls(frozenset(value for value in found if len(value) >= 8))

    def scrub(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text
