"""Which environment variables may hold a forge or tracking-server credential (stdlib only: the CLI
imports it at start)."""

from __future__ import annotations

from collections.abc import Mapping

# Never shown, never written, never passed to the project's own commands.
TOKEN_VARIABLES = (
    "CML_BOT_TOKEN",
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "CI_JOB_TOKEN",
    "INPUT_GITHUB-TOKEN",
    "INPUT_GITHUB_TOKEN",
    # MLflow's client reads these (cml_bot.sources.mlflow); the project's commands never get them.
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "DATABRICKS_TOKEN",
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
