"""The report model and its rendering to markdown and to an HTML preview (pure).

One markdown document: a hidden marker line (how a later run finds the comment), a title, a one-line
verdict, the gates that failed, the metrics and params tables, plots, data changes and the run's
facts in collapsible blocks. Every piece of user text goes through :mod:`cml_bot.markdown`.

Size: forges cap a comment (GitHub 65,536 characters). :func:`render_markdown` drops detail section
by section, in a fixed order, until the document fits, and says what it dropped; tables are never
cut mid-row.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cml_bot import markdown as md
from cml_bot import numbers
from cml_bot.diff import NOISE_RULE, Diff, MetricChange, Outcome, ParamChange, Status, numeric
from cml_bot.metrics import Samples, Value, format_value
from cml_bot.model import Artifact, Verdict
from cml_bot.report_stats import (
    NBSP,
    PASSED,
    REGRESSED,
    examples_section,
    gate_mark,
    inconclusive_section,
    interval_cell,
    margins,
    mark,
    rules_section,
)
from cml_bot.stats.evidence import CONFIDENCE

if TYPE_CHECKING:
    from cml_bot.data import DataChange
    from cml_bot.pipeline import PipelineResult
    from cml_bot.verdicts import PredictionReport

GITHUB_LIMIT = 65_536
MARKER_TEMPLATE = "<!-- cml-bot report (id: {report_id}) -->"
LOG_TAIL_LINES = 30


class Flavour(str, enum.Enum):
    """The markdown a forge renders (see :func:`render_markdown`)."""

    GITHUB = "github"  # GitHub and GitLab: HTML comments, <details>, entities
    BITBUCKET = "bitbucket"  # Bitbucket Cloud: raw HTML escaped (cml_bot.markdown.bitbucket)


def marker_for(report_id: str, flavour: Flavour = Flavour.GITHUB) -> str:
    """The hidden line that identifies a report; ``report_id`` is validated by the config."""
    marker = MARKER_TEMPLATE.format(report_id=report_id)
    return md.bitbucket_marker(marker) if flavour is Flavour.BITBUCKET else marker


@dataclass(frozen=True)
class PlotEntry:
    title: str  # shown above the images (drawn images carry no title of their own)
    images: tuple[str, ...] = ()  # image names, resolved to URLs at render time
    note: str | None = None  # e.g. why it could not be drawn
    problem: bool = False  # the note is a misconfiguration or failure to warn about
    labels: tuple[str, ...] = ()  # per image, the revision it shows when the image cannot say it


@dataclass(frozen=True)
class RunFacts:
    head_sha: str | None = None
    head_ref: str | None = None
    base_sha: str | None = None
    base_ref: str | None = None
    baseline_source: str | None = None  # how the baseline was found, one sentence (trusted text)
    duration: float | None = None  # seconds for the whole run
    run_url: str | None = None
    extra: tuple[tuple[str, str], ...] = ()  # more (label, untrusted value) rows
    links: tuple[tuple[str, str], ...] = ()  # (untrusted label, untrusted http(s) URL): runs on a tracking server
    base_branch: str | None = None  # the base branch and how it was chosen, one phrase
    compared: str | None = None  # which pair was compared ("GitHub's merge commit ... with its first parent")
    caveat: str | None = None  # shown in the verdict line: what the baseline lacks (unreachable outputs)
    head_label: str | None = None  # the heading of the head's column when it is not "this change" (`diff A B`)


@dataclass(frozen=True)
class Shard:
    """One job of a matrix (e.g. one point of a hyperparameter sweep), compared with the baseline."""

    name: str
    diff: Diff
    failed_step: str | None = None  # the pipeline step that failed in that job


@dataclass(frozen=True)
class Report:
    title: str
    report_id: str
    diff: Diff
    facts: RunFacts = field(default_factory=RunFacts)
    plots: tuple[PlotEntry, ...] = ()
    pipeline: PipelineResult | None = None
    data_changes: tuple[DataChange, ...] = ()
    notes: tuple[str, ...] = ()  # warnings for the reader (trusted text from cml-bot)
    shards: tuple[Shard, ...] = ()  # a merged matrix report: one column per shard, ``diff`` unused
    warnings: tuple[str, ...] = ()  # for stderr, not rendered: the notes and the plots that could not be drawn
    predictions: PredictionReport | None = None  # per-example results of both revisions, paired
    artifacts: tuple[Artifact, ...] = ()  # files for the report folder (the full list of flips)

    @property
    def verdict(self) -> Verdict:
        if self.pipeline is not None and not self.pipeline.ok:
            return Verdict.FAILED
        if self.shards:
            verdicts = {Verdict.FAILED if s.failed_step else s.diff.verdict for s in self.shards}
            for verdict in (Verdict.FAILED, Verdict.REGRESSED, Verdict.INCONCLUSIVE, Verdict.PASS):
                if verdict in verdicts:
                    return verdict
            return Verdict.NO_BASELINE
        return self.diff.verdict

    @property
    def marker(self) -> str:
        return marker_for(self.report_id)


# --- the verdict line -------------------------------------------------------------------------


def verdict_summary(report: Report) -> str:
    """One plain line for statuses, job outputs and the CLI (no markdown)."""
    if report.shards:
        return _shards_summary(report)
    diff = report.diff
    failed = report.pipeline.failed_step if report.pipeline is not None else None
    if failed is not None:
        how = "timed out" if failed.timed_out else f"exited with {failed.returncode}"
        return f"pipeline failed: step '{_name(failed.name)}' {how}"
    regressions = diff.regressions
    if regressions:
        names = ", ".join(_name(m.name) for m in regressions[:3])
        more = f" and {len(regressions) - 3} more" if len(regressions) > 3 else ""
        return f"regressed: {names}{more}"
    unsure = diff.inconclusive
    if unsure:
        names = ", ".join(_name(m.name) for m in unsure[:3])
        more = f" and {len(unsure) - 3} more" if len(unsure) > 3 else ""
        return f"inconclusive: {names}{more} may have worsened beyond the threshold (not significant)"
    compared = sum(1 for m in diff.metrics if m.status in (Status.CHANGED, Status.UNCHANGED))
    if not diff.has_baseline:
        return f"no baseline: {_plural(len(diff.metrics), 'metric')} reported"
    improved = sum(1 for m in diff.metrics if m.improved)
    worse = sum(1 for m in diff.metrics if m.improved is False)
    same = sum(1 for m in diff.metrics if m.outcome is Outcome.NO_CHANGE)
    claimless = sum(1 for m in diff.metrics if m.status is Status.CHANGED and m.outcome is None)
    missing = sum(1 for m in diff.metrics if m.status is Status.MISSING)
    parts = [f"{improved} better", f"{worse} worse"]
    if same:
        parts.append(f"{same} with no detectable change")
    if claimless:
        parts.append(f"{claimless} changed without evidence")
    if missing:
        parts.append(f"{missing} missing in this change")
    return f"pass: {_plural(compared, 'metric')} compared, {', '.join(parts)}"


def _plural(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _name(name: str) -> str:
    """A name in the one-line summary: one line, at most 100 characters, invisibles shown."""
    return md.one_line(name, 100)


def _shards_summary(report: Report) -> str:
    failed = [_name(s.name) for s in report.shards if s.failed_step]
    regressed = [_name(s.name) for s in report.shards if s.diff.regressions and not s.failed_step]
    unsure = [_name(s.name) for s in report.shards if s.diff.verdict is Verdict.INCONCLUSIVE and not s.failed_step]
    count = len(report.shards)
    if failed:
        return f"pipeline failed: in {', '.join(failed)} ({len(failed)} of {count} shards)"
    if regressed:
        return f"regressed: in {', '.join(regressed)} ({len(regressed)} of {count} shards)"
    if unsure:
        return f"inconclusive: in {', '.join(unsure)} ({len(unsure)} of {count} shards)"
    shards = f"{count} shard{'s' if count != 1 else ''}"
    if report.verdict is Verdict.NO_BASELINE:
        return f"no baseline: {shards} reported"
    return f"pass: {shards} compared, no gate failed"


# Each verdict's mark differs in shape as well as colour, and reads on light and dark themes.
_VERDICT_HEAD = {
    Verdict.PASS: "✅ **Pass**",
    Verdict.REGRESSED: "❌ **Regressed**",
    Verdict.INCONCLUSIVE: "⚠️ **Inconclusive**",
    Verdict.NO_BASELINE: "ℹ️ **No baseline**",
    Verdict.FAILED: "❌ **Pipeline failed**",
}


def _verdict_line(report: Report) -> str:
    """The verdict, the baseline by name, and what the reader must know: why there is no baseline,
    or what the baseline lacks (never only in a folded section)."""
    facts = report.facts
    base = ""
    if facts.base_sha:
        ref = f" {md.cell(facts.base_ref)}" if facts.base_ref else ""
        base = f" against{ref} at {md.code_span(facts.base_sha[:10])}"
    elif facts.base_ref and report.diff.has_baseline:
        base = f" against {md.cell(facts.base_ref)}"
    summary = md.cell(verdict_summary(report).split(": ", 1)[-1])
    line = f"{_VERDICT_HEAD[report.verdict]}{base}: {summary}"
    if not report.diff.has_baseline and not report.shards and facts.baseline_source:
        line += f" ({md.cell(facts.baseline_source.removeprefix('no baseline: '))})"
    elif facts.caveat:
        line += f"; {md.cell(facts.caveat)}"
    return line


# --- tables ---------------------------------------------------------------------------------


def _cell(value: Value | None, exact: bool = False) -> str:
    """One value for a cell: numbers as :mod:`cml_bot.numbers` writes them (``exact``: as the
    shortest text that reads back the same, for params as configured), anything else escaped."""
    if value is None:
        return "—"
    if isinstance(value, float) and not isinstance(value, bool):
        # md.cell: repr's 17 digits and an exponent ("0000000000000002e") could read as a sha
        return md.cell(numbers.exact(value)) if exact else numbers.number(value)
    if isinstance(value, Samples):
        return format_value(value)  # numbers only: nothing to escape
    return md.cell(format_value(value))


def _scalar(value: Value | None) -> float | None:
    """A plain number (int or float, not bool, not repeated values), as a float; None for an int
    beyond a double's range (shown as an int, on its own)."""
    return None if isinstance(value, Samples) else numeric(value)


