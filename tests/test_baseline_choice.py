"""The right baseline, named: which commit a change is compared with, on real git histories, and
that the report calls it by its real name everywhere (tables, legends, verdict line, facts)."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest
from conftest import GitRepo

from cml_bot.app import RECORDS_DIR, Effects, Options, evaluate, record, run
from cml_bot.cli import Console, main
from cml_bot.errors import InputError
from cml_bot.model import Verdict
from cml_bot.results import LocalStore, RunResults

CONFIG = "metrics: [metrics.json]\nthresholds:\n  accuracy: {max_drop: 0.01}\n"


def _project(repo: GitRepo, accuracy: float, message: str = "train") -> str:
    repo.write("cml-bot.yaml", CONFIG)
    repo.write("metrics.json", {"accuracy": accuracy})
    return repo.commit(message)


def _cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(cwd)], env={"PATH": "/usr/bin:/bin", **(env or {})}, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def _report(repo: GitRepo) -> str:
    return (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8").replace("\u200b", "")  # as read


# --- the base branch ---------------------------------------------------------------------------------


def test_a_repository_whose_default_branch_is_master_compares_with_master(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "--quiet", "--initial-branch=master"], cwd=root, check=True)
    repo = GitRepo(root)
    base = _project(repo, 0.8)
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.85})
    repo.commit()

    outcome = run(Options(root=root, dry_run=True), Effects(env={}))

    assert outcome.report.facts.base_sha == base
    assert outcome.report.facts.base_ref == "master"
    assert outcome.report.facts.base_branch == "master (the branch named master in this clone)"
    assert re.search(r"\| Metric +\| master +\|", _report(repo))


def test_the_clones_origin_head_names_the_default_branch(repo: GitRepo, tmp_path: Path) -> None:
    _project(repo, 0.8)
    repo.git("branch", "-m", "trunk")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(repo.root), str(clone)], check=True)
    cloned = GitRepo(clone)
    cloned.git("checkout", "--quiet", "-b", "feature")
    cloned.write("metrics.json", {"accuracy": 0.9})
    cloned.commit()

    outcome = run(Options(root=clone, dry_run=True), Effects(env={}))

    assert outcome.report.facts.base_ref == "trunk"
    assert outcome.report.facts.base_branch == "trunk (the clone's default branch (origin/HEAD))"
    assert outcome.report.diff.metrics[0].base == 0.8


@pytest.mark.parametrize(
    ("env", "how"),
    [
        ({"GITLAB_CI": "true", "CI_DEFAULT_BRANCH": "develop", "CI_COMMIT_REF_NAME": "feature"}, "gitlab"),
    ],
)
def test_the_forges_default_branch_wins_over_guessing(repo: GitRepo, env: dict[str, str], how: str) -> None:
    _project(repo, 0.8)
    repo.git("checkout", "--quiet", "-b", "develop")
    develop = _project(repo, 0.7, "develop")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.75})
    repo.commit()

    outcome = run(Options(root=repo.root, dry_run=True), Effects(env=env))

    assert outcome.report.facts.base_sha == develop
    assert outcome.report.facts.base_branch == f"develop (the default branch on {how})"


def test_the_github_events_default_branch_is_used(repo: GitRepo) -> None:
    _project(repo, 0.8)
    repo.git("checkout", "--quiet", "-b", "develop")
    develop = _project(repo, 0.7, "develop")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.75})
    head = repo.commit()
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "o/r", "GITHUB_REF": "refs/heads/feature", "GITHUB_SHA": head}
    event = {"repository": {"full_name": "o/r", "default_branch": "develop"}}

    evaluation = evaluate(Options(root=repo.root, dry_run=True), Effects(env=env, event=event))

    assert evaluation.baseline.sha == develop
    assert evaluation.facts.base_branch == "develop (the default branch on github)"


def test_no_baseline_says_why_in_the_verdict_line(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", CONFIG + "baseline: {branch: trunk}\n")
    repo.write("metrics.json", {"accuracy": 0.5})
    repo.commit()
    run(Options(root=repo.root, dry_run=True), Effects(env={}))
    verdict = _report(repo).splitlines()[3]
    assert verdict.startswith("ℹ️ **No baseline**")
    assert "branch trunk not found (the branches here: main); set baseline.branch in cml-bot.yaml" in verdict


# --- --base and --baseline name the real baseline ---------------------------------------------------


def test_base_sha_is_named_by_its_short_sha_everywhere(repo: GitRepo) -> None:
    first = _project(repo, 0.8)
    _project(repo, 0.9, "second")
    repo.write("cml-bot.yaml", CONFIG + "plots: [log.csv]\n")
    repo.write("log.csv", "step,loss\n0,1\n1,0.5\n")
    repo.commit("plot")

    outcome = run(Options(root=repo.root, dry_run=True, base_rev=first[:12]), Effects(env={}))

    text = _report(repo)
    assert outcome.report.facts.base_ref == first[:7]
    assert f"against {first[:7]} at `{first[:10]}`" in text
    assert re.search(rf"\| Metric +\| {first[:7]} +\|", text)
    assert "main" not in text.split("<details>")[0]  # nowhere before the facts: not "main"


def test_base_tag_is_that_commit_not_a_merge_base(repo: GitRepo) -> None:
    tagged = _project(repo, 0.8)
    repo.git("tag", "v1.0")
    _project(repo, 0.9, "later")
    outcome = run(Options(root=repo.root, dry_run=True, base_rev="v1.0"), Effects(env={}))
    assert outcome.report.facts.base_sha == tagged
    assert outcome.report.facts.base_ref == "v1.0"
    assert (
        outcome.report.facts.baseline_source
        == f"metrics files as committed at tag v1.0 given with --base ({tagged[:10]})"
    )


def test_baseline_file_is_named_by_its_file(repo: GitRepo, tmp_path: Path) -> None:
    _project(repo, 0.8)
    base_file = tmp_path / "golden.json"
    base_file.write_text('{"accuracy": 0.9}')
    outcome = run(Options(root=repo.root, dry_run=True, baseline_file=base_file), Effects(env={}))
    text = _report(repo)
    assert outcome.report.facts.base_ref == "golden.json"
    assert "against golden.json" in text.splitlines()[3]
    assert re.search(r"\| Metric +\| golden\.json +\|", text)
    assert "main" not in text.split("<details>")[0]  # (the facts name this checkout's branch, main)


# --- the compared pair differs only by the change ------------------------------------------------------


def _merge_checkout(repo: GitRepo) -> tuple[str, str, str]:
    """main, a PR branch, main moving on, and GitHub's merge commit of the PR checked out."""
    _project(repo, 0.80)
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.82})
    pr_head = repo.commit("feature")
    repo.git("checkout", "--quiet", "main")
    main_tip = _project(repo, 0.90, "main moves on")  # main's own improvement
    repo.git("checkout", "--quiet", "--detach", main_tip)
    repo.git("merge", "--quiet", "--no-ff", "-X", "theirs", "-m", "Merge feature into main", pr_head)
    repo.write("metrics.json", {"accuracy": 0.91})  # what training on the merge gives
    repo.git("add", "-A")
    repo.git("commit", "--quiet", "--amend", "--no-edit")
    return pr_head, main_tip, repo.git("rev-parse", "HEAD")


