"""Tests for cml_bot.metrics: every format, flattening, Samples, merging, errors, formatting."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cml_bot import metrics
from cml_bot.errors import InputError
from cml_bot.metrics import (
    Samples,
    Value,
    WorkspaceTree,
    collect,
    combine,
    format_value,
    parse_values,
    read_values,
)

Writer = Callable[[str, str | bytes], Path]


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    """Write a file under tmp_path (creating folders) and return its path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    return _write


def parse_error(data: bytes | str, filename: str) -> str:
    """The message of the InputError that parsing raises (fails the test if it does not)."""
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(InputError) as info:
        parse_values(raw, filename)
    message = str(info.value)
    assert message.startswith(f"{filename}: ")
    assert "\n" not in message and "\r" not in message
    return message


# --- JSON ------------------------------------------------------------------------------------------


def test_json_flattens_nested_mappings_with_dots() -> None:
    data = b'{"train": {"loss": 0.2, "acc": 0.9}, "eval": {"deep": {"f1": 0.5}}, "step": 9}'
    assert parse_values(data, "metrics.json") == {
        "train.loss": 0.2,
        "train.acc": 0.9,
        "eval.deep.f1": 0.5,
        "step": 9,
    }


def test_json_keeps_types_and_document_order() -> None:
    values = parse_values(b'{"z": 1, "a": 1.5, "name": "resnet", "ok": true, "bad": false, "none": null}', "m.json")
    assert list(values) == ["z", "a", "name", "ok", "bad", "none"]
    assert type(values["z"]) is int
    assert type(values["a"]) is float
    assert values["name"] == "resnet"
    assert values["ok"] is True and values["bad"] is False
    assert values["none"] is None