def _pair_cells(base: Value | None, head: Value | None, exact: bool = False) -> tuple[str, str, int | None]:
    """Base and head as a pair: two numbers with shared decimals (a change is always visible),
    and those decimals; else each on its own, and None."""
    if exact or (isinstance(base, int) and isinstance(head, int)):
        return _cell(base, exact), _cell(head, exact), None  # exact values differ when they do
    b, h = _scalar(base), _scalar(head)
    if b is None or h is None:
        return _cell(base), _cell(head), None
    return numbers.pair(b, h)


def _change_cells(change: MetricChange) -> tuple[str, str, str, str]:
    """Base, head, their change (with an arrow) and the relative change, as the table shows them:
    the change is the true difference, rounded as the values are shown (never a difference of
    rounded values, which can exceed it)."""
    base, head, places = _pair_cells(change.base, change.head)
    if change.status in (Status.NEW, Status.REMOVED) or change.delta is None:
        return (base, head, "—", "—")
    delta = change.delta
    b, h = _scalar(change.base), _scalar(change.head)
    if places is not None and b is not None and h is not None:  # a pair: both plain numbers
        shown = numbers.difference(b, h, places)
    elif isinstance(change.base, int) and isinstance(change.head, int) and not isinstance(change.base, bool):
        shown = f"{change.head - change.base:+d}" if change.head != change.base else "0"
    else:
        shown = numbers.signed(delta)
    arrow = "" if delta == 0 or math.isnan(delta) else (f"{NBSP}▲" if delta > 0 else f"{NBSP}▼")
    relative = "—" if change.relative is None else numbers.percent(change.relative)
    return (base, head, shown + arrow, relative)


