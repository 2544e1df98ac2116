"""End to end: ``cml_bot.cli.main`` in a Bitbucket Pipelines step, against the fake Bitbucket."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from conftest import GitRepo
from fake_bitbucket import (
    API_TOKEN,
    PR_ID,
    READ_SCOPES,
    TOKEN,
    Account,
    FakeBitbucket,
    fake_bitbucket,
    pipelines_env,
)

from cml_bot.cli import Console, main

__all__ = ["fake_bitbucket"]  # the fixture, imported for pytest

MARKER = "[cml-bot report (id: default)]: #"
ZWSP = "\u200b"
CONFIG = """\
title: Bitbucket model
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


def pull_request_repo(repo: GitRepo, fake: FakeBitbucket, metrics: dict[str, object] | None = None) -> str:
    """main at accuracy 0.80, the feature branch at 0.85, both mirrored into the fake with the same
    commit ids; pull request #7 has the feature's head. Returns the head."""
    repo.write("cml-bot.yaml", CONFIG)
    repo.write("metrics.json", {"accuracy": 0.80})
    repo.write("params.yaml", "lr: 0.1\n")
    repo.write("train_log.csv", "epoch,loss\n1,0.9\n2,0.5\n")
    base = repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", metrics or {"accuracy": 0.85})
    repo.write("params.yaml", "lr: 0.05\n")
    repo.write("train_log.csv", "epoch,loss\n1,0.8\n2,0.4\n3,0.3\n")
    head = repo.commit("feature: lower learning rate")
    fake.add_commit({}, [fake.root_commit], sha=base, branch="main")
    fake.add_commit({}, [base], sha=head, branch="feature")
    fake.add_pull(PR_ID, head)
    return head


def advance(repo: GitRepo, fake: FakeBitbucket, metrics: dict[str, object]) -> str:
    """A new commit on the feature branch, pushed: the pull request's head moves."""
    repo.write("metrics.json", metrics)
    head = repo.commit("feature: another try")
    fake.add_commit({}, [fake.branches["feature"]], sha=head, branch="feature")
    fake.add_pull(PR_ID, head)
    return head


