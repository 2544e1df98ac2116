"""End to end: ``cml_bot.cli.main`` in a GitHub Actions pull_request job, against the fake GitHub."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from conftest import GitRepo
from fake_github import EVENTS, HEAD_SHA, TOKEN, FakeGitHub, fake_github, github_env

from cml_bot.cli import Console, main

__all__ = ["fake_github"]  # the fixture, imported for pytest

MARKER = "<!-- cml-bot report (id: default) -->"
READ_ONLY = "ghs_FAKE0FORK0READONLY0token0secret000"
CONFIG = """\
title: GitHub model
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


def pull_request_repo(repo: GitRepo, metrics: dict[str, object] | None = None) -> None:
    """main with accuracy 0.80, a feature branch checked out at 0.85 (the payload's PR #2)."""
    repo.write("cml-bot.yaml", CONFIG)
    repo.write("metrics.json", {"accuracy": 0.80})
    repo.write("params.yaml", "lr: 0.1\n")
    repo.write("train_log.csv", "epoch,loss\n1,0.9\n2,0.5\n")
    repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "changes")
    repo.write("metrics.json", metrics or {"accuracy": 0.85})
    repo.write("params.yaml", "lr: 0.05\n")
    repo.write("train_log.csv", "epoch,loss\n1,0.8\n2,0.4\n3,0.3\n")
    repo.commit("feature: lower learning rate")