def _outcome(change: MetricChange) -> str:
    """What is known about the change itself: better or worse only when the evidence says so; a
    change without evidence is marked as such (the gates have their own column)."""
    if change.status is Status.NEW:
        return "new"
    if change.status is Status.REMOVED:
        return "removed"
    if change.status is Status.MISSING:
        return "missing"
    judged = mark(change)
    if judged is not None:
        return judged
    if change.status is Status.UNCHANGED:
        return ""
    if change.improved is True:  # leaving Infinity or NaN needs no test
        return "✓ better"
    if change.delta is not None and math.isfinite(change.delta) and change.direction is not None:
        return "single run"
    return "changed"


def _short_mark(change: MetricChange) -> str:
    """One mark: the gate's when it did not pass, else the outcome's."""
    return gate_mark(change) or _outcome(change)


HEAD_LABEL = "This change"  # the heading of the head's values in the tables


def metrics_table(
    changes: Sequence[MetricChange],
    has_baseline: bool,
    base_label: str,
    intervals: bool = False,
    head_label: str = HEAD_LABEL,
) -> str:
    """Values, changes and intervals right-aligned, then one mark: the gate's when it did not
    pass, else what the evidence says (the margins of the gates that passed follow the table)."""
    if has_baseline:
        headers = ["Metric", md.cell(base_label), md.cell(head_label), "Change"]
        headers += [f"{CONFIDENCE:.0%} CI", "%", ""] if intervals else ["%", ""]
        rows = []
        for c in changes:
            base, head, delta, relative = _change_cells(c)
            interval = [interval_cell(c)] if intervals else []
            rows.append([md.cell(c.name), base, head, delta, *interval, relative, _short_mark(c)])
        numeric = set(range(1, len(headers) - 1))
    else:
        headers = ["Metric", md.cell(head_label), ""]
        rows = [[md.cell(c.name), _cell(c.head), REGRESSED if c.failures else ""] for c in changes]
        numeric = {1}
    return md.table(headers, rows, numeric=numeric)


