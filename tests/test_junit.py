"""JUnit XML of the gates and pipeline steps: well-formed, one failing test case per regression."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from cml_bot.config import Threshold
from cml_bot.diff import diff
from cml_bot.junit import junit_xml
from cml_bot.metrics import Value
from cml_bot.pipeline import PipelineResult, StepResult
from cml_bot.report import Report

CONTROL = "".join(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r")


def _parse(text: str) -> ET.Element:
    assert text.startswith("<?xml ")
    text.encode("utf-8")  # writable as a file
    return ET.fromstring(text.split("\n", 1)[1])


def _cases(root: ET.Element) -> dict[str, ET.Element]:
    return {f"{c.get('classname')}/{c.get('name')}": c for c in root.iter("testcase")}


def test_one_failing_case_per_regression_and_passing_cases_for_other_gates() -> None:
    rules = [Threshold("accuracy", max_drop=0.01), Threshold("loss", max=0.5), Threshold("f1", min=0.1)]
    base: dict[str, Value] = {"accuracy": 0.9, "loss": 0.3, "f1": 0.8, "epochs": 3}
    head: dict[str, Value] = {"accuracy": 0.8, "loss": 0.7, "f1": 0.81, "epochs": 4}
    report = Report("T", "default", diff(base, head, rules))
    root = _parse(junit_xml(report))
    assert root.tag == "testsuite" and root.get("name") == "cml-bot"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "2", "0")
    cases = _cases(root)
    assert set(cases) == {"cml-bot.gates/accuracy", "cml-bot.gates/loss", "cml-bot.gates/f1"}  # not epochs
    failure = cases["cml-bot.gates/accuracy"].find("failure")
    assert failure is not None and failure.get("message") == "accuracy dropped by 0.1 (allowed 0.01)"
    failure = cases["cml-bot.gates/loss"].find("failure")
    assert failure is not None and failure.get("message") == "loss 0.7 is above the maximum 0.5"
    assert cases["cml-bot.gates/f1"].find("failure") is None
    failing = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert len(failing) == len(report.diff.regressions) == 2


def test_pipeline_steps_are_cases_with_the_log_tail() -> None:
    steps = (
        StepResult("prepare", "python prepare.py", 0, 1.5, ("ok",)),
        StepResult("train", "python train.py", None, 30.0, ("epoch 1", "epoch 2"), timed_out=True),
    )
    report = Report("T", "default", diff(None, {}), pipeline=PipelineResult(steps))
    root = _parse(junit_xml(report))
    assert (root.get("tests"), root.get("failures")) == ("2", "1")
    cases = _cases(root)
    assert cases["cml-bot.pipeline/prepare"].get("time") == "1.500"
    assert cases["cml-bot.pipeline/prepare"].find("failure") is None
    failure = cases["cml-bot.pipeline/train"].find("failure")
    assert failure is not None
    assert failure.get("message") == "step train timed out"
    assert failure.text == "epoch 1\nepoch 2"


def test_empty_report_is_an_empty_suite() -> None:
    root = _parse(junit_xml(Report("T", "default", diff({}, {}))))
    assert (root.get("tests"), root.get("failures"), list(root)) == ("0", "0", [])


def test_control_characters_markup_and_surrogates_are_removed_or_escaped() -> None:
    name = f"a{CONTROL}b <x> & \"q\" ']]>' \ud800 \ufffe"
    rules = [Threshold("*", direction="higher", max_drop=0.0)]
    result = diff({name: 1.0}, {name: 0.5}, rules)
    steps = (StepResult(f"step{CONTROL}\ud800", "x", 3, 0.1, (f"log{CONTROL}", "</failure>", "]]>", "\ud800")),)
    text = junit_xml(Report("T", "default", result, pipeline=PipelineResult(steps)))
    root = _parse(text)
    for char in CONTROL + "\ud800\ufffe":
        assert char not in text
    (gate,) = [c for c in root.iter("testcase") if c.get("classname") == "cml-bot.gates"]
    assert gate.get("name") == "a" + "?" * len(CONTROL) + "b <x> & \"q\" ']]>' ? ?"
    (step,) = [c for c in root.iter("testcase") if c.get("classname") == "cml-bot.pipeline"]
    assert step.get("name") == "step" + "?" * (len(CONTROL) + 1)
    failure = step.find("failure")
    assert failure is not None and failure.text == "log" + "?" * len(CONTROL) + "\n</failure>\n]]>\n?"


@settings(max_examples=100, deadline=None)
@given(
    names=st.lists(st.text(max_size=20), min_size=1, max_size=5, unique=True),
    log=st.lists(st.text(max_size=30), max_size=5),
)
def test_always_well_formed(names: list[str], log: list[str]) -> None:
    rules = [Threshold("*", direction="higher", max_drop=0.0)]
    result = diff({n: 1.0 for n in names}, {n: 0.0 for n in names}, rules)
    steps = (StepResult(names[0], "x", 1, 0.0, tuple(log)),)
    root = _parse(junit_xml(Report("T", "default", result, pipeline=PipelineResult(steps))))
    assert root.get("failures") == str(len(names) + 1)
    assert len(list(root.iter("testcase"))) == len(names) + 1