def test_json_list_of_numbers_is_samples_and_other_lists_are_skipped_as_in_dvc(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DVC drops every list from metrics; a list of numbers is kept here (several seeds), other lists
    (records, text, nested lists) are no metric here either, said in the log (-v), not per_class.0.acc."""
    caplog.set_level("INFO", logger="cml_bot.metrics")
    values = parse_values(
        b'{"acc": [0.9, 0.91, 0.92], "ints": [1, 2], "per_class": [{"acc": 0.9}, {"acc": 0.8}],'
        b' "layers": [{"units": 64}, "relu"], "flags": [true, false], "mixed": [1, "a"], "nested": [[1, 2], [3]],'
        b' "none": [], "f1": 0.5}',
        "m.json",
    )
    assert values == {"acc": Samples((0.9, 0.91, 0.92)), "ints": Samples((1.0, 2.0)), "f1": 0.5}
    assert "m.json: skipped per_class, layers, flags, mixed, nested and 1 more" in caplog.text
    samples = values["acc"]
    assert isinstance(samples, Samples)
    assert all(type(v) is float for v in samples.values)


def test_json_empty_mappings_and_lists_contribute_nothing() -> None:
    assert parse_values(b'{"a": {}, "b": [], "c": {"d": {}}, "e": 1}', "m.json") == {"e": 1}
    assert parse_values(b"{}", "m.json") == {}


def test_json_nan_and_infinities() -> None:
    values = parse_values(b'{"a": NaN, "b": Infinity, "c": -Infinity, "d": [NaN, 1]}', "m.json")
    assert isinstance(values["a"], float) and math.isnan(values["a"])
    assert values["b"] == math.inf
    assert values["c"] == -math.inf
    samples = values["d"]
    assert isinstance(samples, Samples) and math.isnan(samples.values[0])


def test_json_with_utf8_bom_and_utf16_bom() -> None:
    assert parse_values(b'\xef\xbb\xbf{"a": 1}', "m.json") == {"a": 1}
    assert parse_values('{"a": 1}'.encode("utf-16"), "m.json") == {"a": 1}


def test_json_lone_surrogate_escape_becomes_writable_text() -> None:
    values = parse_values(b'{"a": "x\\ud800y", "\\udfff": 1}', "m.json")
    for name, value in values.items():
        name.encode("utf-8")
        assert isinstance(value, str | int)
        str(value).encode("utf-8")


def test_json_huge_integer_in_a_list_is_not_samples() -> None:
    assert parse_values(('{"a": [1, ' + "9" * 400 + '], "b": 2}').encode(), "m.json") == {"b": 2}


# --- YAML ------------------------------------------------------------------------------------------


def test_yaml_nested_params() -> None:
    text = "train:\n  lr: 0.01\n  epochs: 10\n  optimizer: adam\nmodel:\n  layers: [64, 32]\n  dropout: null\n"
    assert parse_values(text.encode(), "params.yaml") == {
        "train.lr": 0.01,
        "train.epochs": 10,
        "train.optimizer": "adam",
        "model.layers": Samples((64.0, 32.0)),
        "model.dropout": None,
    }


def test_yml_extension_and_yaml_specials() -> None:
    values = parse_values(b"a: .nan\nb: .inf\nc: -.inf\nd: true\ne: 2024-01-31\n", "params.YML")
    assert isinstance(values["a"], float) and math.isnan(values["a"])
    assert values["b"] == math.inf and values["c"] == -math.inf
    assert values["d"] is True
    assert values["e"] == "2024-01-31"


def test_yaml_exponent_floats_are_numbers_as_in_yaml_1_2() -> None:
    # PyYAML's YAML 1.1 resolver alone would give the strings "1e-3" and "2.5E4"
    values = parse_values(b"lr: 1e-3\nwd: 2.5E4\nplain: 1.5\nquoted: '1e-3'\nword: e5\n", "params.yaml")
    assert values == {"lr": 0.001, "wd": 25000.0, "plain": 1.5, "quoted": "1e-3", "word": "e5"}


def test_yaml_is_read_as_yaml_1_2_as_dvc_reads_it() -> None:
    """YAML 1.1 (PyYAML's default) would give 34, True, 5400, the key false and the text "0o17"."""
    text = "seed: 0042\nuse_gpu: yes\ntimeout: 1:30:00\nweights:\n  no: 0.3\nmask: 0o17\nflag: True\noff: off\n"
    assert parse_values(text.encode(), "params.yaml", params=True) == {
        "seed": 42,
        "use_gpu": "yes",
        "timeout": "1:30:00",
        "weights.no": 0.3,
        "mask": 15,
        "flag": True,
        "off": "off",
    }


# Plain scalars whose type YAML 1.1 and 1.2 disagree on, or that a resolver could get wrong.
YAML_SCALARS = [
    *("0042", "08", "017", "0o17", "0x1F", "-0x1F", "0b101", "1_000", "0_1", "_1", "1_", "0o8", "-0", "+1"),
    *("1e3", "1E5", "12e03", "1.5e-3", ".5", ".5e3", "+.5e+3", "1.", "0.", "-.inf", ".NaN", ".nan"),
    *("true", "True", "TRUE", "tRue", "yes", "Yes", "no", "NO", "on", "off", "y", "n"),
    *("~", "null", "Null", "NULL", "", "1:30:00", "12:30", "-1:30", "190:20:30.15"),
    *("2024-01-02", "2024-01-02 10:00:00", "2024-1-2T10:00:00Z", "0x", "<<x", "="),
]


@pytest.mark.parametrize("scalar", YAML_SCALARS)
def test_yaml_scalars_have_the_types_dvcs_yaml_reader_gives(scalar: str) -> None:
    """DVC reads metrics and params with ruamel.yaml's YAML 1.2 safe loader; so do we (PyYAML
    with YAML 1.2's resolvers), the fast (libyaml) loader and the pure-Python one alike."""
    ruamel = pytest.importorskip("ruamel.yaml", reason="DVC's YAML reader comes with the test extras")
    try:
        theirs: object = ruamel.YAML(typ="safe").load(f"k: {scalar}\n")["k"]
    except Exception:  # "=": ruamel has no constructor for it; text here, as any unknown scalar
        theirs = scalar
    for loader in (metrics._FAST_LOADER, metrics._SAFE_LOADER):
        ours = yaml.load(f"k: {scalar}\n", Loader=loader)["k"]
        assert type(ours) is type(theirs), (scalar, ours, theirs)
        assert ours == theirs or (isinstance(ours, float) and math.isnan(ours) and math.isnan(theirs))  # type: ignore[arg-type]


def test_yaml_plot_data_is_read_as_yaml_1_2_too() -> None:
    from cml_bot.plots.tables import load_table

    table = load_table(b"- {step: 0010, done: yes, loss: 1e-3}\n- {step: 0011, done: no, loss: 2e-3}\n", "p.yaml")
    assert table.data["step"].values.tolist() == [10, 11]
    assert table.data["done"].values.tolist() == ["yes", "no"]
    assert table.data["loss"].values.tolist() == [0.001, 0.002]


def test_yaml_non_string_keys_become_text() -> None:
    assert parse_values(b"1: a\nnull: b\n2024-01-01: c\n", "p.yaml") == {
        "1": "a",
        "null": "b",
        "2024-01-01": "c",
    }


def test_yaml_aliases_are_expanded_but_recursive_ones_refused() -> None:
    assert parse_values(b"base: &b {lr: 0.1}\nrun: *b\n", "p.yaml") == {"base.lr": 0.1, "run.lr": 0.1}
    assert "refers to itself" in parse_error("a: &a {b: *a}\n", "p.yaml")
    assert parse_values(b"a: &a [1, *a]\nb: 1\n", "p.yaml") == {"b": 1}  # a list of no numbers: skipped


def test_yaml_alias_bomb_is_refused() -> None:
    lists = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    mappings = "a: &a {" + ", ".join(f"k{i}: x" for i in range(10)) + "}\n"
    for level in "bcdefg":
        prev = chr(ord(level) - 1)
        lists += f"{level}: &{level} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
        mappings += f"{level}: &{level} {{" + ", ".join(f"k{i}: *{prev}" for i in range(10)) + "}\n"
    assert "more than 100,000 names and values" in parse_error(mappings, "p.yaml")
    with pytest.raises(InputError, match="more than 100,000 names and values"):
        parse_values(lists.encode(), "p.yaml", params=True)  # a params list is a value: counted expanded
    assert parse_values(lists.encode(), "p.yaml") == {}  # in metrics lists of text are skipped unexpanded


def test_yaml_deeply_nested_document_is_an_error_not_a_crash() -> None:
    # libyaml's C composer would overflow the C stack on this document
    assert "nested too deeply" in parse_error("a: " + "[" * 100_000, "p.yaml")
    assert "nested too deeply" in parse_error("a: " + "[" * 50_000 + "]" * 50_000, "p.yaml")


def test_yaml_fast_and_pure_python_loaders_agree() -> None:
    text = "a:\n  b: [1, 2.5]\n  c: {d: x, e: 1e-3}\nf: [.nan]\n"
    # a long comment line makes the cheap depth bound too large for the C loader
    long_text = text + "#" + "x" * 2000 + "\n"
    assert metrics._yaml_depth_bound(text) <= metrics._C_YAML_MAX_DEPTH < metrics._yaml_depth_bound(long_text)
    fast = parse_values(text.encode(), "p.yaml")
    slow = parse_values(long_text.encode(), "p.yaml")
    assert fast["a.c.e"] == 0.001
    assert set(fast) == set(slow)
    for name, value in fast.items():
        assert format_value(value) == format_value(slow[name])


# --- TOML ------------------------------------------------------------------------------------------


def test_toml_tables_arrays_and_specials() -> None:
    text = (
        'name = "run"\nseeds = [1, 2, 3]\n[train]\nlr = 1e-3\nnan = nan\nhuge = inf\n'
        "when = 1979-05-27T07:32:00Z\n[[layers]]\nunits = 64\n"
    )
    values = parse_values(text.encode(), "params.toml")
    assert values["name"] == "run"
    assert values["seeds"] == Samples((1.0, 2.0, 3.0))
    assert values["train.lr"] == 0.001
    assert isinstance(values["train.nan"], float) and math.isnan(values["train.nan"])
    assert values["train.huge"] == math.inf
    assert values["train.when"] == "1979-05-27T07:32:00+00:00"
    assert not any(name.startswith("layers") for name in values)  # an array of tables: records, skipped


# --- CSV and TSV -----------------------------------------------------------------------------------


def test_csv_training_log_uses_the_last_row() -> None:
    text = "step,loss,acc,note\n0,0.9,0.5,warmup\n1,0.5,0.8,\n2,0.25,0.875,done\n"
    values = parse_values(text.encode(), "train.csv")
    assert values == {"step": 2, "loss": 0.25, "acc": 0.875, "note": "done"}
    assert type(values["step"]) is int


def test_csv_cells_conversion() -> None:
    text = "a,b,c,d,e,f,g,h,i,j\n 3 ,-1.5e-3,nan,inf,-Infinity,,True,false,0x10,1_000\n"
    values = parse_values(text.encode(), "log.csv")
    assert values["a"] == 3 and type(values["a"]) is int
    assert values["b"] == -0.0015
    assert isinstance(values["c"], float) and math.isnan(values["c"])
    assert values["d"] == math.inf and values["e"] == -math.inf
    assert values["f"] is None
    assert values["g"] is True and values["h"] is False
    assert values["i"] == "0x10" and values["j"] == "1_000"


def test_csv_pandas_index_column_is_ignored_and_crlf_and_bom_accepted() -> None:
    data = b"\xef\xbb\xbf,loss,acc\r\n0,0.5,0.8\r\n1,0.3,0.9\r\n"
    assert parse_values(data, "history.csv") == {"loss": 0.3, "acc": 0.9}


@pytest.mark.parametrize("header", ["name,value", "metric,value", "Metric,Value", " NAME , VALUE "])
def test_csv_name_value_table(header: str) -> None:
    text = f'{header}\nacc,0.91\nloss,1e-2\nmodel,"resnet, 50"\n\nepochs,10\n'
    assert parse_values(text.encode(), "summary.csv") == {
        "acc": 0.91,
        "loss": 0.01,
        "model": "resnet, 50",
        "epochs": 10,
    }


def test_csv_two_columns_without_name_value_header_is_a_log() -> None:
    assert parse_values(b"loss,acc\n0.5,0.8\n0.4,0.9\n", "log.csv") == {"loss": 0.4, "acc": 0.9}


def test_tsv_both_shapes() -> None:
    assert parse_values(b"epoch\tloss\n1\t0.5\n2\t0.4\n", "log.tsv") == {"epoch": 2, "loss": 0.4}
    assert parse_values(b"metric\tvalue\nacc\t0.9\nf1\t0,8\n", "m.tsv") == {"acc": 0.9, "f1": "0,8"}


# --- malformed files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        ('{"a": 1,\n "b": }', "eval/m.json", "line 2, column 7"),
        ("[1, 2]", "m.json", "found a list"),
        ("true", "m.json", "found a boolean"),
        ("", "m.json", "line 1, column 1"),
        ("[" * 5000, "m.json", "nested too deeply"),
        ('{"a": ' + "9" * 5000 + "}", "m.json", "invalid JSON"),
        ("a: [1\n", "p.yaml", "line 2"),
        ("a: 1\n b: 2\n", "p.yaml", "line 2, column 3"),
        ("- 1\n- 2\n", "p.yaml", "found a list"),
        ("", "p.yaml", "is empty"),
        ("# only a comment\n", "p.yml", "is empty"),
        ("a: 1\n---\nb: 2\n", "p.yaml", "single document"),
        ("a: !!python/object:os.system x\n", "p.yaml", "constructor"),
        ("a: !!float abc\n", "p.yaml", "invalid YAML"),
        ("a: 2001-13-45\n", "p.yaml", "invalid YAML"),
        ("a: !!binary a\n", "p.yaml", "base64"),
        ("a: \x00\n", "p.yaml", "invalid YAML"),
        ("a = \n", "p.toml", "invalid TOML"),
        ("a = 1\na = 2\n", "p.toml", "line 2"),
        ("a = " + "[" * 5000 + "]" * 5000, "p.toml", "invalid TOML"),
        ("", "m.csv", "is empty"),
        ("\n\n", "m.csv", "is empty"),
        ("a,b\n", "m.csv", "no data rows"),
        ("a,b\n1,2\n3\n", "m.csv", "line 3 has 1 field, the header (line 1) has 2"),
        ("a,a\n1,2\n", "m.csv", "column 'a' appears twice"),
        ('a,b\n1,"2\n', "m.csv", "invalid CSV at line 2"),
        ('a,b\n"1"x,2\n', "m.csv", "invalid CSV"),
        ("name,value\nacc,0.9,1\n", "m.csv", "line 2 has 3 fields, expected 2"),
        ("name,value\n,0.9\n", "m.csv", "line 2 has an empty name"),
        ("a\tb\n", "m.tsv", "no data rows"),
    ],
)
def test_malformed_files_raise_input_error_naming_the_file(data: str, filename: str, expected: str) -> None:
    assert expected in parse_error(data, filename)