GATES_LISTED = 20  # passing gates listed by name; the rest, with more room left, are counted


def gates_passed(changes: Sequence[MetricChange]) -> list[str]:
    """The gates that passed among ``changes`` (the rows shown), each with its margin (how far
    the metric was from failing), the closest to failing first; beyond :data:`GATES_LISTED`,
    those with more room are counted, so the list stays short whatever the number of metrics."""
    passed = [(c, text) for c in changes if (text := margins(c)) is not None]
    if not passed:
        return []
    passed.sort(key=lambda pair: min(m.share_left for m in pair[0].margins))  # stable: ties in table order
    items = [f"- {md.text(c.name)}: {text}" for c, text in passed[:GATES_LISTED]]
    if len(passed) > GATES_LISTED:
        items.append(f"- … and {len(passed) - GATES_LISTED:,} more, each with more of its allowance left")
    heading = f"{PASSED} **Gates passed**, with the margin left before each would fail"
    return [heading + (", closest first:" if len(passed) > 1 else ":"), "", *items, ""]


def params_table(
    changes: Sequence[ParamChange], has_baseline: bool, base_label: str, head_label: str = HEAD_LABEL
) -> str:
    """Params as configured (no rounding); value columns right-aligned when they are all numbers."""
    if has_baseline:
        headers = ["Param", md.cell(base_label), md.cell(head_label), ""]
        marks = {Status.CHANGED: "changed", Status.NEW: "new", Status.REMOVED: "removed", Status.UNCHANGED: ""}
        rows = [[md.cell(c.name), *_pair_cells(c.base, c.head, exact=True)[:2], marks[c.status]] for c in changes]
        values = [v for c in changes for v in (c.base, c.head) if v is not None]
    else:
        headers = ["Param", md.cell(head_label)]
        rows = [[md.cell(c.name), _cell(c.head, exact=True)] for c in changes]
        values = [c.head for c in changes if c.head is not None]
    numbers_only = all(_scalar(v) is not None for v in values)
    return md.table(headers, rows, numeric={1, 2} if numbers_only else ())


# --- sections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Budget:
    """How much detail to show; each level drops more (see ``_LEVELS``)."""

    unchanged_params: bool = True
    example_details: bool = True  # the broken examples and per-class tables
    step_table: bool = True
    log_lines: int = LOG_TAIL_LINES
    data_changes: bool = True
    unchanged_metrics: bool = True
    plots: bool = True
    params: bool = True
    changed_metrics: bool = True  # False: only gated metrics (and failures)
    gated_metrics: bool = True  # False: only the failed gates
    max_metric_rows: int | None = None


def _levels() -> tuple[tuple[str, _Budget], ...]:
    """Each level drops one more section (named for the reader) on top of the previous level.

    What matters is kept longest: the verdict and the failed gates always; then every gated and every
    changed metric; then the plots; the rest (params, per-example tables, step timings, data
    changes, unchanged metrics) goes first."""
    steps: tuple[tuple[str, dict[str, Any]], ...] = (
        ("", {}),
        ("unchanged params", {"unchanged_params": False}),
        ("per-example tables", {"example_details": False}),
        ("pipeline step timings", {"step_table": False, "log_lines": 10}),
        ("data changes", {"data_changes": False}),
        ("params", {"params": False, "log_lines": 5}),
        ("unchanged metrics", {"unchanged_metrics": False}),
        ("plots", {"plots": False}),
        ("ungated metrics that passed", {"changed_metrics": False}),
        ("gates that passed", {"gated_metrics": False}),
    )
    levels, budget = [], _Budget()
    for label, changes in steps:
        budget = replace(budget, **changes)
        levels.append((label, budget))
    return tuple(levels)


_LEVELS = _levels()


def _regressions_section(report: Report, max_rows: int | None) -> list[str]:
    if report.shards:
        items = [
            f"- {md.text(shard.name)}: "
            + (
                f"step {md.cell(shard.failed_step)} failed"
                if shard.failed_step
                else "; ".join(f"{md.cell(m.name)} {md.cell('; '.join(m.failures))}" for m in shard.diff.regressions)
            )
            for shard in report.shards
            if shard.failed_step or shard.diff.regressions
        ]
        return ["**Failed gates**", "", *items] if items else []
    regressions = report.diff.regressions
    if not regressions:
        return []
    shown = regressions if max_rows is None else regressions[:max_rows]
    lines = ["**Failed gates**", ""]
    # md.text: a name such as "1. x" or "# x" must not open a list or heading inside the item
    lines += [f"- {md.text(m.name)}: {md.cell('; '.join(m.failures))}" for m in shown]
    if len(shown) < len(regressions):
        lines.append(f"- … and {len(regressions) - len(shown)} more failed gates, listed in the full report")
    return lines


