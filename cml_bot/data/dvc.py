"""DVC repositories: ``dvc pull`` through the same step runner as the pipeline."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cml_bot.config import Step
from cml_bot.errors import DataError

if TYPE_CHECKING:
    pass


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
) -> None:
    """Run ``dvc pull [args]`` in ``root``, passing its output lines to ``echo``.

    Raises DataError when dvc is not installed or the pull fails (with dvc's last output line).
    """
    import shlex

    from cml_bot.pipeline import run_step

    exe = dvc_executable()
    if exe is None:
        raise DataError("dvc not installed: pip install dvc")
    command = " ".join(shlex.quote(part) for part in (exe, "pull", *args))
    result = run_step(Step(name="dvc pull", run=command), root, echo=echo, timeout=timeout)
    if not result.ok:
        last = next((line for line in reversed(result.log_tail) if line.strip()), "")
        why = "timed out" if result.timed_out else f"exit {result.returncode}"
        raise DataError(f"dvc pull failed in {root} ({why}){': ' + last.strip() if last else ''}")