def test_githubs_merge_commit_is_compared_with_its_first_parent(repo: GitRepo) -> None:
    pr_head, main_tip, merge = _merge_checkout(repo)
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_SHA": merge,
        "GITHUB_EVENT_NAME": "pull_request",
    }
    event = {"pull_request": {"number": 7, "head": {"sha": pr_head, "ref": "feature"}, "base": {"ref": "main"}}}

    evaluation = evaluate(Options(root=repo.root, dry_run=True), Effects(env=env, event=event))

    # main's own improvement (0.80 -> 0.90) is not counted as the PR's
    assert evaluation.baseline.sha == main_tip
    assert (
        evaluation.facts.compared
        == f"GitHub's merge commit {merge[:7]} (checked out) with its first parent {main_tip[:7]}"
    )
    assert evaluation.baseline.results is not None and evaluation.baseline.results.metrics["accuracy"] == 0.90


def test_the_prs_head_checked_out_is_compared_with_the_merge_base(repo: GitRepo) -> None:
    pr_head, _, _ = _merge_checkout(repo)
    repo.git("checkout", "--quiet", pr_head)
    merge_base = repo.git("merge-base", "main", pr_head)
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "o/r", "GITHUB_EVENT_NAME": "pull_request"}
    event = {"pull_request": {"number": 7, "head": {"sha": pr_head, "ref": "feature"}, "base": {"ref": "main"}}}

    evaluation = evaluate(Options(root=repo.root, dry_run=True), Effects(env=env, event=event))

    assert evaluation.baseline.sha == merge_base
    assert evaluation.facts.compared == f"{pr_head[:7]} with the merge-base with main ({merge_base[:7]})"