def _pipeline_section(report: Report, budget: _Budget) -> list[str]:
    pipeline = report.pipeline
    if pipeline is None or not pipeline.steps:
        return []
    out: list[str] = []
    failed = pipeline.failed_step
    if failed is not None:
        how = f"timed out after {failed.duration:.1f} s" if failed.timed_out else f"exited with {failed.returncode}"
        tail = list(failed.log_tail[-budget.log_lines :]) if budget.log_lines else []
        out += [f"**Step {md.cell(failed.name)} {how}.** Metrics below may be missing or stale.", ""]
        if tail:
            last = "Last line" if len(tail) == 1 else f"Last {len(tail)} lines"
            out += [md.details(f"{last} of the log", md.code_block(tail), open_=True), ""]
    if budget.step_table:
        rows = [
            [
                md.cell(s.name),
                md.code_span(s.command),
                f"{s.duration:.1f} s",
                "✅" if s.ok else ("❌ timed out" if s.timed_out else f"❌ exit {s.returncode}"),
            ]
            for s in pipeline.steps
        ]
        table = md.table(["Step", "Command", "Time", "Result"], rows, numeric={2})
        count = len(pipeline.steps)
        summary = f"Pipeline: {count} step{'s' if count != 1 else ''}, {pipeline.duration:.1f} s"
        out += [md.details(summary, table), ""]
    return out


def shards_table(shards: Sequence[Shard], base_label: str, params: bool = False) -> str:
    """Metric (or param) per row; the baseline, then one column per shard: value and change."""
    names: list[str] = []
    base: dict[str, Value | None] = {}
    cells: dict[tuple[str, str], str] = {}
    for shard in shards:
        changes: Sequence[MetricChange | ParamChange] = shard.diff.params if params else shard.diff.metrics
        for change in changes:
            if change.name not in base:
                names.append(change.name)
                base[change.name] = None
            if change.base is not None:
                base[change.name] = change.base
            if isinstance(change, MetricChange):
                _, head, delta, _ = _change_cells(change)
                extra = " ".join(part for part in (delta if delta != "—" else "", _short_mark(change)) if part)
            else:
                head = _cell(change.head, exact=True)
                extra = "changed" if change.status is Status.CHANGED else ""
            cells[(shard.name, change.name)] = head + (f" ({extra})" if extra else "")
    headers = ["Param" if params else "Metric", md.cell(base_label), *(md.cell(s.name) for s in shards)]
    rows = [[md.cell(n), _cell(base[n], exact=params), *(cells.get((s.name, n), "—") for s in shards)] for n in names]
    return md.table(headers, rows, numeric=set(range(1, len(headers))))


def _select_metrics(report: Report, budget: _Budget) -> tuple[list[MetricChange], str]:
    """The metric rows a level of detail shows, in display order, and the section's heading."""
    diff = report.diff
    metrics = list(diff.metrics)
    hidden = ""
    if not budget.unchanged_metrics:
        kept = [m for m in metrics if m.status is not Status.UNCHANGED or m.failures or m.gated]
        if len(kept) < len(metrics):
            hidden = f"{_plural(len(metrics) - len(kept), 'unchanged metric')}"
        metrics = kept
    if not budget.changed_metrics:
        kept = [m for m in metrics if m.failures or m.gated]
        if len(kept) < len(metrics):
            hidden = f"{_plural(len(diff.metrics) - len(kept), 'metric')} without a gate"
        metrics = kept
    if not budget.gated_metrics:
        kept = [m for m in metrics if m.failures]
        if len(kept) < len(metrics):
            hidden = f"{_plural(len(diff.metrics) - len(kept), 'metric')} that passed"
        metrics = kept
    # Regressions first, then changes, then the rest, each in the file's order (sort is stable).
    metrics.sort(key=lambda m: 0 if m.failures else 1 if m.status is not Status.UNCHANGED else 2)
    cut = ""
    if budget.max_metric_rows is not None and len(metrics) > budget.max_metric_rows:
        cut = f"; showing {budget.max_metric_rows} of {len(metrics)} rows"
        metrics = metrics[: budget.max_metric_rows]
    heading = "### Metrics" + (f" ({hidden} in the full report{cut})" if hidden or cut else "")
    return metrics, heading