@pytest.mark.parametrize("filename", ["m.json", "p.yaml", "p.toml", "m.csv", "m.tsv"])
def test_not_utf8_is_an_input_error(filename: str) -> None:
    assert "not UTF-8 text (byte 0xe9 at line 2)" in parse_error(b"a\ncaf\xe9\n", filename)


def test_invalid_utf16_is_an_input_error() -> None:
    assert "not valid UTF-16" in parse_error(b"\xff\xfe\x00\xd8", "m.json")


@pytest.mark.parametrize(("filename", "shown_ext"), [("m.txt", "'.txt'"), ("metrics", "without an extension")])
def test_unsupported_extension(filename: str, shown_ext: str) -> None:
    message = parse_error(b"{}", filename)
    assert f"unsupported file type {shown_ext}" in message
    assert ".json" in message and ".tsv" in message


# --- files, folders, several files -----------------------------------------------------------------


def test_read_values_reads_a_file_and_names_it_in_errors(write: Writer) -> None:
    path = write("eval/metrics.json", '{"acc": 0.9}')
    assert read_values(path) == {"acc": 0.9}
    bad = write("eval/bad.json", "{")
    with pytest.raises(InputError, match=r"^eval/bad\.json: invalid JSON"):
        read_values(bad, "eval/bad.json")
    with pytest.raises(InputError, match=f"^{re.escape(str(bad))}: invalid JSON"):
        read_values(bad)