def test_gitlabs_merged_results_pipeline_is_compared_with_the_first_parent(repo: GitRepo) -> None:
    _, main_tip, merge = _merge_checkout(repo)
    env = {
        "GITLAB_CI": "true",
        "CI_COMMIT_SHA": merge,
        "CI_MERGE_REQUEST_IID": "3",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_MERGE_REQUEST_EVENT_TYPE": "merged_result",
    }
    evaluation = evaluate(Options(root=repo.root, dry_run=True), Effects(env=env))
    assert evaluation.baseline.sha == main_tip
    assert "GitLab's merged results commit" in (evaluation.facts.compared or "")


# --- dirty trees -----------------------------------------------------------------------------------


def test_record_refuses_a_dirty_tree_in_one_line(repo: GitRepo) -> None:
    _project(repo, 0.8)
    repo.write("metrics.json", {"accuracy": 0.5})  # an uncommitted edit on main
    code, _, err = _cli(["record"], repo.root)
    assert code == 2
    assert err.strip() == (
        "cml-bot: error: record: uncommitted changes in metrics.json; commit or stash them "
        "(results recorded for a commit must be its own)"
    )
    assert not (repo.root / RECORDS_DIR).exists()


def test_report_on_a_dirty_main_warns_and_records_nothing(repo: GitRepo) -> None:
    """The issue's case: a local run on main with an uncommitted edit must not become main's
    record (later runs would compare with 0.5 where DVC shows 0.8)."""
    _project(repo, 0.8)
    repo.write("metrics.json", {"accuracy": 0.5})
    code, out, err = _cli(["report", "--dry-run"], repo.root)
    assert code == 0
    assert "not recorded: uncommitted changes in metrics.json" in out
    assert "cml-bot: warning: Uncommitted changes in metrics.json" in err
    assert "> Uncommitted changes in metrics.json" in _report(repo)
    assert not (repo.root / RECORDS_DIR).exists()
    with pytest.raises(InputError, match=r"^--record: uncommitted changes"):
        run(Options(root=repo.root, dry_run=True, record=True), Effects(env={}))


def test_in_ci_rewritten_outputs_do_not_make_the_tree_dirty(repo: GitRepo) -> None:
    sha = _project(repo, 0.8)
    repo.write("metrics.json", {"accuracy": 0.81})  # the CI's training step rewrote a tracked output
    env = {"GITLAB_CI": "true", "CI_COMMIT_SHA": sha, "CI_COMMIT_REF_NAME": "main", "CI_DEFAULT_BRANCH": "main"}
    evaluation = evaluate(Options(root=repo.root, dry_run=True), Effects(env=env))
    assert evaluation.dirty == ()
    repo.write("train.py", "print(1)\n")
    repo.git("add", "train.py")
    assert evaluate(Options(root=repo.root, dry_run=True), Effects(env=env)).dirty == ("train.py",)


def test_a_clean_record_still_works(repo: GitRepo) -> None:
    sha = _project(repo, 0.8)
    outcome = record(Options(root=repo.root), Effects(env={}))
    assert outcome.recorded == str(repo.root / RECORDS_DIR / f"{sha}.json")
    assert LocalStore(repo.root / RECORDS_DIR).load(sha) is not None


# --- cml-bot diff A B: two revisions, exactly ---------------------------------------------------------


