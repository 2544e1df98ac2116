"""DVC repositories: ``dvc pull`` through the same step runner as the pipeline, with the same
environment as the project's commands: no forge token (:func:`cml_bot.secrets.without_tokens`).
``dvc pull`` follows the change's own ``.dvc/config``, which can run commands (an S3 remote's
``configpath`` naming a profile with a ``credential_process``); the cloud credentials a remote
needs (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``, ...) stay."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cml_bot.config import Step
from cml_bot.errors import DataError
from cml_bot.secrets import Secrets, without_tokens

# ------------------------------------------------------------------------------------------------ DVC


def is_dvc_repo(root: Path) -> bool:
    return (root / ".dvc").is_dir()


def dvc_executable() -> str | None:
    """``dvc`` on PATH, else beside the running Python (an unactivated virtualenv)."""
    import sys

    found = shutil.which("dvc")
    if found:
        return found
    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def dvc_pull(
    root: Path,
    echo: Callable[[str], None] | None = None,
    *,
    args: Sequence[str] = (),
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run ``dvc pull [args]`` in ``root``, passing its output lines to ``echo``. It runs with
    ``env`` (None: ours) without the forge tokens; its output is scrubbed of ``env``'s secrets.

    Raises DataError when dvc is not installed or the pull fails (with dvc's last output line).
    """
    import shlex

    from cml_bot.pipeline import run_step

    exe = dvc_executable()
    if exe is None:
        raise DataError("dvc not installed: pip install dvc")
    command = " ".join(shlex.quote(part) for part in (exe, "pull", *args))
    full = os.environ if env is None else env
    step = Step(name="dvc pull", run=command)
    secrets = Secrets.from_env(full)
    result = run_step(step, root, env=without_tokens(full), echo=echo, timeout=timeout, secrets=secrets)
    if not result.ok:
        last = next((line for line in reversed(result.log_tail) if line.strip()), "")
        why = "timed out" if result.timed_out else f"exit {result.returncode}"
        raise DataError(f"dvc pull failed in {root} ({why}){': ' + last.strip() if last else ''}")