def actions_env(fake: FakeGitHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = github_env(
        fake,
        "pull_request.opened",
        GITHUB_OUTPUT=str(tmp_path / "github_output"),
        GITHUB_STEP_SUMMARY=str(tmp_path / "step_summary.md"),
        PATH="/usr/bin:/bin",
    )
    env.update(extra)
    return env


def cli(args: list[str], env: dict[str, str], repo: GitRepo | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    where = ["-C", str(repo.root)] if repo is not None else []
    code = main([*args, *where], env=env, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def outputs(tmp_path: Path) -> dict[str, str]:
    """``$GITHUB_OUTPUT`` as the runner reads it: ``name=value`` or ``name<<DELIM`` ... ``DELIM``."""
    lines = iter((tmp_path / "github_output").read_text(encoding="utf-8").splitlines())
    found = {}
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value = []
            for inner in lines:
                if inner == delimiter:
                    break
                value.append(inner)
            found[name] = "\n".join(value)
        else:
            name, found[name] = line.split("=", 1)
    return found


def everything_written(*roots: Path) -> str:
    """All text files under the folders (report, bundle, summary, outputs), for leak checks."""
    texts = []
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and ".git" not in path.parts:
                texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def test_first_post_then_update_in_place(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    pull_request_repo(repo)
    env = actions_env(fake_github, tmp_path)

    code, out, err = cli(["report", "--base", "main"], env, repo)

    assert code == 0, out + err
    [comment] = fake_github.comments_on(2)
    body = comment["body"]
    assert body.count(MARKER) == 1 and "0.85" in body
    assert comment["login"] == "cml-bot-user"
    # the plot lives on the assets branch, linked by a commit-pinned raw URL; beside it, the file
    # naming the comment for the next run (its id and author)
    assets = fake_github.refs["refs/heads/cml-bot-assets"]
    files = fake_github.commit_files(assets)
    plots = {path for path in files if path.startswith("pr-2/ec26c3e/")}
    [hint] = set(files) - plots
    assert plots and re.fullmatch(rf"pr-2/\.comment-[0-9a-f]{{12}}-{comment['id']}", hint)
    assert files[hint] == f"cml-bot comment {comment['id']} by cml-bot-user\n".encode()
    for path in plots:
        [pinned] = re.findall(
            rf"\]\(https://github.com/Codertocat/Hello-World/raw/(\w{{40}})/{re.escape(path)}\)", body
        )
        assert fake_github.commit_files(pinned)[path] == files[path]
    url = f"https://github.com/Codertocat/Hello-World/pull/2#issuecomment-{comment['id']}"
    assert f"comment posted: {url}" in out
    assert TOKEN not in out and "::add-mask::" not in out  # the runner masks what it injects
    assert [(s["sha"], s["context"], s["state"], s["target_url"]) for s in fake_github.statuses] == [
        (HEAD_SHA, "cml-bot", "success", "https://github.com/Codertocat/Hello-World/actions/runs/42")
    ]
    assert outputs(tmp_path)["verdict"] == "pass"
    assert outputs(tmp_path)["comment-url"] == url
    assert Path(outputs(tmp_path)["report-path"]).is_file()
    summary = (tmp_path / "step_summary.md").read_text(encoding="utf-8")
    assert MARKER in summary
    # Each copy's last line is true of where it is shown.
    assert body.endswith("This comment is updated on every push.</sub>\n")
    assert summary.endswith("<sub>Written by cml-bot for this job.</sub>\n")
    folder_copy = Path(outputs(tmp_path)["report-path"]).read_text(encoding="utf-8")
    assert folder_copy.endswith("The next run into this folder replaces this report.</sub>\n")

    repo.write("metrics.json", {"accuracy": 0.70})
    repo.commit("feature: a worse model")
    first_run = len(fake_github.log)
    code, out, err = cli(["report", "--base", "main", "--fail-on-regression"], env, repo)

    assert code == 1, out + err
    [updated] = fake_github.comments_on(2)
    assert updated["id"] == comment["id"] and "0.7" in updated["body"]
    assert f"comment updated: {url}" in out
    assert "::error title=cml-bot regression::accuracy" in out
    assert fake_github.statuses[-1]["state"] == "failure"
    assert len(fake_github.requests("POST", r"/issues/2/comments$")) == 1
    # same head sha and an identical plot: nothing uploaded again, the pinned URLs still hold
    assert fake_github.refs["refs/heads/cml-bot-assets"] == assets
    assert len(fake_github.requests("POST", "/git/blobs")) == len(plots)
    # the comment named on the assets branch: fetched by id and edited; no listing, no GET /user
    # (who we are: the creator of the status this run set), and the name is not written again
    second = [
        (method, path.split("?")[0])
        for method, path, _ in fake_github.log[first_run:]
        if "/comments" in path or path == "/user"
    ]
    assert second == [
        ("GET", f"/repos/Codertocat/Hello-World/issues/comments/{comment['id']}"),
        ("PATCH", f"/repos/Codertocat/Hello-World/issues/comments/{comment['id']}"),
    ]
    leaks = out + err + everything_written(repo.root, tmp_path)
    assert TOKEN not in leaks


def test_a_read_only_token_saves_a_bundle_then_publish_posts_it(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    pull_request_repo(repo)
    fake_github.add_token(READ_ONLY, "github-actions[bot]", type="Bot", can_write=False, can_read_user=False)
    env = actions_env(fake_github, tmp_path, GITHUB_TOKEN=READ_ONLY)
    bundle = tmp_path / "bundle"

    code, out, err = cli(["report", "--base", "main", "--bundle-dir", str(bundle)], env, repo)

    assert code == 0, out + err
    assert "Resource not accessible by integration" in out + err
    assert fake_github.comments_on(2) == [] and fake_github.statuses == []
    # the status (set first), the plots (assets branch) and the comment each refused once: no retries
    assert [path for _, path, status in fake_github.requests("POST")] == [
        f"/repos/Codertocat/Hello-World/statuses/{HEAD_SHA}",
        "/repos/Codertocat/Hello-World/git/blobs",
        "/repos/Codertocat/Hello-World/issues/2/comments",
    ]
    saved = json.loads((bundle / "run.json").read_text(encoding="utf-8"))
    assert (saved["platform"], saved["repo"], saved["change_number"], saved["head_sha"]) == (
        "github",
        "Codertocat/Hello-World",
        2,
        HEAD_SHA,
    )
    # Data only: no markdown and no images travel from the untrusted run to the trusted one.
    # (.gitignore keeps the folder out of `git status`; upload-artifact leaves hidden files out.)
    assert sorted(p.name for p in bundle.iterdir()) == [".gitignore", "run.json"]
    # A fork controls its bundle: make its metric names hostile; the trusted side must escape them.
    saved["head"]["metrics"]["<img src=x onerror=alert(1)> @octocat"] = 1.0
    (bundle / "run.json").write_text(json.dumps(saved), encoding="utf-8")

    # The trusted workflow_run job: a write token, the artifact downloaded, the head sha checked.
    trusted = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "workflow_run",
        "GITHUB_API_URL": fake_github.url,
        "GITHUB_SERVER_URL": fake_github.server_url,
        "GITHUB_REPOSITORY": fake_github.full_name,
        "GITHUB_SHA": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "GITHUB_TOKEN": TOKEN,
        "PATH": "/usr/bin:/bin",
    }
    code, out, err = cli(["publish", "--bundle", str(bundle), "--head-sha", HEAD_SHA], trusted, repo)

    assert code == 0, out + err
    [comment] = fake_github.comments_on(2)
    assert comment["body"].count(MARKER) == 1
    assert not re.search(r"(?<!\\)<img", comment["body"]) and "@octocat" not in comment["body"]
    assert "\\<img src=x onerror=alert(1)\\> @\u200boctocat" in comment["body"]
    images = re.findall(
        r"\]\(https://github.com/Codertocat/Hello-World/raw/(\w{40})/(pr-2/ec26c3e/[\w.-]+\.png)\)", comment["body"]
    )
    assert images  # the plots were drawn again from the bundle's data by the trusted side
    assert all(path in fake_github.commit_files(commit) for commit, path in images)
    assert [(s["sha"], s["state"]) for s in fake_github.statuses] == [(HEAD_SHA, "success")]
    assert "comment posted" in out
    leaks = out + err + everything_written(repo.root, tmp_path)
    assert TOKEN not in leaks and READ_ONLY not in leaks


def test_publish_refuses_a_bundle_for_another_head(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    pull_request_repo(repo)
    fake_github.add_token(READ_ONLY, "github-actions[bot]", type="Bot", can_write=False, can_read_user=False)
    bundle = tmp_path / "bundle"
    code, out, err = cli(
        ["report", "--base", "main", "--bundle-dir", str(bundle)],
        actions_env(fake_github, tmp_path, GITHUB_TOKEN=READ_ONLY),
        repo,
    )
    assert code == 0, out + err
    fake_github.add_pull(2, "b" * 40)  # the PR moved on after the fork run
    event = tmp_path / "workflow_run.json"
    run = {"event": "pull_request", "head_sha": HEAD_SHA, "head_branch": "changes", "pull_requests": []}
    event.write_text(json.dumps({"workflow_run": run}), encoding="utf-8")
    env = {
        "GITHUB_API_URL": fake_github.url,
        "GITHUB_REPOSITORY": fake_github.full_name,
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "workflow_run",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_SHA": "c" * 40,
        "GITHUB_TOKEN": TOKEN,
    }

    code, out, err = cli(["publish", "--bundle", str(bundle)], env, repo)
    assert code == 2 and "--head-sha is required in CI" in err

    code, out, err = cli(["publish", "--bundle", str(bundle), "--head-sha", HEAD_SHA], env, repo)
    assert code == 1
    assert f"no open pull/merge request has {HEAD_SHA[:12]} as its head; not posting" in err
    assert fake_github.comments_on(2) == [] and fake_github.statuses == []
    assert TOKEN not in out + err


def test_a_report_over_the_limit_posts_a_trimmed_comment(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    many = {f"layer{i:04d}-validation-metric-with-a-long-descriptive-name": i / 1000 for i in range(2500)}
    pull_request_repo(repo, {"accuracy": 0.85, **many})
    env = actions_env(fake_github, tmp_path)

    code, out, err = cli(["report", "--base", "main"], env, repo)

    assert code == 0, out + err
    [comment] = fake_github.comments_on(2)
    full = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8")
    summary = (tmp_path / "step_summary.md").read_text(encoding="utf-8")
    assert len(full) > 65536
    assert len(comment["body"]) <= 65536 and comment["body"].count(MARKER) == 1
    assert "To fit the size limit" in comment["body"]
    assert (
        "The full report is in the job summary of this run and its `cml-bot-report` artifact "
        "([open the run](https://github.com/Codertocat/Hello-World/actions/runs/42))._"
    ) in comment["body"]
    assert "layer2499" in summary and "layer2499" not in comment["body"]
    assert TOKEN not in out + err + summary


def test_push_without_a_pull_request_writes_the_summary_only(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    pull_request_repo(repo)
    head = repo.git("rev-parse", "HEAD")
    env = actions_env(
        fake_github,
        tmp_path,
        GITHUB_EVENT_NAME="push",
        GITHUB_EVENT_PATH=str(EVENTS / "push.branch.json"),
        GITHUB_SHA=head,
        GITHUB_REF="refs/heads/changes",
    )

    code, out, err = cli(["report", "--base", "main", "--no-record"], env, repo)

    assert code == 0, out + err
    assert fake_github.comments_on(2) == []
    assert fake_github.requests("GET", f"/commits/{head}/pulls")
    assert MARKER in (tmp_path / "step_summary.md").read_text(encoding="utf-8")
    assert outputs(tmp_path)["comment-url"] == ""
    assert [s["sha"] for s in fake_github.statuses] == [head]


@pytest.mark.parametrize("fault", [{"kind": "drop-after"}])  # one: the CLI uses the real sleep (1 s)
def test_faults_while_posting_never_duplicate(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path, fault: dict[str, object]
) -> None:
    pull_request_repo(repo)
    fake_github.fail("POST", "/issues/2/comments$", **fault)  # type: ignore[arg-type]
    code, out, err = cli(["report", "--base", "main"], actions_env(fake_github, tmp_path), repo)
    assert code == 0, out + err
    assert len(fake_github.comments_on(2)) == 1
    assert re.search(r"comment posted: https://github.com/\S+#issuecomment-\d+", out)


def test_split_steps_on_a_push_to_main_record_in_the_step_with_the_token(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    """The Action's two steps on a push: the training step (no token) saves a bundle and records
    nothing; the posting step publishes it and records main's results in the data branch."""
    repo.write("cml-bot.yaml", CONFIG)
    repo.write("metrics.json", {"accuracy": 0.80})
    repo.write("params.yaml", "lr: 0.1\n")
    repo.write("train_log.csv", "epoch,loss\n1,0.9\n")
    first = repo.commit("main")
    repo.write("metrics.json", {"accuracy": 0.81})
    head = repo.commit("main: better")
    fake_github.add_commit(first, [], branch="master")
    fake_github.add_commit(head, [first], branch="master")
    push = dict(
        GITHUB_EVENT_NAME="push",
        GITHUB_EVENT_PATH=str(EVENTS / "push.branch.json"),
        GITHUB_SHA=head,
        GITHUB_REF="refs/heads/master",  # the payload's repository.default_branch
    )
    bundle = tmp_path / "bundle"
    no_token = {k: v for k, v in actions_env(fake_github, tmp_path, **push).items() if k != "GITHUB_TOKEN"}

    code, out, err = cli(["run", "--no-post", "--bundle-dir", str(bundle)], no_token, repo)
    assert code == 0, out + err
    assert fake_github.log == []  # no token in this step: nothing asked of GitHub
    assert (bundle / "run.json").is_file() and "--no-post" in out

    code, out, err = cli(
        ["publish", "--bundle", str(bundle), "--head-sha", head], actions_env(fake_github, tmp_path, **push), repo
    )

    assert code == 0, out + err
    assert f"records/{head}.json" in fake_github.commit_files("cml-bot-data")
    assert [(s["sha"], s["state"]) for s in fake_github.statuses] == [(head, "success")]
    assert fake_github.comments_on(2) == []  # a push to main is nobody's pull request


def test_mode_new_says_every_push_adds_a_report(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    pull_request_repo(repo)
    env = actions_env(fake_github, tmp_path)

    for _ in range(2):
        code, out, err = cli(["report", "--base", "main", "--mode", "new"], env, repo)
        assert code == 0, out + err

    comments = fake_github.comments_on(2)
    assert len(comments) == 2
    for comment in comments:
        assert comment["body"].endswith("<sub>Posted by cml-bot. Every push adds a new report.</sub>\n")
        assert "updated on every push" not in comment["body"]
