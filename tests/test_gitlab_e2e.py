"""End to end: ``cml_bot.cli.main`` in a GitLab merge-request pipeline, against the fake GitLab."""

from __future__ import annotations

import io
import json
from pathlib import Path

from conftest import GitRepo
from fake_gitlab import FakeGitLab
from gitlab_fixtures import MARKER, MR_IID, ci_env, fake, merged_result_env

from cml_bot.cli import Console, main
from cml_bot.forges.gitlab import JOB_TOKEN_MESSAGE
from cml_bot.results import RunResults, to_json

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
    """A merge request pipeline (detached: it runs on the head) for ``head``."""
    fake.add_merge_request(MR_IID, sha=head)
    pipeline = fake.add_pipeline(head, source="merge_request_event", merge_request_iid=MR_IID, event_type="detached")
    overrides = {"CI_PIPELINE_ID": str(pipeline.id), **overrides}
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
    env2 = pipeline_env(fake, base, head2)  # the push moves the merge request's head: a new pipeline

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
    assert "job summary" not in out + err and "workflow" not in out + err  # no GitHub wording on GitLab
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


# -- GitLab as documented: job tokens, uploads, merged-results pipelines ----------------------


def run_cli(args: list[str], repo: GitRepo, env: dict[str, str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], env={**env, "PATH": "/usr/bin:/bin"}, console=Console(out, err))
    return code, out.getvalue() + err.getvalue()


def feature_repo(repo: GitRepo, *, commit_metrics: bool = True) -> tuple[str, str]:
    """main (accuracy 0.80) and a feature branch (0.85) checked out; returns (merge-base, head)."""
    repo.write("cml-bot.yaml", CONFIG)
    repo.write("train_log.csv", "epoch,loss\n1,0.9\n2,0.5\n")
    if not commit_metrics:
        repo.write(".gitignore", "metrics.json\ncml-bot-report/\ncml-bot-bundle/\n")
    repo.write("metrics.json", {"accuracy": 0.80})
    base = repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("train.py", "lr = 0.05\n")
    repo.write("metrics.json", {"accuracy": 0.85})
    repo.write("train_log.csv", "epoch,loss\n1,0.8\n2,0.4\n")
    return base, repo.commit("feature: lower learning rate")


# -- tokens ---------------------------------------------------------------------------------------


def test_the_job_token_reads_the_recorded_baseline(fake: FakeGitLab, repo: GitRepo) -> None:
    base, head = feature_repo(repo, commit_metrics=False)
    recorded = RunResults(sha=base, metrics={"accuracy": 0.80})
    fake.write_files("cml-bot-data", {f"records/{base}.json": to_json(recorded).encode()})
    fake.add_merge_request(MR_IID, sha=head)
    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base, CML_BOT_TOKEN=None)

    code, output = run_cli(["report"], repo, env)

    assert code == 0, output
    saved = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8").replace("\u200b", "")
    assert f"recorded results of the merge-base with main ({base[:10]})" in saved  # read with the job token


def test_a_job_token_in_gitlab_token_is_recognised(fake: FakeGitLab, repo: GitRepo) -> None:
    base, head = feature_repo(repo)
    fake.add_merge_request(MR_IID, sha=head)
    env = ci_env(
        fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base, CML_BOT_TOKEN=None, GITLAB_TOKEN=fake.job_token
    )

    code, output = run_cli(["report"], repo, env)

    assert code == 0, output
    assert "401" not in output
    assert [r.auth for r in fake.requests if r.auth == "job-in-private-token"] == []
    assert fake.job_token not in output


# -- uploads --------------------------------------------------------------------------------------


def test_identical_images_are_not_uploaded_again_on_the_next_push(fake: FakeGitLab, repo: GitRepo) -> None:
    base, head = feature_repo(repo)
    fake.add_merge_request(MR_IID, sha=head)
    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base)
    assert run_cli(["report"], repo, env)[0] == 0
    first = len(fake.uploads)
    repo.write("README.md", "docs only\n")  # a push that changes no plot
    head2 = repo.commit("docs")
    fake.add_merge_request(MR_IID, sha=head2)

    code, output = run_cli(["report"], repo, {**env, "CI_COMMIT_SHA": head2})

    assert code == 0, output
    assert first >= 1 and len(fake.uploads) == first
    (note,) = fake.marked_notes(MR_IID, MARKER)
    assert all(f"]({u['url']})" in note["body"] for u in fake.uploads)


# -- merged-results pipelines end to end ----------------------------------------------------------


def merged_result_checkout(repo: GitRepo) -> tuple[str, str, str, str]:
    """A feature branch, main moving on, and the temporary merge commit checked out as the runner does."""
    base, head = feature_repo(repo)
    repo.git("checkout", "--quiet", "main")
    repo.write("model.py", "better = True\n")
    tip = repo.commit("main: another change")
    repo.git("checkout", "--quiet", "--detach", tip)
    repo.git("merge", "--quiet", "--no-ff", "--no-edit", "feature")
    return base, head, tip, repo.git("rev-parse", "HEAD")


def test_merged_results_report_and_bundle_name_the_merge_request_head(fake: FakeGitLab, repo: GitRepo) -> None:
    base, head, tip, merge = merged_result_checkout(repo)
    fake.add_merge_request(MR_IID, sha=head)
    env, _ = merged_result_env(fake, merge_sha=merge, target_sha=tip, diff_base_sha=base, CML_BOT_TOKEN=None)

    code, output = run_cli(["report"], repo, env)  # job token only: the report goes to a bundle

    assert code == 0, output
    saved = json.loads((repo.root / "cml-bot-bundle" / "run.json").read_text(encoding="utf-8"))
    assert saved["head_sha"] == head
    report_md = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8")
    assert head[:12] in report_md and merge[:12] not in report_md

    trusted = {**env, "CML_BOT_TOKEN": fake.token, "CI_MERGE_REQUEST_IID": ""}
    bundle = str(repo.root / "cml-bot-bundle")
    code, output = run_cli(["publish", "--bundle", bundle, "--head-sha", env["CI_COMMIT_SHA"]], repo, trusted)

    assert code == 0, output  # docs/gitlab.md: publish --bundle cml-bot-bundle --head-sha "$CI_COMMIT_SHA"
    assert len(fake.marked_notes(MR_IID, MARKER)) == 1


def test_merged_results_run_posts_one_note_on_the_merge_request(fake: FakeGitLab, repo: GitRepo) -> None:
    """What already works in a merged-results pipeline: the note lands on the MR named by the CI."""
    base, head, tip, merge = merged_result_checkout(repo)
    fake.add_merge_request(MR_IID, sha=head)
    env, _ = merged_result_env(fake, merge_sha=merge, target_sha=tip, diff_base_sha=base)

    code, output = run_cli(["report"], repo, env)

    assert code == 0, output
    assert len(fake.marked_notes(MR_IID, MARKER)) == 1


def test_verbose_after_the_command_as_cml_bot_args_passes_it(fake: FakeGitLab, repo: GitRepo) -> None:
    """The template runs `cml-bot run ... ${CML_BOT_ARGS}`: `--verbose` there must work."""
    base, head = merge_request_repo(repo)
    code, out, err = cli(["report", "--verbose"], repo, pipeline_env(fake, base, head))
    assert code == 0, out + err
    assert "GitLab: our notes are those by user" in err  # the details -v promises
