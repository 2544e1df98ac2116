"""Values at the edge of float range (1e308, identical samples) make numpy and scipy warn; those
warnings would go straight to stderr, past cml-bot's console and its ``cml-bot: `` prefix. The
statistics silence the ones they expect and keep results honest: an overflow to inf gives no claim.

pytest runs with warnings as errors, so a warning left in the statistics fails these tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
from conftest import GitRepo

from cml_bot.stats.evidence import detectable_effect
from cml_bot.stats.history import change_points, history_noise
from cml_bot.stats.runs import compare_runs

BIG = 1e308


@pytest.mark.parametrize(
    ("base", "head"),
    [
        ([BIG, BIG, -BIG], [BIG, -BIG, BIG]),  # sums and squares overflow
        ([BIG, BIG], [-BIG, -BIG]),
        ([BIG, BIG * 0.999], [BIG]),
        ([1e300, 1e300, 1e300], [1e300, 1e300, 1.0000000001e300]),
        ([-BIG, -BIG, -BIG], [BIG, BIG, BIG]),
    ],
)
def test_overflowing_runs_make_no_claim_and_no_warning(base: list[float], head: list[float]) -> None:
    result = compare_runs(base, head)
    # No comparison, or one that claims nothing (a difference at float-rounding level).
    assert result is None or (result.p_up == 1.0 and result.p_down == 1.0)


@pytest.mark.parametrize(
    ("base", "head"),
    [([1.0, 1.0, 1.0], [1.0, 1.0, 1.0 + 1e-15]), ([1.0, 1.0, 1.0 + 2e-16], [1.0, 1.0, 1.0])],
)
def test_nearly_identical_runs_give_the_same_result_quietly(base: list[float], head: list[float]) -> None:
    with warnings.catch_warnings():  # scipy: "Precision loss occurred in moment calculation"
        warnings.simplefilter("ignore")
        expected = compare_runs(base, head)
    assert expected is not None and compare_runs(base, head) == expected


@pytest.mark.parametrize(
    "series",
    [
        [BIG, -BIG] * 5,  # differences overflow
        [BIG] * 10,
        [BIG] * 5 + [-BIG] * 5,
        [1e300 * (1 + i * 1e-16) for i in range(12)],
    ],
)
def test_an_overflowing_history_finds_no_change_point_and_no_noise_to_judge_by(series: list[float]) -> None:
    assert change_points(series) == ()
    noise = history_noise(series)
    assert noise is not None and noise.change_points == ()


def test_detectable_effect_of_a_huge_standard_error() -> None:
    assert detectable_effect(BIG) == float("inf")


def test_the_cli_on_extreme_values_keeps_stderr_to_its_own_lines(repo: GitRepo) -> None:
    base = {"accuracy": [0.8, 0.81, 0.79], "a_acc": [BIG, BIG, -BIG], "j_acc": [BIG, BIG], "n_acc": [1.0] * 3}
    head = {
        "accuracy": [0.5, 0.5, 0.5],
        "a_acc": [BIG, -BIG, BIG],
        "j_acc": [-BIG, -BIG],
        "n_acc": [1.0, 1.0, 1 + 1e-15],
    }
    repo.write("cml-bot.yaml", "metrics: [metrics.json]\n")
    repo.write("metrics.json", json.dumps(base))
    repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", json.dumps(head))
    repo.commit("change")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONWARNINGS", "GITHUB_", "GITLAB_", "CI"))}
    out = repo.root.parent / "report"
    result = subprocess.run(
        [sys.executable, "-m", "cml_bot", "report", "--dry-run", "-C", str(repo.root), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(line.startswith("cml-bot: ") for line in result.stderr.splitlines()), result.stderr
    assert "Warning" not in result.stderr, result.stderr
    report = (out / "report.md").read_text(encoding="utf-8")
    [row] = [line for line in report.splitlines() if line.startswith("| a\\_acc ")]
    assert "changed" in row and "worse" not in row and "better" not in row  # no claim from an overflow