def _metrics_section(report: Report, metrics: list[MetricChange], heading: str, base_label: str) -> list[str]:
    if report.shards:
        return ["### Metrics by shard", "", shards_table(report.shards, base_label), ""]
    if not metrics:
        return []
    head_label = report.facts.head_label or HEAD_LABEL
    table = metrics_table(metrics, report.diff.has_baseline, base_label, report.diff.judged, head_label)
    lines = [heading, "", table, "", *gates_passed(metrics)]
    if report.diff.uses_noise_rule:
        lines += [f"_Repeated values are shown as mean ± std; {NOISE_RULE}._", ""]
    return lines + rules_section(report.diff)


def _params_section(report: Report, budget: _Budget, base_label: str) -> list[str]:
    head_label = report.facts.head_label or HEAD_LABEL
    if report.shards:
        if not budget.params or not any(s.diff.params for s in report.shards):
            return []
        table = shards_table(report.shards, base_label, params=True)
        return [md.details("Params by shard", table, open_=True), ""]
    params = report.diff.params
    if not params or not budget.params:
        return []
    changed = [p for p in params if p.status is not Status.UNCHANGED]
    unchanged = [p for p in params if p.status is Status.UNCHANGED]
    lines: list[str] = []
    if changed or not report.diff.has_baseline:
        table = params_table(changed or unchanged, report.diff.has_baseline, base_label, head_label)
        lines += ["### Params", "", table, ""]
        if not changed:
            unchanged = []
    if unchanged and budget.unchanged_params:
        table = params_table(unchanged, report.diff.has_baseline, base_label, head_label)
        lines += [md.details(_plural(len(unchanged), "unchanged param"), table), ""]
    elif unchanged:
        lines += [f"_{_plural(len(unchanged), 'unchanged param')} not shown._", ""]
    return lines


def _plots_section(report: Report, image_urls: Mapping[str, str]) -> list[str]:
    """Each plot: its title once (the images have none), each image in a paragraph of its own
    (labelled with its revision when the image cannot say it: a user's own picture), then the
    note as a caption paragraph."""
    if not report.plots:
        return []
    lines = ["### Plots", ""]
    for plot in report.plots:
        title = md.cell(plot.title)
        lines += [f"**{title}**", ""]
        for index, name in enumerate(plot.images):
            url = image_urls.get(name)
            if url is None:
                continue
            label = md.cell(plot.labels[index]) if index < len(plot.labels) else ""
            if label:
                lines += [f"_{label}_", ""]
            alt = f"{title}, {label}" if label else title
            lines += [f"![{alt}]({md.link_target(url)})", ""]
        if plot.note:
            lines += [f"_{md.cell(plot.note)}_", ""]
    return lines


def _data_section(report: Report) -> list[str]:
    changes = report.data_changes
    if not changes:
        return []
    rows = []
    for change in changes:
        if change.base_sha256 is None:
            state = "new"
        elif change.head_sha256 is None:
            state = "removed"
        else:
            state = "changed" if change.changed else "unchanged"
        rows_text = "—"
        if change.base_rows is not None or change.head_rows is not None:
            rows_text = f"{_count(change.base_rows)} → {_count(change.head_rows)}"
        columns = []
        if change.columns_added:
            columns.append("+" + ", +".join(md.cell(c) for c in change.columns_added))
        if change.columns_removed:
            columns.append("−" + ", −".join(md.cell(c) for c in change.columns_removed))
        labels = ", ".join(f"{md.cell(label)}: {base} → {head}" for label, base, head in change.label_counts[:10])
        sha = change.head_sha256 or change.base_sha256 or ""
        rows.append(
            [md.cell(change.path), state, md.code_span(sha[:12]), rows_text, " ".join(columns) or "—", labels or "—"]
        )
    table = md.table(["Data", "State", "Hash", "Rows", "Columns", "Labels"], rows)
    changed = sum(1 for c in changes if c.changed)
    return [md.details(f"Data: {changed} of {len(changes)} files changed", table, open_=changed > 0), ""]


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _facts_section(report: Report) -> list[str]:
    facts = report.facts
    rows: list[list[str]] = []
    if facts.head_sha:
        ref = f" ({md.cell(facts.head_ref)})" if facts.head_ref else ""
        rows.append(["Commit", md.code_span(facts.head_sha[:12]) + ref])
    if facts.base_sha:
        ref = f" ({md.cell(facts.base_ref)})" if facts.base_ref else ""
        rows.append(["Baseline", md.code_span(facts.base_sha[:12]) + ref])
    if facts.baseline_source:
        rows.append(["Baseline from", md.cell(facts.baseline_source)])
    if facts.base_branch:
        rows.append(["Base branch", md.cell(facts.base_branch)])
    if facts.compared:
        rows.append(["Compared", md.cell(facts.compared)])
    if facts.duration is not None:
        rows.append(["Duration", f"{facts.duration:.1f} s"])
    if facts.run_url:
        rows.append(["CI run", f"[{md.cell(facts.run_url)}]({md.link_target(facts.run_url)})"])
    rows += [[md.cell(label), md.cell(value)] for label, value in facts.extra]
    rows += [
        [md.cell(label), f"[{md.cell(url)}]({md.untrusted_link_target(url)})"]
        for label, url in facts.links
        if url.startswith(("https://", "http://"))
    ]
    if not rows:
        return []
    table = md.table(["", ""], rows)
    return [md.details("Run facts", table), ""]


