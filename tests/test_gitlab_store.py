"""Recorded results in a GitLab data branch, through the real python-gitlab client and the fake GitLab."""

from __future__ import annotations

import io
import json
import logging
import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import GitRepo
from fake_gitlab import FakeGitLab
from gitlab_fixtures import MR_IID, ci_env, fake, sleeps

from cml_bot.app import default_store_factory
from cml_bot.cli import Console, main
from cml_bot.config import load_config
from cml_bot.context import CiContext, gitlab_context
from cml_bot.errors import ForgeError, InputError, ReadOnlyTokenError
from cml_bot.forges.gitlab import gitlab_forge
from cml_bot.forges.gitlab_store import GitLabStore
from cml_bot.forges.http import HttpError
from cml_bot.metrics import Samples
from cml_bot.results import LocalStore, RunResults, to_json

__all__ = ["fake", "sleeps"]  # fixtures, re-exported for pytest

BRANCH = "cml-bot-data"
SHA_A = "a" * 40
SHA_B = "b" * 40
COMMITS = r"/repository/commits$"
REF_RACE = "Could not update refs/heads/cml-bot-data. Please refresh and try again."


@pytest.fixture
def make_store(fake: FakeGitLab, sleeps: list[float]) -> Iterator[Callable[..., GitLabStore]]:
    """Stores built by the real factory from merge-request CI variables; sessions closed afterwards."""
    made: list[GitLabStore] = []

    def make(**overrides: str | None) -> GitLabStore:
        made.append(store_from(ci_env(fake, **overrides), sleeps.append))
        return made[-1]

    yield make
    for store in made:
        store.forge.close()


def store_from(env: dict[str, str], sleep: Callable[[float], None] = lambda _: None) -> GitLabStore:
    """The store the app uses: the GitLab driver's data branch."""
    store = gitlab_forge(gitlab_context(env), env, sleep=sleep).result_store(BRANCH)
    assert isinstance(store, GitLabStore)
    return store