def test_read_values_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^gone\.json: file not found$"):
        read_values(tmp_path / "gone.json", "gone.json")
    with pytest.raises(InputError, match=r"^dvclive: file not found$"):
        read_values(tmp_path / "dvclive", "dvclive")


def test_read_values_dvclive_folder(write: Writer, tmp_path: Path) -> None:
    # what dvclive 3 writes: metrics.json with nested names and the step, params.yaml beside it
    write("dvclive/metrics.json", json.dumps({"train": {"loss": 0.2, "acc": 0.93}, "step": 9}, indent=4))
    write("dvclive/params.yaml", "lr: 0.01\n")
    write("dvclive/plots/metrics/train/loss.tsv", "step\tloss\n0\t0.9\n")
    assert read_values(tmp_path / "dvclive", "dvclive") == {"train.loss": 0.2, "train.acc": 0.93, "step": 9}


def test_read_values_folder_errors_name_the_file(write: Writer, tmp_path: Path) -> None:
    write("dvclive/metrics.json", '{"a": ')
    with pytest.raises(InputError, match=r"^dvclive/metrics\.json: invalid JSON"):
        read_values(tmp_path / "dvclive", "dvclive/")
    write("other/params.yaml", "lr: 0.01\n")
    with pytest.raises(InputError, match=r"^other: is a folder without metrics\.json"):
        read_values(tmp_path / "other", "other")


