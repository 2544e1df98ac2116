"""The local path through app.run and the CLI, on real git histories."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from conftest import GitRepo

from cml_bot.app import RECORDS_DIR, Effects, Options, run
from cml_bot.cli import Console, main
from cml_bot.model import Verdict
from cml_bot.results import LocalStore, RunResults

CONFIG = """\
title: Test model
metrics: [metrics.json]
params: [params.yaml]
thresholds:
  accuracy: {max_drop: 0.01}
"""


def _cli(args: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(cwd)], env={"PATH": "/usr/bin:/bin"}, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def _record(repo: GitRepo, sha: str, accuracy: float) -> None:
    LocalStore(repo.root / RECORDS_DIR).save(RunResults(sha=sha, metrics={"accuracy": accuracy}))


def _project(repo: GitRepo, accuracy: float, lr: float = 0.1) -> str:
    repo.write("cml-bot.yaml", CONFIG)
    repo.write("metrics.json", {"accuracy": accuracy})
    repo.write("params.yaml", f"lr: {lr}\n")
    return repo.commit(f"accuracy {accuracy}")


def test_compares_with_merge_base_not_moving_tip(repo: GitRepo) -> None:
    base = _project(repo, 0.80)
    _record(repo, base, 0.80)
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.85})
    repo.commit("feature improves")
    repo.git("checkout", "--quiet", "main")
    tip = _project(repo, 0.95)  # main moves on after branching
    _record(repo, tip, 0.95)
    repo.git("checkout", "--quiet", "feature")

    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))

    change = outcome.report.diff.metrics[0]
    assert (change.base, change.head) == (0.80, 0.85)
    assert outcome.report.facts.base_sha == base
    assert outcome.verdict is Verdict.PASS
    assert "merge-base" in (outcome.report.facts.baseline_source or "")


def test_nearest_recorded_ancestor_says_how_far(repo: GitRepo) -> None:
    first = _project(repo, 0.80)
    _record(repo, first, 0.80)
    repo.write("README", "x")
    repo.commit("unrecorded 1")
    repo.write("README", "y")
    merge_base = repo.commit("unrecorded 2")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.70})
    repo.commit("worse")

    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))

    assert outcome.report.facts.base_sha == first
    assert "2 commits older" in (outcome.report.facts.baseline_source or "")
    assert merge_base[:10] in (outcome.report.facts.baseline_source or "")
    assert outcome.verdict is Verdict.REGRESSED
    assert outcome.report.diff.regressions[0].name == "accuracy"


def test_falls_back_to_committed_metrics_then_no_baseline(repo: GitRepo) -> None:
    _project(repo, 0.80)
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.81})
    repo.commit()
    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))
    assert "as committed" in (outcome.report.facts.baseline_source or "")
    assert outcome.report.diff.metrics[0].base == 0.80

    outcome = run(Options(root=repo.root, dry_run=True, base_rev="feature"), Effects(env={}))
    assert outcome.report.diff.metrics[0].base == 0.81


def test_no_baseline_when_branch_missing(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", CONFIG + "baseline: {branch: trunk}\n")
    repo.write("metrics.json", {"accuracy": 0.5})
    repo.commit()
    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))
    assert outcome.verdict is Verdict.NO_BASELINE
    assert "trunk not found" in (outcome.report.facts.baseline_source or "")
    text = (outcome.report_dir / "report.md").read_text()
    assert "No baseline" in text


def test_explicit_baseline_file(repo: GitRepo, tmp_path: Path) -> None:
    _project(repo, 0.80)
    base_file = tmp_path / "base.json"
    base_file.write_text('{"accuracy": 0.9}')
    outcome = run(Options(root=repo.root, dry_run=True, baseline_file=base_file), Effects(env={}))
    assert outcome.report.diff.metrics[0].base == 0.9
    assert outcome.verdict is Verdict.REGRESSED


def test_dry_run_writes_report_preview_and_records_on_main(repo: GitRepo) -> None:
    sha = _project(repo, 0.80)
    code, out, err = _cli(["report", "--dry-run"], repo.root)
    assert code == 0, err
    folder = repo.root / "cml-bot-report"
    assert (folder / "report.md").read_text().startswith("<!-- cml-bot report (id: default) -->")
    assert "<table>" in (folder / "index.html").read_text()
    assert str(folder / "report.md") in out
    assert (repo.root / RECORDS_DIR / f"{sha}.json").is_file()  # on main: recorded for later PRs


def test_fail_on_regression_sets_exit_code(repo: GitRepo) -> None:
    sha = _project(repo, 0.80)
    _record(repo, sha, 0.90)
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.commit("same metrics as main's commit, but main's record says 0.90")
    assert _cli(["report", "--dry-run"], repo.root)[0] == 0
    code, out, _ = _cli(["report", "--dry-run", "--fail-on-regression"], repo.root)
    assert code == 1
    assert "regressed: accuracy" in out


def test_pipeline_failure_is_reported_and_exits_1(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", CONFIG + "pipeline:\n  - {name: train, run: 'echo boom-line; exit 3'}\n")
    repo.commit()
    code, out, _ = _cli(["run", "--dry-run"], repo.root)
    assert code == 1
    assert "pipeline failed: step 'train' exited with 3" in out
    report = (repo.root / "cml-bot-report" / "report.md").read_text()
    assert "boom-line" in report
    assert "Pipeline failed" in report


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("metrics: 5\n", "cml-bot.yaml at metrics: expected a list"),
        ("plots: [{path: a.csv, template: pie}]\n", "plots[0].template: expected one of"),
        ("title: [\n", "cml-bot.yaml: line"),
        ("bogus: 1\n", "bogus: unknown key"),
    ],
)
def test_config_errors_are_one_line_exit_2(repo: GitRepo, config: str, message: str) -> None:
    repo.write("cml-bot.yaml", config)
    code, out, err = _cli(["report", "--dry-run"], repo.root)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_concurrent_records_keep_each_other(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "records")
    shas = [f"{i:040x}" for i in range(20)]
    threads = [
        threading.Thread(target=store.save, args=(RunResults(sha=sha, metrics={"m": i}),)) for i, sha in enumerate(shas)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [store.load(sha).metrics["m"] for sha in shas] == list(range(20))  # type: ignore[union-attr]
    assert not list((tmp_path / "records").glob(".*tmp"))


def test_base_branch_name_means_its_merge_base_and_a_sha_means_that_commit(repo: GitRepo) -> None:
    base = _project(repo, 0.80)
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.85})
    repo.commit("feature")
    repo.git("checkout", "--quiet", "main")
    tip = _project(repo, 0.95)
    repo.git("checkout", "--quiet", "feature")

    by_branch = run(Options(root=repo.root, dry_run=True, base_rev="main"), Effects(env={}))
    assert by_branch.report.facts.base_sha == base
    assert by_branch.report.diff.metrics[0].base == 0.80

    by_sha = run(Options(root=repo.root, dry_run=True, base_rev=tip[:12]), Effects(env={}))
    assert by_sha.report.facts.base_sha == tip
    assert by_sha.report.diff.metrics[0].base == 0.95
