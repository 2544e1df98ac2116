"""cml-bot.yaml and dvc.yaml -> Config: every key, every error names file + key path + expectation."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from cml_bot.config import (
    CONFIG_FILE,
    CONFIG_MAX_BYTES,
    Config,
    DataConfig,
    DataFile,
    PlotSource,
    PlotSpec,
    Step,
    Threshold,
    load_config,
    parse_config,
)
from cml_bot.errors import CmlBotError, ConfigError

SHA = "ab" * 32

FULL = f"""\
title: "Model report"
id: nightly-1
baseline:
  branch: develop
  file: results/baseline.json
  data_branch: ml-results
  trend: 0
data:
  files:
    - path: data/train.csv
      url: https://example.org/train.csv
      sha256: {SHA.upper()}
  cache: .cache/data
  label_column: label
pipeline:
  - name: prepare
    run: python prepare.py
    timeout: 30
  - python train.py
metrics:
  - metrics.json
  - ./eval/scores.yaml
params: params.yaml
plots:
  - logs.csv
  - path: confusion.csv
    x: actual
    y: predicted
    template: confusion_normalized
    title: Confusion
  - path: curves.tsv
    y: [train, val]
    template: scatter
  - importance.png
thresholds:
  accuracy:
    max_drop: 0.01
  "val.*":
    direction: higher
    max_drop: 2.5%
    min: 0.5
  latency: lower
  rmse:
    max: 3
