"""The Action's own steps (action.yml) for `command: run`, executed with bash as the runner would,
against the fake GitHub: the training step holds no token (not in its environment, not in any
process alive while it runs), and the next step judges the saved results and posts them.

The runner's expression syntax is not reimplemented: each ``${{ ... }}`` the steps use is looked up
in a table below, and an expression the table does not know fails the test, so a change to
action.yml's expressions has to be looked at here too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import GitRepo
from fake_github import EVENTS, TOKEN, FakeGitHub, fake_github
from test_github_e2e import CONFIG, READ_ONLY, actions_env, outputs, pull_request_repo

__all__ = ["fake_github"]

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
STEPS = ACTION["runs"]["steps"]
# The training: what a hostile pipeline would try, reading the environment of every process it can see.
SNOOP = "cat /proc/[0-9]*/environ > seen-environ.txt 2>/dev/null; env >> seen-environ.txt; exit 0"


def _inputs(**given: str) -> dict[str, str]:
    values = {name: str(spec.get("default", "")) for name, spec in ACTION["inputs"].items()}
    values["github-token"] = TOKEN  # `${{ github.token }}`: the job's token
    values.update(given)
    return values


def _expression(text: str, inputs: dict[str, str], env: dict[str, str]) -> str:
    expression = text.strip()
    if expression.startswith("inputs."):
        return inputs[expression.removeprefix("inputs.")]
    if expression == "github.event.pull_request.head.sha || github.sha":
        event = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text(encoding="utf-8"))
        return str(event.get("pull_request", {}).get("head", {}).get("sha") or env.get("GITHUB_SHA", ""))
    raise AssertionError(f"action.yml uses an expression this test does not know: ${{{{ {expression} }}}}")


def _substitute(value: str, inputs: dict[str, str], env: dict[str, str]) -> str:
    while "${{" in value:
        start = value.index("${{")
        end = value.index("}}", start)
        value = value[:start] + _expression(value[start + 3 : end], inputs, env) + value[end + 2 :]
    return value


def _runs(step: dict[str, Any], inputs: dict[str, str], failed: bool) -> bool:
    condition = step.get("if")
    if condition is None:
        return not failed
    known = {
        "inputs.command == 'run'": inputs["command"] == "run" and not failed,
        "${{ !cancelled() }}": True,
    }
    if condition not in known:
        pytest.fail(f"action.yml has a condition this test does not know: {condition}")
    return known[condition]


def run_action(
    job_env: dict[str, str], workdir: Path, tmp_path: Path, **given: str
) -> list[tuple[str, subprocess.CompletedProcess[str]]]:
    """The steps after the install, in order, each in a fresh bash with the job's environment plus
    the step's own ``env:`` (as the runner builds it)."""
    inputs = _inputs(**given)
    venv = tmp_path / "runner-temp" / "cml-bot-venv" / "bin"
    venv.mkdir(parents=True, exist_ok=True)
    launcher = venv / "cml-bot"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cml_bot "$@"\n', encoding="utf-8")
    launcher.chmod(0o755)
    done: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    first = next(i for i, step in enumerate(STEPS) if step.get("id") == "cml-bot-run")
    for step in STEPS[first:]:
        if not _runs(step, inputs, failed=any(result.returncode for _, result in done)):
            continue
        env = {**job_env, "RUNNER_TEMP": str(tmp_path / "runner-temp")}
        env.update({key: _substitute(str(value), inputs, job_env) for key, value in step.get("env", {}).items()})
        env = {key: value for key, value in env.items() if value != ""} | {
            key: "" for key, value in step.get("env", {}).items() if value == ""
        }
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        done.append((step["name"], result))
    return done


def _pull_request(repo: GitRepo, accuracy: float = 0.85) -> None:
    pull_request_repo(repo, {"accuracy": accuracy})


def _project(repo: GitRepo, accuracy: float) -> None:
    _pull_request(repo, accuracy)
    repo.write("cml-bot.yaml", CONFIG + f"pipeline:\n  - name: train\n    run: {json.dumps(SNOOP)}\n")
    repo.write(".gitignore", "seen-environ.txt\ncml-bot-report/\ncml-bot-bundle/\n")
    repo.commit("feature: a pipeline")


