"""End to end: ``cml_bot.cli.main`` in a GitLab merge-request pipeline, against the fake GitLab."""

from __future__ import annotations

import io
import json
from pathlib import Path

from conftest import GitRepo
from fake_gitlab import FakeGitLab
from gitlab_fixtures import MARKER, MR_IID, ci_env, fake

from cml_bot.cli import Console, main
from cml_bot.forges.gitlab import JOB_TOKEN_MESSAGE

__all__ = ["fake"]  # fixture, re-exported for pytest

CONFIG = """\
title: GitLab model
pipeline:
  - name: train
    run: "echo training"
metrics: [metrics.json]
params: [params.yaml]
plots:
  - path: train_log.csv
    x: epoch
    y: [loss]
    title: Loss per epoch
thresholds:
  accuracy: {max_drop: 0.01}
"""


def merge_request_repo(repo: GitRepo) -> tuple[str, str]:
    """main with accuracy 0.80, and a feature branch at 0.85; returns (merge-base sha, head sha)."""
    repo.write("cml-bot.yaml", CONFIG)
    repo.write("metrics.json", {"accuracy": 0.80})
    repo.write("params.yaml", "lr: 0.1\n")
    repo.write("train_log.csv", "epoch,loss\n1,0.9\n2,0.5\n")
    base = repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.85})
    repo.write("params.yaml", "lr: 0.05\n")
    repo.write("train_log.csv", "epoch,loss\n1,0.8\n2,0.4\n3,0.3\n")
    return base, repo.commit("feature: lower learning rate")


def cli(args: list[str], repo: GitRepo, env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], env=env, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def pipeline_env(fake: FakeGitLab, base: str, head: str, **overrides: str | None) -> dict[str, str]:
    fake.add_merge_request(MR_IID, sha=head)
    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base, **overrides)
    env["PATH"] = "/usr/bin:/bin"
    return env


def test_first_post_then_update_in_merge_request_pipelines(fake: FakeGitLab, repo: GitRepo, tmp_path: Path) -> None:
    base, head = merge_request_repo(repo)
    env = pipeline_env(fake, base, head)
    junit = tmp_path / "cml-bot-junit.xml"

    code, out, err = cli(["run", "--junit", str(junit)], repo, env)

    assert code == 0, out + err
    notes = fake.marked_notes(MR_IID, MARKER)
    assert len(notes) == 1
    assert notes[0]["author"]["id"] == fake.bot.id
    body = notes[0]["body"]
    assert body.count(MARKER) == 1
    uploads = fake.uploads
    assert len(uploads) >= 1
    assert all(f"]({u['url']})" in body for u in uploads)  # images linked by the relative upload url
    assert "0.85" in body
    note_url = f"{fake.web_url}/-/merge_requests/{MR_IID}#note_{notes[0]['id']}"
    assert f"comment posted: {note_url}" in out
    assert [(s["sha"], s["name"], s["status"], s["target_url"]) for s in fake.statuses] == [
        (head, "cml-bot", "success", env["CI_PIPELINE_URL"])
    ]
    assert junit.is_file() and "<testsuite" in junit.read_text(encoding="utf-8")

    repo.write("metrics.json", {"accuracy": 0.70})
    head2 = repo.commit("feature: a worse model")
    env2 = {**env, "CI_COMMIT_SHA": head2}
    fake.add_merge_request(MR_IID, sha=head2)  # the push moves the merge request's head

    code, out, err = cli(["report"], repo, env2)

    assert code == 0, out + err
    notes = fake.marked_notes(MR_IID, MARKER)
    assert len(notes) == 1
    assert "0.7" in notes[0]["body"] and notes[0]["body"] != body
    assert f"comment updated: {note_url}" in out
    assert fake.count("POST", rf"/merge_requests/{MR_IID}/notes$") == 1
    assert [(s["sha"], s["status"]) for s in fake.statuses][-1] == (head2, "failed")
    for secret in (fake.token, fake.job_token):
        assert secret not in out + err


def test_job_token_only_saves_the_report_as_an_artifact_and_exits_0(fake: FakeGitLab, repo: GitRepo) -> None:
    base, head = merge_request_repo(repo)
    env = pipeline_env(fake, base, head, CML_BOT_TOKEN=None)

    code, out, err = cli(["report"], repo, env)

    assert code == 0, out + err
    assert JOB_TOKEN_MESSAGE in out + err
    assert sum(line.count("CI_JOB_TOKEN cannot post") for line in (out + err).splitlines()) == 1
    assert (repo.root / "cml-bot-report" / "report.md").is_file()
    bundle = repo.root / "cml-bot-bundle"
    saved = json.loads((bundle / "run.json").read_text(encoding="utf-8"))
    assert (saved["platform"], saved["change_number"], saved["head_sha"]) == ("gitlab", MR_IID, head)
    assert saved["head"]["metrics"] and saved["base"]["metrics"]  # data to render later, not markdown
    # the job token only read (the recorded baselines); it attempted no write
    assert {r.method for r in fake.requests} <= {"GET"} and {r.auth for r in fake.requests} <= {"job"}
    assert fake.job_token not in out + err

    # Asked to, the same run fails the job instead.
    code, out, err = cli(["report", "--fail-if-not-posted"], repo, env)
    assert code == 1, out + err
    assert JOB_TOKEN_MESSAGE in out + err


def test_a_saved_bundle_is_published_later_with_a_real_token(fake: FakeGitLab, repo: GitRepo) -> None:
    base, head = merge_request_repo(repo)
    env = pipeline_env(fake, base, head, CML_BOT_TOKEN=None)
    assert cli(["report"], repo, env)[0] == 0
    bundle = repo.root / "cml-bot-bundle"
    trusted = {**pipeline_env(fake, base, head), "CI_MERGE_REQUEST_IID": ""}

    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["publish", "--bundle", str(bundle), "--head-sha", head, "-C", str(repo.root)],
        env=trusted,
        console=Console(out, err),
    )

    assert code == 0, out.getvalue() + err.getvalue()
    (note,) = fake.marked_notes(MR_IID, MARKER)
    assert [u["url"] for u in fake.uploads] and all(f"]({u['url']})" in note["body"] for u in fake.uploads)
    assert [(s["sha"], s["status"]) for s in fake.statuses] == [(head, "success")]
    assert f"#note_{note['id']}" in out.getvalue()
