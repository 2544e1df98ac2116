"""The includable GitLab CI template: valid for GitLab's schema, and its script runs cml-bot as documented."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "cml-bot.gitlab-ci.yml"


def load() -> dict[str, Any]:
    data = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_template_defines_a_base_job_and_a_merge_request_job() -> None:
    jobs = load()
    assert set(jobs) == {".cml-bot", "cml-bot"}
    base, job = jobs[".cml-bot"], jobs["cml-bot"]
    assert job["extends"] == ".cml-bot"
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert base["variables"]["CML_BOT_PIP_SPEC"].startswith("cml-bot==")  # pinned (tests/test_versions.py)
    assert base["variables"]["GIT_DEPTH"] == "0"
    assert any("$CML_BOT_PIP_SPEC" in line for line in base["before_script"])
    artifacts = base["artifacts"]
    assert artifacts["when"] == "always"
    assert artifacts["reports"] == {"junit": "cml-bot-junit.xml"}
    assert {"cml-bot-report/", "cml-bot-bundle/"} <= set(artifacts["paths"])


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"CML_BOT_COMMAND": "run", "CML_BOT_ARGS": ""}, ["run", "--junit", "cml-bot-junit.xml"]),
        ({"CML_BOT_COMMAND": "", "CML_BOT_ARGS": ""}, ["run", "--junit", "cml-bot-junit.xml"]),
        (
            {"CML_BOT_COMMAND": "report", "CML_BOT_ARGS": "--config ml/cml-bot.yaml --mode recreate"},
            ["report", "--junit", "cml-bot-junit.xml", "--config", "ml/cml-bot.yaml", "--mode", "recreate"],
        ),
    ],
)
def test_script_passes_the_variables_to_cml_bot(tmp_path: Path, variables: dict[str, str], expected: list[str]) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    stub = tmp_path / "bin" / "cml-bot"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n', encoding="utf-8")
    stub.chmod(0o755)
    (script,) = load()[".cml-bot"]["script"]
    env = {"PATH": f"{stub.parent}{os.pathsep}{os.environ.get('PATH', '')}", **variables}
    done = subprocess.run([bash, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout.splitlines() == expected


def test_template_validates_against_gitlabs_ci_schema() -> None:
    tool = Path(sys.executable).with_name("check-jsonschema")
    if not tool.exists():
        pytest.skip("check-jsonschema is not installed next to this Python")
    done = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.gitlab-ci", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
