"""Three-valued outcomes end to end: through cml_bot.app and the CLI on real git repositories, with
per-example predictions committed or recorded at the base, repeated runs, and recorded history."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from conftest import GitRepo

from cml_bot.app import RECORDS_DIR, Effects, Options, run
from cml_bot.cli import Console, main
from cml_bot.diff import Gate, Outcome
from cml_bot.model import Verdict
from cml_bot.results import LocalStore, RunResults

N = 2000
CLASSES = ("cat", "dog", "fox")


def _config(max_drop: float = 0.01) -> str:
    return (
        "title: Pets\nmetrics: [metrics.json]\npredictions: predictions.csv\n"
        f"thresholds:\n  accuracy: {{max_drop: {max_drop}}}\n"
    )


def _base_predictions(seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    rng = np.random.default_rng(seed)
    ids = [f"img-{i:05d}" for i in range(N)]
    labels = [CLASSES[c] for c in rng.integers(0, 3, N)]
    wrong = rng.random(N) < 0.10  # 90% accurate
    predicted = [CLASSES[(CLASSES.index(y) + 1) % 3] if w else y for y, w in zip(labels, wrong, strict=True)]
    return ids, labels, predicted


def _flip(labels: list[str], predicted: list[str], fixed: int, broken: int) -> list[str]:
    """Head = base with ``fixed`` wrong predictions made right and ``broken`` right ones made wrong."""
    head = list(predicted)
    wrong = [i for i, (y, p) in enumerate(zip(labels, predicted, strict=True)) if y != p]
    right = [i for i, (y, p) in enumerate(zip(labels, predicted, strict=True)) if y == p]
    for i in wrong[:fixed]:
        head[i] = labels[i]
    for i in right[-broken:] if broken else []:
        head[i] = CLASSES[(CLASSES.index(labels[i]) + 2) % 3]
    return head


def _write(repo: GitRepo, ids: list[str], labels: list[str], predicted: list[str], extra: dict[str, object]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "label", "prediction"])
    writer.writerows(zip(ids, labels, predicted, strict=True))
    repo.write("predictions.csv", buffer.getvalue())
    accuracy = sum(y == p for y, p in zip(labels, predicted, strict=True)) / len(labels)
    repo.write("metrics.json", {"accuracy": round(accuracy, 5), **extra})


def _branch(repo: GitRepo, fixed: int, broken: int, max_drop: float = 0.01, record: bool = False) -> None:
    ids, labels, predicted = _base_predictions()
    repo.write("cml-bot.yaml", _config(max_drop))
    _write(repo, ids, labels, predicted, {})
    repo.commit("main: baseline")
    if record:
        assert _cli(["record"], repo.root)[0] == 0
    repo.git("checkout", "--quiet", "-b", "change")
    _write(repo, ids, labels, _flip(labels, predicted, fixed, broken), {})
    repo.commit("change")


def _cli(args: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(cwd)], env={"PATH": "/usr/bin:/bin"}, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def test_a_change_inside_the_noise_passes_with_no_detectable_change(repo: GitRepo) -> None:
    _branch(repo, fixed=20, broken=24)  # -0.2 pp on 2,000 examples; the base is committed metrics

    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))

    accuracy = outcome.report.diff.metrics[0]
    assert outcome.verdict is Verdict.PASS
    assert accuracy.outcome is Outcome.NO_CHANGE and accuracy.gate is Gate.PASS and accuracy.improved is None
    assert accuracy.evidence is not None and accuracy.evidence.source == "examples"
    assert accuracy.evidence.delta == pytest.approx(-0.002)
    assert accuracy.evidence.low is not None and accuracy.evidence.low < -0.002 < 0 < (accuracy.evidence.high or 0)
    text = (outcome.report_dir / "report.md").read_text().replace("\\", "")
    assert "as committed" in (outcome.report.facts.baseline_source or "")
    assert "≈ no detectable change" in text and "mid-p McNemar test (20 fixed, 24 broken)" in text
    assert "**Predictions: 20 examples fixed, 24 broken**" in text
    flips = (outcome.report_dir / "prediction-flips.csv").read_text().splitlines()
    assert len(flips) == 1 + 44 and flips[0] == "id,label,base,head,change"


def test_a_significant_drop_beyond_the_threshold_regresses(repo: GitRepo) -> None:
    _branch(repo, fixed=20, broken=100, record=True)  # -4 pp; the base comes from recorded results

    code, out, _ = _cli(["report", "--dry-run", "--fail-on-regression"], repo.root)

    assert code == 1 and "regressed: accuracy" in out
    text = (repo.root / "cml-bot-report" / "report.md").read_text().replace("\\", "")
    assert "recorded results of the merge-base" in text
    assert "dropped by 0.04 (allowed 0.01); significant (one-sided p < 0.001, α = 0.05)" in text
    assert "First 10 broken examples" in text and "| img-" in text


def test_a_drop_beyond_the_threshold_that_may_be_noise_is_inconclusive(repo: GitRepo, tmp_path: Path) -> None:
    _branch(repo, fixed=20, broken=28, max_drop=0.002)  # -0.4 pp, allowed 0.2 pp, p ~ 0.16

    outcome = run(Options(root=repo.root, dry_run=True, junit=tmp_path / "junit.xml"), Effects(env={}))

    accuracy = outcome.report.diff.metrics[0]
    assert outcome.verdict is Verdict.INCONCLUSIVE and accuracy.gate is Gate.INCONCLUSIVE
    assert accuracy.failures == ()
    sentence = accuracy.inconclusive[0]
    assert sentence.startswith("may have dropped: -0.40 pp, 95% CI [-")
    assert "these 2,000 examples can detect >= " in sentence and sentence.endswith("add examples or seeds")
    assert outcome.summary.startswith("inconclusive: accuracy may have worsened")
    text = (outcome.report_dir / "report.md").read_text()
    assert "⚠️ **Inconclusive**" in text and "**Inconclusive gates**" in text and "⚠️ inconclusive" in text
    case = ET.parse(tmp_path / "junit.xml").getroot().find("testcase")
    assert case is not None and case.find("failure") is None
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("message", "").startswith("inconclusive: accuracy may have dropped")
    # Exit codes: inconclusive is not a failure unless asked, even with --fail-on-regression.
    assert _cli(["report", "--dry-run", "--fail-on-regression"], repo.root)[0] == 0
    assert _cli(["report", "--dry-run", "--fail-on-inconclusive"], repo.root)[0] == 1


def test_a_changed_evaluation_set_is_stated_and_paired_on_common_ids(repo: GitRepo) -> None:
    ids, labels, predicted = _base_predictions()
    repo.write("cml-bot.yaml", _config())
    _write(repo, ids, labels, predicted, {})
    repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "more-data")
    head_ids = [*ids[10:], "new-1", "new-2"]
    head_labels = [*labels[10:], "cat", "dog"]
    _write(repo, head_ids, head_labels, [*predicted[10:], "cat", "cat"], {})
    repo.commit("eval set changed")

    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))

    report = outcome.report.predictions
    assert report is not None and (report.common, report.added, report.removed) == (N - 10, 2, 10)
    assert report.added_ids == ("new-1", "new-2") and report.removed_ids[0] == "img-00000"
    text = (outcome.report_dir / "report.md").read_text().replace("\\", "")
    assert "**The evaluation set changed**: 2 examples added, 10 removed" in text
    assert "paired tests use the common ones" in text
    assert outcome.report.diff.metrics[0].evidence is not None  # confirmed on head's full set


def test_label_resamples_are_drawn_once_for_the_label_metrics_and_the_per_class_changes(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cml_bot.stats import example_metrics

    draws: list[tuple[int, int]] = []
    original = example_metrics.label_sums

    def counted(data: example_metrics.PairedExamples, resamples: int, seed: int) -> example_metrics.LabelSums:
        draws.append((len(data.classes), resamples))
        return original(data, resamples, seed)

    monkeypatch.setattr(example_metrics, "label_sums", counted)
    ids, labels, predicted = _base_predictions()
    repo.write("cml-bot.yaml", _config())
    _write(repo, ids, labels, predicted, {"f1_macro": 0.5})
    repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "more-data")  # a changed set: head's values are computed on their own
    _write(repo, [*ids[10:], "new-1"], [*labels[10:], "cat"], [*predicted[10:], "dog"], {"f1_macro": 0.5})
    repo.commit("eval set changed")

    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))

    assert outcome.report.predictions is not None and outcome.report.predictions.classes  # per-class rows shown
    assert draws.count((len(CLASSES), 2000)) == 1  # f1_macro and the per-class F1 share one draw


def test_a_metric_that_does_not_match_the_predictions_is_not_judged_by_them(repo: GitRepo) -> None:
    _branch(repo, fixed=20, broken=24)
    repo.write("metrics.json", {"accuracy": 0.5})  # not what predictions.csv gives
    repo.commit("wrong metrics")
    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))
    assert outcome.report.diff.metrics[0].evidence is None
    assert any("does not match what predictions.csv gives" in note for note in outcome.report.notes)


def test_repeated_runs_get_welch_and_history_gets_main_s_usual_variation(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", "metrics: [metrics.json]\nthresholds:\n  throughput: {direction: higher}\n")
    store = LocalStore(repo.root / RECORDS_DIR)
    rng = np.random.default_rng(1)
    for i in range(8):  # main's recorded history: single runs with noise 0.5
        repo.write("metrics.json", {"throughput": 100.0, "latency": 10.0})
        sha = repo.commit(f"main {i}")
        store.save(
            RunResults(sha, {"throughput": 100 + rng.normal() * 0.5, "latency": 10 + rng.normal() * 0.1, "acc": 0.9})
        )
    repo.git("checkout", "--quiet", "-b", "change")
    repo.write("metrics.json", {"throughput": 100.4, "latency": 12.0, "acc": [0.95, 0.96, 0.955, 0.96]})
    repo.commit("change")

    outcome = run(Options(root=repo.root, dry_run=True), Effects(env={}))

    by_name = {m.name: m for m in outcome.report.diff.metrics}
    throughput, latency, acc = by_name["throughput"], by_name["latency"], by_name["acc"]
    assert throughput.evidence is not None and throughput.evidence.source == "history"
    assert throughput.outcome is Outcome.NO_CHANGE  # +0.4 against a usual variation of about ±1.4
    assert latency.outcome is Outcome.WORSE and latency.improved is False  # +2 against about ±0.3
    assert acc.evidence is not None and acc.evidence.source == "runs" and acc.outcome is Outcome.BETTER
    text = (outcome.report_dir / "report.md").read_text().replace("\\", "")
    assert "main's usual variation of a change is ±" in text and "1 vs 4 runs: Student's t-test" in text
    assert "Trend on main" in text and (outcome.report_dir / "trend.png").is_file()
    assert json.loads(json.dumps(outcome.summary))  # one plain line