def cli(args: list[str], env: dict[str, str], repo: GitRepo, sleeps: list[float] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    waits = sleeps if sleeps is not None else []
    code = main([*args, "-C", str(repo.root)], env=env, console=Console(out, err), sleep=waits.append)
    return code, out.getvalue(), err.getvalue()


def step_env(fake: FakeBitbucket, head: str, **extra: str) -> dict[str, str]:
    return pipelines_env(fake, BITBUCKET_COMMIT=head, PATH="/usr/bin:/bin", **extra)


def api_token_env(fake: FakeBitbucket, head: str) -> dict[str, str]:
    """An Atlassian API token of a bot account: Basic with its email; ``/user`` names it."""
    fake.add_token(API_TOKEN, "ml-bot", kind="user", email="ml-bot@example.com")
    return step_env(fake, head, CML_BOT_TOKEN=API_TOKEN, CML_BOT_USERNAME="ml-bot@example.com")


def written(*roots: Path) -> str:
    """Every text file under the folders (report, bundle), for leak checks."""
    return "\n".join(
        path.read_bytes().decode("utf-8", "replace")
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and ".git" not in path.parts
    )


def assert_rendered_for_bitbucket(body: str) -> None:
    assert body.startswith(MARKER + "\n\n") and body.count(MARKER) == 1
    for tag in ("<details", "</details>", "<summary", "<sub>", "<!--", "&#64;", "&amp;"):
        assert tag not in body, tag


def test_first_post_then_update_in_place(fake_bitbucket: FakeBitbucket, repo: GitRepo, tmp_path: Path) -> None:
    head = pull_request_repo(repo, fake_bitbucket)
    env = api_token_env(fake_bitbucket, head)

    code, out, err = cli(["report"], env, repo)

    assert code == 0, out + err
    [comment] = fake_bitbucket.comments_on(PR_ID)
    body = comment["raw"]
    assert_rendered_for_bitbucket(body)
    assert "0.85" in body and "| accuracy" in body and "**Run facts**" in body
    assert comment["author"].display_name == "ml-bot"
    # The plot is in the repository's Downloads under a content-hashed name, linked from the comment.
    [name] = fake_bitbucket.downloads
    assert re.fullmatch(r"cml-bot-[0-9a-f]{16}-plot-01-loss-per-epoch\.png", name)
    assert fake_bitbucket.downloads[name].startswith(b"\x89PNG")
    assert f"](https://bitbucket.org/acme/models/downloads/{name})" in body
    url = f"https://bitbucket.org/acme/models/pull-requests/{PR_ID}#comment-{comment['id']}"
    assert f"comment posted: {url}" in out
    run = "https://bitbucket.org/acme/models/pipelines/results/42"
    status = fake_bitbucket.statuses[(head, "cml-bot")]
    assert (status["state"], status["url"], status["name"]) == ("SUCCESSFUL", run, "cml-bot")
    # Code Insights through the pipeline's proxy, without the token.
    report = fake_bitbucket.reports[(head, "cml-bot-default")]
    assert (report["result"], report["report_type"], report["link"]) == ("PASSED", "TEST", run)
    fields = {field["title"]: field for field in report["data"]}
    assert fields["accuracy"] == {"title": "accuracy", "type": "NUMBER", "value": 0.85}
    assert fields["Verdict"]["value"] == "pass" and fields["Failed gates"]["value"] == 0
    assert {r.via for r in fake_bitbucket.requests(path="/reports/")} == {"proxy"}
    assert fake_bitbucket.annotations.get((head, "cml-bot-default"), {}) == {}

    head2 = advance(repo, fake_bitbucket, {"accuracy": 0.70})
    first_run = len(fake_bitbucket.log)
    code, out, err = cli(["report", "--fail-on-regression"], {**env, "BITBUCKET_COMMIT": head2}, repo)

    assert code == 1, out + err
    [updated] = fake_bitbucket.comments_on(PR_ID)
    assert updated["id"] == comment["id"] and "0.7" in updated["raw"]
    assert f"comment updated: {url}" in out
    assert fake_bitbucket.statuses[(head2, "cml-bot")]["state"] == "FAILED"
    report = fake_bitbucket.reports[(head2, "cml-bot-default")]
    assert report["result"] == "FAILED" and {f["title"]: f["value"] for f in report["data"]}["Failed gates"] == 1
    [annotation] = fake_bitbucket.annotations[(head2, "cml-bot-default")].values()
    assert annotation["summary"].startswith("accuracy: ") and annotation["result"] == "FAILED"
    # The same plot bytes: found in Downloads, not uploaded again.
    assert len(fake_bitbucket.requests("POST", "/downloads$")) == 1
    second = [(r.method, r.path) for r in fake_bitbucket.log[first_run:] if "/comments" in r.path or r.path == "/user"]
    assert second == [
        ("GET", "/user"),
        ("GET", f"/repositories/acme/models/pullrequests/{PR_ID}/comments"),
        ("PUT", f"/repositories/acme/models/pullrequests/{PR_ID}/comments/{comment['id']}"),
    ]
    assert API_TOKEN not in out + err + written(repo.root, tmp_path)


def test_a_repository_access_token_learns_its_identity_from_its_comment(
    fake_bitbucket: FakeBitbucket, repo: GitRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    head = pull_request_repo(repo, fake_bitbucket)
    env = step_env(fake_bitbucket, head)

    code, out, err = cli(["report"], env, repo)

    assert code == 0, out + err
    [comment] = fake_bitbucket.comments_on(PR_ID)
    uuid = comment["author"].uuid.strip("{}")
    [warning] = [r.getMessage() for r in caplog.records if "CML_BOT_ACCOUNT" in r.getMessage()]
    assert f"the token's account is {uuid}; set CML_BOT_ACCOUNT to it" in warning
    # Unknown again on the next run: a new comment tells who we are; the oldest is kept, updated.
    head2 = advance(repo, fake_bitbucket, {"accuracy": 0.86})
    code, out, err = cli(["report"], {**env, "BITBUCKET_COMMIT": head2}, repo)
    assert code == 0, out + err
    [kept] = fake_bitbucket.comments_on(PR_ID)
    assert kept["id"] == comment["id"] and "0.86" in kept["raw"]
    # Told who it is, it edits in place without adding one.
    posts = len(fake_bitbucket.requests("POST", "/comments$"))
    head3 = advance(repo, fake_bitbucket, {"accuracy": 0.87})
    code, out, err = cli(["report"], {**env, "BITBUCKET_COMMIT": head3, "CML_BOT_ACCOUNT": "{" + uuid + "}"}, repo)
    assert code == 0, out + err
    [kept] = fake_bitbucket.comments_on(PR_ID)
    assert kept["id"] == comment["id"] and "0.87" in kept["raw"]
    assert len(fake_bitbucket.requests("POST", "/comments$")) == posts
    assert TOKEN not in out + err + written(repo.root, tmp_path)


def test_our_comment_is_found_among_150_across_pages(fake_bitbucket: FakeBitbucket, repo: GitRepo) -> None:
    head = pull_request_repo(repo, fake_bitbucket)
    env = api_token_env(fake_bitbucket, head)
    me = next(a for a in fake_bitbucket.accounts.values() if a.display_name == "ml-bot")
    reviewer = Account("{c0ffee00-0000-4000-8000-000000000001}", "Reviewer", "user")
    for i in range(120):
        fake_bitbucket.add_comment(PR_ID, f"review note {i}", reviewer)
    ours = fake_bitbucket.add_comment(PR_ID, f"{MARKER}\n\nan old report", me)
    for i in range(29):
        fake_bitbucket.add_comment(PR_ID, f"later note {i}", reviewer)

    code, out, err = cli(["report"], env, repo)

    assert code == 0, out + err
    marked = [c for c in fake_bitbucket.comments_on(PR_ID) if c["raw"].startswith(MARKER)]
    assert [c["id"] for c in marked] == [ours] and "0.85" in marked[0]["raw"]
    assert len(fake_bitbucket.comments_on(PR_ID)) == 150
    pages = [r.query for r in fake_bitbucket.requests("GET", f"/pullrequests/{PR_ID}/comments$")]
    assert pages == ["pagelen=100", "pagelen=100&page=2"]
    assert not fake_bitbucket.requests("POST", "/comments$")


def test_another_users_comment_quoting_the_marker_is_left_alone(fake_bitbucket: FakeBitbucket, repo: GitRepo) -> None:
    head = pull_request_repo(repo, fake_bitbucket)
    env = api_token_env(fake_bitbucket, head)
    someone = Account("{c0ffee00-0000-4000-8000-000000000002}", "Someone", "user")
    quoted = f"{MARKER}\n\nI copied the bot's report here to argue with it."
    theirs = fake_bitbucket.add_comment(PR_ID, quoted, someone)

    for mode in ("update", "recreate"):
        code, out, err = cli(["report", "--mode", mode], env, repo)
        assert code == 0, out + err

    comments = fake_bitbucket.comments_on(PR_ID)
    assert [c["raw"] for c in comments if c["id"] == theirs] == [quoted]
    assert len([c for c in comments if c["author"].display_name == "ml-bot"]) == 1
    assert not fake_bitbucket.requests(path=f"/comments/{theirs}$")


def test_faults_while_posting_never_duplicate(fake_bitbucket: FakeBitbucket, repo: GitRepo) -> None:
    head = pull_request_repo(repo, fake_bitbucket)
    env = api_token_env(fake_bitbucket, head)
    fake_bitbucket.fail("GET", f"/pullrequests/{PR_ID}/comments$", status=429, headers={"Retry-After": "7"})
    fake_bitbucket.fail("POST", f"/pullrequests/{PR_ID}/comments$", "drop-after")
    fake_bitbucket.fail("POST", "/statuses/build$", "status-after", status=503)
    fake_bitbucket.fail("PUT", "/reports/", "drop")
    sleeps: list[float] = []

    code, out, err = cli(["report"], env, repo, sleeps)

    assert code == 0, out + err
    assert len(fake_bitbucket.comments_on(PR_ID)) == 1
    assert re.search(rf"comment posted: https://bitbucket.org/acme/models/pull-requests/{PR_ID}#comment-\d+", out)
    assert len([s for s in sleeps if 7.0 <= s <= 8.0]) == 1  # the listing's Retry-After, plus jitter
    assert fake_bitbucket.statuses[(head, "cml-bot")]["state"] == "SUCCESSFUL"
    assert fake_bitbucket.reports[(head, "cml-bot-default")]["result"] == "PASSED"
    assert [r.status for r in fake_bitbucket.requests("POST", "/comments$")] == ["drop"]


def test_a_read_only_token_saves_the_report_with_one_clear_line(
    fake_bitbucket: FakeBitbucket, repo: GitRepo, tmp_path: Path
) -> None:
    head = pull_request_repo(repo, fake_bitbucket)
    read_only = "ATCTT3xFfGN0FAKE0read0only0token0do0not0leak"
    fake_bitbucket.add_token(read_only, "reader", scopes=READ_SCOPES)
    env = step_env(fake_bitbucket, head, CML_BOT_TOKEN=read_only)

    code, out, err = cli(["report", "--bundle-dir", str(tmp_path / "bundle")], env, repo)

    assert code == 0, out + err
    assert fake_bitbucket.comments_on(PR_ID) == [] and not fake_bitbucket.downloads
    lines = [line for line in (out + err).splitlines() if "privilege scopes" in line]
    assert lines == [
        f"cml-bot: Bitbucket POST /repositories/acme/models/pullrequests/{PR_ID}/comments: 403 Your credentials "
        "lack one or more required privilege scopes.: the token lacks a scope (repository access token: "
        f"Repositories write, Pull requests write) (the token may not comment on pull request #{PR_ID})"
    ]
    saved = json.loads((tmp_path / "bundle" / "run.json").read_text(encoding="utf-8"))
    assert (saved["platform"], saved["repo"], saved["change_number"], saved["head_sha"]) == (
        "bitbucket",
        "acme/models",
        PR_ID,
        head,
    )
    assert (repo.root / "cml-bot-report" / "report.md").is_file()
    assert read_only not in out + err + written(repo.root, tmp_path)


def test_without_a_token_the_report_is_an_artifact_and_one_line(fake_bitbucket: FakeBitbucket, repo: GitRepo) -> None:
    head = pull_request_repo(repo, fake_bitbucket)
    env = step_env(fake_bitbucket, head)
    del env["CML_BOT_TOKEN"]

    code, out, err = cli(["report"], env, repo)

    assert code == 0, out + err
    assert (
        "cml-bot: no Bitbucket token: set a repository access token in the secured variable CML_BOT_TOKEN "
        "(report saved as an artifact)"
    ) in out.splitlines()
    assert fake_bitbucket.log == [] and (repo.root / "cml-bot-report" / "report.md").is_file()


def test_untrusted_names_are_neutralised_for_bitbucket(fake_bitbucket: FakeBitbucket, repo: GitRepo) -> None:
    hostile = {
        "accuracy": 0.85,
        "<img src=x onerror=alert(1)> @{557058:1234} @admin": 1.0,
        "see #12 and pull request #13 &lt;b&gt; ~~gone~~ <https://evil.example>": 2.0,
    }
    head = pull_request_repo(repo, fake_bitbucket, hostile)
    env = api_token_env(fake_bitbucket, head)

    code, out, err = cli(["report"], env, repo)

    assert code == 0, out + err
    [comment] = fake_bitbucket.comments_on(PR_ID)
    body = comment["raw"]
    assert_rendered_for_bitbucket(body)
    assert not re.search(r"(?<!\\)<(?!\u200b)", body.split("\n", 2)[2])  # no tag, no autolink
    assert not re.search(r"@(?!\u200b)", body)  # no mention
    assert not re.search(r"#(?=\d)", body)  # no issue or pull request link
    assert "~~" not in body and "&lt;" not in body.replace(f"&{ZWSP}lt;", "")
    assert f"@{ZWSP}{{557058:1234}} @{ZWSP}admin" in body
    # (a ">" after a path character gets a zero-width space first: GitLab reads "x>" as a project)
    assert f"&{ZWSP}lt;b&{ZWSP}gt;" in body and f"<{ZWSP}https:{ZWSP}//evil.example{ZWSP}\\>" in body
    # The same names as plain text in Code Insights, where no markdown is rendered.
    titles = {field["title"] for field in fake_bitbucket.reports[(head, "cml-bot-default")]["data"]}
    assert "<img src=x onerror=alert(1)> @{557058:1234} @admin" in titles


def test_a_report_over_the_limit_posts_a_trimmed_comment(fake_bitbucket: FakeBitbucket, repo: GitRepo) -> None:
    many = {f"layer{i:04d}-validation-metric-with-a-long-name": i / 1000 for i in range(800)}
    head = pull_request_repo(repo, fake_bitbucket, {"accuracy": 0.85, **many})
    env = api_token_env(fake_bitbucket, head)

    code, out, err = cli(["report"], env, repo)

    assert code == 0, out + err
    [comment] = fake_bitbucket.comments_on(PR_ID)
    full = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8")
    assert len(full) > 32_768 >= len(comment["raw"])
    assert_rendered_for_bitbucket(comment["raw"])
    assert "To fit the size limit" in comment["raw"] and "`cml-bot-report` artifact" in comment["raw"]


@pytest.mark.parametrize("insights_proxy", ["proxy", "token"])
def test_main_records_then_a_pull_request_compares_with_it(
    fake_bitbucket: FakeBitbucket, repo: GitRepo, insights_proxy: str
) -> None:
    head = pull_request_repo(repo, fake_bitbucket)
    base = fake_bitbucket.branches["main"]
    repo.git("checkout", "--quiet", "main")
    push = step_env(fake_bitbucket, base, BITBUCKET_BRANCH="main")
    for name in ("BITBUCKET_PR_ID", "BITBUCKET_PR_DESTINATION_BRANCH"):
        push.pop(name, None)

    code, out, err = cli(["record"], push, repo)

    assert code == 0, out + err
    record = json.loads(fake_bitbucket.files_at("cml-bot-data")[f"records/{base}.json"])
    assert record["metrics"] == {"accuracy": 0.8}
    tip = fake_bitbucket.branches["cml-bot-data"]
    assert f"https://bitbucket.org/acme/models/src/{tip}/records/{base}.json" in out
    assert "[skip ci]" in fake_bitbucket.commits[tip]["message"]

    # Pipelines clones the one branch it builds: without main here, the API tells the merge-base.
    repo.git("checkout", "--quiet", "feature")
    repo.git("branch", "--quiet", "-D", "main")
    env = step_env(fake_bitbucket, head)
    if insights_proxy == "token":
        env["CML_BOT_INSIGHTS_PROXY"] = ""
    code, out, err = cli(["report"], env, repo)
    assert code == 0, out + err
    [comment] = fake_bitbucket.comments_on(PR_ID)
    assert "recorded results of the merge-base with main" in comment["raw"]
    assert fake_bitbucket.requests("GET", f"/src/{tip}/records/{base}.json$")
    via = {r.via for r in fake_bitbucket.requests(path="/reports/")}
    assert via == ({"proxy"} if insights_proxy == "proxy" else {"repository"})


PEEK = (
    "import json, os, urllib.request as u; "
    "opener = u.build_opener(u.ProxyHandler({'http': os.environ['CML_BOT_INSIGHTS_PROXY']})); "
    "url = 'http://api.bitbucket.org/2.0/repositories/acme/models/commit/' + os.environ['BITBUCKET_COMMIT'] "
    "+ '/reports/cml-bot-default'; "
    "open('seen-report.json', 'wb').write(opener.open(url).read())"
)


def test_code_insights_show_pending_while_the_pipeline_runs(fake_bitbucket: FakeBitbucket, repo: GitRepo) -> None:
    head = pull_request_repo(repo, fake_bitbucket)
    repo.write(
        "cml-bot.yaml",
        CONFIG + f"pipeline:\n  - name: train\n    run: {json.dumps('python3 -c ' + json.dumps(PEEK))}\n",
    )
    repo.write(".gitignore", "seen-report.json\ncml-bot-report/\n")
    head = repo.commit("feature: a pipeline")
    fake_bitbucket.add_commit({}, [fake_bitbucket.branches["feature"]], sha=head, branch="feature")
    fake_bitbucket.add_pull(PR_ID, head)

    code, out, err = cli(["run"], api_token_env(fake_bitbucket, head), repo)

    assert code == 0, out + err
    seen = json.loads((repo.root / "seen-report.json").read_text(encoding="utf-8"))
    assert (seen["result"], seen["title"]) == ("PENDING", "Bitbucket model")  # what the pipeline's run saw
    assert fake_bitbucket.reports[(head, "cml-bot-default")]["result"] == "PASSED"  # replaced at the end


def test_a_dry_run_shows_nothing_pending(fake_bitbucket: FakeBitbucket, repo: GitRepo) -> None:
    head = pull_request_repo(repo, fake_bitbucket)
    code, out, err = cli(["run", "--dry-run"], api_token_env(fake_bitbucket, head), repo)
    assert code == 0, out + err
    assert fake_bitbucket.requests(path="/reports/") == []
