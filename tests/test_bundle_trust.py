"""A bundle is data judged by trusted code (issue 10, point 5): what a hostile bundle may choose, and
what it may not. Bundles are made by a real run (``report --no-post``), tampered with as an attacker
would, then published through ``cml_bot.cli.main`` against the fake GitHub."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import GitRepo
from fake_github import HEAD_SHA, TOKEN, FakeGitHub, fake_github, github_env

from cml_bot.bundle import MAX_DEPTH, MAX_VALUES, load_run
from cml_bot.cli import Console, main
from cml_bot.errors import InputError

__all__ = ["fake_github"]  # the fixture, imported for pytest

CONFIG = """\
title: Trusted model
metrics: [metrics.json]
plots:
  - path: confusion.png
    title: Confusion
thresholds:
  accuracy: {max_drop: 0.01}
"""
PNG = bytes.fromhex(  # a real 2x2 PNG, written by Pillow
    "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a730000001649444154789c63fccfc0c0c0c0c0c4"
    "c0c0c0c0c000000d1d01036ac29be90000000049454e44ae426082"
)


def cli(args: list[str], env: dict[str, str], repo: GitRepo) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], env=env, console=Console(out, err), sleep=lambda _: None)
    return code, out.getvalue(), err.getvalue()


def fork_run(fake: FakeGitHub, repo: GitRepo, tmp_path: Path) -> Path:
    """main at 0.80; the PR's change drops accuracy to 0.70 (a regression); its bundle."""
    repo.write("cml-bot.yaml", CONFIG)
    repo.write("metrics.json", {"accuracy": 0.80})
    repo.write("confusion.png", PNG)
    main_sha = repo.commit("main")
    # GitHub knows the PR's commits: the compare API gives the trusted side the merge-base.
    fake.add_commit(main_sha, [], branch="main")
    fake.add_commit(HEAD_SHA, [main_sha])
    repo.git("checkout", "--quiet", "-b", "changes")
    repo.write("metrics.json", {"accuracy": 0.70})
    repo.commit("worse")
    bundle = tmp_path / "bundle"
    env = github_env(fake, GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))
    code, out, err = cli(["report", "--base", "main", "--no-post", "--bundle-dir", str(bundle)], env, repo)
    assert code == 0 and (bundle / "run.json").is_file(), out + err
    assert fake.comments_on(2) == [] and fake.statuses == []  # --no-post: nothing posted
    return bundle


def trusted_env(fake: FakeGitHub, tmp_path: Path) -> dict[str, str]:
    event = tmp_path / "workflow_run.json"
    run = {
        "event": "pull_request",
        "head_sha": HEAD_SHA,
        "head_branch": "changes",
        "html_url": f"{fake.server_url}/{fake.full_name}/actions/runs/999",
        "pull_requests": [],
    }
    event.write_text(json.dumps({"workflow_run": run}), encoding="utf-8")
    return {
        **github_env(fake),
        "GITHUB_EVENT_NAME": "workflow_run",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_SHA": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "GITHUB_TOKEN": TOKEN,
    }


def tamper(bundle: Path, change: Any) -> None:
    document = json.loads((bundle / "run.json").read_text(encoding="utf-8"))
    change(document)
    (bundle / "run.json").write_text(json.dumps(document), encoding="utf-8")


def publish(fake: FakeGitHub, repo: GitRepo, tmp_path: Path, bundle: Path, *extra: str) -> tuple[int, str, str]:
    return cli(["publish", "--bundle", str(bundle), "--head-sha", HEAD_SHA, *extra], trusted_env(fake, tmp_path), repo)