"""


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _error(raw: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, Path("/repo"))
    assert info.value.exit_code == 2
    return str(info.value)


def test_every_key_is_parsed(tmp_path: Path) -> None:
    _write(tmp_path, CONFIG_FILE, FULL)
    config = load_config(tmp_path)
    assert config == Config(
        root=tmp_path.resolve(),
        title="Model report",
        report_id="nightly-1",
        baseline_branch="develop",
        baseline_file="results/baseline.json",
        data_branch="ml-results",
        trend=0,
        data=DataConfig(
            files=(DataFile("data/train.csv", "https://example.org/train.csv", SHA),),
            cache=".cache/data",
            label_column="label",
        ),
        pipeline=(Step("prepare", "python prepare.py", 30.0), Step("step 2", "python train.py")),
        metrics=("metrics.json", "eval/scores.yaml"),
        params=("params.yaml",),
        plots=(
            PlotSpec("logs.csv"),
            PlotSpec("confusion.csv", "actual", ("predicted",), "confusion_normalized", "Confusion"),
            PlotSpec("curves.tsv", None, ("train", "val"), "scatter"),
            PlotSpec("importance.png", template="image"),
        ),
        thresholds=(
            Threshold("accuracy", max_drop=0.01),
            Threshold("val.*", direction="higher", max_drop_pct=2.5, min=0.5),
            Threshold("latency", direction="lower"),
            Threshold("rmse", max=3.0),
        ),
        dvc=False,
    )


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    _write(tmp_path, CONFIG_FILE, "")
    config = load_config(tmp_path)
    assert config == Config(root=tmp_path.resolve())
    assert (config.title, config.report_id, config.baseline_branch) == ("cml-bot report", "default", None)
    assert (config.data_branch, config.trend) == ("cml-bot-data", 10)


def test_data_shorthand_list_and_numeric_id() -> None:
    config = parse_config(
        {"id": 7, "data": [{"path": "d.csv", "url": "u", "sha256": SHA}]},
        Path("/repo"),
    )
    assert config.report_id == "7"
    assert config.data.files == (DataFile("d.csv", "u", SHA),)


@pytest.mark.parametrize(
    ("raw", "where", "expected"),
    [
        ({"titel": "x"}, "titel", "unknown key; expected one of title, id, baseline"),
        ({"title": 3}, "title", "expected a non-empty string, got int 3"),
        ({"title": ""}, "title", "expected a non-empty string"),
        ({"id": "a b"}, "id", "expected an id of letters"),
        ({"id": "x" * 65}, "id", "at most 64"),
        ({"baseline": "main"}, "baseline", "expected a mapping, got str 'main'"),
        ({"baseline": {"brnch": "x"}}, "baseline.brnch", "unknown key; expected one of branch, file"),
        ({"baseline": {"branch": 1}}, "baseline.branch", "expected a non-empty string, got int 1"),
        ({"baseline": {"data_branch": ""}}, "baseline.data_branch", "expected a non-empty string"),
        ({"baseline": {"trend": 101}}, "baseline.trend", "a whole number of commits from 0 to 100, got int 101"),
        ({"baseline": {"trend": 2.5}}, "baseline.trend", "a whole number of commits from 0 to 100"),
        ({"baseline": {"trend": True}}, "baseline.trend", "a whole number of commits from 0 to 100"),
        ({"data": {"file": []}}, "data.file", "unknown key"),
        ({"data": {"files": {"a": 1}}}, "data.files", "expected a list, got a mapping"),
        (
            {"data": {"files": [{"path": "a", "url": "u"}]}},
            "data.files[0].sha256",
            "path, url and sha256 are required",
        ),
        (
            {"data": {"files": [{"path": "a", "url": "u", "sha256": "xyz"}]}},
            "data.files[0].sha256",
            "expected 64 hex digits (sha256), got str 'xyz'",
        ),
        (
            {"data": {"files": [{"path": "a", "url": "u", "sha256": SHA[:-1] + "g"}]}},
            "data.files[0].sha256",
            "expected 64 hex digits",
        ),
        (
            {"data": {"files": [{"path": "a", "url": "u", "sha256": SHA, "md5": "x"}]}},
            "data.files[0].md5",
            "unknown key",
        ),
        (
            {"data": {"files": [{"path": "a", "url": "u", "sha256": SHA}, {"path": "./a", "url": "v", "sha256": SHA}]}},
            "data.files[1].path",
            "expected a path listed once",
        ),
        ({"data": {"files": [{"path": "../x", "url": "u", "sha256": SHA}]}}, "data.files[0].path", "no '..'"),
        ({"pipeline": "make"}, "pipeline", "expected a list, got str 'make'"),
        ({"pipeline": [{"name": "a"}]}, "pipeline[0].run", "expected a shell command"),
        ({"pipeline": [{"run": ""}]}, "pipeline[0].run", "expected a shell command"),
        (
            {"pipeline": [{"run": "x", "cmd": "y"}]},
            "pipeline[0].cmd",
            "unknown key; expected one of name, run, timeout",
        ),
        ({"pipeline": [{"run": "x", "timeout": 0}]}, "pipeline[0].timeout", "expected a number above 0, got int 0"),
        ({"pipeline": [{"run": "x", "timeout": "1m"}]}, "pipeline[0].timeout", "expected a number, got str '1m'"),
        (
            {"pipeline": [{"name": "train", "run": "a"}, {"name": "train", "run": "b"}]},
            "pipeline[1].name",
            "expected a unique step name, got str 'train'",
        ),
        ({"metrics": ["../x"]}, "metrics[0]", "expected a path inside the repo (no absolute path, no '..')"),
        ({"metrics": ["/abs/m.json"]}, "metrics[0]", "expected a path inside the repo"),
        ({"metrics": ["a/../../m.json"]}, "metrics[0]", "no '..'"),
        ({"params": ["C:\\p.yaml"]}, "params[0]", "expected a path inside the repo"),
        ({"params": ["..\\p.yaml"]}, "params[0]", "no '..'"),
        ({"metrics": [1]}, "metrics[0]", "expected a path relative to the repo, got int 1"),
        ({"baseline": {"file": "/etc/passwd"}}, "baseline.file", "expected a path inside the repo"),
        ({"plots": "a.csv"}, "plots", "expected a list, got str"),
        ({"plots": [{"x": "a"}]}, "plots[0].path", "the plot's data or image file"),
        ({"plots": [{"path": "../a.csv"}]}, "plots[0].path", "no '..'"),
        (
            {"plots": [{"path": "a.csv", "template": "pie"}]},
            "plots[0].template",
            "expected one of linear, simple, smooth, scatter, scatter_jitter, bar, bar_horizontal, "
            "bar_horizontal_sorted, confusion, confusion_normalized, image, got str 'pie'",
        ),
        ({"plots": [{"path": "a.csv", "y": [1]}]}, "plots[0].y[0]", "expected a non-empty string, got int 1"),
        ({"plots": [{"path": "a.csv", "colour": "red"}]}, "plots[0].colour", "unknown key"),
        ({"thresholds": ["acc"]}, "thresholds", "expected a mapping, got a list"),
        ({"thresholds": {"acc": None}}, "thresholds.acc", "expected a mapping"),
        ({"thresholds": {"acc": "up"}}, "thresholds.acc", "expected a mapping, got str 'up'"),
        ({"thresholds": {"acc": {"direction": "up"}}}, "thresholds.acc.direction", "expected higher or lower"),
        ({"thresholds": {"acc": {"drop": 1}}}, "thresholds.acc.drop", "expected one of direction, max_drop, min, max"),
        (
            {"thresholds": {"acc": {"max_drop": "abc"}}},
            "thresholds.acc.max_drop",
            "expected a number or a percentage such as '2%', got str 'abc'",
        ),
        ({"thresholds": {"acc": {"max_drop": "-2%"}}}, "thresholds.acc.max_drop", "a percentage such as '2%'"),
        ({"thresholds": {"acc": {"max_drop": -0.1}}}, "thresholds.acc.max_drop", "expected a number >= 0"),
        ({"thresholds": {"acc": {"max_drop": True}}}, "thresholds.acc.max_drop", "expected a number, got bool True"),
        ({"thresholds": {"acc": {"max_drop": float("nan")}}}, "thresholds.acc.max_drop", "not NaN"),
        ({"thresholds": {"acc": {"min": "0.5"}}}, "thresholds.acc.min", "expected a number, got str '0.5'"),
        ({"thresholds": {"acc": {"max": float("nan")}}}, "thresholds.acc.max", "not NaN"),
    ],
)
def test_errors_name_file_key_and_expectation(raw: object, where: str, expected: str) -> None:
    message = _error(raw)
    assert message.startswith(f"{CONFIG_FILE} at {where}: "), message
    assert expected in message, message
    assert "\n" not in message


def test_top_level_must_be_a_mapping() -> None:
    assert _error(["title"]) == f"{CONFIG_FILE}: expected a mapping, got a list"


@pytest.mark.parametrize(
    ("value", "absolute", "percent"),
    [
        (0.01, 0.01, None),
        (0, 0.0, None),
        (2, 2.0, None),
        ("2%", None, 2.0),
        (" 0.5 % ", None, 0.5),
        ("10%", None, 10.0),
    ],
)
def test_max_drop_absolute_or_percent(value: object, absolute: float | None, percent: float | None) -> None:
    (rule,) = parse_config({"thresholds": {"f1": {"max_drop": value}}}, Path("/r")).thresholds
    assert (rule.max_drop, rule.max_drop_pct) == (absolute, percent)


def test_paths_are_normalised() -> None:
    config = parse_config({"metrics": "./out/m.json", "params": ["a\\b.yaml"]}, Path("/r"))
    assert config.metrics == ("out/m.json",)
    assert config.params == ("a/b.yaml",)


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    _write(tmp_path, CONFIG_FILE, "title: ok\nmetrics: [a.json\nparams: p.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert re.match(rf"^{re.escape(CONFIG_FILE)}: line 3, column \d+: ", message), message


def test_invalid_yaml_in_dvc_yaml_names_it(tmp_path: Path) -> None:
    _write(tmp_path, "dvc.yaml", "stages: [\n")
    with pytest.raises(ConfigError, match=r"^dvc\.yaml: invalid YAML at line \d+, column \d+: "):
        load_config(tmp_path)


def test_dvc_yaml_is_read_as_dvc_reads_it_yaml_1_2(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML's default) reads `no` as false: the title would be refused as "not text".
    _write(tmp_path, "dvc.yaml", "plots:\n  - loss.csv:\n      title: no\n")
    assert [p.title for p in load_config(tmp_path).plots] == ["no"]


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_bytes(b"title: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path)


def test_neither_config_nor_dvc_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert isinstance(info.value, CmlBotError) and info.value.exit_code == 2
    assert CONFIG_FILE in str(info.value) and "not found" in str(info.value)


def test_explicit_config_path(tmp_path: Path) -> None:
    other = _write(tmp_path, "ci/bot.yaml", "title: Other\nbogus: 1\n")
    with pytest.raises(ConfigError, match=r"bot\.yaml at bogus: unknown key"):
        load_config(tmp_path, other)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path, tmp_path / "missing.yaml")


DVC_YAML = """\
metrics:
  - dvclive/metrics.json
