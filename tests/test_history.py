"""Recorded history: `cml-bot record`, the trend plot, and matrix fan-in with `--shard` / `merge`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import GitRepo

from cml_bot import evaluation
from cml_bot.app import RECORDS_DIR
from cml_bot.cli import Console, main

CONFIG = """\
title: Sweep
metrics: [metrics.json]
params: [params.yaml]
thresholds:
  accuracy: {max_drop: 0.02}
"""


def _cli(args: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(cwd)], env={"PATH": "/usr/bin:/bin"}, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def _main_history(repo: GitRepo, accuracies: list[float]) -> list[str]:
    repo.write("cml-bot.yaml", CONFIG)
    shas = []
    for accuracy in accuracies:
        repo.write("metrics.json", {"accuracy": accuracy, "loss": 1 - accuracy})
        repo.write("params.yaml", "lr: 0.1\n")
        shas.append(repo.commit(f"main {accuracy}"))
        code, out, err = _cli(["record"], repo.root)
        assert code == 0, err
        assert f"recorded 2 metrics for {shas[-1][:10]}" in out
    return shas


def test_record_then_trend_over_recorded_main(repo: GitRepo) -> None:
    shas = _main_history(repo, [0.80, 0.82, 0.84])
    assert {p.stem for p in (repo.root / RECORDS_DIR).glob("*.json")} == set(shas)
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.86, "loss": 0.14})
    repo.commit("feature")

    code, _, err = _cli(["report", "--dry-run"], repo.root)
    assert code == 0, err
    report = (repo.root / "cml-bot-report" / "report.md").read_text()
    assert "**Trend on main**" in report
    assert "the last 3 recorded commits of main" in report
    trend = repo.root / "cml-bot-report" / "trend.png"
    assert trend.read_bytes().startswith(b"\x89PNG")


def test_record_refuses_without_metrics(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", "metrics: []\n")
    repo.commit()
    code, _, err = _cli(["record"], repo.root)
    assert code == 2
    assert "record: no metrics found" in err


def test_shards_merge_into_one_table(repo: GitRepo, tmp_path: Path) -> None:
    _main_history(repo, [0.80])
    repo.git("checkout", "--quiet", "-b", "sweep")
    repo.write("train.py", "# the sweep's code change\n")
    repo.commit("sweep")
    shard_root = tmp_path / "shards"
    for name, accuracy, lr in (("lr-0.1", 0.81, 0.1), ("lr-1.0", 0.70, 1.0)):
        repo.write("metrics.json", {"accuracy": accuracy, "loss": 1 - accuracy})
        repo.write("params.yaml", f"lr: {lr}\n")
        code, out, err = _cli(["report", "--shard", name, "--bundle-dir", str(shard_root)], repo.root)
        assert code == 0, err
        assert f"shard {name}:" in out
        assert json.loads((shard_root / name / "run.json").read_text())["shard"] == name

    code, out, err = _cli(
        ["merge", str(shard_root / "lr-0.1"), str(shard_root / "lr-1.0"), "--dry-run", "--fail-on-regression"],
        repo.root,
    )
    assert code == 1, err  # lr-1.0 drops accuracy by 0.10 > 0.02
    assert "regressed: in lr-1.0 (1 of 2 shards)" in out
    report = (repo.root / "cml-bot-report" / "report.md").read_text()
    assert report.count("<!-- cml-bot report (id: default) -->") == 1
    table = [line for line in report.splitlines() if line.startswith("| accuracy")]
    assert len(table) == 1  # one row, one column per shard
    assert "0.8 " in table[0] and "0.81" in table[0] and "0.7 " in table[0]
    assert "lr-1.0: accuracy dropped by 0.1" in report


def test_merge_rejects_non_shard_folder(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("cml-bot.yaml", CONFIG)
    repo.commit()
    code, _, err = _cli(["merge", str(tmp_path), "--dry-run"], repo.root)
    assert code == 2
    assert "not a cml-bot bundle or shard folder" in err


def test_the_trend_shades_the_noise_the_verdict_measured_without_measuring_it_again(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    _main_history(repo, [0.80, 0.81, 0.79, 0.80, 0.82, 0.81])
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.86, "loss": 0.14})
    repo.commit("feature")
    measured: list[list[float]] = []
    real = evaluation.history_noise

    def counting(values: list[float]) -> object:
        measured.append(list(values))
        return real(values)

    monkeypatch.setattr(evaluation, "history_noise", counting)
    code, _, err = _cli(["report", "--dry-run"], repo.root)
    assert code == 0, err
    report = (repo.root / "cml-bot-report" / "report.md").read_text()
    assert "shaded: the usual variation of one run" in report
    # The headline metric (accuracy, gated) was measured by the verdict: the trend reuses it.
    assert [0.80, 0.81, 0.79, 0.80, 0.82, 0.81] not in measured
