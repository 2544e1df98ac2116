"""Misconfiguration said out loud, with the closest names."""

from __future__ import annotations

from cml_bot.checks import closest, closest_hint, file_findings, threshold_findings
from cml_bot.config import Threshold
from cml_bot.diff import diff


def test_closest_prefers_similar_names_and_prefixes() -> None:
    assert closest("acc", ["accuracy", "loss", "f1"]) == ["accuracy"]
    assert closest("metric.json", ["metrics.json", "params.yaml"]) == ["metrics.json"]
    assert closest("zzz", ["accuracy"]) == []


def test_a_threshold_matching_no_metric_names_the_closest() -> None:
    result = diff({"accuracy": 0.8, "val.loss": 0.3}, {"accuracy": 0.8, "val.loss": 0.3})
    rules = [Threshold("acc", max_drop=0.01), Threshold("val.*", max_drop=0.1), Threshold("tst.*", min=0.5)]
    assert threshold_findings(rules, result) == [
        "thresholds: 'acc' matches no metric; closest: accuracy",
        "thresholds: 'tst.*' matches no metric",
    ]


def test_a_glob_gate_over_metrics_without_direction_says_so() -> None:
    result = diff({"val.widgets": 3, "val.acc": 0.8}, {"val.widgets": 4, "val.acc": 0.8})
    assert threshold_findings([Threshold("val.*", max_drop=0.1)], result) == [
        "thresholds: 'val.*' has max_drop, but cml-bot cannot tell better from worse for val.widgets; "
        "set direction: higher or lower"
    ]
    assert threshold_findings([Threshold("val.*", direction="higher", max_drop=0.1)], result) == []


def test_missing_files_name_similar_files_nearby() -> None:
    problems = {"metric.json": "metric.json: not found in the workspace", "bad.json": "bad.json: invalid JSON"}
    nearby = {"metric.json": ["metrics.json", "params.yaml"]}
    assert file_findings(problems, nearby) == [
        "metric.json: not found in the workspace; closest: metrics.json",
        "bad.json: invalid JSON",
    ]


def test_closest_hint_ends_a_finding_with_the_names_found() -> None:
    assert closest_hint(["a.csv", "b.csv"]) == "; closest: a.csv, b.csv"
    assert closest_hint([]) == ""