def results(sha: str, accuracy: float = 0.8, **facts: str) -> RunResults:
    return RunResults(
        sha=sha,
        metrics={
            "accuracy": accuracy,
            "loss": float("nan"),
            "perplexity": float("inf"),
            "floor": float("-inf"),
            "seeds.f1": Samples((0.7, 0.75, 0.8)),
            "epochs": 3,
            "ok": True,
            "model": "resnet",
        },
        params={"lr": 0.1, "layers": Samples((1.0, 2.0))},
        files={"plots/confusion.png": b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary", "train_log.csv": b"epoch,loss\n1,0.5\n"},
        facts={"python": "3.11", **facts},
    )


def record_commits(fake: FakeGitLab) -> list[str]:
    """Messages of the data branch's own commits (newest first), not main's history it starts from."""
    return [c.message for c in fake.branch_history(BRANCH) if c.message.startswith("cml-bot:")]


def record_file(fake: FakeGitLab, sha: str) -> dict[str, object]:
    document: dict[str, object] = json.loads(fake.branch_files(BRANCH)[f"records/{sha}.json"])
    return document


# -- round trip and layout -------------------------------------------------------------------------


def test_save_then_list_and_load_round_trip(make_store: Callable[..., GitLabStore], fake: FakeGitLab) -> None:
    store = make_store()
    original = results(SHA_A)

    where = store.save(original)

    assert where == f"{fake.web_url}/-/blob/{BRANCH}/records/{SHA_A}.json"
    reader = make_store()  # a later pipeline
    assert reader.recorded() == {SHA_A}
    loaded = reader.load(SHA_A)
    assert loaded is not None
    assert to_json(loaded) == to_json(original)
    assert loaded.sha == SHA_A
    assert math.isnan(loaded.metrics["loss"])  # type: ignore[arg-type]
    assert loaded.metrics["perplexity"] == math.inf and loaded.metrics["floor"] == -math.inf
    assert loaded.metrics["seeds.f1"] == Samples((0.7, 0.75, 0.8))
    assert loaded.metrics["ok"] is True and loaded.metrics["epochs"] == 3
    assert loaded.files == original.files
    assert loaded.params["layers"] == Samples((1.0, 2.0))
    assert reader.load(SHA_B) is None
    assert fake.branch_files(BRANCH)[f"records/{SHA_A}.json"] == to_json(original).encode()


def test_first_save_creates_the_data_branch_from_the_default_branch(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab
) -> None:
    main_head = fake.branch_history("main")[0]
    assert fake.branch_history(BRANCH) == []

    make_store().save(results(SHA_A))

    history = fake.branch_history(BRANCH)
    assert [c.id for c in history[1:]] == [c.id for c in fake.branch_history("main")]
    assert history[0].parent_ids == (main_head.id,)
    assert history[0].message == f"cml-bot: results of {SHA_A} [skip ci]"  # no pipeline on the data branch
    assert set(fake.branch_files(BRANCH)) == {*main_head.files, f"records/{SHA_A}.json"}
    assert fake.branch_files("main") == main_head.files  # main untouched
    assert fake.count("POST", COMMITS) == 1


def test_the_default_branch_is_asked_for_when_the_ci_does_not_say(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab
) -> None:
    fake.project.default_branch = "trunk"
    fake.write_files("trunk", {"model.py": b"print()\n"})

    make_store(CI_DEFAULT_BRANCH=None).save(results(SHA_A))

    assert "model.py" in fake.branch_files(BRANCH)
    assert fake.count("GET", r"/projects/42$") == 1


def test_missing_branch_or_folder_reads_as_nothing_recorded(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab
) -> None:
    store = make_store()
    assert store.recorded() == set()
    assert store.load(SHA_A) is None

    fake.write_files(BRANCH, {"notes.txt": b"no records yet\n"})
    assert store.recorded() == set()
    assert store.load(SHA_A) is None

    fake.write_files(
        BRANCH,
        {
            f"records/{SHA_A}.json": to_json(results(SHA_A)).encode(),
            "records/README.md": b"cml-bot results\n",
            "records/NOT-A-SHA.json": b"{}",
            f"records/old/{SHA_B}.json": b"{}",  # a folder, not listed recursively
        },
    )
    assert store.recorded() == {SHA_A}


def test_a_missing_project_is_an_error_not_an_empty_store(make_store: Callable[..., GitLabStore]) -> None:
    store = make_store(CI_PROJECT_ID="999", CI_MERGE_REQUEST_PROJECT_ID="999")

    with pytest.raises(HttpError, match="404 Project Not Found"):
        store.recorded()


def test_listing_reads_every_page_and_survives_a_dropped_page(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab
) -> None:
    shas = {f"{n:040x}" for n in range(1, 251)}
    fake.write_files(BRANCH, {f"records/{sha}.json": b"{}" for sha in shas})
    fake.fail("GET", r"/repository/tree$", kind="pass")  # page 1 answers
    fake.fail("GET", r"/repository/tree$", kind="drop")  # page 2 is dropped once

    assert make_store().recorded() == shas

    pages = [r.query.get("page") for r in fake.iter_requests() if r.path.endswith("/repository/tree")]
    assert pages == ["1", "2", "2", "3"]


def test_saving_again_updates_the_record_and_an_identical_save_adds_no_commit(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab
) -> None:
    store = make_store()
    store.save(results(SHA_A, 0.8))
    store.save(results(SHA_A, 0.9))  # a re-run of main's pipeline
    store.save(results(SHA_A, 0.9))

    assert len(record_commits(fake)) == 2
    loaded = make_store().load(SHA_A)
    assert loaded is not None and loaded.metrics["accuracy"] == 0.9


def test_bad_shas_are_refused_or_not_found(make_store: Callable[..., GitLabStore], fake: FakeGitLab) -> None:
    store = make_store()
    with pytest.raises(InputError, match="without a commit sha"):
        store.save(RunResults(sha=None, metrics={"a": 1}))
    with pytest.raises(InputError, match="without a commit sha"):
        store.save(RunResults(sha="../../main", metrics={"a": 1}))
    assert store.load("../../README.md") is None
    assert fake.requests == []


# -- concurrency -----------------------------------------------------------------------------------


def run_together(*jobs: Callable[[], object]) -> list[object]:
    """Run the jobs in threads at once; re-raise the first failure."""
    outcomes: list[object] = [None] * len(jobs)

    def target(index: int, job: Callable[[], object]) -> None:
        try:
            outcomes[index] = job()
        except BaseException as exc:  # handed back to the test thread
            outcomes[index] = exc

    threads = [threading.Thread(target=target, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes


def test_concurrent_first_records_both_land_when_both_create_the_branch(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab
) -> None:
    first, second = make_store(), make_store()
    # Both see no branch, then both POST with start_branch at the same moment: one creates it,
    # GitLab refuses the other ("Branch already exists"), which then commits onto the new branch.
    fake.fail("POST", COMMITS, kind="pass", times=2, barrier=threading.Barrier(2))

    run_together(lambda: first.save(results(SHA_A)), lambda: second.save(results(SHA_B)))

    assert make_store().recorded() == {SHA_A, SHA_B}
    assert sorted(record_commits(fake)) == [f"cml-bot: results of {s} [skip ci]" for s in (SHA_A, SHA_B)]
    assert fake.count("POST", COMMITS) == 3


def test_concurrent_records_on_an_existing_branch_both_land(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab
) -> None:
    fake.write_files(BRANCH, {"records/README.md": b"results\n"})
    first, second = make_store(), make_store()
    fake.fail("POST", COMMITS, kind="pass", times=2, barrier=threading.Barrier(2))

    run_together(lambda: first.save(results(SHA_A)), lambda: second.save(results(SHA_B)))

    assert make_store().recorded() == {SHA_A, SHA_B}
    assert fake.count("POST", COMMITS) == 2
    assert len(record_commits(fake)) == 2


def test_a_ref_that_moved_during_the_commit_is_tried_again(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab, sleeps: list[float]
) -> None:
    store = make_store()
    store.save(results(SHA_A))
    fake.fail("POST", COMMITS, status=400, message=REF_RACE)

    store.save(results(SHA_B))

    assert make_store().recorded() == {SHA_A, SHA_B}
    assert len(record_commits(fake)) == 2
    assert sleeps == [0.5]


def test_the_same_commit_recorded_concurrently_is_success(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab
) -> None:
    first, second = make_store(), make_store()
    fake.write_files(BRANCH, {"records/README.md": b"results\n"})
    fake.fail("POST", COMMITS, kind="pass", times=2, barrier=threading.Barrier(2))

    run_together(lambda: first.save(results(SHA_A, job="1")), lambda: second.save(results(SHA_A, job="2")))

    assert len(record_commits(fake)) == 1  # the second create got "A file with this name already exists"
    assert fake.count("POST", COMMITS) == 2
    assert record_file(fake, SHA_A)["facts"] in ({"python": "3.11", "job": "1"}, {"python": "3.11", "job": "2"})


def test_an_update_racing_another_writer_is_planned_again(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab
) -> None:
    store = make_store()
    store.save(results(SHA_A, 0.8))

    def other_writer(server: FakeGitLab) -> None:
        server._commit_to(BRANCH, "another job", {f"records/{SHA_A}.json": b'{"version": 1}'})

    # Between our read and our update another job rewrites the file: last_commit_id is stale.
    fake.fail("POST", COMMITS, kind="pass", action=other_writer)

    store.save(results(SHA_A, 0.9))

    assert record_file(fake, SHA_A)["metrics"] == json.loads(to_json(results(SHA_A, 0.9)))["metrics"]
    assert fake.count("POST", COMMITS) == 3


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "retry_after"),
    [
        ("drop", 502, None),  # connection lost before GitLab saw the commit
        ("drop_after", 502, None),  # ... after GitLab made it
        ("status", 503, None),
        ("status_after", 502, None),  # a proxy error although the commit went through
        ("status", 429, 7),
    ],
)
@pytest.mark.parametrize("existing", [False, True], ids=["create", "update"])
def test_a_failed_commit_is_retried_without_losing_or_duplicating_the_record(
    make_store: Callable[..., GitLabStore],
    fake: FakeGitLab,
    sleeps: list[float],
    kind: str,
    status: int,
    retry_after: int | None,
    existing: bool,
) -> None:
    store = make_store()
    if existing:
        store.save(results(SHA_A, 0.5))
    before = len(record_commits(fake))
    fake.fail("POST", COMMITS, kind=kind, status=status, retry_after=retry_after)  # type: ignore[arg-type]

    store.save(results(SHA_A, 0.8))

    assert len(record_commits(fake)) == before + 1
    assert record_file(fake, SHA_A)["metrics"] == json.loads(to_json(results(SHA_A)))["metrics"]
    wait = float(retry_after or 1)
    assert len(sleeps) == 1 and wait / 2 <= sleeps[0] <= wait + 1  # jittered backoff, or Retry-After
    applied = kind.endswith("_after")
    assert fake.count("POST", COMMITS) == before + (1 if applied else 2)


def test_reads_are_retried_on_transient_failures(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab, sleeps: list[float]
) -> None:
    store = make_store()
    store.save(results(SHA_A))
    fake.fail("GET", r"/raw$", status=502)
    fake.fail("GET", r"/raw$", status=429, retry_after=3)
    fake.fail("GET", r"/repository/tree$", kind="drop")

    assert store.recorded() == {SHA_A}
    loaded = store.load(SHA_A)

    assert loaded is not None and loaded.metrics["accuracy"] == 0.8
    assert len(sleeps) == 3 and 3 <= sleeps[2] <= 4


def test_persistent_failures_give_up_with_one_line_and_no_token(
    make_store: Callable[..., GitLabStore], fake: FakeGitLab, sleeps: list[float]
) -> None:
    store = make_store()
    fake.fail("POST", COMMITS, status=503, message="Service Unavailable", times=99)

    with pytest.raises(HttpError) as info:
        store.save(results(SHA_A))

    message = info.value.message
    assert "after 6 attempts" in message and "/repository/commits" in message
    assert "\n" not in message and fake.token not in message
    assert fake.count("POST", COMMITS) == 6
    assert record_commits(fake) == []


def test_another_refusal_is_reported(make_store: Callable[..., GitLabStore], fake: FakeGitLab) -> None:
    fake.fail("POST", COMMITS, status=403, message="403 Forbidden")

    with pytest.raises(HttpError, match="403 Forbidden: the token lacks permission"):
        make_store().save(results(SHA_A))
    assert fake.count("POST", COMMITS) == 1


def test_a_refused_commit_does_not_echo_the_token(make_store: Callable[..., GitLabStore], fake: FakeGitLab) -> None:
    """A 400 that is not a race is raised with the client's redacted line, never the raw body."""
    fake.fail("POST", COMMITS, status=400, message=f"commit refused for token {fake.token}")

    with pytest.raises(HttpError) as info:
        make_store().save(results(SHA_A))
    message = info.value.message
    assert message.startswith("GitLab POST ") and "400 commit refused for token" in message
    assert fake.token not in message and "\n" not in message


# -- tokens and wiring -----------------------------------------------------------------------------


def test_the_job_token_reads_records_one_by_one_but_cannot_save(fake: FakeGitLab) -> None:
    store_from(ci_env(fake)).save(results(SHA_A))
    before = len(fake.requests)
    reader = store_from(ci_env(fake, CML_BOT_TOKEN=None))
    assert reader.recorded() is None  # the job token may not list the tree: ask per commit
    loaded = reader.load(SHA_A)
    assert loaded is not None and to_json(loaded) == to_json(results(SHA_A)) and reader.load(SHA_B) is None
    assert {r.auth for r in fake.requests[before:]} == {"job"}
    with pytest.raises(ReadOnlyTokenError, match="CI_JOB_TOKEN cannot"):
        reader.save(results(SHA_B))
    assert len(fake.requests) == before + 2


def test_gitlab_token_holding_the_job_token_is_the_job_token(fake: FakeGitLab) -> None:
    env = ci_env(fake, CML_BOT_TOKEN=None, GITLAB_TOKEN=fake.job_token)
    assert store_from(env).forge.token_kind == "job"


def test_gitlab_token_is_used_and_a_rejected_token_is_not_shown(fake: FakeGitLab) -> None:
    env = ci_env(fake, CML_BOT_TOKEN=None, GITLAB_TOKEN=fake.token)
    store = store_from(env)
    store.save(results(SHA_A))
    assert {r.auth for r in fake.iter_requests()} == {"private"}

    bad = "glpat-revoked-token-000"
    store = store_from(ci_env(fake, CML_BOT_TOKEN=bad))
    with pytest.raises(HttpError, match="check CML_BOT_TOKEN") as info:
        store.recorded()
    assert bad not in info.value.message and bad not in repr(store)


def test_the_app_uses_the_data_branch_on_gitlab_and_a_local_folder_otherwise(
    fake: FakeGitLab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "cml-bot.yaml").write_text("metrics: [metrics.json]\nbaseline: {data_branch: ml-results}\n")
    config = load_config(tmp_path)
    env = ci_env(fake)

    store = default_store_factory(config, gitlab_context(env), env)
    assert isinstance(store, GitLabStore) and store.branch == "ml-results"

    job_env = ci_env(fake, CML_BOT_TOKEN=None)
    job_store = default_store_factory(config, gitlab_context(job_env), job_env)
    assert isinstance(job_store, GitLabStore) and job_store.forge.token_kind == "job"  # it reads records

    none_env = ci_env(fake, CML_BOT_TOKEN=None, CI_JOB_TOKEN=None)
    with caplog.at_level(logging.WARNING, logger="cml_bot.app"):
        fallback = default_store_factory(config, gitlab_context(none_env), none_env)
    assert isinstance(fallback, LocalStore) and fallback.folder == tmp_path / ".cml-bot" / "records"
    assert "no token" in caplog.text

    assert isinstance(default_store_factory(config, CiContext(platform="local"), {}), LocalStore)
    assert fake.requests == []


def test_a_store_error_is_a_forge_error(make_store: Callable[..., GitLabStore], fake: FakeGitLab) -> None:
    fake.write_files(BRANCH, {f"records/{SHA_A}.json": b"not json"})
    with pytest.raises(InputError, match=f"{BRANCH}:records/{SHA_A}.json: unreadable results"):
        make_store().load(SHA_A)
    assert issubclass(HttpError, ForgeError)


# -- end to end: record on main, report in a merge request -----------------------------------------

CONFIG = """\
title: GitLab model
metrics: [metrics.json]
thresholds:
  accuracy: {max_drop: 0.01}
"""


def cli(args: list[str], repo: GitRepo, env: dict[str, str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], env=env, console=Console(out, err))
    return code, out.getvalue() + err.getvalue()


def push_env(fake: FakeGitLab, sha: str) -> dict[str, str]:
    """A branch pipeline on main (no merge request variables)."""
    env = ci_env(
        fake,
        CI_PIPELINE_SOURCE="push",
        CI_MERGE_REQUEST_IID=None,
        CI_MERGE_REQUEST_PROJECT_ID=None,
        CI_MERGE_REQUEST_DIFF_BASE_SHA=None,
        CI_MERGE_REQUEST_TARGET_BRANCH_NAME=None,
        CI_MERGE_REQUEST_SOURCE_BRANCH_NAME=None,
        CI_COMMIT_SHA=sha,
        CI_COMMIT_REF_NAME="main",
    )
    env["PATH"] = "/usr/bin:/bin"
    return env


def test_record_on_main_then_report_in_a_merge_request_uses_the_recorded_merge_base(
    fake: FakeGitLab, repo: GitRepo, make_store: Callable[..., GitLabStore]
) -> None:
    # Metrics files are not committed: only the recorded results can be the baseline.
    repo.write("cml-bot.yaml", CONFIG)
    repo.write(".gitignore", "metrics.json\ncml-bot-report/\n")
    base = repo.commit("main: first model")
    repo.write("metrics.json", {"accuracy": 0.80})
    code, output = cli(["record"], repo, push_env(fake, base))
    assert code == 0, output
    assert f"recorded 1 metrics for {base[:10]} in {fake.web_url}/-/blob/{BRANCH}/records/{base}.json" in output

    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("train.py", "lr = 0.05\n")
    head = repo.commit("feature: lower learning rate")
    repo.git("checkout", "--quiet", "main")  # main moves on after the branch point
    repo.write("model.py", "better = True\n")
    tip = repo.commit("main: a better model")
    repo.write("metrics.json", {"accuracy": 0.95})
    code, output = cli(["record"], repo, push_env(fake, tip))
    assert code == 0, output
    assert record_commits(fake) and make_store().recorded() == {base, tip}

    repo.git("checkout", "--quiet", "feature")
    repo.write("metrics.json", {"accuracy": 0.85})
    fake.add_merge_request(MR_IID, sha=head)
    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base)
    env["PATH"] = "/usr/bin:/bin"

    code, output = cli(["report"], repo, env)

    assert code == 0, output
    (note,) = [n for n in fake.notes(MR_IID) if "cml-bot report" in n["body"]]
    body = note["body"].replace("\u200b", "")  # as read: shas are broken up so they link nothing
    # The clone knows main: git computes the merge-base (GitLab's DIFF_BASE_SHA can be stale, gitlab#442031).
    assert f"recorded results of the merge-base with main ({base[:10]})" in body
    assert "0.8" in body and "0.85" in body and "0.95" not in body  # never main's moving tip
    assert [(s["sha"], s["status"]) for s in fake.statuses] == [(head, "success")]
    assert not (repo.root / ".cml-bot").exists()  # nothing fell back to the local folder
    assert fake.token not in output