def test_the_bundle_cannot_choose_its_baseline_run_url_mode_platform_or_repo(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    bundle = fork_run(fake_github, repo, tmp_path)
    fake_github.add_comment(2, "a review comment", login="octocat")
    fake_github.add_pull(7, "c" * 40)  # the PR the bundle names

    def attack(document: dict[str, Any]) -> None:
        document["base"]["metrics"] = {"accuracy": 0.70}  # "my base was as bad": pass the gate
        document["baseline"]["source"] = "**trust me**"
        document["run_url"] = "https://evil.example/\n| injected | row |"
        document["mode"] = "recreate"
        document["platform"] = "gitlab"
        document["repo"] = "victim/other-repo"
        document["change_number"] = 7  # another PR

    tamper(bundle, attack)
    code, out, err = publish(fake_github, repo, tmp_path, bundle, "--fail-on-regression")

    assert code == 1, out + err  # the trusted baseline (main at 0.80) judges the 0.70
    [review, comment] = fake_github.comments_on(2)  # mode update (this side's), no other PR touched
    assert review["body"] == "a review comment"
    body = comment["body"]
    assert "Regressed" in body and "0.8" in body and "trust me" not in body
    assert "evil.example" not in body and "injected" not in body
    assert all(
        status["target_url"] == f"https://github.com/{fake_github.full_name}/actions/runs/999"
        for status in fake_github.statuses
    )
    assert [s["state"] for s in fake_github.statuses] == ["failure"]
    assert fake_github.comments_on(7) == []


def test_an_html_page_posing_as_an_image_is_left_out(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    import base64

    bundle = fork_run(fake_github, repo, tmp_path)
    page = b"<html><script>alert(1)</script></html>"
    tamper(bundle, lambda d: d["head"]["files"].update({"confusion.png": base64.b64encode(page).decode()}))

    code, out, err = publish(fake_github, repo, tmp_path, bundle)

    assert code == 0, out + err
    [comment] = fake_github.comments_on(2)
    assert "confusion.png from the saved run was left out: does not decode as an image" in comment["body"]
    assets = fake_github.refs.get("refs/heads/cml-bot-assets")
    stored = fake_github.commit_files(assets) if assets else {}
    assert all(page not in data for data in stored.values())


def test_a_real_png_from_the_bundle_is_posted(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    bundle = fork_run(fake_github, repo, tmp_path)
    code, out, err = publish(fake_github, repo, tmp_path, bundle)
    assert code == 0, out + err
    stored = fake_github.commit_files(fake_github.refs["refs/heads/cml-bot-assets"])
    assert PNG in stored.values()


def test_a_bundle_for_another_commit_is_refused(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    bundle = fork_run(fake_github, repo, tmp_path)
    code, _out, err = cli(
        ["publish", "--bundle", str(bundle), "--head-sha", "b" * 40], trusted_env(fake_github, tmp_path), repo
    )
    assert code == 2 and "refusing to post" in err and err.count("\n") == 1
    assert fake_github.comments_on(2) == [] and fake_github.statuses == []


# -- reading a hostile run.json: bounded before anything is parsed ---------------------------------


def _fails_fast(folder: Path, expected: str) -> None:
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            load_run(folder)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(10)
    assert outcome, "load_run hung"
    assert isinstance(outcome[0], InputError) and expected in str(outcome[0]), outcome
    assert "\n" not in str(outcome[0])


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "run.json")
    _fails_fast(tmp_path, "is a FIFO, not a regular file")


def test_a_link_to_dev_zero_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run.json").symlink_to("/dev/zero")
    _fails_fast(tmp_path, "is a character device, not a regular file")


def test_too_many_metrics_are_refused_quickly(tmp_path: Path) -> None:
    metrics = {f"m{i}": i for i in range(MAX_VALUES + 1)}
    head = {"version": 1, "sha": "a" * 40, "metrics": metrics, "params": {}, "files": {}, "facts": {}}
    document = {"version": 2, "platform": "github", "mode": "update", "head": head, "baseline": {"source": "x"}}
    (tmp_path / "run.json").write_text(json.dumps(document), encoding="utf-8")
    _fails_fast(tmp_path, f"at most {MAX_VALUES:,}")


def test_deep_nesting_is_refused_before_parsing(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    _fails_fast(tmp_path, f"nested deeper than {MAX_DEPTH} levels")


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path: Path) -> None:
    head = {"version": 1, "sha": "a" * 40, "metrics": {"[[[[" * 20: 1.0}, "params": {}, "files": {}, "facts": {}}
    document = {
        "version": 2,
        "platform": "github",
        "mode": "update",
        "head_sha": "a" * 40,
        "head": head,
        "base": None,
        "baseline": {"source": "x"},
    }
    (tmp_path / "run.json").write_text(json.dumps(document), encoding="utf-8")
    assert load_run(tmp_path).head.metrics == {"[[[[" * 20: 1.0}


@pytest.mark.parametrize("size", [64 * 1024 * 1024 + 1])
def test_an_oversized_bundle_is_refused_by_its_size(tmp_path: Path, size: int) -> None:
    with open(tmp_path / "run.json", "wb") as handle:
        handle.truncate(size)  # sparse: no disk used
    _fails_fast(tmp_path, "more than the limit of 67.1 MB")


def _predictions(wrong: int, rows: int = 300) -> str:
    lines = ["id,label,prediction"]
    lines += [f"ex{i},{i % 3},{(i + 1) % 3 if i < wrong else i % 3}" for i in range(rows)]
    return "\n".join(lines) + "\n"


def test_the_bundles_predictions_are_judged_with_this_sides_baseline(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    """Per-example results travel in the bundle as data; the paired test runs on the trusted side
    against the base's predictions from this side's git."""
    repo.write("cml-bot.yaml", CONFIG + "predictions: predictions.csv\n")
    repo.write("metrics.json", {"accuracy": 0.90})
    repo.write("predictions.csv", _predictions(wrong=30))
    main_sha = repo.commit("main")
    fake_github.add_commit(main_sha, [], branch="main")
    fake_github.add_commit(HEAD_SHA, [main_sha])
    repo.git("checkout", "--quiet", "-b", "changes")
    repo.write("metrics.json", {"accuracy": 0.80})
    repo.write("predictions.csv", _predictions(wrong=60))
    repo.commit("worse")
    bundle = tmp_path / "bundle"
    env = github_env(fake_github, GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))
    code, out, err = cli(["report", "--base", "main", "--no-post", "--bundle-dir", str(bundle)], env, repo)
    assert code == 0, out + err

    code, out, err = publish(fake_github, repo, tmp_path, bundle)

    assert code == 0, out + err
    [comment] = fake_github.comments_on(2)
    assert "### Per-example results" in comment["body"]
    assert "**Predictions: 0 examples fixed, 30 broken**" in comment["body"]


def test_publish_keeps_every_file_a_plot_reads_and_nothing_else() -> None:
    """A DVC plot id whose x and y come from two files (dvc.yaml's ``{x: {a: step}, y: {b: loss}}``)."""
    from dataclasses import replace

    from cml_bot.config import PlotSource, PlotSpec, parse_config
    from cml_bot.delivery import _files_to_publish

    config = parse_config({"predictions": "predictions.csv"}, Path("."))
    plot = PlotSpec("loss", sources=(PlotSource("loss.csv", "loss", "step", "steps.csv"),))
    config = replace(config, plots=(plot,))
    files = {name: b"a,b\n1,2\n" for name in ("steps.csv", "loss.csv", "predictions.csv", "secret.txt")}

    kept, notes = _files_to_publish(config, files)

    assert sorted(kept) == ["loss.csv", "predictions.csv", "steps.csv"] and notes == []