params:
  - params.yaml
plots:
  - logs.csv:
      x: step
      y: loss
  - Accuracy:
      x: step
      y:
        logs.csv: acc
  - ROC:
      template: simple
      x:
        roc.csv: fpr
      y:
        roc.csv: tpr
        roc_val.csv: [tpr, tpr_smooth]
  - dvclive/plots/images/sample.png
  - ignored_template.csv:
      template: my_custom.json
stages:
  train:
    cmd: python train.py
    params:
      - lr
      - hyper.yaml:
          - depth
    metrics:
      - eval/metrics.json:
          cache: false
      - eval/extra.json
    plots:
      - eval/confusion.csv:
          cache: false
          template: confusion
          x: actual
          y: predicted
      - logs.csv
"""


def test_dvc_yaml_without_cml_bot_yaml(tmp_path: Path) -> None:
    _write(tmp_path, "dvc.yaml", DVC_YAML)
    _write(tmp_path, "params.yaml", "lr: 0.1\n")
    config = load_config(tmp_path)
    assert config.dvc is True
    assert config.title == "cml-bot report"
    # DVC's order: the stages' metrics, then the top-level ones
    assert config.metrics == ("eval/metrics.json", "eval/extra.json", "dvclive/metrics.json")
    assert config.params == ("params.yaml", "hyper.yaml")
    # params.yaml is listed whole at the top level; of hyper.yaml the stage tracks depth only
    assert config.param_keys == (("hyper.yaml", ("depth",)),)
    roc = (
        PlotSource("roc.csv", "tpr", "fpr"),
        PlotSource("roc_val.csv", "tpr", "fpr", "roc.csv"),  # x joined from roc.csv by row, as DVC does
        PlotSource("roc_val.csv", "tpr_smooth", "fpr", "roc.csv"),
    )
    assert config.plots == (
        PlotSpec("logs.csv", "step", ("loss",)),
        PlotSpec("Accuracy", template="linear", sources=(PlotSource("logs.csv", "acc", "step"),)),
        PlotSpec("ROC", template="simple", sources=roc),
        PlotSpec("dvclive/plots/images/sample.png", template="image"),
        PlotSpec("ignored_template.csv"),
        PlotSpec("eval/confusion.csv", "actual", ("predicted",), "confusion"),
        PlotSpec("logs.csv"),
    )
    assert config.plots[2].files == ("roc.csv", "roc_val.csv")
    assert config.dvc_declared is not None
    assert config.dvc_declared.notes == (
        "Plot ignored_template.csv: template 'my_custom.json' is not one of DVC's built-in templates; drawn as lines.",
    )


def test_dvc_yaml_adds_to_cml_bot_yaml_without_duplicates(tmp_path: Path) -> None:
    _write(tmp_path, "dvc.yaml", DVC_YAML)
    _write(
        tmp_path,
        CONFIG_FILE,
        """\
        title: Both
        metrics: [eval/metrics.json, extra/m.json]
        params: [hyper.yaml]
        plots:
          - path: logs.csv
            y: lr
        """,
    )
    config = load_config(tmp_path)
    assert config.title == "Both" and config.dvc
    assert config.metrics == ("eval/metrics.json", "extra/m.json", "eval/extra.json", "dvclive/metrics.json")
    # A params file cml-bot.yaml lists is read whole.
    assert config.params == ("hyper.yaml", "params.yaml")
    assert config.param_keys == ()
    # cml-bot.yaml's own plot of logs.csv replaces dvc.yaml's plots drawing that file.
    assert [p.path for p in config.plots] == [
        "logs.csv",
        "ROC",
        "dvclive/plots/images/sample.png",
        "ignored_template.csv",
        "eval/confusion.csv",
    ]
    assert config.plots[0] == PlotSpec("logs.csv", y=("lr",))


def test_dot_dvc_folder_marks_a_dvc_repo(tmp_path: Path) -> None:
    _write(tmp_path, CONFIG_FILE, "title: x\n")
    (tmp_path / ".dvc").mkdir()
    assert load_config(tmp_path).dvc is True


@pytest.mark.parametrize(
    ("dvc_yaml", "where"),
    [
        ("metrics: [../outside.json]\n", "metrics[0]"),
        ("stages:\n  s:\n    metrics:\n      - /abs.json\n", "stages.s.metrics[0]"),
        ("stages:\n  s:\n    metrics:\n      - {a.json: {}, b.json: {}}\n", "stages.s.metrics[0]"),
        ("stages:\n  s:\n    plots:\n      - p.csv: {template: confusion, y: [a, {b: c}]}\n", "stages.s.plots[0].y[1]"),
        ("stages: [a]\n", "stages"),
        ("plots:\n  - p:\n      y: {../p.csv: acc}\n", "plots[0].p.path"),
    ],
)
def test_dvc_yaml_errors_name_dvc_yaml(tmp_path: Path, dvc_yaml: str, where: str) -> None:
    _write(tmp_path, "dvc.yaml", dvc_yaml)
    with pytest.raises(ConfigError, match=rf"^dvc\.yaml at {re.escape(where)}: expected "):
        load_config(tmp_path)


def test_a_plot_folder_stands_for_its_files(tmp_path: Path) -> None:
    folder = tmp_path / "dvclive" / "plots" / "metrics"
    folder.mkdir(parents=True)
    for name in ("loss.tsv", "acc.tsv", "notes.txt"):
        (folder / name).write_text("step\tvalue\n0\t1\n", encoding="utf-8")
    (tmp_path / "dvc.yaml").write_text(
        "plots:\n  - dvclive/plots/metrics/acc.tsv:\n      y: value\n"
        "stages:\n  train:\n    cmd: python train.py\n    plots:\n      - dvclive/plots/metrics:\n          x: step\n",
        encoding="utf-8",
    )
    config = load_config(tmp_path)
    # As DVC draws them: the top-level definition, then the stage's folder, file by file with the
    # folder's options (acc.tsv again: DVC draws both plot ids); notes.txt is no plot file.
    assert [(p.path, p.x, p.y) for p in config.plots] == [
        ("dvclive/plots/metrics/acc.tsv", None, ("value",)),
        ("dvclive/plots/metrics/acc.tsv", "step", ()),
        ("dvclive/plots/metrics/loss.tsv", "step", ()),
    ]


def test_a_plot_folder_file_over_the_size_limit_is_one_plot_s_problem_not_the_config_s(tmp_path: Path) -> None:
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "big.json").write_bytes(b"[" + b'{"a": 1},' * 200_000 + b'{"a": 1}]')  # about 1.8 MB
    (folder / "loss.csv").write_text("step,loss\n0,1\n", encoding="utf-8")
    (tmp_path / "cml-bot.yaml").write_text("plots: [plots]\nlimits: {file_mb: 1}\n", encoding="utf-8")
    config = load_config(tmp_path)  # was: "plots/big.json: over 1 MB", and no report at all
    assert [p.path for p in config.plots] == ["plots/big.json", "plots/loss.csv"]


@pytest.mark.parametrize(
    ("text", "draws"),
    [
        ("baseline: {trend: 0}\n", False),
        ("baseline: {trend: 0}\nplots: [loss.csv]\n", True),
        ("", True),  # main's trend of the last 10 recorded commits
        ("baseline: {trend: 0}\nmlflow: {experiment: e}\n", True),  # step histories
        ("baseline: {trend: 0}\nmlflow: {experiment: e, history: false}\n", False),
        ("baseline: {trend: 0}\ntensorboard: {logdir: runs}\n", True),
        ("baseline: {trend: 0}\ntensorboard: {logdir: runs, history: false}\n", False),
        ("baseline: {trend: 0}\npredictions: preds.csv\n", True),  # the confusion change
    ],
)
def test_the_plot_process_starts_only_when_a_report_can_hold_images(tmp_path: Path, text: str, draws: bool) -> None:
    (tmp_path / "cml-bot.yaml").write_text("metrics: [m.json]\n" + text, encoding="utf-8")
    assert load_config(tmp_path).may_draw is draws


def test_a_workspace_dvc_yaml_is_read_with_the_config_limit(tmp_path: Path) -> None:
    # As at a commit: a dvc.yaml over CONFIG_MAX_BYTES is refused before it is parsed.
    (tmp_path / "dvc.yaml").write_bytes(b"metrics: [m.json]\n" + b"#" * CONFIG_MAX_BYTES + b"\n")
    with pytest.raises(CmlBotError, match=r"^dvc\.yaml\b.*limit"):
        load_config(tmp_path)
