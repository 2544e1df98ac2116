"""Recorded results in a GitHub data branch, and the merge-base from the compare API, against the fake GitHub."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import threading
from pathlib import Path

import pytest
from conftest import GitRepo
from fake_github import HEAD_SHA, TOKEN, FakeGitHub, fake_github, github_env

from cml_bot.cli import Console, main
from cml_bot.context import CiContext
from cml_bot.errors import ForgeError, InputError, ReadOnlyTokenError
from cml_bot.forges.github import GitHub, github_client, github_forge
from cml_bot.forges.github_store import DROPPED_FACT, RECORD_LIMIT, GitHubStore
from cml_bot.metrics import Samples
from cml_bot.results import RunResults, to_json

__all__ = ["fake_github"]  # the fixture, imported for pytest

BRANCH = "cml-bot-data"
READ_ONLY = "ghs_FAKE0FORK0READONLY0token0secret000"
A, B, C = "a" * 40, "b" * 40, "c" * 40


def context_for(fake: FakeGitHub) -> CiContext:
    return CiContext(platform="github", repo=fake.full_name, api_url=fake.url, server_url=fake.server_url)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def store_for(fake: FakeGitHub, token: str = TOKEN, sleep: Sleeps | None = None) -> GitHubStore:
    client = github_client(context_for(fake), {"GITHUB_TOKEN": token}, sleep=sleep if sleep is not None else Sleeps())
    return GitHubStore(client, fake.full_name, BRANCH, server_url=fake.server_url)


def forge_for(fake: FakeGitHub, env: dict[str, str], sleep: Sleeps) -> GitHub:
    return github_forge(dataclasses.replace(context_for(fake), head_sha=HEAD_SHA), env, sleep=sleep)


def results(sha: str, accuracy: float = 0.8) -> RunResults:
    return RunResults(sha=sha, metrics={"accuracy": accuracy}, params={"lr": 0.1}, facts={"run": "1"})


def test_save_then_list_and_load_round_trip(fake_github: FakeGitHub) -> None:
    original = RunResults(
        sha=A,
        metrics={
            "nan": float("nan"),
            "inf": float("inf"),
            "-inf": float("-inf"),
            "seeds": Samples((0.8, 0.82, 0.81)),
            "name": "resnet",
            "flag": True,
        },
        params={"lr": 0.001, "layers": [64, 32]},  # type: ignore[dict-item]  # lists come back as JSON text
        files={"plots/confusion.bin": bytes(range(256)) * 3, "log.csv": b"epoch,loss\n1,0.5\n"},
        facts={"duration": "12.5"},
    )
    where = store_for(fake_github).save(original)

    tip = fake_github.refs[f"refs/heads/{BRANCH}"]
    assert where == f"https://github.com/{fake_github.full_name}/blob/{tip}/records/{A}.json"
    assert fake_github.commits[tip]["parents"] == []  # an orphan branch, none of the code's history
    assert list(fake_github.commit_files(BRANCH)) == [f"records/{A}.json"]

    reader = store_for(fake_github)
    before = len(fake_github.log)
    assert reader.recorded() == {A}
    assert reader.recorded() == {A}  # cached: one listing per store
    assert [r[:2] for r in fake_github.log[before:]] == [
        ("GET", f"/repos/{fake_github.full_name}/git/ref/heads/{BRANCH}"),
        ("GET", f"/repos/{fake_github.full_name}/git/commits/{tip}"),
        ("GET", f"/repos/{fake_github.full_name}/git/trees/{fake_github.commits[tip]['tree']}?recursive=1"),
    ]
    loaded = reader.load(A)
    assert loaded is not None
    assert math.isnan(loaded.metrics["nan"]) and loaded.metrics["inf"] == math.inf  # type: ignore[arg-type]
    assert loaded.metrics["-inf"] == -math.inf
    assert loaded.metrics["seeds"] == Samples((0.8, 0.82, 0.81))
    assert (loaded.metrics["name"], loaded.metrics["flag"]) == ("resnet", True)
    assert loaded.params == {"lr": 0.001, "layers": "[64, 32]"}
    assert loaded.files == original.files and loaded.facts == original.facts and loaded.sha == A
    assert reader.load(B) is None  # not recorded: a 404 from the contents API
    assert reader.load("not-a-sha") is None


def test_missing_branch_reads_empty_then_first_save_creates_it(fake_github: FakeGitHub) -> None:
    store = store_for(fake_github)
    assert store.recorded() == set() and store.load(A) is None
    assert fake_github.requests("POST") == [] and BRANCH not in str(fake_github.refs)

    store.save(results(A))
    assert store.recorded() == {A}  # the store's own listing learns its save
    assert len(fake_github.requests("POST", r"/git/refs$")) == 1
    first = fake_github.refs[f"refs/heads/{BRANCH}"]

    store.save(results(B, 0.9))
    second = fake_github.refs[f"refs/heads/{BRANCH}"]
    assert fake_github.commits[second]["parents"] == [first]  # fast-forward, not a second root
    assert len(fake_github.requests("PATCH", rf"/git/refs/heads/{BRANCH}$")) == 1
    assert store_for(fake_github).recorded() == {A, B}
    later = store_for(fake_github).load(B)
    assert later is not None and later.metrics == {"accuracy": 0.9}


def test_a_record_moved_in_between_is_kept(fake_github: FakeGitHub) -> None:
    sleeps = Sleeps()
    store = store_for(fake_github, sleep=sleeps)
    store.save(results(A))
    other = to_json(results(C, 0.7)).encode()
    # Another job records C between our read of the tip and our ref update.
    fake_github.fail(
        "PATCH",
        r"/git/refs/heads/",
        kind="before",
        callback=lambda f: f.push_commit(BRANCH, {f"records/{C}.json": other}),
    )

    store.save(results(B))

    assert set(fake_github.commit_files(BRANCH)) == {f"records/{s}.json" for s in (A, B, C)}
    statuses = [r[2] for r in fake_github.requests("PATCH", r"/git/refs/heads/")]
    assert statuses == [422, 200]  # refused as not a fast-forward, then committed on the new tip
    assert sleeps == [0.25]
    loaded = store_for(fake_github).load(C)
    assert loaded is not None and loaded.metrics == {"accuracy": 0.7}


def test_concurrent_saves_from_threads_all_land(fake_github: FakeGitHub) -> None:
    store_for(fake_github).save(results("0" * 40))
    shas = [f"{n:x}" * 40 for n in range(1, 7)]
    errors: list[BaseException] = []

    def record(sha: str) -> None:
        try:
            store_for(fake_github).save(results(sha))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(sha,)) for sha in shas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert store_for(fake_github).recorded() == {"0" * 40, *shas}


def test_read_only_token_reads_but_cannot_save(fake_github: FakeGitHub) -> None:
    store_for(fake_github).save(results(A))
    fake_github.add_token(READ_ONLY, "github-actions[bot]", type="Bot", can_write=False, can_read_user=False)
    sleeps = Sleeps()
    fork = store_for(fake_github, READ_ONLY, sleeps)

    assert fork.recorded() == {A}
    assert fork.load(A) == results(A)
    posts = len(fake_github.requests("POST"))
    with pytest.raises(ReadOnlyTokenError, match="Resource not accessible by integration"):
        fork.save(results(B))
    assert len(fake_github.requests("POST")) == posts + 1 and sleeps == []  # refused at once, no retries
    assert store_for(fake_github).recorded() == {A}


def test_transient_faults_are_retried(fake_github: FakeGitHub) -> None:
    sleeps = Sleeps()
    store = store_for(fake_github, sleep=sleeps)
    fake_github.fail("GET", r"/git/ref/heads/", status=502)
    fake_github.fail("POST", r"/git/blobs$", kind="drop")
    fake_github.fail("POST", r"/git/trees$", status=403, message="secondary rate limit", headers={"Retry-After": "7"})
    fake_github.fail("POST", r"/git/refs$", kind="drop-after")  # the branch was created, the answer lost

    store.save(results(A))

    assert any(7 <= waited <= 8 for waited in sleeps) and len(sleeps) == 4
    first = fake_github.refs[f"refs/heads/{BRANCH}"]
    assert fake_github.commits[first]["parents"] == []
    # The retried create answered 422 (it exists): the tip is our commit, so nothing is committed twice.
    assert [r[2] for r in fake_github.requests("POST", r"/git/refs$")] == ["drop", 422]
    assert len(fake_github.requests("POST", r"/git/commits$")) == 1

    fake_github.fail("PATCH", r"/git/refs/heads/", kind="drop-after")
    fake_github.fail("GET", r"/contents/", status=500)
    store.save(results(B))
    assert store_for(fake_github).recorded() == {A, B}
    assert store_for(fake_github, sleep=sleeps).load(B) == results(B)
    assert len(fake_github.requests("POST", r"/git/commits$")) == 2


def test_a_refusal_that_is_not_a_race_is_not_retried(fake_github: FakeGitHub) -> None:
    store = store_for(fake_github)
    store.save(results(A))
    fake_github.fail("PATCH", r"/git/refs/heads/", status=422, message="Validation Failed", times=10)
    with pytest.raises(ForgeError, match=r"PATCH .*/git/refs/heads/cml-bot-data: 422 Validation Failed"):
        store.save(results(B))
    assert len(fake_github.requests("PATCH")) == 1


def test_oversized_records_leave_plot_files_out(fake_github: FakeGitHub) -> None:
    big = RunResults(
        sha=A,
        metrics={"accuracy": 0.8},
        files={"small.csv": b"x,y\n1,2\n", "huge.bin": b"\x00" * RECORD_LIMIT, "big.bin": b"\x01" * 1000},
    )
    store = store_for(fake_github)
    store.save(big)
    loaded = store_for(fake_github).load(A)
    assert loaded is not None and loaded.metrics == {"accuracy": 0.8}
    assert set(loaded.files) == {"small.csv", "big.bin"} and loaded.facts == {DROPPED_FACT: "huge.bin"}

    with pytest.raises(InputError, match="without plot files"):
        store.save(RunResults(sha=B, metrics={f"m{i:07d}": i for i in range(RECORD_LIMIT // 10)}))

    # A record written by other means over the contents API's 1 MB is skipped, not fatal.
    fake_github.push_commit(BRANCH, {f"records/{C}.json": b" " * (1024 * 1024 + 1)})
    assert store_for(fake_github).load(C) is None


def test_store_needs_a_token_and_a_repository(fake_github: FakeGitHub) -> None:
    with pytest.raises(ForgeError, match="no token"):
        github_client(context_for(fake_github), {})
    with pytest.raises(ForgeError, match="repository is unknown"):
        github_client(CiContext(platform="github"), {"GITHUB_TOKEN": TOKEN})
    assert TOKEN not in repr(store_for(fake_github))


# -- the merge-base from the compare API ------------------------------------------------------


def test_merge_base_from_the_compare_api(fake_github: FakeGitHub) -> None:
    root = fake_github.add_commit("1" * 40, [])
    fork_point = fake_github.add_commit("2" * 40, [root])
    fake_github.add_commit("3" * 40, [fork_point], branch="release/1.x")  # main moved on after branching
    feature = fake_github.add_commit("4" * 40, [fork_point])
    head = fake_github.add_commit("5" * 40, [feature])
    sleeps = Sleeps()
    env = {"GITHUB_TOKEN": TOKEN}
    fake_github.fail("GET", r"/compare/", status=502)

    forge = forge_for(fake_github, env, sleeps)
    assert forge.merge_base("release/1.x", head) == fork_point
    assert len(sleeps) == 1
    assert fake_github.requests("GET", r"/compare/release%2F1\.x\.\.\.5{40}")

    assert forge.merge_base("no-such-branch", head) is None
    assert len(fake_github.requests("GET", "/compare/")) == 3


# -- end to end: record on a push to main, then a pull request compares with it -----------------

CONFIG = """\
title: Data branch model
metrics: [metrics.json]
thresholds:
  accuracy: {max_drop: 0.01}
