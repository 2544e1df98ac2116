"""Point 6: bounded input everywhere, one-line errors (exit 2), a report the size of what it shows.

FIFOs and devices in place of a file are refused without a blocking read; oversized files are
refused by their size; YAML aliases and CSV rows count against the name cap; duplicate keys are
errors naming the key; dvc.yaml is type-checked field by field. Every case runs under the harness'
memory cap and alarm, so a hang or a blow-up fails the case.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adversarial.conftest import Project
from adversarial.harness import assert_clean


def roots(project: Project) -> tuple[Path, Path]:
    return (project.root, project.home)


def fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        pytest.param("metrics.json", "", id="metrics"),
        pytest.param("params.yaml", "", id="params"),
        pytest.param("curve.csv", "plots:\n  - {path: curve.csv, x: a, y: [b]}\n", id="plot"),
        pytest.param("baseline.json", "baseline: {file: baseline.json, branch: nowhere}\n", id="baseline-file"),
    ],
)
def test_a_fifo_in_place_of_a_file(project: Project, path: str, extra: str) -> None:
    project.config(extra)
    fifo(project.root / path)
    run = project.run("report", seconds=10)
    assert_clean(run, code=2, roots=roots(project), seconds=5)
    assert "FIFO" in run.err and path in run.err


@pytest.mark.parametrize("name", ["cml-bot.yaml", "dvc.yaml"])
def test_a_fifo_as_the_config(project: Project, name: str) -> None:
    fifo(project.root / name)
    run = project.run("report", seconds=10)
    assert_clean(run, code=2, roots=roots(project), seconds=5)
    assert "FIFO" in run.err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_symlink_to_an_endless_device(project: Project, device: str) -> None:
    (project.root / "metrics.json").unlink()
    (project.root / "metrics.json").symlink_to(device)
    run = project.run("report", seconds=10)
    assert_clean(run, code=2, roots=roots(project), seconds=5)
    assert "refusing to read it" in run.err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_an_endless_device_as_the_baseline_file(project: Project, device: str) -> None:
    link = project.home / "baseline.json"
    link.symlink_to(device)
    run = project.run("report", "--baseline", str(link), seconds=10)
    assert_clean(run, code=2, roots=roots(project), seconds=5)
    assert "is a character device, not a regular file" in run.err


def test_a_file_larger_than_the_cap_is_refused_unread(project: Project) -> None:
    project.config("limits: {file_mb: 0.01}\n")
    project.write("metrics.json", json.dumps({"accuracy": 0.9, "blob": "x" * 20_000}))
    run = project.run("report")
    assert_clean(run, code=2, roots=roots(project))
    assert "more than the limit of 10.0 KB" in run.err and "limits.file_mb" in run.err


def test_a_60_mb_metrics_file_under_the_default_cap(project: Project) -> None:
    with (project.root / "metrics.json").open("wb") as handle:
        handle.truncate(60_000_000)  # sparse: the size is what counts
    run = project.run("report")
    assert_clean(run, code=2, roots=roots(project), seconds=5)
    assert "60.0 MB, more than the limit of 50.0 MB" in run.err


def test_a_long_string_value_gives_a_report_of_its_own_size(project: Project) -> None:
    """1.2 MB in one value made a 366 MB report (every column padded to it): now the value is cut
    with a note and the report stays small."""
    project.write("metrics.json", {"accuracy": 0.9, "note": "y" * 1_200_000, **{f"m{i}": i for i in range(300)}})
    run = project.run("report")
    assert_clean(run, code=0, roots=roots(project))
    report = project.out.joinpath("report.md").read_text(encoding="utf-8")
    assert len(report) < 60_000, len(report)
    assert "(+1,199,000 characters)" in report


def test_a_yaml_alias_bomb_in_params(project: Project) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefgh":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]\n"
    project.write("params.yaml", bomb)  # a few hundred bytes, 10^8 names expanded
    run = project.run("report")
    assert_clean(run, code=2, roots=roots(project))
    assert "names and values" in run.err and "limits.names" in run.err


def test_a_million_row_name_value_csv_counts_against_the_cap(project: Project) -> None:
    project.write("cml-bot.yaml", "metrics: [scores.csv]\n")
    project.write("scores.csv", "name,value\n" + "".join(f"m{i},{i}\n" for i in range(1_000_000)))
    run = project.run("report")
    assert_clean(run, code=2, roots=roots(project))
    assert "scores.csv: has more than 100,000 names and values" in run.err, run.err


def test_the_name_cap_is_configurable(project: Project) -> None:
    project.config("limits: {names: 50}\n")
    project.write("metrics.json", {f"m{i}": i for i in range(60)})
    run = project.run("report")
    assert_clean(run, code=2, roots=roots(project))
    assert "more than 50 names" in run.err


def test_the_name_cap_counts_all_files_together(project: Project) -> None:
    project.config("limits: {names: 50}\n")
    project.write("metrics.json", {f"m{i}": i for i in range(30)})
    project.write("params.yaml", "".join(f"p{i}: {i}\n" for i in range(30)))
    run = project.run("report")
    assert_clean(run, code=2, roots=roots(project))
    assert "params.yaml" in run.err


@pytest.mark.parametrize(
    ("path", "content", "key"),
    [
        pytest.param("metrics.json", '{"accuracy": 0.9, "accuracy": 0.1}', "accuracy", id="json"),
        pytest.param("metrics.json", '{"a": {"b": 1, "b": 2}}', "b", id="json-nested"),
        pytest.param("params.yaml", "lr: 0.1\nlr: 0.2\n", "lr", id="yaml"),
        pytest.param("params.yaml", "opt:\n  lr: 1\n  lr: 2\n", "lr", id="yaml-nested"),
        pytest.param(
            "cml-bot.yaml", "thresholds:\n  accuracy: {min: 0.9}\n  accuracy: {min: 0}\n", "accuracy", id="config-gate"
        ),
        pytest.param("cml-bot.yaml", "metrics: [metrics.json]\ntitle: a\ntitle: b\n", "title", id="config-top"),
    ],
)
def test_a_duplicate_key_is_an_error_naming_it(project: Project, path: str, content: str, key: str) -> None:
    project.write(path, content)
    run = project.run("report")
    assert_clean(run, code=2, roots=roots(project))
    assert f"duplicate key '{key}'" in run.err


def test_duplicate_names_in_a_name_value_csv(project: Project) -> None:
    project.write("cml-bot.yaml", "metrics: [scores.csv]\n")
    project.write("scores.csv", "name,value\nacc,0.9\nloss,1\nacc,0.1\n")
    run = project.run("report")
    assert_clean(run, code=2, roots=roots(project))
    assert "name 'acc' appears twice (lines 2 and 4)" in run.err


def test_yaml_merge_keys_may_override(project: Project) -> None:
    project.write("params.yaml", "base: &b {lr: 0.1, wd: 0}\nrun:\n  <<: *b\n  lr: 0.2\n")
    run = project.run("report")
    assert_clean(run, code=0, roots=roots(project))
    assert "run.lr" in project.out.joinpath("report.md").read_text(encoding="utf-8")


DVC_YAML = [
    pytest.param("metrics: metrics.json\n", "metrics", id="metrics-string"),
    pytest.param("plots: 3\n", "plots", id="plots-number"),
    pytest.param("stages: [train]\n", "stages", id="stages-list"),
    pytest.param("stages:\n  train: 3\n", "stages.train", id="stage-number"),
    pytest.param("stages:\n  train:\n    metrics: m.json\n", "stages.train.metrics", id="stage-metrics-string"),
    pytest.param("stages:\n  train:\n    params: {lr: 1}\n", "stages.train.params", id="stage-params-mapping"),
    pytest.param("stages:\n  train:\n    params: [3]\n", "stages.train.params[0]", id="stage-param-number"),
    pytest.param("stages:\n  train:\n    params: [{params.yaml: 3}]\n", "params.yaml", id="param-keys"),
    pytest.param("stages:\n  train:\n    plots: [{p.csv: [1]}]\n", "stages.train.plots[0]", id="plot-options-list"),
    pytest.param("plots:\n  - p.csv: {x: [1]}\n", "plots[0].p.csv.x", id="plot-x-list"),
    pytest.param("plots:\n  - p.csv: {template: 3}\n", "template", id="plot-template-number"),
    pytest.param("plots:\n  - p.csv: {title: [t]}\n", "title", id="plot-title-list"),
]


@pytest.mark.parametrize(("content", "where"), DVC_YAML)
def test_every_dvc_yaml_field_is_type_checked(project: Project, content: str, where: str) -> None:
    project.write("dvc.yaml", content)
    run = project.run("report")
    assert_clean(run, code=2, roots=roots(project))
    assert run.err.startswith("cml-bot: error: dvc.yaml") and where in run.err, run.err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("limits: {file_mb: -1}\n", "limits.file_mb", id="negative"),
        pytest.param("limits: {names: 0}\n", "limits.names", id="zero"),
        pytest.param("limits: {names: true}\n", "limits.names", id="bool"),
        pytest.param("limits: {rows: 1}\n", "limits.rows: unknown key", id="unknown"),
    ],
)
def test_limits_are_validated(project: Project, content: str, expected: str) -> None:
    project.config(content)
    run = project.run("report")
    assert_clean(run, code=2, roots=roots(project))
    assert expected in run.err


def test_deep_nesting_and_bad_encoding_are_one_line(project: Project) -> None:
    """Malformed, not hostile: as DVC does, the report goes on with the file's metrics missing and
    a one-line warning naming the file (issue 12); never a traceback or a hang."""
    project.write("metrics.json", "[" * 100_000 + "]" * 100_000)
    run = project.run("report")
    assert_clean(run, code=0, roots=roots(project))
    assert "warning: In this change: metrics.json: invalid JSON: nested too deeply" in run.err
    project.write("metrics.json", b"\xff\xfe\x00\xd8")
    run = project.run("report")
    assert_clean(run, code=0, roots=roots(project))
    assert "metrics.json: not valid UTF" in run.err