# The report's last line says what is true where it is shown.
COMMENT_FOOTER = "<sub>Posted by cml-bot. This comment is updated on every push.</sub>"
NEW_COMMENT_FOOTER = "<sub>Posted by cml-bot. Every push adds a new report.</sub>"  # --mode new
FOLDER_FOOTER = "<sub>Written by cml-bot. The next run into this folder replaces this report.</sub>"
SUMMARY_FOOTER = "<sub>Written by cml-bot for this job.</sub>"


def _render(
    report: Report,
    image_urls: Mapping[str, str],
    budget: _Budget,
    dropped: Sequence[str],
    where_full: str,
    memo: dict[tuple[object, ...], list[str]],
    footer: str,
) -> str:
    """One rendering at one level of detail. ``memo`` keeps sections whose inputs did not change
    between levels, so trimming a 10,000-metric report renders each big table once or twice."""

    def section(key: tuple[object, ...], build: Callable[[], list[str]]) -> list[str]:
        if key not in memo:
            memo[key] = build()
        return memo[key]

    base_label = report.facts.base_ref or "base"
    lines = [report.marker, f"## {md.text(report.title)}", "", _verdict_line(report), ""]
    regressions = section(
        ("regressions", budget.max_metric_rows), lambda: _regressions_section(report, budget.max_metric_rows)
    )
    if regressions:
        lines += [*regressions, ""]
    if not report.shards:
        unsure = section(("inconclusive",), lambda: inconclusive_section(report.diff))
        lines += [*unsure, ""] if unsure else []
    lines += section(("pipeline", budget.step_table, budget.log_lines), lambda: _pipeline_section(report, budget))
    metrics, heading = _select_metrics(report, budget)
    lines += section(("metrics", heading, len(metrics)), lambda: _metrics_section(report, metrics, heading, base_label))
    if report.predictions is not None and not report.shards:
        predictions = report.predictions
        lines += section(
            ("examples", budget.example_details), lambda: examples_section(predictions, budget.example_details)
        )
    lines += section(
        ("params", budget.params, budget.unchanged_params), lambda: _params_section(report, budget, base_label)
    )
    if budget.plots:
        lines += section(("plots",), lambda: _plots_section(report, image_urls))
    if budget.data_changes:
        lines += section(("data",), lambda: _data_section(report))
    lines += section(("facts",), lambda: _facts_section(report))
    for note in report.notes:
        lines += [f"> {md.text(note)}", ""]
    if dropped:
        lines += [f"_To fit the size limit this comment leaves out: {', '.join(dropped)}. {where_full}_", ""]
    lines.append(footer)
    return "\n".join(lines) + "\n"


def render_markdown(
    report: Report,
    image_urls: Mapping[str, str] | None = None,
    limit: int | None = None,
    where_full: str = "The full report is in the job summary and artifacts.",
    flavour: Flavour = Flavour.GITHUB,
    footer: str = COMMENT_FOOTER,
) -> str:
    """Render the report; with ``limit``, drop detail section by section until it fits (measured
    in ``flavour``, the markdown of the forge that shows it). ``footer``: the last line, true of
    where the report is shown (a sticky comment, a folder, a job summary)."""
    urls = image_urls or {}
    dropped: list[str] = []
    memo: dict[tuple[object, ...], list[str]] = {}
    finish: Callable[[str], str] = md.bitbucket if flavour is Flavour.BITBUCKET else str

    def render(budget: _Budget, dropped: Sequence[str]) -> str:
        return finish(_render(report, urls, budget, dropped, where_full, memo, footer))

    text = previous = ""
    for label, budget in _LEVELS:
        body = render(budget, ())
        if label and body != previous:  # name only what this level really left out
            dropped.append(label)
        previous = body
        text = render(budget, dropped) if dropped else body
        if limit is None or len(text) <= limit:
            return text
    assert limit is not None  # without a limit the first level returned
    # Still too long: many failed gates. Show whole rows only, as many as fit: rows are about the
    # similar size, so estimate the count from the full text, then step down.
    last = _LEVELS[-1][1]
    total = max(1, len(report.diff.regressions))
    one = render(replace(last, max_metric_rows=1), dropped)
    per_row = max(1.0, (len(text) - len(one)) / max(1, total - 1))
    rows = min(total, 1 + int((limit - len(one)) / per_row))
    while rows > 1:
        text = render(replace(last, max_metric_rows=rows), dropped)
        if len(text) <= limit:
            return text
        rows = min(rows - 1, int(rows * 0.97))
    return one


