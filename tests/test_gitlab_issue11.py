"""Issue 11, GitLab side: the adapter against the documentation-built fake GitLab.

Each test states what GitLab's documentation makes the right outcome; each fails on the current
driver (strict xfail, with the defect named) and is expected to pass once the forge layer is
rewritten, at which point the mark must go. Driven through the public entry points (the CLI, or the
forge factory) so they survive the rewrite of the drivers' internals.
"""

from __future__ import annotations

import io
import json

import pytest
from conftest import GitRepo
from fake_gitlab import FakeGitLab
from gitlab_fixtures import MARKER, MR_IID, branch_env, ci_env, fake, merged_result_env, sleeps

from cml_bot.cli import Console, main
from cml_bot.context import gitlab_context
from cml_bot.forges.base import CommentMode
from cml_bot.forges.gitlab import gitlab_forge
from cml_bot.model import Verdict
from cml_bot.results import RunResults, to_json

__all__ = ["fake", "sleeps"]  # fixtures, re-exported for pytest

CONFIG = """\
title: GitLab model
metrics: [metrics.json]
plots:
  - path: train_log.csv
    x: epoch
    y: [loss]
    title: Loss per epoch
thresholds:
  accuracy: {max_drop: 0.01}
"""


def report(text: str) -> str:
    return f"{MARKER}\n## cml-bot report\n\n{text}\n"


def cli(args: list[str], repo: GitRepo, env: dict[str, str]) -> tuple[int, str]:
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


# -- statuses -------------------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="issue 11: statuses are sent without pipeline_id/ref; in a merged-results "
                                       "pipeline the status lands in a new external pipeline")
def test_merged_results_status_lands_in_the_running_pipeline(fake: FakeGitLab, sleeps: list[float]) -> None:
    fake.add_merge_request(5, sha="5" * 40, source_branch="five")  # no branch pipeline: merged results only
    env, pipeline = merged_result_env(fake, iid=5)
    forge = gitlab_forge(gitlab_context(env), env, sleep=sleeps.append)
    try:
        forge.set_status(Verdict.PASS, "accuracy 0.91", target_url=env["CI_PIPELINE_URL"])
    finally:
        forge.close()
    assert [s["pipeline_id"] for s in fake.statuses] == [pipeline.id]
    assert [p.source for p in fake.pipelines if p.source == "external"] == []


@pytest.mark.xfail(strict=True, reason="issue 11: a 409 on POST /statuses/:sha is not retried (the API docs say: "
                                       "retry the request)")
def test_a_409_on_the_status_is_retried(fake: FakeGitLab, sleeps: list[float]) -> None:
    fake.fail("POST", "/statuses/", status=409)
    env = ci_env(fake)
    forge = gitlab_forge(gitlab_context(env), env, sleep=sleeps.append)
    try:
        forge.set_status(Verdict.PASS, "ok", target_url=None)
    finally:
        forge.close()
    assert [s["status"] for s in fake.statuses] == ["success"]


# -- which merge request --------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="issue 11: a branch pipeline posts on the first open MR containing the "
                                       "commit, not the MR whose head it is")
def test_a_branch_pipeline_posts_on_the_merge_request_whose_head_is_the_commit(
    fake: FakeGitLab, sleeps: list[float]
) -> None:
    first, second = "c1" * 20, "c2" * 20
    fake.add_merge_request(8, sha=first, source_branch="step-1")
    fake.add_merge_request(9, sha=second, commits=[first, second], source_branch="step-2")  # stacked on step-1
    env, _ = branch_env(fake, first, "step-1")
    forge = gitlab_forge(gitlab_context(env), env, sleep=sleeps.append)
    try:
        forge.upsert_comment(report("x"), MARKER, CommentMode.UPDATE)
    finally:
        forge.close()
    assert (len(fake.marked_notes(8, MARKER)), len(fake.marked_notes(9, MARKER))) == (1, 0)


# -- tokens ---------------------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="issue 11: with only CI_JOB_TOKEN the recorded baselines are ignored, though "
                                       "the job token may read repository files (raw) through the API")