"""


def cli(args: list[str], env: dict[str, str], root: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(root)], env=env, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def test_record_on_push_then_pull_request_in_a_shallow_clone_compares_with_it(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    repo.write("cml-bot.yaml", CONFIG)
    repo.write("metrics.json", {"accuracy": 0.80})
    main_sha = repo.commit("main")
    push = github_env(
        fake_github, "push.branch", GITHUB_SHA=main_sha, GITHUB_REF="refs/heads/master", PATH="/usr/bin:/bin"
    )

    code, out, err = cli(["record"], push, repo.root)

    assert code == 0, out + err
    assert f"records/{main_sha}.json" in out
    record = json.loads(fake_github.commit_files(BRANCH)[f"records/{main_sha}.json"])
    assert record["sha"] == main_sha and record["metrics"] == {"accuracy": 0.8}

    # The PR's checkout: one commit deep, the base branch not fetched; GitHub knows the history.
    repo.git("checkout", "--quiet", "-b", "changes")
    repo.write("metrics.json", {"accuracy": 0.85})
    repo.commit("feature")
    clone = tmp_path / "clone"
    repo.git("clone", "--quiet", "--depth", "1", "--branch", "changes", f"file://{repo.root}", str(clone))
    fake_github.add_commit(main_sha, [], branch="master")
    fake_github.add_commit(HEAD_SHA, [main_sha])
    pull = github_env(fake_github, "pull_request.opened", PATH="/usr/bin:/bin")

    code, out, err = cli(["report"], pull, clone)

    assert code == 0, out + err
    [comment] = fake_github.comments_on(2)
    assert "recorded results" in comment["body"] and main_sha[:10] in comment["body"]
    assert "0.85" in comment["body"] and "0.8" in comment["body"]
    assert len(fake_github.requests("GET", r"/compare/master\.\.\.")) == 1
    assert fake_github.statuses[-1]["state"] == "success"
    assert TOKEN not in out + err


def test_a_409_on_the_ref_update_is_retried(fake_github: FakeGitHub) -> None:
    """The Git database answers 409 Conflict while the repository is "unavailable" (Using the REST
    API to interact with your Git database); "Update a reference" documents 409."""
    store_for(fake_github).save(results(A))
    fake_github.conflict("PATCH", r"/git/refs/heads/cml-bot-data$")
    store_for(fake_github).save(results(B))
    assert store_for(fake_github).recorded() == {A, B}