def test_diff_compares_two_revisions_exactly(repo: GitRepo) -> None:
    a = _project(repo, 0.8)
    repo.git("checkout", "--quiet", "-b", "feature")
    b = _project(repo, 0.7, "feature")
    repo.git("checkout", "--quiet", "main")
    _project(repo, 0.95, "main moves on")

    code, out, _ = _cli(["diff", "main", b[:10], "--fail-on-regression"], repo.root)

    assert code == 1  # 0.95 -> 0.7, exactly main's tip against b: no merge-base
    assert out.startswith("cml-bot: regressed: accuracy")
    text = _report(repo)
    assert "| accuracy | 0.95 | 0.7" in text
    code, _, _ = _cli(["diff", a[:10], b[:10]], repo.root)
    assert code == 0
    assert "| accuracy | 0.8" in _report(repo)


def test_diff_against_the_workspace_and_a_bad_revision(repo: GitRepo) -> None:
    _project(repo, 0.8)
    repo.write("metrics.json", {"accuracy": 0.85})
    code, out, _ = _cli(["diff", "HEAD"], repo.root)
    assert code == 0
    assert out.startswith("cml-bot: pass: 1 metric compared, 0 better, 0 worse, 1 changed without evidence")
    assert not (repo.root / RECORDS_DIR).exists()
    code, _, err = _cli(["diff", "nope"], repo.root)
    assert code == 2 and err.strip() == "cml-bot: error: nope: no such commit, branch or tag in this repository"


# --- -C subdir: base files read from the subfolder ------------------------------------------------------


def test_project_in_a_subfolder_with_dash_c_finds_its_baseline(repo: GitRepo) -> None:
    repo.write("proj/cml-bot.yaml", CONFIG)
    repo.write("proj/metrics.json", {"accuracy": 0.8})
    repo.commit()
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("proj/metrics.json", {"accuracy": 0.7})
    repo.commit()
    outcome = run(Options(root=repo.root / "proj", dry_run=True), Effects(env={}))
    assert outcome.verdict is Verdict.REGRESSED
    assert outcome.report.diff.metrics[0].base == 0.8


def test_verbose_says_what_was_read_from_where(repo: GitRepo) -> None:
    _project(repo, 0.8)
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.85})
    repo.commit()
    out, err = io.StringIO(), io.StringIO()
    import logging

    root_logger = logging.getLogger()
    handlers = root_logger.handlers[:]
    level = root_logger.level
    root_logger.handlers = []  # let the CLI configure logging as it does outside pytest
    try:
        main(
            ["-v", "report", "--dry-run", "-C", str(repo.root)],
            env={"PATH": "/usr/bin:/bin"},
            console=Console(out, err),
        )
    finally:
        for handler in root_logger.handlers:
            root_logger.removeHandler(handler)
        root_logger.handlers = handlers
        root_logger.setLevel(level)
    text = err.getvalue()
    assert "cml-bot: metrics files: metrics.json" in text
    assert "cml-bot: read 1 metrics from metrics.json in the workspace" in text
    assert "cml-bot: read 1 metrics from metrics.json in " in text.replace("the workspace", "")
    assert "cml-bot: baseline: metrics files as committed at the merge-base with main" in text


def test_diff_an_inconclusive_gate_fails_only_when_asked(repo: GitRepo) -> None:
    """Three seeds a side: the mean drops by more than max_drop, but within the seeds' spread."""
    repo.write("cml-bot.yaml", CONFIG)
    repo.write("metrics.json", {"accuracy": [0.90, 0.94, 0.86]})
    repo.commit("three seeds")
    repo.write("metrics.json", {"accuracy": [0.88, 0.93, 0.84]})

    code, out, _ = _cli(["diff", "HEAD", "--fail-on-regression"], repo.root)
    assert code == 0, out
    assert out.startswith("cml-bot: inconclusive: accuracy may have worsened beyond the threshold")
    code, out, _ = _cli(["diff", "HEAD", "--fail-on-inconclusive"], repo.root)
    assert code == 1, out