def test_the_job_token_reads_the_recorded_baseline(fake: FakeGitLab, repo: GitRepo) -> None:
    base, head = feature_repo(repo, commit_metrics=False)
    recorded = RunResults(sha=base, metrics={"accuracy": 0.80})
    fake.write_files("cml-bot-data", {f"records/{base}.json": to_json(recorded).encode()})
    fake.add_merge_request(MR_IID, sha=head)
    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base, CML_BOT_TOKEN=None)

    code, output = cli(["report"], repo, env)

    assert code == 0, output
    saved = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8")
    assert f"recorded results of the merge-base with main reported by the CI ({base[:10]})" in saved


@pytest.mark.xfail(strict=True, reason="issue 11: GITLAB_TOKEN: $CI_JOB_TOKEN is sent as PRIVATE-TOKEN (401) "
                                       "instead of being recognised as the job token")
def test_a_job_token_in_gitlab_token_is_recognised(fake: FakeGitLab, repo: GitRepo) -> None:
    base, head = feature_repo(repo)
    fake.add_merge_request(MR_IID, sha=head)
    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base, CML_BOT_TOKEN=None,
                 GITLAB_TOKEN=fake.job_token)

    code, output = cli(["report"], repo, env)

    assert code == 0, output
    assert "401" not in output
    assert [r.auth for r in fake.requests if r.auth == "job-in-private-token"] == []
    assert fake.job_token not in output


# -- uploads --------------------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="issue 11: every push re-uploads every image, identical or not")
def test_identical_images_are_not_uploaded_again_on_the_next_push(fake: FakeGitLab, repo: GitRepo) -> None:
    base, head = feature_repo(repo)
    fake.add_merge_request(MR_IID, sha=head)
    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base)
    assert cli(["report"], repo, env)[0] == 0
    first = len(fake.uploads)
    repo.write("README.md", "docs only\n")  # a push that changes no plot
    head2 = repo.commit("docs")
    fake.add_merge_request(MR_IID, sha=head2)

    code, output = cli(["report"], repo, {**env, "CI_COMMIT_SHA": head2})

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


@pytest.mark.xfail(strict=True, reason="issue 11: merged-results pipelines record CI_COMMIT_SHA (the merge commit) "
                                       "as the head: the report's Commit row shows it and the bundle is refused")
def test_merged_results_report_and_bundle_name_the_merge_request_head(fake: FakeGitLab, repo: GitRepo) -> None:
    base, head, tip, merge = merged_result_checkout(repo)
    fake.add_merge_request(MR_IID, sha=head)
    env, _ = merged_result_env(fake, merge_sha=merge, target_sha=tip, diff_base_sha=base, CML_BOT_TOKEN=None)

    code, output = cli(["report"], repo, env)  # job token only: the report goes to a bundle

    assert code == 0, output
    saved = json.loads((repo.root / "cml-bot-bundle" / "run.json").read_text(encoding="utf-8"))
    assert saved["head_sha"] == head
    report_md = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8")
    assert head[:12] in report_md and merge[:12] not in report_md

    trusted = {**env, "CML_BOT_TOKEN": fake.token, "CI_MERGE_REQUEST_IID": ""}
    bundle = str(repo.root / "cml-bot-bundle")
    code, output = cli(["publish", "--bundle", bundle, "--head-sha", env["CI_COMMIT_SHA"]], repo, trusted)

    assert code == 0, output  # docs/gitlab.md: publish --bundle cml-bot-bundle --head-sha "$CI_COMMIT_SHA"
    assert len(fake.marked_notes(MR_IID, MARKER)) == 1


def test_merged_results_run_posts_one_note_on_the_merge_request(fake: FakeGitLab, repo: GitRepo) -> None:
    """What already works in a merged-results pipeline: the note lands on the MR named by the CI."""
    base, head, tip, merge = merged_result_checkout(repo)
    fake.add_merge_request(MR_IID, sha=head)
    env, _ = merged_result_env(fake, merge_sha=merge, target_sha=tip, diff_base_sha=base)

    code, output = cli(["report"], repo, env)

    assert code == 0, output
    assert len(fake.marked_notes(MR_IID, MARKER)) == 1
