"""The Bitbucket Pipelines example: valid for Bitbucket's schema, shown verbatim in docs/bitbucket.md,
and its script runs cml-bot as documented."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "bitbucket-pipelines.yml"
DOCS = ROOT / "docs" / "bitbucket.md"


def load() -> dict[str, Any]:
    data = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_docs_show_the_template_as_it_is() -> None:
    blocks = re.findall(r"^```yaml\n(.*?)^```$", DOCS.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert TEMPLATE.read_text(encoding="utf-8") in blocks


def test_pull_requests_report_and_main_records_with_one_step_definition() -> None:
    pipelines = load()["pipelines"]
    [pull_request] = pipelines["pull-requests"]["**"]
    [record] = pipelines["branches"]["main"]
    for step in (pull_request["step"], record["step"]):
        assert step["caches"] == ["pip"]
        assert step["artifacts"] == ["cml-bot-report/**", "cml-bot-bundle/**"]
        assert step["script"][1] == 'python -m pip install "${CML_BOT_PIP_SPEC:-cml-bot}"'
    assert pull_request["step"]["script"][-1] == "cml-bot ${CML_BOT_COMMAND:-run} ${CML_BOT_ARGS}"
    assert record["step"]["script"][-1] == "cml-bot ${CML_BOT_COMMAND:-run} --record ${CML_BOT_ARGS}"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, ["run"]),
        (
            {"CML_BOT_COMMAND": "report", "CML_BOT_ARGS": "--fail-on-regression --mode recreate"},
            ["report", "--fail-on-regression", "--mode", "recreate"],
        ),
    ],
)
def test_the_script_passes_the_variables_to_cml_bot(
    tmp_path: Path, variables: dict[str, str], expected: list[str]
) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    stub = tmp_path / "bin" / "cml-bot"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n', encoding="utf-8")
    stub.chmod(0o755)
    line = load()["pipelines"]["pull-requests"]["**"][0]["step"]["script"][-1]
    env = {"PATH": f"{stub.parent}{os.pathsep}{os.environ.get('PATH', '')}", **variables}
    done = subprocess.run([bash, "-c", line], env=env, capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout.splitlines() == expected


def test_the_template_validates_against_bitbuckets_schema() -> None:
    tool = Path(sys.executable).with_name("check-jsonschema")
    if not tool.exists():
        pytest.skip("check-jsonschema is not installed next to this Python")
    done = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.bitbucket-pipelines", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