def test_collect_merges_files_prefixes_collisions_and_says_where_each_came_from(write: Writer, tmp_path: Path) -> None:
    write("eval/a.json", '{"acc": 0.9, "loss": 0.3}')
    write("eval/b.json", '{"acc": 0.8, "f1": 0.7}')
    write("params.yaml", "lr: 0.01\n")
    found = collect(WorkspaceTree(tmp_path), ["eval/a.json", "eval/b.json", "params.yaml"])
    assert found.values == {
        "eval/a.json:acc": 0.9,
        "loss": 0.3,
        "eval/b.json:acc": 0.8,
        "f1": 0.7,
        "lr": 0.01,
    }
    assert found.origins == {
        "eval/a.json:acc": "eval/a.json",
        "loss": "eval/a.json",
        "eval/b.json:acc": "eval/b.json",
        "f1": "eval/b.json",
        "lr": "params.yaml",
    }
    assert found.problems == {}
    assert found.files == ("eval/a.json", "eval/b.json", "params.yaml")


def test_collect_reads_a_path_listed_twice_once(write: Writer, tmp_path: Path) -> None:
    write("m.json", '{"acc": 0.9}')
    assert collect(WorkspaceTree(tmp_path), ["m.json", "m.json"]).values == {"acc": 0.9}


def test_collect_names_missing_and_malformed_files_instead_of_failing(write: Writer, tmp_path: Path) -> None:
    write("m.json", '{"acc": 0.9}')
    write("m.csv", "")
    found = collect(WorkspaceTree(tmp_path), ["m.json", "eval/missing.json", "m.csv"])
    assert found.values == {"acc": 0.9}
    assert found.problems == {
        "eval/missing.json": "eval/missing.json: not found in the workspace",
        "m.csv": "m.csv: is empty (expected a header row)",
    }
    assert collect(WorkspaceTree(tmp_path), []).values == {}


