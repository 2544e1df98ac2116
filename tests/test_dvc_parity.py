"""Parity with DVC: behaviours of DVC's own test suite for ``metrics diff``, ``params diff`` and
``plots diff`` (iterative/dvc tests/func/metrics, tests/func/params, tests/func/plots), ported as
behaviour, each run through cml-bot and through the real DVC on the same repository, asserting the
same result, or a documented better one (named in the test). Real dvclive output is made by the
real ``dvclive`` package.

Every test is one behaviour (at least 40: ``test_there_are_at_least_40_cases``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dvc_parity import (
    HEAD,
    Project,
    assert_metrics_agree,
    assert_params_agree,
    assert_plot_agrees,
    chdir,
    dvc_metrics,
    dvc_params,
    dvc_plots,
    init,
    our_axis_labels,
    our_series,
    ours,
)

from cml_bot.app import Effects, Options, build_report, evaluate
from cml_bot.config import PlotSource, PlotSpec, load_config
from cml_bot.diff import Status
from cml_bot.dvcproject import find_layout
from cml_bot.errors import ConfigError, InputError
from cml_bot.metrics import Samples

pytest.importorskip("dvc.repo", reason="the parity suite needs DVC (pip install -e '.[test]')")
# DVC's data index uses a deprecated API of its own dependency pygtrie; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:_NoneStep.value will soon raise:DeprecationWarning")


def subprocess_out(cwd: Path, *args: str) -> str:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False).stdout.strip()


@pytest.fixture(autouse=True)
def _no_dvc_analytics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_NO_UPDATER", "1")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return init(tmp_path / "repo")


def _stage(metrics: str = "", plots: str = "", params: str = "", extra: str = "") -> str:
    return f"stages:\n  train:\n    cmd: echo train\n{params}{metrics}{plots}{extra}"


def _compare_metrics(project: Project, rev: str = "HEAD") -> tuple[int, object]:
    evaluation, result = ours(project.root, rev)
    return assert_metrics_agree(result.metrics, dvc_metrics(project.root, rev)), (evaluation, result)


# --- metrics diff: tests/func/metrics/test_diff.py --------------------------------------------------


def test_metrics_diff_simple_scalar_file(project: Project) -> None:
    """A metrics file holding one number (DVC: metric "" of m.yaml): named after its file here."""
    project.write("dvc.yaml", _stage("    metrics:\n      - m.yaml:\n          cache: false\n"))
    for value in ("1", "2"):
        project.write("m.yaml", value)
        project.commit(value)
    project.write("m.yaml", "3")
    count, (_, result) = _compare_metrics(project, "HEAD~1")
    assert count == 1
    assert result.metrics[0].name == "m.yaml" and (result.metrics[0].base, result.metrics[0].head) == (1, 3)


@pytest.mark.parametrize("ext", ["yaml", "json"])
def test_metrics_diff_nested_with_text_values(project: Project, ext: str) -> None:
    project.write("dvc.yaml", _stage(f"    metrics:\n      - m.{ext}:\n          cache: false\n"))

    def metrics(value: int) -> str:
        document = {"a": {"b": {"c": value, "d": 1, "e": str(value)}}}
        return json.dumps(document) if ext == "json" else f"a:\n  b:\n    c: {value}\n    d: 1\n    e: '{value}'\n"

    project.write(f"m.{ext}", metrics(1))
    project.commit("1")
    project.write(f"m.{ext}", metrics(3))
    count, (_, result) = _compare_metrics(project)
    assert count == 3
    assert {m.name: m.status for m in result.metrics} == {
        "a.b.c": Status.CHANGED,
        "a.b.d": Status.UNCHANGED,
        "a.b.e": Status.CHANGED,
    }


def test_metrics_diff_unchanged(project: Project) -> None:
    project.write("dvc.yaml", _stage("    metrics:\n      - m.json:\n          cache: false\n"))
    project.write("m.json", {"a": {"b": 1}})
    project.commit()
    count, (_, result) = _compare_metrics(project)
    assert count == 1 and all(m.status is Status.UNCHANGED for m in result.metrics)


def test_metrics_diff_broken_json_keeps_the_old_values_and_warns(project: Project) -> None:
    """DVC: the old values and no new ones. Here too, marked missing with the parse error."""
    project.write("dvc.yaml", _stage("    metrics:\n      - m.json:\n          cache: false\n"))
    metrics = {"a": {"b": {"c": 1, "d": 1, "e": "3"}}}
    project.write("m.json", metrics)
    project.commit()
    project.write("m.json", json.dumps(metrics) + "ma\nlformed\n")
    count, (evaluation, result) = _compare_metrics(project)
    assert count == 3
    assert {m.status for m in result.metrics} == {Status.MISSING}
    assert all("invalid JSON" in (m.missing or "") for m in result.metrics)
    assert any("m.json: invalid JSON" in note for note in evaluation.notes)


def test_metrics_diff_no_metrics(project: Project) -> None:
    project.write("foo", "foo")
    project.commit()
    _, result = ours(project.root, "HEAD")
    assert dvc_metrics(project.root, "HEAD") == {} and result.metrics == ()


def test_metrics_diff_new_metric(project: Project) -> None:
    project.commit("nothing yet")
    project.write("dvc.yaml", _stage("    metrics:\n      - m.json:\n          cache: false\n"))
    project.write("m.json", {"a": {"b": {"c": 1, "e": "3"}}})
    count, (_, result) = _compare_metrics(project)
    assert count == 2 and not result.has_baseline  # nothing to compare with: "no baseline" here


def test_metrics_diff_deleted_metric_file(project: Project) -> None:
    project.write("dvc.yaml", _stage("    metrics:\n      - m.json:\n          cache: false\n"))
    project.write("m.json", {"a": {"c": 1, "e": "3"}})
    project.commit()
    (project.root / "m.json").unlink()
    count, (_, result) = _compare_metrics(project)
    assert count == 2 and {m.status for m in result.metrics} == {Status.MISSING}


def test_metrics_diff_with_unchanged(project: Project) -> None:
    project.write("dvc.yaml", _stage("    metrics:\n      - metrics.yaml:\n          cache: false\n"))
    project.write("metrics.yaml", "foo: 1\nxyz: 10")
    project.commit("1")
    project.write("metrics.yaml", "foo: 2\nxyz: 10")
    project.commit("2")
    project.write("metrics.yaml", "foo: 3\nxyz: 10")
    assert _compare_metrics(project, "HEAD~1")[0] == 2


def test_metrics_diff_dirty_workspace_against_head(project: Project) -> None:
    project.write("dvc.yaml", _stage("    metrics:\n      - m.yaml:\n          cache: false\n"))
    project.write("m.yaml", "3")
    project.commit()
    project.write("m.yaml", "4")
    assert _compare_metrics(project)[0] == 1


@pytest.mark.parametrize(
    ("dvcfile", "metrics_file"),
    [("dvc.yaml", "my_metrics.yaml"), ("dir/dvc.yaml", "my_metrics.yaml"), ("dir/dvc.yaml", "../my_metrics.yaml")],
)
def test_diff_top_level_metrics(project: Project, dvcfile: str, metrics_file: str) -> None:
    folder = Path(dvcfile).parent
    project.write(dvcfile, f"metrics:\n  - {metrics_file}\n")
    path = (folder / metrics_file).as_posix()
    project.write(path, "foo: 3\n")
    project.commit()
    project.write(path, "foo: 5\n")
    assert _compare_metrics(project)[0] == 1


def test_metrics_diff_active_branch_unchanged(project: Project) -> None:
    project.write("dvc.yaml", _stage("    metrics:\n      - m.yaml:\n          cache: false\n"))
    for value in (1, 2, 1):
        project.write("m.yaml", f"a: {value}\n")
        project.commit(str(value))
    assert _compare_metrics(project, "main")[0] == 1


# --- metrics: what dvc.yaml may say (tests/func/metrics/test_show.py, parsing tests) ----------------


def test_metrics_folder_stands_for_every_file_in_it(project: Project) -> None:
    project.write("dvc.yaml", "metrics:\n  - eval\n")
    project.write("eval/train.json", {"acc": 0.9})
    project.write("eval/test/scores.yaml", "acc: 0.8\nf1: 0.7\n")
    project.commit()
    project.write("eval/train.json", {"acc": 0.95})
    assert _compare_metrics(project)[0] == 3


def test_metrics_of_a_stage_with_wdir(project: Project) -> None:
    project.write(
        "dvc.yaml", _stage("    metrics:\n      - ../out/m.json:\n          cache: false\n", extra="    wdir: src\n")
    )
    project.write("out/m.json", {"acc": 0.5})
    project.commit()
    project.write("out/m.json", {"acc": 0.6})
    count, (evaluation, _) = _compare_metrics(project)
    assert count == 1 and evaluation.config.metrics == ("out/m.json",)


def test_foreach_stages_resolved_through_dvc(project: Project) -> None:
    project.write(
        "dvc.yaml",
        "stages:\n  train:\n    foreach: [a, b]\n    do:\n      cmd: echo ${item}\n"
        "      metrics:\n        - eval/${item}.json:\n            cache: false\n",
    )
    project.write("eval/a.json", {"acc": 0.5})
    project.write("eval/b.json", {"acc": 0.4})
    project.commit()
    project.write("eval/b.json", {"acc": 0.45})
    count, (evaluation, _) = _compare_metrics(project)
    assert count == 2 and evaluation.config.metrics == ("eval/a.json", "eval/b.json")
    assert evaluation.config.dvc_declared is not None and evaluation.config.dvc_declared.resolver.startswith("DVC")


def test_matrix_stages_resolved_through_dvc(project: Project) -> None:
    project.write(
        "dvc.yaml",
        "stages:\n  train:\n    matrix:\n      model: [cnn, mlp]\n      seed: [1, 2]\n    cmd: echo\n"
        "    metrics:\n      - eval/${item.model}-${item.seed}.json:\n          cache: false\n",
    )
    for model in ("cnn", "mlp"):
        for seed in (1, 2):
            project.write(f"eval/{model}-{seed}.json", {"acc": 0.5 + seed / 10})
    project.commit()
    project.write("eval/mlp-2.json", {"acc": 0.9})
    assert _compare_metrics(project)[0] == 4


def test_vars_and_templated_paths_resolved_through_dvc(project: Project) -> None:
    project.write("params.yaml", "out: results\nlr: 0.1\n")
    project.write(
        "dvc.yaml",
        "vars:\n  - params.yaml\nstages:\n  train:\n    cmd: echo ${lr}\n"
        "    metrics:\n      - ${out}/metrics.json:\n          cache: false\n",
    )
    project.write("results/metrics.json", {"loss": 0.3})
    project.commit()
    project.write("results/metrics.json", {"loss": 0.2})
    count, (evaluation, _) = _compare_metrics(project)
    assert count == 1 and evaluation.config.metrics == ("results/metrics.json",)


def test_dvc_cached_base_metrics_are_read_from_dvcs_cache(project: Project) -> None:
    """`cache: true` (the default): the file is not in git; the base's comes from DVC's cache."""
    project.write("dvc.yaml", _stage("    metrics:\n      - m.json\n"))
    project.write("m.json", {"acc": 0.8})
    project.dvc_commit()
    base = project.commit()
    assert "m.json" in project.git("ls-files", "--others", "--ignored", "--exclude-standard")
    project.write("m.json", {"acc": 0.85})
    count, (evaluation, result) = _compare_metrics(project, base)
    assert count == 1 and (result.metrics[0].base, result.metrics[0].head) == (0.8, 0.85)
    assert evaluation.baseline.caveat is None


def test_dvc_cached_base_metrics_come_from_the_remote_when_the_cache_lacks_them(
    project: Project, tmp_path: Path
) -> None:
    project.write(".dvc/config", f"[core]\n    remote = local\n['remote \"local\"']\n    url = {tmp_path / 'remote'}\n")
    project.write("dvc.yaml", _stage("    metrics:\n      - m.json\n"))
    project.write("m.json", {"acc": 0.8})
    project.dvc_commit()
    base = project.commit()
    from dvc.repo import Repo

    with chdir(project.root), Repo(str(project.root)) as repo:
        repo.push()
    shutil.rmtree(project.root / ".dvc" / "cache")
    project.write("m.json", {"acc": 0.85})
    count, (_, result) = _compare_metrics(project, base)
    assert count == 1 and result.metrics[0].base == 0.8


def test_unreachable_dvc_cached_base_is_said_in_the_verdict_line(project: Project, tmp_path: Path) -> None:
    """DVC: an error for the old revision. Here: no baseline, and the verdict line says why."""
    project.write("dvc.yaml", _stage("    metrics:\n      - m.json\n"))
    project.write("m.json", {"acc": 0.8})
    project.dvc_commit()
    base = project.commit()
    shutil.rmtree(project.root / ".dvc" / "cache")
    project.write("m.json", {"acc": 0.85})
    assert dvc_metrics(project.root, base)["m.json"]["acc"]["old"] is None
    evaluation = evaluate(Options(root=project.root, compare=(base, None)), Effects(env={}))
    report, _ = build_report(evaluation, draw=False)
    assert not report.diff.has_baseline
    from cml_bot.report import render_markdown

    verdict = render_markdown(report).splitlines()[3]
    assert verdict.startswith("ℹ️ **No baseline**") and "m.json unreachable" in verdict, verdict


def test_subdir_project_with_dash_c(tmp_path: Path) -> None:
    """`dvc init --subdir`: the project in proj/, base files read from proj/ (not the git top)."""
    project = init(tmp_path / "repo", subdir="proj")
    project.write("dvc.yaml", "metrics:\n  - m.json\n")
    project.write("m.json", {"acc": 0.5})
    project.commit()
    project.write("m.json", {"acc": 0.6})
    count, (evaluation, _) = _compare_metrics(project)
    assert count == 1 and evaluation.baseline.results is not None


def test_subdir_project_found_from_the_git_top(tmp_path: Path) -> None:
    project = init(tmp_path / "repo", subdir="proj")
    project.write("dvc.yaml", "metrics:\n  - m.json\n")
    project.write("m.json", {"acc": 0.5})
    project.commit()
    project.write("m.json", {"acc": 0.6})
    theirs = dvc_metrics(project.root, "HEAD")
    _, result = ours(project.top, "HEAD")
    assert assert_metrics_agree(result.metrics, {f"proj/{path}": keys for path, keys in theirs.items()}) == 1


def test_lists_of_numbers_are_kept_as_repeated_values(project: Project) -> None:
    """DVC drops lists from metrics; cml-bot keeps them (several seeds) as mean ± std: better."""
    project.write("dvc.yaml", "metrics:\n  - m.json\n")
    project.write("m.json", {"acc": 0.5, "seeds": [0.5, 0.52, 0.49]})
    project.commit()
    project.write("m.json", {"acc": 0.6, "seeds": [0.6, 0.61, 0.59]})
    count, (_, result) = _compare_metrics(project)
    assert count == 1
    assert isinstance(next(m for m in result.metrics if m.name == "seeds").head, Samples)


def test_booleans_and_toml_metrics(project: Project) -> None:
    project.write("dvc.yaml", "metrics:\n  - m.toml\n")
    project.write("m.toml", "converged = true\n[eval]\nacc = 0.5\n")
    project.commit()
    project.write("m.toml", "converged = false\n[eval]\nacc = 0.6\n")
    assert _compare_metrics(project)[0] == 2


def test_two_dvc_yaml_files_and_colliding_names(project: Project) -> None:
    """Two dvc.yaml files (a second one is not ignored); the same name in two files is told
    apart by its file here (DVC shows the path beside it)."""
    project.write("dvc.yaml", "metrics:\n  - train.json\n")
    project.write("eval/dvc.yaml", "metrics:\n  - test.json\n")
    project.write("train.json", {"acc": 0.9})
    project.write("eval/test.json", {"acc": 0.8})
    project.commit()
    project.write("eval/test.json", {"acc": 0.7})
    count, (_, result) = _compare_metrics(project)
    assert count == 2 and {m.name for m in result.metrics} == {"train.json:acc", "eval/test.json:acc"}


def _second_file_with_acc(project: Project) -> None:
    """The base: eval/metrics.json alone; this change lowers its acc and adds test/metrics.json
    with an acc of its own (the independent audit's case)."""
    project.write("dvc.yaml", "metrics:\n  - eval/metrics.json\n")
    project.write("eval/metrics.json", {"acc": 0.90, "loss": 0.3})
    project.commit()
    project.write("dvc.yaml", "metrics:\n  - eval/metrics.json\n  - test/metrics.json\n")
    project.write("eval/metrics.json", {"acc": 0.85, "loss": 0.35})
    project.write("test/metrics.json", {"acc": 0.80})


def test_a_second_file_using_a_name_keeps_the_first_files_metric(project: Project) -> None:
    """DVC matches values by file and key: eval/metrics.json acc 0.9 -> 0.85, test/metrics.json acc
    new. A name in two files in either revision is prefixed in both (it was "acc" removed and
    "eval/metrics.json:acc" new: the drop hidden)."""
    _second_file_with_acc(project)
    count, (_, result) = _compare_metrics(project)
    assert count == 3
    by_name = {m.name: m for m in result.metrics}
    assert set(by_name) == {"eval/metrics.json:acc", "test/metrics.json:acc", "loss"}
    assert (by_name["eval/metrics.json:acc"].status, by_name["test/metrics.json:acc"].status) == (
        Status.CHANGED,
        Status.NEW,
    )


@pytest.mark.parametrize(
    ("thresholds", "failures"),
    [
        ('"*acc": {max_drop: 0.01}', {"eval/metrics.json:acc": "dropped"}),  # the real drop, not "missing"
        ("acc: {max_drop: 0.1}", {}),  # a rule for acc keeps applying to both prefixed accs
    ],
)
def test_thresholds_follow_a_metric_named_after_its_file(
    project: Project, thresholds: str, failures: dict[str, str]
) -> None:
    _second_file_with_acc(project)
    project.write("cml-bot.yaml", f"thresholds:\n  {thresholds}\n")
    evaluation = evaluate(Options(root=project.root, compare=("HEAD", None)), Effects(env={}))
    report, _ = build_report(evaluation, draw=False)
    found = {m.name: " ".join(m.failures) for m in report.diff.metrics if m.failures}
    assert set(found) == set(failures) and all(failures[n] in found[n] for n in found), found
    gated = {m.name for m in report.diff.metrics if m.gated}
    assert gated == {"eval/metrics.json:acc", "test/metrics.json:acc"}
    assert not any("matches no metric" in note for note in report.notes), report.notes


def test_params_in_a_second_file_using_a_name_keep_the_first_files_param(project: Project) -> None:
    """DVC: params.yaml lr 0.1 -> 0.2, ft.yaml lr new (here it was lr removed, params.yaml:lr new)."""
    project.write("params.yaml", "lr: 0.1\n")
    project.write("dvc.yaml", _stage(params="    params:\n      - lr\n"))
    project.commit()
    project.write("params.yaml", "lr: 0.2\n")
    project.write("ft.yaml", "lr: 0.01\n")
    project.write("dvc.yaml", _stage(params="    params:\n      - lr\n      - ft.yaml:\n          - lr\n"))
    assert _compare_params(project) == 2


def test_yaml_is_read_as_yaml_1_2_as_dvc_reads_it(project: Project) -> None:
    """YAML 1.1 would read seed 0042 as 34, yes as true, 1:30:00 as 5400, the key no as false and
    0o17 as text."""
    project.write("dvc.yaml", _stage("    metrics:\n      - m.yaml:\n          cache: false\n"))
    params = "seed: {seed}\nuse_gpu: yes\ntimeout: 1:30:00\nweights:\n  no: {no}\n  se: 0.2\nmask: 0o17\n"
    project.write("params.yaml", params.format(seed="0042", no="0.3"))
    project.write("m.yaml", "acc: 0.9\nconverged: yes\n")
    project.commit()
    project.write("params.yaml", params.format(seed="0043", no="0.4"))
    project.write("m.yaml", "acc: 0.91\nconverged: no\n")
    assert _compare_params(project) == 6
    count, (_, result) = _compare_metrics(project)
    assert count == 2 and {m.name: m.head for m in result.metrics}["converged"] == "no"


def test_keys_joining_to_one_name_are_an_error_as_in_dvc(project: Project) -> None:
    """DVC: "duplicated key 'val.acc'"; here a one-line error naming it and the file (it was the
    last one silently winning)."""
    project.write("dvc.yaml", "metrics:\n  - metrics.json\n")
    project.write("metrics.json", '{"val.acc": 0.95, "val": {"acc": 0.70}}')
    project.commit()
    project.write("metrics.json", '{"val.acc": 0.60, "val": {"acc": 0.71}}')
    with pytest.raises(ValueError, match=r"duplicated key 'val\.acc'"):
        dvc_metrics(project.root, "HEAD")
    with pytest.raises(InputError, match=r"^metrics\.json: key 'val\.acc' appears twice"):
        ours(project.root, "HEAD")


def test_lists_of_records_are_no_metrics_as_in_dvc(project: Project) -> None:
    """DVC drops lists from metrics; a list of numbers is kept here (see above), a list of records
    is not (it was per_class.0.acc, per_class.1.acc)."""
    project.write("dvc.yaml", "metrics:\n  - m.json\n")
    project.write("m.json", {"acc": 0.5, "per_class": [{"acc": 0.9}, {"acc": 0.8}], "names": ["a", "b"]})
    project.commit()
    project.write("m.json", {"acc": 0.6, "per_class": [{"acc": 0.8}, {"acc": 0.8}], "names": ["a", "c"]})
    count, (_, result) = _compare_metrics(project)
    assert count == 1 and [m.name for m in result.metrics] == ["acc"]


def test_the_report_shows_dvcs_values_and_the_true_change(project: Project) -> None:
    """The values as DVC reads them (not 0.8764 / 0.8766 or 99.2), and the change DVC computes
    rounded, never a difference of rounded values that overstates it (+0.00001 for 2e-07)."""
    from decimal import Decimal

    from cml_bot.report import render_markdown

    project.write("dvc.yaml", "metrics:\n  - metrics.json\n")
    project.write("metrics.json", {"acc": 0.9123449, "rmse": 120.5, "auc": 0.87645})
    project.commit()
    project.write("metrics.json", {"acc": 0.9123451, "rmse": 99.25, "auc": 0.87655})
    theirs = dvc_metrics(project.root, "HEAD")["metrics.json"]
    _, (evaluation, _) = _compare_metrics(project)
    report, _ = build_report(evaluation, draw=False)  # type: ignore[arg-type]
    rows = {
        cells[0]: cells[1:4]
        for line in render_markdown(report).replace("\u00a0", " ").splitlines()
        if line.startswith("| ") and len(cells := [c.strip() for c in line.strip("|").split("|")]) > 4
    }
    for name, values in theirs.items():
        base, head, change = rows[name]
        assert (Decimal(base), Decimal(head)) == (Decimal(repr(values["old"])), Decimal(repr(values["new"])))
        shown = Decimal(change.split()[0])
        true = Decimal(repr(values["new"])) - Decimal(repr(values["old"]))
        assert abs(shown - true) <= Decimal(10) ** shown.as_tuple().exponent / 2, (name, change, true)
    assert rows["acc"] == ["0.9123449", "0.9123451", "+0.0000002 ▲"]


# --- params diff: tests/func/params/test_diff.py, test_show.py ---------------------------------------


def _compare_params(project: Project, rev: str = "HEAD") -> int:
    _, result = ours(project.root, rev)
    return assert_params_agree(result.params, dvc_params(project.root, rev))


def test_params_diff(project: Project) -> None:
    project.write("params.yaml", "foo: bar")
    project.write("dvc.yaml", _stage(params="    params:\n      - foo\n"))
    project.commit("bar")
    project.write("params.yaml", "foo: baz")
    project.commit("baz")
    project.write("params.yaml", "foo: qux")
    assert _compare_params(project, "HEAD~1") == 1


def test_params_diff_new(project: Project) -> None:
    project.commit("nothing")
    project.write("params.yaml", "foo: bar")
    project.write("dvc.yaml", _stage(params="    params:\n      - foo\n"))
    assert _compare_params(project) == 1


def test_params_diff_deleted_file_keeps_the_section(project: Project) -> None:
    project.write("params.yaml", "foo: bar")
    project.write("other.yaml", "x: 1")
    project.write("dvc.yaml", _stage(params="    params:\n      - foo\n      - other.yaml:\n          - x\n"))
    project.commit()
    (project.root / "params.yaml").unlink()
    assert _compare_params(project) == 2


def test_params_diff_list_is_a_list(project: Project) -> None:
    """DVC shows ['bar', 'baz']; cml-bot ["bar", "baz"] (JSON, as the rest of its values)."""
    project.write("params.yaml", "foo:\n- bar\n- baz")
    project.write("dvc.yaml", _stage(params="    params:\n      - foo\n"))
    project.commit()
    project.write("params.yaml", "foo:\n- bar\n- baz\n- qux\nlayers: [64, 32]\n")
    assert _compare_params(project) == 2


def test_params_diff_dict(project: Project) -> None:
    project.write("params.yaml", "foo:\n  bar: baz")
    project.write("dvc.yaml", _stage(params="    params:\n      - foo\n"))
    project.commit()
    project.write("params.yaml", "foo:\n  bar: qux")
    assert _compare_params(project) == 1


def test_params_toml_with_tracked_keys(project: Project) -> None:
    project.write("params.toml", "[foo]\nbar = 42\nbaz = [1, 2]\n[other]\nx = 1\n")
    project.write("dvc.yaml", _stage(params="    params:\n      - params.toml:\n          - foo\n"))
    project.commit()
    project.write("params.toml", "[foo]\nbar = 43\nbaz = [1, 2]\n[other]\nx = 2\n")
    assert _compare_params(project) == 2


def test_params_python_file(project: Project) -> None:
    project.write("params.py", "CONST = 1\nIS_DIR: bool = True\n\n\nclass Config:\n    foo = 42\n")
    project.write(
        "dvc.yaml",
        _stage(
            params="    params:\n      - params.py:\n          - CONST\n          - IS_DIR\n          - Config.foo\n"
        ),
    )
    project.commit()
    project.write("params.py", "CONST = 2\nIS_DIR: bool = True\n\n\nclass Config:\n    foo = 43\n")
    assert _compare_params(project) == 3


def test_params_of_several_stages_are_merged(project: Project) -> None:
    project.write("p.yaml", "foo: bar\nbaz: qux\nnot_tracked: 1\n")
    project.write(
        "dvc.yaml",
        "stages:\n  one:\n    cmd: echo\n    params:\n      - p.yaml:\n          - foo\n"
        "  two:\n    cmd: echo\n    params:\n      - p.yaml:\n          - baz\n",
    )
    project.commit()
    project.write("p.yaml", "foo: bar2\nbaz: qux2\nnot_tracked: 2\n")
    assert _compare_params(project) == 2


def test_default_params_file_is_read_whole(project: Project) -> None:
    project.write("params.yaml", "foo: bar\nxyz: val\nabc: ignore\n")
    project.write("dvc.yaml", _stage(params="    params:\n      - foo\n"))
    project.commit()
    project.write("params.yaml", "foo: qux\nxyz: val\nabc: ignore2\n")
    assert _compare_params(project) == 3


def test_params_file_tracked_whole(project: Project) -> None:
    project.write("other.yaml", "foo:\n  bar: bar\nx: '0'\n")
    project.write("dvc.yaml", _stage(params="    params:\n      - other.yaml:\n"))
    project.commit()
    project.write("other.yaml", "foo:\n  bar: baz\nx: '0'\n")
    assert _compare_params(project) == 2


def test_top_level_params(project: Project) -> None:
    project.write("dvc.yaml", "params:\n  - config/train.json\n")
    project.write("config/train.json", {"lr": 0.1, "layers": [3, 4]})
    project.commit()
    project.write("config/train.json", {"lr": 0.2, "layers": [3, 4]})
    assert _compare_params(project) == 2


def test_top_level_parametrized_params(project: Project) -> None:
    project.write("param.json", {"foo": 3, "bar": 10})
    project.write("params.yaml", "param_file: param.json\n")
    project.write("dvc.yaml", "params:\n  - ${param_file}\n")
    project.commit()
    project.write("param.json", {"foo": 4, "bar": 10})
    assert _compare_params(project) == 3


def test_params_of_a_stage_with_wdir(project: Project) -> None:
    project.write("src/params.yaml", "lr: 0.1\nother: 1\n")
    project.write("dvc.yaml", _stage(params="    params:\n      - lr\n", extra="    wdir: src\n"))
    project.commit()
    project.write("src/params.yaml", "lr: 0.2\nother: 2\n")
    assert _compare_params(project) == 1


def test_vars_used_by_stages_are_params(project: Project) -> None:
    project.write("config.yaml", "model:\n  lr: 0.1\n  depth: 3\n")
    project.write("dvc.yaml", "vars:\n  - config.yaml\nstages:\n  train:\n    cmd: echo ${model.lr}\n")
    project.commit()
    project.write("config.yaml", "model:\n  lr: 0.2\n  depth: 3\n")
    assert _compare_params(project) == 1


# --- plots diff: tests/func/plots, tests/func/metrics/plots ------------------------------------------


def _plots(project: Project, rev: str = "HEAD") -> tuple[dict[str, object], object]:
    evaluation, _ = ours(project.root, rev)
    return dvc_plots(project.root, rev), evaluation


def _spec(evaluation: object, plot_id: str) -> PlotSpec:
    found = [s for s in evaluation.config.plots if s.path == plot_id]  # type: ignore[attr-defined]
    assert len(found) == 1, (plot_id, evaluation.config.plots)  # type: ignore[attr-defined]
    return found[0]


def test_plot_with_default_x_and_y(project: Project) -> None:
    """No x: the row number (DVC's step); no y: the last field."""
    project.write("dvc.yaml", _stage(plots="    plots:\n      - metric.json:\n          cache: false\n"))
    project.write("metric.json", [{"y": 2}, {"y": 3}])
    project.commit()
    project.write("metric.json", [{"y": 5}, {"y": 6}])
    theirs, evaluation = _plots(project)
    spec = _spec(evaluation, "metric.json")
    points = our_series(evaluation, spec)
    assert assert_plot_agrees(points, theirs["metric.json"], {"HEAD": "HEAD", "workspace": HEAD}, x_is_row=True) == 2
    labels = (theirs["metric.json"].properties["x_label"], theirs["metric.json"].properties["y_label"])
    assert our_axis_labels(evaluation, spec) == labels == ("step", "y")  # the row number is DVC's step


def test_top_level_plot_joining_x_and_y_from_two_files(project: Project) -> None:
    """x from data1.json, y from sub/dir/data2.json, rows joined by position (DVC's comparison)."""
    project.write("data1.json", [{"a": 1, "b": 0.1, "c": 0.01}, {"a": 2, "b": 0.2, "c": 0.02}])
    project.write("sub/dir/data2.json", [{"a": 6, "b": 0.6, "c": 0.06}, {"a": 7, "b": 0.7, "c": 0.07}])
    project.write(
        "dvc.yaml",
        "plots:\n  - comparison:\n      x:\n        data1.json: a\n      y:\n        sub/dir/data2.json: b\n",
    )
    project.commit()
    project.write("sub/dir/data2.json", [{"a": 6, "b": 0.65, "c": 0.06}, {"a": 7, "b": 0.75, "c": 0.07}])
    theirs, evaluation = _plots(project)
    spec = _spec(evaluation, "comparison")
    assert spec.series == (PlotSource("sub/dir/data2.json", "b", "a", "data1.json"),)
    points = our_series(evaluation, spec)
    assert points[(HEAD, "sub/dir/data2.json", "b")] == [(1, 0.65), (2, 0.75)]
    assert assert_plot_agrees(points, theirs["comparison"], {"HEAD": "HEAD", "workspace": HEAD}) == 2


def test_top_level_plot_named_by_its_file(project: Project) -> None:
    project.write("data1.json", [{"a": 1, "b": 0.1, "c": 0.01}, {"a": 2, "b": 0.2, "c": 0.02}])
    project.write("dvc.yaml", "plots:\n  - data1.json:\n      x: c\n      y: a\n      title: File as key test\n")
    project.commit()
    project.write("data1.json", [{"a": 3, "b": 0.1, "c": 0.01}, {"a": 4, "b": 0.2, "c": 0.02}])
    theirs, evaluation = _plots(project)
    spec = _spec(evaluation, "data1.json")
    assert spec.title == theirs["data1.json"].properties["title"] == "File as key test"
    points = our_series(evaluation, spec)
    assert assert_plot_agrees(points, theirs["data1.json"], {"HEAD": "HEAD", "workspace": HEAD}) == 2


def test_top_level_plot_inferring_its_files_from_y(project: Project) -> None:
    """One plot id over two files: both revisions of both files in one figure."""
    project.write("data1.json", [{"a": 1, "b": 0.1, "c": 0.01}, {"a": 2, "b": 0.2, "c": 0.02}])
    project.write("sub/dir/data2.json", [{"a": 6, "b": 0.6, "c": 0.06}, {"a": 7, "b": 0.7, "c": 0.07}])
    project.write(
        "dvc.yaml", "plots:\n  - infer:\n      x: a\n      y:\n        data1.json: b\n        sub/dir/data2.json: c\n"
    )
    project.commit()
    project.write("data1.json", [{"a": 1, "b": 0.15, "c": 0.01}, {"a": 2, "b": 0.25, "c": 0.02}])
    theirs, evaluation = _plots(project)
    points = our_series(evaluation, _spec(evaluation, "infer"))
    assert assert_plot_agrees(points, theirs["infer"], {"HEAD": "HEAD", "workspace": HEAD}) == 4


def test_stage_plots_folder_gives_one_plot_per_file(project: Project) -> None:
    project.write(
        "dvc.yaml", _stage(plots="    plots:\n      - subdir:\n          cache: false\n          title: TITLE\n")
    )
    for name in ("p1.json", "p2.json"):
        project.write(f"subdir/{name}", [{"first_val": 100, "val": 2}, {"first_val": 200, "val": 3}])
    project.commit()
    project.write("subdir/p2.json", [{"first_val": 100, "val": 4}, {"first_val": 200, "val": 5}])
    theirs, evaluation = _plots(project)
    assert sorted(theirs) == ["subdir/p1.json", "subdir/p2.json"]
    for plot_id in theirs:
        spec = _spec(evaluation, plot_id)
        assert spec.title == "TITLE"
        points = our_series(evaluation, spec)
        assert assert_plot_agrees(points, theirs[plot_id], {"HEAD": "HEAD", "workspace": HEAD}, x_is_row=True) == 2


def test_csv_plot_without_header(project: Project) -> None:
    """`header: false` (DVC honours it on a stage's plots): the first row is data, columns 0, 1."""
    project.write(
        "dvc.yaml",
        _stage(
            plots="    plots:\n      - data.csv:\n          cache: false\n"
            "          header: false\n          x: '0'\n          y: '1'\n"
        ),
    )
    project.write("data.csv", "1,10\n2,20\n")
    project.commit()
    project.write("data.csv", "1,11\n2,21\n3,31\n")
    theirs, evaluation = _plots(project)
    points = our_series(evaluation, _spec(evaluation, "data.csv"))
    assert points[(HEAD, "data.csv", "1")] == [(1, 11), (2, 21), (3, 31)]  # the first row is data
    assert assert_plot_agrees(points, theirs["data.csv"], {"HEAD": "HEAD", "workspace": HEAD}) == 2


def test_tsv_plot_and_axis_labels(project: Project) -> None:
    project.write(
        "dvc.yaml", "plots:\n  - log.tsv:\n      x: epoch\n      y: loss\n      x_label: Epoch\n      y_label: Loss\n"
    )
    project.write("log.tsv", "epoch\tloss\n0\t1.0\n1\t0.5\n")
    project.commit()
    project.write("log.tsv", "epoch\tloss\n0\t0.9\n1\t0.4\n")
    theirs, evaluation = _plots(project)
    spec = _spec(evaluation, "log.tsv")
    assert (spec.x_label, spec.y_label) == (
        theirs["log.tsv"].properties["x_label"],
        theirs["log.tsv"].properties["y_label"],
    )
    points = our_series(evaluation, spec)
    assert assert_plot_agrees(points, theirs["log.tsv"], {"HEAD": "HEAD", "workspace": HEAD}) == 2


def test_image_plots_of_both_revisions(project: Project) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    project.write("dvc.yaml", "plots:\n  - plot.png\n")
    project.write("plot.png", png)
    project.commit()
    project.write("plot.png", png + b"2")
    theirs, evaluation = _plots(project)
    assert "plot.png" in theirs
    assert evaluation.baseline.results is not None and evaluation.baseline.results.files["plot.png"] == png
    assert evaluation.head.files["plot.png"] == png + b"2"


def test_horizontal_bars_take_values_from_x_and_categories_from_y(project: Project) -> None:
    project.write(
        "dvc.yaml",
        "plots:\n  - importance.csv:\n      template: bar_horizontal_sorted\n      x: importance\n      y: feature\n",
    )
    project.write("importance.csv", "feature,importance\nage,0.2\nincome,0.5\n")
    project.commit()
    project.write("importance.csv", "feature,importance\nage,0.3\nincome,0.4\n")
    theirs, evaluation = _plots(project)
    spec = _spec(evaluation, "importance.csv")
    assert spec.template == theirs["importance.csv"].properties["template"] == "bar_horizontal_sorted"
    points = our_series(evaluation, spec)
    assert assert_plot_agrees(points, theirs["importance.csv"], {"HEAD": "HEAD", "workspace": HEAD}) == 2


def test_plot_missing_at_the_base_is_drawn_for_the_change_only(project: Project) -> None:
    project.commit("nothing")
    project.write("dvc.yaml", "plots:\n  - new.csv:\n      y: loss\n")
    project.write("new.csv", "loss\n1\n0.5\n")
    theirs, evaluation = _plots(project)
    points = our_series(evaluation, _spec(evaluation, "new.csv"))
    assert assert_plot_agrees(points, theirs["new.csv"], {"workspace": HEAD}, x_is_row=True) == 1


# --- real dvclive output ------------------------------------------------------------------------------


def _train_with_dvclive(root: Path, scale: float, dvcyaml: str | None = "dvc.yaml", folder: str = "dvclive") -> None:
    """A few epochs logged by the real dvclive, with a scikit-learn ROC and confusion matrix.
    (dvclive needs a commit to exist in a git repository.)"""
    from dvclive import Live

    if not (root / ".git").exists() or subprocess_out(root, "git", "rev-list", "--all", "-n", "1") == "":
        Project(root).commit("start")

    with chdir(root), Live(dir=folder, dvcyaml=dvcyaml, save_dvc_exp=False) as live:
        live.log_params({"lr": 0.01 * scale, "layers": [64, 32]})
        for epoch in range(3):
            live.log_metric("train/loss", round(1.0 / (epoch + 1) / scale, 4))
            # {metric: {split: value}} in metrics.json
            live.log_metric("roc_auc/train", 0.9)
            live.log_metric("roc_auc/test", round(0.8 * scale, 4))
            live.next_step()
        labels = [0, 1, 1, 0, 1, 0, 1, 1]
        scores = [0.1, 0.8 * scale, 0.7, 0.3, 0.9, 0.2 * scale, 0.6, 0.4]
        live.log_sklearn_plot("roc", labels, scores)
        live.log_sklearn_plot("confusion_matrix", labels, [round(s) for s in scores], name="cm.json")


def test_dvclive_output_metrics_params_and_plots(project: Project) -> None:
    _train_with_dvclive(project.root, 1.0)
    project.commit()
    _train_with_dvclive(project.root, 1.05)
    count, (evaluation, _) = _compare_metrics(project)
    assert count >= 3
    assert _compare_params(project) == 2
    theirs = dvc_plots(project.root, "HEAD")
    compared = 0
    for spec in evaluation.config.plots:  # type: ignore[attr-defined]
        if spec.template == "image" or spec.path not in theirs:
            continue
        points = our_series(evaluation, spec)
        no_x = all(source.x is None for source in spec.series)
        compared += assert_plot_agrees(points, theirs[spec.path], {"HEAD": "HEAD", "workspace": HEAD}, x_is_row=no_x)
    assert compared >= 6  # two revisions of train/loss, roc_auc/train, roc_auc/test, roc


def test_dvclive_split_metrics_get_their_direction_from_every_name_part(project: Project) -> None:
    """`roc_auc.test`: the last part says nothing, `roc_auc` does; a glob gate fires on it."""
    _train_with_dvclive(project.root, 1.0)
    project.write("cml-bot.yaml", 'thresholds:\n  "roc_auc.*": {max_drop: 0.01}\n')
    project.commit()
    _train_with_dvclive(project.root, 0.96)  # roc_auc.test 0.8 -> 0.768
    _, result = ours(project.root, "HEAD")
    test = next(m for m in result.metrics if m.name == "roc_auc.test")
    assert test.direction == "higher" and test.failures == ("dropped by 0.032 (allowed 0.01)",)


def test_dvclive_dvcyaml_in_a_subfolder(project: Project) -> None:
    """dvclive's `dvcyaml="results/dvc.yaml"`: found without any config."""
    _train_with_dvclive(project.root, 1.0, dvcyaml="results/dvc.yaml", folder="results")
    project.commit()
    _train_with_dvclive(project.root, 1.05, dvcyaml="results/dvc.yaml", folder="results")
    count, (evaluation, _) = _compare_metrics(project)
    assert count >= 3
    assert evaluation.config.dvc_declared is not None and "results/dvc.yaml" in evaluation.config.dvc_declared.files


def test_dvclive_plot_folder_in_cml_bot_yaml_draws_sklearn_plots_with_their_templates(project: Project) -> None:
    _train_with_dvclive(project.root, 1.0, dvcyaml=None)
    project.write("cml-bot.yaml", "metrics: [dvclive]\nplots: [dvclive/plots]\n")
    config = load_config(project.root)
    by_path = {spec.path: spec for spec in config.plots}
    roc = by_path["dvclive/plots/sklearn/roc.json"]
    assert (roc.template, roc.x, roc.y, roc.x_label) == ("simple", "fpr", ("tpr",), "False Positive Rate")
    cm = by_path["dvclive/plots/sklearn/cm.json"]
    assert (cm.template, cm.x, cm.y, cm.title) == ("confusion", "actual", ("predicted",), "Confusion Matrix")
    assert by_path["dvclive/plots/metrics/train/loss.tsv"].template == "linear"


# --- the plain reading agrees with DVC's resolver -------------------------------------------------------


PLAIN_DVC_YAML = """\
metrics:
  - top.json
params:
  - extra.toml
plots:
  - logs.csv:
      x: step
      y: [loss, acc]
      title: Training
  - ROC:
      template: simple
      x:
        roc.csv: fpr
      y:
        roc.csv: tpr
        roc_val.csv: [tpr]
  - images
stages:
  train:
    cmd: python train.py
    wdir: src
    params:
      - lr
      - ../hyper.yaml:
          - depth
    metrics:
      - ../eval/metrics.json:
          cache: false
      - ../eval/cached.json
    plots:
      - ../eval/confusion.csv:
          cache: false
          template: confusion
          x: actual
          y: predicted
"""


def test_plain_reading_agrees_with_dvcs_own_resolver(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write("dvc.yaml", PLAIN_DVC_YAML)
    project.write("sub/dvc.yaml", "metrics:\n  - ../top.json\n  - m.yaml\nplots:\n  - p.csv\n")
    for path in ("images/a.png", "images/b.png"):
        project.write(path, b"\x89PNG\r\n\x1a\n")
    project.write("params.yaml", "seed: 1\n")
    plain = load_config(project.root).dvc_declared
    assert plain is not None and plain.resolver.startswith("cml-bot")
    from cml_bot.dvcproject import api

    through_dvc = api.as_declarations(lambda p: p, api.resolve(project.root), "DVC")
    assert plain.metrics == through_dvc.metrics
    assert dict(zip(plain.params, (plain.keys_of(p) for p in plain.params), strict=True)) == dict(
        zip(through_dvc.params, (through_dvc.keys_of(p) for p in through_dvc.params), strict=True)
    )
    assert set(plain.plots) == set(through_dvc.plots)
    assert set(plain.cached) == set(through_dvc.cached)


def test_without_dvc_a_dvc_yaml_needing_it_says_how_to_install_it(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write("dvc.yaml", "stages:\n  train:\n    foreach: [a, b]\n    do:\n      cmd: echo ${item}\n")
    from cml_bot.dvcproject import api

    monkeypatch.setattr(api, "available", lambda: False)
    with pytest.raises(
        ConfigError,
        match=r"^dvc\.yaml at stages\.train: uses foreach, which only DVC resolves: "
        r"install it with pip install 'cml-bot\[dvc\]==0\.1\.0'$",
    ):
        load_config(project.root)


def test_importing_dvc_only_when_needed(tmp_path: Path) -> None:
    """A plain dvc.yaml is read without importing DVC (it costs ~0.5 s)."""
    import subprocess

    project = Project(tmp_path)
    project.write("dvc.yaml", "metrics:\n  - m.json\n")
    code = (
        "import sys; from pathlib import Path; from cml_bot.config import load_config; "
        f"load_config(Path({str(tmp_path)!r})); print('dvc' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert find_layout(tmp_path).files == ("dvc.yaml",)


def test_there_are_at_least_40_cases() -> None:
    cases = [name for name in globals() if name.startswith("test_") and name != "test_there_are_at_least_40_cases"]
    assert len(cases) >= 40, len(cases)


def test_without_dvc_a_cached_base_output_says_how_to_read_it(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write("dvc.yaml", _stage("    metrics:\n      - m.json\n"))
    project.write("m.json", {"acc": 0.8})
    project.dvc_commit()
    base = project.commit()
    project.write("m.json", {"acc": 0.85})
    from cml_bot.dvcproject import api

    monkeypatch.setattr(api, "available", lambda: False)
    evaluation = evaluate(Options(root=project.root, compare=(base, None)), Effects(env={}))
    assert evaluation.baseline.results is None
    assert evaluation.baseline.caveat == (
        "base outputs m.json unreachable: kept in DVC's cache; pip install 'cml-bot[dvc]==0.1.0' to read it "
        "from the cache or remote"
    )
