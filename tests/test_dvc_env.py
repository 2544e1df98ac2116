"""``dvc pull`` runs with the environment the project's commands get: no forge token."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cml_bot.data import dvc_pull


def test_dvc_pull_runs_without_the_forge_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dump = tmp_path / "env"
    stub = tmp_path / "bin" / "dvc"
    stub.parent.mkdir()
    stub.write_text(f"#!/bin/sh\nenv -0 > {dump}\necho pulled\n", encoding="utf-8")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    job_token = "glcbt-64_job0token0value0000"
    env = {
        "PATH": os.environ["PATH"],
        "GITHUB_TOKEN": "ghp_forge0token0value0000000000000000001",
        "CML_BOT_TOKEN": "ghp_forge0token0value0000000000000000002",
        "CI_JOB_TOKEN": job_token,
        "CI_REPOSITORY_URL": f"https://gitlab-ci-token:{job_token}@gitlab.example.com/g/p.git",
        "AWS_SECRET_ACCESS_KEY": "aws0secret0key0value0000",
        "GOOGLE_APPLICATION_CREDENTIALS": "/secrets/gcp.json",
        "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountKey=azure0key0value",
    }
    lines: list[str] = []
    dvc_pull(tmp_path, lines.append, env=env)
    entries = [entry.split("=", 1) for entry in dump.read_text(encoding="utf-8").split("\0") if "=" in entry]
    seen = dict(entries)
    assert not {"GITHUB_TOKEN", "CML_BOT_TOKEN", "CI_JOB_TOKEN", "CI_REPOSITORY_URL"} & set(seen)
    for name in ("AWS_SECRET_ACCESS_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_CONNECTION_STRING"):
        assert seen[name] == env[name]
    assert "pulled" in lines