def test_collect_refuses_a_symlink_leading_out(write: Writer, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside.json"
    outside.write_text('{"secret": 1}')
    (tmp_path / "m.json").symlink_to(outside)
    with pytest.raises(InputError, match=r"^m\.json: points outside the repository"):
        collect(WorkspaceTree(tmp_path), ["m.json"])


def test_collect_folders_dvclive_output_or_every_metrics_file(write: Writer, tmp_path: Path) -> None:
    write("dvclive/metrics.json", '{"acc": 0.9}')
    write("dvclive/plots/metrics/acc.tsv", "step\tacc\n0\t0.9\n")
    write("eval/train.json", '{"acc": 0.95}')
    write("eval/test/scores.yaml", "acc: 0.85\n")
    write("eval/README.md", "not a metrics file")
    write("empty/notes.txt", "nothing")
    found = collect(WorkspaceTree(tmp_path), ["dvclive", "eval", "empty"])
    assert found.values == {
        "dvclive/metrics.json:acc": 0.9,
        "eval/test/scores.yaml:acc": 0.85,
        "eval/train.json:acc": 0.95,
    }
    assert found.problems == {"empty": "empty: folder has no metrics files"}


def test_collect_params_keeps_lists_whole_and_only_the_tracked_keys(write: Writer, tmp_path: Path) -> None:
    write("params.yaml", "train:\n  layers: [64, 32]\n  lr: 0.1\n  opt: {name: adam, betas: [0.9, 0.99]}\nseed: 1\n")
    tree = WorkspaceTree(tmp_path)
    every = collect(tree, ["params.yaml"], params=True).values
    assert every == {
        "train.layers": "[64, 32]",
        "train.lr": 0.1,
        "train.opt.name": "adam",
        "train.opt.betas": "[0.9, 0.99]",
        "seed": 1,
    }
    assert format_value(every["train.layers"]) == "[64, 32]"  # not "48 ± 22.6 (n=2)"
    tracked = collect(tree, ["params.yaml"], params=True, keys=lambda path: ("train.opt", "seed"))
    assert tracked.values == {"train.opt.name": "adam", "train.opt.betas": "[0.9, 0.99]", "seed": 1}


def test_combine_prefixes_every_file_that_defines_a_shared_name() -> None:
    merged = combine([("a.json", {"x": 1, "y": 2}), ("b.json", {"x": 3}), ("c.json", {"x": 4, "z": 5})])
    assert merged == {"a.json:x": 1, "y": 2, "b.json:x": 3, "c.json:x": 4, "z": 5}
    assert list(merged) == ["a.json:x", "y", "b.json:x", "c.json:x", "z"]
    assert combine([]) == {}


def test_revisions_are_named_alike_from_both_sides() -> None:
    """The base has eval/metrics.json's acc alone; this change adds test/metrics.json with an acc.
    Named per revision, the base's metric would be "acc" (removed) and this change's
    "eval/metrics.json:acc" (new): one metric split in two, its drop hidden."""
    base = ({"acc": 0.9, "loss": 0.3}, {"acc": "eval/metrics.json", "loss": "eval/metrics.json"})
    head = (
        {"eval/metrics.json:acc": 0.85, "loss": 0.35, "test/metrics.json:acc": 0.8},
        {
            "eval/metrics.json:acc": "eval/metrics.json",
            "loss": "eval/metrics.json",
            "test/metrics.json:acc": "test/metrics.json",
        },
    )
    (base_named, base_origins), (head_named, _) = metrics.align([base, head])
    assert base_named == {"eval/metrics.json:acc": 0.9, "loss": 0.3}
    assert base_origins == {"eval/metrics.json:acc": "eval/metrics.json", "loss": "eval/metrics.json"}
    assert head_named == head[0]
    # the other way round (a file gone in this change), and a name without a file (MLflow, old records) kept
    (old, _), (new, _) = metrics.align([head, ({"acc": 0.84, "mlflow_acc": 0.5}, {"acc": "eval/metrics.json"})])
    assert set(old) == set(head[0]) and new == {"eval/metrics.json:acc": 0.84, "mlflow_acc": 0.5}
    # one file again on both sides: the plain name, whichever way it was recorded
    (a, _), (b, _) = metrics.align([head, head])
    assert a == b == head[0]
    assert metrics.align([({"eval/m.json:acc": 1}, {"eval/m.json:acc": "eval/m.json"})])[0][0] == {"acc": 1}


def test_results_recorded_under_the_plain_name_still_match() -> None:
    from cml_bot.results import RunResults, aligned, from_json, to_json

    recorded = from_json(
        to_json(
            RunResults(
                "a" * 40,
                {"acc": 0.9},
                params={"lr": 0.1},
                origins={"acc": "eval/metrics.json"},
                param_origins={"lr": "params.yaml"},
            )
        ),
        "record",
    )
    assert recorded.param_origins == {"lr": "params.yaml"}
    head = RunResults(
        None,
        {"eval/metrics.json:acc": 0.85, "test/metrics.json:acc": 0.8},
        params={"params.yaml:lr": 0.2, "ft.yaml:lr": 0.01},
        origins={"eval/metrics.json:acc": "eval/metrics.json", "test/metrics.json:acc": "test/metrics.json"},
        param_origins={"params.yaml:lr": "params.yaml", "ft.yaml:lr": "ft.yaml"},
    )
    base, _ = aligned([recorded, head])
    assert base.metrics == {"eval/metrics.json:acc": 0.9} and base.params == {"params.yaml:lr": 0.1}
    assert base.origins == {"eval/metrics.json:acc": "eval/metrics.json"}
    older = from_json('{"version": 1, "sha": null, "metrics": {"acc": 0.9}}', "older record")  # no origins
    assert older.param_origins == {} and aligned([older, head])[0].metrics == {"acc": 0.9}


@pytest.mark.parametrize(
    ("text", "filename"),
    [
        ('{"val.acc": 0.95, "val": {"acc": 0.70}}', "m.json"),
        ('{"val": {"acc": 0.70}, "val.acc": 0.95}', "m.json"),
        ("val.acc: 0.95\nval:\n  acc: 0.7\n", "m.yaml"),
        ('"val.acc" = 0.95\n[val]\nacc = 0.7\n', "m.toml"),
        ('{"val.acc": [0.9, 0.8], "val": {"acc": 0.7}}', "m.json"),
        ('{"val.acc\\nx": 1, "val": {"acc\\nx": 2}}', "m.json"),  # still one line
    ],
)
def test_keys_that_join_to_one_name_are_an_error_naming_it(text: str, filename: str) -> None:
    """DVC: "duplicated key 'val.acc'"; before, the last one silently won."""
    message = parse_error(text, filename)
    assert "'val.acc" in message and "appears twice" in message
    assert isinstance(_raised(text, filename, params=True), metrics.StrictInputError)


def _raised(text: str, filename: str, params: bool = False) -> BaseException:
    with pytest.raises(InputError) as info:
        parse_values(text.encode(), filename, params=params)
    return info.value


# --- Samples and format_value ----------------------------------------------------------------------


def test_samples_statistics() -> None:
    samples = Samples((0.9, 0.91, 0.92))
    assert samples.n == 3
    assert samples.mean == pytest.approx(0.91)
    assert samples.std == pytest.approx(0.01)  # ddof=1
    one = Samples((0.5,))
    assert (one.mean, one.std, one.n) == (0.5, 0.0, 1)
    assert Samples((1, 2)) == Samples((1.0, 2.0))
    assert hash(Samples((1, 2))) == hash(Samples((1.0, 2.0)))


def test_samples_with_extreme_values_do_not_raise() -> None:
    huge = Samples((1e308, 1e308, -1e308))  # fsum or ** would raise OverflowError here
    assert isinstance(huge.mean, float)
    assert isinstance(huge.std, float)
    assert format_value(huge).endswith("(n=3)")
    assert math.isnan(Samples((math.inf, 1.0)).std)
    assert math.isnan(Samples(()).mean)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.91234567, "0.9123"),
        (1234567.0, "1234567"),
        (1e-7, "1e-07"),
        (0.5, "0.5"),
        (-0.00012345, "-0.0001234"),
        (3.14159265, "3.142"),  # four significant digits, as the report writes every number
        (2.0, "2"),
        (0.0, "0"),
        (-0.0, "0"),
        (1e20, "1e+20"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (42, "42"),
        (-7, "-7"),
        ("resnet", "resnet"),
        ("two\nlines\r\nthree", "two lines three"),
        (Samples((0.9, 0.91, 0.92)), "0.91 ± 0.01 (n=3)"),
        (Samples((0.5,)), "0.5 ± 0 (n=1)"),
        pytest.param(10**5000, "1.000e+5000", id="int-too-long-for-str"),
        pytest.param(-(12345 * 10**5000), "-1.234e+5004", id="negative-int-too-long-for-str"),
    ],
)
def test_format_value(value: Value, shown: str) -> None:
    assert format_value(value) == shown