def test_the_report_folder_never_shows_an_earlier_runs_flips(repo: GitRepo) -> None:
    _project(repo, 0.8)
    stale = repo.root / "cml-bot-report" / "prediction-flips.csv"
    stale.parent.mkdir()
    stale.write_text("id,label,base,head\nold,1,1,2\n", encoding="utf-8")
    code, out, _ = _cli(["diff", "HEAD"], repo.root)
    assert code == 0, out
    assert not stale.exists()  # this run judged no predictions: an old list must not look current


def test_a_committed_file_over_the_limit_is_refused_before_it_is_read(repo: GitRepo) -> None:
    """The baseline's files come from git: bounded like the workspace's (limits.file_mb)."""
    repo.write("cml-bot.yaml", CONFIG + "limits: {file_mb: 0.001}\n")
    repo.write("metrics.json", '{"accuracy": 0.8, "padding": "' + "x" * 2000 + '"}')
    repo.commit("a big metrics file")
    repo.write("metrics.json", {"accuracy": 0.85})

    code, _, err = _cli(["diff", "HEAD"], repo.root)

    assert code == 2
    assert err.strip().startswith("cml-bot: error: metrics.json at ")
    assert "more than the limit of" in err and "limits.file_mb" in err


# --- plots declared as folders ---------------------------------------------------------------------


def test_a_plot_folder_in_cml_bot_yaml_is_read_at_the_base_commit(repo: GitRepo) -> None:
    # dvclive's plots folder, declared in cml-bot.yaml: the base side comes from the committed files,
    # listed in the base commit's own tree (not the folder path read as a file: "this change only").
    repo.write("cml-bot.yaml", "metrics: [metrics.json]\nplots: [dvclive/plots/metrics]\n")
    repo.write("metrics.json", {"loss": 0.5})
    repo.write("dvclive/plots/metrics/loss.tsv", "step\tloss\n0\t0.9\n1\t0.5\n")
    repo.write("dvclive/plots/metrics/notes.txt", "no plot\n")
    repo.commit("base")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"loss": 0.4})
    repo.write("dvclive/plots/metrics/loss.tsv", "step\tloss\n0\t0.8\n1\t0.4\n")
    repo.commit("better")
    evaluation = evaluate(Options(root=repo.root, dry_run=True), Effects(env={}))
    assert [spec.path for spec in evaluation.config.plots] == ["dvclive/plots/metrics/loss.tsv"]
    assert evaluation.baseline.source.startswith("metrics files as committed")
    assert evaluation.baseline.results is not None
    assert evaluation.baseline.results.files == {"dvclive/plots/metrics/loss.tsv": b"step\tloss\n0\t0.9\n1\t0.5\n"}


class _CountingStore(LocalStore):
    """A real local store that counts its listings and loads (a forge's store pays for each)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.listings = 0
        self.loads: list[str] = []

    def recorded(self) -> set[str]:
        self.listings += 1
        return super().recorded()

    def load(self, sha: str) -> RunResults | None:
        self.loads.append(sha)
        return super().load(sha)


def test_the_baseline_and_the_trend_read_the_records_once(repo: GitRepo) -> None:
    shas = [_project(repo, accuracy, f"main {i}") for i, accuracy in enumerate((0.80, 0.81, 0.82))]
    store = _CountingStore(repo.root / RECORDS_DIR)
    for sha in shas:
        store.save(RunResults(sha=sha, metrics={"accuracy": 0.8}))
    repo.git("checkout", "--quiet", "-b", "feature")
    _project(repo, 0.9, "feature")
    stores: list[_CountingStore] = []

    def factory(*args: object, **kwargs: object) -> _CountingStore:
        stores.append(_CountingStore(repo.root / RECORDS_DIR))
        return stores[-1]

    evaluation = evaluate(Options(root=repo.root, dry_run=True), Effects(env={}, store_factory=factory))
    assert evaluation.baseline.sha == shas[-1] and len(evaluation.history) == 3
    (used,) = stores
    assert used.listings == 1  # the baseline search and the trend share one listing
    assert sorted(used.loads) == sorted(shas)  # each recorded commit loaded once

    stores.clear()
    evaluate(Options(root=repo.root, dry_run=True, compare=(shas[0], shas[1])), Effects(env={}, store_factory=factory))
    assert [s.listings for s in stores] == [1]  # `diff A B`: one listing for both revisions
