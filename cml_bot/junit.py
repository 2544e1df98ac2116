"""The gates as JUnit XML, so GitLab's merge request widget (and other CI UIs) list each failing
threshold by name (pure).

Three outcomes per gate: passed (an empty test case), regressed (``<failure>``) and inconclusive
(``<skipped>`` with a message starting "inconclusive: "): the worsening exceeds the threshold but
is not significant, so the gate could neither pass nor fail it. CI UIs show skipped cases apart
from passed and failed ones, and a skipped case never fails the pipeline by itself."""

from __future__ import annotations

import re
from xml.etree import ElementTree as ET

from cml_bot.markdown import visible
from cml_bot.report import Report

# Characters XML 1.0 cannot carry at all, even escaped; log lines and names may contain them
# (lone surrogates come from JSON escapes such as "\ud800" in a metrics file).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(text: str) -> str:
    """Text XML can carry, invisible characters (bidi controls) shown by name, as in the report."""
    return _XML_INVALID.sub("?", visible(text))


def junit_xml(report: Report) -> str:
    """One test case per gated metric (failed when its gate failed) and one per pipeline step."""
    suite = ET.Element("testsuite", name="cml-bot")
    cases = 0
    failures = 0
    skipped = 0
    if report.pipeline is not None:
        for step in report.pipeline.steps:
            case = ET.SubElement(
                suite,
                "testcase",
                classname="cml-bot.pipeline",
                name=_xml(step.name),
                time=f"{step.duration:.3f}",
            )
            cases += 1
            if not step.ok:
                failures += 1
                how = "timed out" if step.timed_out else f"exited with {step.returncode}"
                failure = ET.SubElement(case, "failure", message=_xml(f"step {step.name} {how}"))
                failure.text = _xml("\n".join(step.log_tail))
    for metric in report.diff.metrics:
        if not metric.gated:
            continue
        case = ET.SubElement(suite, "testcase", classname="cml-bot.gates", name=_xml(metric.name))
        cases += 1
        if metric.failures:
            failures += 1
            message = f"{metric.name} " + "; ".join(metric.failures)
            ET.SubElement(case, "failure", message=_xml(message))
        elif metric.inconclusive:
            skipped += 1
            message = f"inconclusive: {metric.name} " + "; ".join(metric.inconclusive)
            ET.SubElement(case, "skipped", message=_xml(message))
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
