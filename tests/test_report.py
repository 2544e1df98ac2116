"""Rendered reports: golden markdown files, escaping of hostile names, and the size budget.

Golden files live in ``tests/golden/*.md``. After an intended change to the report's look, rewrite
them and review the diff:

    UPDATE_GOLDEN=1 /work/venv/bin/python -m pytest tests/test_report.py
    git diff tests/golden/
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from forge_patterns import live_references, quick_actions, rendered_text
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from cml_bot.config import Threshold, parse_config
from cml_bot.data import DataChange
from cml_bot.diff import Diff, diff
from cml_bot.metrics import Samples, Value
from cml_bot.model import Verdict
from cml_bot.pipeline import PipelineResult, StepResult
from cml_bot.report import (
    GITHUB_LIMIT,
    Flavour,
    PlotEntry,
    Report,
    RunFacts,
    marker_for,
    render_html,
    render_markdown,
    verdict_summary,
)
from cml_bot.results import RunResults
from cml_bot.verdicts import judge

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
PARSER = MarkdownIt("commonmark", {"html": True}).enable("table")
HOSTILE = ("| <script>alert(1)</script>", "@octocat", "`", "<!-- cml-bot report (id: default) -->")
FACTS = RunFacts(
    head_sha="0123456789abcdef0123456789abcdef01234567",
    head_ref="feature/lr",
    base_sha="fedcba9876543210fedcba9876543210fedcba98",
    base_ref="main",
    baseline_source="results recorded for the merge-base",
    duration=83.4,
    run_url="https://github.com/octo/repo/actions/runs/42",
)
RULES = (
    Threshold("accuracy", max_drop=0.01),
    Threshold("f1_macro", max_drop_pct=2.0),
    Threshold("loss", max=0.5),
)


# --- checks every rendered report must pass ---------------------------------------------------------


def _cells(line: str) -> int:
    """Cells in a GFM table row: split on pipes not preceded by a backslash, outer pipes dropped."""
    line = line.strip()
    pipes = [i for i, ch in enumerate(line) if ch == "|" and (i == 0 or line[i - 1] != "\\")]
    count = len(pipes) + 1
    if line.startswith("|"):
        count -= 1
    if line.endswith("|") and line[-2:] != "\\|":
        count -= 1
    return count


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.comments: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.rows += tag == "tr"

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


ALLOWED_TAGS = {
    *("h2", "h3", "p", "strong", "em", "ul", "li", "blockquote", "pre", "code", "img", "a", "sub"),
    *("details", "summary", "table", "thead", "tbody", "tr", "th", "td"),
}


def check_valid(text: str, report: Report, limit: int | None = None) -> None:
    """Tables whole and rectangular, one marker, no HTML or mentions from user text, within the limit."""
    if limit is not None:
        assert len(text) <= limit, len(text)
    assert text.count(report.marker) == 1
    assert text.startswith(report.marker + "\n")
    # No other report's marker either: any "<!--" from user text is escaped or broken up.
    assert len(re.findall(r"(?<!\\)<!--", text)) == 1
    lines = text.split("\n")
    tokens = PARSER.parse(text)
    # No mention or reference, as the forges find them in the rendered text; no quick action.
    assert not live_references(rendered_text(PARSER.render(text))), live_references(rendered_text(PARSER.render(text)))
    assert not quick_actions(text)
    table_rows = 0
    for token in tokens:
        if token.type == "table_open":
            assert token.map is not None
            start, end = token.map
            block = lines[start:end]
            widths = {_cells(line) for line in block}
            assert len(widths) == 1, block
            assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", block[1].strip()), block[1]
            table_rows += len(block) - 1
    # Every line that looks like a table row outside code blocks belongs to a parsed table.
    html = _Html()
    html.feed(PARSER.render(text))
    html.close()
    assert html.rows == table_rows
    assert set(html.tags) <= ALLOWED_TAGS, set(html.tags) - ALLOWED_TAGS
    assert html.comments == [f" cml-bot report (id: {report.report_id}) "]
    assert text.endswith("<sub>Posted by cml-bot. This comment is updated on every push.</sub>\n")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.md"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs: UPDATE_GOLDEN=1 rewrites it"


# --- the five reports -------------------------------------------------------------------------------


def pass_report() -> Report:
    base: dict[str, Value] = {"accuracy": 0.9012, "f1_macro": 0.8811, "loss": 0.3412, "epochs": 10, "old": 1.0}
    head: dict[str, Value] = {"accuracy": 0.9134, "f1_macro": 0.8702, "loss": 0.3412, "epochs": 10, "auc": 0.95}
    result = diff(
        base,
        head,
        RULES,
        base_params={"lr": 0.01, "depth": 3, "optimizer": "adam"},
        head_params={"lr": 0.02, "depth": 3, "optimizer": "adam", "seed": 7},
    )
    assert result.verdict is Verdict.PASS
    return Report(
        title="Digits classifier",
        report_id="default",
        diff=result,
        facts=FACTS,
        plots=(
            PlotEntry("Loss per epoch", ("plot-01-loss.png",)),
            PlotEntry("Confusion matrix", ("plot-02-confusion.png",), note="base and head overlaid"),
            PlotEntry("ROC", note="roc.csv was not produced by this change"),
        ),
        data_changes=(
            DataChange(
                "data/train.csv",
                "a" * 64,
                "b" * 64,
                base_rows=1000,
                head_rows=1200,
                columns_added=("age",),
                label_counts=(("cat", 500, 600), ("dog", 500, 600)),
            ),
            DataChange("data/test.csv", "c" * 64, "c" * 64, 200, 200),
        ),
    )


def regressed_report() -> Report:
    base: dict[str, Value] = {
        "accuracy": 0.9,
        "f1_macro": 0.5,
        "loss": 0.3,
        "val.top1_acc": Samples((0.90, 0.91, 0.92)),
        "rmse": 1.5,
    }
    head: dict[str, Value] = {
        "accuracy": 0.85,
        "f1_macro": 0.49,
        "loss": float("nan"),
        "val.top1_acc": Samples((0.89, 0.90, 0.91)),
        "rmse": float("inf"),
    }
    rules = (*RULES, Threshold("rmse", max_drop=0.1), Threshold("val.*", max_drop=0.001))
    result = diff(base, head, rules, base_params={"lr": 0.01}, head_params={"lr": 0.1})
    assert [m.name for m in result.regressions] == ["accuracy", "loss", "rmse"]
    return Report(
        title="Digits classifier",
        report_id="default",
        diff=result,
        facts=FACTS,
        notes=("The baseline is 3 commits older than the merge-base.",),
    )


def no_baseline_report() -> Report:
    result = diff(
        None,
        {"accuracy": 0.91, "loss": 0.34, "model": "resnet18"},
        RULES,
        head_params={"lr": 0.01, "depth": 3},
    )
    assert result.verdict is Verdict.NO_BASELINE
    return Report(
        "Digits classifier",
        "nightly",
        result,
        RunFacts(head_sha="0123456789abcdef0123456789abcdef01234567", head_ref="main", duration=12.0),
    )


def failed_pipeline_report() -> Report:
    log = (
        *(f"epoch {i}: loss={1 / (i + 1):.4f}" for i in range(40)),
        "Traceback (most recent call last):",
        '  File "train.py", line 12, in <module>',
        "ValueError: ```shape mismatch``` | <b>bold</b>",
    )
    pipeline = PipelineResult(
        (
            StepResult("prepare", "python prepare.py", 0, 1.25, ("prepared 1000 rows",)),
            StepResult("train", "python train.py --epochs 40 | tee log.txt", 1, 12.5, log),
        )
    )
    result = diff({"accuracy": 0.9}, {"accuracy": 0.9}, RULES)
    return Report("Digits classifier", "default", result, FACTS, pipeline=pipeline)


def hostile_report() -> Report:
    metrics: dict[str, Value] = {name: 0.5 for name in HOSTILE}
    metrics["note"] = "@octocat <img src=x onerror=alert(1)> | `x` <!-- y -->"
    base: dict[str, Value] = {name: 0.6 for name in HOSTILE}
    rules = tuple(Threshold(name, direction="higher", max_drop=0.0) for name in HOSTILE)
    result = diff(base, metrics, (*rules, Threshold("*", max=0.45)), base_params=base, head_params=metrics)
    pipeline = PipelineResult(
        (
            StepResult(
                "@octocat | <script>",
                "echo '<!-- cml-bot report (id: default) -->' | `cat`",
                2,
                0.5,
                (*HOSTILE, "\x1b[31mred\x1b[0m\x00", "```", "~~~", "</details>"),
            ),
        )
    )
    return Report(
        title="# @octocat <script> | report",
        report_id="default",
        diff=result,
        facts=RunFacts(
            head_sha="0123456789abcdef",
            head_ref="@octocat/<script>|`x`",
            base_sha="fedcba9876543210",
            base_ref="<!-- cml-bot report (id: default) -->",
            extra=(("@octocat", "| <b>"),),
        ),
        plots=(PlotEntry("<script>@octocat</script>", ("p.png",), note="could not draw: `|` @octocat"),),
        pipeline=pipeline,
        data_changes=(DataChange("@octocat|<x>.csv", None, "d" * 64, None, 3, ("<col>|@a",), ()),),
    )


def _predictions(ids: list[str], labels: list[str], predicted: list[str]) -> bytes:
    rows = ["id,label,prediction", *(f"{i},{y},{p}" for i, y, p in zip(ids, labels, predicted, strict=True))]
    return ("\n".join(rows) + "\n").encode()


def judged_report(broken: int, max_drop: float, added: int = 0) -> Report:
    """Real statistics on deterministic per-example results: 1,000 examples, 3 classes (one of
    them hostile text), base 90% accurate; head fixes 10 and breaks ``broken``."""
    classes = ("cat", "dog", "<b>@fox|</b>")
    ids = [f"ex-{i:04d}" for i in range(1000)]
    labels = [classes[i % 3] for i in range(1000)]
    base = [classes[(i + 1) % 3] if i % 10 == 0 else labels[i] for i in range(1000)]
    head = list(base)
    for i in range(0, 100, 10):  # fix 10 wrong ones
        head[i] = labels[i]
    right = [i for i in range(1000) if base[i] == labels[i]]
    for i in right[-broken:]:
        head[i] = classes[(classes.index(labels[i]) + 1) % 3]
    head_ids, head_labels = ids[added:] + [f"new-{k}" for k in range(added)], labels[added:] + labels[:added]
    head = head[added:] + head[:added]

    def accuracy(y: list[str], p: list[str]) -> float:
        return round(sum(a == b for a, b in zip(y, p, strict=True)) / len(y), 5)

    config = parse_config(
        {
            "metrics": ["metrics.json"],
            "predictions": "predictions.csv",
            "thresholds": {"accuracy": {"max_drop": max_drop}, "f1_macro": {"max_drop": "5%"}},
        },
        Path("."),
    )
    f1 = {"base": 0.0, "head": 0.0}
    from sklearn.metrics import f1_score

    f1["base"] = round(float(f1_score(labels, base, average="macro")), 5)
    f1["head"] = round(float(f1_score(head_labels, head, average="macro")), 5)
    base_results = RunResults(
        "b" * 40,
        {"accuracy": accuracy(labels, base), "f1_macro": f1["base"], "epochs": 10},
        files={"predictions.csv": _predictions(ids, labels, base)},
    )
    head_results = RunResults(
        "h" * 40,
        {"accuracy": accuracy(head_labels, head), "f1_macro": f1["head"], "epochs": 12},
        files={"predictions.csv": _predictions(head_ids, head_labels, head)},
    )
    judgement = judge(config, base_results, head_results)
    return Report(
        title="Pets classifier",
        report_id="default",
        diff=judgement.diff,
        facts=FACTS,
        plots=(PlotEntry("Confusion change (this change minus base)", ("confusion-delta.png",)),),
        notes=judgement.notes,
        predictions=judgement.predictions,
        artifacts=judgement.artifacts,
    )


def inconclusive_report() -> Report:
    report = judged_report(broken=18, max_drop=0.005)
    assert report.verdict is Verdict.INCONCLUSIVE
    return report


def paired_report() -> Report:
    report = judged_report(broken=60, max_drop=0.01, added=3)
    assert report.verdict is Verdict.REGRESSED
    return report


REPORTS = {
    "inconclusive": inconclusive_report,
    "paired": paired_report,
    "pass": pass_report,
    "regressed": regressed_report,
    "no_baseline": no_baseline_report,
    "pipeline_failed": failed_pipeline_report,
    "hostile": hostile_report,
}
URLS = {
    "plot-01-loss.png": "https://example.org/img/plot 01.png",
    "plot-02-confusion.png": "plot-02-confusion.png",
    "p.png": "https://example.org/p(1).png",
    "confusion-delta.png": "confusion-delta.png",
}


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_golden(name: str) -> None:
    report = REPORTS[name]()
    text = render_markdown(report, URLS, limit=GITHUB_LIMIT)
    check_valid(text, report, GITHUB_LIMIT)
    check_golden(name, text)
    assert text == render_markdown(report, URLS)  # small reports drop nothing


def test_verdict_lines() -> None:
    assert verdict_summary(pass_report()) == "pass: 4 metrics compared, 0 better, 0 worse, 2 changed without evidence"
    assert verdict_summary(regressed_report()) == "regressed: accuracy, loss, rmse"
    assert verdict_summary(no_baseline_report()) == "no baseline: 3 metrics reported"
    assert verdict_summary(failed_pipeline_report()) == "pipeline failed: step 'train' exited with 1"
    assert pass_report().verdict is Verdict.PASS
    assert regressed_report().verdict is Verdict.REGRESSED
    assert no_baseline_report().verdict is Verdict.NO_BASELINE
    assert failed_pipeline_report().verdict is Verdict.FAILED


def test_verdict_is_the_first_line_after_the_title() -> None:
    for name, build in REPORTS.items():
        lines = render_markdown(build(), URLS).split("\n")
        assert lines[0].startswith("<!-- cml-bot report (id: ")
        assert lines[1].startswith("## ")
        head = {
            "pass": "✅ **Pass**",
            "regressed": "❌ **Regressed**",
            "paired": "❌ **Regressed**",
            "no_baseline": "ℹ️ **No baseline**",
            "inconclusive": "⚠️ **Inconclusive**",
        }
        assert lines[3].startswith(head.get(name, "❌ **Pipeline failed**")), (name, lines[3])


def test_timed_out_step() -> None:
    pipeline = PipelineResult((StepResult("train", "sleep 99", None, 30.0, ("...",), timed_out=True),))
    report = Report("T", "default", diff(None, {}), pipeline=pipeline)
    assert verdict_summary(report) == "pipeline failed: step 'train' timed out"
    text = render_markdown(report)
    assert "**Step train timed out after 30.0 s.**" in text
    check_valid(text, report)


def test_log_tail_is_cut_to_the_last_lines() -> None:
    text = render_markdown(failed_pipeline_report())
    assert "epoch 12: loss" not in text and "epoch 13: loss" in text  # 43 lines, the last 30 shown
    assert "Last 30 lines of the log" in text


def test_hostile_text_is_inert() -> None:
    report = hostile_report()
    text = render_markdown(report, URLS)
    html = PARSER.render(text)
    assert "<script" not in html and "<img src=x" not in html and "<b>" not in html
    assert "onerror" not in html.replace("onerror=alert(1)&gt;", "")
    assert "@\u200boctocat" in text and "&#64;" not in text
    # Every hostile metric name is still readable, as it is, in the first column of the metrics table.
    assert len(report.diff.regressions) == len(HOSTILE) + 1  # + note: a text value under a max bound
    first_cells = [cell.replace("\u200b", "") for cell in _first_cells(html)]  # as read
    for name in (*HOSTILE, "note"):
        assert name in first_cells, (name, first_cells)


def _first_cells(html: str) -> list[str]:
    class Rows(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.cells: list[str] = []
            self.column = -1
            self.depth = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "tr":
                self.column = -1
            elif tag == "td":
                self.column += 1
                if self.column == 0:
                    self.cells.append("")
                    self.depth = 1

        def handle_endtag(self, tag: str) -> None:
            if tag == "td":
                self.depth = 0

        def handle_data(self, data: str) -> None:
            if self.depth:
                self.cells[-1] += data

    rows = Rows()
    rows.feed(html)
    rows.close()
    return [cell.strip() for cell in rows.cells]


@pytest.mark.parametrize("report_id", ["default", "nightly-1", "a.b_c"])
def test_marker_once_for_any_id(report_id: str) -> None:
    for build in REPORTS.values():
        report = build()
        report = Report(report.title, report_id, report.diff, report.facts, report.plots, report.pipeline)
        text = render_markdown(report, URLS)
        assert report.marker == marker_for(report_id) == f"<!-- cml-bot report (id: {report_id}) -->"
        assert text.count(report.marker) == 1


# --- size budget ------------------------------------------------------------------------------------


def _big_diff(count: int, regressed_every: int, name: str = "group{g}.metric_{i}_acc") -> Diff:
    base: dict[str, Value] = {name.format(g=i // 100, i=i): 0.5 + (i % 100) / 1000 for i in range(count)}
    head: dict[str, Value] = {}
    for i, (key, value) in enumerate(base.items()):
        assert isinstance(value, float)
        if i % regressed_every == 0:
            head[key] = value - 0.05
        elif i % 3 == 0:
            head[key] = value + 0.001
        else:
            head[key] = value
    base_params: dict[str, Value] = {f"param_{i}": i for i in range(2000)}
    head_params: dict[str, Value] = {f"param_{i}": i + (i % 7 == 0) for i in range(2000)}
    return diff(base, head, [Threshold("*", max_drop=0.01)], base_params, head_params)


def _big_report(result: Diff) -> Report:
    steps = tuple(StepResult(f"step {i}", f"python step{i}.py", 0, 1.0, ("ok",)) for i in range(50))
    return Report(
        "Big",
        "default",
        result,
        FACTS,
        plots=tuple(PlotEntry(f"plot {i}", (f"p{i}.png",)) for i in range(100)),
        pipeline=PipelineResult(steps),
        data_changes=tuple(DataChange(f"data/{i}.csv", "a" * 64, "b" * 64, 1, 2) for i in range(200)),
    )


def test_ten_thousand_metrics_fit_and_say_what_was_dropped() -> None:
    report = _big_report(_big_diff(10_000, regressed_every=50))
    assert len(render_markdown(report)) > GITHUB_LIMIT
    text = render_markdown(report, {f"p{i}.png": f"https://x/p{i}.png" for i in range(100)}, limit=GITHUB_LIMIT)
    check_valid(text, report, GITHUB_LIMIT)
    assert "_To fit the size limit this comment leaves out: " in text
    assert "The full report is in the job summary and artifacts." in text
    # Every failed gate is still listed, each with its whole table row.
    for change in report.diff.regressions:
        assert f"- {change.name.replace('_', chr(92) + '_')}: dropped by" in text
    assert text.count("❌ regressed") == len(report.diff.regressions) == 200


def test_thousands_of_failed_gates_are_cut_by_whole_rows() -> None:
    report = _big_report(_big_diff(10_000, regressed_every=1))
    text = render_markdown(report, limit=GITHUB_LIMIT, where_full="See the artifacts.")
    check_valid(text, report, GITHUB_LIMIT)
    shown = text.count("❌ regressed")
    assert 0 < shown < 10_000
    assert f"showing {shown} of 10000 rows" in text
    assert f"- … and {10_000 - shown} more failed gates, listed in the full report" in text
    assert "See the artifacts." in text
    assert len(text) > GITHUB_LIMIT // 2  # it keeps as much as fits, not a token few rows


def test_hostile_names_at_scale_still_fit() -> None:
    name = "| <script> @octocat ` {g} {i} " + "|@`<" * 40
    report = _big_report(_big_diff(10_000, regressed_every=7, name=name))
    text = render_markdown(report, limit=GITHUB_LIMIT)
    check_valid(text, report, GITHUB_LIMIT)


def test_detail_goes_first_when_a_little_over() -> None:
    report = pass_report()
    full = render_markdown(report, URLS)
    text = render_markdown(report, URLS, limit=len(full) - 1)
    check_valid(text, report, len(full) - 1)
    assert "leaves out: unchanged params" in text
    assert "### Metrics" in text and "### Plots" in text  # the rest is kept


GITLAB_NOTE_LIMIT = 1_000_000  # characters of a GitLab note (cml_bot.forges.gitlab)


def test_a_report_of_megabytes_keeps_every_gated_and_changed_metric_then_plots() -> None:
    """Issue 11: trimming keeps the verdict, the failed gates, every gated and every changed metric,
    then the plots; the rest goes first, and the note says where the full report is."""
    count = 40_000
    base: dict[str, Value] = {f"layer{i // 100}.metric_{i}_score": 0.5 for i in range(count)}
    head = dict(base)
    changed = [f"layer{i // 100}.metric_{i}_score" for i in range(0, count, 400)]  # 100 changed
    for name in changed:
        head[name] = 0.52
    head["layer0.metric_0_score"] = 0.4  # one failed gate
    gates = [Threshold("layer0.metric_0_score", max_drop=0.01), Threshold("layer1.*", max_drop=0.01)]
    params: dict[str, Value] = {f"param_{i}": "x" * 200 for i in range(3000)}
    report = Report(
        "Huge",
        "default",
        diff(base, head, gates, params, params),
        FACTS,
        plots=tuple(PlotEntry(f"plot {i}", (f"p{i}.png",)) for i in range(20)),
        data_changes=tuple(DataChange(f"data/{i}.csv", "a" * 64, "b" * 64, 1, 2) for i in range(500)),
    )
    assert len(render_markdown(report)) > 1_500_000
    urls = {f"p{i}.png": f"https://gitlab.example/uploads/{i}/p{i}.png" for i in range(20)}
    where = "The full report is in the `cml-bot-report` artifact of this job (`report.md`)."

    text = render_markdown(report, urls, limit=GITLAB_NOTE_LIMIT, where_full=where)

    check_valid(text, report, GITLAB_NOTE_LIMIT)
    assert "**Regressed**" in text and "- layer0.metric\\_0\\_score: dropped by" in text
    rows = {line.split(" | ")[0].removeprefix("| ") for line in text.splitlines() if line.startswith("| layer")}
    gated = {c.name.replace("_", "\\_") for c in report.diff.metrics if c.gated}
    moved = {c.name.replace("_", "\\_") for c in report.diff.metrics if c.status.value != "unchanged"}
    assert len(gated) == 101 and gated <= rows
    assert moved <= rows
    assert "unchanged metrics in the full report" in text
    assert all(f"![plot {i}](https://gitlab.example/uploads/{i}/p{i}.png)" in text for i in range(20))
    assert "leaves out: unchanged params, data changes, params, unchanged metrics." in text
    assert text.rstrip().splitlines()[-3].endswith(where + "_")


def test_html_preview() -> None:
    report = hostile_report()
    page = render_html(render_markdown(report, URLS), report.title)
    assert page.startswith("<!doctype html>")
    assert "<title># @\u200boctocat &lt;script\u200b&gt; | report</title>" in page  # "script>": a GitLab project
    assert "<script" not in page


def test_dropped_note_names_only_sections_that_were_there() -> None:
    base: dict[str, Value] = {f"metric_{i}": float(i) for i in range(3000)}
    head = {**base, "metric_7": 8.0}
    report = Report("Only metrics", "default", diff(base, head))
    text = render_markdown(report, limit=GITHUB_LIMIT)
    check_valid(text, report, GITHUB_LIMIT)
    assert "_To fit the size limit this comment leaves out: unchanged metrics. The full report" in text
    assert "### Metrics (2,999 unchanged metrics in the full report)" in text
    assert "| metric\\_7 " in text


_TEXT = st.lists(
    st.one_of(st.sampled_from([*HOSTILE, "|", "\\", "\n", "#", "- ", "1. ", "```", "<", "&#64;"]), st.text(max_size=5)),
    max_size=6,
).map("".join)


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(_TEXT, min_size=1, max_size=6, unique=True),
    values=st.lists(st.one_of(st.floats(), _TEXT), min_size=6, max_size=6),
    words=st.lists(_TEXT, min_size=6, max_size=6),
    report_id=st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
)
def test_any_user_text_keeps_the_report_valid(
    names: list[str], values: list[float | str], words: list[str], report_id: str
) -> None:
    base: dict[str, Value] = {name: 0.5 for name in names}
    head: dict[str, Value] = dict(zip(names, values, strict=False))
    result = diff(base, head, [Threshold("*", direction="higher", max_drop=0.0)], base, head)
    step = StepResult(words[0], words[1], 1, 1.0, tuple(words))
    report = Report(
        words[2],
        report_id,
        result,
        RunFacts(
            head_sha="a" * 40, head_ref=words[3], base_sha="b" * 40, base_ref=words[4], extra=((words[5], words[0]),)
        ),
        plots=(PlotEntry(f"plot {words[5]}", ("p.png",), note=words[1]),),  # titles are never blank
        pipeline=PipelineResult((step,)),
    )
    check_valid(render_markdown(report, {"p.png": "https://x/p.png"}), report)


# --- read at a glance -------------------------------------------------------------------------------


def _table_alignments(html: str) -> list[list[str | None]]:
    """Per table, each header cell's alignment as markdown-it renders GFM's ``---:``."""
    tables: list[list[str | None]] = []

    class Headers(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "thead":
                tables.append([])
            elif tag == "th":
                style = dict(attrs).get("style") or ""
                tables[-1].append("right" if "text-align:right" in style else None)

    parser = Headers()
    parser.feed(html)
    parser.close()
    return tables


def test_numeric_columns_are_right_aligned() -> None:
    html = PARSER.render(render_markdown(paired_report(), URLS))
    metrics, *_ = _table_alignments(html)
    # Metric | main | This change | Change | 95% CI | % | (mark)
    assert metrics == [None, "right", "right", "right", "right", "right", None]
    no_baseline = _table_alignments(PARSER.render(render_markdown(no_baseline_report())))
    assert no_baseline[0] == [None, "right", None]  # Metric | This change | (mark)
    assert no_baseline[1] == [None, "right"]  # params, all numbers


def test_each_gate_shows_its_margin_on_a_pass() -> None:
    base: dict[str, Value] = {"accuracy": 0.90, "f1": 0.80, "loss": 0.30, "speed": 12.0, "auc": 0.9}
    head: dict[str, Value] = {"accuracy": 0.898, "f1": 0.81, "loss": 0.2379, "speed": 12.5, "auc": 0.8}
    rules = (
        Threshold("accuracy", max_drop=0.01),
        Threshold("f1", max_drop_pct=2.0),
        Threshold("loss", max=0.5, max_drop=0.05),
        Threshold("auc", max_drop=0.01),
    )
    report = Report("T", "default", diff(base, head, rules), FACTS)
    text = render_markdown(report)
    check_valid(text, report)
    heading = "✅ **Gates passed**, with the margin left before each would fail, closest first:\n\n"
    gates = text.split(heading)[1].split("\n\n")[0]
    assert gates.split("\n") == [  # the closest to failing first: the smallest share of the allowance left
        "- loss: 0.26 (max 0.5), 0.11 (max_drop 0.05)",  # 52% of the bound left
        "- accuracy: 0.008 (max_drop 0.01)",  # dropped 0.002 of the 0.01 allowed: 80% left
        "- f1: 3.3% (max_drop 2%)",  # rose 1.25%: 2% + 1.25% to lose
    ]  # not speed (no gate) nor auc (failed: listed under Failed gates)
    assert "| auc | 0.9 | 0.8 | -0.1\u00a0▼ | -11.11% | ❌ regressed |" in text


def test_a_long_list_of_passing_gates_names_the_closest_and_counts_the_rest() -> None:
    base: dict[str, Value] = {f"m{i:02d}_acc": 0.9 for i in range(30)}
    head: dict[str, Value] = {f"m{i:02d}_acc": 0.9 - i / 10_000 for i in range(30)}  # m29 dropped most
    text = render_markdown(Report("T", "default", diff(base, head, [Threshold("*", max_drop=0.01)]), FACTS))
    items = [line for line in text.split("\n") if line.startswith("- m") or line.startswith("- …")]
    assert items[0] == "- m29\\_acc: 0.0071 (max_drop 0.01)"
    assert [item.split(":")[0] for item in items[:20]] == [f"- m{i:02d}\\_acc" for i in range(29, 9, -1)]
    assert items[20:] == ["- … and 10 more, each with more of its allowance left"]


def test_pass_regressed_and_inconclusive_have_distinct_marks() -> None:
    marks = {name: render_markdown(REPORTS[name](), URLS).split("\n")[3].split(" **")[0] for name in REPORTS}
    assert marks["pass"] == "✅" and marks["regressed"] == "❌" and marks["inconclusive"] == "⚠️"
    assert len({marks["pass"], marks["regressed"], marks["inconclusive"], marks["no_baseline"]}) == 4
    text = render_markdown(inconclusive_report(), URLS)
    assert "| ⚠️ inconclusive |" in text and "✅ **Gates passed**" in text
    assert "| ❌ regressed |" in render_markdown(paired_report(), URLS)


def test_a_shown_change_is_visible_and_equals_the_difference_shown() -> None:
    result = diff(
        {"accuracy": 0.96296, "tiny": 0.00012, "huge": 1.23456},
        {"accuracy": 0.96111, "tiny": 0.0001, "huge": 1.23457},
    )
    text = render_markdown(Report("T", "default", result, FACTS)).replace("\u00a0", " ")
    assert "| accuracy | 0.96296 | 0.96111 | -0.00185 ▼ | -0.19% |" in text  # as written, the true change
    assert "| tiny | 0.00012 | 0.00010 | -0.00002 ▼ | -16.67% |" in text  # not 1.2e-04
    assert "| huge | 1.23456 | 1.23457 | +0.00001 ▲ | +0.00081% |" in text  # not 1.235 twice


def test_a_computed_value_change_is_the_true_difference_not_the_shown_values_difference() -> None:
    result = diff({"acc": 0.8533333333333334}, {"acc": 0.8566666666666667})  # e.g. 256/300 -> 257/300
    text = render_markdown(Report("T", "default", result, FACTS)).replace("\u00a0", " ")
    assert "| acc | 0.8533333 | 0.8566667 | +0.0033333 ▲ |" in text  # the shown values differ by 0.0033334


def test_an_int_beyond_a_doubles_range_is_shown_whole_without_a_change() -> None:
    huge = 10**400
    text = render_markdown(Report("T", "default", diff({"n": 1}, {"n": huge}), FACTS))
    assert f"| n | 1 | {huge} |" in text


def test_params_are_shown_as_configured() -> None:
    result = diff({}, {}, base_params={"momentum": 0.99999, "lr": 1e-5}, head_params={"momentum": 0.99999, "lr": 2e-5})
    text = render_markdown(Report("T", "default", result, FACTS))
    assert "| lr | 1e-05 | 2e-05 | changed |" in text
    assert "| momentum | 0.99999 | 0.99999 |  |" in text  # not rounded to 1


def test_intervals_are_plain_text_without_escapes_on_one_line() -> None:
    text = render_markdown(paired_report(), URLS)
    assert "| [-6.72,\u00a0-3.51]\u00a0pp |" in text  # no-break spaces: a wrapping table keeps it whole
    assert "\\[" not in text.split("### Metrics")[1].split("<details>")[0]


def test_captions_and_revision_labels_stand_in_their_own_paragraphs() -> None:
    plots = (
        PlotEntry("Loss per epoch", ("plot-01-loss.png",), note="base and head overlaid"),
        PlotEntry("Samples", ("s.png", "s-base.png"), labels=("this change", "main")),
    )
    report = replace(pass_report(), plots=plots)
    urls = {**URLS, "s.png": "s.png", "s-base.png": "s-base.png"}
    text = render_markdown(report, urls)
    section = text.split("### Plots\n\n")[1].split("\n\n<details")[0]
    assert section == (
        "**Loss per epoch**\n\n"
        "![Loss per epoch](https://example.org/img/plot%2001.png)\n\n"
        "_base and head overlaid_\n\n"
        "**Samples**\n\n"
        "_this change_\n\n![Samples, this change](s.png)\n\n"
        "_main_\n\n![Samples, main](s-base.png)"
    )
    paragraphs = [p for p in PARSER.render(section).split("</p>") if p.strip()]
    assert all(p.count("<img") + p.count("<em>") <= 1 for p in paragraphs)  # never an image and its caption in one
    assert text.count("Loss per epoch") == 2  # the title once, and the image's alt text: no other title


def test_the_bitbucket_flavour_keeps_alignment_and_marks() -> None:
    text = render_markdown(paired_report(), URLS, flavour=Flavour.BITBUCKET)
    assert "|---|---:|---:|---:|---:|---:|---|" in text
    assert "❌ **Regressed**" in text and "| ❌ regressed |" in text


def test_diff_of_two_revisions_heads_both_value_columns_by_name() -> None:
    result = diff({"acc": 0.9}, {"acc": 0.8}, base_params={"lr": 0.1}, head_params={"lr": 0.2})
    facts = RunFacts(base_ref="change", head_ref="main", head_label="main")
    text = render_markdown(Report("T", "default", result, facts))
    assert "| Metric | change | main | Change |" in text
    assert "| Param | change | main |" in text
    assert "This change" not in text
    # A report on a change keeps "This change".
    assert "| Metric | main | This change | Change |" in render_markdown(
        Report("T", "default", result, RunFacts(base_ref="main"))
    )
