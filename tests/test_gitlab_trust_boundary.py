"""GitLab's side of the trust boundary, through ``cml_bot.cli.main`` against the fake GitLab: a
tampered bundle cannot put links in the trusted job's note, and the note speaks of merge requests."""

from __future__ import annotations

import io
import json

from conftest import GitRepo
from fake_gitlab import FakeGitLab
from gitlab_fixtures import MARKER, MR_IID, ci_env, fake

from cml_bot.cli import Console, main

__all__ = ["fake"]  # the fixture, imported for pytest

# What a fork writes into its bundle's facts: rows of "Run facts" it chose, label and URL.
PLANTED = {
    "link:MLflow run x": "https://gitlab.example/victim-group/victim-project/-/issues/1",
    "link:@all see": "https://gitlab.example/victim-group/victim-project/-/merge_requests/2",
    "link:y": "http://evil.example/@all",
}


def cli(args: list[str], repo: GitRepo, env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], env=env, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def merge_request(fake: FakeGitLab, repo: GitRepo) -> tuple[str, str, dict[str, str]]:
    """main at 0.80, the merge request's head at 0.85; (base, head, the pipeline's variables)."""
    repo.write("cml-bot.yaml", "title: T\nmetrics: [metrics.json]\n")
    repo.write("metrics.json", {"acc": 0.8})
    base = repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"acc": 0.85})
    head = repo.commit("feature")
    fake.add_merge_request(MR_IID, sha=head)
    pipeline = fake.add_pipeline(head, source="merge_request_event", merge_request_iid=MR_IID, event_type="detached")
    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base, CI_PIPELINE_ID=str(pipeline.id))
    env["PATH"] = "/usr/bin:/bin"
    return base, head, env


def test_a_tampered_bundle_puts_no_link_in_the_published_note(fake: FakeGitLab, repo: GitRepo) -> None:
    _, head, env = merge_request(fake, repo)
    assert cli(["report"], repo, {**env, "CML_BOT_TOKEN": ""})[0] == 0  # job token only: a bundle
    bundle = repo.root / "cml-bot-bundle"
    document = json.loads((bundle / "run.json").read_text(encoding="utf-8"))
    document["head"]["facts"] = {**document["head"]["facts"], **PLANTED, "kept": "not a link"}
    (bundle / "run.json").write_text(json.dumps(document), encoding="utf-8")

    trusted = {**env, "CI_MERGE_REQUEST_IID": ""}  # a later job of the target project
    code, out, err = cli(["publish", "--bundle", str(bundle), "--head-sha", head], repo, trusted)

    assert code == 0, out + err
    [note] = fake.marked_notes(MR_IID, MARKER)
    body = note["body"]
    assert "acc" in body and "0.85" in body  # the bundle's metrics were published
    for label, url in PLANTED.items():
        assert url not in body and url.split("://")[1] not in body, url
        assert label.removeprefix("link:").replace("@", "@\u200b") + " (this change)" not in body, label
    assert "victim" not in body and "evil" not in body


def test_the_base_branch_is_the_target_of_the_merge_request(fake: FakeGitLab, repo: GitRepo) -> None:
    _, _, env = merge_request(fake, repo)

    code, out, err = cli(["report"], repo, env)

    assert code == 0, out + err
    [note] = fake.marked_notes(MR_IID, MARKER)
    assert "the target branch of the merge request" in note["body"]
    assert "pull request" not in note["body"]