def render_html(markdown_text: str, title: str, theme: str | None = None) -> str:
    """The markdown as a standalone HTML page styled like a GitHub comment, for the local preview:
    GitHub's light and dark colours (the reader's system setting, or the switch at the top; or
    ``theme``, "light" or "dark", fixed, as the screenshot check uses it)."""
    from markdown_it import MarkdownIt

    if theme not in (None, "light", "dark"):
        raise ValueError(f"render_html: theme must be light or dark, not {theme!r}")
    parser = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
    body = parser.render(markdown_text)
    checked = {name: " checked" if (theme or "system") == name else "" for name in ("system", "light", "dark")}
    return _HTML_PAGE.format(title=md.html_text(title), body=body, **checked)


# GitHub's colours (Primer's light and dark themes, as github-markdown-css uses them) and its
# comment: about 880 px wide with 16 px of padding. The theme switch needs no script (:has).
_LIGHT = (
    "color-scheme: light; --fg: #1f2328; --bg: #ffffff; --border: #d0d7de; --muted: #656d76; "
    "--subtle: #f6f8fa; --code: rgba(175, 184, 193, 0.2); --link: #0969da;"
)
_DARK = (
    "color-scheme: dark; --fg: #e6edf3; --bg: #0d1117; --border: #30363d; --muted: #7d8590; "
    "--subtle: #161b22; --code: rgba(110, 118, 129, 0.4); --link: #4493f8;"
)
_HTML_PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
:root {{ """
    + _LIGHT
    + """ }}
@media (prefers-color-scheme: dark) {{ :root {{ """
    + _DARK
    + """ }} }}
:root:has(#theme-light:checked) {{ """
    + _LIGHT
    + """ }}
:root:has(#theme-dark:checked) {{ """
    + _DARK
    + """ }}
body {{ font: 14px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif,
  "Apple Color Emoji", "Segoe UI Emoji", "Noto Color Emoji";
  color: var(--fg); background: var(--bg); margin: 1rem auto; padding: 0 1rem; max-width: 880px; }}
.theme {{ color: var(--muted); font-size: 12px; margin-bottom: 0.5rem; }}
.comment {{ border: 1px solid var(--border); border-radius: 6px; padding: 16px; }}
a {{ color: var(--link); }}
table {{ border-collapse: collapse; border-spacing: 0; margin: 0 0 16px; display: block; width: max-content;
  max-width: 100%; overflow: auto; font-variant-numeric: tabular-nums; }}
th, td {{ border: 1px solid var(--border); padding: 6px 13px; }}
th {{ font-weight: 600; }}
tr {{ background: var(--bg); border-top: 1px solid var(--border); }}
tr:nth-child(2n) {{ background: var(--subtle); }}
code, pre {{ font-family: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, monospace; font-size: 85%; }}
code {{ background: var(--code); border-radius: 6px; padding: 0.2em 0.4em; }}
pre {{ background: var(--subtle); padding: 16px; border-radius: 6px; overflow: auto; }}
pre code {{ background: transparent; padding: 0; }}
img {{ max-width: 100%; box-sizing: content-box; background: var(--bg); }}
details {{ margin: 0 0 16px; }}
summary {{ cursor: pointer; }}
blockquote {{ margin: 0 0 16px; padding: 0 1em; color: var(--muted); border-left: 0.25em solid var(--border); }}
h2 {{ font-size: 1.5em; border-bottom: 1px solid var(--border); padding-bottom: 0.3em; margin: 0 0 16px; }}
h3 {{ font-size: 1.25em; margin: 24px 0 16px; }}
p {{ margin: 0 0 16px; }}
</style></head>
<body>
<div class="theme">Theme:
<label><input type="radio" name="theme" id="theme-system"{system}> system</label>
<label><input type="radio" name="theme" id="theme-light"{light}> light</label>
<label><input type="radio" name="theme" id="theme-dark"{dark}> dark</label>
</div>
<div class="comment">
{body}
</div></body></html>
"""
)