def _job_env(fake: FakeGitHub, repo: GitRepo, tmp_path: Path, fork: bool = False) -> dict[str, str]:
    """A pull_request job on PR #2, whose head is the repository's checked-out commit."""
    head = repo.git("rev-parse", "HEAD").strip()
    payload = json.loads((EVENTS / "pull_request.opened.json").read_text(encoding="utf-8"))
    payload["pull_request"]["head"]["sha"] = head
    payload["pull_request"]["base"]["ref"] = "main"
    if fork:
        payload["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload), encoding="utf-8")
    fake.add_pull(2, head)
    isolation = {k: v for k, v in os.environ.items() if k.startswith("GIT_") or k == "HOME"}  # conftest's
    # The worst case: the workflow put the token in the job's environment too (GH_TOKEN).
    env = actions_env(
        fake, tmp_path, PATH=os.environ["PATH"], GH_TOKEN=TOKEN, GITHUB_EVENT_PATH=str(event), **isolation
    )
    (tmp_path / "github_output").write_text("", encoding="utf-8")
    return env


def test_the_training_step_holds_no_token_and_the_next_step_posts(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    _project(repo, 0.85)

    steps = run_action(_job_env(fake_github, repo, tmp_path), repo.root, tmp_path)

    names = [name for name, _ in steps]
    assert names == ["Run the pipeline (no token in this step)", "Post the report"]
    for name, result in steps:
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
    seen = (repo.root / "seen-environ.txt").read_text(encoding="utf-8", errors="replace")
    assert "GITHUB_ACTIONS=true" in seen  # the snoop did read the environments it could see
    assert TOKEN not in seen
    training = steps[0][1]
    assert TOKEN not in training.stdout + training.stderr
    [comment] = fake_github.comments_on(2)
    assert "0.85" in comment["body"] and comment["login"] == "cml-bot-user"
    assert [(s["sha"], s["state"]) for s in fake_github.statuses] == [
        (repo.git("rev-parse", "HEAD").strip(), "success")
    ]
    assert outputs(tmp_path)["verdict"] == "pass"
    summary = (tmp_path / "step_summary.md").read_text(encoding="utf-8")
    assert summary.count("<!-- cml-bot report") == 1  # written once, by the posting step
    assert outputs(tmp_path)["comment-url"].endswith(f"#issuecomment-{comment['id']}")


def test_a_regression_fails_the_posting_step_after_it_posted(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    _project(repo, 0.70)

    steps = run_action(_job_env(fake_github, repo, tmp_path), repo.root, tmp_path, **{"fail-on-regression": "true"})

    (_, training), (_, posting) = steps
    assert training.returncode == 0, training.stdout + training.stderr  # the verdict is not the training's to give
    assert posting.returncode == 1, posting.stdout + posting.stderr
    [comment] = fake_github.comments_on(2)
    assert "Regressed" in comment["body"]
    assert fake_github.statuses[-1]["state"] == "failure"


def test_a_failed_pipeline_is_still_posted(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    _pull_request(repo)
    repo.write("cml-bot.yaml", CONFIG + "pipeline:\n  - name: train\n    run: echo broken; exit 3\n")
    repo.commit("feature: a broken pipeline")

    steps = run_action(_job_env(fake_github, repo, tmp_path), repo.root, tmp_path)

    (_, training), (_, posting) = steps
    assert training.returncode == 1 and posting.returncode == 1, training.stdout + posting.stdout
    [comment] = fake_github.comments_on(2)
    assert "train" in comment["body"] and "exited with 3" in posting.stdout
    assert fake_github.statuses[-1]["state"] == "error"


def test_nothing_saved_means_nothing_posted(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    _pull_request(repo)
    repo.write("cml-bot.yaml", "thresholds: [not a mapping]\n")
    repo.commit("feature: a broken config")

    steps = run_action(_job_env(fake_github, repo, tmp_path), repo.root, tmp_path)

    (_, training), (_, posting) = steps
    assert training.returncode == 2 and training.stderr.count("\n") == 1, training.stderr
    assert posting.returncode == 0 and "nothing to post" in posting.stdout
    assert fake_github.log == []


def test_the_checkout_left_credentials_warning(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    _project(repo, 0.85)
    repo.git("config", "--local", "http.https://github.com/.extraheader", "AUTHORIZATION: basic eC1hY2Nlc3M=")

    (_, training), _ = run_action(_job_env(fake_github, repo, tmp_path), repo.root, tmp_path)

    assert "::warning title=cml-bot::actions/checkout left the token in .git/config" in training.stdout


def test_a_fork_pull_request_keeps_the_bundle_for_the_trusted_workflow(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    _project(repo, 0.85)

    (_, training), (_, posting) = run_action(_job_env(fake_github, repo, tmp_path, fork=True), repo.root, tmp_path)

    assert training.returncode == 0 and posting.returncode == 0, training.stdout + posting.stdout + posting.stderr
    assert "a pull request from a fork gets a read-only token" in posting.stdout
    assert (repo.root / "cml-bot-bundle" / "run.json").is_file()  # what the fork workflow uploads
    assert fake_github.comments_on(2) == [] and fake_github.statuses == []


def test_the_example_publish_workflow_never_lets_one_fork_cancel_another() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/examples/cml-bot-publish.yml").read_text(encoding="utf-8"))
    group = workflow["concurrency"]["group"]
    # Two forks may both push a branch named "main": the group must tell them apart.
    assert "github.event.workflow_run.head_repository.full_name" in group
    assert workflow["concurrency"]["cancel-in-progress"] is False
    for name in ("cml-bot.yml", "cml-bot-fork.yml", "cml-bot-publish.yml"):
        text = (ROOT / ".github/workflows/examples" / name).read_text(encoding="utf-8")
        checkouts = [
            s for job in yaml.safe_load(text)["jobs"].values() for s in job["steps"] if "checkout" in s.get("uses", "")
        ]
        assert checkouts and all(s["with"]["persist-credentials"] is False for s in checkouts), name


def test_a_read_only_token_in_the_posting_step_keeps_the_bundle(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    """A same-repository pull request in a workflow with `contents: read` (cml-bot-fork.yml): the
    posting step is refused, does not fail the job, and leaves the results for the upload."""
    _project(repo, 0.85)
    fake_github.add_token(READ_ONLY, "github-actions[bot]", type="Bot", can_write=False, can_read_user=False)

    (_, training), (_, posting) = run_action(
        _job_env(fake_github, repo, tmp_path), repo.root, tmp_path, **{"github-token": READ_ONLY}
    )

    assert training.returncode == 0 and posting.returncode == 0, posting.stdout + posting.stderr
    assert "the results stay in cml-bot-bundle for a trusted publish workflow" in posting.stdout
    assert (repo.root / "cml-bot-bundle" / "run.json").is_file()
    assert fake_github.comments_on(2) == []
    assert READ_ONLY not in posting.stdout + posting.stderr