# --- properties ------------------------------------------------------------------------------------

KEYS = st.text(max_size=8).filter(lambda key: "." not in key)
LEAVES = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
    | st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=4)
)
TREES = st.recursive(LEAVES, lambda inner: st.dictionaries(KEYS, inner, max_size=4), max_leaves=20)


def expected_flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Value]:
    """The reference flattening, written independently of the implementation."""
    flat: dict[str, Value] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(expected_flat(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            flat[f"{prefix}{key}"] = Samples(tuple(value))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@settings(max_examples=200, deadline=None, database=None)
@given(st.dictionaries(KEYS, TREES, max_size=5))
def test_property_json_round_trip(tree: dict[str, Any]) -> None:
    parsed = parse_values(json.dumps(tree).encode(), "m.json")
    expected = expected_flat(tree)
    assert parsed == expected
    assert list(parsed) == list(expected)
    for name, value in parsed.items():
        assert type(value) is type(expected[name])


STRUCTURAL = st.text(alphabet="{}[]\"',:=-.#&*!? \t\n\r0123456789eEnaNIfity_abv\\", max_size=60)
ANY_BYTES = st.binary(max_size=80) | STRUCTURAL.map(str.encode)


@pytest.mark.parametrize("ext", metrics.EXTENSIONS)
@settings(max_examples=150, deadline=None, database=None)
@given(data=ANY_BYTES)
def test_property_any_bytes_give_a_mapping_or_input_error(ext: str, data: bytes) -> None:
    filename = f"dir/file{ext}"
    try:
        values = parse_values(data, filename)
    except InputError as exc:
        message = str(exc)
        assert message.startswith(f"{filename}: ")
        assert len(message.splitlines()) == 1
        return
    assert isinstance(values, dict)
    for name, value in values.items():
        assert isinstance(name, str)
        assert value is None or isinstance(value, bool | int | float | str | Samples)


SAMPLES = st.lists(st.floats(), min_size=0, max_size=5).map(lambda xs: Samples(tuple(xs)))
VALUES = (
    st.floats()
    | st.integers()
    | st.text()
    | st.booleans()
    | st.none()
    | SAMPLES
    | st.sampled_from([10**5000, -(10**4400), 2**1024, 1e308, -1e-308, 5e-324])
)


@settings(max_examples=200, deadline=None, database=None)
@given(VALUES)
def test_property_format_value_is_one_line(value: Value) -> None:
    shown = format_value(value)
    assert isinstance(shown, str)
    assert len(shown.splitlines()) <= 1
    shown.encode("utf-8")


# --- Python params, single values --------------------------------------------------------------------


def test_python_params_read_literals_as_dvc_does_without_running_anything() -> None:
    source = b"""
import os
CONST = 1
IS_DIR: bool = True
LAYERS = [64, 32]
PATH = os.environ["HOME"]  # not a literal: skipped
print("never run")


class Config:
    lr = 0.1
    name = "adam"

    def __init__(self):
        self.epochs = 10
        other = 5
"""
    assert parse_values(source, "params.py", params=True) == {
        "CONST": 1,
        "IS_DIR": True,
        "LAYERS": "[64, 32]",
        "Config.lr": 0.1,
        "Config.name": "adam",
        "Config.epochs": 10,
    }
    with pytest.raises(InputError, match=r"^params\.py: invalid Python at line 1"):
        parse_values(b"def (:", "params.py", params=True)
    with pytest.raises(InputError, match=r"unsupported file type '\.py'"):
        parse_values(b"A = 1", "metrics.py")  # Python files hold params, not metrics


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (b"0.95\n", "acc.json", {"acc.json": 0.95}),
        (b"0.8", "eval/score.yaml", {"eval/score.yaml": 0.8}),
        (b'"v1"', "version.json", {"version.json": "v1"}),
    ],
)
def test_a_file_holding_one_value_is_one_metric_named_after_the_file(
    data: bytes, filename: str, expected: dict[str, Value]
) -> None:
    assert parse_values(data, filename) == expected
